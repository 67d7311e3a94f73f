import WatchwordCrypto

/// The rules for texting codes: whether a text may go out now, what is recorded when it
/// does, and how codes watchword made are stored. Pure: time, key and codes are passed in;
/// the callers hold the locks (the user's, then the global one).
///
/// Checking an answer against the pending code is part of `Verifier`, so that SMS codes,
/// TOTP codes and recovery codes share one failure count and lockout.
public struct SMSCodePolicy: Sendable {
    public let settings: SMSSettings

    public init(settings: SMSSettings) { self.settings = settings }

    /// A limit that keeps a text from being sent, with the seconds until it allows one.
    public enum Refusal: Sendable, Equatable {
        case resendInterval(wait: Int64)
        case userHourly(wait: Int64)
        case globalHourly(wait: Int64)

        public var wait: Int64 {
            switch self {
            case .resendInterval(let w), .userHourly(let w), .globalHourly(let w): w
            }
        }

        /// For the system log.
        public var reason: String {
            switch self {
            case .resendInterval: "sms.resend_interval_seconds not yet over"
            case .userHourly: "sms.max_per_hour reached for this user"
            case .globalHourly: "sms.max_per_hour_total reached for all users"
            }
        }
    }

    /// What to do when a user asks for a code.
    public enum Plan: Sendable, Equatable {
        /// Text a new code.
        case send
        /// The code texted `sentAgo` seconds ago is still good and no new one may be sent
        /// yet: ask for that one, send nothing.
        case reuse(sentAgo: Int64)
        /// Nothing may be sent and no code is pending.
        case refused(Refusal)
    }

    /// The per-user rules, under the user's lock. `.send` still needs the global cap
    /// (`takeGlobal`) and then `recordSend`.
    public func plan(for record: UserRecord, now: Int64) -> Plan {
        let alive = record.sms.pending?.isAlive(at: now) ?? false
        let sms = record.sms
        if sms.lastSent != 0 {
            // A clock that went backwards counts as "just sent".
            let elapsed = max(0, now - sms.lastSent)
            if elapsed < Int64(settings.resendIntervalSeconds) {
                return alive ? .reuse(sentAgo: elapsed) : .refused(.resendInterval(wait: Int64(settings.resendIntervalSeconds) - elapsed))
            }
        }
        if sms.sent.count(at: now) >= settings.maxPerHour {
            if alive { return .reuse(sentAgo: max(0, now - sms.lastSent)) }
            return .refused(.userHourly(wait: sms.sent.secondsUntilBelow(settings.maxPerHour, at: now)))
        }
        return .send
    }

    /// The global cap, under the global lock: counts the send and returns nil when there is
    /// room, else the refusal (nothing counted).
    public func takeGlobal(_ global: inout SMSGlobalState, now: Int64) -> Refusal? {
        if global.sent.count(at: now) >= settings.maxPerHourTotal {
            return .globalHourly(wait: global.sent.secondsUntilBelow(settings.maxPerHourTotal, at: now))
        }
        global.sent.record(at: now)
        return nil
    }

    /// Records a text about to go out with a new code (its hash when watchword made it, and
    /// its identity, `PendingSMSCode.newID`): it replaces any pending code and counts toward
    /// the limits.
    public func recordSend(_ record: inout UserRecord, codeHash: String?, id: String, now: Int64) {
        record.sms.pending = PendingSMSCode(
            hash: codeHash, expires: now + Int64(settings.codeTTLSeconds), id: id)
        record.sms.lastSent = now
        record.sms.sent.record(at: now)
    }

    /// Whether a test text (no code) may go out: only the hourly limits apply.
    public func planTest(for record: UserRecord, now: Int64) -> Refusal? {
        if record.sms.sent.count(at: now) >= settings.maxPerHour {
            return .userHourly(wait: record.sms.sent.secondsUntilBelow(settings.maxPerHour, at: now))
        }
        return nil
    }

    /// A fresh code of `code_digits` digits from the kernel CSPRNG.
    public func makeCode() throws -> String {
        try SecureRandom.digits(count: settings.codeDigits)
    }

    /// The keyed hash stored for a code watchword made: HMAC-SHA256 under the store's key,
    /// bound to the user, in a domain of its own (a recovery code's hash never matches).
    public static func hash(_ code: String, user: UserName, key: SymmetricKey) -> String {
        let message = Array("watchword-sms-v1\0\(user.value)\0\(code)".utf8)
        return Hex.encode(HMAC<SHA256>.authenticationCode(for: message, using: key))
    }
}

extension SMSCodePolicy {
    /// `45 seconds`, `2 minutes` (rounded up), for messages to the user.
    public static func duration(_ seconds: Int64) -> String {
        if seconds < 120 { return SMSMessage.plural(Int(max(seconds, 1)), "second") }
        return SMSMessage.plural(Int((seconds + 59) / 60), "minute")
    }
}
