import Testing
import WatchwordCore
import WatchwordCrypto
import WatchwordTestDoubles

private let phone = try! PhoneNumber("+14155550123")
private let sentPrompt = "Code sent to ••••••0123. Verification code: "
private let offerPrompt = "Verification code (press Enter to get one by SMS): "

/// Logins of SMS users against a real FileStore, with a fake provider and a fixed clock.
private final class SMSHarness {
    let fixture: StoreFixture
    let store: FileStore
    let clock = TestClock(Fixture.now)
    var config = Config()
    let sender = FakeSMSSender()
    let service = FakeVerificationService()
    /// How often the login flow asked for the provider.
    var gatewayRequests = 0
    let recoveryCodes = ["1111122222", "3333344444"]

    /// `totp`: also a TOTP token; `recovery`: with recovery codes.
    init(totp: Bool = false, recovery: Bool = true, provider: SMSSettings.Provider = .twilio) throws {
        fixture = try StoreFixture("smslogin")
        let admin = try fixture.store(create: true)
        let key = try #require(try admin.recoveryKey(create: true))
        var record = totp ? Fixture.totpRecord() : UserRecord(user: Fixture.alice, created: Fixture.created)
        record.phone = phone
        if recovery { record.recoveryCodeHashes = recoveryCodes.map { RecoveryCodes.hash($0, user: Fixture.alice, key: key) } }
        try admin.update(record.user) { $0 = record }
        store = try fixture.store(create: false)
        config.sms.provider = provider
    }

    /// When set, logins go through a store that runs every update body twice.
    var rerunning: RerunningStore?

    var flow: LoginFlow {
        LoginFlow(
            config: config, store: rerunning ?? store, now: clock.now,
            smsGateway: { [self] () throws(SMSError) -> SMSGateway in
                gatewayRequests += 1
                return config.sms.provider == .twilio || config.sms.provider == .command ? sender.gateway : service.gateway
            },
            hostName: { "host.example" })
    }

    func login(_ answers: [ScriptedAnswer]) -> (LoginOutcome, ScriptedConversation) {
        let harness = self
        var replies = answers
        var scripted = AnswerAtPrompt(conversation: ScriptedConversation()) {
            guard !replies.isEmpty else { return .failed }
            switch replies.removeFirst() {
            case .text(let t): return .text(Array(t.utf8))
            case .lastCode: return .text(Array((harness.sender.lastCode ?? "").utf8))
            case .serviceCode: return .text(Array((harness.service.codes[phone] ?? "").utf8))
            case .totp: return .text(Array(Fixture.code(at: harness.clock.time).utf8))
            case .hangUp: return .failed
            }
        }
        let outcome = flow.run(LoginRequest(user: "alice"), conversation: &scripted).outcome
        return (outcome, scripted.conversation)
    }

