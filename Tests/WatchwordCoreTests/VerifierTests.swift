import Testing
import WatchwordCore
import WatchwordCrypto
import WatchwordOTP

private let now = Fixture.now
private let step = Fixture.step
private func code(_ s: UInt64) -> [UInt8] { Array(Fixture.code(step: s).utf8) }
private func hotp(_ counter: UInt64) -> [UInt8] { Array(Fixture.hotp.code(counter: counter).utf8) }

private func policy(window: Int = 1, maxFailures: Int = 5, lockout: Int = 30, lockoutMax: Int = 3600, lookahead: Int = 10)
    -> Policy
{
    var p = Policy()
    p.window = window
    p.maxFailures = maxFailures
    p.lockoutSeconds = lockout
    p.lockoutMaxSeconds = lockoutMax
    p.hotpLookahead = lookahead
    return p
}

@Suite("Verifier: TOTP codes, replay and the window")
struct VerifierTOTPTests {
    let verifier = Verifier(policy: policy())

    @Test("the current code is accepted and its step recorded", arguments: [Int64(0), 1, 29])
    func acceptsCurrentCode(_ secondsIntoStep: Int64) {
        var record = Fixture.totpRecord()
        let verdict = verifier.check(code(step), record: &record, now: now + secondsIntoStep, key: nil)
        #expect(verdict == .accepted(.totp))
        #expect(record.otp?.lastStep == step)
        #expect(record.lastSuccess == now + secondsIntoStep)
        #expect(record.failures == 0)
    }

    @Test("the same code a second time is refused as a replay and counted")
    func replayRefused() {
        var record = Fixture.totpRecord()
        #expect(verifier.check(code(step), record: &record, now: now, key: nil) == .accepted(.totp))
        #expect(verifier.check(code(step), record: &record, now: now + 5, key: nil) == .rejected(failures: 1, lockedFor: nil))
        #expect(record.otp?.lastStep == step)
        #expect(record.lastSuccess == now)
    }

    @Test("a code that was already used is refused even after a reload of the record")
    func replayAcrossSerialization() throws {
        var record = Fixture.totpRecord()
        #expect(verifier.check(code(step), record: &record, now: now, key: nil) == .accepted(.totp))
        var reloaded = try UserRecord.parse(record.serialized(), expectedUser: record.user)
        #expect(verifier.check(code(step), record: &reloaded, now: now + 1, key: nil) == .rejected(failures: 1, lockedFor: nil))
    }

    @Test("the previous step's code is accepted within window 1, then the current one too")
    func previousStepWithinWindow() {
        var record = Fixture.totpRecord()
        #expect(verifier.check(code(step - 1), record: &record, now: now, key: nil) == .accepted(.totp))
        #expect(record.otp?.lastStep == step - 1)
        #expect(verifier.check(code(step), record: &record, now: now, key: nil) == .accepted(.totp))
        #expect(record.otp?.lastStep == step)
    }

    @Test("the next step's code is accepted within window 1 (a clock running ahead)")
    func nextStepWithinWindow() {
        var record = Fixture.totpRecord()
        #expect(verifier.check(code(step + 1), record: &record, now: now, key: nil) == .accepted(.totp))
        #expect(record.otp?.lastStep == step + 1)
        // Now the current step is older than the last accepted one.
        #expect(verifier.check(code(step), record: &record, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
    }

    @Test("a code for a step at or before the last accepted step is refused, though inside the window")
    func olderThanLastStepRefused() {
        for used in [step, step + 1] {
            var record = Fixture.totpRecord(lastStep: used)
            #expect(verifier.check(code(step - 1), record: &record, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
            #expect(verifier.check(code(step), record: &record, now: now, key: nil) == .rejected(failures: 2, lockedFor: nil))
            #expect(record.otp?.lastStep == used)
        }
        var record = Fixture.totpRecord(lastStep: step - 1)
        #expect(verifier.check(code(step), record: &record, now: now, key: nil) == .accepted(.totp))
    }

    @Test("a code two steps away is refused with window 1 and accepted with window 2", arguments: [Int64(-2), 2])
    func twoStepsAway(_ offset: Int64) {
        let target = UInt64(Int64(step) + offset)
        var narrow = Fixture.totpRecord()
        #expect(Verifier(policy: policy(window: 1)).check(code(target), record: &narrow, now: now, key: nil)
            == .rejected(failures: 1, lockedFor: nil))
        #expect(narrow.otp?.lastStep == nil)

