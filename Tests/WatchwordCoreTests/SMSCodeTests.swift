import Testing
import WatchwordCore
import WatchwordCrypto

private let now = Fixture.now
private let key = Fixture.recoveryKey
private let phone = try! PhoneNumber("+14155550123")
private let idA = String(repeating: "a1", count: 16)

private func settings(
    ttl: Int = 300, resend: Int = 30, perHour: Int = 5, total: Int = 100, digits: Int = 6
) -> SMSSettings {
    var s = SMSSettings()
    s.provider = .twilio
    s.codeTTLSeconds = ttl
    s.resendIntervalSeconds = resend
    s.maxPerHour = perHour
    s.maxPerHourTotal = total
    s.codeDigits = digits
    return s
}

private func smsRecord() -> UserRecord {
    var record = UserRecord(user: Fixture.alice, created: Fixture.created)
    record.phone = phone
    return record
}

/// A record with a pending code `code` sent at `now`.
private func pending(_ code: String, policy: SMSCodePolicy = SMSCodePolicy(settings: settings()), record base: UserRecord = smsRecord())
    -> UserRecord
{
    var record = base
    policy.recordSend(&record, codeHash: SMSCodePolicy.hash(code, user: record.user, key: key), id: idA, now: now)
    return record
}

@Suite("SMS codes: when a text may go out")
struct SMSSendPolicyTests {
    let policy = SMSCodePolicy(settings: settings())

    @Test("a user who never had a text may have one; sending records the code, the time and the count")
    func firstSend() {
        var record = smsRecord()
        #expect(policy.plan(for: record, now: now) == .send)
        policy.recordSend(&record, codeHash: "h", id: idA, now: now)
        #expect(record.sms.pending == PendingSMSCode(hash: "h", expires: now + 300, tries: 0, id: idA))
        #expect(record.sms.lastSent == now)
        #expect(record.sms.sent.count(at: now) == 1)
    }

    @Test("within resend_interval_seconds a live code is reused, nothing sent")
    func reuseWithinInterval() {
        let record = pending("123456")
        #expect(policy.plan(for: record, now: now + 10) == .reuse(sentAgo: 10))
        #expect(policy.plan(for: record, now: now + 30) == .send)
    }

    @Test("within resend_interval_seconds without a live code: wait for the rest of the interval")
    func waitWithinInterval() {
        var record = pending("123456")
        record.sms.pending = nil
        #expect(policy.plan(for: record, now: now + 12) == .refused(.resendInterval(wait: 18)))
        // A clock that went back counts as "just sent".
        #expect(policy.plan(for: record, now: now - 100) == .refused(.resendInterval(wait: 30)))
    }

    @Test("max_per_hour texts, then none until the oldest leaves the hour")
    func hourlyCap() {
        var record = smsRecord()
        var t = now
        for _ in 0..<5 {
            #expect(policy.plan(for: record, now: t) == .send)
            policy.recordSend(&record, codeHash: nil, id: idA, now: t)
            record.sms.pending = nil
            t += 60
        }
        guard case .refused(.userHourly(let wait)) = policy.plan(for: record, now: t) else {
            Issue.record("not refused: \(policy.plan(for: record, now: t))")
            return
        }
        // Counted by the minute: the first send's minute leaves the hour 60 minutes after it began.
        #expect(wait == (now / 60) * 60 + 3600 - t)
        #expect(policy.plan(for: record, now: t + wait) == .send)
        // Over the cap with a live code: that code is still offered.
        record.sms.pending = PendingSMSCode(hash: "h", expires: t + 100)
        #expect(policy.plan(for: record, now: t) == .reuse(sentAgo: t - record.sms.lastSent))
    }

