#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCrypto

/// How a login ended, as the helper reports it to the PAM module.
public enum LoginOutcome: String, Sendable {
    case success
    case authErr = "auth_err"
    case notEnrolled = "not_enrolled"
    case maxtries
    case unavailable
    case convErr = "conv_err"
    /// An `exempt_group=` or `exempt_from=` of the module line matched: not asked.
    case exempt

    /// The helper's exit status for this outcome (the module checks both).
    public var exitStatus: Int32 {
        switch self {
        case .success: 0
        case .authErr: 10
        case .notEnrolled: 11
        case .maxtries: 12
        case .unavailable: 13
        case .convErr: 14
        case .exempt: 15
        }
    }
}

/// One answer from the person logging in.
public enum Answer: Sendable, Equatable {
    case text([UInt8])
    /// Longer than the module relays; never a code.
    case tooLong
    /// The conversation failed (the user hung up, pressed Ctrl-C, or the client broke).
    case failed
}

/// Syslog priority of a log line.
public enum LogPriority: String, Sendable {
    case err, warning, notice, info, debug
}

/// The PAM conversation as the login flow sees it.
public protocol Conversation {
    /// Asks with echo off.
    mutating func prompt(_ text: String) -> Answer
    mutating func info(_ text: String)
    /// Info text the user needs to answer the next prompt (a token to enroll): shown even
    /// where plain info is silenced (PAM_SILENT).
    mutating func show(_ text: String)
    mutating func error(_ text: String)
    /// A line for the system log (authpriv); never a code or a secret.
    mutating func log(_ priority: LogPriority, _ text: String)
    /// Told which method a code was accepted by (for the audit trail).
    mutating func accepted(method: String)
}

extension Conversation {
    public mutating func accepted(method: String) {}
    public mutating func show(_ text: String) { info(text) }
}

/// Who is logging in, as PAM told the module.
public struct LoginRequest: Sendable {
    public var user: String
    public var service: String
    public var rhost: String
    public var tty: String
    public var debug: Bool
    /// The module's `enroll_at_login`: a user with no token is offered one.
    public var enrollAtLogin: Bool
    /// The system's user database knows the user (a token is made at login only for them).
    public var accountExists: Bool

    public init(
        user: String, service: String = "", rhost: String = "", tty: String = "", debug: Bool = false,
        enrollAtLogin: Bool = false, accountExists: Bool = false
    ) {
        self.user = user
        self.service = service
        self.rhost = rhost
        self.tty = tty
        self.debug = debug
        self.enrollAtLogin = enrollAtLogin
        self.accountExists = accountExists
    }
}

/// One login: look the user up, refuse if locked, ask for a code (texting one first when
/// that is the user's method), check it under the user's lock and record the result. Every
/// error path denies.
///
/// The conversation, by enrollment:
/// - TOTP/HOTP only: `Verification code: `.
/// - SMS only: the code is texted, then `Code sent to ••••••4567. Verification code: `.
/// - Both: `Verification code (press Enter to get one by SMS): `; an empty answer texts a
///   code and asks again with the "Code sent" prompt.
/// - A recovery code works at every prompt. When a text cannot be sent (provider down,
///   a rate limit) the user is told in one sentence, and a user with another method is
///   asked once more for a TOTP or recovery code. At most three prompts per login.
public struct LoginFlow {
    public let config: Config
    public let store: any StateStore
    public let now: () -> Int64
    /// Makes the SMS provider. Called only when a text is actually sent or a code checked
    /// by the service, so a TOTP login never loads or initialises anything for SMS.
    public let smsGateway: () throws(SMSError) -> SMSGateway
    /// The host name put in the text message, and the issuer of a token made at login.
    public let hostName: () -> String
    /// A QR code of a text as terminal lines, or nil when none can be drawn (enrollment at
    /// login then shows the otpauth URI alone).
    public var qrCode: (String) -> [String]? = { _ in nil }

    public static let prompt = "Verification code: "
    public static let smsOfferPrompt = "Verification code (press Enter to get one by SMS): "
    public static let recoveryPrompt = "Recovery code: "
    public static func smsSentPrompt(_ phone: PhoneNumber) -> String {
        "Code sent to \(phone.masked). Verification code: "
    }

