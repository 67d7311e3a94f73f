/// The settings in `/etc/watchword/config.toml`; a missing file means these defaults.
public struct Config: Sendable, Equatable {
    public static let defaultPath = "/etc/watchword/config.toml"

    public var policy = Policy()
    public var sms = SMSSettings()
    public var store = StoreSettings()
    /// `[enrollment] issuer`: the name apps show above the account for every token made
    /// (enroll, enroll_at_login); nil means this host's name.
    public var enrollmentIssuer: String?

    public init() {}

    /// An issuer is 1 to 128 characters, none of them ':' or a control character.
    public static func isValidIssuer(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 128
            && !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == ":" })
    }
}

/// `[policy]`: the TOTP window and the lockout rules.
public struct Policy: Sendable, Equatable {
    /// TOTP steps accepted either side of now.
    public var window = 1
    /// Consecutive failures before lockout.
    public var maxFailures = 5
    /// The first lockout; it doubles with each further failure.
    public var lockoutSeconds = 30
    public var lockoutMaxSeconds = 3600
    /// HOTP counter values accepted ahead of the stored one.
    public var hotpLookahead = 10

    public init() {}
}

/// `[sms]` and its provider sections.
public struct SMSSettings: Sendable, Equatable {
    public enum Provider: String, Sendable, CaseIterable {
        case none, command, twilio
        case twilioVerify = "twilio-verify"
        case nomado
    }
    public struct Twilio: Sendable, Equatable {
        public var accountSid = "", authToken = "", from = "", apiBase = "https://api.twilio.com"
        public init() {}
    }
    public struct TwilioVerify: Sendable, Equatable {
        public var accountSid = "", authToken = "", serviceSid = "", apiBase = "https://verify.twilio.com"
        public init() {}
    }
    public struct Nomado: Sendable, Equatable {
        public var username = "", password = "", apiBase = "https://api.nomado.eu"
        public init() {}
    }

    public var provider = Provider.none
    public var codeDigits = 6
    public var codeTTLSeconds = 300
    public var resendIntervalSeconds = 30
    /// Texts per user in any hour.
    public var maxPerHour = 5
    /// Texts for all users together in any hour: a cap on the bill if something goes wrong.
    public var maxPerHourTotal = 100
    /// Bounds each send and each check (the PAM module's `timeout=` must be larger).
    public var timeoutSeconds = 10
    /// `sms.command.argv`: the program and its words; `{phone}` is replaced. The text goes
    /// to the program's standard input, never into its argv (see `commandArgvProblem`).
    public var commandArgv: [String] = []
    public var twilio = Twilio()
    public var twilioVerify = TwilioVerify()
    public var nomado = Nomado()

    public init() {}

    /// The smallest `sms.code_digits`: with fewer, a texted code is too easy to guess
    /// (4 digits and 3 tries per text is 1 in 3,333).
    public static let codeDigitsRange = 6...10

    /// Placeholders that would put the text, code included, into the program's argv, which
    /// every local user can read in /proc/PID/cmdline.
    public static let commandForbiddenPlaceholders = ["{message}", "{code}"]

    /// Why `argv` may not be run as `sms.command.argv`, or nil when it may.
    public static func commandArgvProblem(_ argv: [String]) -> String? {
        for placeholder in commandForbiddenPlaceholders where argv.contains(where: { $0.contains(placeholder) }) {
            return "sms.command.argv contains \(placeholder): the code must not be on the command line, where every local user can read it; the text is written to the program's standard input (e.g. [\"/usr/bin/gammu-smsd-inject\", \"TEXT\", \"{phone}\"])"
        }
        return nil
    }
}

/// `[store]`: where state lives.
public struct StoreSettings: Sendable, Equatable {
    public enum Backend: String, Sendable, CaseIterable { case files, postgres }
    public enum Offline: String, Sendable, CaseIterable { case deny, cached }
    public var backend = Backend.files
    public var postgresConninfo = ""
    public var postgresPasswordFile = ""
    public var postgresOffline = Offline.deny
    /// `offline = "cached"`: how old (seconds since this host last heard the database's
    /// record) a user's cached entry may be and still let the user in.
    public var postgresOfflineMaxAge = 86_400
    public static let offlineMaxAgeRange = 300...604_800
    /// `offline = "cached"`: whether recovery codes are accepted offline. Off by default: a
    /// recovery code re-issued or a token revoked elsewhere is known here only at the next
    /// contact with the database.
    public var postgresOfflineRecovery = false
}

