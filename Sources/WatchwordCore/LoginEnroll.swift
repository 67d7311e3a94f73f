import WatchwordCrypto
import WatchwordOTP

/// Enrollment at login: a user with no token, who has a pending one (`enroll
/// --at-next-login`) or logs in through a module line with `enroll_at_login`, is shown the
/// token (otpauth URI and QR code, as info text) and asked for its first code. The right
/// code makes it the user's token, the recovery codes are shown once, and the login
/// succeeds; a wrong one is a counted failure and the same token is offered next time.
///
/// It runs after the first factor (the module is meant to follow one; `doctor` warns when
/// it does not): whoever got this far is who the password says, and gets a token once.
extension LoginFlow {
    static let enrollIntro = "Two-factor authentication is required for this account, and it has no token yet."
    static let enrollScan = "Add this token to your authenticator app: scan the QR code, or enter the URI or the secret by hand."
    static let enrollDone = "Your token is set up. Recovery codes (each works once; keep them safe, they are not shown again):"
    static let enrollSaved = "Press Enter once you have saved them: "

    /// The login of a user with no token (`record` nil or not enrolled), or nil when no
    /// enrollment is offered (the login then ends as "not enrolled").
    func enroll<C: Conversation>(
        _ user: UserName, record: UserRecord?, request: LoginRequest, who: String, conversation: inout C
    ) -> LoginResult? {
        let now = now()
        var pending = record?.pending.flatMap { $0.isAlive(at: now) ? $0 : nil }
        if pending == nil {
            guard request.enrollAtLogin else { return nil }
            guard request.accountExists else {
                conversation.log(.info, "\(who): no system account: no token offered")
                return nil
            }
            switch makePending(user, now: now) {
            case .made(let made): pending = made
            case .enrolledMeanwhile:
                return conversation.end(.authErr, .notice, who, "denied: enrolled while this login ran; log in again")
            case .failed(let error):
                conversation.error(Self.unavailableMessage)
                return conversation.end(.unavailable, .err, who, "denied: \(error)")
            }
        }
        guard let pending else { return nil }
        if let remaining = record?.lockoutRemaining(at: now) {
            conversation.error(Self.lockedMessage(remaining))
            return conversation.end(.maxtries, .notice, who, "denied: locked out for \(remaining) more seconds")
        }

        let uri = OTPAuthURI(
            kind: pending.otp.kind == .totp ? .totp : .hotp, account: user.value, issuer: pending.otp.issuer,
            secret: pending.otp.secret, algorithm: pending.otp.algorithm, digits: pending.otp.digits,
            period: pending.otp.period, counter: pending.otp.counter
        ).string
        conversation.log(.info, "\(who): offered the pending token (expires at \(pending.expires))")
        // `show`: the prompt cannot be answered without it, PAM_SILENT (sudo's default) or not.
        conversation.show(Self.enrollIntro)
        conversation.show(Self.enrollScan)
        conversation.show(uri)
        for line in qrCode(uri) ?? [] { conversation.show(line) }
        conversation.show("Secret: \(Base32.encode(pending.otp.secret))")

        switch conversation.ask(Self.prompt, who: who) {
        case .failure(let ended): return ended.result
        case .success(let answer): return confirm(user, answer, pending: pending, who: who, conversation: &conversation)
        }
    }

    private enum Made {
        case made(PendingEnrollment)
        case enrolledMeanwhile
        case failed(any Error)
    }

    /// A new pending TOTP token (SHA-1, 6 digits, 30 s: what every app reads), unless one
    /// appeared meanwhile, which is then the one offered.
    private func makePending(_ user: UserName, now: Int64) -> Made {
        do {
            let fresh = PendingEnrollment(
                otp: OTPEnrollment(kind: .totp, secret: try SecureRandom.bytes(count: 20), issuer: issuerName()),
                expires: now + PendingEnrollment.defaultLifetime)
            let result = try store.update(user) { (current: inout UserRecord?) -> PendingEnrollment? in
                var record = current ?? UserRecord(user: user, created: now)
                if record.isEnrolled { return nil }
                if let existing = record.pending, existing.isAlive(at: now) { return existing }
                record.pending = fresh
                current = record
                return fresh
            }
            return result.map { .made($0) } ?? .enrolledMeanwhile
        } catch {
            return .failed(error)
        }
    }

    /// The issuer of a token made at login: `[enrollment] issuer`, else the host name, as a label of letters, digits,
    /// dots and hyphens (an issuer may hold no ':').
    private func issuerName() -> String {
        if let issuer = config.enrollmentIssuer { return issuer }
        // The host name as an issuer the config would accept: printable ASCII without spaces.
        let name = String(hostName().unicodeScalars.prefix(64).filter { $0.isASCII && $0.value > 0x20 })
        return Config.isValidIssuer(name) ? name : "watchword"
    }

    private func confirm<C: Conversation>(
        _ user: UserName, _ answer: [UInt8], pending: PendingEnrollment, who: String, conversation: inout C
    ) -> LoginResult {
        let verifier = Verifier(policy: config.policy)
        let codes: [String]
        let verdict: Verdict?
        do {
            // Made before the lock: the store may run the body more than once.
            guard let key = try store.recoveryKey(create: true) else {
                throw StoreError.unsupported("no recovery key")
            }
            codes = try RecoveryCodes.generate()
            let hashes = codes.map { RecoveryCodes.hash($0, user: user, key: key) }
            verdict = try store.update(user) { (current: inout UserRecord?) -> Verdict? in
                guard var record = current else { return nil }
                let verdict = verifier.confirmPending(
                    answer, secret: pending.otp.secret, record: &record, now: now(), recoveryHashes: hashes)
                current = record
                return verdict
            }
        } catch {
            conversation.error(Self.unavailableMessage)
            return conversation.end(.unavailable, .err, who, "denied: \(error)")
        }
        switch verdict {
        case nil:
            return conversation.end(.authErr, .notice, who, "denied: the pending token is gone (confirmed by another login, replaced or expired)")
        case .accepted(let method)?:
            let result = conversation.end(.success, .info, who, "accepted (\(method.rawValue)); enrolled at login", method: method)
            conversation.show(Self.enrollDone)
            for pair in stride(from: 0, to: codes.count, by: 2) {
                conversation.show("  " + codes[pair..<min(pair + 2, codes.count)].joined(separator: "   "))
            }
            // A last prompt carries them: sshd shows info text only with a prompt, and
            // would drop what comes after the last one. The answer changes nothing.
            _ = conversation.prompt(Self.enrollSaved)
            return result
        case .rejected(let failures, let lockedFor)?:
            var reason = "denied: wrong code for the pending token (failure \(failures) of \(config.policy.maxFailures))"
            if let lockedFor { reason += "; locked out for \(lockedFor) seconds" }
            conversation.error("Wrong code. The same token is offered at your next login.")
            return conversation.end(.authErr, .notice, who, reason)
        case .malformed(let why)?:
            conversation.error(why == "empty answer" ? "No code was entered." : "The code must be digits only.")
            return conversation.end(.authErr, .notice, who, "denied: \(why)")
        case .locked(let remaining)?:
            conversation.error(Self.lockedMessage(remaining))
            return conversation.end(.maxtries, .notice, who, "denied: locked out for \(remaining) more seconds")
        case .askService?:
            return conversation.end(.authErr, .err, who, "denied: unexpected verdict")
        }
    }
}