    public init(
        config: Config, store: any StateStore, now: @escaping () -> Int64 = unixTimeNow,
        smsGateway: @escaping () throws(SMSError) -> SMSGateway = { () throws(SMSError) -> SMSGateway in
            throw SMSError(.unavailable, "this program was built without SMS providers")
        },
        hostName: @escaping () -> String = systemHostName
    ) {
        self.config = config
        self.store = store
        self.now = now
        self.smsGateway = smsGateway
        self.hostName = hostName
    }

    public func run<C: Conversation>(_ request: LoginRequest, conversation: inout C) -> LoginOutcome {
        let who = "user \(request.user)" + (request.rhost.isEmpty ? "" : " from \(request.rhost)")
        guard let user = try? UserName(request.user) else {
            conversation.log(.notice, "\(who): denied: not a valid user name")
            return .authErr
        }
        let record: UserRecord?
        do {
            record = try store.load(user)
        } catch {
            conversation.log(.err, "\(who): denied: \(error)")
            conversation.error(Self.unavailableMessage)
            return .unavailable
        }
        guard let record, record.isEnrolled else {
            if let outcome = enroll(user, record: record, request: request, who: who, conversation: &conversation) {
                return outcome
            }
            conversation.log(.info, "\(who): not enrolled")
            return .notEnrolled
        }
        if let remaining = record.lockoutRemaining(at: now()) {
            conversation.log(.notice, "\(who): denied: locked out for \(remaining) more seconds")
            conversation.error(Self.lockedMessage(remaining))
            return .maxtries
        }

        // SMS takes part only for a user with a phone when a provider is configured.
        var phone: PhoneNumber? = nil
        if let number = record.phone {
            if config.sms.provider == .none {
                conversation.log(.warning, "\(who): has a phone number but sms.provider is \"none\": no SMS")
            } else {
                phone = number
            }
        }
        let makesCodes = config.sms.provider == .command || config.sms.provider == .twilio
        let hasOTP = record.otp != nil
        let hasRecovery = !record.recoveryCodeHashes.isEmpty
        if phone == nil && !hasOTP && !hasRecovery {
            conversation.log(.err, "\(who): denied: SMS is the only method and sms.provider is \"none\"")
            conversation.error(Self.unavailableMessage)
            return .unavailable
        }

        var key: SymmetricKey? = nil
        if hasRecovery || (phone != nil && makesCodes) {
            do {
                key = try store.recoveryKey(create: false)
            } catch {
                conversation.log(.err, "\(who): denied: \(error)")
                conversation.error(Self.unavailableMessage)
                return .unavailable
            }
            if key == nil {
                conversation.log(.err, "\(who): denied: \(FileStore.keyFile) is missing")
                conversation.error(Self.unavailableMessage)
                return .unavailable
            }
        }

        var login = Login(
            flow: self, user: user, who: who, phone: phone, makesCodes: makesCodes, key: key,
            hasOTP: hasOTP, hasRecovery: hasRecovery)
        if record.phone != nil && phone == nil && !hasOTP {
            // SMS-only, and no provider: say so, and ask for what can still work.
            conversation.error(Self.noSMSMessage)
            login.recoveryOnly = true
        }
        return login.converse(&conversation)
    }

    public static let unavailableMessage = "Two-factor authentication is unavailable; contact your administrator."
    static let noSMSMessage = "Codes cannot be sent by text message now; enter one of your recovery codes."

    static func lockedMessage(_ remaining: Int64) -> String {
        "Too many failed codes: try again in \(remaining) seconds."
    }
}

