import WatchwordCrypto
import WatchwordOTP

/// Everything watchword keeps about one user: the OTP enrollment, counters for replay and
/// lockout, and the keyed hashes of unused recovery codes.
public struct UserRecord: Sendable, Equatable {
    public var user: UserName
    public var created: Int64
    public var otp: OTPEnrollment?
    public var failures: Int = 0
    /// Unix time until which logins are refused without checking a code; 0 when not locked.
    public var lockedUntil: Int64 = 0
    public var lastSuccess: Int64 = 0
    /// Keyed hashes (hex) of unused recovery codes.
    public var recoveryCodeHashes: [String] = []
    /// Where SMS codes go; nil when the user gets none.
    public var phone: PhoneNumber?
    /// The SMS code in flight and recent sends (kept when the phone is removed, so that
    /// removing and re-adding a number does not reset the rate limits).
    public var sms = SMSState()
    /// A token made for the user but not yet confirmed: offered at their next login
    /// (`enroll --at-next-login`, or the module's `enroll_at_login`), active once they type
    /// its first code. It does not make the user enrolled.
    public var pending: PendingEnrollment?

    public init(user: UserName, created: Int64) {
        self.user = user
        self.created = created
    }

    public var isEnrolled: Bool { otp != nil || !recoveryCodeHashes.isEmpty || phone != nil }

    /// Seconds of lockout left at `now`, or nil when not locked.
    public func lockoutRemaining(at now: Int64) -> Int64? {
        lockedUntil > now ? lockedUntil - now : nil
    }
}

/// A token waiting for its first code (see `UserRecord.pending`).
public struct PendingEnrollment: Sendable, Equatable {
    public var otp: OTPEnrollment
    /// Unix time after which it is gone and the user counts as not enrolled.
    public var expires: Int64

    public init(otp: OTPEnrollment, expires: Int64) {
        self.otp = otp
        self.expires = expires
    }

    public func isAlive(at now: Int64) -> Bool { now < expires }

    /// How long a pending token lives unless the admin says otherwise: 7 days.
    public static let defaultLifetime: Int64 = 7 * 86400
}

/// A TOTP or HOTP token.
public struct OTPEnrollment: Sendable, Equatable {
    public enum Kind: String, Sendable { case totp, hotp }
    public var kind: Kind
    public var secret: [UInt8]
    public var algorithm: OTPAlgorithm
    public var digits: Int
    /// TOTP time step in seconds.
    public var period: Int
    /// HOTP: the next counter value expected.
    public var counter: UInt64
    /// TOTP: the last time step accepted; a code is accepted only for a later step.
    public var lastStep: UInt64?
    public var issuer: String
    /// Set only on records served from a host's offline cache (fleet mode, database down):
    /// `secret` is then empty and codes are checked against these keyed hashes. Never
    /// written to a state file.
    public var offlineCodes: OfflineCodes? = nil

    public init(
        kind: Kind, secret: [UInt8], algorithm: OTPAlgorithm = .sha1, digits: Int = 6, period: Int = 30,
        counter: UInt64 = 0, lastStep: UInt64? = nil, issuer: String = "watchword"
    ) {
        self.kind = kind
        self.secret = secret
        self.algorithm = algorithm
        self.digits = digits
        self.period = period
        self.counter = counter
        self.lastStep = lastStep
        self.issuer = issuer
    }
}

/// A state file that cannot be used.
public struct StateFormatError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let message: String
    public var description: String { line > 0 ? "line \(line): \(message)" : message }

    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }
}

/// The user file format, version 1: a `watchword-user 1` header, one `key value` per line,
/// an `end` line last (so a truncated file is seen as such). Strict: unknown, missing or
/// repeated keys and bad values are errors.
///
/// The SMS keys (`phone`, `sms.*`) are optional and written only when they hold something,
/// so a file without SMS is byte for byte what it was before SMS existed, and files written
/// before SMS still parse. The version stays 1: a reader too old to know these keys refuses
/// them as unknown keys and denies (fails closed), which is what a version bump would
/// have achieved, without making every existing file unreadable to older binaries.
///
///     phone +14155550123          E.164
///     sms.code <64 hex>           keyed hash of a code watchword made; needs sms.expires
///     sms.id <32 hex>             which text the pending code came in; needs sms.expires
///                                 (absent in files written before codes had one)
///     sms.expires <unix time>     a code is pending until then; with sms.tries
///     sms.tries <0-3>             wrong answers while it was pending
///     sms.last_sent <unix time>   the last text
///     sms.sent MINUTE:COUNT ...   texts per minute (unix time / 60) in the last hour
///
/// A token waiting for its first code has the `otp.*` keys under `pending.*`, and
/// `pending.expires <unix time>`; written only when there is one.
extension UserRecord {
    public static let formatHeader = "watchword-user 1"
    public static let maxFileSize = 64 * 1024
    public static let maxRecoveryCodes = 64

