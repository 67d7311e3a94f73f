// The login flow, store and policy.
