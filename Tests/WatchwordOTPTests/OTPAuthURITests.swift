import Testing
import WatchwordOTP

@Suite("otpauth:// Key URIs (Google Authenticator Key Uri Format)")
struct OTPAuthURITests {
    static let jbswy3dp: [UInt8] = Array("Hello!".utf8) + [0xde, 0xad, 0xbe, 0xef]

    @Test("Key Uri Format example: otpauth://totp/Example:alice@google.com")
    func googleExample() throws {
        let uri = try OTPAuthURI(
            parsing: "otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example")
        #expect(uri.kind == .totp)
        #expect(uri.issuer == "Example")
        #expect(uri.account == "alice@google.com")
        #expect(uri.secret == Self.jbswy3dp)
        #expect(uri.algorithm == .sha1 && uri.digits == 6 && uri.period == 30)
        #expect(
            uri.string
                == "otpauth://totp/Example:alice%40google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example&algorithm=SHA1&digits=6&period=30")
        #expect(try OTPAuthURI(parsing: uri.string) == uri)
    }

    @Test("Key Uri Format example with every parameter: ACME Co")
    func googleFullExample() throws {
        let text =
            "otpauth://totp/ACME%20Co:john.doe@email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"
        let uri = try OTPAuthURI(parsing: text)
        #expect(uri.issuer == "ACME Co")
        #expect(uri.account == "john.doe@email.com")
        #expect(Base32.encode(uri.secret) == "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ")
        #expect(uri.string == text.replacingAt("john.doe@", with: "john.doe%40"))
        #expect(try OTPAuthURI(parsing: uri.string) == uri)
    }

    @Test("Key Uri Format: label forms (no issuer, encoded colon, space after colon, issuer only as parameter)")
    func labels() throws {
        let plain = try OTPAuthURI(parsing: "otpauth://totp/alice@example.com?secret=JBSWY3DPEHPK3PXP")
        #expect(plain.issuer == nil && plain.account == "alice@example.com")
        #expect(!plain.string.contains("issuer"))

        let encodedColon = try OTPAuthURI(parsing: "otpauth://totp/Example%3Aalice?secret=JBSWY3DPEHPK3PXP")
        #expect(encodedColon.issuer == "Example" && encodedColon.account == "alice")

        let spaced = try OTPAuthURI(parsing: "otpauth://totp/Example:%20%20alice?secret=JBSWY3DPEHPK3PXP")
        #expect(spaced.issuer == "Example" && spaced.account == "alice")

        let paramOnly = try OTPAuthURI(parsing: "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&issuer=Big%20Corp")
        #expect(paramOnly.issuer == "Big Corp" && paramOnly.account == "alice")

        let plus = try OTPAuthURI(parsing: "otpauth://totp/a+b?secret=JBSWY3DPEHPK3PXP&issuer=Big+Corp")
        #expect(plus.account == "a+b" && plus.issuer == "Big Corp")

        let unicode = try OTPAuthURI(parsing: "otpauth://totp/M%C3%BCller%20AG:j%C3%BCrgen?secret=JBSWY3DPEHPK3PXP")
        #expect(unicode.issuer == "Müller AG" && unicode.account == "jürgen")
    }

    @Test("HOTP URI with counter; optional parameters in any case")
    func hotp() throws {
        let uri = try OTPAuthURI(
            parsing: "otpauth://hotp/Corp:bob?secret=gezdgnbvgy3tqojqgezdgnbvgy3tqojq&counter=42&ALGORITHM=sha256&digits=8&image=https%3A%2F%2Fexample.com%2Fx.png")
        #expect(uri.kind == .hotp)
        #expect(uri.counter == 42)
        #expect(uri.algorithm == .sha256)
        #expect(uri.digits == 8)
        #expect(uri.secret == Array("12345678901234567890".utf8))
        #expect(
            uri.string
                == "otpauth://hotp/Corp:bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Corp&algorithm=SHA256&digits=8&counter=42")
        #expect(try OTPAuthURI(parsing: uri.string) == uri)
        let big = try OTPAuthURI(parsing: "OTPAUTH://HOTP/x?secret=MY&counter=18446744073709551615")
        #expect(big.counter == .max)
    }

    @Test("Round trips of built URIs, including characters that need encoding")
    func roundTrips() throws {
        let cases = [
            OTPAuthURI(kind: .totp, account: "alice", secret: [1, 2, 3]),
            OTPAuthURI(
                kind: .totp, account: "root@host.example", issuer: "watchword on host", secret: Self.jbswy3dp,
                algorithm: .sha512, digits: 8, period: 60),
            OTPAuthURI(
                kind: .hotp, account: "a&b=c?d/e#f%g+h", issuer: "Ünïcødé ✓ 🔑", secret: [UInt8](repeating: 0xff, count: 64),
                algorithm: .sha256, digits: 7, counter: 12345),
            OTPAuthURI(kind: .hotp, account: "x", secret: [0], counter: 0),
        ]
        for uri in cases {
            let text = uri.string
            #expect(try OTPAuthURI(parsing: text) == uri, "\(text)")
            // Only unreserved characters and the URI's own delimiters appear.
            #expect(text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }, "\(text)")
            #expect(!text.contains(" ") && !text.contains("#"))
        }
        let encoded = cases[2].string
        #expect(encoded.hasPrefix("otpauth://hotp/%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20%E2%9C%93%20%F0%9F%94%91:a%26b%3Dc%3Fd%2Fe%23f%25g%2Bh?"))
    }

    @Test("Secret padding and lowercase are accepted (Key Uri Format says padding should be omitted)")
    func secretLeniency() throws {
        let a = try OTPAuthURI(parsing: "otpauth://totp/x?secret=MZXW6YQ%3D")
        let b = try OTPAuthURI(parsing: "otpauth://totp/x?secret=mzxw6yq")
        #expect(a.secret == Array("foob".utf8) && b.secret == a.secret)
    }

    @Test(
        "Parse failures (Key Uri Format requirements and our strictness)",
        arguments: [
            ("", "invalid otpauth URI: must start with otpauth://"),
            ("https://totp/x?secret=MY", "invalid otpauth URI: must start with otpauth://"),
            ("otpauth:totp/x?secret=MY", "invalid otpauth URI: must start with otpauth://"),
            ("otpauth://motp/x?secret=MY", "invalid otpauth URI: type must be totp or hotp (got \"motp\")"),
            ("otpauth://totp?secret=MY", "invalid otpauth URI: missing label after otpauth://totp/"),
            ("otpauth://totp/?secret=MY", "invalid otpauth URI: label (account name) is empty"),
            ("otpauth://totp/Example:?secret=MY", "invalid otpauth URI: account name after ':' in the label is empty"),
            ("otpauth://totp/:alice?secret=MY", "invalid otpauth URI: issuer before ':' in the label is empty"),
            ("otpauth://totp/a:b:c?secret=MY", "invalid otpauth URI: label must contain at most one ':' (issuer:account)"),
            ("otpauth://totp/a/b?secret=MY", "invalid otpauth URI: label must not contain '/' (encode it as %2F)"),
            ("otpauth://totp/a%0Ab?secret=MY", "invalid otpauth URI: label contains control character U+000A"),
            ("otpauth://totp/a%ZZ?secret=MY", "invalid otpauth URI: malformed percent escape in label"),
            ("otpauth://totp/a%4?secret=MY", "invalid otpauth URI: malformed percent escape in label"),
            ("otpauth://totp/a%FF?secret=MY", "invalid otpauth URI: label is not valid UTF-8 after percent-decoding"),
            ("otpauth://totp/alice", "invalid otpauth URI: missing secret parameter"),
            ("otpauth://totp/alice?issuer=X", "invalid otpauth URI: missing secret parameter"),
            ("otpauth://totp/alice?secret=", "invalid otpauth URI: missing secret parameter"),
            ("otpauth://totp/alice?secret=MY0", "invalid base32 secret: invalid character '0' at position 3"),
            ("otpauth://totp/alice?secret=MY&secret=MZ", "invalid otpauth URI: parameter secret is given more than once"),
            ("otpauth://totp/alice?secret=MY&digits=6&Digits=6", "invalid otpauth URI: parameter digits is given more than once"),
            ("otpauth://totp/A:alice?secret=MY&issuer=B", "invalid otpauth URI: issuer parameter \"B\" does not match label issuer \"A\""),
            ("otpauth://totp/alice?secret=MY&issuer=", "invalid otpauth URI: issuer parameter is empty"),
            ("otpauth://totp/alice?secret=MY&issuer=a%3Ab", "invalid otpauth URI: issuer must not contain ':'"),
            ("otpauth://totp/alice?secret=MY&algorithm=MD5", "algorithm must be SHA1, SHA256 or SHA512 (got \"MD5\")"),
            ("otpauth://totp/alice?secret=MY&algorithm=SHA-256", "algorithm must be SHA1, SHA256 or SHA512 (got \"SHA-256\")"),
            ("otpauth://totp/alice?secret=MY&digits=9", "digits must be 6, 7 or 8 (got 9)"),
            ("otpauth://totp/alice?secret=MY&digits=+6", "invalid otpauth URI: digits must be a decimal number (got \" 6\")"),
            ("otpauth://totp/alice?secret=MY&digits=six", "invalid otpauth URI: digits must be a decimal number (got \"six\")"),
            ("otpauth://totp/alice?secret=MY&period=0", "period must be 1 to 3600 seconds (got 0)"),
            ("otpauth://totp/alice?secret=MY&period=-30", "invalid otpauth URI: period must be a decimal number of seconds (got \"-30\")"),
            ("otpauth://totp/alice?secret=MY&period=99999999999999999999", "invalid otpauth URI: period must be a decimal number of seconds (got \"99999999999999999999\")"),
            ("otpauth://hotp/alice?secret=MY", "invalid otpauth URI: hotp requires a counter parameter"),
            ("otpauth://hotp/alice?secret=MY&counter=18446744073709551616", "invalid otpauth URI: counter must be a decimal number from 0 to 18446744073709551615 (got \"18446744073709551616\")"),
            ("otpauth://hotp/alice?secret=MY&counter=", "invalid otpauth URI: counter must be a decimal number from 0 to 18446744073709551615 (got \"\")"),
            ("otpauth://totp/alice?secret=MY#frag", "invalid otpauth URI: fragments ('#') are not allowed"),
        ])
    func parseFailures(text: String, message: String) {
        do {
            let uri = try OTPAuthURI(parsing: text)
            Issue.record("accepted \(text) as \(uri)")
        } catch let error as OTPError {
            #expect(error.description == message)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("Secret length limits apply (1...1024 bytes)")
    func secretLength() {
        let long = Base32.encode([UInt8](repeating: 0x42, count: 1025))
        #expect(throws: OTPError.self) { try OTPAuthURI(parsing: "otpauth://totp/x?secret=\(long)") }
    }

    @Test("Length bound: at most 4096 bytes")
    func lengthBound() throws {
        let base = "otpauth://totp/x?secret=MY&image="
        let fits = base + String(repeating: "a", count: 4096 - base.utf8.count)
        #expect(try OTPAuthURI(parsing: fits).account == "x")
        #expect(throws: OTPError.invalidURI("longer than 4096 bytes")) { try OTPAuthURI(parsing: fits + "a") }
    }

    @Test("Irrelevant parameters are ignored: period for HOTP, counter for TOTP")
    func irrelevant() throws {
        let t = try OTPAuthURI(parsing: "otpauth://totp/x?secret=MY&counter=junk")
        #expect(t.counter == 0)
        let h = try OTPAuthURI(parsing: "otpauth://hotp/x?secret=MY&counter=1&period=junk")
        #expect(h.period == 30 && h.counter == 1)
    }
}

extension String {
    /// Replaces the first occurrence of `target` (test helper, avoids Foundation).
    fileprivate func replacingAt(_ target: String, with replacement: String) -> String {
        guard let r = self.firstRange(of: target) else { return self }
        var s = self
        s.replaceSubrange(r, with: replacement)
        return s
    }
}
