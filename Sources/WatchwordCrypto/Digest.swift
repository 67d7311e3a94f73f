import COpenSSL

extension HashFunction {
    /// The digest of `message` in one shot.
    public static func hash(_ message: [UInt8]) -> [UInt8] {
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

/// PBKDF2 (RFC 8018) with HMAC over `H`, as SCRAM (RFC 5802, 7677) derives its salted password.
public enum PBKDF2<H: HashFunction> {
    public static func derive(password: [UInt8], salt: [UInt8], iterations: Int, count: Int) -> [UInt8] {
        precondition(iterations >= 1 && count >= 1)
        var out = [UInt8](repeating: 0, count: count)
        let pass = password.isEmpty ? [0] : password
        let s = salt.isEmpty ? [0] : salt
        let ok = pass.withUnsafeBufferPointer { p in
            s.withUnsafeBufferPointer { sp in
                out.withUnsafeMutableBufferPointer { o in
                    p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { pc in
                        PKCS5_PBKDF2_HMAC(
                            pc, Int32(password.count), sp.baseAddress, Int32(salt.count), Int32(iterations),
                            H.messageDigest, Int32(count), o.baseAddress) == 1
                    }
                }
            }
        }
        precondition(ok, "OpenSSL PBKDF2 failed")
        return out
    }
}

/// Base64 (RFC 4648, with padding), as SCRAM carries its values.
public enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            for shift in [18, 12, 6, 0] { out.append(alphabet[Int((n >> UInt32(shift)) & 63)]) }
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            let n = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
            out.append(alphabet[Int((n >> 18) & 63)])
            out.append(alphabet[Int((n >> 12) & 63)])
            out.append(rest == 2 ? alphabet[Int((n >> 6) & 63)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Strict: padded, no white space; nil for anything else.
    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < chars.count {
            var n: UInt32 = 0
            var pad = 0
            for j in 0..<4 {
                let c = chars[i + j]
                if c == UInt8(ascii: "=") {
                    guard i + 4 == chars.count, j >= 2 else { return nil }
                    pad += 1
                    n <<= 6
                    continue
                }
                guard pad == 0, let v = alphabet.firstIndex(of: c) else { return nil }
                n = n << 6 | UInt32(v)
            }
            out.append(UInt8((n >> 16) & 0xFF))
            if pad < 2 { out.append(UInt8((n >> 8) & 0xFF)) }
            if pad < 1 { out.append(UInt8(n & 0xFF)) }
            i += 4
        }
        return out
    }
}