    public func serialized() -> [UInt8] {
        var lines = [Self.formatHeader, "user \(user.value)", "created \(created)"]
        if let otp { lines += Self.lines(of: otp, prefix: "otp") }
        lines.append("failures \(failures)")
        lines.append("locked_until \(lockedUntil)")
        lines.append("last_success \(lastSuccess)")
        if let pending {
            lines += Self.lines(of: pending.otp, prefix: "pending")
            lines.append("pending.expires \(pending.expires)")
        }
        if let phone { lines.append("phone \(phone.e164)") }
        if let pending = sms.pending {
            if let hash = pending.hash { lines.append("sms.code \(hash)") }
            if let id = pending.id { lines.append("sms.id \(id)") }
            lines.append("sms.expires \(pending.expires)")
            lines.append("sms.tries \(pending.tries)")
        }
        if sms.lastSent != 0 { lines.append("sms.last_sent \(sms.lastSent)") }
        if !sms.sent.buckets.isEmpty { lines.append("sms.sent \(sms.sent.text)") }
        for hash in recoveryCodeHashes { lines.append("recovery \(hash)") }
        lines.append("end")
        // A loop, not joined(separator:), whose first use costs a login 120 k instructions.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(1024)
        for line in lines {
            bytes += line.utf8
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }

    public static func parse(_ bytes: [UInt8], expectedUser: UserName) throws(StateFormatError) -> UserRecord {
        guard bytes.count <= maxFileSize else {
            throw StateFormatError(line: 0, message: "file is larger than \(maxFileSize) bytes")
        }
        // Validated as UTF-8 as a whole, then split and checked as bytes: a control byte
        // (below 0x20, or DEL) is never part of a longer UTF-8 sequence, and splitting a
        // String by Character costs a grapheme break test per byte (3/4 of a login's parsing).
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw StateFormatError(line: 0, message: "file is not UTF-8")
        }
        guard bytes.last == UInt8(ascii: "\n") else {
            throw StateFormatError(line: 0, message: "file is truncated (no final newline)")
        }
        // Lines found in place, not split into an array of slices (a third of the parse).
        let newline = UInt8(ascii: "\n")
        let finalNewline = bytes.count - 1
        let firstBreak = bytes.firstIndex(of: newline)!  // the final one at the latest
        guard bytes[..<firstBreak].elementsEqual(formatHeader.utf8) else {
            throw StateFormatError(line: 1, message: "not a watchword user file of version 1")
        }
        let lastStart = (bytes[..<finalNewline].lastIndex(of: newline) ?? -1) + 1
        guard bytes[lastStart..<finalNewline].elementsEqual("end".utf8) else {
            let lines = bytes.reduce(0) { $0 + ($1 == newline ? 1 : 0) }
            throw StateFormatError(line: lines, message: "file is truncated (no 'end' line)")
        }

        var reader = FieldReader()
        var recovery: [String] = []
        // The lines between the first and the last; line numbers count from 1.
        var start = firstBreak + 1
        var number = 1
        while start < lastStart {
            let stop = bytes[start..<lastStart].firstIndex(of: newline)!  // bytes[lastStart - 1] is one
            let line = bytes[start..<stop]
            start = stop + 1
            number += 1
            guard !line.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
                throw StateFormatError(line: number, message: "control character")
            }
            guard let space = line.firstIndex(of: UInt8(ascii: " ")) else {
                throw StateFormatError(line: number, message: "expected 'key value'")
            }
            let key = String(decoding: line[..<space], as: UTF8.self)
            let value = String(decoding: line[(space + 1)...], as: UTF8.self)
            if key == "recovery" {
                // Checked as bytes (decoding and lower-casing ten of them cost a login 30 k
                // instructions).
                guard Hex.isLowercase(value, count: 64) else {
                    throw StateFormatError(line: number, message: "recovery hash is not 64 lowercase hex digits")
                }
                recovery.append(value)
                continue
            }
            try reader.add(key, value, line: number)
        }
        guard recovery.count <= maxRecoveryCodes else {
            throw StateFormatError(line: 0, message: "more than \(maxRecoveryCodes) recovery codes")
        }

