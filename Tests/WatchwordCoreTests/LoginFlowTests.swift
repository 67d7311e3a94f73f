import Foundation
import Testing
import WatchwordCore
import WatchwordCrypto

/// A login against a real FileStore in a temp dir, with a fixed clock.
private struct Harness {
    let fixture: StoreFixture
    let store: FileStore
    let clock = TestClock(Fixture.now)
    var config = Config()

    /// Enrolls through a creating store (as the CLI does); logins use a store opened
    /// without `create`, as the helper does.
    init(enroll record: UserRecord? = Fixture.totpRecord()) throws {
        fixture = try StoreFixture("login")
        let admin = try fixture.store(create: true)
        if let record { try admin.update(record.user) { $0 = record } }
        store = try fixture.store(create: false)
    }

    var flow: LoginFlow { LoginFlow(config: config, store: store, now: clock.now) }

    func login(_ user: String = "alice", rhost: String = "", conversation: inout ScriptedConversation) -> LoginOutcome {
        flow.run(LoginRequest(user: user, rhost: rhost), conversation: &conversation).outcome
    }

    func login(_ user: String = "alice", answering answers: [String]) -> (LoginOutcome, ScriptedConversation) {
        var conversation = ScriptedConversation(answers: answers)
        let outcome = login(user, conversation: &conversation)
        return (outcome, conversation)
    }

    func record(_ user: UserName = Fixture.alice) throws -> UserRecord? { try store.load(user) }
    func snapshot() throws -> TreeSnapshot { try TreeSnapshot(fixture.statePath) }
    var currentCode: String { Fixture.code(at: clock.time) }
}

/// Nothing the helper logs or shows may contain a code that was typed or the secret.
private func expectNoSecrets(
    _ conversation: ScriptedConversation, codes: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
) {
    let forbidden = codes.filter { !$0.isEmpty } + [Fixture.secretBase32, Fixture.secretHex, String(Fixture.secretBase32.prefix(16))]
    for line in conversation.outputLines {
        for secret in forbidden {
            #expect(!line.contains(secret), "'\(line)' contains '\(secret)'", sourceLocation: sourceLocation)
        }
    }
    #expect(!conversation.logLines.isEmpty, "every outcome is logged", sourceLocation: sourceLocation)
}

@Suite("LoginFlow")
struct LoginFlowTests {
    @Test("the right code succeeds after exactly one prompt, 'Verification code: '")
    func success() throws {
        let h = try Harness()
        let code = h.currentCode
        let (outcome, conversation) = h.login(answering: [code])
        #expect(outcome == .success)
        #expect(conversation.prompts == ["Verification code: "])
        #expect(conversation.errors.isEmpty)
        #expect(conversation.logs.contains { $0.0 == .info && $0.1.contains("alice") && $0.1.contains("accepted (totp)") })
        let record = try #require(try h.record())
        #expect(record.otp?.lastStep == Fixture.step)
        #expect(record.lastSuccess == Fixture.now)
        expectNoSecrets(conversation, codes: [code])
    }

    @Test("the same code in a second login is refused (replay across sessions)")
    func replay() throws {
        let h = try Harness()
        let code = h.currentCode
        #expect(h.login(answering: [code]).0 == .success)
        h.clock.advance(by: 10)
        let (outcome, conversation) = h.login(answering: [code])
        #expect(outcome == .authErr)
        #expect(try h.record()?.failures == 1)
        expectNoSecrets(conversation, codes: [code])
    }

    @Test("a user who is not enrolled gets notEnrolled and no prompt")
    func notEnrolled() throws {
        let h = try Harness(enroll: nil)
        let before = try h.snapshot()
        let (outcome, conversation) = h.login(answering: ["123456"])
        #expect(outcome == .notEnrolled)
        #expect(conversation.prompts.isEmpty)
        #expect(try h.snapshot() == before)
        expectNoSecrets(conversation)

        // A record with neither a token nor recovery codes is not an enrollment either.
        let empty = try Harness(enroll: UserRecord(user: Fixture.alice, created: 0))
        let (emptyOutcome, emptyConversation) = empty.login(answering: ["123456"])
        #expect(emptyOutcome == .notEnrolled)
        #expect(emptyConversation.prompts.isEmpty)
        expectNoSecrets(emptyConversation)
    }

    @Test("a locked-out user gets maxtries without a prompt, and the record is not touched")
    func lockedOut() throws {
        var record = Fixture.totpRecord()
        record.failures = 5
        record.lockedUntil = Fixture.now + 100
        let h = try Harness(enroll: record)
        let before = try h.snapshot()
        let (outcome, conversation) = h.login(answering: [h.currentCode])
        #expect(outcome == .maxtries)
        #expect(conversation.prompts.isEmpty)
        #expect(conversation.errors.contains { $0.contains("100 seconds") })
        #expect(try h.snapshot() == before)
        expectNoSecrets(conversation)
    }

