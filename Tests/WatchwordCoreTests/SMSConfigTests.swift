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
                code_digits = 6
                code_ttl_seconds = 30
                resend_interval_seconds = 0
                max_per_hour = 1
                timeout_seconds = 1
                """.utf8))
        #expect(low.sms.codeDigits == 6 && low.sms.codeTTLSeconds == 30 && low.sms.resendIntervalSeconds == 0)
        #expect(low.sms.maxPerHour == 1 && low.sms.timeoutSeconds == 1)
        #expect(refusal("[sms]\ncode_digits = 11\n").contains("sms.code_digits"))
        #expect(refusal("[sms]\ncode_ttl_seconds = 29\n").contains("sms.code_ttl_seconds"))
        #expect(refusal("[sms]\ntimeout_seconds = 121\n").contains("sms.timeout_seconds"))
    }

    @Test("sms.code_digits below 6 is refused, naming the key")
    func fewDigits() throws {
        #expect(SMSSettings.codeDigitsRange == 6...10)
        for digits in [-1, 0, 4, 5] {
            let message = refusal("[sms]\ncode_digits = \(digits)\n")
            #expect(message.contains("line 2: sms.code_digits = \(digits) is out of range (6 to 10)"), "\(message)")
        }
        #expect(try Config.parse(Array("[sms]\ncode_digits = 10\n".utf8)).sms.codeDigits == 10)
    }

    @Test("the command provider's argv must carry {phone}, inside a word too")
    func commandPhone() throws {
        let head = "[sms]\nprovider = \"command\"\n[sms.command]\n"
        #expect(refusal(head + "argv = [\"/usr/bin/send\", \"TEXT\"]\n").contains("sms.command.argv has no {phone}"))
        let inside = try Config.parse(Array((head + "argv = [\"/usr/bin/send\", \"--to={phone}\"]\n").utf8))
        #expect(inside.sms.commandArgv == ["/usr/bin/send", "--to={phone}"])
    }

    @Test("{message} or {code} anywhere in sms.command.argv is refused, whatever the provider")
    func commandCodeNotInArgv() throws {
        for provider in ["command", "none", "twilio"] {
            let head = "[sms]\nprovider = \"\(provider)\"\n[sms.twilio]\naccount_sid = \"AC1\"\nauth_token = \"t\"\nfrom = \"+15550000000\"\n[sms.command]\n"
            for (word, placeholder) in [("{message}", "{message}"), ("--text={message}", "{message}"), ("{code}", "{code}"),
                                        ("code:{code}!", "{code}")] {
                let message = refusal(head + "argv = [\"/usr/bin/send\", \"{phone}\", \"\(word)\"]\n")
                #expect(message.contains("line 8: sms.command.argv contains \(placeholder)"), "\(provider) \(word): \(message)")
                #expect(message.contains("standard input"))
            }
        }
        // Other braces are words like any other.
        let other = try Config.parse(Array("[sms]\nprovider = \"command\"\n[sms.command]\nargv = [\"/usr/bin/send\", \"{phone}\", \"{text}\", \"{MESSAGE}\"]\n".utf8))
        #expect(other.sms.commandArgv.count == 4)
        #expect(SMSSettings.commandArgvProblem(["/usr/bin/send", "{phone}"]) == nil)
    }

    @Test("a plain http:// api_base is refused unless it is loopback")
    func apiBase() throws {
        let text = "[sms]\nprovider = \"nomado\"\n[sms.nomado]\nusername = \"u\"\npassword = \"p\"\n"
        #expect(refusal(text + "api_base = \"http://api.nomado.eu\"\n").contains("sms.nomado.api_base"))
        #expect(try Config.parse(Array((text + "api_base = \"http://127.0.0.1:8080\"\n").utf8)).sms.nomado.apiBase == "http://127.0.0.1:8080")
    }
}
