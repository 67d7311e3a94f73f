#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCrypto

/// The state of one login's conversation once the user is known to be enrolled.
struct Login {
    let flow: LoginFlow
    let user: UserName
    let who: String
    /// Set when SMS takes part.
    let phone: PhoneNumber?
    let makesCodes: Bool
    let key: SymmetricKey?
    let hasOTP: Bool
    let hasRecovery: Bool
    /// Made on first use, at most once per login.
    var gateway: SMSGateway? = nil
    /// Only a recovery code can work (an SMS-only user while no provider is set).
    var recoveryOnly = false

    var config: Config { flow.config }
    var store: any StateStore { flow.store }

    init(
        flow: LoginFlow, user: UserName, who: String, phone: PhoneNumber?, makesCodes: Bool, key: SymmetricKey?,
        hasOTP: Bool, hasRecovery: Bool
    ) {
        self.flow = flow
        self.user = user
        self.who = who
        self.phone = phone
        self.makesCodes = makesCodes
        self.key = key
        self.hasOTP = hasOTP
        self.hasRecovery = hasRecovery
    }

    /// What asking for a text led to.
    enum Delivery {
        /// A code is on its way, or one sent moments ago is still good.
        case codeOnItsWay
        /// Nothing was sent; the login ends so unless another method is used.
        case notSent(LoginResult)
    }

    /// The prompt after a text could not be sent or a code not checked, or nil when the
    /// user has nothing else to type.
    var fallbackPrompt: String? {
        hasOTP ? LoginFlow.prompt : hasRecovery ? LoginFlow.recoveryPrompt : nil
    }

    mutating func converse<C: Conversation>(_ conversation: inout C) -> LoginResult {
        var prompt: String
        var offerSMS = false
        var fallbackUsed = false
        if let phone, !hasOTP {
            switch deliver(&conversation) {
            case .codeOnItsWay:
                prompt = LoginFlow.smsSentPrompt(phone)
            case .notSent(let outcome):
                guard let fallback = fallbackPrompt else { return outcome }
                prompt = fallback
                fallbackUsed = true
            }
        } else if phone != nil {
            prompt = LoginFlow.smsOfferPrompt
            offerSMS = true
        } else {
            prompt = recoveryOnly ? LoginFlow.recoveryPrompt : LoginFlow.prompt
        }

        // Each way round the loop either ends the login or uses up the SMS offer or the
        // fallback, so there are at most three prompts.
        while true {
            let answer: [UInt8]
            switch conversation.ask(prompt, who: who) {
            case .failure(let ended): return ended.result
            case .success(let bytes): answer = bytes
            }

            if offerSMS, let phone, Verifier.isBlank(answer) {
                offerSMS = false
                switch deliver(&conversation) {
                case .codeOnItsWay:
                    prompt = LoginFlow.smsSentPrompt(phone)
                case .notSent:
                    // hasOTP holds here: only users with both methods are offered SMS.
                    prompt = LoginFlow.prompt
                    fallbackUsed = true
                }
                continue
            }

            switch check(answer, &conversation) {
            case .done(let outcome):
                return outcome
            case .serviceFailed(let outcome):
                guard !fallbackUsed, let fallback = fallbackPrompt else { return outcome }
                fallbackUsed = true
                offerSMS = false
                prompt = fallback
            }
        }
    }

    // MARK: Sending

