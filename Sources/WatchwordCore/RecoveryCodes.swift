import WatchwordCrypto

/// Single-use recovery codes: 10 decimal digits from the kernel CSPRNG, stored only as
/// HMAC-SHA256 under the store's key, bound to the user so a hash cannot be moved to
/// another user's file.
public enum RecoveryCodes {
    public static let count = 10
    public static let length = 10

    /// Fresh codes in the clear, to show once.
    public static func generate(count: Int = RecoveryCodes.count) throws -> [String] {
        var codes: [String] = []
        while codes.count < count {
            let code = try SecureRandom.digits(count: length)
            if !codes.contains(code) { codes.append(code) }
        }
        return codes
    }

    /// The keyed hash (lowercase hex) stored for a code.
    public static func hash(_ code: String, user: UserName, key: SymmetricKey) -> String {
        let message = Array("watchword-recovery-v1\0\(user.value)\0\(code)".utf8)
        return Hex.encode(HMAC<SHA256>.authenticationCode(for: message, using: key))
    }

    /// The index of the stored hash that `code` matches, comparing every one in constant time.
    public static func match(_ code: String, user: UserName, key: SymmetricKey, hashes: [String]) -> Int? {
        let candidate = Array(hash(code, user: user, key: key).utf8)
        var found: Int? = nil
        for (index, stored) in hashes.enumerated() where constantTimeEquals(Array(stored.utf8), candidate) {
            if found == nil { found = index }
        }
        return found
    }
}
