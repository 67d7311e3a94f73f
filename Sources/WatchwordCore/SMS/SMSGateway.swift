/// Sends a text that watchword wrote, code included (`command`, `twilio`).
public protocol SMSSender {
    /// Sends `message` to `phone`; returns when the provider accepted it.
    func send(_ message: String, to phone: PhoneNumber) throws(SMSError)
}

/// A service that makes, sends and checks the code itself (`twilio-verify`, `nomado`).
public protocol SMSVerificationService {
    /// Asks the service to text a fresh code. `template` is the message with `{{CODE}}`
    /// where the code goes, for services that take one.
    func start(to phone: PhoneNumber, template: String) throws(SMSError)

    /// Whether the service accepts `code` for `phone`: false for a wrong, used or expired
    /// code; an error when it could not say.
    func check(_ code: String, for phone: PhoneNumber) throws(SMSError) -> Bool
}

/// The configured provider, by who makes the code.
public enum SMSGateway {
    case sender(any SMSSender)
    case verification(any SMSVerificationService)

    /// Whether watchword makes, hashes and checks the code itself.
    public var makesCodes: Bool {
        if case .sender = self { return true }
        return false
    }
}

/// Why a text could not be sent or a code could not be checked. `description` is for the
/// system log: it names the provider and what went wrong, never a credential, a code or the
/// message text.
public struct SMSError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// DNS, connection refused, TLS failure: the provider could not be reached.
        case unreachable
        /// No complete answer within `sms.timeout_seconds`.
        case timeout
        /// 401 or 403: the credentials in the config are wrong.
        case credentials
        /// 429: the provider is rate limiting us.
        case rateLimited
        /// 5xx.
        case serverError
        /// Another 4xx, or an answer that is not what the API promises.
        case refused
        /// The `command` provider's program failed or could not be run.
        case commandFailed
        /// This build or host cannot send (libcurl missing, no provider).
        case unavailable
    }

    public let kind: Kind
    public let detail: String

    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    public var description: String { detail }
}

/// The text of the SMS.
public enum SMSMessage {
    public static let codePlaceholder = "{{CODE}}"

    /// `Your login code for HOST is 123456. It expires in 5 minutes.`
    public static func text(code: String, host: String, ttlSeconds: Int) -> String {
        let ttl = ttlSeconds % 60 == 0 ? plural(ttlSeconds / 60, "minute") : plural(ttlSeconds, "second")
        return "Your login code for \(host) is \(code). It expires in \(ttl)."
    }

    /// What `watchword sms-test` sends through a provider that takes our text.
    public static func test(host: String) -> String {
        "This is a test message from watchword on \(host). SMS codes can reach this phone."
    }

    /// The same for a service that puts its own code in (`{{CODE}}`).
    public static func testTemplate(host: String) -> String {
        "This is a test message from watchword on \(host); no need to use this code: \(codePlaceholder)"
    }

    static func plural(_ n: Int, _ word: String) -> String { n == 1 ? "1 \(word)" : "\(n) \(word)s" }
}
