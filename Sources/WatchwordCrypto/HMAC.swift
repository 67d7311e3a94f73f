import COpenSSL

/// Keyed-hash message authentication (RFC 2104) with the hash function `H`.
///
/// Used as `HMAC<Insecure.SHA1>.authenticationCode(for:using:)`.
public enum HMAC<H: HashFunction> {
    /// Computes the HMAC of `message` under `key` in one shot.
    ///
    /// Returns `H.digestByteCount` bytes. Any key length is accepted; keys longer
    /// than the hash block size are hashed first, as RFC 2104 specifies.
    public static func authenticationCode(for message: [UInt8], using key: SymmetricKey) -> [UInt8] {
        if let direct = DirectDigest(H.self) {
            return key.withUnsafeBytes { direct.authenticationCode(for: message, key: $0) }
        }
        return evpAuthenticationCode(for: message, using: key)
    }

    /// The same through OpenSSL's EVP interface (providers, `openssl.cnf`): for a hash
    /// function declared outside this module, and to check `DirectDigest` against.
    static func evpAuthenticationCode(for message: [UInt8], using key: SymmetricKey) -> [UInt8] {
        let md = H.messageDigest
        let size = H.digestByteCount
        precondition(size <= Int(EVP_MAX_MD_SIZE), "digest larger than EVP_MAX_MD_SIZE")
        precondition(key.byteCount <= Int(Int32.max), "HMAC key too long for OpenSSL")

        var tag = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var tagLength: UInt32 = 0
        // An empty array may have a nil base address, but OpenSSL wants a valid
        // pointer even for zero-length input; the length passed stays 0.
        let input = message.isEmpty ? [0] : message
        let ok = key.withUnsafeBytes { keyBytes in
            input.withUnsafeBufferPointer { data in
                tag.withUnsafeMutableBufferPointer { out in
                    COpenSSL.HMAC(
                        md,
                        keyBytes.baseAddress, Int32(keyBytes.count),
                        data.baseAddress, message.count,
                        out.baseAddress, &tagLength) != nil
                }
            }
        }
        // Only allocation failure or a broken libcrypto can get here; there is no
        // meaningful recovery and returning a wrong tag would be worse.
        precondition(ok, "OpenSSL HMAC failed")
        precondition(Int(tagLength) == size, "OpenSSL HMAC returned \(tagLength) bytes, expected \(size)")
        let result = Array(tag[0 ..< size])
        secureZero(&tag)
        return result
    }
}
