import WatchwordCore
import WatchwordOTP

/// A `~/.google_authenticator` file, as google-authenticator(1) writes it and
/// pam_google_authenticator reads it:
///
///     BASE32SECRET
///     " RATE_LIMIT 3 30 1700000000
///     " WINDOW_SIZE 3
///     " DISALLOW_REUSE 56666666
///     " TOTP_AUTH                 (or: " HOTP_COUNTER 1)
///     12345678                    (unused 8-digit scratch codes)
///
/// Parsed strictly: every line must be the secret, a `" NAME ...` option or a scratch
/// code. Messages never quote the secret or a scratch code.
public struct GoogleAuthenticatorFile: Sendable, Equatable {
    public var secret: [UInt8]
    public var kind: OTPEnrollment.Kind
    /// TOTP time step (STEP_SIZE, default 30 s).
    public var period: Int
    /// HOTP: the next counter the module would accept (HOTP_COUNTER is exactly that).
    public var counter: UInt64
    /// TOTP: the latest step DISALLOW_REUSE lists as used, so it stays used.
    public var lastStep: UInt64?
    public var scratchCodes: [String]

    /// Options pam_google_authenticator knows; those watchword does not carry over are
    /// still checked, so a damaged file is noticed.
    public static let knownOptions: Set<String> = [
        "TOTP_AUTH", "HOTP_COUNTER", "STEP_SIZE", "DISALLOW_REUSE", "WINDOW_SIZE", "RWINDOW_SIZE",
        "RATE_LIMIT", "TIME_SKEW", "RESETTING_TIME_SKEW", "_LAST_VALID_CODE_COUNTER",
    ]

    /// Parses `file`, adding every error and warning (with its line) to `problems`; nil
    /// when there was an error.
    public static func parse(_ file: ForeignFile, problems: inout ImportProblems) -> GoogleAuthenticatorFile? {
        let errorsBefore = problems.errors.count
        let path = file.path
        func error(_ line: Int, _ message: String) { problems.error(path, line: line, message) }
        func warn(_ line: Int, _ message: String) { problems.warn(path, line: line, message) }

        guard let lines = file.lines() else {
            problems.error(path, "not a text file (not UTF-8, or holds NUL bytes)")
            return nil
        }
        guard let first = lines.first, !first.text.isEmpty else {
            problems.error(path, line: 1, "no secret on the first line")
            return nil
        }
        var secret: [UInt8] = []
        do {
            secret = try Base32.decode(String(first.text))
            if secret.count < 10 {
                error(1, "the secret is \(secret.count) bytes; at least 10 (80 bits) are required")
            }
        } catch {
            // Base32's reason names a position and at most one invalid character, never the secret.
            problems.error(path, line: 1, "the secret is not base32 (\(error))")
        }

        var options: [String: (line: Int, values: [Substring])] = [:]
        var scratch: [String] = []
        for (number, text) in lines.dropFirst() {
            if text.isEmpty { continue }
            if text.hasPrefix("\"") {
                let words = text.dropFirst().split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard text.dropFirst().hasPrefix(" "), let name = words.first else {
                    error(number, "an option line must read '\" NAME [VALUE...]'")
                    continue
                }
                let key = String(name)
                guard knownOptions.contains(key) else {
                    warn(number, "unknown option \(quoted(name)) ignored")
                    continue
                }
                if let earlier = options[key] {
                    error(number, "\(key) appears twice (also on line \(earlier.line))")
                    continue
                }
                options[key] = (number, Array(words.dropFirst()))
                continue
            }
            // A scratch code: 8 digits, 10000000–99999999 (the module's own rule).
            if text.utf8.count == 8, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), text.first != "0" {
                let code = String(text)
                if !scratch.contains(code) { scratch.append(code) }
                continue
            }
            error(number, "neither an option ('\" NAME ...') nor an 8-digit scratch code")
        }

        func number(_ key: String, _ range: ClosedRange<Int64>) -> Int64? {
            guard let option = options[key] else { return nil }
            guard option.values.count == 1, let text = option.values.first,
                let value = Int64(text), String(value) == text, range.contains(value)
            else {
                error(option.line, "\(key) must be one number from \(range.lowerBound) to \(range.upperBound)")
                return nil
            }
            return value
        }
        func noValues(_ key: String) {
            if let option = options[key], !option.values.isEmpty { error(option.line, "\(key) takes no value") }
        }

        // Options checked as the module checks them, though watchword has its own policy
        // for them (policy.window, policy.hotp_lookahead, the failure lockout).
        _ = number("WINDOW_SIZE", 1...100)
        _ = number("RWINDOW_SIZE", 0...1000)
        _ = number("_LAST_VALID_CODE_COUNTER", 0...Int64.max)
        if let option = options["RATE_LIMIT"] {
            let v = option.values
            let ok = v.count >= 2 && v.allSatisfy { decimal($0) != nil }
                && (1...100).contains(decimal(v[0]) ?? 0) && (1...3600).contains(decimal(v[1]) ?? 0)
            if !ok { error(option.line, "RATE_LIMIT must read 'RATE_LIMIT ATTEMPTS SECONDS [TIMES...]'") }
        }
        noValues("TOTP_AUTH")
        let step = number("STEP_SIZE", 1...60)
        let hotpCounter = number("HOTP_COUNTER", 1...Int64.max)
        if let skew = number("TIME_SKEW", -1_000_000...1_000_000), skew != 0 {
            warn(
                options["TIME_SKEW"]!.line,
                "TIME_SKEW \(skew): the phone's clock was \(skew) steps off; watchword does not correct for skew, so set the phone's clock right"
            )
        }
        var lastStep: UInt64? = nil
        if let option = options["DISALLOW_REUSE"] {
            for value in option.values {
                guard let step = decimal(value) else {
                    error(option.line, "DISALLOW_REUSE must list time steps (whole numbers)")
                    break
                }
                lastStep = max(lastStep ?? 0, step)
            }
        }

        let kind: OTPEnrollment.Kind
        switch (options["TOTP_AUTH"] != nil, options["HOTP_COUNTER"] != nil) {
        case (true, false): kind = .totp
        case (false, true): kind = .hotp
        case (true, true):
            error(options["HOTP_COUNTER"]!.line, "both TOTP_AUTH and HOTP_COUNTER: the token cannot be both")
            kind = .totp
        case (false, false):
            problems.error(path, "neither TOTP_AUTH nor HOTP_COUNTER: the file does not say which kind of token it is")
            kind = .totp
        }
        if scratch.count > UserRecord.maxRecoveryCodes {
            problems.error(path, "\(scratch.count) scratch codes; watchword keeps at most \(UserRecord.maxRecoveryCodes)")
        }
        guard problems.errors.count == errorsBefore else { return nil }
        return GoogleAuthenticatorFile(
            secret: secret, kind: kind, period: Int(step ?? 30), counter: UInt64(hotpCounter ?? 0),
            lastStep: kind == .totp ? lastStep : nil, scratchCodes: scratch)
    }
}
