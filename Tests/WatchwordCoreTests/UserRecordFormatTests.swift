import Testing
import WatchwordCore
import WatchwordCrypto
import WatchwordOTP

private let alice = Fixture.alice
private let hashA = String(repeating: "ab", count: 32)
private let hashB = String(repeating: "0f", count: 32)

/// A complete, valid file with every key, one line per key, for editing in tests.
private let validLines = [
    "watchword-user 1",
    "user alice",
    "created 1600000000",
    "otp totp",
    "otp.secret \(Fixture.secretBase32)",
    "otp.algorithm sha1",
    "otp.digits 6",
    "otp.period 30",
    "otp.counter 0",
    "otp.last_step 56666667",
    "otp.issuer example.org",
    "failures 2",
    "locked_until 0",
    "last_success 1700000000",
    "recovery \(hashA)",
    "end",
]

private func file(_ lines: [String]) -> [UInt8] { Array((lines.joined(separator: "\n") + "\n").utf8) }

/// `validLines` with the line starting with `key ` replaced (or removed when `value` is nil).
private func edited(_ key: String, _ value: String?) -> [UInt8] {
    var lines = validLines
    let index = lines.firstIndex { $0.hasPrefix(key + " ") }!
    if let value { lines[index] = key + " " + value } else { lines.remove(at: index) }
    return file(lines)
}

private func parseError(_ bytes: [UInt8], user: UserName = alice) -> StateFormatError? {
    do {
        let record = try UserRecord.parse(bytes, expectedUser: user)
        Issue.record("accepted: \(record)")
        return nil
    } catch {
        return error
    }
}

@Suite("User state file format v1: round trip")
struct UserRecordRoundTripTests {
    static var records: [UserRecord] {
        var totp = Fixture.totpRecord()
        totp.failures = 3
        totp.lockedUntil = 1_700_000_100
        totp.lastSuccess = 1_699_999_000

        var totpStepped = Fixture.totpRecord(lastStep: 56_666_667)
        totpStepped.otp?.algorithm = .sha512
        totpStepped.otp?.digits = 8
        totpStepped.otp?.period = 60
        totpStepped.recoveryCodeHashes = [hashA, hashB]

        var hotp = Fixture.hotpRecord(counter: 42)
        hotp.recoveryCodeHashes = [hashB]
        hotp.otp?.algorithm = .sha256
        hotp.otp?.issuer = "Ex\u{E4}mple Corp"

        var hotpMax = Fixture.hotpRecord(Fixture.user("host$"), counter: UInt64.max)
        hotpMax.otp?.lastStep = UInt64.max

        var recoveryOnly = UserRecord(user: Fixture.user("jo@corp"), created: 0)
        recoveryOnly.recoveryCodeHashes = [hashA]

        let bare = UserRecord(user: Fixture.bob, created: Int64.max)
        return [totp, totpStepped, hotp, hotpMax, recoveryOnly, bare]
    }

    @Test("serialize then parse gives the same record", arguments: records)
    func roundTrip(_ record: UserRecord) throws {
        let bytes = record.serialized()
        let parsed = try UserRecord.parse(bytes, expectedUser: record.user)
        #expect(parsed == record)
        #expect(parsed.serialized() == bytes)
    }

    @Test("the file is the documented text: header first, end last, one key per line")
    func layout() {
        var record = Fixture.totpRecord(lastStep: 7)
        record.recoveryCodeHashes = [hashA]
        let text = String(decoding: record.serialized(), as: UTF8.self)
        #expect(
            text == """
                watchword-user 1
                user alice
                created 1600000000
                otp totp
                otp.secret \(Fixture.secretBase32)
                otp.algorithm sha1
                otp.digits 6
                otp.period 30
                otp.counter 0
                otp.last_step 7
                otp.issuer example.org
                failures 0
                locked_until 0
                last_success 0
                recovery \(hashA)
                end

                """)
    }

    @Test("a missing lastStep is written as none and read back as nil")
    func lastStepNone() throws {
        let record = Fixture.totpRecord(lastStep: nil)
        #expect(String(decoding: record.serialized(), as: UTF8.self).contains("\notp.last_step none\n"))
        #expect(try UserRecord.parse(record.serialized(), expectedUser: alice).otp?.lastStep == nil)
    }

    @Test("the hand-written valid file parses with every field")
    func handWritten() throws {
        let record = try UserRecord.parse(file(validLines), expectedUser: alice)
        #expect(record.created == 1_600_000_000)
        #expect(record.otp?.kind == .totp)
        #expect(record.otp?.secret == Fixture.secret)
        #expect(record.otp?.lastStep == 56_666_667)
        #expect(record.otp?.issuer == "example.org")
        #expect(record.failures == 2)
        #expect(record.lastSuccess == 1_700_000_000)
        #expect(record.recoveryCodeHashes == [hashA])
    }
}

