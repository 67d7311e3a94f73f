#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCrypto
import WatchwordOTP

/// Keyed hashes of a run of one user's upcoming codes, for checking codes while the shared
/// database is unreachable without holding the secret.
///
/// Entry i is the first 16 bytes of HMAC-SHA256(key, "watchword-offline 1" ‖ 0 ‖ user ‖ 0 ‖
/// counter (8 bytes, big-endian) ‖ code) for counter `first + i` (a TOTP time step or an
/// HOTP counter). The key is this host's (`DIR/cache.key`). What it protects against, and
/// what not: someone who reads the cache but not the key learns nothing; someone who reads
/// both (root on this host) can find each cached code by trying the 10^digits candidates,
/// so the cache reveals the codes of the next hours — never the secret, and nothing past
/// the cache's end.
public struct OfflineCodes: Sendable, Equatable {
    public static let hashBytes = 16
    public var first: UInt64
    /// `count * hashBytes` bytes.
    public var hashes: [UInt8]
    public var key: [UInt8]

    public var count: Int { hashes.count / Self.hashBytes }
    /// One past the last counter covered.
    public var end: UInt64 { first + UInt64(count) }

    public init(first: UInt64, hashes: [UInt8], key: [UInt8]) {
        self.first = first
        self.hashes = hashes
        self.key = key
    }

    static func hash(_ code: [UInt8], counter: UInt64, user: UserName, key: SymmetricKey) -> [UInt8] {
        var message = Array("watchword-offline 1".utf8) + [0] + Array(user.value.utf8) + [0]
        for shift in stride(from: 56, through: 0, by: -8) { message.append(UInt8(truncatingIfNeeded: counter >> UInt64(shift))) }
        message += code
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: key).prefix(hashBytes))
    }

    /// The hashes of the codes for counters `first ..< first + count`.
    public static func make(
        otp: OTPEnrollment, user: UserName, first: UInt64, count: Int, key: SymmetricKey
    ) throws -> OfflineCodes {
        let hotp = try HOTP(secret: otp.secret, algorithm: otp.algorithm, digits: otp.digits)
        var hashes: [UInt8] = []
        hashes.reserveCapacity(count * hashBytes)
        for i in 0..<count {
            let counter = first + UInt64(i)
            hashes += hash(Array(hotp.code(counter: counter).utf8), counter: counter, user: user, key: key)
        }
        return OfflineCodes(first: first, hashes: hashes, key: key.withUnsafeBytes { Array($0) })
    }

    /// Whether `code` is the code for `counter`; false outside the cached run.
    public func matches(_ code: [UInt8], counter: UInt64, user: UserName) -> Bool {
        guard counter >= first, counter < end else { return false }
        let i = Int(counter - first) * Self.hashBytes
        let candidate = Self.hash(code, counter: counter, user: user, key: SymmetricKey(bytes: key))
        return constantTimeEquals(Array(hashes[i..<(i + Self.hashBytes)]), candidate)
    }
}
