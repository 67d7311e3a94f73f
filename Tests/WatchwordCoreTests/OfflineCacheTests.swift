import Testing
import WatchwordCore
import WatchwordCrypto
import WatchwordOTP
import WatchwordPostgres

/// The fleet's offline cache: keyed hashes instead of the secret, the login flow on top of
/// it, and what is sent back to the database afterwards.
@Suite struct OfflineCacheTests {
    let policy = Policy()
    let key = SymmetricKey(bytes: Array(repeating: 0x11, count: 32))

    func cache() throws -> (TemporaryDirectory, OfflineCache) {
        let dir = try TemporaryDirectory("offline")
        let root = try SecureDirectory.open(dir.sub("state"), create: true)
        return (dir, OfflineCache(root: root))
    }

    @Test func codesMatchOnlyTheirOwnCounterAndUser() throws {
        let otp = Fixture.totpRecord().otp!
        let codes = try OfflineCodes.make(otp: otp, user: Fixture.alice, first: Fixture.step, count: 10, key: key)
        #expect(codes.count == 10)
        let right = Array(Fixture.code(step: Fixture.step + 3).utf8)
        #expect(codes.matches(right, counter: Fixture.step + 3, user: Fixture.alice))
        #expect(!codes.matches(right, counter: Fixture.step + 4, user: Fixture.alice))
        #expect(!codes.matches(right, counter: Fixture.step + 3, user: Fixture.bob))
        // Outside the cached run nothing matches, even the right code.
        let late = Array(Fixture.code(step: Fixture.step + 10).utf8)
        #expect(!codes.matches(late, counter: Fixture.step + 10, user: Fixture.alice))
        // Another host's key makes other hashes.
        let other = try OfflineCodes.make(
            otp: otp, user: Fixture.alice, first: Fixture.step, count: 10,
            key: SymmetricKey(bytes: Array(repeating: 0x22, count: 32)))
        #expect(other.hashes != codes.hashes)
    }

    @Test func theCacheFileHoldsNoSecret() throws {
        let (tmp, cache) = try cache()
        defer { withExtendedLifetime(tmp) {} }
        try cache.refresh(Fixture.alice, from: Fixture.totpRecord(), policy: policy, now: Fixture.now)
        let entry = try #require(try cache.entry(Fixture.alice))
        let bytes = entry.serialized()
        #expect(!bytes.contains(bytes: Array(Fixture.secretBase32.utf8)))
        #expect(!bytes.contains(bytes: Array(Fixture.secretHex.utf8)))
        #expect(!bytes.contains(bytes: Fixture.secret))
        // 24 hours of 30 s steps plus the window either side.
        #expect(entry.codes?.count == 2880 + 3)
    }

    @Test func anOfflineLoginAcceptsACodeOnceAndRecordsTheEvent() throws {
        let (tmp, cache) = try cache()
        defer { withExtendedLifetime(tmp) {} }
        try cache.refresh(Fixture.alice, from: Fixture.totpRecord(lastStep: Fixture.step - 1), policy: policy, now: Fixture.now)
        // An hour later the database is down.
        let later = Fixture.now + 3600
        let store = CachedStore(cache: cache, recoveryKey: nil, now: { later })
        let flow = LoginFlow(config: Config(), store: store, now: { later })
        let code = Fixture.code(at: later)
        var first = ScriptedConversation(answers: [code])
        #expect(flow.run(LoginRequest(user: "alice"), conversation: &first).outcome == .success)
        var replay = ScriptedConversation(answers: [code])
        #expect(flow.run(LoginRequest(user: "alice"), conversation: &replay).outcome == .authErr)
        let entry = try #require(try cache.entry(Fixture.alice))
        #expect(entry.offlineEvents)
        #expect(entry.lastStep == UInt64(later) / 30)
        #expect(entry.offlineFailures == 1)
        #expect(entry.offlineSuccess == later)
        #expect(try cache.pendingUsers() == [Fixture.alice])
    }

    @Test func withoutTheFleetRecoveryKeyTOTPStillWorksOffline() throws {
        let (tmp, cache) = try cache()
        defer { withExtendedLifetime(tmp) {} }
        var record = Fixture.totpRecord()
        record.recoveryCodeHashes = [String(repeating: "ab", count: 32)]
        try cache.refresh(Fixture.alice, from: record, policy: policy, now: Fixture.now)
        let store = CachedStore(cache: cache, recoveryKey: nil, now: { Fixture.now })
        let flow = LoginFlow(config: Config(), store: store, now: { Fixture.now })
        var conversation = ScriptedConversation(answers: [Fixture.code(at: Fixture.now)])
        #expect(flow.run(LoginRequest(user: "alice"), conversation: &conversation).outcome == .success)
        // The hashes it could not check are still there for when the key is back.
        #expect(try cache.entry(Fixture.alice)?.recoveryCodeHashes.count == 1)
    }