    func record() throws -> UserRecord { try #require(try store.load(Fixture.alice)) }
}

extension String {
    /// Six digits, zero-padded.
    fileprivate init(format6 n: Int) {
        let digits = String(n % 1_000_000)
        self = String(repeating: "0", count: 6 - digits.count) + digits
    }
}

/// An answer decided when the prompt comes: the code just texted is only known then.
private enum ScriptedAnswer {
    case text(String)
    case lastCode
    case serviceCode
    case totp
    case hangUp
}

/// Wraps a ScriptedConversation (for its record of events) but answers through `next`.
private struct AnswerAtPrompt: Conversation {
    var conversation: ScriptedConversation
    let next: () -> Answer
    init(conversation: ScriptedConversation, next: @escaping () -> Answer) {
        self.conversation = conversation
        self.next = next
    }
    mutating func prompt(_ text: String) -> Answer {
        conversation.script = [next()]
        return conversation.prompt(text)
    }
    mutating func info(_ text: String) { conversation.info(text) }
    mutating func error(_ text: String) { conversation.error(text) }
    mutating func log(_ priority: LogPriority, _ text: String) { conversation.log(priority, text) }
}

/// No code, no phone number in full and no credential in anything the helper says.
private func expectNothingSecret(_ c: ScriptedConversation, codes: [String?], sourceLocation: SourceLocation = #_sourceLocation) {
    for line in c.outputLines {
        for code in codes.compactMap({ $0 }) where !code.isEmpty {
            #expect(!line.contains(code), "'\(line)' holds a code", sourceLocation: sourceLocation)
        }
        #expect(!line.contains(phone.e164), "'\(line)' holds the phone number", sourceLocation: sourceLocation)
    }
}

@Suite("Login flow with SMS")
struct SMSLoginFlowTests {
    @Test("SMS only: the code is texted first, then 'Code sent to ••••••0123. Verification code: '")
    func smsOnly() throws {
        let h = try SMSHarness()
        let (outcome, c) = h.login([.lastCode])
        #expect(outcome == .success)
        #expect(c.prompts == [sentPrompt])
        #expect(h.sender.texts.count == 1)
        #expect(h.sender.texts[0].phone == phone)
        let code = try #require(h.sender.lastCode)
        #expect(code.utf8.count == 6)
        #expect(h.sender.texts[0].message == "Your login code for host.example is \(code). It expires in 5 minutes.")
        // The text went out before the prompt.
        let sentIndex = c.events.firstIndex { if case .log(_, let t) = $0 { t.contains("SMS code sent") } else { false } }
        let promptIndex = c.events.firstIndex { if case .prompt = $0 { true } else { false } }
        #expect(sentIndex != nil && promptIndex != nil && sentIndex! < promptIndex!)
        #expect(c.logLines.contains("user alice: accepted (sms)"))
        let record = try h.record()
        #expect(record.sms.pending == nil && record.sms.lastSent == Fixture.now && record.lastSuccess == Fixture.now)
        #expect(!String(decoding: record.serialized(), as: UTF8.self).contains(code))
        expectNothingSecret(c, codes: [code])
    }

    @Test("a wrong code is refused and counted; the texted code then still works (try 2 of 3)")
    func wrongCode() throws {
        let h = try SMSHarness()
        let (outcome, c) = h.login([.text("000000")])
        #expect(outcome == .authErr)
        #expect(try h.record().failures == 1)
        #expect(try h.record().sms.pending?.tries == 1)
        expectNothingSecret(c, codes: [h.sender.lastCode])
        // A second login within the resend interval sends nothing new and takes the same code.
        h.clock.advance(by: 5)
        let (again, c2) = h.login([.lastCode])
        #expect(again == .success)
        #expect(h.sender.texts.count == 1)
        #expect(c2.infos.contains("A code was sent to ••••••0123 5 seconds ago; it is still valid."))
        #expect(c2.prompts == [sentPrompt])
    }