    @Test("a wrong code is authErr and counts a failure; the fifth locks, the sixth login is not prompted")
    func wrongCodesLock() throws {
        let h = try Harness()
        for attempt in 1...5 {
            let wrong = Fixture.wrongCode(at: h.clock.time)
            let (outcome, conversation) = h.login(answering: [wrong])
            #expect(outcome == .authErr)
            #expect(conversation.prompts == [LoginFlow.prompt])
            #expect(try h.record()?.failures == attempt)
            #expect(conversation.logLines.contains { $0.contains("failure \(attempt) of 5") })
            expectNoSecrets(conversation, codes: [wrong])
            h.clock.advance(by: 1)
        }
        #expect(try h.record()?.lockedUntil == Fixture.now + 4 + 30)
        let (outcome, conversation) = h.login(answering: [h.currentCode])
        #expect(outcome == .maxtries)
        #expect(conversation.prompts.isEmpty)
    }

    @Test("a failed conversation is convErr and counts nothing")
    func conversationFails() throws {
        let h = try Harness()
        let before = try h.snapshot()
        var conversation = ScriptedConversation([.failed])
        #expect(h.login(conversation: &conversation) == .convErr)
        #expect(conversation.prompts == [LoginFlow.prompt])
        #expect(try h.snapshot() == before)
        expectNoSecrets(conversation)
    }

    @Test("an answer too long to relay is authErr without counting a failure")
    func tooLong() throws {
        let h = try Harness()
        let before = try h.snapshot()
        var conversation = ScriptedConversation([.tooLong])
        #expect(h.login(conversation: &conversation) == .authErr)
        #expect(try h.snapshot() == before)
        #expect(try h.record()?.failures == 0)
        expectNoSecrets(conversation)
    }

    @Test("a malformed answer is authErr with a hint, without counting a failure")
    func malformed() throws {
        let h = try Harness()
        let (outcome, conversation) = h.login(answering: ["12  34 56"])
        #expect(outcome == .authErr)
        #expect(conversation.errors == ["The code must be digits only."])
        #expect(try h.record()?.failures == 0)
        expectNoSecrets(conversation, codes: ["12  34 56"])
    }

    @Test("an answer with surrounding white space is trimmed and accepted")
    func trimmedAnswer() throws {
        let h = try Harness()
        let code = h.currentCode
        let (outcome, conversation) = h.login(answering: ["  \(code)\r\n"])
        #expect(outcome == .success)
        expectNoSecrets(conversation, codes: [code])
    }

    @Test(
        "an invalid user name is authErr without touching the store",
        arguments: ["../etc", "..", "", "-root", "a/b", "root\n", ".ssh", "al ice", "\u{430}lice"])
    func invalidUserName(_ name: String) {
        let spy = SpyStore()
        var conversation = ScriptedConversation(answers: ["123456"])
        let flow = LoginFlow(config: Config(), store: spy, now: { Fixture.now })
        #expect(flow.run(LoginRequest(user: name), conversation: &conversation).outcome == .authErr)
        #expect(spy.calls.isEmpty)
        #expect(conversation.prompts.isEmpty)
        #expect(conversation.logs.contains { $0.0 == .notice && $0.1.contains("not a valid user name") })
        expectNoSecrets(conversation, codes: ["123456"])
    }

    @Test("an invalid user name leaves a real state directory untouched")
    func invalidUserNameRealStore() throws {
        let h = try Harness()
        let before = try h.snapshot()
        let (outcome, conversation) = h.login("../alice", answering: [h.currentCode])
        #expect(outcome == .authErr)
        #expect(try h.snapshot() == before)
        expectNoSecrets(conversation, codes: [h.currentCode])
    }

    @Test("a corrupt user file is unavailable, with an err log line and no prompt")
    func corruptFile() throws {
        let h = try Harness()
        try Posix.write(h.fixture.userFile(), Array("watchword-user 1\nuser alice\n".utf8))
        let before = try h.snapshot()
        let (outcome, conversation) = h.login(answering: [h.currentCode])
        #expect(outcome == .unavailable)
        #expect(conversation.prompts.isEmpty)
        #expect(conversation.logs.contains { $0.0 == .err && $0.1.contains("corrupt") })
        #expect(conversation.errors.contains { $0.contains("unavailable") })
        #expect(try h.snapshot() == before)
        expectNoSecrets(conversation)
    }

