import Testing
import WatchwordOTP

@Suite("Base32 (RFC 4648 §6)")
struct Base32Tests {
    /// RFC 4648 §10 test vectors (BASE32 column), padded.
    static let rfc4648Vectors: [(String, String)] = [
        ("", ""),
        ("f", "MY======"),
        ("fo", "MZXQ===="),
        ("foo", "MZXW6==="),
        ("foob", "MZXW6YQ="),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI======"),
    ]

    static func unpadded(_ s: String) -> String { String(s.filter { $0 != "=" }) }

    @Test("RFC 4648 §10 vectors: encode with and without padding")
    func encode() {
        for (plain, encoded) in Self.rfc4648Vectors {
            #expect(Base32.encode(Array(plain.utf8), padding: true) == encoded)
            #expect(Base32.encode(Array(plain.utf8)) == Self.unpadded(encoded))
        }
    }

    @Test("RFC 4648 §10 vectors: decode with and without padding, any case")
    func decode() throws {
        for (plain, encoded) in Self.rfc4648Vectors {
            let bytes = Array(plain.utf8)
            #expect(try Base32.decode(encoded) == bytes)
            #expect(try Base32.decode(Self.unpadded(encoded)) == bytes)
            #expect(try Base32.decode(encoded.lowercased()) == bytes)
        }
    }

    @Test("Secrets as apps display them: groups separated by spaces or '-'")
    func grouping() throws {
        // "Hello!\u{DE}\u{AD}\u{BE}\u{EF}" is the classic JBSWY3DPEHPK3PXP example secret.
        let expected: [UInt8] = Array("Hello!".utf8) + [0xde, 0xad, 0xbe, 0xef]
        #expect(try Base32.decode("JBSWY3DPEHPK3PXP") == expected)
        #expect(try Base32.decode("jbsw y3dp ehpk 3pxp") == expected)
        #expect(try Base32.decode("JBSW-Y3DP-EHPK-3PXP") == expected)
        #expect(try Base32.decode("  JBSWY3DPEHPK3PXP  ") == expected)
        #expect(try Base32.decode("MZXW6YQ =") == Array("foob".utf8))
    }

    @Test("Round trip of all byte lengths 0...40")
    func roundTrip() throws {
        for n in 0 ... 40 {
            let bytes = (0 ..< n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ n) }
            #expect(try Base32.decode(Base32.encode(bytes)) == bytes)
            #expect(try Base32.decode(Base32.encode(bytes, padding: true)) == bytes)
        }
    }

    @Test("Non-zero trailing bits are ignored, like google-authenticator")
    func trailingBits() throws {
        // "MY" encodes 'f' with two zero trailing bits; "MZ" sets one of them.
        #expect(try Base32.decode("MZ") == Array("f".utf8))
        #expect(try Base32.decode("MZXR") == Array("fo".utf8))
    }

    @Test(
        "Rejected inputs (RFC 4648 §3.3: non-alphabet characters; impossible lengths)",
        arguments: [
            "A",  // 1 character: fewer than 8 bits
            "ABC",  // 3 mod 8
            "ABCDEF",  // 6 mod 8
            "MZXW6YTBO",  // 9 = 1 mod 8
            "MY0=====",  // '0' is not in the alphabet (only 2-7)
            "MY1",
            "MY8",
            "MY======x",  // data after padding
            "M=Y",  // padding in the middle
            "MY=",  // wrong amount of padding
            "MY=======",  // too much padding
            "MZXW6YTB=",  // padding on a complete group
            "========",  // padding only
            "MZXW6YQ_",
            "MZXW+6YQ",
            "MZXW\t6YQ",  // only spaces and '-' are ignored
            "MZXW\n6YQ",
            "MZXW6YÄ=",
            "ＭＹ",  // full-width letters
        ])
    func rejects(input: String) {
        #expect(throws: OTPError.self) { try Base32.decode(input) }
    }

    @Test("Error messages say what is wrong")
    func messages() {
        #expect(throws: OTPError.invalidBase32("invalid character '0' at position 3")) { try Base32.decode("MY0") }
        #expect(throws: OTPError.invalidBase32("invalid character U+0009 at position 2")) { try Base32.decode("M\tY") }
        #expect(throws: OTPError.invalidBase32("length 3 is impossible for base32 (a final group cannot have 3 characters)")) {
            try Base32.decode("ABC")
        }
        #expect(throws: OTPError.invalidBase32("expected 6 '=' padding characters, found 1")) { try Base32.decode("MY=") }
        #expect(OTPError.invalidBase32("x").description == "invalid base32 secret: x")
    }
}