        let userText = try reader.take("user")
        guard userText == expectedUser.value else {
            throw StateFormatError(line: reader.line("user"), message: "file names user '\(userText)', not '\(expectedUser)'")
        }
        var record = UserRecord(user: expectedUser, created: try reader.int("created", 0...Int64.max))
        record.otp = try readOTP(&reader, prefix: "otp")
        record.failures = Int(try reader.int("failures", 0...1_000_000_000))
        record.lockedUntil = try reader.int("locked_until", 0...Int64.max)
        record.lastSuccess = try reader.int("last_success", 0...Int64.max)
        record.recoveryCodeHashes = recovery
        if let otp = try readOTP(&reader, prefix: "pending") {
            record.pending = PendingEnrollment(otp: otp, expires: try reader.int("pending.expires", 0...Int64.max))
        }
        try readSMS(&reader, into: &record)
        if let field = reader.firstUnread {
            throw StateFormatError(line: field.line, message: "unknown key '\(field.key)'")
        }
        return record
    }
}

extension UserRecord {
    /// A token's lines, `otp.*` for the active one and `pending.*` for one waiting for its
    /// first code.
    fileprivate static func lines(of otp: OTPEnrollment, prefix: String) -> [String] {
        // One line per key: a control character in the issuer must not start another.
        let issuer = String(otp.issuer.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
        return [
            "\(prefix) \(otp.kind.rawValue)",
            "\(prefix).secret \(Base32.encode(otp.secret))",
            "\(prefix).algorithm \(otp.algorithm.rawValue)",
            "\(prefix).digits \(otp.digits)",
            "\(prefix).period \(otp.period)",
            "\(prefix).counter \(otp.counter)",
            "\(prefix).last_step \(otp.lastStep.map { String($0) } ?? "none")",
            "\(prefix).issuer \(issuer)",
        ]
    }

    fileprivate static func readOTP(_ reader: inout FieldReader, prefix: String) throws(StateFormatError) -> OTPEnrollment? {
        guard let kindText = reader.takeOptional(prefix) else { return nil }
        guard let kind = OTPEnrollment.Kind(rawValue: kindText) else {
            throw StateFormatError(line: reader.line(prefix), message: "unknown \(prefix) kind '\(kindText)'")
        }
        let secretText = try reader.take("\(prefix).secret")
        let secret: [UInt8]
        do {
            secret = try Base32.decode(secretText)
        } catch {
            throw StateFormatError(line: reader.line("\(prefix).secret"), message: "\(prefix).secret is not base32")
        }
        let algorithmText = try reader.take("\(prefix).algorithm")
        guard let algorithm = OTPAlgorithm(rawValue: algorithmText) else {
            throw StateFormatError(line: reader.line("\(prefix).algorithm"), message: "unknown algorithm '\(algorithmText)'")
        }
        let digits = Int(try reader.int("\(prefix).digits", 6...8))
        let period = Int(try reader.int("\(prefix).period", 1...3600))
        let counter = try reader.uint("\(prefix).counter")
        let lastStepText = try reader.take("\(prefix).last_step")
        var lastStep: UInt64? = nil
        if lastStepText != "none" {
            guard let step = UInt64(lastStepText), lastStepText == String(step) else {
                throw StateFormatError(line: reader.line("\(prefix).last_step"), message: "\(prefix).last_step is not a number")
            }
            lastStep = step
        }
        let issuer = try reader.take("\(prefix).issuer")
        do {
            _ = try HOTP(secret: secret, algorithm: algorithm, digits: digits)
        } catch {
            throw StateFormatError(line: reader.line("\(prefix).secret"), message: "\(error)")
        }
        return OTPEnrollment(
            kind: kind, secret: secret, algorithm: algorithm, digits: digits, period: period, counter: counter,
            lastStep: lastStep, issuer: issuer)
    }

    /// The optional SMS keys; see the format description above.
    fileprivate static func readSMS(_ reader: inout FieldReader, into record: inout UserRecord) throws(StateFormatError) {
        if let text = reader.takeOptional("phone") {
            do {
                record.phone = try PhoneNumber(text)
            } catch {
                throw StateFormatError(line: reader.line("phone"), message: "phone: \(error)")
            }
        }
        let hash = reader.takeOptional("sms.code")
        if let hash {
            guard hash.utf8.count == 64, Hex.decode(hash) != nil, hash == hash.lowercased() else {
                throw StateFormatError(line: reader.line("sms.code"), message: "sms.code is not 64 lowercase hex digits")
            }
        }
        let id = reader.takeOptional("sms.id")
        if let id, !PendingSMSCode.isValidID(id) {
            throw StateFormatError(line: reader.line("sms.id"), message: "sms.id is not 32 lowercase hex digits")
        }
        if reader.has("sms.expires") || hash != nil || id != nil || reader.has("sms.tries") {
            let expires = try reader.int("sms.expires", 0...Int64.max)
            let tries = Int(try reader.int("sms.tries", 0...Int64(PendingSMSCode.maxTries)))
            record.sms.pending = PendingSMSCode(hash: hash, expires: expires, tries: tries, id: id)
        }
        if reader.has("sms.last_sent") {
            record.sms.lastSent = try reader.int("sms.last_sent", 1...Int64.max)
        }
        if let text = reader.takeOptional("sms.sent") {
            guard let window = SendWindow(text: text), !window.buckets.isEmpty else {
                throw StateFormatError(
                    line: reader.line("sms.sent"),
                    message: "sms.sent is not up to 60 ascending MINUTE:COUNT pairs")
            }
            record.sms.sent = window
        }
    }
}

/// A record's `key value` lines other than `recovery`, in the order of the file. An array
/// searched front to back, not a dictionary: a record has about 30 keys, and the first use
/// of `Dictionary<String, _>` in a process costs the helper, a new process at every login,
/// about 0.1 M instructions of run-time type lookup (BENCHMARKS.md).
private struct FieldReader {
    struct Field {
        let key: String
        let value: String
        let line: Int
        var read = false
    }
    /// More than every key a record can have, few enough that looking for a key twice
    /// on each line stays cheap in a corrupt file.
    static let maxFields = 64
    private var fields: [Field] = []