    @Test("the global cap counts every user's texts and refuses once reached")
    func globalCap() {
        let capped = SMSCodePolicy(settings: settings(total: 3))
        var global = SMSGlobalState()
        for i in 0..<3 { #expect(capped.takeGlobal(&global, now: now + Int64(i)) == nil) }
        #expect(global.sent.count(at: now) == 3)
        guard case .globalHourly(let wait)? = capped.takeGlobal(&global, now: now + 10) else {
            Issue.record("not refused")
            return
        }
        #expect(wait > 3500 && wait <= 3600)
        #expect(global.sent.count(at: now + 10) == 3)  // a refusal is not counted
    }

    @Test("a test text only minds the hourly cap")
    func testText() {
        var record = pending("123456")
        #expect(policy.planTest(for: record, now: now + 1) == nil)
        for _ in 0..<4 { record.sms.sent.record(at: now) }
        #expect(policy.planTest(for: record, now: now + 1) != nil)
    }

    @Test("codes are code_digits digits from the CSPRNG, and differ")
    func codes() throws {
        let eight = SMSCodePolicy(settings: settings(digits: 8))
        let made = try (0..<50).map { _ in try eight.makeCode() }
        #expect(made.allSatisfy { $0.utf8.count == 8 && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } })
        #expect(Set(made).count > 45)
    }

    @Test("the stored hash is keyed, bound to the user and apart from recovery-code hashes")
    func hashes() {
        let h = SMSCodePolicy.hash("123456", user: Fixture.alice, key: key)
        #expect(h.utf8.count == 64)
        #expect(h != SMSCodePolicy.hash("123456", user: Fixture.bob, key: key))
        #expect(h != SMSCodePolicy.hash("123456", user: Fixture.alice, key: SymmetricKey(bytes: Array(repeating: 1, count: 32))))
        #expect(h != RecoveryCodes.hash("123456", user: Fixture.alice, key: key))
        #expect(!h.contains("123456"))
    }

    @Test("durations read naturally")
    func durations() {
        #expect(SMSCodePolicy.duration(1) == "1 second")
        #expect(SMSCodePolicy.duration(45) == "45 seconds")
        #expect(SMSCodePolicy.duration(119) == "119 seconds")
        #expect(SMSCodePolicy.duration(120) == "2 minutes")
        #expect(SMSCodePolicy.duration(3541) == "60 minutes")
    }
}

@Suite("SMS codes: checking answers (Verifier)")
struct SMSVerifierTests {
    let verifier = Verifier(policy: Policy())

    @Test("the texted code is accepted once, and dies with the success")
    func acceptedOnce() {
        var record = pending("123456")
        #expect(verifier.check(Fixture.bytes("123456"), record: &record, now: now + 5, key: key, sms: .local) == .accepted(.sms))
        #expect(record.sms.pending == nil)
        #expect(record.lastSuccess == now + 5)
        #expect(verifier.check(Fixture.bytes("123456"), record: &record, now: now + 6, key: key, sms: .local) == .rejected(failures: 1, lockedFor: nil))
    }

    @Test("a wrong answer uses a try and counts as a failure; after three the right code is refused")
    func threeTries() {
        var record = pending("123456")
        for i in 1...3 {
            #expect(verifier.check(Fixture.bytes("000000"), record: &record, now: now, key: key, sms: .local) == .rejected(failures: i, lockedFor: nil))
            #expect(record.sms.pending?.tries == (i < 3 ? i : nil))
        }
        #expect(record.sms.pending == nil)
        #expect(verifier.check(Fixture.bytes("123456"), record: &record, now: now, key: key, sms: .local) == .rejected(failures: 4, lockedFor: nil))
    }

    @Test("an expired code is refused and dropped")
    func expired() {
        var record = pending("123456")
        #expect(verifier.check(Fixture.bytes("123456"), record: &record, now: now + 300, key: key, sms: .local) == .rejected(failures: 1, lockedFor: nil))
        #expect(record.sms.pending == nil)
        var fresh = pending("123456")
        #expect(verifier.check(Fixture.bytes("123456"), record: &fresh, now: now + 299, key: key, sms: .local) == .accepted(.sms))
    }

    @Test("without SMS taking part (no provider) the pending code is not accepted")
    func notWithoutSMS() {
        var record = pending("123456")
        #expect(verifier.check(Fixture.bytes("123456"), record: &record, now: now, key: key, sms: .none) == .rejected(failures: 1, lockedFor: nil))
        var other = pending("123456")
        #expect(verifier.check(Fixture.bytes("123456"), record: &other, now: now, key: nil, sms: .local) == .rejected(failures: 1, lockedFor: nil))
    }

