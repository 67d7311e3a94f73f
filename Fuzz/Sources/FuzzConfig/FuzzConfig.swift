import FuzzDriver
import Glibc
import WatchwordCore

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzConfig)) }
}

/// config.toml, two properties besides "never traps":
///
/// - A config that parses, rendered as canonical TOML (`render` below: every key, in a fixed
///   order), parses to an equal config, and renders to the same text again: nothing the
///   parser accepts is lost, changed or misread between two reads of what it means.
/// - A config that is refused names where: the error says `line N` with N a line of the
///   input (1 to the number of lines), unless it is one of the few checks of the whole file
///   (a lockout maximum below the minimum, an SMS provider without its settings).
func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let config: Config
    do {
        config = try Config.parse(bytes, path: "fuzz.toml")
    } catch {
        checkNamesALine(error.message, lines: bytes.count(where: { $0 == UInt8(ascii: "\n") }) + 1)
        return 0
    }
    let text = render(config)
    // Escapes can make a 64 KiB file's strings longer than the parser's size limit.
    guard text.utf8.count <= TOMLParser.maxSize else { return 0 }
    let again: Config
    do {
        again = try Config.parse(Array(text.utf8), path: "rendered.toml")
    } catch {
        fatalError("a config that parsed was rendered to text that does not parse: \(error)\n\(text)")
    }
    require(again == config, "the rendered config parsed to a different one:\n\(text)")
    require(render(again) == text, "rendering is not stable:\n\(text)")
    return 0
}

/// The error names a line that exists, or is one of the whole-file checks.
func checkNamesALine(_ message: String, lines: Int) {
    let prefix = "fuzz.toml: line "
    guard message.hasPrefix(prefix) else {
        let wholeFile = [
            "fuzz.toml: policy.lockout_max_seconds (", "fuzz.toml: sms.provider is ",
            "fuzz.toml: sms.command.argv has no ",
        ]
        require(wholeFile.contains { message.hasPrefix($0) }, "a refusal that names no line: \(message)")
        return
    }
    let digits = message.dropFirst(prefix.count).prefix { $0.isASCII && $0.isNumber }
    guard let line = Int(digits) else { fatalError("no line number in: \(message)") }
    require(line >= 1 && line <= lines, "line \(line) named, but the input has \(lines) lines: \(message)")
}

/// Canonical TOML for a config: every table and key Config.parse reads, in its order.
func render(_ c: Config) -> String {
    var out = ""
    func table(_ name: String) { out += (out.isEmpty ? "" : "\n") + "[\(name)]\n" }
    func int(_ key: String, _ value: Int) { out += "\(key) = \(value)\n" }
    func string(_ key: String, _ value: String) { out += "\(key) = \(quote(value))\n" }

    table("policy")
    int("window", c.policy.window)
    int("max_failures", c.policy.maxFailures)
    int("lockout_seconds", c.policy.lockoutSeconds)
    int("lockout_max_seconds", c.policy.lockoutMaxSeconds)
    int("hotp_lookahead", c.policy.hotpLookahead)

    table("sms")
    string("provider", c.sms.provider.rawValue)
    int("code_digits", c.sms.codeDigits)
    int("code_ttl_seconds", c.sms.codeTTLSeconds)
    int("resend_interval_seconds", c.sms.resendIntervalSeconds)
    int("max_per_hour", c.sms.maxPerHour)
    int("max_per_hour_total", c.sms.maxPerHourTotal)
    int("timeout_seconds", c.sms.timeoutSeconds)
    table("sms.command")
    out += "argv = [" + c.sms.commandArgv.map(quote).joined(separator: ", ") + "]\n"
    table("sms.twilio")
    string("account_sid", c.sms.twilio.accountSid)
    string("auth_token", c.sms.twilio.authToken)
    string("from", c.sms.twilio.from)
    string("api_base", c.sms.twilio.apiBase)
    table("sms.twilio-verify")
    string("account_sid", c.sms.twilioVerify.accountSid)
    string("auth_token", c.sms.twilioVerify.authToken)
    string("service_sid", c.sms.twilioVerify.serviceSid)
    string("api_base", c.sms.twilioVerify.apiBase)
    table("sms.nomado")
    string("username", c.sms.nomado.username)
    string("password", c.sms.nomado.password)
    string("api_base", c.sms.nomado.apiBase)

    table("store")
    string("backend", c.store.backend.rawValue)
    table("store.postgres")
    string("conninfo", c.store.postgresConninfo)
    string("password_file", c.store.postgresPasswordFile)
    string("offline", c.store.postgresOffline.rawValue)
    return out
}

/// A TOML basic string: `"` and `\` escaped, control characters as \uXXXX.
func quote(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F:
            let hex = String(scalar.value, radix: 16, uppercase: true)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// A failed property, with its message even in -O builds (where `precondition` drops it).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
