import Testing
import WatchwordCore
import WatchwordOTP

@Suite struct PendingEnrollmentTests {
    let user = try! UserName("alice")
    let secret: [UInt8] = Array(0..<20)
    let now: Int64 = 1_800_000_000

    func record(expires: Int64? = nil) -> UserRecord {
        var record = UserRecord(user: user, created: 1)
        record.pending = PendingEnrollment(
            otp: OTPEnrollment(kind: .totp, secret: secret, issuer: "host"), expires: expires ?? now + 600)
        return record
    }

    func code(at time: Int64) -> [UInt8] {
        Array(try! TOTP(secret: secret).code(at: time).utf8)
    }

    @Test func pendingRoundTripsAndLeavesOtherFilesAlone() throws {
        let text = String(decoding: record().serialized(), as: UTF8.self)
        #expect(text.contains("\npending totp\npending.secret "))
        #expect(text.contains("\npending.expires \(now + 600)\n"))
        #expect(try UserRecord.parse(record().serialized(), expectedUser: user) == record())
        let plain = UserRecord(user: user, created: 1)
        #expect(!String(decoding: plain.serialized(), as: UTF8.self).contains("pending"))
        #expect(!record().isEnrolled)
    }

    @Test func pendingNeedsItsExpiry() {
        let text = String(decoding: record().serialized(), as: UTF8.self)
            .replacingOccurrences(of: "pending.expires \(now + 600)\n", with: "")
        #expect(throws: StateFormatError.self) { try UserRecord.parse(Array(text.utf8), expectedUser: user) }
    }

    @Test func theRightCodeActivatesTheTokenOnce() {
        let verifier = Verifier(policy: Policy())
        var r = record()
        let verdict = verifier.confirmPending(code(at: now), secret: secret, record: &r, now: now, recoveryHashes: ["ab"])
        #expect(verdict == .accepted(.totp))
        #expect(r.pending == nil && r.otp?.secret == secret && r.otp?.lastStep == UInt64(now / 30))
        #expect(r.recoveryCodeHashes == ["ab"] && r.isEnrolled)
        // Nothing pending any more: a second confirmation changes nothing.
        let before = r
        #expect(verifier.confirmPending(code(at: now), secret: secret, record: &r, now: now, recoveryHashes: []) == nil)
        #expect(r == before)
        // And the same code at the ordinary prompt is a replay.
        if case .rejected = verifier.check(code(at: now), record: &r, now: now, key: nil) {} else {
            Issue.record("the confirming code was accepted twice")
        }
    }

    @Test func aWrongCodeIsCountedAndKeepsTheToken() {
        let verifier = Verifier(policy: Policy())
        var r = record()
        var wrong = code(at: now)
        wrong[0] = wrong[0] == 0x30 ? 0x31 : 0x30
        #expect(verifier.confirmPending(wrong, secret: secret, record: &r, now: now, recoveryHashes: []) == .rejected(failures: 1, lockedFor: nil))
        #expect(r.pending == record().pending && r.otp == nil)
    }

    @Test func anotherExpiredOrReplacedTokenIsNotConfirmed() {
        let verifier = Verifier(policy: Policy())
        var expired = record(expires: now)
        #expect(verifier.confirmPending(code(at: now), secret: secret, record: &expired, now: now, recoveryHashes: []) == nil)
        var replaced = record()
        #expect(verifier.confirmPending(code(at: now), secret: Array(1...20), record: &replaced, now: now, recoveryHashes: []) == nil)
        #expect(replaced == record())
        var enrolled = record()
        enrolled.otp = OTPEnrollment(kind: .totp, secret: Array(repeating: 7, count: 20))
        #expect(verifier.confirmPending(code(at: now), secret: secret, record: &enrolled, now: now, recoveryHashes: []) == nil)
    }
}