/// A config file that could not be used, naming the file, the key and the line.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Config {
    /// Loads and checks the config file: a missing file means defaults, unless `required`
    /// (a file named by the module's `config=`: a typo there must not quietly mean another
    /// store); a file that is a symlink, not root's, readable by others, too large, or
    /// invalid is an error.
    public static func load(path: String, required: Bool = false) throws(ConfigError) -> Config {
        let bytes: [UInt8]?
        do {
            bytes = try readTrustedFile(path, limit: TOMLParser.maxSize)
        } catch {
            throw ConfigError("config \(error)")
        }
        guard let bytes else {
            if required { throw ConfigError("config \(path) does not exist (it is named by config= on the module line)") }
            return Config()
        }
        return try parse(bytes, path: path)
    }

    /// Parses config text; every unknown key, wrong type or out-of-range value is an error
    /// naming the key and its line.
    public static func parse(_ bytes: [UInt8], path: String = "config") throws(ConfigError) -> Config {
        let document: TOMLDocument
        do {
            document = try TOMLParser.parse(bytes)
        } catch {
            throw ConfigError("\(path): \(error)")
        }
        var reader = KeyReader(document: document, path: path)
        var config = Config()
        config.policy.window = try reader.int("policy.window", 0...10, default: 1)
        config.policy.maxFailures = try reader.int("policy.max_failures", 1...1000, default: 5)
        config.policy.lockoutSeconds = try reader.int("policy.lockout_seconds", 1...86_400, default: 30)
        config.policy.lockoutMaxSeconds = try reader.int(
            "policy.lockout_max_seconds", 1...2_592_000, default: 3600)
        config.policy.hotpLookahead = try reader.int("policy.hotp_lookahead", 0...100, default: 10)
        if config.policy.lockoutMaxSeconds < config.policy.lockoutSeconds {
            throw ConfigError(
                "\(path): policy.lockout_max_seconds (\(config.policy.lockoutMaxSeconds)) is smaller than policy.lockout_seconds (\(config.policy.lockoutSeconds))"
            )
        }

        config.sms.provider = try reader.choice("sms.provider", default: .none)
        config.sms.codeDigits = try reader.int("sms.code_digits", SMSSettings.codeDigitsRange, default: 6)
        config.sms.codeTTLSeconds = try reader.int("sms.code_ttl_seconds", 30...3600, default: 300)
        config.sms.resendIntervalSeconds = try reader.int("sms.resend_interval_seconds", 0...3600, default: 30)
        config.sms.maxPerHour = try reader.int("sms.max_per_hour", 1...1000, default: 5)
        config.sms.maxPerHourTotal = try reader.int("sms.max_per_hour_total", 1...100_000, default: 100)
        config.sms.timeoutSeconds = try reader.int("sms.timeout_seconds", 1...120, default: 10)
        config.sms.commandArgv = try reader.strings("sms.command.argv")
        // Whatever the provider: an argv that would put the code on the command line is
        // never right, and should not wait to be found until someone switches to it.
        if let problem = SMSSettings.commandArgvProblem(config.sms.commandArgv) {
            let line = document.entry("sms.command.argv").map { "line \($0.line): " } ?? ""
            throw ConfigError("\(path): \(line)\(problem)")
        }
        config.sms.twilio.accountSid = try reader.string("sms.twilio.account_sid")
        config.sms.twilio.authToken = try reader.string("sms.twilio.auth_token")
        config.sms.twilio.from = try reader.string("sms.twilio.from")
        config.sms.twilio.apiBase = try reader.url("sms.twilio.api_base", default: config.sms.twilio.apiBase)
        config.sms.twilioVerify.accountSid = try reader.string("sms.twilio-verify.account_sid")
        config.sms.twilioVerify.authToken = try reader.string("sms.twilio-verify.auth_token")
        config.sms.twilioVerify.serviceSid = try reader.string("sms.twilio-verify.service_sid")
        config.sms.twilioVerify.apiBase = try reader.url(
            "sms.twilio-verify.api_base", default: config.sms.twilioVerify.apiBase)
        config.sms.nomado.username = try reader.string("sms.nomado.username")
        config.sms.nomado.password = try reader.string("sms.nomado.password")
        config.sms.nomado.apiBase = try reader.url("sms.nomado.api_base", default: config.sms.nomado.apiBase)

        config.store.backend = try reader.choice("store.backend", default: .files)
        config.store.postgresConninfo = try reader.string("store.postgres.conninfo")
        config.store.postgresPasswordFile = try reader.string("store.postgres.password_file")
        config.store.postgresOffline = try reader.choice("store.postgres.offline", default: .deny)
        config.store.postgresOfflineMaxAge = try reader.int(
            "store.postgres.offline_max_age", StoreSettings.offlineMaxAgeRange, default: 86_400)
        config.store.postgresOfflineRecovery = try reader.bool("store.postgres.offline_recovery", default: false)

        let issuer = try reader.string("enrollment.issuer")
        if !issuer.isEmpty || document.entry("enrollment.issuer") != nil {
            guard Config.isValidIssuer(issuer) else {
                let line = document.entry("enrollment.issuer").map { "line \($0.line): " } ?? ""
                throw ConfigError("\(path): \(line)enrollment.issuer must be 1 to 128 characters without ':' or control characters")
            }
            config.enrollmentIssuer = issuer
        }

        try reader.rejectUnknown(tables: [
            "policy", "sms", "sms.command", "sms.twilio", "sms.twilio-verify", "sms.nomado", "store",
            "store.postgres", "enrollment",
        ])
        try config.checkProvider(path: path, document: document)
        return config
    }

    /// The chosen SMS provider must have what it needs.
    private func checkProvider(path: String, document: TOMLDocument) throws(ConfigError) {
        func need(_ key: String, _ value: String) throws(ConfigError) {
            if value.isEmpty {
                throw ConfigError("\(path): sms.provider is \"\(sms.provider.rawValue)\" but \(key) is not set")
            }
        }
        switch sms.provider {
        case .none: break
        case .command:
            guard let first = sms.commandArgv.first, first.hasPrefix("/") else {
                throw ConfigError(
                    "\(path): sms.provider is \"command\" but sms.command.argv is not a list starting with an absolute program path"
                )
            }
            if !sms.commandArgv.contains(where: { $0.contains("{phone}") }) {
                throw ConfigError("\(path): sms.command.argv has no {phone}: the text would not reach the user")
            }
        case .twilio:
            try need("sms.twilio.account_sid", sms.twilio.accountSid)
            try need("sms.twilio.auth_token", sms.twilio.authToken)
            try need("sms.twilio.from", sms.twilio.from)
        case .twilioVerify:
            try need("sms.twilio-verify.account_sid", sms.twilioVerify.accountSid)
            try need("sms.twilio-verify.auth_token", sms.twilioVerify.authToken)
            try need("sms.twilio-verify.service_sid", sms.twilioVerify.serviceSid)
        case .nomado:
            try need("sms.nomado.username", sms.nomado.username)
            try need("sms.nomado.password", sms.nomado.password)
        }
        if store.backend == .postgres {
            try need("store.postgres.conninfo", store.postgresConninfo)
        }
    }
}