        var wide = Fixture.totpRecord()
        #expect(Verifier(policy: policy(window: 2)).check(code(target), record: &wide, now: now, key: nil) == .accepted(.totp))
        #expect(wide.otp?.lastStep == target)
    }

    @Test("window 0 accepts only the current step")
    func windowZero() {
        let strict = Verifier(policy: policy(window: 0))
        for s in [step - 1, step + 1] {
            var record = Fixture.totpRecord()
            #expect(strict.check(code(s), record: &record, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
        }
        var record = Fixture.totpRecord()
        #expect(strict.check(code(step), record: &record, now: now, key: nil) == .accepted(.totp))
    }

    @Test("codes follow the enrollment's algorithm, digits and period")
    func enrollmentParameters() throws {
        var record = Fixture.totpRecord()
        record.otp?.algorithm = .sha256
        record.otp?.digits = 8
        record.otp?.period = 60
        let generator = try TOTP(secret: Fixture.secret, algorithm: .sha256, digits: 8, period: 60)
        let sha1Code = Array(Fixture.code(at: now).utf8)
        #expect(verifier.check(sha1Code, record: &record, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
        #expect(verifier.check(Array(generator.code(at: now).utf8), record: &record, now: now, key: nil) == .accepted(.totp))
        #expect(record.otp?.lastStep == UInt64(now) / 60)
    }

    @Test("a wrong code, or digits of the wrong length, is refused and counted")
    func wrongCode() {
        let verifier = Verifier(policy: policy(maxFailures: 10))
        var record = Fixture.totpRecord()
        let current = Fixture.code(step: step)
        for answer in [Fixture.wrongCode(at: now), String(current.dropLast()), current + "0", "0" + current, String(repeating: "9", count: 64)] {
            let before = record.failures
            #expect(verifier.check(Array(answer.utf8), record: &record, now: now, key: nil) == .rejected(failures: before + 1, lockedFor: nil))
        }
        #expect(record.otp?.lastStep == nil)
    }
}

@Suite("Verifier: HOTP look-ahead")
struct VerifierHOTPTests {
    let verifier = Verifier(policy: policy(lookahead: 10))

    @Test("a code three counters ahead is accepted and the counter moves past it")
    func lookAhead() {
        var record = Fixture.hotpRecord(counter: 100)
        #expect(verifier.check(hotp(103), record: &record, now: now, key: nil) == .accepted(.hotp))
        #expect(record.otp?.counter == 104)
        #expect(record.lastSuccess == now)
    }

    @Test("the code at the stored counter is accepted and moves it by one")
    func exactCounter() {
        var record = Fixture.hotpRecord(counter: 0)
        #expect(verifier.check(hotp(0), record: &record, now: now, key: nil) == .accepted(.hotp))
        #expect(record.otp?.counter == 1)
    }

    @Test("the last code inside the look-ahead is accepted, the first beyond it refused")
    func lookAheadEdge() {
        var edge = Fixture.hotpRecord(counter: 100)
        #expect(verifier.check(hotp(110), record: &edge, now: now, key: nil) == .accepted(.hotp))
        #expect(edge.otp?.counter == 111)

        var beyond = Fixture.hotpRecord(counter: 100)
        #expect(verifier.check(hotp(111), record: &beyond, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
        #expect(beyond.otp?.counter == 100)
    }

    @Test("an old counter, or a code used once, is refused")
    func oldCounterRefused() {
        var record = Fixture.hotpRecord(counter: 100)
        #expect(verifier.check(hotp(99), record: &record, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
        #expect(verifier.check(hotp(103), record: &record, now: now, key: nil) == .accepted(.hotp))
        for used in [UInt64(103), 101, 100] {
            #expect(verifier.check(hotp(used), record: &record, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
            record.failures = 0
        }
        #expect(record.otp?.counter == 104)
    }

    @Test("look-ahead 0 accepts only the stored counter")
    func noLookAhead() {
        let strict = Verifier(policy: policy(lookahead: 0))
        var record = Fixture.hotpRecord(counter: 7)
        #expect(strict.check(hotp(8), record: &record, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
        #expect(strict.check(hotp(7), record: &record, now: now, key: nil) == .accepted(.hotp))
    }

