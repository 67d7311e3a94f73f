import Testing
import WatchwordOTP

/// Inputs that Fuzz/ (the otpauth-uri target) found; each is also in Fuzz/corpus/otpauth-uri/.
@Suite("otpauth:// URIs: fuzzer findings")
struct OTPAuthURIFuzzRegressionTests {
    /// Fuzz/corpus/otpauth-uri/regression-colon-combining-mark: the issuer came from the
    /// parameter, the account began with U+1713 (a combining mark). `string` wrote
    /// "Q-OJQ:\u{1713} café", and the label split by Characters saw no ':' there, since
    /// ":\u{1713}" is one Character: the URI came back with account "Q-OJQ:ᜓ café".
    @Test("A ':' followed by a combining mark still separates issuer and account")
    func colonBeforeCombiningMark() throws {
        let found = "otpauth://totp/%E1%9C%93%20caf%C3%A9?secret=GEZDGNBVGY3TQOJQGEZOptionalD&issuer=Q-OJQ"
        let uri = try OTPAuthURI(parsing: found)
        #expect(uri.account == "\u{1713} café" && uri.issuer == "Q-OJQ")
        #expect(try OTPAuthURI(parsing: uri.string) == uri)

        let split = try OTPAuthURI(parsing: "otpauth://totp/Bank:%CC%81alice?secret=MY")
        #expect(split.issuer == "Bank" && split.account == "\u{301}alice")
        // A label issuer that does not match the parameter is refused, combining mark or not.
        #expect(throws: OTPError.self) {
            try OTPAuthURI(parsing: "otpauth://totp/Bank:%CC%81alice?secret=MY&issuer=Evil")
        }
        #expect(throws: OTPError.invalidURI("label must contain at most one ':' (issuer:account)")) {
            try OTPAuthURI(parsing: "otpauth://totp/a:%CC%81b:c?secret=MY")
        }
        #expect(throws: OTPError.invalidURI("issuer must not contain ':'")) {
            try OTPAuthURI(parsing: "otpauth://totp/alice?secret=MY&issuer=a%3A%CC%81b")
        }
    }

    /// Fuzz/corpus/otpauth-uri/regression-leading-space: no issuer in the label, one in the
    /// parameter. The account kept its leading space, `string` wrote "X:%20alice", and that
    /// parsed to "alice" (spaces after "issuer:" are dropped).
    @Test("An account's leading spaces are dropped whatever the label form")
    func leadingSpaceWithParameterIssuer() throws {
        let uri = try OTPAuthURI(parsing: "otpauth://totp/%20alice?secret=JBSWY3DPEHPK3PXP&issuer=X")
        #expect(uri.account == "alice" && uri.issuer == "X")
        #expect(try OTPAuthURI(parsing: uri.string) == uri)
        #expect(try OTPAuthURI(parsing: "otpauth://totp/%20%20bob?secret=MY").account == "bob")
        #expect(throws: OTPError.invalidURI("label (account name) is empty")) {
            try OTPAuthURI(parsing: "otpauth://totp/%20?secret=MY")
        }
    }

    /// Fuzz/corpus/otpauth-uri/regression-render-too-long (the harness decodes its invalid
    /// UTF-8 bytes to U+FFFD, as here): a 775-byte URI whose 703-byte issuer `string` writes
    /// twice, percent-encoded, in a URI over `maximumLength` that did not parse.
    @Test("Issuer and account are bounded so that string stays within maximumLength")
    func renderedURITooLong() throws {
        let r = { (s: String, n: Int) in String(repeating: s, count: n) }
        let found = "otpauth://totp/%E1%9C%93%20&digits=9?secret=GEZDGGBVGY3ZUIntOpti&issuer=s"
            + r("\u{FFFD}", 150) + "uer=Q-O" + r("\u{FFFD}", 81) + "JQ"
        #expect(found.utf8.count == 775)
        #expect(throws: OTPError.invalidURI("issuer is longer than 256 bytes")) {
            try OTPAuthURI(parsing: found)
        }
        #expect(throws: OTPError.invalidURI("account name is longer than 256 bytes")) {
            try OTPAuthURI(parsing: "otpauth://totp/" + r("a", 257) + "?secret=MY")
        }
        #expect(throws: OTPError.invalidURI("issuer is longer than 256 bytes")) {
            try OTPAuthURI(parsing: "otpauth://totp/" + r("a", 257) + ":b?secret=MY")
        }

        // The largest URI that parses still renders to one that parses back.
        let name = r("\u{E9}", 128)  // 256 bytes, each written as %C3%A9
        let largest = OTPAuthURI(
            kind: .hotp, account: name, issuer: name, secret: Array(repeating: 0xff, count: 1024),
            algorithm: .sha512, digits: 8, counter: .max)
        #expect(largest.string.utf8.count <= OTPAuthURI.maximumLength)
        #expect(try OTPAuthURI(parsing: largest.string) == largest)
    }
}
