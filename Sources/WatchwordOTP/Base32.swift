/// Base 32 encoding with the RFC 4648 §6 alphabet (A–Z, 2–7), as used for
/// authenticator secrets.
public enum Base32 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// Encodes `bytes` in uppercase, with `=` padding to a multiple of 8
    /// characters only if `padding` is true (otpauth URIs and apps omit it).
    public static func encode(_ bytes: [UInt8], padding: Bool = false) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 4) / 5 * 8)
        var buffer: UInt64 = 0  // pending bits, right-aligned
        var bits = 0
        for b in bytes {
            buffer = buffer << 8 | UInt64(b)
            bits += 8
            while bits >= 5 {
                bits -= 5
                out.append(alphabet[Int((buffer >> UInt64(bits)) & 0x1f)])
            }
        }
        if bits > 0 {
            // Final partial group, padded on the right with zero bits.
            out.append(alphabet[Int((buffer << UInt64(5 - bits)) & 0x1f)])
        }
        if padding {
            while out.count % 8 != 0 { out.append(UInt8(ascii: "=")) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes base32 as people and apps write secrets.
    ///
    /// Letters may be in either case, and spaces and `-` are ignored anywhere
    /// because apps display secrets in groups ("JBSW Y3DP" / "JBSW-Y3DP").
    /// `=` padding may be omitted; if present it must be exactly right and
    /// only at the end. Lengths that no byte string encodes to (1, 3 or 6
    /// characters modulo 8) are rejected. Unused bits in the last character
    /// are ignored, as google-authenticator does, since some generators
    /// leave them non-zero.
    ///
    /// - Throws: `OTPError.invalidBase32` with the reason.
    public static func decode(_ text: String) throws -> [UInt8] {
        var values: [UInt8] = []
        var padding = 0
        var position = 0  // 1-based character position, for messages
        for scalar in text.unicodeScalars {
            position += 1
            if scalar == " " || scalar == "-" { continue }
            if scalar == "=" {
                padding += 1
                continue
            }
            guard let v = value(of: scalar) else {
                throw OTPError.invalidBase32("invalid character \(describe(scalar)) at position \(position)")
            }
            guard padding == 0 else {
                throw OTPError.invalidBase32("'=' padding is only allowed at the end")
            }
            values.append(v)
        }

        let remainder = values.count % 8
        // Characters in a final partial group -> '=' needed to reach 8, or nil if
        // no byte count produces that many characters (5 bits per character).
        let expectedPadding: Int
        switch remainder {
        case 0: expectedPadding = 0
        case 2: expectedPadding = 6
        case 4: expectedPadding = 4
        case 5: expectedPadding = 3
        case 7: expectedPadding = 1
        default:
            throw OTPError.invalidBase32(
                "length \(values.count) is impossible for base32 (a final group cannot have \(remainder) character\(remainder == 1 ? "" : "s"))")
        }
        if padding != 0 && padding != expectedPadding {
            throw OTPError.invalidBase32("expected \(expectedPadding) '=' padding characters, found \(padding)")
        }

        var out: [UInt8] = []
        out.reserveCapacity(values.count * 5 / 8)
        var buffer: UInt32 = 0
        var bits = 0
        for v in values {
            buffer = (buffer << 5 | UInt32(v)) & 0xfff  // at most 12 bits are ever pending
            bits += 5
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        // The remaining `bits` (< 5) are the ignored trailing bits.
        return out
    }

    private static func value(of scalar: Unicode.Scalar) -> UInt8? {
        switch scalar.value {
        case 0x41 ... 0x5a: return UInt8(scalar.value - 0x41)  // A-Z
        case 0x61 ... 0x7a: return UInt8(scalar.value - 0x61)  // a-z
        case 0x32 ... 0x37: return UInt8(scalar.value - 0x32 + 26)  // 2-7
        default: return nil
        }
    }

    private static func describe(_ scalar: Unicode.Scalar) -> String {
        if scalar.value >= 0x21 && scalar.value < 0x7f {
            return "'\(Character(scalar))'"
        }
        var hex = String(scalar.value, radix: 16, uppercase: true)
        while hex.count < 4 { hex = "0" + hex }
        return "U+\(hex)"
    }
}
