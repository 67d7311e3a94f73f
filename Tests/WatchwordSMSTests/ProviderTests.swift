import Glibc
import Testing
import WatchwordCore

@testable import WatchwordSMS

/// A transport that records requests and answers from a script.
private final class FakeTransport: HTTPTransport, @unchecked Sendable {
    var requests: [HTTPRequest] = []
    var answers: [Result<HTTPResponse, SMSError>]
    init(_ answers: [Result<HTTPResponse, SMSError>]) { self.answers = answers }
    func post(_ request: HTTPRequest) throws(SMSError) -> HTTPResponse {
        requests.append(request)
        switch answers.removeFirst() {
        case .success(let r): return r
        case .failure(let e): throw e
        }
    }
}

private func answer(_ status: Int, _ json: String) -> Result<HTTPResponse, SMSError> {
    .success(HTTPResponse(status: status, body: Array(json.utf8)))
}

private let phone = try! PhoneNumber("+14155550123")

private func form(_ body: [UInt8]) -> [String: String] {
    var out: [String: String] = [:]
    for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
        let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
        out[kv[0]] = kv.count > 1 ? kv[1] : ""
    }
    return out
}

@Suite("HTTP provider helpers")
struct HTTPProviderTests {
    @Test("form fields are percent-encoded so a value cannot start another field")
    func formEncoding() {
        #expect(String(decoding: HTTPProvider.form([("To", "+14155550123"), ("Body", "a b&c=d/é")]), as: UTF8.self)
            == "To=%2B14155550123&Body=a%20b%26c%3Dd%2F%C3%A9")
        #expect(HTTPProvider.percentEncode("AC/../x?y") == "AC%2F..%2Fx%3Fy")
    }

    @Test("the provider's own words reach syslog without numbers of four digits or more")
    func redaction() {
        #expect(HTTPProvider.redact("The 'To' number +14155550123 is not valid") == "The 'To' number +… is not valid")
        #expect(HTTPProvider.redact("code 123 and 123456\n") == "code 123 and …?")
        #expect(HTTPProvider.redact(String(repeating: "x", count: 500)).count == 201)
    }

    @Test("statuses map to kinds; the JSON code and message are kept, numbers hidden", arguments: [
        (401, SMSError.Kind.credentials), (403, .credentials), (429, .rateLimited), (500, .serverError), (503, .serverError),
        (400, .refused), (404, .refused),
    ])
    func failures(_ status: Int, _ kind: SMSError.Kind) {
        let error = HTTPProvider.failure(
            "twilio", HTTPResponse(status: status, body: Array(#"{"code": 21211, "message": "The 'To' number +14155550123 is not valid"}"#.utf8)))
        #expect(error.kind == kind)
        #expect(error.detail.hasPrefix("twilio: HTTP \(status)"))
        #expect(error.detail.contains("code 21211"))
        #expect(!error.detail.contains("4155550123"))
    }
}

@Suite("Providers over a fake transport")
struct ProviderRequestTests {
    var twilio: SMSSettings.Twilio {
        var t = SMSSettings.Twilio()
        t.accountSid = "AC123"
        t.authToken = "token-secret"
        t.from = "+15550000000"
        t.apiBase = "https://api.example.test"
        return t
    }

    @Test("twilio: the Messages API request, and 201 accepted")
    func twilioSend() throws {
        let transport = FakeTransport([answer(201, #"{"sid": "SM1", "status": "queued"}"#)])
        try TwilioSender(settings: twilio, timeoutSeconds: 7, transport: transport).send("code 123456", to: phone)
        let request = try #require(transport.requests.first)
        #expect(request.url == "https://api.example.test/2010-04-01/Accounts/AC123/Messages.json")
        #expect(request.user == "AC123" && request.password == "token-secret")
        #expect(request.contentType == "application/x-www-form-urlencoded")
        #expect(request.timeoutSeconds == 7)
        #expect(form(request.body) == ["To": "%2B14155550123", "From": "%2B15550000000", "Body": "code%20123456"])
    }

    @Test("twilio: errors carry the status and Twilio's code, never the token")
    func twilioErrors() {
        for (status, kind) in [(401, SMSError.Kind.credentials), (429, .rateLimited), (500, .serverError), (400, .refused)] {
            let transport = FakeTransport([answer(status, #"{"code": 20003, "message": "Authenticate"}"#)])
            do {
                try TwilioSender(settings: twilio, timeoutSeconds: 7, transport: transport).send("x", to: phone)
                Issue.record("\(status) accepted")
            } catch {
                #expect(error.kind == kind)
                #expect(error.detail.contains("HTTP \(status)") && error.detail.contains("code 20003"))
                #expect(!error.detail.contains("token-secret"))
            }
        }
        let garbage = FakeTransport([answer(201, "<html>")])
        #expect(throws: SMSError.self) { try TwilioSender(settings: twilio, timeoutSeconds: 7, transport: garbage).send("x", to: phone) }
        let down = FakeTransport([.failure(SMSError(.timeout, "no answer within 7 seconds"))])
        #expect(throws: SMSError(.timeout, "no answer within 7 seconds")) {
            try TwilioSender(settings: twilio, timeoutSeconds: 7, transport: down).send("x", to: phone)
        }
    }

    @Test("twilio-verify: start and check requests; approved, pending, 404 and 429")
    func twilioVerify() throws {
        var settings = SMSSettings.TwilioVerify()
        settings.accountSid = "AC9"
        settings.authToken = "tok"
        settings.serviceSid = "VA7"
        settings.apiBase = "http://127.0.0.1:9"
        let transport = FakeTransport([
            answer(201, #"{"sid": "VE1", "status": "pending"}"#),
            answer(200, #"{"status": "approved"}"#),
            answer(200, #"{"status": "pending"}"#),
            answer(404, #"{"code": 20404, "message": "not found"}"#),
            answer(429, #"{"code": 60203, "message": "Max send attempts reached"}"#),
        ])
        let service = TwilioVerifyService(settings: settings, timeoutSeconds: 3, transport: transport)
        try service.start(to: phone, template: "ignored {{CODE}}")
        #expect(try service.check("123456", for: phone) == true)
        #expect(try service.check("123456", for: phone) == false)
        #expect(try service.check("123456", for: phone) == false)
        #expect(throws: SMSError.self) { try service.check("123456", for: phone) }
        #expect(transport.requests.map(\.url) == [
            "http://127.0.0.1:9/v2/Services/VA7/Verifications",
        ] + Array(repeating: "http://127.0.0.1:9/v2/Services/VA7/VerificationCheck", count: 4))
        #expect(form(transport.requests[0].body) == ["To": "%2B14155550123", "Channel": "sms"])
        #expect(form(transport.requests[1].body) == ["To": "%2B14155550123", "Code": "123456"])
        #expect(transport.requests.allSatisfy { $0.user == "AC9" && $0.password == "tok" })
    }

    @Test("twilio-verify and nomado: an answer that names a key twice is refused, in either order")
    func duplicateKeys() {
        var settings = SMSSettings.TwilioVerify()
        settings.apiBase = "http://127.0.0.1:9"
        let verify = TwilioVerifyService(settings: settings, timeoutSeconds: 3, transport: FakeTransport([
            answer(200, #"{"status": "pending", "status": "approved"}"#),
            answer(200, #"{"status": "approved", "status": "pending"}"#),
        ]))
        #expect(throws: SMSError.self) { try verify.check("123456", for: phone) }
        #expect(throws: SMSError.self) { try verify.check("123456", for: phone) }
        let nomado = NomadoService(settings: SMSSettings.Nomado(), codeDigits: 6, ttlSeconds: 60, timeoutSeconds: 3,
            transport: FakeTransport([answer(200, #"{"code": 200, "verify": false, "verify": true}"#)]))
        #expect(throws: SMSError.self) { try nomado.check("123456", for: phone) }
    }

    @Test("nomado: JSON create and verify; verify true and false; HTTP errors")
    func nomado() throws {
        var settings = SMSSettings.Nomado()
        settings.username = "u"
        settings.password = "p"
        settings.apiBase = "https://api.nomado.test"
        let transport = FakeTransport([
            answer(200, #"{"code": 200, "message": "OK", "data": {}}"#),
            answer(200, #"{"code": 200, "message": "OK", "verify": true}"#),
            answer(200, #"{"code": 200, "message": "OK", "verify": false}"#),
            answer(200, #"{"code": 400, "message": "Invalid token"}"#),
            answer(502, "bad gateway"),
            answer(200, #"{"code": 401, "message": "Unauthorized"}"#),
        ])
        let service = NomadoService(settings: settings, codeDigits: 8, ttlSeconds: 120, timeoutSeconds: 4, transport: transport)
        try service.start(to: phone, template: "code {{CODE}}")
        #expect(try service.check("12345678", for: phone) == true)
        #expect(try service.check("12345678", for: phone) == false)
        #expect(try service.check("12345678", for: phone) == false)
        #expect(throws: SMSError.self) { try service.check("12345678", for: phone) }
        #expect(throws: SMSError.self) { try service.start(to: phone, template: "code {{CODE}}") }
        #expect(transport.requests.map(\.url).first == "https://api.nomado.test/2fa/create")
        #expect(transport.requests[1].url == "https://api.nomado.test/2fa/verify")
        #expect(transport.requests[0].contentType == "application/json")
        #expect(String(decoding: transport.requests[0].body, as: UTF8.self)
            == #"{"to":"+14155550123","template":"code {{CODE}}","type":"NUMERIC","length":8,"expiry":120}"#)
        #expect(String(decoding: transport.requests[1].body, as: UTF8.self) == #"{"number":"+14155550123","token":"12345678"}"#)
    }
}

@Suite("The command provider")
struct CommandSenderTests {
    @Test("{phone} is replaced in one pass, inside words too; nothing else is")
    func expand() {
        #expect(CommandSender.expand(["/bin/x", "TEXT", "{phone}", "--to={phone}!", "{other}", "{", "{phon}"],
                                     phone: "+1555{phone}")
            == ["/bin/x", "TEXT", "+1555{phone}", "--to=+1555{phone}!", "{other}", "{", "{phon}"])
    }

    func script(_ body: String) throws -> (TemporaryDirectory, String) {
        let dir = try TemporaryDirectory("smscmd")
        let path = dir.sub("send")
        let bytes = Array("#!/bin/sh\n\(body)\n".utf8)
        // O_CLOEXEC: a command spawned by a test running in parallel must not inherit this
        // descriptor, or exec of the script fails with "Text file busy".
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o700)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        return (dir, path)
    }

    @Test("the text goes to stdin, argv carries the phone only, a fixed environment, no descriptors beyond 0-2")
    func runs() throws {
        let dir = try TemporaryDirectory("smscmd")
        let out = dir.sub("seen")
        // Python, not sh: dash keeps its script open on a descriptor of its own.
        let probe = """
            import os, sys
            fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))
            links = [os.readlink('/proc/self/fd/%d' % f) for f in fds if f < 3]
            text = sys.stdin.read()
            env = open('/proc/self/environ', 'rb').read().decode()
            open(sys.argv[2], 'w').write(repr(sys.argv[1:]) + '\\n' + repr(fds) + '\\n' + repr(links) + '\\n'
                + repr(sorted(k for k in os.environ if k not in ('LC_CTYPE',))) + '\\n'
                + repr(text) + '\\n' + repr(any(text in w for w in sys.argv) or text in env) + '\\n')
            """
        let leak = open("/dev/null", O_RDONLY)  // not close-on-exec
        defer { close(leak) }
        try CommandSender(argv: ["/usr/bin/python3", "-c", probe, "{phone}", out], timeoutSeconds: 10)
            .send("code 123456", to: phone)
        let lines = String(decoding: try Posix.read(out), as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines[0] == "['+14155550123', '\(out)']")
        // 0-2 and the one listdir() had open while listing.
        #expect(lines[1] == "[0, 1, 2, 3]", "leaked \(leak)?")
        #expect(lines[2].hasPrefix("['pipe:["))
        #expect(lines[2].hasSuffix("'/dev/null', '/dev/null']"))
        #expect(lines[3] == "['LANG', 'PATH']")
        // Exactly the text, then end of file: no newline added.
        #expect(lines[4] == "'code 123456'")
        #expect(lines[5] == "False")
    }

    @Test("{message} or {code} in argv: refused, the program never runs")
    func refusesTheCodeInArgv() throws {
        let (dir, path) = try script("touch \"$0.ran\"")
        _ = dir
        for argv in [[path, "{phone}", "{message}"], [path, "{phone}", "--text={code}"]] {
            #expect(throws: SMSError.self) {
                try CommandSender(argv: argv, timeoutSeconds: 5).send("code 123456", to: phone)
            }
        }
        #expect(access(path + ".ran", F_OK) != 0)
    }

    @Test("a program that never reads its stdin, or exits before, neither blocks nor kills the sender")
    func unreadStdin() throws {
        // SIGPIPE as the default, as in a process that does not ignore it (the CLI).
        let old = signal(SIGPIPE, SIG_DFL)
        defer { signal(SIGPIPE, old) }
        let (dir, path) = try script("exec 0<&-\nsleep 0.2")
        _ = dir
        let long = String(repeating: "x", count: CommandSender.maxMessageBytes)
        try CommandSender(argv: [path, "{phone}"], timeoutSeconds: 5).send(long, to: phone)
        let (dir2, quick) = try script("exit 0")
        _ = dir2
        try CommandSender(argv: [quick, "{phone}"], timeoutSeconds: 5).send(long, to: phone)
    }

    @Test("a long text arrives whole; one over the bound is refused before anything runs")
    func longText() throws {
        let (dir, path) = try script("cat > \"$0.got\"")
        _ = dir
        let long = String((0..<CommandSender.maxMessageBytes).map { Character(String($0 % 10)) })
        try CommandSender(argv: [path, "{phone}"], timeoutSeconds: 10).send(long, to: phone)
        #expect(try Posix.read(path + ".got") == Array(long.utf8))
        unlink(path + ".got")
        #expect(throws: SMSError.self) {
            try CommandSender(argv: [path, "{phone}"], timeoutSeconds: 10).send(long + "x", to: phone)
        }
        #expect(access(path + ".got", F_OK) != 0)
    }

    @Test("a non-zero exit, a signal and a missing program are failed sends")
    func failures() throws {
        let (dir, path) = try script("exit 3")
        _ = dir
        #expect(throws: SMSError(.commandFailed, "command \(path) exited with status 3")) {
            try CommandSender(argv: [path, "{phone}"], timeoutSeconds: 5).send("x", to: phone)
        }
        let (dir2, killed) = try script("kill -TERM $$")
        _ = dir2
        #expect(throws: SMSError(.commandFailed, "command \(killed) was killed by signal 15")) {
            try CommandSender(argv: [killed, "{phone}"], timeoutSeconds: 5).send("x", to: phone)
        }
        #expect(throws: SMSError.self) {
            try CommandSender(argv: ["/nonexistent/send", "{phone}"], timeoutSeconds: 5).send("x", to: phone)
        }
    }

    @Test("a program that hangs without reading its stdin is killed with its children after timeout_seconds")
    func timeout() throws {
        let (dir, path) = try script("sleep 30 & echo $! > \"$0.child\"; sleep 30")
        _ = dir
        let start = monotonicSeconds()
        #expect(throws: SMSError(.timeout, "command \(path) did not finish within 1 seconds; killed")) {
            try CommandSender(argv: [path, "{phone}"], timeoutSeconds: 1).send("x", to: phone)
        }
        let elapsed = monotonicSeconds() - start
        #expect(elapsed >= 1 && elapsed < 3)
        let child = pid_t(String(decoding: try Posix.read(path + ".child"), as: UTF8.self).split(separator: "\n")[0])!
        // Give the kernel a moment to deliver the group kill.
        usleep(200_000)
        #expect(Posix.isDead(child))
    }
}
