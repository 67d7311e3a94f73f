import WatchwordCrypto

/// How a login ended, as the helper reports it to the PAM module.
public enum LoginOutcome: String, Sendable {
    case success
    case authErr = "auth_err"
    case notEnrolled = "not_enrolled"
    case maxtries
    case unavailable
    case convErr = "conv_err"

    /// The helper's exit status for this outcome (the module checks both).
    public var exitStatus: Int32 {
        switch self {
        case .success: 0
        case .authErr: 10
        case .notEnrolled: 11
        case .maxtries: 12
        case .unavailable: 13
        case .convErr: 14
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
    mutating func error(_ text: String)
    /// A line for the system log (authpriv); never a code or a secret.
    mutating func log(_ priority: LogPriority, _ text: String)
}

/// Who is logging in, as PAM told the module.
public struct LoginRequest: Sendable {
    public var user: String
    public var service: String
    public var rhost: String
    public var tty: String
    public var debug: Bool

    public init(user: String, service: String = "", rhost: String = "", tty: String = "", debug: Bool = false) {
        self.user = user
        self.service = service
        self.rhost = rhost
        self.tty = tty
        self.debug = debug
    }
}

/// One login: look the user up, refuse if locked, ask for a code, check it under the user's
/// lock and record the result. Every error path denies.
public struct LoginFlow {
    public let config: Config
    public let store: any StateStore
    public let now: () -> Int64

    public static let prompt = "Verification code: "

    public init(config: Config, store: any StateStore, now: @escaping () -> Int64 = unixTimeNow) {
        self.config = config
        self.store = store
        self.now = now
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
            conversation.log(.info, "\(who): not enrolled")
            return .notEnrolled
        }
        if let remaining = record.lockoutRemaining(at: now()) {
            conversation.log(.notice, "\(who): denied: locked out for \(remaining) more seconds")
            conversation.error(Self.lockedMessage(remaining))
            return .maxtries
        }
        var key: SymmetricKey? = nil
        if !record.recoveryCodeHashes.isEmpty {
            do {
                key = try store.recoveryKey(create: false)
            } catch {
                conversation.log(.err, "\(who): denied: \(error)")
                conversation.error(Self.unavailableMessage)
                return .unavailable
            }
            if key == nil {
                conversation.log(.err, "\(who): denied: recovery codes on file but \(FileStore.keyFile) is missing")
                conversation.error(Self.unavailableMessage)
                return .unavailable
            }
        }

        let answer: [UInt8]
        switch conversation.prompt(Self.prompt) {
        case .failed:
            conversation.log(.notice, "\(who): denied: the conversation failed")
            return .convErr
        case .tooLong:
            conversation.log(.notice, "\(who): denied: answer too long to be a code")
            return .authErr
        case .text(let bytes):
            answer = bytes
        }

        let verifier = Verifier(policy: config.policy)
        let verdict: Verdict?
        do {
            verdict = try store.update(user) { (current: inout UserRecord?) -> Verdict? in
                guard var fresh = current else { return nil }
                let verdict = verifier.check(answer, record: &fresh, now: now(), key: key)
                current = fresh
                return verdict
            }
        } catch {
            conversation.log(.err, "\(who): denied: \(error)")
            conversation.error(Self.unavailableMessage)
            return .unavailable
        }
        switch verdict {
        case nil:
            conversation.log(.notice, "\(who): denied: removed while logging in")
            return .authErr
        case .accepted(let method)?:
            conversation.log(.info, "\(who): accepted (\(method.rawValue))")
            if method == .recovery {
                conversation.info("Recovery code accepted; it cannot be used again.")
            }
            return .success
        case .rejected(let failures, let lockedFor)?:
            var line = "\(who): denied: wrong, reused or expired code (failure \(failures) of \(config.policy.maxFailures))"
            if let lockedFor { line += "; locked out for \(lockedFor) seconds" }
            conversation.log(.notice, line)
            return .authErr
        case .malformed(let why)?:
            conversation.log(.notice, "\(who): denied: \(why)")
            conversation.error("The code must be digits only.")
            return .authErr
        case .locked(let remaining)?:
            conversation.log(.notice, "\(who): denied: locked out for \(remaining) more seconds")
            conversation.error(Self.lockedMessage(remaining))
            return .maxtries
        }
    }

    static let unavailableMessage = "Two-factor authentication is unavailable; contact your administrator."

    static func lockedMessage(_ remaining: Int64) -> String {
        "Too many failed codes: try again in \(remaining) seconds."
    }
}
