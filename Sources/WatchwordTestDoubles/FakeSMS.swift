import WatchwordCore

/// An SMS provider that sends nothing: it records every text, and can be told to fail.
/// Shared by reference, so a test keeps a handle while the login flow holds another.
public final class FakeSMSSender: SMSSender, @unchecked Sendable {
    public struct Text: Equatable, Sendable {
        public let phone: PhoneNumber
        public let message: String
    }

    public private(set) var texts: [Text] = []
    /// When set, `send` throws it (and records nothing).
    public var failure: SMSError?

    public init() {}

    public func send(_ message: String, to phone: PhoneNumber) throws(SMSError) {
        if let failure { throw failure }
        texts.append(Text(phone: phone, message: message))
    }

    /// The code in the last text: its first run of digits.
    public var lastCode: String? {
        guard let message = texts.last?.message else { return nil }
        let digits = message.split(whereSeparator: { !$0.isNumber }).first
        return digits.map(String.init)
    }

    public var gateway: SMSGateway { .sender(self) }
}

/// A verification service (twilio-verify, nomado) that makes its codes in memory.
public final class FakeVerificationService: SMSVerificationService, @unchecked Sendable {
    public private(set) var started: [(phone: PhoneNumber, template: String)] = []
    public private(set) var checked: [(phone: PhoneNumber, code: String)] = []
    /// The code the service would have texted, per number.
    public private(set) var codes: [PhoneNumber: String] = [:]
    public var nextCode = "424242"
    /// When set, `start` throws it.
    public var startFailure: SMSError?
    /// When set, `check` throws it.
    public var checkFailure: SMSError?
    /// Approve the right code every time it is checked, not once (a service that cannot be
    /// trusted to make a code single-use).
    public var approveRepeatedly = false
    /// Called at each check with the number of checks so far (this one included), before
    /// the answer: a test runs other logins there, as if they came while this one waited.
    public var onCheck: ((Int) -> Void)?

    public init() {}

    public func start(to phone: PhoneNumber, template: String) throws(SMSError) {
        if let startFailure { throw startFailure }
        started.append((phone, template))
        codes[phone] = nextCode
    }

    public func check(_ code: String, for phone: PhoneNumber) throws(SMSError) -> Bool {
        checked.append((phone, code))
        onCheck?(checked.count)
        if let checkFailure { throw checkFailure }
        guard let expected = codes[phone], expected == code else { return false }
        if !approveRepeatedly { codes[phone] = nil }  // approved once, like the real services
        return true
    }

    public var gateway: SMSGateway { .verification(self) }
}