    @Test("an untrusted user file is unavailable with the reason logged")
    func untrustedFile() throws {
        let h = try Harness()
        try Posix.chmod(h.fixture.userFile(), 0o644)
        let (outcome, conversation) = h.login(answering: [h.currentCode])
        #expect(outcome == .unavailable)
        #expect(conversation.prompts.isEmpty)
        #expect(conversation.logs.contains { $0.0 == .err && $0.1.contains("0644") })
        expectNoSecrets(conversation)
    }

    @Test("a corrupt file found under the lock, after the prompt, is unavailable too")
    func corruptAfterPrompt() throws {
        let h = try Harness()
        var conversation = ScriptedConversation(answers: [h.currentCode])
        let path = h.fixture.userFile()
        conversation.onPrompt = { try? Posix.write(path, Array("garbage\n".utf8)) }
        #expect(h.login(conversation: &conversation) == .unavailable)
        #expect(conversation.logs.contains { $0.0 == .err })
        expectNoSecrets(conversation, codes: [h.currentCode])
    }

    @Test("a user removed while the prompt is open is denied")
    func removedWhilePrompting() throws {
        let h = try Harness()
        var conversation = ScriptedConversation(answers: [h.currentCode])
        let store = h.store
        conversation.onPrompt = { _ = try? store.update(Fixture.alice) { $0 = nil } }
        #expect(h.login(conversation: &conversation) == .authErr)
        #expect(try h.record() == nil)
        expectNoSecrets(conversation, codes: [h.currentCode])
    }

    @Test("a lockout set by another session while the prompt is open is honoured")
    func lockedWhilePrompting() throws {
        let h = try Harness()
        var conversation = ScriptedConversation(answers: [h.currentCode])
        let store = h.store
        conversation.onPrompt = { _ = try? store.update(Fixture.alice) { $0?.lockedUntil = Fixture.now + 60 } }
        #expect(h.login(conversation: &conversation) == .maxtries)
        #expect(try h.record()?.otp?.lastStep == nil)
        expectNoSecrets(conversation, codes: [h.currentCode])
    }

    @Test("a recovery code is accepted once, and the user is told it cannot be used again")
    func recoveryCode() throws {
        let h = try Harness()
        let key = try #require(try h.fixture.store(create: true).recoveryKey(create: true))
        let code = "4817203956"
        try h.store.update(Fixture.alice) { $0?.recoveryCodeHashes = [RecoveryCodes.hash(code, user: Fixture.alice, key: key)] }

        let (outcome, conversation) = h.login(answering: [code])
        #expect(outcome == .success)
        #expect(conversation.infos.count == 1)
        #expect(conversation.infos.first?.contains("cannot be used again") == true)
        #expect(conversation.logLines.contains { $0.contains("accepted (recovery)") })
        #expect(try h.record()?.recoveryCodeHashes == [])
        expectNoSecrets(conversation, codes: [code])

        let (again, second) = h.login(answering: [code])
        #expect(again == .authErr)
        #expect(second.infos.isEmpty)
        expectNoSecrets(second, codes: [code])
    }

    @Test("recovery codes on file without the key file deny as unavailable, without a prompt")
    func recoveryKeyMissing() throws {
        var record = Fixture.totpRecord()
        record.recoveryCodeHashes = [RecoveryCodes.hash("1234567890", user: Fixture.alice, key: Fixture.recoveryKey)]
        let h = try Harness(enroll: record)
        let (outcome, conversation) = h.login(answering: ["1234567890"])
        #expect(outcome == .unavailable)
        #expect(conversation.prompts.isEmpty)
        #expect(conversation.logs.contains { $0.0 == .err && $0.1.contains("recovery.key") })
        expectNoSecrets(conversation, codes: ["1234567890"])
    }

    @Test("the remote host is named in the log")
    func logsRemoteHost() throws {
        let h = try Harness()
        var conversation = ScriptedConversation(answers: [h.currentCode])
        #expect(h.login(rhost: "192.0.2.7", conversation: &conversation) == .success)
        #expect(conversation.logLines.allSatisfy { $0.hasPrefix("user alice from 192.0.2.7: ") })
        expectNoSecrets(conversation, codes: [h.currentCode])
    }

    @Test("outcomes map to distinct helper exit statuses, success being 0")
    func exitStatuses() {
        let all: [LoginOutcome] = [.success, .authErr, .notEnrolled, .maxtries, .unavailable, .convErr]
        #expect(Set(all.map(\.exitStatus)).count == all.count)
        #expect(LoginOutcome.success.exitStatus == 0)
        #expect(all.filter { $0.exitStatus == 0 } == [.success])
    }
}
