/// Why a one-time-password parameter, base32 string or otpauth URI was rejected.
public enum OTPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The shared secret is empty or longer than `HOTP.secretLengthRange` allows.
    case invalidSecretLength(Int)
    /// The code length is not 6, 7 or 8.
    case invalidDigits(Int)
    /// The TOTP time step is not 1 to 3600 seconds.
    case invalidPeriod(Int)
    /// The algorithm name is not SHA1, SHA256 or SHA512.
    case invalidAlgorithm(String)
    /// The text is not valid RFC 4648 base32; the payload says why.
    case invalidBase32(String)
    /// The text is not an acceptable otpauth:// URI; the payload says why.
    case invalidURI(String)

    /// A message for people, naming the limit and the offending value.
    public var description: String {
        switch self {
        case .invalidSecretLength(let n):
            return "secret must be \(HOTP.secretLengthRange.lowerBound) to \(HOTP.secretLengthRange.upperBound) bytes (got \(n))"
        case .invalidDigits(let n):
            return "digits must be 6, 7 or 8 (got \(n))"
        case .invalidPeriod(let n):
            return "period must be \(TOTP.periodRange.lowerBound) to \(TOTP.periodRange.upperBound) seconds (got \(n))"
        case .invalidAlgorithm(let name):
            return "algorithm must be SHA1, SHA256 or SHA512 (got \"\(name)\")"
        case .invalidBase32(let reason):
            return "invalid base32 secret: \(reason)"
        case .invalidURI(let reason):
            return "invalid otpauth URI: \(reason)"
        }
    }
}