    @Test("TOTP and recovery codes still work while a code is pending, and end it")
    func otherMethods() {
        var totp = pending("123456", record: {
            var r = Fixture.totpRecord()
            r.phone = phone
            return r
        }())
        #expect(verifier.check(Array(Fixture.code(at: now).utf8), record: &totp, now: now, key: key, sms: .local) == .accepted(.totp))
        #expect(totp.sms.pending == nil)
        // Replay of the TOTP code is still refused.
        #expect(verifier.check(Array(Fixture.code(at: now).utf8), record: &totp, now: now, key: key, sms: .local) == .rejected(failures: 1, lockedFor: nil))

        var withRecovery = pending("123456")
        withRecovery.recoveryCodeHashes = [RecoveryCodes.hash("1111122222", user: Fixture.alice, key: key)]
        #expect(verifier.check(Fixture.bytes("1111122222"), record: &withRecovery, now: now, key: key, sms: .local) == .accepted(.recovery))
        #expect(withRecovery.sms.pending == nil && withRecovery.recoveryCodeHashes.isEmpty)
    }

    @Test("wrong SMS codes count toward the same lockout as TOTP failures")
    func lockout() {
        var p = Policy()
        p.maxFailures = 3
        p.lockoutSeconds = 60
        let strict = Verifier(policy: p)
        var record = pending("123456")
        _ = strict.check(Fixture.bytes("000001"), record: &record, now: now, key: key, sms: .local)
        _ = strict.check(Fixture.bytes("000002"), record: &record, now: now, key: key, sms: .local)
        #expect(strict.check(Fixture.bytes("000003"), record: &record, now: now, key: key, sms: .local) == .rejected(failures: 3, lockedFor: 60))
        #expect(strict.check(Fixture.bytes("123456"), record: &record, now: now + 1, key: key, sms: .local) == .locked(remaining: 59))
    }