/// Reads typed keys out of a document and remembers which it has read, so that whatever is
/// left over can be named as unknown.
private struct KeyReader {
    let document: TOMLDocument
    let path: String
    /// The keys asked for: an array, as a Set's first use costs a login 130 k instructions
    /// of runtime type lookup and there are about 30.
    var known: [String] = []

    init(document: TOMLDocument, path: String) {
        self.document = document
        self.path = path
    }

    private func wrongType(_ key: String, _ entry: TOMLDocument.Entry, _ expected: String) -> ConfigError {
        ConfigError("\(path): line \(entry.line): \(key) must be \(expected), not \(entry.value.typeName)")
    }

    mutating func int(_ key: String, _ range: ClosedRange<Int>, default value: Int) throws(ConfigError) -> Int {
        known.append(key)
        guard let entry = document.entry(key) else { return value }
        guard case .integer(let n) = entry.value else { throw wrongType(key, entry, "an integer") }
        guard n >= Int64(range.lowerBound) && n <= Int64(range.upperBound) else {
            throw ConfigError(
                "\(path): line \(entry.line): \(key) = \(n) is out of range (\(range.lowerBound) to \(range.upperBound))")
        }
        return Int(n)
    }

    mutating func bool(_ key: String, default value: Bool) throws(ConfigError) -> Bool {
        known.append(key)
        guard let entry = document.entry(key) else { return value }
        guard case .boolean(let b) = entry.value else { throw wrongType(key, entry, "true or false") }
        return b
    }

