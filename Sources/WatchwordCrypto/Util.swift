import COpenSSL

/// Compares two byte strings in time that depends only on their lengths.
///
/// Use this for secrets such as MACs and one-time codes, where an early-exit
/// `==` would tell an attacker how many leading bytes were right. Arrays of
/// different lengths compare unequal immediately: the length may leak, the
/// content does not.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    guard !a.isEmpty else { return true }
    return a.withUnsafeBytes { pa in
        b.withUnsafeBytes { pb in
            CRYPTO_memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0
        }
    }
}

/// Overwrites `bytes` with zeros in a way the optimiser cannot remove.
///
/// Wipes the array's own storage. If the buffer is shared with another copy of
/// the array, Swift first gives `bytes` a private copy, so the other copy is left
/// untouched; wipe secrets before copying them around.
public func secureZero(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { buffer in
        if let base = buffer.baseAddress, buffer.count > 0 {
            OPENSSL_cleanse(base, buffer.count)
        }
    }
}

/// Base 16 encoding (RFC 4648 §8).
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Encodes `bytes` as lowercase hexadecimal, two characters per byte.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether `text` is exactly `count` lowercase hexadecimal digits (as `encode` writes
    /// them), checked as bytes.
    public static func isLowercase(_ text: String, count: Int) -> Bool {
        var text = text
        // Over the contiguous bytes: `utf8.allSatisfy` went through the generic iterator,
        // about 40 instructions a byte (a record's ten recovery hashes are 640 bytes).
        return text.withUTF8 { bytes in
            bytes.count == count && bytes.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        }
    }

    /// Decodes hexadecimal in either case; returns `nil` for an odd length or any other character.
    public static func decode(_ s: String) -> [UInt8]? {
        let chars = Array(s.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = value(chars[i]), let lo = value(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0") ... UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a") ... UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A") ... UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
