import COpenSSL

extension HashFunction {
    /// The digest of `message` in one shot.
    public static func hash(_ message: [UInt8]) -> [UInt8] {
        if let direct = DirectDigest(Self.self) {
            return direct.hash(message)
        }
        return evpHash(message)
    }

    /// The same through OpenSSL's EVP interface (see `DirectDigest`).
    static func evpHash(_ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let input = message.isEmpty ? [0] : message
        let ok = input.withUnsafeBufferPointer { data in
            out.withUnsafeMutableBufferPointer { o in
                EVP_Digest(data.baseAddress, message.count, o.baseAddress, &length, messageDigest, nil) == 1
            }
        }
        precondition(ok && Int(length) == digestByteCount, "OpenSSL digest failed")
        return Array(out[0..<Int(length)])
    }
}
