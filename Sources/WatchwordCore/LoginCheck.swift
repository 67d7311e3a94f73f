#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCrypto

/// Checking an answer: under the user's lock, with the SMS service asked (no lock held)
/// when it holds the code.
extension Login {

    enum CheckResult {
        case done(LoginResult)
        /// The SMS service could not check the code; another method may still be tried.
        case serviceFailed(LoginResult)
    }

    mutating func check<C: Conversation>(_ answer: [UInt8], _ conversation: inout C) -> CheckResult {
        let verifier = Verifier(policy: config.policy)
        let smsCheck: SMSCheck = phone == nil ? .none : makesCodes ? .local : .service
        var note: String? = nil
        var verdict: Verdict?
        do {
            // The store may run this more than once; what it decides is what it returns.
            (verdict, note) = try store.update(user) { (current: inout UserRecord?) throws -> (Verdict?, String?) in
                guard var fresh = current else { return (nil, nil) }
                let now = flow.now()
                let note = Self.pendingNote(fresh.sms.pending, now: now)
                if smsCheck == .service, var pending = fresh.sms.pending, pending.id == nil {
                    // Texted by a version that gave codes no identity: one now, so that the
                    // service's approval can be tied to this code (see finishServiceCheck).
                    pending.id = try PendingSMSCode.newID()
                    fresh.sms.pending = pending
                }
                let verdict = verifier.check(answer, record: &fresh, now: now, key: key, sms: smsCheck)
                current = fresh
                return (verdict, note)
            }
            // The answer is counted as wrong already; only the service's approval, taken under
            // the lock while the code is still pending, turns it into a success.
            if case .askService(let code, let codeID, let failures, let lockedFor)? = verdict, let phone {
                let approved: Bool
                do {
                    approved = try loadGateway().verificationService.check(code, for: phone)
                } catch {
                    var reason = "SMS code not checked (\(config.sms.provider.rawValue)): \(error); "
                        + "counted as a wrong answer (failure \(failures) of \(config.policy.maxFailures))"
                    if let lockedFor { reason += "; locked out for \(lockedFor) seconds" }
                    if let lockedFor {
                        conversation.error(LoginFlow.lockedMessage(lockedFor))
                        return .done(conversation.end(.maxtries, .err, who, reason))
                    }
                    conversation.error("The code could not be checked; try again later.")
                    return .serviceFailed(conversation.end(.unavailable, .err, who, reason))
                }
                if approved {
                    verdict = try store.update(user) { (current: inout UserRecord?) -> Verdict? in
                        guard var fresh = current else { return nil }
                        let verdict = verifier.finishServiceCheck(
                            approved: true, codeID: codeID, record: &fresh, now: flow.now())
                        current = fresh
                        return verdict
                    }
                    if case .rejected? = verdict {
                        conversation.log(
                            .notice,
                            "\(who): the SMS code was approved by \(config.sms.provider.rawValue) but is no longer "
                                + "pending (used by another login, replaced or expired): not accepted")
                    }
                } else {
                    verdict = .rejected(failures: failures, lockedFor: lockedFor)
                }
            }
        } catch {
            conversation.error(LoginFlow.unavailableMessage)
            return .done(conversation.end(.unavailable, .err, who, "denied: \(error)"))
        }
        switch verdict {
        case nil:
            return .done(conversation.end(.authErr, .notice, who, "denied: removed while logging in"))
        case .accepted(let method)?:
            let result = conversation.end(.success, .info, who, "accepted (\(method.rawValue))", method: method)
            if method == .recovery {
                conversation.info("Recovery code accepted; it cannot be used again.")
            }
            return .done(result)
        case .rejected(let failures, let lockedFor)?:
            var reason = "denied: wrong, reused or expired code (failure \(failures) of \(config.policy.maxFailures))"
            if let lockedFor { reason += "; locked out for \(lockedFor) seconds" }
            let result = conversation.end(.authErr, .notice, who, reason)
            if let note { conversation.log(.debug, "\(who): \(note)") }
            return .done(result)
        case .malformed(let why)?:
            conversation.error(why == "empty answer" ? "No code was entered." : "The code must be digits only.")
            return .done(conversation.end(.authErr, .notice, who, "denied: \(why)"))
        case .locked(let remaining)?:
            conversation.error(LoginFlow.lockedMessage(remaining))
            return .done(conversation.end(.maxtries, .notice, who, "denied: locked out for \(remaining) more seconds"))
        case .askService?:
            // finishServiceCheck never asks again; reaching this is a bug, and bugs deny.
            return .done(conversation.end(.authErr, .err, who, "denied: the SMS check did not complete"))
        }
    }

    /// Why the pending SMS code could not have matched, for the debug log.
    static func pendingNote(_ pending: PendingSMSCode?, now: Int64) -> String? {
        guard let pending else { return "no SMS code was pending" }
        if now >= pending.expires { return "the SMS code had expired \(now - pending.expires) seconds before" }
        if pending.tries >= PendingSMSCode.maxTries { return "the SMS code was used up by wrong tries" }
        return nil
    }
}
