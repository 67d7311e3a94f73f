import Testing
import WatchwordCore
import WatchwordCrypto

private let alice = Fixture.alice
private let hashA = String(repeating: "ab", count: 32)
private let idA = String(repeating: "0f", count: 16)
private let phone = try! PhoneNumber("+14155550123")

private func window(_ pairs: [(Int64, Int)]) -> SendWindow {
    SendWindow(buckets: pairs.map { SendWindow.Bucket(minute: $0.0, count: $0.1) })!
}

/// A version 1 file written before SMS existed, with the SMS lines inserted by tests.
private let baseLines = [
    "watchword-user 1",
    "user alice",
    "created 1600000000",
    "failures 0",
    "locked_until 0",
    "last_success 0",
    "recovery \(hashA)",
    "end",
]

private func file(_ lines: [String]) -> [UInt8] { Array((lines.joined(separator: "\n") + "\n").utf8) }
private func withSMS(_ sms: [String]) -> [UInt8] {
    var lines = baseLines
    lines.insert(contentsOf: sms, at: 6)
    return file(lines)
}

private func refusal(_ bytes: [UInt8]) -> StateFormatError? {
    do {
        let record = try UserRecord.parse(bytes, expectedUser: alice)
        Issue.record("accepted: \(record)")
        return nil
    } catch {
        return error
    }
}

@Suite("User state file format v1: the optional SMS keys")
struct SMSStateFormatTests {
    static var records: [UserRecord] {
        var phoneOnly = UserRecord(user: alice, created: 1_600_000_000)
        phoneOnly.phone = phone

        var local = Fixture.totpRecord()
        local.phone = phone
        local.recoveryCodeHashes = [hashA]
        local.sms = SMSState(
            pending: PendingSMSCode(hash: hashA, expires: 1_700_000_300, tries: 2), lastSent: 1_700_000_000,
            sent: window([(28_333_332, 1), (28_333_333, 4)]))

        var service = Fixture.totpRecord()
        service.phone = try! PhoneNumber("+1234567")
        service.sms = SMSState(pending: PendingSMSCode(hash: nil, expires: 1, tries: 0, id: idA), lastSent: 1, sent: window([(0, 1)]))

        // Written before pending codes had an identity.
        var oldService = Fixture.totpRecord()
        oldService.phone = phone
        oldService.sms = SMSState(pending: PendingSMSCode(hash: nil, expires: 5, tries: 1), lastSent: 1)

        // The phone was removed; the limits keep counting.
        var countersOnly = Fixture.totpRecord()
        countersOnly.sms = SMSState(lastSent: 1_700_000_000, sent: window([(28_333_333, 1_000_000)]))
        var localWithID = local
        localWithID.sms.pending?.id = idA
        return [phoneOnly, local, service, countersOnly, oldService, localWithID]
    }

    @Test("serialize then parse gives the same record", arguments: records)
    func roundTrip(_ record: UserRecord) throws {
        let bytes = record.serialized()
        let parsed = try UserRecord.parse(bytes, expectedUser: record.user)
        #expect(parsed == record)
        #expect(parsed.serialized() == bytes)
    }

    @Test("every strict prefix of a file with SMS keys is refused", arguments: records)
    func prefixes(_ record: UserRecord) {
        let bytes = record.serialized()
        for length in 0..<bytes.count {
            #expect((try? UserRecord.parse(Array(bytes[0..<length]), expectedUser: record.user)) == nil, "\(length)")
        }
    }

