import Testing
import WatchwordCore
import WatchwordImport
import WatchwordOTP

private let secretB32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

private func file(_ text: String, path: String = "/home/alice/.google_authenticator") -> ForeignFile {
    ForeignFile(path: path, bytes: Array(text.utf8))
}

private func parseGA(_ text: String) -> (GoogleAuthenticatorFile?, ImportProblems) {
    var problems = ImportProblems()
    let parsed = GoogleAuthenticatorFile.parse(file(text), problems: &problems)
    return (parsed, problems)
}

private func parseOath(_ text: String, now: Int64 = 1_800_000_000) -> ([OathUsersFile.Entry], ImportProblems) {
    var problems = ImportProblems()
    let entries = OathUsersFile.parse(file(text, path: "/etc/users.oath"), issuer: "host", now: now, problems: &problems)
    return (entries, problems)
}

@Suite struct GoogleAuthenticatorFileTests {
    @Test func aTOTPFileWithEveryOption() throws {
        let text = """
            \(secretB32)
            " RATE_LIMIT 3 30 1700000000
            " WINDOW_SIZE 3
            " DISALLOW_REUSE 56666666 56666667
            " TOTP_AUTH
            12345678
            87654321

            """
        let (parsed, problems) = parseGA(text)
        let ga = try #require(parsed, "\(problems.errors)")
        #expect(problems.errors.isEmpty)
        #expect(ga.kind == .totp && ga.period == 30 && ga.lastStep == 56_666_667)
        #expect(ga.scratchCodes == ["12345678", "87654321"])
        #expect(ga.secret == (try Base32.decode(secretB32)))
    }

    /// A file saved with Windows line ends: to Swift "\r\n" is one Character, and the
    /// parser once read the whole file as its first line.
    @Test func aHOTPFileAndCRLF() throws {
        let (parsed, problems) = parseGA("\(secretB32)\r\n\" HOTP_COUNTER 42\r\n")
        let ga = try #require(parsed, "\(problems.errors)")
        #expect(ga.kind == .hotp && ga.counter == 42)
    }

    @Test(arguments: [
        ("", "no secret"),
        ("NOTBASE32!!\n\" TOTP_AUTH\n", "not base32"),
        ("JBSWY3DP\n\" TOTP_AUTH\n", "at least 10"),
        ("\(secretB32)\n", "neither TOTP_AUTH nor HOTP_COUNTER"),
        ("\(secretB32)\n\" TOTP_AUTH\n\" HOTP_COUNTER 1\n", "cannot be both"),
        ("\(secretB32)\n\" TOTP_AUTH\n\" TOTP_AUTH\n", "appears twice"),
        ("\(secretB32)\n\" TOTP_AUTH\nhello\n", "neither an option"),
        ("\(secretB32)\n\" TOTP_AUTH\n\" WINDOW_SIZE x\n", "WINDOW_SIZE must be one number"),
        ("\(secretB32)\n\" TOTP_AUTH\n\" DISALLOW_REUSE -1\n", "DISALLOW_REUSE must list time steps"),
        ("\(secretB32)\n\" HOTP_COUNTER 18446744073709551616\n", "HOTP_COUNTER"),
        ("\(secretB32)\n\" TOTP_AUTH yes\n", "takes no value"),
        ("\(secretB32)\u{0}\n\" TOTP_AUTH\n", "not a text file"),
    ])
    func hostileFilesAreRefusedWithAReason(_ text: String, _ reason: String) {
        let (parsed, problems) = parseGA(text)
        #expect(parsed == nil)
        #expect(problems.errors.contains { $0.message.contains(reason) }, "\(problems.errors)")
    }

    @Test func invalidUTF8BytesAreNotText() {
        var problems = ImportProblems()
        let bytes: [UInt8] = Array(secretB32.utf8) + [0x0A, 0xC3, 0x28, 0x0A]
        #expect(GoogleAuthenticatorFile.parse(ForeignFile(path: "/f", bytes: bytes), problems: &problems) == nil)
        #expect(problems.errors.first?.message.contains("not a text file") == true)
    }