    @Test("three wrong tries kill the code: the right one is refused on the fourth")
    func fourthTry() throws {
        let h = try SMSHarness()
        for _ in 0..<3 { #expect(h.login([.text("000000")]).0 == .authErr) }
        #expect(h.sender.texts.count == 1)
        #expect(try h.record().sms.pending == nil)
        // Within the resend interval and without a live code: told to wait, nothing sent.
        let (outcome, c) = h.login([.lastCode])
        #expect(outcome == .authErr)
        #expect(h.sender.texts.count == 1)
        #expect(c.errors.contains { $0.hasPrefix("No new code can be sent yet: please wait") })
        #expect(c.prompts == ["Recovery code: "])
        #expect(try h.record().failures == 4)
    }

    @Test("an expired code is refused, and the log says it had expired")
    func expired() throws {
        let h = try SMSHarness()
        h.config.sms.codeTTLSeconds = 300
        h.config.sms.resendIntervalSeconds = 600
        #expect(h.login([.hangUp]).0 == .convErr)
        let code = try #require(h.sender.lastCode)
        h.clock.advance(by: 300)
        // Still inside the resend interval: nothing new is sent, and the old code is dead.
        let (outcome, c) = h.login([.text(code)])
        #expect(outcome == .authErr)
        #expect(h.sender.texts.count == 1)
        #expect(c.prompts == ["Recovery code: "])
        #expect(c.logLines.contains("user alice: the SMS code had expired 0 seconds before"))
        #expect(try h.record().sms.pending == nil)
    }

    @Test("both methods: Enter texts a code and asks again; the code is accepted")
    func bothWithEnter() throws {
        let h = try SMSHarness(totp: true)
        let (outcome, c) = h.login([.text(""), .lastCode])
        #expect(outcome == .success)
        #expect(c.prompts == [offerPrompt, sentPrompt])
        #expect(h.sender.texts.count == 1)
        #expect(c.logLines.contains("user alice: accepted (sms)"))
    }

    @Test("both methods: a TOTP code at the first prompt needs no text, and the provider is never made")
    func bothWithTOTP() throws {
        let h = try SMSHarness(totp: true)
        let (outcome, c) = h.login([.totp])
        #expect(outcome == .success)
        #expect(c.prompts == [offerPrompt])
        #expect(h.sender.texts.isEmpty)
        #expect(h.gatewayRequests == 0)
        // The TOTP replay rule still holds.
        #expect(h.login([.totp]).0 == .authErr)
    }

    @Test("both methods: a TOTP code also works at the 'Code sent' prompt")
    func bothTOTPAfterText() throws {
        let h = try SMSHarness(totp: true)
        #expect(h.login([.text(" "), .totp]).0 == .success)
        #expect(try h.record().sms.pending == nil)
    }

    @Test("a recovery code works at every prompt", arguments: [0, 1, 2])
    func recoveryEverywhere(_ which: Int) throws {
        let h = try SMSHarness(totp: which > 0)
        let answers: [ScriptedAnswer] = which == 2 ? [.text(""), .text("3333344444")] : [.text("3333344444")]
        let (outcome, c) = h.login(answers)
        #expect(outcome == .success)
        #expect(c.logLines.contains("user alice: accepted (recovery)"))
    }

    @Test("a failed send: one clear sentence, the reason in the log, then TOTP for a user who has it")
    func sendFailsBoth() throws {
        let h = try SMSHarness(totp: true)
        h.sender.failure = SMSError(.serverError, "twilio: HTTP 500: code 20500: Internal Server Error")
        let (outcome, c) = h.login([.text(""), .totp])
        #expect(outcome == .success)
        #expect(c.prompts == [offerPrompt, "Verification code: "])
        #expect(c.errors == ["The text message could not be sent; use your authenticator app or a recovery code."])
        #expect(c.logs.contains { $0.0 == .err && $0.1.contains("HTTP 500") && $0.1.contains("••••••0123") })
        #expect(try h.record().sms.pending == nil)
    }

    @Test("a failed send for an SMS-only user: a recovery code may be given, nothing else")
    func sendFailsSMSOnly() throws {
        let h = try SMSHarness()
        h.sender.failure = SMSError(.timeout, "no answer within 10 seconds")
        let (outcome, c) = h.login([.text("1111122222")])
        #expect(outcome == .success)
        #expect(c.prompts == ["Recovery code: "])
        #expect(c.errors == ["The text message could not be sent; enter a recovery code or try again later."])

        let (wrong, _) = h.login([.text("123456")])
        #expect(wrong == .authErr)
    }

    @Test("a failed send for an SMS-only user without recovery codes denies at once, as unavailable")
    func sendFailsNothingElse() throws {
        let h = try SMSHarness(recovery: false)
        h.sender.failure = SMSError(.unreachable, "cannot reach the provider")
        let (outcome, c) = h.login([])
        #expect(outcome == .unavailable)
        #expect(c.prompts.isEmpty)
        #expect(c.errors == ["The text message could not be sent; try again later."])
    }

    @Test("max_per_hour: over it nothing is sent and the user is told to wait")
    func hourlyCap() throws {
        let h = try SMSHarness(totp: true)
        h.config.sms.maxPerHour = 2
        for _ in 0..<2 {
            #expect(h.login([.text(""), .lastCode]).0 == .success)
            h.clock.advance(by: 60)
        }
        let (outcome, c) = h.login([.text(""), .totp])
        #expect(h.sender.texts.count == 2)
        #expect(c.errors.count == 1 && c.errors[0].hasPrefix("No new code can be sent yet: please wait"))
        #expect(c.logLines.contains { $0.contains("sms.max_per_hour reached") })
        #expect(outcome == .success)  // TOTP still works
    }

    @Test("max_per_hour_total: one cap for all users, kept in the global file")
    func globalCap() throws {
        let h = try SMSHarness()
        h.config.sms.maxPerHourTotal = 1
        #expect(h.login([.lastCode]).0 == .success)
        // Another user on the same host.
        var bob = UserRecord(user: Fixture.bob, created: 0)
        bob.phone = try PhoneNumber("+32470123456")
        try h.fixture.store(create: true).update(Fixture.bob) { $0 = bob }
        var c = ScriptedConversation(answers: ["123456"])
        #expect(h.flow.run(LoginRequest(user: "bob"), conversation: &c).outcome == .authErr)
        #expect(h.sender.texts.count == 1)
        #expect(c.logLines.contains { $0.contains("sms.max_per_hour_total reached") })
    }

    @Test("a store that runs the update body twice: one text counts once, for the user and for all users")
    func bodyRunTwiceCountsOnce() throws {
        let h = try SMSHarness()
        h.config.sms.maxPerHourTotal = 2
        let rerunning = RerunningStore(h.store)
        h.rerunning = rerunning
        #expect(h.login([.lastCode]).0 == .success)
        #expect(rerunning.runs >= 2)
        #expect(h.sender.texts.count == 1)
        #expect(try h.record().sms.sent.count(at: h.clock.time) == 1)
        #expect(try h.store.updateSMSGlobal { $0.sent.count(at: h.clock.time) } == 1)
        // So the second text of the hour still goes out (the old body counted 2 for one).
        h.clock.advance(by: 120)
        #expect(h.login([.lastCode]).0 == .success)
        #expect(h.sender.texts.count == 2)
    }

    @Test("wrong SMS codes lock the user out like wrong TOTP codes, and nothing is texted while locked")
    func lockout() throws {
        let h = try SMSHarness()
        h.config.policy.maxFailures = 2
        #expect(h.login([.text("000000")]).0 == .authErr)
        #expect(h.login([.text("000001")]).0 == .authErr)
        let (outcome, c) = h.login([.lastCode])
        #expect(outcome == .maxtries)
        #expect(c.prompts.isEmpty)
        #expect(h.sender.texts.count == 1)
    }

    @Test("a TOTP-only user never makes the provider, even with one configured")
    func totpOnly() throws {
        let fixture = try StoreFixture("smstotp")
        try fixture.enroll()
        var config = Config()
        config.sms.provider = .twilio
        var made = 0
        let flow = LoginFlow(
            config: config, store: try fixture.store(create: false), now: { Fixture.now },
            smsGateway: { () throws(SMSError) -> SMSGateway in
                made += 1
                throw SMSError(.unavailable, "must not be made")
            })
        var c = ScriptedConversation(answers: [Fixture.code(at: Fixture.now)])
        #expect(flow.run(LoginRequest(user: "alice"), conversation: &c).outcome == .success)
        #expect(made == 0)
        #expect(c.prompts == ["Verification code: "])
    }

    @Test("a phone on file but sms.provider none: the TOTP prompt, and a warning in the log")
    func providerNone() throws {
        let h = try SMSHarness(totp: true, provider: .none)
        let (outcome, c) = h.login([.totp])
        #expect(outcome == .success)
        #expect(c.prompts == ["Verification code: "])
        #expect(c.logs.contains { $0.0 == .warning && $0.1.contains("sms.provider is \"none\"") })
        #expect(h.gatewayRequests == 0)
        let smsOnly = try SMSHarness(recovery: false, provider: .none)
        #expect(smsOnly.login([]).0 == .unavailable)
    }

    @Test("a service that makes its own codes: started before the prompt, asked to check the answer")
    func verificationService() throws {
        let h = try SMSHarness(provider: .twilioVerify)
        let (outcome, c) = h.login([.serviceCode])
        #expect(outcome == .success)
        #expect(c.prompts == [sentPrompt])
        #expect(h.service.started.count == 1 && h.service.checked.count == 1)
        #expect(h.service.started[0].template == "Your login code for host.example is {{CODE}}. It expires in 5 minutes.")
        let record = try h.record()
        #expect(record.sms.pending == nil && record.failures == 0)
        #expect(!String(decoding: record.serialized(), as: UTF8.self).contains("sms.code"))
    }

    @Test("the service says no: a counted failure; the service cannot check: unavailable, and still counted")
    func verificationServiceFailures() throws {
        let h = try SMSHarness(recovery: false, provider: .nomado)
        #expect(h.login([.text("000000")]).0 == .authErr)
        #expect(try h.record().failures == 1)
        h.service.checkFailure = SMSError(.serverError, "nomado: HTTP 503")
        h.clock.advance(by: 5)
        let (outcome, c) = h.login([.text("111111")])
        #expect(outcome == .unavailable)
        #expect(c.errors == ["The code could not be checked; try again later."])
        #expect(c.logs.contains {
            $0.0 == .err && $0.1.contains("HTTP 503") && $0.1.contains("counted as a wrong answer (failure 2 of 5)")
        })
        #expect(try h.record().failures == 2)
        #expect(try h.record().sms.pending?.tries == 2)
    }