    /// Texts a code if the limits allow: reserves the send under the user's lock (and the
    /// global lock), then talks to the provider with no lock held.
    mutating func deliver<C: Conversation>(_ conversation: inout C) -> Delivery {
        guard let phone else { return .notSent(LoginResult(.authErr, reason: "denied: no phone number")) }
        let policy = SMSCodePolicy(settings: config.sms)
        let now = flow.now()
        let plan: SMSCodePolicy.Plan?
        /// The code watchword made (`command`, `twilio`), and the new pending code's identity.
        let code: String?
        let codeID: String?
        do {
            // The store may run this more than once (the database store's retry under the row
            // lock): everything it decides is returned or stored with the record and the
            // global count of the same run, nothing is kept from an earlier run.
            (plan, code, codeID) = try store.update(user, withSMSGlobal: {
                (current: inout UserRecord?, global: inout SMSGlobalState) throws
                    -> (SMSCodePolicy.Plan?, String?, String?) in
                guard var record = current else { return (nil, nil, nil) }
                var plan = policy.plan(for: record, now: now)
                var code: String? = nil
                var codeID: String? = nil
                if plan == .send {
                    if let refusal = policy.takeGlobal(&global, now: now) {
                        plan = .refused(refusal)
                    } else {
                        var hash: String? = nil
                        if makesCodes, let key {
                            let fresh = try policy.makeCode()
                            hash = SMSCodePolicy.hash(fresh, user: user, key: key)
                            code = fresh
                        }
                        let id = try PendingSMSCode.newID()
                        policy.recordSend(&record, codeHash: hash, id: id, now: now)
                        codeID = id
                    }
                }
                current = record
                return (plan, code, codeID)
            })
        } catch {
            conversation.error(LoginFlow.unavailableMessage)
            return .notSent(conversation.end(.unavailable, .err, who, "denied: \(error)"))
        }

        switch plan {
        case nil:
            return .notSent(conversation.end(.authErr, .notice, who, "denied: removed while logging in"))
        case .reuse(let ago)?:
            conversation.info("A code was sent to \(phone.masked) \(SMSCodePolicy.duration(ago)) ago; it is still valid.")
            conversation.log(.info, "\(who): no new SMS (code sent \(ago) seconds ago is still valid)")
            return .codeOnItsWay
        case .refused(let refusal)?:
            conversation.error("No new code can be sent yet: please wait \(SMSCodePolicy.duration(refusal.wait)).")
            return .notSent(conversation.end(.authErr, .notice, who, "no SMS sent: \(refusal.reason) (\(refusal.wait) seconds to wait)"))
        case .send?:
            break
        }

        let provider = config.sms.provider.rawValue
        do {
            let gateway = try loadGateway()
            let host = flow.hostName()
            switch gateway {
            case .sender(let sender):
                guard let code else { throw SMSError(.unavailable, "no code was made") }
                try sender.send(SMSMessage.text(code: code, host: host, ttlSeconds: config.sms.codeTTLSeconds), to: phone)
            case .verification(let service):
                let template = SMSMessage.text(
                    code: SMSMessage.codePlaceholder, host: host, ttlSeconds: config.sms.codeTTLSeconds)
                try service.start(to: phone, template: template)
            }
        } catch {
            conversation.error(sendFailedMessage)
            if let codeID { forgetPendingCode(codeID) }
            return .notSent(conversation.end(.unavailable, .err, who, "SMS to \(phone.masked) not sent (\(provider)): \(error)"))
        }
        conversation.log(.info, "\(who): SMS code sent to \(phone.masked) (\(provider))")
        return .codeOnItsWay
    }

    var sendFailedMessage: String {
        if hasOTP { return "The text message could not be sent; use your authenticator app or a recovery code." }
        if hasRecovery { return "The text message could not be sent; enter a recovery code or try again later." }
        return "The text message could not be sent; try again later."
    }

    /// A code that never left is not worth waiting for; the send still counts toward the
    /// limits (a provider that fails is not to be hammered).
    func forgetPendingCode(_ id: String) {
        _ = try? store.update(user) { (current: inout UserRecord?) in
            if var record = current, record.sms.pending?.id == id {
                record.sms.pending = nil
                current = record
            }
        }
    }

    mutating func loadGateway() throws(SMSError) -> SMSGateway {
        if let gateway { return gateway }
        let made = try flow.smsGateway()
        gateway = made
        return made
    }
}

extension SMSGateway {
    /// The service, when it checks codes; otherwise an error (a configuration that changed
    /// between sending and checking).
    var verificationService: any SMSVerificationService {
        get throws(SMSError) {
            guard case .verification(let service) = self else {
                throw SMSError(.unavailable, "the provider does not check codes")
            }
            return service
        }
    }
}
