import WatchwordCrypto

/// The HMAC hash function of a one-time-password generator.
///
/// Raw values are the lowercase names used in configuration; otpauth URIs spell
/// them in uppercase (`SHA1`), see `OTPAuthURI`.
public enum OTPAlgorithm: String, Sendable, CaseIterable, Equatable {
    case sha1, sha256, sha512

    /// Parses "sha1", "SHA256", ... in any letter case.
    init?(caseInsensitive name: String) {
        self.init(rawValue: asciiLowercased(name))
    }

    /// HMAC of `message` under `key` with this algorithm.
    func authenticationCode(for message: [UInt8], using key: SymmetricKey) -> [UInt8] {
        switch self {
        case .sha1: return HMAC<Insecure.SHA1>.authenticationCode(for: message, using: key)
        case .sha256: return HMAC<SHA256>.authenticationCode(for: message, using: key)
        case .sha512: return HMAC<SHA512>.authenticationCode(for: message, using: key)
        }
    }
}

/// An HMAC-based one-time-password generator (RFC 4226).
///
/// A value type with no clock and no counter state: the caller supplies the
/// counter and is responsible for storing and advancing it.
public struct HOTP: Sendable, Equatable {
    /// Accepted secret lengths in bytes. RFC 4226 asks for at least 128 bits and
    /// recommends 160, but real deployments (and RFC test keys of 20, 32 and 64
    /// bytes) vary, so anything non-empty up to a sanity bound is allowed.
    public static let secretLengthRange = 1 ... 1024
    /// Accepted code lengths. RFC 4226 §5.3 requires at least 6; above 8 the
    /// 31-bit truncated value no longer gives uniformly distributed codes and
    /// authenticator apps do not support it.
    public static let digitsRange = 6 ... 8

    /// The shared secret key.
    public let secret: [UInt8]
    /// The HMAC hash function.
    public let algorithm: OTPAlgorithm
    /// The number of decimal digits in a code.
    public let digits: Int

    /// Creates a generator after validating its parameters.
    ///
    /// - Throws: `OTPError.invalidSecretLength` unless the secret is 1...1024
    ///   bytes, `OTPError.invalidDigits` unless `digits` is 6...8.
    public init(secret: [UInt8], algorithm: OTPAlgorithm = .sha1, digits: Int = 6) throws {
        guard Self.secretLengthRange.contains(secret.count) else {
            throw OTPError.invalidSecretLength(secret.count)
        }
        guard Self.digitsRange.contains(digits) else {
            throw OTPError.invalidDigits(digits)
        }
        self.secret = secret
        self.algorithm = algorithm
        self.digits = digits
    }

    /// The code for `counter`: exactly `digits` decimal characters, zero-padded.
    public func code(counter: UInt64) -> String {
        // RFC 4226 §5.2: the counter is an 8-byte big-endian moving factor.
        var message = [UInt8](repeating: 0, count: 8)
        for i in 0 ..< 8 {
            message[i] = UInt8(truncatingIfNeeded: counter >> (56 - 8 * UInt64(i)))
        }
        let key = SymmetricKey(bytes: secret)
        var mac = algorithm.authenticationCode(for: message, using: key)
        let value = Self.truncate(mac) % Self.powersOfTen[digits]
        secureZero(&mac)
        return Self.zeroPadded(value, to: digits)
    }

    /// Dynamic truncation, RFC 4226 §5.3: the low nibble of the last byte picks
    /// an offset, and the 31 bits at that offset (top bit masked so the result is
    /// the same whether read as signed or unsigned) form the value.
    static func truncate(_ mac: [UInt8]) -> UInt32 {
        let offset = Int(mac[mac.count - 1] & 0x0f)
        // offset ≤ 15 and offset + 3 ≤ 18 < 20, the shortest (SHA-1) MAC.
        return UInt32(mac[offset] & 0x7f) << 24
            | UInt32(mac[offset + 1]) << 16
            | UInt32(mac[offset + 2]) << 8
            | UInt32(mac[offset + 3])
    }

    /// 10^digits for the allowed digit counts (indices 0 through 8).
    private static let powersOfTen: [UInt32] = [
        1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000,
    ]

    static func zeroPadded(_ value: UInt32, to width: Int) -> String {
        let s = String(value)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}

/// A time-based one-time-password generator (RFC 6238).
///
/// Pure: every method takes the time as an argument, so callers decide which
/// clock to trust and tests need no clock at all.
public struct TOTP: Sendable, Equatable {
    /// Accepted time steps in seconds. RFC 6238 recommends 30; an hour is a
    /// generous upper bound that still keeps codes short-lived.
    public static let periodRange = 1 ... 3600

    /// The underlying HOTP generator, fed with time steps as counters.
    public let hotp: HOTP
    /// The time step X in seconds.
    public let period: Int

    /// Creates a generator after validating its parameters; T0 is the Unix epoch.
    ///
    /// - Throws: the errors of `HOTP.init`, or `OTPError.invalidPeriod` unless
    ///   `period` is 1...3600.
    public init(secret: [UInt8], algorithm: OTPAlgorithm = .sha1, digits: Int = 6, period: Int = 30) throws {
        guard Self.periodRange.contains(period) else {
            throw OTPError.invalidPeriod(period)
        }
        self.hotp = try HOTP(secret: secret, algorithm: algorithm, digits: digits)
        self.period = period
    }

    /// The time step T = floor(unixTime / period) (RFC 6238 §4.2).
    ///
    /// Times before the epoch map to step 0 rather than trapping or wrapping; no
    /// real clock should produce them.
    public func step(at unixTime: Int64) -> UInt64 {
        guard unixTime >= 0 else { return 0 }
        return UInt64(unixTime) / UInt64(period)
    }

    /// The code for time step `step`.
    public func code(step: UInt64) -> String {
        hotp.code(counter: step)
    }

    /// The code valid at `unixTime` (seconds since 1970-01-01 00:00:00 UTC).
    public func code(at unixTime: Int64) -> String {
        code(step: step(at: unixTime))
    }
}

/// Lowercases ASCII letters only; the names compared with it are ASCII, and
/// leaving other characters alone means no non-ASCII spelling can match them.
func asciiLowercased(_ s: String) -> String {
    String(decoding: asciiLowercased(s.utf8), as: UTF8.self)
}

func asciiLowercased<S: Sequence<UInt8>>(_ bytes: S) -> [UInt8] {
    bytes.map { (0x41 ... 0x5a).contains($0) ? $0 + 0x20 : $0 }
}