    @Test(
        "the service cannot check any answer: every wrong one is counted, and max_failures of them lock the user out",
        arguments: [SMSSettings.Provider.twilioVerify, .nomado])
    func verificationServiceDownLocksOut(_ provider: SMSSettings.Provider) throws {
        let h = try SMSHarness(totp: true, provider: provider)
        h.config.sms.resendIntervalSeconds = 0
        h.config.sms.maxPerHour = 100
        h.service.checkFailure = SMSError(.serverError, "\(provider.rawValue): HTTP 503")
        let wrong = (0..<6).map { String(format6: 135_791 + $0) }.filter { code in
            (-2...12).allSatisfy { Fixture.code(at: Fixture.now + Int64($0) * 30) != code }
        }
        // Each login: Enter (a new text), a wrong code (asked: 503), at the fallback prompt
        // another (asked again: 503). Both counted.
        for n in 1...2 {
            let (outcome, c) = h.login([.text(""), .text(wrong[2 * n - 2]), .text(wrong[2 * n - 1])])
            #expect(outcome == .unavailable)
            #expect(c.prompts == [offerPrompt, sentPrompt, "Verification code: "])
            #expect(try h.record().failures == 2 * n)
            #expect(h.service.checked.count == 2 * n)
            h.clock.advance(by: 1)
        }
        // The fifth locks, whatever the service said; the user is told so.
        let (locked, c) = h.login([.text(""), .text(wrong[4])])
        #expect(locked == .maxtries)
        #expect(c.errors.last == "Too many failed codes: try again in 30 seconds.")
        #expect(c.logLines.contains { $0.contains("(failure 5 of 5); locked out for 30 seconds") })
        #expect(h.service.checked.count == 5)
        let record = try h.record()
        #expect(record.failures == 5 && record.lockedUntil == h.clock.time + 30)
        // Then refused at once: no prompt, no text, no check.
        let (again, c2) = h.login([.text(""), .text(wrong[5])])
        #expect(again == .maxtries && c2.prompts.isEmpty)
        #expect(h.service.checked.count == 5 && h.service.started.count == 3)
        #expect(try h.record().failures == 5)
    }

