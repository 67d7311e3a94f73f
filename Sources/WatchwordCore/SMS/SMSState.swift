import WatchwordCrypto

/// What watchword keeps about one user's text messages: the code in flight and the recent
/// sends that the rate limits count. Stored in the user's file (see `UserRecord`).
public struct SMSState: Sendable, Equatable {
    /// The code sent last, while it can still be used.
    public var pending: PendingSMSCode?
    /// Unix time of the last text (0: never); no new one before `resend_interval_seconds`.
    public var lastSent: Int64 = 0
    /// Texts sent in the last hour, for `max_per_hour`.
    public var sent = SendWindow()

    public init(pending: PendingSMSCode? = nil, lastSent: Int64 = 0, sent: SendWindow = SendWindow()) {
        self.pending = pending
        self.lastSent = lastSent
        self.sent = sent
    }

    public var isEmpty: Bool { self == SMSState() }
}

/// The code a user was last texted. It dies at `expires`, after `maxTries` wrong answers, or
/// when it is used.
public struct PendingSMSCode: Sendable, Equatable {
    public static let maxTries = 3

    /// The keyed hash (lowercase hex) of a code watchword made (`command`, `twilio`); nil
    /// when the provider made the code and checks it (`twilio-verify`, `nomado`).
    public var hash: String?
    /// Unix time after which the code is refused.
    public var expires: Int64
    /// Answers given while this code was pending that did not use it: wrong ones, and for a
    /// code the provider checks, every answer sent to the provider (given back with the
    /// code's use when the provider approves).
    public var tries: Int
    /// Which text this is: random, made when it is sent (`newID`). A provider's approval is
    /// taken only while the code it was asked about is still the pending one, so a code is
    /// used once whatever the provider says. nil only in records written before codes had
    /// an identity; such a code is given one before the provider is asked about it.
    public var id: String?

    public init(hash: String?, expires: Int64, tries: Int = 0, id: String? = nil) {
        self.hash = hash
        self.expires = expires
        self.tries = tries
        self.id = id
    }

    /// A new identity: 16 bytes from the kernel CSPRNG, as 32 lowercase hex digits.
    public static func newID() throws -> String {
        Hex.encode(try SecureRandom.bytes(count: 16))
    }

    /// Whether `text` is an identity as `newID` makes them (and the state file holds them).
    public static func isValidID(_ text: String) -> Bool {
        Hex.isLowercase(text, count: 32)
    }

    /// Whether the code can still be accepted at `now`.
    public func isAlive(at now: Int64) -> Bool { now < expires && tries < Self.maxTries }
}

/// Sends counted per minute over the last hour: at most 60 `(minute, count)` buckets, so the
/// record stays small however high the limit is set. "In the last hour" means the current
/// minute and the 59 before it.
public struct SendWindow: Sendable, Equatable {
    public struct Bucket: Sendable, Equatable {
        /// Unix time / 60.
        public var minute: Int64
        public var count: Int
        public init(minute: Int64, count: Int) {
            self.minute = minute
            self.count = count
        }
    }

    public static let minutes: Int64 = 60
    public static let maxCount = 1_000_000

    /// Ascending by minute, counts positive.
    public private(set) var buckets: [Bucket] = []

    public init() {}

    /// Buckets as stored; they must be in strictly ascending minutes with positive counts.
    public init?(buckets: [Bucket]) {
        guard buckets.count <= Int(Self.minutes) else { return nil }
        for (i, b) in buckets.enumerated() {
            guard b.count > 0, b.count <= Self.maxCount, b.minute >= 0 else { return nil }
            if i > 0 && buckets[i - 1].minute >= b.minute { return nil }
        }
        self.buckets = buckets
    }

    private static func minute(_ now: Int64) -> Int64 { now >= 0 ? now / 60 : 0 }

    /// Texts sent in the hour up to `now`.
    public func count(at now: Int64) -> Int {
        let oldest = Self.minute(now) - Self.minutes + 1
        return buckets.reduce(0) { $1.minute >= oldest ? $0 + $1.count : $0 }
    }

    /// Seconds until the count at `now` drops below `limit` (0 when it already is).
    public func secondsUntilBelow(_ limit: Int, at now: Int64) -> Int64 {
        var count = count(at: now)
        guard count >= limit else { return 0 }
        let oldest = Self.minute(now) - Self.minutes + 1
        for bucket in buckets where bucket.minute >= oldest {
            count -= bucket.count
            if count < limit {
                // This bucket leaves the window when its minute is 60 minutes old.
                return max(1, (bucket.minute + Self.minutes) * 60 - now)
            }
        }
        return 1
    }

    /// Counts one send at `now` and forgets buckets older than an hour.
    public mutating func record(at now: Int64) {
        let current = Self.minute(now)
        buckets.removeAll { $0.minute <= current - Self.minutes || $0.minute > current }
        if let last = buckets.last, last.minute == current {
            buckets[buckets.count - 1].count = min(last.count + 1, Self.maxCount)
        } else {
            buckets.append(Bucket(minute: current, count: 1))
        }
    }

    /// `minute:count` pairs separated by spaces, as stored.
    public var text: String { buckets.map { "\($0.minute):\($0.count)" }.joined(separator: " ") }

    /// Reads `text`; nil unless it is exactly what `text` would write.
    public init?(text: String) {
        var parsed: [Bucket] = []
        for item in text.split(separator: " ", omittingEmptySubsequences: false) {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let minute = Int64(parts[0]), let count = Int(parts[1]),
                String(minute) == parts[0], String(count) == parts[1]
            else { return nil }
            parsed.append(Bucket(minute: minute, count: count))
        }
        self.init(buckets: parsed)
    }
}

/// Sends across all users, for `sms.max_per_hour_total`: the file `sms-global` in the state
/// directory, under its own lock.
public struct SMSGlobalState: Sendable, Equatable {
    public var sent = SendWindow()
    public init(sent: SendWindow = SendWindow()) { self.sent = sent }

    public static let formatHeader = "watchword-sms 1"
    public static let maxFileSize = 16 * 1024

    /// `watchword-sms 1`, an optional `sent` line, `end`.
    public func serialized() -> [UInt8] {
        var lines = [Self.formatHeader]
        if !sent.buckets.isEmpty { lines.append("sent \(sent.text)") }
        lines.append("end")
        return Array((lines.joined(separator: "\n") + "\n").utf8)
    }

    public static func parse(_ bytes: [UInt8]) throws(StateFormatError) -> SMSGlobalState {
        guard bytes.count <= maxFileSize else {
            throw StateFormatError(line: 0, message: "file is larger than \(maxFileSize) bytes")
        }
        guard let text = String(validating: bytes, as: UTF8.self), text.hasSuffix("\n") else {
            throw StateFormatError(line: 0, message: "file is truncated or not UTF-8")
        }
        let lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first == Substring(formatHeader) else {
            throw StateFormatError(line: 1, message: "not a watchword SMS state file of version 1")
        }
        guard lines.count >= 2, lines.last == "end" else {
            throw StateFormatError(line: lines.count, message: "file is truncated (no 'end' line)")
        }
        var state = SMSGlobalState()
        let body = lines.dropFirst().dropLast()
        guard body.count <= 1 else { throw StateFormatError(line: 3, message: "unexpected line") }
        if let line = body.first {
            guard line.hasPrefix("sent "), let window = SendWindow(text: String(line.dropFirst(5))) else {
                throw StateFormatError(line: 2, message: "expected 'sent MINUTE:COUNT ...'")
            }
            state.sent = window
        }
        return state
    }
}