    mutating func string(_ key: String) throws(ConfigError) -> String {
        known.append(key)
        guard let entry = document.entry(key) else { return "" }
        guard case .string(let s) = entry.value else { throw wrongType(key, entry, "a string") }
        guard !s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw ConfigError("\(path): line \(entry.line): \(key) holds a control character")
        }
        guard s.utf8.count <= 4096 else {
            throw ConfigError("\(path): line \(entry.line): \(key) is longer than 4096 bytes")
        }
        return s
    }

    mutating func strings(_ key: String) throws(ConfigError) -> [String] {
        known.append(key)
        guard let entry = document.entry(key) else { return [] }
        guard case .array(let items) = entry.value else { throw wrongType(key, entry, "an array of strings") }
        var result: [String] = []
        for item in items {
            guard case .string(let s) = item else { throw wrongType(key, entry, "an array of strings") }
            guard !s.utf8.contains(0) else {
                throw ConfigError("\(path): line \(entry.line): \(key) holds a NUL character")
            }
            result.append(s)
        }
        return result
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ key: String, default value: T) throws(ConfigError) -> T
    where T.RawValue == String {
        let text = try string(key)
        guard let entry = document.entry(key) else { return value }
        guard let choice = T(rawValue: text) else {
            let allowed = T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw ConfigError("\(path): line \(entry.line): \(key) = \"\(text)\" is not one of \(allowed)")
        }
        return choice
    }

    /// An `api_base`: `https://`, or `http://` only for loopback addresses (test stand-ins).
    mutating func url(_ key: String, default value: String) throws(ConfigError) -> String {
        let text = try string(key)
        guard let entry = document.entry(key) else { return value }
        guard let url = APIBase(text) else {
            throw ConfigError(
                "\(path): line \(entry.line): \(key) = \"\(text)\" must be an https:// URL (http:// only for 127.0.0.0/8, [::1] or localhost)"
            )
        }
        return url.text
    }

    func rejectUnknown(tables knownTables: [String]) throws(ConfigError) {
        // In the order of the file: the first unknown key or table is the one named.
        for key in document.keys where !known.contains(key.path) {
            throw ConfigError("\(path): line \(key.entry.line): unknown key '\(key.path)'")
        }
        for table in document.tables where !knownTables.contains(table.path) {
            throw ConfigError("\(path): line \(table.line): unknown table [\(table.path)]")
        }
    }
}

/// A provider's base URL, checked: `https://host[:port][/path]`, or `http://` to loopback.
public struct APIBase: Sendable, Equatable {
    public let text: String
    public let isLoopback: Bool

    public init?(_ text: String) {
        let lower = text.lowercased()
        let rest: Substring
        let secure: Bool
        if lower.hasPrefix("https://") {
            rest = text.dropFirst(8)
            secure = true
        } else if lower.hasPrefix("http://") {
            rest = text.dropFirst(7)
            secure = false
        } else {
            return nil
        }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.isEmpty, !authority.contains("@"), !rest.contains("?"), !rest.contains("#"),
            !text.contains(" ")
        else { return nil }
        var host = authority
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            host = host[host.startIndex...close]
        } else if let colon = host.lastIndex(of: ":") {
            let port = host[host.index(after: colon)...]
            guard let p = Int(port), p > 0, p < 65536 else { return nil }
            host = host[..<colon]
        }
        guard !host.isEmpty else { return nil }
        let h = host.lowercased()
        let loopback: Bool
        if h == "localhost" || h == "[::1]" {
            loopback = true
        } else if h.hasPrefix("127.") {
            let octets = h.split(separator: ".", omittingEmptySubsequences: false)
            loopback = octets.count == 4 && octets.allSatisfy { UInt8($0) != nil }
        } else {
            loopback = false
        }
        if !secure && !loopback { return nil }
        isLoopback = loopback
        // Every trailing slash, so that the text reads back as itself (found by Fuzz/ config:
        // "https://h//" became "https://h/", which a second read made "https://h").
        var trimmed = Substring(text)
        while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        self.text = String(trimmed)
    }
}