    @Test(
        "16 logins answer one code that the service approves every time: exactly one is accepted",
        arguments: [SMSSettings.Provider.twilioVerify, .nomado])
    func serviceApprovalRace(_ provider: SMSSettings.Provider) throws {
        let h = try SMSHarness(provider: provider)
        h.service.approveRepeatedly = true
        var outcomes: [LoginOutcome] = []
        // Logins 2 and 3 answer while the one before them waits for the service; the code
        // then has no tries left, and logins 4 to 16 answer while login 3 waits. Then the
        // service approves 3, 2 and 1, in that order.
        h.service.onCheck = { n in
            if n < 3 {
                outcomes.append(h.login([.serviceCode]).0)
            } else if n == 3 {
                for _ in 0..<13 { outcomes.append(h.login([.serviceCode]).0) }
            }
        }
        outcomes.append(h.login([.serviceCode]).0)
        #expect(outcomes.count == 16)
        #expect(outcomes.filter { $0 == .success }.count == 1)
        // In the order they ended: logins 4 to 16, then 3 (the first the service answered), 2, 1.
        #expect(outcomes[13] == .success)
        #expect(h.service.started.count == 1)
        #expect(h.service.checked.count == 3)  // the code's three tries
        let record = try h.record()
        #expect(record.sms.pending == nil)
        // Used: a login with it afterwards is refused without asking the service, which
        // would approve it again.
        h.service.onCheck = nil
        #expect(h.login([.serviceCode]).0 == .authErr)
        #expect(h.service.checked.count == 3)
    }