    @Test("a counter near the top of the range does not wrap around")
    func counterAtTop() {
        var record = Fixture.hotpRecord(counter: UInt64.max - 2)
        #expect(verifier.check(hotp(0), record: &record, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
        #expect(verifier.check(hotp(UInt64.max - 1), record: &record, now: now, key: nil) == .accepted(.hotp))
        #expect(record.otp?.counter == UInt64.max)
    }

    @Test("a token whose counter reached the end of the range is exhausted, not wrapped or crashed")
    func counterExhausted() {
        var record = Fixture.hotpRecord(counter: UInt64.max)
        #expect(verifier.check(hotp(UInt64.max), record: &record, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
        #expect(record.otp?.counter == UInt64.max)
    }
}

@Suite("Verifier: recovery codes")
struct VerifierRecoveryTests {
    let verifier = Verifier(policy: policy())
    let key = Fixture.recoveryKey

    func record(for user: UserName, codes: [String], hashedFor owner: UserName? = nil) -> UserRecord {
        var record = Fixture.totpRecord(user)
        record.recoveryCodeHashes = codes.map { RecoveryCodes.hash($0, user: owner ?? user, key: key) }
        return record
    }

    @Test("a recovery code is accepted once: its hash is removed and a second use refused")
    func singleUse() {
        var r = record(for: Fixture.alice, codes: ["1234567890", "5555555555"])
        let other = r.recoveryCodeHashes[1]
        #expect(verifier.check(Fixture.bytes("1234567890"), record: &r, now: now, key: key) == .accepted(.recovery))
        #expect(r.recoveryCodeHashes == [other])
        #expect(r.lastSuccess == now)
        #expect(verifier.check(Fixture.bytes("1234567890"), record: &r, now: now + 1, key: key) == .rejected(failures: 1, lockedFor: nil))
        #expect(r.recoveryCodeHashes == [other])
        #expect(verifier.check(Fixture.bytes(" 5555555555\r\n"), record: &r, now: now + 2, key: key) == .accepted(.recovery))
        #expect(r.recoveryCodeHashes.isEmpty)
    }

    @Test("a recovery code works for a user enrolled with recovery codes only")
    func recoveryOnly() {
        var r = UserRecord(user: Fixture.alice, created: 0)
        r.recoveryCodeHashes = [RecoveryCodes.hash("0000000001", user: Fixture.alice, key: key)]
        #expect(verifier.check(Fixture.bytes("0000000001"), record: &r, now: now, key: key) == .accepted(.recovery))
    }

    @Test("user A's recovery code does not work for user B, even with A's hash copied over")
    func boundToUser() {
        var bob = record(for: Fixture.bob, codes: ["1234567890"], hashedFor: Fixture.alice)
        let hashes = bob.recoveryCodeHashes
        #expect(verifier.check(Fixture.bytes("1234567890"), record: &bob, now: now, key: key) == .rejected(failures: 1, lockedFor: nil))
        #expect(bob.recoveryCodeHashes == hashes)
        #expect(RecoveryCodes.hash("1234567890", user: Fixture.alice, key: key) != RecoveryCodes.hash("1234567890", user: Fixture.bob, key: key))
    }

    @Test("a recovery code under another key, or with no key, is refused")
    func needsTheKey() {
        var r = record(for: Fixture.alice, codes: ["1234567890"])
        let otherKey = SymmetricKey(bytes: Array(repeating: 0x11, count: 32))
        #expect(verifier.check(Fixture.bytes("1234567890"), record: &r, now: now, key: otherKey) == .rejected(failures: 1, lockedFor: nil))
        #expect(verifier.check(Fixture.bytes("1234567890"), record: &r, now: now, key: nil) == .rejected(failures: 2, lockedFor: nil))
        #expect(r.recoveryCodeHashes.count == 1)
    }