    @Test("the SMS lines are the documented ones, after last_success")
    func layout() {
        let text = String(decoding: Self.records[1].serialized(), as: UTF8.self)
        #expect(
            text.hasSuffix(
                """
                last_success 0
                phone +14155550123
                sms.code \(hashA)
                sms.expires 1700000300
                sms.tries 2
                sms.last_sent 1700000000
                sms.sent 28333332:1 28333333:4
                recovery \(hashA)
                end

                """))
    }

    @Test("a pending code's identity is written after its hash, before its expiry")
    func layoutWithID() {
        let text = String(decoding: Self.records[5].serialized(), as: UTF8.self)
        #expect(text.contains("\nsms.code \(hashA)\nsms.id \(idA)\nsms.expires 1700000300\nsms.tries 2\n"))
        let service = String(decoding: Self.records[2].serialized(), as: UTF8.self)
        #expect(service.contains("\nphone +1234567\nsms.id \(idA)\nsms.expires 1\nsms.tries 0\n"))
    }

    @Test("a pending code written before codes had an identity still parses, and is written back as it was")
    func oldPendingParses() throws {
        let bytes = withSMS(["phone +14155550123", "sms.expires 1700000300", "sms.tries 1", "sms.last_sent 1700000000"])
        let record = try UserRecord.parse(bytes, expectedUser: alice)
        #expect(record.sms.pending == PendingSMSCode(hash: nil, expires: 1_700_000_300, tries: 1, id: nil))
        #expect(record.serialized() == bytes)
        let local = withSMS(["sms.code \(hashA)", "sms.expires 1700000300", "sms.tries 0"])
        #expect(try UserRecord.parse(local, expectedUser: alice).sms.pending == PendingSMSCode(hash: hashA, expires: 1_700_000_300))
    }

    @Test("new identities are 32 lowercase hex digits, and differ")
    func newIDs() throws {
        let ids = try (0..<8).map { _ in try PendingSMSCode.newID() }
        #expect(ids.allSatisfy(PendingSMSCode.isValidID))
        #expect(Set(ids).count == ids.count)
    }

    @Test("a file written before SMS parses, with no phone and no SMS state")
    func oldFileParses() throws {
        let record = try UserRecord.parse(file(baseLines), expectedUser: alice)
        #expect(record.phone == nil)
        #expect(record.sms == SMSState())
        #expect(record.serialized() == file(baseLines))
    }

    @Test("a record without a phone or SMS state writes no SMS keys")
    func noSMSNoKeys() {
        let text = String(decoding: Fixture.totpRecord().serialized(), as: UTF8.self)
        #expect(!text.contains("phone") && !text.contains("sms."))
    }

    @Test("a phone alone makes a user enrolled")
    func phoneEnrolls() throws {
        let record = try UserRecord.parse(withSMS(["phone +14155550123"]), expectedUser: alice)
        #expect(record.phone == phone)
        var bare = UserRecord(user: alice, created: 0)
        #expect(!bare.isEnrolled)
        bare.phone = phone
        #expect(bare.isEnrolled)
    }

    static let bad: [(String, [String])] = [
        ("phone without +", ["phone 14155550123"]),
        ("phone with spaces", ["phone +1 415 555 0123"]),
        ("phone too long", ["phone +1234567890123456"]),
        ("phone empty", ["phone "]),
        ("phone twice", ["phone +14155550123", "phone +14155550123"]),
        ("code not hex", ["sms.code " + String(repeating: "zz", count: 32), "sms.expires 5", "sms.tries 0"]),
        ("code upper case", ["sms.code " + String(repeating: "AB", count: 32), "sms.expires 5", "sms.tries 0"]),
        ("code short", ["sms.code abcd", "sms.expires 5", "sms.tries 0"]),
        ("code without expiry", ["sms.code \(hashA)", "sms.tries 0"]),
        ("code without tries", ["sms.code \(hashA)", "sms.expires 5"]),
        ("id not hex", ["sms.id " + String(repeating: "zz", count: 16), "sms.expires 5", "sms.tries 0"]),
        ("id upper case", ["sms.id " + String(repeating: "0F", count: 16), "sms.expires 5", "sms.tries 0"]),
        ("id short", ["sms.id abcd", "sms.expires 5", "sms.tries 0"]),
        ("id long", ["sms.id " + String(repeating: "0f", count: 17), "sms.expires 5", "sms.tries 0"]),
        ("id empty", ["sms.id ", "sms.expires 5", "sms.tries 0"]),
        ("id without expiry", ["sms.id \(idA)", "sms.tries 0"]),
        ("id alone", ["sms.id \(idA)"]),
        ("id twice", ["sms.id \(idA)", "sms.id \(idA)", "sms.expires 5", "sms.tries 0"]),
        ("expiry without tries", ["sms.expires 5"]),
        ("tries without expiry", ["sms.tries 0"]),
        ("tries above 3", ["sms.expires 5", "sms.tries 4"]),
        ("negative tries", ["sms.expires 5", "sms.tries -1"]),
        ("negative expiry", ["sms.expires -5", "sms.tries 0"]),
        ("expiry with a leading zero", ["sms.expires 05", "sms.tries 0"]),
        ("last_sent zero", ["sms.last_sent 0"]),
        ("last_sent not a number", ["sms.last_sent soon"]),
        ("sent empty", ["sms.sent "]),
        ("sent out of order", ["sms.sent 5:1 4:1"]),
        ("sent repeated minute", ["sms.sent 5:1 5:1"]),
        ("sent zero count", ["sms.sent 5:0"]),
        ("sent padded", ["sms.sent 05:1"]),
        ("sent two spaces", ["sms.sent 4:1  5:1"]),
        ("sent without count", ["sms.sent 5"]),
        ("sent 61 buckets", ["sms.sent " + (1...61).map { "\($0):1" }.joined(separator: " ")]),
        ("unknown sms key", ["sms.provider twilio"]),
    ]

    @Test("bad SMS lines are refused", arguments: bad.indices)
    func refused(_ index: Int) {
        let (name, lines) = Self.bad[index]
        let error = refusal(withSMS(lines))
        #expect(error != nil, "\(name)")
    }
}

