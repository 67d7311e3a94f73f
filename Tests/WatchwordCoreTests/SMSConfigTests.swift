import Testing
import WatchwordCore

private func refusal(_ text: String) -> String {
    do {
        let config = try Config.parse(Array(text.utf8))
        Issue.record("expected a ConfigError, got \(config)")
        return ""
    } catch {
        return error.message
    }
}

@Suite("Config: the SMS keys")
struct SMSConfigTests {
    @Test("sms.max_per_hour_total defaults to 100 and is read")
    func maxPerHourTotal() throws {
        #expect(Config().sms.maxPerHourTotal == 100)
        #expect(try Config.parse(Array("[sms]\nmax_per_hour_total = 20\n".utf8)).sms.maxPerHourTotal == 20)
        for bad in ["0", "-1", "100001", "\"20\""] {
            #expect(refusal("[sms]\nmax_per_hour_total = \(bad)\n").contains("sms.max_per_hour_total"), "\(bad)")
        }
    }

    @Test("the rest of [sms] with every value at its bounds")
    func bounds() throws {
        let low = try Config.parse(
            Array(
                """
                [sms]
                code_digits = 4
                code_ttl_seconds = 30
                resend_interval_seconds = 0
                max_per_hour = 1
                timeout_seconds = 1
                """.utf8))
        #expect(low.sms.codeDigits == 4 && low.sms.codeTTLSeconds == 30 && low.sms.resendIntervalSeconds == 0)
        #expect(low.sms.maxPerHour == 1 && low.sms.timeoutSeconds == 1)
        #expect(refusal("[sms]\ncode_digits = 11\n").contains("sms.code_digits"))
        #expect(refusal("[sms]\ncode_ttl_seconds = 29\n").contains("sms.code_ttl_seconds"))
        #expect(refusal("[sms]\ntimeout_seconds = 121\n").contains("sms.timeout_seconds"))
    }

    @Test("the command provider's argv must carry {phone} and {message}")
    func commandPlaceholders() throws {
        let head = "[sms]\nprovider = \"command\"\n[sms.command]\n"
        #expect(refusal(head + "argv = [\"/usr/bin/send\", \"{phone}\"]\n").contains("{message}"))
        #expect(refusal(head + "argv = [\"/usr/bin/send\", \"{message}\"]\n").contains("{phone}"))
        let inside = try Config.parse(Array((head + "argv = [\"/usr/bin/send\", \"--to={phone}\", \"--text={message}\"]\n").utf8))
        #expect(inside.sms.commandArgv.count == 3)
    }

    @Test("a plain http:// api_base is refused unless it is loopback")
    func apiBase() throws {
        let text = "[sms]\nprovider = \"nomado\"\n[sms.nomado]\nusername = \"u\"\npassword = \"p\"\n"
        #expect(refusal(text + "api_base = \"http://api.nomado.eu\"\n").contains("sms.nomado.api_base"))
        #expect(try Config.parse(Array((text + "api_base = \"http://127.0.0.1:8080\"\n").utf8)).sms.nomado.apiBase == "http://127.0.0.1:8080")
    }
}
