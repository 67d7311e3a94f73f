import Testing
import WatchwordCore
import WatchwordCrypto
import WatchwordOTP

/// Shared inputs: one secret, one moment in time, and records built from them.
enum Fixture {
    /// The RFC 4226 test secret.
    static let secret = Array("12345678901234567890".utf8)
    static let secretBase32 = Base32.encode(secret)  // GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
    static let secretHex = Hex.encode(secret)

    /// A time on a step boundary: step 56_666_667 starts here.
    static let step: UInt64 = 56_666_667
    static let now: Int64 = 30 * 56_666_667
    static let created: Int64 = 1_600_000_000

    static let totp = try! TOTP(secret: secret)
    static let hotp = try! HOTP(secret: secret)

    static func code(step: UInt64) -> String { totp.code(step: step) }
    static func code(at time: Int64) -> String { totp.code(at: time) }

    static let recoveryKey = SymmetricKey(bytes: Array(repeating: 0x5A, count: 32))

    static func user(_ name: String) -> UserName { try! UserName(name) }
    static let alice = user("alice")
    static let bob = user("bob")

    static func totpRecord(_ user: UserName = alice, lastStep: UInt64? = nil) -> UserRecord {
        var record = UserRecord(user: user, created: created)
        record.otp = OTPEnrollment(kind: .totp, secret: secret, lastStep: lastStep, issuer: "example.org")
        return record
    }

    static func hotpRecord(_ user: UserName = alice, counter: UInt64) -> UserRecord {
        var record = UserRecord(user: user, created: created)
        record.otp = OTPEnrollment(kind: .hotp, secret: secret, counter: counter, issuer: "example.org")
        return record
    }

    /// A six-digit code that is valid for no step within `window` of `time`.
    static func wrongCode(at time: Int64, window: Int = 10) -> String {
        let current = totp.step(at: time)
        let valid = Set(((current - UInt64(window))...(current + UInt64(window))).map { totp.code(step: $0) })
        var n = 0
        while true {
            let candidate = String(repeating: "0", count: 6 - String(n).count) + String(n)
            if !valid.contains(candidate) { return candidate }
            n += 1
        }
    }

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
}

extension Array where Element == UInt8 {
    /// Whether `needle` occurs anywhere in these bytes.
    func contains(bytes needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        for start in 0...(count - needle.count) where self[start..<start + needle.count].elementsEqual(needle) {
            return true
        }
        return false
    }
}