@Suite("User state file format v1: strict parsing")
struct UserRecordParseRefusalTests {
    @Test("every strict prefix of a valid file is refused as truncated", arguments: UserRecordRoundTripTests.records)
    func everyPrefixRefused(_ record: UserRecord) {
        let bytes = record.serialized()
        #expect(bytes.count > 50)
        var accepted: [Int] = []
        for length in 0..<bytes.count {
            if (try? UserRecord.parse(Array(bytes[0..<length]), expectedUser: record.user)) != nil {
                accepted.append(length)
            }
        }
        #expect(accepted.isEmpty, "prefixes accepted at lengths \(accepted) of \(bytes.count)")
        #expect((try? UserRecord.parse(bytes, expectedUser: record.user)) == record)
    }

    @Test("every strict prefix of the hand-written file is refused")
    func everyPrefixOfHandWritten() {
        let bytes = file(validLines)
        for length in 0..<bytes.count {
            #expect(
                (try? UserRecord.parse(Array(bytes[0..<length]), expectedUser: alice)) == nil,
                "prefix of \(length) bytes accepted")
        }
    }

    @Test("a missing header is refused")
    func missingHeader() {
        #expect(parseError(file(Array(validLines.dropFirst())))?.line == 1)
        #expect(parseError(file(["", ] + validLines)) != nil)
        #expect(parseError(file(["watchword-user"] + validLines.dropFirst())) != nil)
    }

    @Test("another format version is refused", arguments: ["watchword-user 2", "watchword-user 0", "watchword-user 1 ", "watchword-user  1", "Watchword-user 1"])
    func wrongVersion(_ header: String) {
        #expect(parseError(file([header] + validLines.dropFirst()))?.line == 1)
    }

    @Test("a file without the end line is refused as truncated")
    func missingEnd() {
        let error = parseError(file(Array(validLines.dropLast())))
        #expect(error?.message.contains("truncated") == true)
        #expect(parseError(file(validLines + ["end"])) != nil)
        #expect(parseError(file(validLines.dropLast() + ["end "])) != nil)
    }

    @Test("a file for another user is refused")
    func userMismatch() {
        let error = parseError(file(validLines), user: Fixture.bob)
        #expect(error?.line == 2)
        #expect(error?.message.contains("alice") == true)
        #expect(parseError(edited("user", "Alice")) != nil)
        #expect(parseError(edited("user", "alice ")) != nil)
        #expect(parseError(edited("user", nil)) != nil)
    }

    @Test("an unknown key is refused with its line")
    func unknownKey() {
        var lines = validLines
        lines.insert("otp.window 3", at: 5)
        let error = parseError(file(lines))
        #expect(error?.line == 6)
        #expect(error?.message.contains("otp.window") == true)
    }

    @Test("of several unknown keys, the first in the file is named")
    func firstUnknownKey() {
        var lines = validLines
        lines.insert("zz.later 1", at: 5)
        lines.insert("aa.earlier 1", at: 3)
        let error = parseError(file(lines))
        #expect(error?.line == 4)
        #expect(error?.message.contains("aa.earlier") == true)
    }

    @Test("a file with more keys than a record has is refused at the first one too many")
    func tooManyKeys() {
        var lines = validLines
        let filler = (0..<70).map { "x\($0) 1" }
        lines.insert(contentsOf: filler, at: 3)
        let error = parseError(file(lines))
        #expect(error?.message.contains("more than 64 keys") == true, "\(String(describing: error))")
        #expect(error.map { $0.line > 4 && $0.line <= 3 + 70 } == true)  // on a filler line
    }

    @Test("a key that appears twice is refused", arguments: ["user alice", "failures 0", "otp.secret \(Fixture.secretBase32)", "otp totp", "end"])
    func duplicateKey(_ line: String) {
        var lines = validLines
        lines.insert(line, at: 3)
        #expect(parseError(file(lines)) != nil)
    }

    @Test("a line without a value is refused", arguments: ["failures", "failures ", ""])
    func lineWithoutValue(_ line: String) {
        var lines = validLines
        let index = lines.firstIndex { $0.hasPrefix("failures ") }!
        lines[index] = line
        #expect(parseError(file(lines)) != nil)
    }

    @Test(
        "numbers must be canonical non-negative decimal",
        arguments: ["failures", "created", "locked_until", "last_success", "otp.counter", "otp.last_step", "otp.digits", "otp.period"],
        ["01", "-1", "+1", "1e3", "0x10", " 1", "1 ", "", "99999999999999999999", "1_000", "١"])
    func badNumbers(_ key: String, _ value: String) {
        #expect(parseError(edited(key, value)) != nil, "\(key) '\(value)' accepted")
    }

    @Test("numbers outside their range are refused")
    func outOfRange() {
        #expect(parseError(edited("otp.digits", "5")) != nil)
        #expect(parseError(edited("otp.digits", "9")) != nil)
        #expect(parseError(edited("otp.period", "0")) != nil)
        #expect(parseError(edited("otp.period", "3601")) != nil)
        #expect(parseError(edited("failures", "1000000001")) != nil)
        #expect(parseError(edited("otp.counter", "18446744073709551616")) != nil)
        #expect((try? UserRecord.parse(edited("otp.counter", "18446744073709551615"), expectedUser: alice)) != nil)
        #expect((try? UserRecord.parse(edited("otp.digits", "8"), expectedUser: alice)) != nil)
    }

    @Test("an unknown otp kind or algorithm is refused")
    func unknownEnums() {
        #expect(parseError(edited("otp", "sms")) != nil)
        #expect(parseError(edited("otp", "TOTP")) != nil)
        #expect(parseError(edited("otp.algorithm", "md5")) != nil)
        #expect(parseError(edited("otp.algorithm", "SHA1")) != nil)
    }

    @Test("an otp section missing a field is refused", arguments: ["otp.secret", "otp.algorithm", "otp.digits", "otp.period", "otp.counter", "otp.last_step", "otp.issuer"])
    func otpFieldMissing(_ key: String) {
        #expect(parseError(edited(key, nil)) != nil)
    }

    @Test("otp fields without an otp line are unknown keys")
    func otpFieldsWithoutKind() {
        #expect(parseError(edited("otp", nil)) != nil)
    }

    @Test("a secret that is not base32, or empty, is refused", arguments: ["not-base32!", "GEZDGNB1", "GEZDGNBVG", "====", "", "GE=ZDGNBV"])
    func badSecret(_ value: String) {
        #expect(parseError(edited("otp.secret", value))?.line == 5)
    }

    @Test(
        "a recovery hash must be 64 lowercase hex digits",
        arguments: [
            String(repeating: "A", count: 64), String(repeating: "a", count: 63), String(repeating: "a", count: 65),
            String(repeating: "g", count: 64), "", " " + String(repeating: "a", count: 64),
        ])
    func badHash(_ value: String) {
        let error = parseError(edited("recovery", value))
        #expect(error?.line == 15)
    }

    @Test("more than 64 recovery hashes are refused")
    func tooManyHashes() {
        var lines = validLines
        lines.removeAll { $0.hasPrefix("recovery ") }
        let hashes = (0..<65).map { String(format64: $0) }
        #expect(parseError(file(Array(lines.dropLast()) + hashes.prefix(65).map { "recovery \($0)" } + ["end"])) != nil)
        #expect(
            (try? UserRecord.parse(file(Array(lines.dropLast()) + hashes.prefix(64).map { "recovery \($0)" } + ["end"]), expectedUser: alice))?
                .recoveryCodeHashes.count == 64)
    }

    @Test(
        "control characters are refused wherever they appear",
        arguments: ["\r", "\t", "\u{0}", "\u{1B}", "\u{7F}", "\u{0B}", "\u{0C}"])
    func controlCharacters(_ control: String) {
        #expect(parseError(edited("otp.issuer", "exam\(control)ple")) != nil)
        #expect(parseError(edited("failures", "0\(control)")) != nil)
        // CRLF line endings: every line then ends in a control character.
        if control == "\r" {
            #expect(parseError(Array((validLines.joined(separator: "\r\n") + "\r\n").utf8)) != nil)
        }
    }

    @Test("a file that is not UTF-8 is refused")
    func notUTF8() {
        #expect(parseError(Array("watchword-user 1\nuser alice\notp.issuer ".utf8) + [0xFF] + Array("\nend\n".utf8)) != nil)
        // A complete, otherwise valid file with one stray lead byte in the issuer.
        let valid = edited("otp.issuer", "ex~mple")
        #expect((try? UserRecord.parse(valid, expectedUser: alice)) != nil)
        #expect(parseError(valid.map { $0 == UInt8(ascii: "~") ? 0xC3 : $0 }) != nil)
    }

    @Test("a file larger than 64 KiB is refused before it is parsed")
    func tooLarge() {
        var lines = validLines
        lines.insert("otp.issuer_note " + String(repeating: "x", count: 64 * 1024), at: 3)
        let error = parseError(file(lines))
        #expect(error?.message.contains("larger") == true)
    }

    @Test("empty input is refused")
    func empty() {
        #expect(parseError([]) != nil)
        #expect(parseError([0x0A]) != nil)
    }
}

private extension String {
    /// A distinct valid hash for index `n`.
    init(format64 n: Int) {
        let hex = String(n, radix: 16)
        self = String(repeating: "0", count: 64 - hex.count) + hex
    }
}
