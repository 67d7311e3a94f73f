import Foundation
import Testing
import WatchwordCore

/// Parses config text, failing the test with the error if it does not parse.
private func parse(_ text: String) throws -> Config {
    try Config.parse(Array(text.utf8))
}

/// The error message for text that must be refused.
private func refusal(_ text: String) -> String {
    refusal(Array(text.utf8))
}

private func refusal(_ bytes: [UInt8]) -> String {
    do {
        let config = try Config.parse(bytes)
        Issue.record("expected a ConfigError, got \(config)")
        return ""
    } catch {
        return error.message
    }
}

/// The `[policy]`/`[sms]` example of DESIGN.md § Config, verbatim.
let designExample = """
    [policy]
    window = 1                 # TOTP steps accepted either side of now
    max_failures = 5           # consecutive failures before lockout
    lockout_seconds = 30       # first lockout; doubles each further failure
    lockout_max_seconds = 3600

    [sms]
    provider = "none"          # none | command | twilio | twilio-verify | nomado
    code_digits = 6
    code_ttl_seconds = 300
    resend_interval_seconds = 30
    max_per_hour = 5           # per user; SMS costs money and invites abuse
    timeout_seconds = 10

    [sms.command]              # e.g. a GSM modem through gammu-smsd-inject
    argv = ["/usr/bin/gammu-smsd-inject", "TEXT", "{phone}"]   # the text arrives on stdin

    [sms.twilio]               # Twilio Messages API; watchword makes the code
    account_sid = "AC..."
    auth_token = "..."
    from = "+15550000000"
    api_base = "https://api.twilio.com"

    [sms.twilio-verify]        # Twilio Verify: the service makes and checks the code
    account_sid = "AC..."
    auth_token = "..."
    service_sid = "VA..."
    api_base = "https://verify.twilio.com"

    [sms.nomado]               # nomado OTP service: it makes, sends and checks the code
    username = "..."
    password = "..."
    api_base = "https://api.nomado.eu"

    """

/// The `[store]` example of DESIGN.md § Where state lives, verbatim.
let designStoreExample = """
    [store]
    backend = "files"          # files | postgres
    [store.postgres]
    conninfo = "host=db.example.org dbname=watchword user=watchword sslmode=verify-full"
    password_file = "/etc/watchword/pgpass"   # root, 0600
    offline = "deny"           # deny | cached — what a login does when the database is unreachable

    """

@Suite("Config: defaults and every documented key")
struct ConfigKeysTests {
    @Test("empty input, blank lines and comments alone give the defaults", arguments: ["", "\n\n", "# nothing\n  # at all\n\t\n"])
    func defaults(_ text: String) throws {
        let config = try parse(text)
        #expect(config == Config())
        #expect(config.policy.window == 1)
        #expect(config.policy.maxFailures == 5)
        #expect(config.policy.lockoutSeconds == 30)
        #expect(config.policy.lockoutMaxSeconds == 3600)
        #expect(config.policy.hotpLookahead == 10)
        #expect(config.sms.provider == .none)
        #expect(config.sms.codeDigits == 6)
        #expect(config.sms.codeTTLSeconds == 300)
        #expect(config.sms.resendIntervalSeconds == 30)
        #expect(config.sms.maxPerHour == 5)
        #expect(config.sms.timeoutSeconds == 10)
        #expect(config.sms.commandArgv == [])
        #expect(config.sms.twilio.apiBase == "https://api.twilio.com")
        #expect(config.sms.twilioVerify.apiBase == "https://verify.twilio.com")
        #expect(config.sms.nomado.apiBase == "https://api.nomado.eu")
        #expect(config.store.backend == .files)
        #expect(config.store.postgresOffline == .deny)
    }