    @Test func tooManyScratchCodesAreAnError() {
        let codes = (0..<(UserRecord.maxRecoveryCodes + 1)).map { String(10_000_000 + $0) }.joined(separator: "\n")
        let (parsed, problems) = parseGA("\(secretB32)\n\" TOTP_AUTH\n\(codes)\n")
        #expect(parsed == nil)
        #expect(problems.errors.contains { $0.message.contains("scratch codes") })
    }

    @Test func messagesNeverQuoteTheSecretOrACode() {
        let texts = ["\(secretB32)X!\n\" TOTP_AUTH\n12345678\n", "\(secretB32)\n\" TOTP_AUTH\n1234567\n"]
        for text in texts {
            let (_, problems) = parseGA(text)
            for problem in problems.errors + problems.warnings {
                #expect(!problem.message.contains(secretB32) && !problem.message.contains("1234567"), "\(problem)")
            }
        }
    }

    @Test func anUnknownOptionIsAWarningOnly() throws {
        let (parsed, problems) = parseGA("\(secretB32)\n\" TOTP_AUTH\n\" SOMETHING_NEW 1\n")
        #expect(parsed != nil)
        #expect(problems.warnings.contains { $0.message.contains("unknown option") && $0.line == 3 })
    }
}

@Suite struct OathUsersFileTests {
    let hex = "3132333435363738393031323334353637383930"

    @Test func timeAndCounterTokens() throws {
        let (entries, problems) = parseOath("""
            # a comment
            HOTP/T30  alice  -  \(hex)
            HOTP      bob    -  \(hex)  41
            HOTP/E/8  carol  -  \(hex)  7

            """)
        #expect(problems.errors.isEmpty, "\(problems.errors)")
        #expect(entries.map(\.user.value) == ["alice", "bob", "carol"])
        #expect(entries[0].enrollment.kind == .totp && entries[0].enrollment.period == 30)
        #expect(entries[1].enrollment.kind == .hotp && entries[1].enrollment.counter == 41)
        #expect(entries[2].enrollment.digits == 8 && entries[2].enrollment.counter == 7)
        #expect(entries[0].enrollment.issuer == "host")
    }

    @Test func aUsedCounterCodeMovesTheCounterOn() throws {
        let hotp = try HOTP(secret: Array("12345678901234567890".utf8))
        let last = hotp.code(counter: 41)
        let (entries, problems) = parseOath("HOTP bob - \(hex) 41 \(last) 2024-05-01T10:00:00L\n")
        #expect(problems.errors.isEmpty, "\(problems.errors)")
        #expect(entries.first?.enrollment.counter == 42)
    }

    @Test(arguments: [
        ("HOTP alice\n", "expected 'TYPE USER PIN SECRET"),
        ("HOTP alice - \("31" * 20) 1 2 3 4\n", "at most 7"),
        ("TOTP alice - \("31" * 20)\n", "unknown token type"),
        ("HOTP ../root - \("31" * 20)\n", "invalid user name"),
        ("HOTP alice - xyz\n", "not hex"),
        ("HOTP alice - 3132\n", "at least 10"),
        ("HOTP alice - \("31" * 20) -5\n", "counter is not a whole number"),
        ("HOTP alice - \("31" * 20) 5 abc\n", "last OTP is not a code of digits"),
        ("HOTP alice - \("31" * 20) 5 123456 yesterday\n", "the time is not"),
        ("HOTP alice - \("31" * 20)\nHOTP alice - \("31" * 20)\n", "already has a token on line 1"),
    ])
    func hostileLinesAreRefusedWithTheirLine(_ text: String, _ reason: String) {
        let (_, problems) = parseOath(text)
        #expect(problems.errors.contains { $0.message.contains(reason) && $0.line != nil }, "\(problems.errors)")
    }

    @Test func theSecretIsNeverQuoted() {
        let (_, problems) = parseOath("HOTP alice - \(hex)zz\nTOTP bob - \(hex)\n")
        for problem in problems.errors + problems.warnings {
            #expect(!problem.message.contains(hex), "\(problem)")
        }
    }
}

private func * (text: String, count: Int) -> String { String(repeating: text, count: count) }