    @Test("two logins with one code, the second approved while the first waits: the first is refused and counted")
    func serviceApprovalAfterUse() throws {
        let h = try SMSHarness(provider: .nomado)
        h.service.approveRepeatedly = true
        var inner: LoginOutcome? = nil
        h.service.onCheck = { n in if n == 1 { inner = h.login([.serviceCode]).0 } }
        let (outer, c) = h.login([.serviceCode])
        #expect(inner == .success)
        #expect(outer == .authErr)
        #expect(c.logLines.contains {
            $0.contains("approved by nomado but is no longer pending (used by another login, replaced or expired)")
        })
        // Both answers were counted before the service was asked; the success then cleared
        // the count (failures are consecutive), and the refusal after it added nothing.
        #expect(try h.record().failures == 0)
        #expect(try h.record().lastSuccess == Fixture.now)
    }

    @Test("a service code texted before codes had an identity gets one, and is accepted once")
    func serviceCodeWithoutID() throws {
        let h = try SMSHarness(provider: .twilioVerify)
        try h.service.start(to: phone, template: "{{CODE}}")
        try h.fixture.store(create: true).update(Fixture.alice) { (record: inout UserRecord?) in
            record?.sms = SMSState(pending: PendingSMSCode(hash: nil, expires: Fixture.now + 300), lastSent: Fixture.now)
        }
        h.service.approveRepeatedly = true
        var inner: LoginOutcome? = nil
        var idDuringCheck: String? = nil
        h.service.onCheck = { n in
            idDuringCheck = try? h.record().sms.pending?.id
            if n == 1 { inner = h.login([.serviceCode]).0 }
        }
        let (outer, _) = h.login([.serviceCode])
        #expect(idDuringCheck.map(PendingSMSCode.isValidID) == true)
        #expect([inner, outer].filter { $0 == .success }.count == 1)
        #expect(h.service.started.count == 1)
    }

    @Test("the service cannot check, for a user with TOTP: asked once more, TOTP accepted")
    func verificationServiceFallback() throws {
        let h = try SMSHarness(totp: true, provider: .twilioVerify)
        h.service.checkFailure = SMSError(.timeout, "no answer within 10 seconds")
        let (outcome, c) = h.login([.text(""), .text("999999"), .totp])
        #expect(outcome == .success)
        #expect(c.prompts == [offerPrompt, sentPrompt, "Verification code: "])
    }

    @Test("at most three prompts, whatever the answers")
    func boundedPrompts() throws {
        let h = try SMSHarness(totp: true, provider: .twilioVerify)
        h.service.checkFailure = SMSError(.timeout, "slow")
        let (_, c) = h.login([.text(""), .text("999999"), .text(""), .text(""), .text("")])
        #expect(c.prompts.count <= 3)
    }
}