    mutating func add(_ key: String, _ value: String, line: Int) throws(StateFormatError) {
        guard !fields.contains(where: { $0.key == key }) else {
            throw StateFormatError(line: line, message: "'\(key)' appears twice")
        }
        guard fields.count < Self.maxFields else {
            throw StateFormatError(line: line, message: "more than \(Self.maxFields) keys")
        }
        fields.append(Field(key: key, value: value, line: line))
    }

    /// The first key no reader asked for: one the format does not have.
    var firstUnread: Field? { fields.first { !$0.read } }

    func line(_ key: String) -> Int { fields.first { $0.key == key }?.line ?? 0 }

    func has(_ key: String) -> Bool { fields.contains { $0.key == key && !$0.read } }

    mutating func takeOptional(_ key: String) -> String? {
        for index in fields.indices where fields[index].key == key && !fields[index].read {
            fields[index].read = true
            return fields[index].value
        }
        return nil
    }

    mutating func take(_ key: String) throws(StateFormatError) -> String {
        guard let value = takeOptional(key) else { throw StateFormatError(line: 0, message: "'\(key)' is missing") }
        return value
    }

    mutating func int(_ key: String, _ range: ClosedRange<Int64>) throws(StateFormatError) -> Int64 {
        let text = try take(key)
        guard let n = Int64(text), range.contains(n), text == String(n) else {
            throw StateFormatError(line: line(key), message: "\(key) '\(text)' is not a valid number")
        }
        return n
    }

    mutating func uint(_ key: String) throws(StateFormatError) -> UInt64 {
        let text = try take(key)
        guard let n = UInt64(text), text == String(n) else {
            throw StateFormatError(line: line(key), message: "\(key) '\(text)' is not a valid number")
        }
        return n
    }
}