    @Test func aRecordFromTheCacheIsNeverNotEnrolledByAccident() throws {
        let (tmp, cache) = try cache()
        defer { withExtendedLifetime(tmp) {} }
        let store = CachedStore(cache: cache, recoveryKey: nil)
        #expect(try store.load(Fixture.alice) == nil)
        #expect(throws: StoreError.self) { try store.updateSMSGlobal { _ in () } }
    }

    @Test func reconcilingAddsFailuresAndKeepsTheLaterStep() throws {
        var entry = OfflineEntry(user: Fixture.alice)
        entry.kind = .totp
        entry.lastStep = Fixture.step + 5
        entry.offlineEvents = true
        entry.offlineFailures = 2
        entry.offlineRecoveryUsed = [String(repeating: "ab", count: 32)]
        var record = Fixture.totpRecord(lastStep: Fixture.step)
        record.failures = 1
        record.recoveryCodeHashes = [String(repeating: "ab", count: 32), String(repeating: "cd", count: 32)]
        entry.reconcile(into: &record)
        #expect(record.otp?.lastStep == Fixture.step + 5)
        #expect(record.failures == 3)
        #expect(record.recoveryCodeHashes == [String(repeating: "cd", count: 32)])

        // A database step later than the offline one stays.
        var newer = Fixture.totpRecord(lastStep: Fixture.step + 9)
        entry.reconcile(into: &newer)
        #expect(newer.otp?.lastStep == Fixture.step + 9)

        // An offline success resets the count to what came after it.
        entry.offlineSuccess = Fixture.now
        entry.offlineFailures = 0
        var locked = Fixture.totpRecord()
        locked.failures = 4
        entry.reconcile(into: &locked)
        #expect(locked.failures == 0)
        #expect(locked.lastSuccess == Fixture.now)
    }

    @Test func entriesRoundTripAndCorruptOnesAreRefused() throws {
        let (tmp, cache) = try cache()
        defer { withExtendedLifetime(tmp) {} }
        try cache.refresh(Fixture.alice, from: Fixture.hotpRecord(counter: 7), policy: policy, now: Fixture.now)
        let entry = try #require(try cache.entry(Fixture.alice))
        #expect(entry.kind == .hotp && entry.counter == 7 && entry.codes?.first == 7)
        let bytes = entry.serialized()
        #expect(try OfflineEntry.parse(bytes, expectedUser: Fixture.alice) == entry)
        #expect(throws: StateFormatError.self) { try OfflineEntry.parse(bytes, expectedUser: Fixture.bob) }
        #expect(throws: StateFormatError.self) { try OfflineEntry.parse(Array(bytes.dropLast(5)), expectedUser: Fixture.alice) }
        let text = String(decoding: bytes, as: UTF8.self)
        for hostile in [
            text.replacingFirst("failures 0", with: "failures -1"),
            text.replacingFirst("otp hotp", with: "otp sha1"),
            text.replacingFirst("offline.events 0", with: "offline.events 0\noffline.events 1"),
            text.replacingFirst("end\n", with: "secret GEZDGNBV\nend\n"),
        ] {
            #expect(throws: StateFormatError.self) { try OfflineEntry.parse(Array(hostile.utf8), expectedUser: Fixture.alice) }
        }
    }

    @Test func aRefreshRecomputesOnlyWhenTheEnrollmentChangesOrTheRunRunsShort() throws {
        let (tmp, cache) = try cache()
        defer { withExtendedLifetime(tmp) {} }
        try cache.refresh(Fixture.alice, from: Fixture.totpRecord(), policy: policy, now: Fixture.now)
        let first = try #require(try cache.entry(Fixture.alice)?.codes)
        try cache.refresh(Fixture.alice, from: Fixture.totpRecord(lastStep: Fixture.step), policy: policy, now: Fixture.now + 600)
        let same = try #require(try cache.entry(Fixture.alice))
        #expect(same.codes == first)
        #expect(same.lastStep == Fixture.step)
        // 13 hours on, less than half the horizon is left: recomputed from now.
        let later = Fixture.now + 13 * 3600
        try cache.refresh(Fixture.alice, from: Fixture.totpRecord(), policy: policy, now: later)
        #expect(try cache.entry(Fixture.alice)?.codes?.first == UInt64(later) / 30 - 1)
        // A new secret: new hashes at once.
        var rekeyed = Fixture.totpRecord()
        rekeyed.otp?.secret = Array(repeating: 7, count: 20)
        try cache.refresh(Fixture.alice, from: rekeyed, policy: policy, now: later)
        #expect(try cache.entry(Fixture.alice)?.codes != (try cache.entry(Fixture.alice).map { _ in first }))
        // Removed from the database: gone from the cache.
        try cache.refresh(Fixture.alice, from: nil, policy: policy, now: later)
        #expect(try cache.entry(Fixture.alice) == nil)
    }
}

extension String {
    fileprivate func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = range(of: target) else { return self }
        return replacingCharacters(in: range, with: replacement)
    }
}