    @Test("with a service-held code, a non-matching answer is counted (a try and a failure), then the service is asked")
    func service() {
        var record = smsRecord()
        SMSCodePolicy(settings: settings()).recordSend(&record, codeHash: nil, id: idA, now: now)
        #expect(
            verifier.check(Fixture.bytes("424242"), record: &record, now: now, key: key, sms: .service)
                == .askService(code: "424242", codeID: idA, failures: 1, lockedFor: nil))
        #expect(record.sms.pending?.tries == 1 && record.failures == 1)
        // A refusal changes nothing more: the answer was counted when it was asked.
        let counted = record
        #expect(
            verifier.finishServiceCheck(approved: false, codeID: idA, record: &record, now: now)
                == .rejected(failures: 1, lockedFor: nil))
        #expect(record == counted)
        #expect(
            verifier.check(Fixture.bytes("424242"), record: &record, now: now, key: key, sms: .service)
                == .askService(code: "424242", codeID: idA, failures: 2, lockedFor: nil))
        // An approval gives the failure back (as any success does) and uses the code.
        #expect(verifier.finishServiceCheck(approved: true, codeID: idA, record: &record, now: now) == .accepted(.sms))
        #expect(record.sms.pending == nil && record.failures == 0)
        // Approved again (a provider that approves repeatedly, a racing login): refused.
        #expect(
            verifier.finishServiceCheck(approved: true, codeID: idA, record: &record, now: now)
                == .rejected(failures: 0, lockedFor: nil))
        #expect(record.lastSuccess == now)
    }

    @Test("an approval is taken only for the same code, still pending and not expired")
    func serviceApprovalNeedsTheSameLiveCode() {
        let policy = SMSCodePolicy(settings: settings())
        var record = smsRecord()
        policy.recordSend(&record, codeHash: nil, id: idA, now: now)
        guard case .askService(_, let id, _, _) = verifier.check(Fixture.bytes("424242"), record: &record, now: now, key: key, sms: .service) else {
            Issue.record("not asked")
            return
        }
        // A new text replaced the code meanwhile.
        var replaced = record
        policy.recordSend(&replaced, codeHash: nil, id: String(repeating: "b2", count: 16), now: now + 40)
        #expect(verifier.finishServiceCheck(approved: true, codeID: id, record: &replaced, now: now + 41) == .rejected(failures: 1, lockedFor: nil))
        #expect(replaced.sms.pending != nil && replaced.lastSuccess == 0)
        // The code expired before the approval came back.
        var late = record
        #expect(verifier.finishServiceCheck(approved: true, codeID: id, record: &late, now: now + 300) == .rejected(failures: 1, lockedFor: nil))
        #expect(late.lastSuccess == 0)
        // The same code, alive: accepted, even with the code's tries used up by answers after it.
        var busy = record
        for _ in 0..<2 { _ = verifier.check(Fixture.bytes("111111"), record: &busy, now: now, key: key, sms: .service) }
        #expect(busy.sms.pending?.tries == 3 && busy.failures == 3)
        #expect(verifier.finishServiceCheck(approved: true, codeID: id, record: &busy, now: now + 1) == .accepted(.sms))
    }

    @Test("the answer that reaches max_failures locks before the service is asked; an approval still unlocks")
    func serviceLockout() {
        var p = Policy()
        p.maxFailures = 2
        p.lockoutSeconds = 60
        let strict = Verifier(policy: p)
        var record = smsRecord()
        SMSCodePolicy(settings: settings()).recordSend(&record, codeHash: nil, id: idA, now: now)
        #expect(strict.check(Fixture.bytes("111111"), record: &record, now: now, key: key, sms: .service) == .askService(code: "111111", codeID: idA, failures: 1, lockedFor: nil))
        #expect(strict.check(Fixture.bytes("424242"), record: &record, now: now, key: key, sms: .service) == .askService(code: "424242", codeID: idA, failures: 2, lockedFor: 60))
        // Whatever the service says to the first, the next answer is refused unchecked.
        #expect(strict.check(Fixture.bytes("424243"), record: &record, now: now + 1, key: key, sms: .service) == .locked(remaining: 59))
        // The second answer was asked before the lockout: its approval is taken.
        #expect(strict.finishServiceCheck(approved: true, codeID: idA, record: &record, now: now + 1) == .accepted(.sms))
        #expect(record.failures == 0 && record.lockedUntil == 0)
    }

    @Test("a service-held code without an identity (an old record) is never asked about")
    func serviceWithoutID() {
        var record = smsRecord()
        record.sms.pending = PendingSMSCode(hash: nil, expires: now + 300)
        #expect(verifier.check(Fixture.bytes("424242"), record: &record, now: now, key: key, sms: .service) == .rejected(failures: 1, lockedFor: nil))
    }

    @Test("the service is not asked without a live code, nor for answers that cannot be codes")
    func serviceNotAsked() {
        var none = smsRecord()
        #expect(verifier.check(Fixture.bytes("424242"), record: &none, now: now, key: key, sms: .service) == .rejected(failures: 1, lockedFor: nil))
        var record = smsRecord()
        SMSCodePolicy(settings: settings()).recordSend(&record, codeHash: nil, id: idA, now: now)
        #expect(verifier.check(Fixture.bytes("123"), record: &record, now: now, key: key, sms: .service) == .rejected(failures: 1, lockedFor: nil))
        #expect(verifier.check(Fixture.bytes("12345678901"), record: &record, now: now, key: key, sms: .service) == .rejected(failures: 2, lockedFor: nil))
        #expect(verifier.check(Fixture.bytes("424242"), record: &record, now: now + 300, key: key, sms: .service) == .rejected(failures: 3, lockedFor: nil))
        #expect(record.sms.pending == nil)  // expired: dropped
        // Three asks use the code up; it stays, dead, for answers still at the service.
        var used = smsRecord()
        SMSCodePolicy(settings: settings()).recordSend(&used, codeHash: nil, id: idA, now: now)
        for n in 1...3 {
            #expect(
                verifier.check(Fixture.bytes("111111"), record: &used, now: now, key: key, sms: .service)
                    == .askService(code: "111111", codeID: idA, failures: n, lockedFor: nil))
            _ = verifier.finishServiceCheck(approved: false, codeID: idA, record: &used, now: now)
        }
        #expect(used.sms.pending?.tries == 3 && used.sms.pending?.isAlive(at: now) == false)
        #expect(verifier.check(Fixture.bytes("424242"), record: &used, now: now, key: key, sms: .service) == .rejected(failures: 4, lockedFor: nil))
        #expect(used.sms.pending?.tries == 3)
        #expect(verifier.check(Fixture.bytes("424242"), record: &used, now: now + 300, key: key, sms: .service) == .rejected(failures: 5, lockedFor: 30))
        #expect(used.sms.pending == nil)
    }

    @Test("an empty answer is blank; spaces and tabs too; digits are not")
    func blank() {
        #expect(Verifier.isBlank([]))
        #expect(Verifier.isBlank(Fixture.bytes(" \t\r\n")))
        #expect(!Verifier.isBlank(Fixture.bytes(" 1 ")))
    }
}