    @Test("generated codes are 10 distinct digit strings, and hashes are 64 lowercase hex digits")
    func generated() throws {
        let codes = try RecoveryCodes.generate()
        #expect(codes.count == RecoveryCodes.count)
        #expect(Set(codes).count == codes.count)
        for c in codes {
            #expect(c.utf8.count == RecoveryCodes.length && c.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 })
            let h = RecoveryCodes.hash(c, user: Fixture.alice, key: key)
            #expect(h.utf8.count == 64 && h == h.lowercased() && Hex.decode(h) != nil)
        }
    }
}

@Suite("Verifier: failures and lockout")
struct VerifierLockoutTests {
    /// Makes `count` wrong answers, each once the previous lockout has run out; returns the
    /// lockout each one started (nil while under the limit) and the time after the last.
    func failRepeatedly(_ verifier: Verifier, _ record: inout UserRecord, count: Int) -> ([Int64?], Int64) {
        var time = now
        var lockouts: [Int64?] = []
        for _ in 0..<count {
            if record.lockedUntil > time { time = record.lockedUntil }
            let verdict = verifier.check(Array(Fixture.wrongCode(at: time).utf8), record: &record, now: time, key: nil)
            guard case .rejected(let failures, let lockedFor) = verdict else {
                Issue.record("expected a rejection, got \(verdict)")
                return (lockouts, time)
            }
            #expect(failures == record.failures)
            lockouts.append(lockedFor)
            if let lockedFor { #expect(record.lockedUntil == time + lockedFor) }
        }
        return (lockouts, time)
    }

    @Test("lockouts start at max_failures and double: 30, 60, 120 ... up to the cap")
    func doublingLockouts() {
        var record = Fixture.totpRecord()
        let (lockouts, _) = failRepeatedly(Verifier(policy: policy()), &record, count: 14)
        #expect(lockouts == [nil, nil, nil, nil, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600])
        #expect(record.failures == 14)
    }

    @Test("the cap is lockout_max_seconds")
    func cap() {
        var record = Fixture.totpRecord()
        let (lockouts, _) = failRepeatedly(
            Verifier(policy: policy(maxFailures: 2, lockout: 30, lockoutMax: 200)), &record, count: 6)
        #expect(lockouts == [nil, 30, 60, 120, 200, 200])
    }

    @Test("a huge failure count neither overflows nor escapes the cap")
    func hugeCount() {
        var record = Fixture.totpRecord()
        record.failures = 1_000_000_000
        let verdict = Verifier(policy: policy()).check(Array(Fixture.wrongCode(at: now).utf8), record: &record, now: now, key: nil)
        #expect(verdict == .rejected(failures: 1_000_000_000, lockedFor: 3600))
        #expect(record.lockedUntil == now + 3600)
    }

    @Test("while locked, even the correct code is not checked and nothing changes")
    func lockedRefusesCorrectCode() {
        let verifier = Verifier(policy: policy(maxFailures: 3))
        var record = Fixture.totpRecord()
        let (lockouts, time) = failRepeatedly(verifier, &record, count: 3)
        #expect(lockouts.last == 30)
        let before = record
        for offset in [Int64(0), 1, 29] {
            let verdict = verifier.check(Array(Fixture.code(at: time + offset).utf8), record: &record, now: time + offset, key: nil)
            #expect(verdict == .locked(remaining: 30 - offset))
            #expect(record == before)
        }
        // Also a recovery code is not looked at while locked.
        record.recoveryCodeHashes = [RecoveryCodes.hash("1234567890", user: record.user, key: Fixture.recoveryKey)]
        let withCodes = record
        #expect(verifier.check(Fixture.bytes("1234567890"), record: &record, now: time + 1, key: Fixture.recoveryKey) == .locked(remaining: 29))
        #expect(record == withCodes)
    }

    @Test("when the lockout has run out, the correct code is accepted and resets everything")
    func afterLockout() {
        let verifier = Verifier(policy: policy(maxFailures: 3))
        var record = Fixture.totpRecord()
        let (_, time) = failRepeatedly(verifier, &record, count: 3)
        let later = time + 30
        #expect(verifier.check(Array(Fixture.code(at: later).utf8), record: &record, now: later, key: nil) == .accepted(.totp))
        #expect(record.failures == 0)
        #expect(record.lockedUntil == 0)
        #expect(record.lastSuccess == later)
    }

    @Test("a success resets the failure count, so the next failure starts at 1 again")
    func successResets() {
        let verifier = Verifier(policy: policy())
        var record = Fixture.totpRecord()
        _ = failRepeatedly(verifier, &record, count: 4)
        #expect(record.failures == 4)
        #expect(verifier.check(code(step), record: &record, now: now, key: nil) == .accepted(.totp))
        #expect(record.failures == 0)
        #expect(verifier.check(Array(Fixture.wrongCode(at: now).utf8), record: &record, now: now, key: nil) == .rejected(failures: 1, lockedFor: nil))
    }
}

@Suite("Verifier: answers that are not codes")
struct VerifierAnswerTests {
    static let malformed: [[UInt8]] = [
        [], Fixture.bytes(" "), Fixture.bytes("\r\n"), Fixture.bytes("12  3456"), Fixture.bytes("12 -3456"),
        Fixture.bytes("123456-"), Fixture.bytes("12\t3456"), Fixture.bytes("12_3456"),
        Fixture.bytes("abcdef"), Fixture.bytes("12345a"), Fixture.bytes("+123456"), Fixture.bytes("-123456"),
        Fixture.bytes("123456.0"), Fixture.bytes("１２３４５６"), Fixture.bytes("١٢٣٤٥٦"), Fixture.bytes("۱۲۳۴۵۶"),
        Fixture.bytes("\u{A0}123456"), Fixture.bytes("123\u{2009}456"), Array(repeating: 0x31, count: 65), [0],
        Fixture.bytes(Fixture.code(step: Fixture.step)) + [0], [0] + Fixture.bytes(Fixture.code(step: Fixture.step)),
        [0xFF, 0x31, 0x32], Array(repeating: 0x31, count: 6) + [0x1B],
    ]

