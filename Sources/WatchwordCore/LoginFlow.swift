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

/// How one login ended: the outcome, the method that let the user in (on success), and
/// why, in the words of its log line. Every ending makes one (`Conversation.end`); the
/// helper writes the audit line and the result line from it, in one place.
public struct LoginResult: Sendable, Equatable {
    public var outcome: LoginOutcome
    public var method: Verdict.Method?
    public var reason: String?

    public init(_ outcome: LoginOutcome, method: Verdict.Method? = nil, reason: String? = nil) {
        self.outcome = outcome
        self.method = method
        self.reason = reason
    }
}

/// A login that ended where an answer was expected.
struct Ended: Error {
    let result: LoginResult
    init(_ result: LoginResult) { self.result = result }
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
}

extension Conversation {
    public mutating func show(_ text: String) { info(text) }

    /// Ends a login: logs `who: reason` at `priority` and returns the result with that
    /// reason, so the log line and the audit line say the same thing, written once.
    /// Asks with echo off: the answer's bytes, or how the login ends when there are none
    /// (a failed conversation, an answer too long to be a code).
    mutating func ask(_ prompt: String, who: String) -> Result<[UInt8], Ended> {
        switch self.prompt(prompt) {
        case .failed: .failure(Ended(end(.convErr, .notice, who, "denied: the conversation failed")))
        case .tooLong: .failure(Ended(end(.authErr, .notice, who, "denied: answer too long to be a code")))
        case .text(let bytes): .success(bytes)
        }
    }

    public mutating func end(
        _ outcome: LoginOutcome, _ priority: LogPriority, _ who: String, _ reason: String, method: Verdict.Method? = nil
    ) -> LoginResult {
        log(priority, "\(who): \(reason)")
        return LoginResult(outcome, method: method, reason: reason)
    }
}

/// Who is logging in, as PAM told the module: what the login flow reads of it.
public struct LoginRequest: Sendable {
    public var user: String
    /// The remote host (PAM_RHOST) or empty, for the log lines.
    public var rhost: String
    /// The module's `enroll_at_login`: a user with no token is offered one.
    public var enrollAtLogin: Bool
    /// The system's user database knows the user (a token is made at login only for them).
    public var accountExists: Bool

    public init(user: String, rhost: String = "", enrollAtLogin: Bool = false, accountExists: Bool = false) {
        self.user = user
        self.rhost = rhost
        self.enrollAtLogin = enrollAtLogin
        self.accountExists = accountExists
    }

    /// How log lines name this login: `user NAME[ from RHOST]`.
    public var who: String { "user \(user)" + (rhost.isEmpty ? "" : " from \(rhost)") }
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
    /// The user's record as the caller already read it from `store` (unlocked, as `run`
    /// would): `run` starts from it instead of reading it again. Every change still goes
    /// through `store.update`, which reads the record again under the lock.
    public var alreadyRead: ReadRecord? = nil

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
        hostName: @escaping () -> String = { systemHostName() ?? "this host" }
    ) {
        self.config = config
        self.store = store
        self.now = now
        self.smsGateway = smsGateway
        self.hostName = hostName
    }

    public func run<C: Conversation>(_ request: LoginRequest, conversation: inout C) -> LoginResult {
        let who = request.who
        guard let user = try? UserName(request.user) else {
            return conversation.end(.authErr, .notice, who, "denied: not a valid user name")
        }
        let record: UserRecord?
        do {
            if let alreadyRead, alreadyRead.user == user {
                record = alreadyRead.record
            } else {
                record = try store.load(user)
            }
        } catch {
            conversation.error(Self.unavailableMessage)
            return conversation.end(.unavailable, .err, who, "denied: \(error)")
        }
        guard let record, record.isEnrolled else {
            if let outcome = enroll(user, record: record, request: request, who: who, conversation: &conversation) {
                return outcome
            }
            return conversation.end(.notEnrolled, .info, who, "not enrolled")
        }
        if let remaining = record.lockoutRemaining(at: now()) {
            conversation.error(Self.lockedMessage(remaining))
            return conversation.end(.maxtries, .notice, who, "denied: locked out for \(remaining) more seconds")
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
            conversation.error(Self.unavailableMessage)
            return conversation.end(.unavailable, .err, who, "denied: SMS is the only method and sms.provider is \"none\"")
        }

        var key: SymmetricKey? = nil
        if hasRecovery || (phone != nil && makesCodes) {
            do {
                key = try store.recoveryKey(create: false)
            } catch {
                conversation.error(Self.unavailableMessage)
                return conversation.end(.unavailable, .err, who, "denied: \(error)")
            }
            if key == nil {
                conversation.error(Self.unavailableMessage)
                return conversation.end(.unavailable, .err, who, "denied: \(FileStore.keyFile) is missing")
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

/// A user's record as read, unlocked, before a login (`LoginFlow.alreadyRead`). A struct,
/// not a tuple: a tuple's type is built at run time on its first copy (100 k instructions
/// of a login, callgrind).
public struct ReadRecord: Sendable {
    public let user: UserName
    public let record: UserRecord?
    public init(user: UserName, record: UserRecord?) {
        self.user = user
        self.record = record
    }
}