    @Test("the DESIGN.md example parses verbatim, every value where it belongs")
    func designExampleParses() throws {
        let config = try parse(designExample)
        #expect(config.policy.window == 1)
        #expect(config.policy.maxFailures == 5)
        #expect(config.policy.lockoutSeconds == 30)
        #expect(config.policy.lockoutMaxSeconds == 3600)
        #expect(config.sms.provider == .none)
        #expect(config.sms.codeDigits == 6)
        #expect(config.sms.codeTTLSeconds == 300)
        #expect(config.sms.resendIntervalSeconds == 30)
        #expect(config.sms.maxPerHour == 5)
        #expect(config.sms.timeoutSeconds == 10)
        #expect(config.sms.commandArgv == ["/usr/bin/gammu-smsd-inject", "TEXT", "{phone}"])
        #expect(config.sms.twilio.accountSid == "AC...")
        #expect(config.sms.twilio.authToken == "...")
        #expect(config.sms.twilio.from == "+15550000000")
        #expect(config.sms.twilio.apiBase == "https://api.twilio.com")
        #expect(config.sms.twilioVerify.accountSid == "AC...")
        #expect(config.sms.twilioVerify.authToken == "...")
        #expect(config.sms.twilioVerify.serviceSid == "VA...")
        #expect(config.sms.twilioVerify.apiBase == "https://verify.twilio.com")
        #expect(config.sms.nomado.username == "...")
        #expect(config.sms.nomado.password == "...")
        #expect(config.sms.nomado.apiBase == "https://api.nomado.eu")
    }

    @Test("the DESIGN.md example with each provider chosen parses", arguments: SMSSettings.Provider.allCases)
    func designExampleWithProvider(_ provider: SMSSettings.Provider) throws {
        let text = designExample.replacingOccurrences(
            of: "provider = \"none\"", with: "provider = \"\(provider.rawValue)\"")
        #expect(text != designExample || provider == .none)
        let config = try parse(text)
        #expect(config.sms.provider == provider)
    }

    @Test("the DESIGN.md store example parses verbatim, and postgres is accepted with a conninfo")
    func storeExample() throws {
        let config = try parse(designStoreExample)
        #expect(config.store.backend == .files)
        #expect(config.store.postgresConninfo == "host=db.example.org dbname=watchword user=watchword sslmode=verify-full")
        #expect(config.store.postgresPasswordFile == "/etc/watchword/pgpass")
        #expect(config.store.postgresOffline == .deny)

        let postgres = try parse(
            designStoreExample.replacingOccurrences(of: "\"files\"", with: "\"postgres\"")
                .replacingOccurrences(of: "\"deny\"", with: "\"cached\""))
        #expect(postgres.store.backend == .postgres)
        #expect(postgres.store.postgresOffline == .cached)

        let message = refusal("[store]\nbackend = \"postgres\"\n")
        #expect(message.contains("store.postgres.conninfo"))
    }

    @Test("every policy key and hotp_lookahead are read")
    func policyKeys() throws {
        let config = try parse(
            """
            [policy]
            window = 3
            max_failures = 7
            lockout_seconds = 45
            lockout_max_seconds = 900
            hotp_lookahead = 20
            """)
        #expect(config.policy.window == 3)
        #expect(config.policy.maxFailures == 7)
        #expect(config.policy.lockoutSeconds == 45)
        #expect(config.policy.lockoutMaxSeconds == 900)
        #expect(config.policy.hotpLookahead == 20)
    }

    @Test("dotted keys, quoted keys and integers with underscores are understood")
    func tomlSpellings() throws {
        let config = try parse(
            """
            policy.window = 2
            "policy".'max_failures' = 1_0
            [sms."twilio-verify"]
            service_sid = 'VA\\literal'
            """)
        #expect(config.policy.window == 2)
        #expect(config.policy.maxFailures == 10)
        #expect(config.sms.twilioVerify.serviceSid == "VA\\literal")
    }