    @Test("malformed answers are refused without counting a failure or touching the record", arguments: malformed)
    func malformedNotCounted(_ answer: [UInt8]) {
        let verifier = Verifier(policy: policy(maxFailures: 5))
        var record = Fixture.totpRecord()
        record.failures = 4  // one more failure would lock
        let before = record
        let verdict = verifier.check(answer, record: &record, now: now, key: Fixture.recoveryKey)
        guard case .malformed(let why) = verdict else {
            Issue.record("\(answer) gave \(verdict)")
            return
        }
        #expect(why == (Verifier.isBlank(answer) ? "empty answer" : "answer is not a code of digits"))
        #expect(record == before)
        #expect(Verifier.normalize(answer) == nil)
    }

    @Test(
        "surrounding white space, CR and LF are trimmed, then the code is accepted",
        arguments: [" %", "% ", "\t%\r\n", "%\n", "\r%\r", "\u{0B}%\u{0C}", "  \t %  \r\n"])
    func trimmed(_ pattern: String) {
        let current = Fixture.code(step: step)
        let answer = Fixture.bytes(pattern.replacing("%", with: current))
        #expect(Verifier.normalize(answer) == current)
        var record = Fixture.totpRecord()
        #expect(Verifier(policy: policy()).check(answer, record: &record, now: now, key: nil) == .accepted(.totp))
    }

    @Test("64 digits is still a code (and wrong), 65 is not")
    func lengthLimit() {
        #expect(Verifier.normalize(Array(repeating: 0x37, count: 64)) == String(repeating: "7", count: 64))
        #expect(Verifier.normalize(Array(repeating: 0x37, count: 65)) == nil)
    }
}

@Suite("Verifier: codes as people type them")
struct VerifierTypedCodeTests {
    @Test("a single space or hyphen between digits is dropped", arguments: [
        ("123 456", "123456"), ("123-456", "123456"), (" 123 456 ", "123456"), ("1 2 3 4 5 6", "123456"),
        ("12-34-56", "123456"), ("1234 5678", "12345678"),
    ])
    func separators(_ typed: String, _ code: String) {
        #expect(Verifier.normalize(Array(typed.utf8)) == code)
    }

    @Test func aTypedCodeIsTheCode() {
        let verifier = Verifier(policy: Policy())
        var record = Fixture.totpRecord()
        let code = Fixture.code(step: Fixture.step)
        let typed = Array((code.prefix(3) + " " + code.dropFirst(3)).utf8)
        #expect(verifier.check(typed, record: &record, now: Fixture.now, key: nil) == .accepted(.totp))
    }
}