@Suite("SMS sends counted per minute over the last hour")
struct SendWindowTests {
    let t: Int64 = 1_700_000_000  // minute 28_333_333, 20 s into it

    @Test("sends are counted for an hour, then forgotten")
    func countsAnHour() {
        var w = SendWindow()
        w.record(at: t)
        w.record(at: t + 1)
        #expect(w.count(at: t) == 2)
        #expect(w.buckets.count == 1)
        w.record(at: t + 600)
        #expect(w.count(at: t + 600) == 3)
        // 59 minutes later the first minute still counts; at 60 it does not.
        #expect(w.count(at: t + 59 * 60) == 3)
        #expect(w.count(at: t - 20 + 60 * 60) == 1)
        w.record(at: t + 2 * 3600)
        #expect(w.buckets == [SendWindow.Bucket(minute: (t + 2 * 3600) / 60, count: 1)])
    }

    @Test("the wait until a send is allowed again ends when enough old minutes leave")
    func secondsUntilBelow() {
        var w = SendWindow()
        for i in 0..<5 { w.record(at: t + Int64(i) * 60) }
        #expect(w.secondsUntilBelow(6, at: t + 300) == 0)
        // The first minute leaves the window 60 minutes after it began.
        let firstMinuteStart = (t / 60) * 60
        #expect(w.secondsUntilBelow(5, at: t + 300) == firstMinuteStart + 3600 - (t + 300))
        #expect(w.secondsUntilBelow(4, at: t + 300) == firstMinuteStart + 3660 - (t + 300))
        #expect(w.count(at: firstMinuteStart + 3600) == 4)
    }

    @Test("a clock that went back drops the buckets from the future")
    func clockBack() {
        var w = SendWindow()
        w.record(at: t)
        w.record(at: t - 3000)
        #expect(w.buckets.count == 1 && w.count(at: t - 3000) == 1)
    }

    @Test("text form round trip and refusals")
    func text() {
        var w = SendWindow()
        w.record(at: 60)
        w.record(at: 120)
        w.record(at: 121)
        #expect(w.text == "1:1 2:2")
        #expect(SendWindow(text: w.text) == w)
        for bad in ["", " ", "1:1 ", "1:1,2:1", "2:1 1:1", "1:+1", "-1:1", "1:1:1", "a:1"] {
            #expect(SendWindow(text: bad) == nil, "\(bad)")
        }
    }
}

@Suite("The global SMS count file")
struct SMSGlobalStateTests {
    @Test("round trip, empty and with buckets")
    func roundTrip() throws {
        var state = SMSGlobalState()
        #expect(String(decoding: state.serialized(), as: UTF8.self) == "watchword-sms 1\nend\n")
        #expect(try SMSGlobalState.parse(state.serialized()) == state)
        state.sent.record(at: 1_700_000_000)
        #expect(String(decoding: state.serialized(), as: UTF8.self) == "watchword-sms 1\nsent 28333333:1\nend\n")
        #expect(try SMSGlobalState.parse(state.serialized()) == state)
    }

    @Test(
        "anything else is refused",
        arguments: [
            "", "watchword-sms 1\n", "watchword-sms 1\nend", "watchword-sms 2\nend\n", "watchword-sms 1\nsent 1:1\n",
            "watchword-sms 1\nsent\nend\n", "watchword-sms 1\nsent 2:1 1:1\nend\n", "watchword-sms 1\nsent 1:1\nsent 2:1\nend\n",
            "watchword-sms 1\ncount 3\nend\n",
        ])
    func refused(_ text: String) {
        #expect(throws: StateFormatError.self) { try SMSGlobalState.parse(Array(text.utf8)) }
    }

    @Test("the store keeps it in sms-global, root 0600, under its own lock, and refuses a corrupt one")
    func store() throws {
        let fixture = try StoreFixture("smsglobal")
        let store = try fixture.enroll()
        let n = try store.updateSMSGlobal { (state: inout SMSGlobalState) -> Int in
            state.sent.record(at: 1_700_000_000)
            return state.sent.count(at: 1_700_000_000)
        }
        #expect(n == 1)
        let path = fixture.statePath + "/sms-global"
        let st = try Posix.lstat(path)
        #expect(st.st_uid == 0 && st.st_mode & 0o7777 == 0o600)
        #expect(Posix.exists(fixture.locksPath + "/.sms-global"))
        #expect(try store.updateSMSGlobal { $0.sent.count(at: 1_700_000_000) } == 1)
        try Posix.write(path, Array("garbage\n".utf8))
        #expect(storeErrorKind { _ = try store.updateSMSGlobal { $0.sent.count(at: 0) } } == "corrupt")
        try Posix.write(path, Array("watchword-sms 1\nend\n".utf8), mode: 0o644)
        #expect(storeErrorKind { _ = try store.updateSMSGlobal { $0.sent.count(at: 0) } } == "untrusted.groupOrOtherAccess")
    }
}