/// The state of one login's conversation once the user is known to be enrolled.
private struct Login {
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
        /// Nothing was sent; the login ends with this outcome unless another method is used.
        case notSent(LoginOutcome)
    }

    /// The prompt after a text could not be sent or a code not checked, or nil when the
    /// user has nothing else to type.
    var fallbackPrompt: String? {
        hasOTP ? LoginFlow.prompt : hasRecovery ? LoginFlow.recoveryPrompt : nil
    }

    mutating func converse<C: Conversation>(_ conversation: inout C) -> LoginOutcome {
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
            switch conversation.prompt(prompt) {
            case .failed:
                conversation.log(.notice, "\(who): denied: the conversation failed")
                return .convErr
            case .tooLong:
                conversation.log(.notice, "\(who): denied: answer too long to be a code")
                return .authErr
            case .text(let bytes):
                answer = bytes
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
        guard let phone else { return .notSent(.authErr) }
        let policy = SMSCodePolicy(settings: config.sms)
        let now = flow.now()
        let plan: SMSCodePolicy.Plan?
        /// The code watchword made (`command`, `twilio`), and the new pending code's identity.
        let code: String?
        let codeID: String?
        do {
            // The store may run this more than once (the database store's retry under the row
            // lock): everything it decides is returned, nothing is kept from an earlier run.
            (plan, code, codeID) = try store.update(user) {
                (current: inout UserRecord?) throws -> (SMSCodePolicy.Plan?, String?, String?) in
                guard var record = current else { return (nil, nil, nil) }
                var plan = policy.plan(for: record, now: now)
                var code: String? = nil
                var codeID: String? = nil
                if plan == .send {
                    if let refusal = try store.updateSMSGlobal({ policy.takeGlobal(&$0, now: now) }) {
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
            }
        } catch {
            conversation.log(.err, "\(who): denied: \(error)")
            conversation.error(LoginFlow.unavailableMessage)
            return .notSent(.unavailable)
        }

        switch plan {
        case nil:
            conversation.log(.notice, "\(who): denied: removed while logging in")
            return .notSent(.authErr)
        case .reuse(let ago)?:
            conversation.log(.info, "\(who): no new SMS (code sent \(ago) seconds ago is still valid)")
            conversation.info("A code was sent to \(phone.masked) \(SMSCodePolicy.duration(ago)) ago; it is still valid.")
            return .codeOnItsWay
        case .refused(let refusal)?:
            conversation.log(.notice, "\(who): no SMS sent: \(refusal.reason) (\(refusal.wait) seconds to wait)")
            conversation.error("No new code can be sent yet: please wait \(SMSCodePolicy.duration(refusal.wait)).")
            return .notSent(.authErr)
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
            conversation.log(.err, "\(who): SMS to \(phone.masked) not sent (\(provider)): \(error)")
            conversation.error(sendFailedMessage)
            if let codeID { forgetPendingCode(codeID) }
            return .notSent(.unavailable)
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

    // MARK: Checking

    enum CheckResult {
        case done(LoginOutcome)
        /// The SMS service could not check the code; another method may still be tried.
        case serviceFailed(LoginOutcome)
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
                    var line = "\(who): SMS code not checked (\(config.sms.provider.rawValue)): \(error); "
                        + "counted as a wrong answer (failure \(failures) of \(config.policy.maxFailures))"
                    if let lockedFor { line += "; locked out for \(lockedFor) seconds" }
                    conversation.log(.err, line)
                    if let lockedFor {
                        conversation.error(LoginFlow.lockedMessage(lockedFor))
                        return .done(.maxtries)
                    }
                    conversation.error("The code could not be checked; try again later.")
                    return .serviceFailed(.unavailable)
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
            conversation.log(.err, "\(who): denied: \(error)")
            conversation.error(LoginFlow.unavailableMessage)
            return .done(.unavailable)
        }
        switch verdict {
        case nil:
            conversation.log(.notice, "\(who): denied: removed while logging in")
            return .done(.authErr)
        case .accepted(let method)?:
            conversation.log(.info, "\(who): accepted (\(method.rawValue))")
            conversation.accepted(method: method.rawValue)
            if method == .recovery {
                conversation.info("Recovery code accepted; it cannot be used again.")
            }
            return .done(.success)
        case .rejected(let failures, let lockedFor)?:
            var line = "\(who): denied: wrong, reused or expired code (failure \(failures) of \(config.policy.maxFailures))"
            if let lockedFor { line += "; locked out for \(lockedFor) seconds" }
            conversation.log(.notice, line)
            if let note { conversation.log(.debug, "\(who): \(note)") }
            return .done(.authErr)
        case .malformed(let why)?:
            conversation.log(.notice, "\(who): denied: \(why)")
            conversation.error(why == "empty answer" ? "No code was entered." : "The code must be digits only.")
            return .done(.authErr)
        case .locked(let remaining)?:
            conversation.log(.notice, "\(who): denied: locked out for \(remaining) more seconds")
            conversation.error(LoginFlow.lockedMessage(remaining))
            return .done(.maxtries)
        case .askService?:
            // finishServiceCheck never asks again; reaching this is a bug, and bugs deny.
            conversation.log(.err, "\(who): denied: the SMS check did not complete")
            return .done(.authErr)
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

/// This machine's host name, for the text message.
public func systemHostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "this host" }
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return name.isEmpty ? "this host" : name
}
