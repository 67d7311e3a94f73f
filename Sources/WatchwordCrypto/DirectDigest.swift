import COpenSSL

/// SHA-1, SHA-256 and SHA-512 through libcrypto's own functions (`SHA1_Init`, `SHA1_Update`,
/// `SHA1_Final` and their kin), which compute without OpenSSL 3's provider machinery.
///
/// Why not EVP: the first `HMAC()` or `EVP_Digest()` of a process fetches its algorithm,
/// and OpenSSL 3.0 then reads `openssl.cnf` and builds a method for every digest and MAC
/// the default provider has: about 1.6 million instructions, 45 % of what a whole TOTP
/// login costs the helper (callgrind; BENCHMARKS.md). The helper is a new process at every
/// login, so it pays that every time. These functions are the same code the default
/// provider runs. What is given up: a provider configured in `openssl.cnf` (a FIPS module)
/// does not compute these three; Debian ships none.
enum DirectDigest {
    case sha1, sha256, sha512

    init?<H: HashFunction>(_: H.Type) {
        switch H.self {
        case is Insecure.SHA1.Type: self = .sha1
        case is SHA256.Type: self = .sha256
        case is SHA512.Type: self = .sha512
        default: return nil
        }
    }

    /// The hash's input block size in bytes (what RFC 2104 calls B).
    var blockByteCount: Int { self == .sha512 ? 128 : 64 }

    var digestByteCount: Int {
        switch self {
        case .sha1: 20
        case .sha256: 32
        case .sha512: 64
        }
    }

    /// The digest of the concatenation of `parts`, into `out` (at least `digestByteCount`
    /// bytes). The context, which holds state derived from the input, is wiped.
    func hash(_ parts: [UnsafeRawBufferPointer], into out: UnsafeMutablePointer<UInt8>) {
        let ok = switch self {
        case .sha1: Self.run(SHA_CTX(), parts, out, SHA1_Init, SHA1_Update, SHA1_Final)
        case .sha256: Self.run(SHA256_CTX(), parts, out, SHA256_Init, SHA256_Update, SHA256_Final)
        case .sha512: Self.run(SHA512_CTX(), parts, out, SHA512_Init, SHA512_Update, SHA512_Final)
        }
        // These functions fail only on a NULL argument; a wrong digest would be worse than a stop.
        precondition(ok, "libcrypto \(self) failed")
    }

    /// One digest with one family's three functions; the context is wiped after.
    private static func run<Context>(
        _ initial: Context, _ parts: [UnsafeRawBufferPointer], _ out: UnsafeMutablePointer<UInt8>,
        _ start: (UnsafeMutablePointer<Context>?) -> Int32,
        _ update: (UnsafeMutablePointer<Context>?, UnsafeRawPointer?, Int) -> Int32,
        _ finish: (UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Context>?) -> Int32
    ) -> Bool {
        var context = initial
        var ok = start(&context) == 1
        for part in parts where part.count > 0 { ok = ok && update(&context, part.baseAddress, part.count) == 1 }
        ok = ok && finish(out, &context) == 1
        withUnsafeMutableBytes(of: &context) { OPENSSL_cleanse($0.baseAddress, $0.count) }
        return ok
    }

    func hash(_ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: digestByteCount)
        message.withUnsafeBytes { m in
            out.withUnsafeMutableBufferPointer { hash([m], into: $0.baseAddress!) }
        }
        return out
    }

    /// HMAC (RFC 2104 §2): H(K0 ⊕ opad ‖ H(K0 ⊕ ipad ‖ text)), where K0 is the key, or
    /// H(key) if the key is longer than the block, padded with zeros to the block size.
    /// Every buffer that held key material is wiped.
    func authenticationCode(for message: [UInt8], key: UnsafeRawBufferPointer) -> [UInt8] {
        let block = blockByteCount
        var pad = [UInt8](repeating: 0, count: block) // K0, then K0 ⊕ ipad, then K0 ⊕ opad
        var inner = [UInt8](repeating: 0, count: digestByteCount)
        var tag = [UInt8](repeating: 0, count: digestByteCount)
        pad.withUnsafeMutableBufferPointer { k0 in
            if key.count > block {
                hash([key], into: k0.baseAddress!)
            } else if key.count > 0 {
                k0.baseAddress!.update(from: key.bindMemory(to: UInt8.self).baseAddress!, count: key.count)
            }
            for i in 0..<block { k0[i] ^= 0x36 }
        }
        pad.withUnsafeBytes { ipad in
            message.withUnsafeBytes { text in
                inner.withUnsafeMutableBufferPointer { hash([ipad, text], into: $0.baseAddress!) }
            }
        }
        for i in 0..<block { pad[i] ^= 0x36 ^ 0x5C }
        pad.withUnsafeBytes { opad in
            inner.withUnsafeBytes { h in
                tag.withUnsafeMutableBufferPointer { hash([opad, h], into: $0.baseAddress!) }
            }
        }
        secureZero(&pad)
        secureZero(&inner)
        return tag
    }
}