    @Test("basic-string escapes are decoded, literal strings are taken as written")
    func escapes() throws {
        let config = try parse(
            #"""
            [sms.twilio]
            from = "\"+1\\555\u00e9\U0001F600"
            auth_token = 'C:\raw\n'
            """#)
        #expect(config.sms.twilio.from == "\"+1\\555\u{E9}\u{1F600}")
        #expect(config.sms.twilio.authToken == #"C:\raw\n"#)
    }

    @Test("an argv array may span lines with comments and a trailing comma")
    func multiLineArray() throws {
        let config = try parse(
            """
            [sms]
            provider = "command"
            [sms.command]
            argv = [
              "/usr/local/bin/send-sms",  # the program
              # the number
              "{phone}",
            ]
            """)
        #expect(config.sms.commandArgv == ["/usr/local/bin/send-sms", "{phone}"])
    }

    @Test("CRLF line endings, blank lines and comments are accepted")
    func crlf() throws {
        let text = "# watchword\r\n\r\n[policy]   # the policy\r\nwindow = 2\r\n\r\n# done\r\nmax_failures = 9 # nine\r\n"
        let config = try parse(text)
        #expect(config.policy.window == 2)
        #expect(config.policy.maxFailures == 9)
    }

    @Test("a UTF-8 byte order mark at the start is skipped")
    func byteOrderMark() throws {
        let config = try Config.parse([0xEF, 0xBB, 0xBF] + Array("[policy]\nwindow = 4\n".utf8))
        #expect(config.policy.window == 4)
    }

    @Test("a file of exactly 64 KiB is accepted")
    func exactlyAtSizeLimit() throws {
        var text = "[policy]\nwindow = 2\n"
        while text.utf8.count < 64 * 1024 - 64 { text += "# " + String(repeating: "x", count: 60) + "\n" }
        text += "#" + String(repeating: "y", count: 64 * 1024 - text.utf8.count - 2) + "\n"
        #expect(text.utf8.count == 64 * 1024)
        #expect(try parse(text).policy.window == 2)
    }
}

@Suite("Config: every refusal names the key and the line")
struct ConfigErrorTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let text: String
        /// Substrings the message must contain (the key, the line, the reason).
        let mentions: [String]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "unknown key", text: "[policy]\nwindw = 1\n", mentions: ["line 2", "policy.windw", "unknown key"]),
        Case(name: "unknown key at the top", text: "\n\nverbose = 1\n", mentions: ["line 3", "verbose", "unknown key"]),
        Case(name: "unknown table", text: "[policy]\nwindow = 1\n[polcy]\n", mentions: ["line 3", "[polcy]", "unknown table"]),
        Case(name: "unknown sub-table", text: "[sms.twillio]\n", mentions: ["line 1", "sms.twillio"]),
        Case(
            name: "string for an integer", text: "[policy]\nmax_failures = \"5\"\n",
            mentions: ["line 2", "policy.max_failures", "must be an integer", "not a string"]),
        Case(
            name: "boolean for an integer", text: "[sms]\ncode_digits = true\n",
            mentions: ["line 2", "sms.code_digits", "must be an integer"]),
        Case(
            name: "integer for a string", text: "[sms.twilio]\nfrom = 15550000000\n",
            mentions: ["line 2", "sms.twilio.from", "must be a string"]),
        Case(
            name: "string for an array", text: "[sms.command]\nargv = \"/bin/true\"\n",
            mentions: ["line 2", "sms.command.argv", "array of strings"]),
        Case(
            name: "array of integers for argv", text: "[sms.command]\nargv = [1, 2]\n",
            mentions: ["line 2", "sms.command.argv", "array of strings"]),
        Case(
            name: "negative", text: "[policy]\nwindow = -1\n", mentions: ["line 2", "policy.window", "out of range"]),
        Case(
            name: "zero failures", text: "[policy]\nmax_failures = 0\n",
            mentions: ["line 2", "policy.max_failures", "out of range"]),
        Case(
            name: "above the maximum", text: "[policy]\n\nwindow = 11\n",
            mentions: ["line 3", "policy.window", "out of range"]),
        Case(
            name: "larger than 64 bits", text: "[policy]\nlockout_seconds = 99999999999999999999\n",
            mentions: ["line 2", "policy.lockout_seconds", "99999999999999999999", "out of range"]),
        Case(
            name: "unknown provider", text: "[sms]\nprovider = \"sms77\"\n",
            mentions: ["line 2", "sms.provider", "sms77", "twilio-verify"]),
        Case(
            name: "unknown store backend", text: "[store]\nbackend = \"mysql\"\n",
            mentions: ["line 2", "store.backend", "mysql"]),
        Case(name: "float", text: "[policy]\nwindow = 1.5\n", mentions: ["line 2", "policy.window", "float"]),
        Case(name: "exponent", text: "[policy]\nwindow = 1e3\n", mentions: ["line 2", "policy.window", "float"]),
        Case(name: "inf", text: "[policy]\nwindow = inf\n", mentions: ["line 2", "policy.window"]),
        Case(
            name: "date", text: "[policy]\nwindow = 2024-01-01\n",
            mentions: ["line 2", "policy.window", "dates"]),
        Case(
            name: "time", text: "[policy]\nwindow = 07:32:00\n",
            mentions: ["line 2", "policy.window", "dates"]),
        Case(
            name: "inline table", text: "[sms]\ntwilio = { from = \"+1\" }\n",
            mentions: ["line 2", "sms.twilio", "inline tables"]),
        Case(name: "array of tables", text: "[policy]\n[[sms]]\n", mentions: ["line 2", "arrays of tables"]),
        Case(
            name: "multi-line basic string", text: "[sms.twilio]\nfrom = \"\"\"\n+1\n\"\"\"\n",
            mentions: ["line 2", "sms.twilio.from", "multi-line"]),
        Case(
            name: "multi-line literal string", text: "[sms.twilio]\nfrom = '''+1'''\n",
            mentions: ["line 2", "sms.twilio.from", "multi-line"]),
        Case(
            name: "duplicate key", text: "[policy]\nwindow = 1\nmax_failures = 3\nwindow = 2\n",
            mentions: ["line 4", "policy.window", "twice"]),
        Case(
            name: "duplicate key through a dotted key", text: "policy.window = 1\n[policy]\nwindow = 2\n",
            mentions: ["line 3", "policy.window", "twice"]),
        Case(name: "duplicate table", text: "[policy]\nwindow = 1\n\n[policy]\n", mentions: ["line 4", "[policy]", "twice"]),
        Case(
            name: "unterminated string", text: "[sms.twilio]\nfrom = \"+1555\n",
            mentions: ["line 2", "sms.twilio.from", "unterminated"]),
        Case(
            name: "unterminated string at the end of the file", text: "[sms.twilio]\nfrom = \"+1555",
            mentions: ["line 2", "sms.twilio.from", "unterminated"]),
        Case(
            name: "unterminated literal string", text: "[sms.twilio]\nfrom = '+1555\n",
            mentions: ["line 2", "sms.twilio.from", "unterminated"]),
        Case(
            name: "unknown escape", text: "[sms.twilio]\nfrom = \"a\\qb\"\n",
            mentions: ["line 2", "sms.twilio.from", "escape"]),
        Case(
            name: "short unicode escape", text: "[sms.twilio]\nfrom = \"\\u12\"\n",
            mentions: ["line 2", "sms.twilio.from", "escape"]),
        Case(
            name: "surrogate unicode escape", text: "[sms.twilio]\nfrom = \"\\uD800\"\n",
            mentions: ["line 2", "sms.twilio.from", "escape"]),
        Case(
            name: "control character in a string", text: "[sms.twilio]\nfrom = \"+1\u{1}\"\n",
            mentions: ["line 2", "sms.twilio.from"]),
        Case(
            name: "escaped control character in a string", text: "[sms.twilio]\nfrom = \"+1\\n\"\n",
            mentions: ["line 2", "sms.twilio.from", "control character"]),
        Case(
            name: "unterminated array", text: "[sms.command]\nargv = [\"/bin/x\",\n",
            mentions: ["sms.command.argv", "unterminated array"]),
        Case(
            name: "two values on a line", text: "[policy]\nwindow = 1 max_failures = 2\n",
            mentions: ["line 2", "one key = value per line"]),
        Case(name: "bare string value", text: "[sms]\nprovider = none\n", mentions: ["line 2", "sms.provider", "strings need quotes"]),
        Case(name: "missing value", text: "[policy]\nwindow =\n", mentions: ["line 2", "policy.window"]),
        Case(name: "missing equals sign", text: "[policy]\nwindow 1\n", mentions: ["line 2", "policy.window", "'='"]),
        Case(name: "leading zero", text: "[policy]\nwindow = 01\n", mentions: ["line 2", "policy.window"]),
        Case(name: "hex integer", text: "[policy]\nwindow = 0x1\n", mentions: ["line 2", "policy.window"]),
        Case(name: "unclosed table header", text: "\n[policy\nwindow = 1\n", mentions: ["line 2", "']'"]),
        Case(name: "a lone carriage return ends no line", text: "[policy]\rwindow = 1\n", mentions: ["line 1"]),
        Case(
            name: "lockout_max_seconds below lockout_seconds",
            text: "[policy]\nlockout_seconds = 600\nlockout_max_seconds = 300\n",
            mentions: ["policy.lockout_max_seconds", "policy.lockout_seconds", "300", "600"]),
        Case(
            name: "command provider without argv", text: "[sms]\nprovider = \"command\"\n",
            mentions: ["sms.command.argv", "absolute"]),
        Case(
            name: "command provider with a relative program",
            text: "[sms]\nprovider = \"command\"\n[sms.command]\nargv = [\"gammu-smsd-inject\"]\n",
            mentions: ["sms.command.argv", "absolute"]),
    ]

    @Test("refused, with the key, line and reason in the message", arguments: cases)
    func refused(_ c: Case) {
        let message = refusal(c.text)
        for mention in c.mentions {
            #expect(message.contains(mention), "\(c.name): '\(message)' does not mention \(mention)")
        }
    }

    static let providerNeeds: [(String, String, [String])] = [
        ("twilio", "[sms.twilio]", ["account_sid", "auth_token", "from"]),
        ("twilio-verify", "[sms.twilio-verify]", ["account_sid", "auth_token", "service_sid"]),
        ("nomado", "[sms.nomado]", ["username", "password"]),
    ]

    @Test("a provider without one of its credentials is refused naming the missing key")
    func missingCredentials() {
        for (provider, header, keys) in Self.providerNeeds {
            for missing in keys {
                var text = "[sms]\nprovider = \"\(provider)\"\n\(header)\n"
                for key in keys where key != missing { text += "\(key) = \"x\"\n" }
                let table = String(header.dropFirst().dropLast())
                let message = refusal(text)
                #expect(message.contains("\(table).\(missing)"), "\(provider) without \(missing): \(message)")
                #expect(message.contains("not set"), "\(message)")

                // With the key present but empty it is just as missing.
                let empty = refusal(text + "\(missing) = \"\"\n")
                #expect(empty.contains("\(table).\(missing)"), "\(provider) with empty \(missing): \(empty)")
            }
            var complete = "[sms]\nprovider = \"\(provider)\"\n\(header)\n"
            for key in keys { complete += "\(key) = \"x\"\n" }
            #expect((try? parse(complete))?.sms.provider.rawValue == provider)
        }
    }

    @Test("a file that is not UTF-8 is refused, naming the line of the bad bytes")
    func notUTF8() {
        let message = refusal(Array("[sms.twilio]\nfrom = \"".utf8) + [0xFF, 0xFE] + Array("\"\n".utf8))
        #expect(message.contains("UTF-8"))
        #expect(message.contains("line 2:"))
        let overlong = refusal(Array("\n\n# ".utf8) + [0xC0, 0xAF] + Array("\n".utf8))
        #expect(overlong.contains("line 3:") && overlong.contains("UTF-8"))
        let surrogate = refusal(Array("# ".utf8) + [0xED, 0xA0, 0x80])
        #expect(surrogate.contains("line 1:") && surrogate.contains("UTF-8"))
    }

    @Test("a file larger than 64 KiB is refused, even if it is all comments")
    func tooLarge() {
        let text = "[policy]\n" + String(repeating: "#" + String(repeating: "x", count: 1023) + "\n", count: 64)
        #expect(text.utf8.count > 64 * 1024)
        let message = refusal(text)
        #expect(message.contains("65536") || message.contains("64 KiB"))
    }

    @Test("a control character in a comment is refused")
    func controlInComment() {
        #expect(refusal("# bell \u{7}\n").contains("line 1"))
    }

    @Test("the error names the file it came from")
    func namesThePath() {
        do {
            _ = try Config.parse(Array("[policy]\nwindw = 1\n".utf8), path: "/etc/watchword/config.toml")
            Issue.record("accepted an unknown key")
        } catch {
            #expect(error.message.hasPrefix("/etc/watchword/config.toml: line 2:"))
        }
    }
}

@Suite("Config: provider api_base URLs")
struct APIBaseTests {
    @Test(
        "https anywhere, plain http only to loopback",
        arguments: [
            "https://api.twilio.com", "https://proxy.example.org:8443/twilio", "HTTPS://API.EXAMPLE.COM",
            "http://127.0.0.1", "http://127.0.0.1:8080", "http://127.255.1.2:1/base", "http://localhost",
            "http://localhost:9000", "http://LocalHost:9000", "http://[::1]", "http://[::1]:8443/x",
        ])
    func accepted(_ url: String) throws {
        let base = try #require(APIBase(url))
        #expect(!base.text.hasSuffix("/"))
        let config = try parse("[sms.twilio]\napi_base = \"\(url)\"\n")
        #expect(config.sms.twilio.apiBase == url)
    }

    @Test("loopback is recognized as such")
    func loopbackFlag() throws {
        #expect(try #require(APIBase("http://127.0.0.1:80")).isLoopback)
        #expect(try #require(APIBase("https://localhost")).isLoopback)
        #expect(try #require(APIBase("http://[::1]:1")).isLoopback)
        #expect(try #require(APIBase("https://api.twilio.com")).isLoopback == false)
    }

    @Test("a trailing slash is dropped so paths can be appended")
    func trailingSlash() throws {
        let config = try parse("[sms.nomado]\napi_base = \"https://api.nomado.eu/\"\n")
        #expect(config.sms.nomado.apiBase == "https://api.nomado.eu")
    }

    @Test(
        "every trailing slash is dropped, so the text reads back as itself (Fuzz/ config found this)",
        arguments: ["https://h//", "https://h/base///", "http://127.0.0.1:8080//"])
    func trailingSlashes(_ url: String) throws {
        let base = try #require(APIBase(url))
        #expect(!base.text.hasSuffix("/"))
        #expect(try #require(APIBase(base.text)).text == base.text)
        let config = try parse("[sms.nomado]\napi_base = \"\(url)\"\n")
        let again = try parse("[sms.nomado]\napi_base = \"\(config.sms.nomado.apiBase)\"\n")
        #expect(again == config)
    }

    @Test(
        "refused: plain http off loopback, user info, other schemes, garbage",
        arguments: [
            "http://api.twilio.com", "http://10.0.0.1", "http://128.0.0.1", "http://127.0.0.1.evil.example",
            "http://localhost.evil.example", "http://127.0.0.256", "http://127.0.0", "http://[::2]",
            "http://[::1", "http://127.0.0.1@evil.example", "https://a@b", "https://user:pw@api.twilio.com",
            "ftp://api.twilio.com", "api.twilio.com", "//api.twilio.com", "https://", "https:///path", "",
            "garbage", "https://host:0", "https://host:65536", "https://host:port", "https://api.twilio.com?x=1",
            "https://api.twilio.com#frag", "https://api twilio.com",
        ])
    func refused(_ url: String) {
        #expect(APIBase(url) == nil)
        for table in ["sms.twilio", "sms.twilio-verify", "sms.nomado"] {
            let message = refusal("[\(table)]\napi_base = \"\(url)\"\n")
            #expect(message.contains("line 2") && message.contains("\(table).api_base"), "\(message)")
        }
    }
}

@Suite("TOMLParser: the document it builds")
struct TOMLParserTests {
    @Test("entries carry their full dotted path, typed value and line; tables their line")
    func document() throws {
        let text = """
            top = "t"
            [a]
            n = -42
            b = true
            'q k' = 'lit'

            [a."b.c"]
            list = [1, "two", false, []]
            """
        let doc = try TOMLParser.parse(Array(text.utf8))
        #expect(doc.entry("top")?.value == .string("t"))
        #expect(doc.entry("top")?.line == 1)
        #expect(doc.entry("a.n")?.value == .integer(-42))
        #expect(doc.entry("a.n")?.line == 3)
        #expect(doc.entry("a.b")?.value == .boolean(true))
        #expect(doc.entry("a.b")?.line == 4)
        #expect(doc.entry("a.q k")?.value == .string("lit"))
        #expect(doc.entry("a.q k")?.line == 5)
        #expect(doc.entry("a.b.c.list")?.value == .array([.integer(1), .string("two"), .boolean(false), .array([])]))
        #expect(doc.entry("a.b.c.list")?.line == 8)
        #expect(doc.tables.map(\.path) == ["a", "a.b.c"] && doc.tables.map(\.line) == [2, 7])
        #expect(doc.keys.map(\.path) == ["top", "a.n", "a.b", "a.q k", "a.b.c.list"])
    }

    @Test("integer limits are exactly those of Int64")
    func integerLimits() throws {
        let doc = try TOMLParser.parse(Array("max = 9223372036854775807\nmin = -9223372036854775807\n".utf8))
        #expect(doc.entry("max")?.value == .integer(Int64.max))
        #expect(doc.entry("min")?.value == .integer(-Int64.max))
        #expect(throws: TOMLError.self) { try TOMLParser.parse(Array("x = 9223372036854775808\n".utf8)) }
    }

    @Test("errors carry the line they stand on")
    func errorLines() {
        func line(_ text: String) -> Int? {
            do {
                _ = try TOMLParser.parse(Array(text.utf8))
                return nil
            } catch { return error.line }
        }
        #expect(line("a = 1\nb = 1.5\n") == 2)
        #expect(line("a = [\n1,\n2.5]\n") == 3)
        #expect(line("\n\n\n[[t]]\n") == 4)
        #expect(line("a = 1\r\nb = 2\r\na = 3\r\n") == 3)
        #expect(line("a = 1\n\n") == nil)
    }

    @Test("an array of more than 256 items is refused")
    func arrayLimit() {
        let items = (0..<257).map(String.init).joined(separator: ",")
        #expect(throws: TOMLError.self) { try TOMLParser.parse(Array("a = [\(items)]\n".utf8)) }
        let fine = (0..<256).map(String.init).joined(separator: ",")
        #expect((try? TOMLParser.parse(Array("a = [\(fine)]\n".utf8))) != nil)
    }
}

@Suite("Config: the offline cache's bounds (store.postgres.offline_max_age, offline_recovery)")
struct OfflineBoundsConfigTests {
    @Test func defaultsAreADayAndNoRecoveryCodes() throws {
        let config = try parse("")
        #expect(config.store.postgresOfflineMaxAge == 86_400)
        #expect(config.store.postgresOfflineRecovery == false)
    }

    @Test func valuesAreRead() throws {
        let config = try parse("[store.postgres]\noffline_max_age = 3600\noffline_recovery = true\n")
        #expect(config.store.postgresOfflineMaxAge == 3600)
        #expect(config.store.postgresOfflineRecovery == true)
    }

    @Test("out of range or of the wrong type is an error naming the key",
          arguments: ["offline_max_age = 10", "offline_max_age = 604801", "offline_max_age = \"1d\"",
                      "offline_recovery = 1", "offline_recovery = \"yes\""])
    func badValues(_ line: String) {
        do {
            _ = try parse("[store.postgres]\n\(line)\n")
            Issue.record("accepted: \(line)")
        } catch {
            #expect("\(error)".contains(String(line.prefix { $0 != " " })), "\(error)")
        }
    }
}
