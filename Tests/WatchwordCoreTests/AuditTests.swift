import Glibc
import Testing
import WatchwordCore

@Suite struct AuditTests {
    @Test func lineRoundTripsWithAwkwardText() throws {
        let entry = AuditEntry(
            time: 1_795_770_000, event: "login", user: "alice", service: "sshd", rhost: "x\"y\\z\n\u{1}é",
            method: nil, outcome: "auth_err", reason: "denied: wrong, reused or expired code (failure 1 of 5)")
        let line = entry.jsonLine
        #expect(!line.contains("\n"))
        #expect(line.hasPrefix("{\"time\":1795770000,\"event\":\"login\",\"user\":\"alice\""))
        #expect(AuditEntry(jsonLine: Substring(line)) == entry)
    }

    @Test func hostAndActorAreOneFieldEach() throws {
        let entry = AuditEntry(
            time: 2, event: "enroll", user: "alice", outcome: "ok", host: "evil host\nactor=root", actor: "bob actor=root",
            actorSource: "sudo")
        #expect(entry.host == "evil?host?actor=root" && entry.actor == "bob?actor=root")
        let line = entry.jsonLine
        #expect(line.hasSuffix(",\"host\":\"evil?host?actor=root\",\"actor\":\"bob?actor=root\",\"actor_source\":\"sudo\"}"))
        #expect(AuditEntry(jsonLine: Substring(line)) == entry)
        // A line from before these fields reads with them null.
        let old = AuditEntry(jsonLine: "{\"time\":1,\"event\":\"unlock\",\"user\":\"alice\",\"outcome\":\"ok\"}")
        #expect(old?.host == nil && old?.actor == nil && old?.actorSource == nil)
    }

    @Test func actorIsAKnownSudoUserElseTheLoginUIDOrUID() {
        #expect(AuditActor.current(environment: "root") == AuditActor(name: "root", source: "sudo"))
        for hostile in ["root actor=x", "root\n", "", "no-such-user-ww"] {
            let actor = AuditActor.current(environment: hostile)
            #expect(actor.source == "loginuid" || actor.source == "uid")
            #expect(!actor.name.contains(" ") && !actor.name.contains("\n"))
        }
    }

    @Test(arguments: ["", "not json", "{\"time\":\"1\",\"event\":\"x\",\"outcome\":\"ok\"}", "{\"event\":\"x\",\"outcome\":\"ok\"}",
        "{\"time\":1,\"event\":\"x\",\"outcome\":\"ok\"} trailing", "{\"time\":1,\"event\":\"x\",\"outcome\":\"ok\"",
        // A key twice, a number that is not whole, a value of another shape.
        "{\"time\":1,\"event\":\"x\",\"outcome\":\"ok\",\"outcome\":\"success\"}", "{\"time\":1.5,\"event\":\"x\",\"outcome\":\"ok\"}",
        "{\"time\":1,\"event\":\"x\",\"outcome\":\"ok\",\"user\":[\"a\"]}", "{\"time\":1,\"event\":\"x\",\"outcome\":\"ok\",\"user\":true}",
        // A whole number too large for Int64, in the time or in another field.
        "{\"time\":9223372036854775808,\"event\":\"x\",\"outcome\":\"ok\"}",
        "{\"time\":1,\"event\":\"x\",\"outcome\":\"ok\",\"user\":9223372036854775808}"])
    func corruptLinesAreRejected(_ line: String) {
        #expect(AuditEntry(jsonLine: Substring(line)) == nil)
    }

    /// Lines as every version of the writer has written them (before host and actor; now),
    /// and what the flat reader they were first read with accepted, still read the same.
    @Test func linesFromTheFieldStillRead() {
        let before = #"{"time":1795770000,"event":"login","user":"alice","service":"sshd","rhost":"x\"y\\z\n\u0001é","method":null,"outcome":"auth_err","reason":"denied"}"#
        #expect(AuditEntry(jsonLine: Substring(before)) == AuditEntry(
            time: 1_795_770_000, event: "login", user: "alice", service: "sshd", rhost: "x\"y\\z\n\u{1}é",
            method: nil, outcome: "auth_err", reason: "denied"))
        let now = #"{"time":2,"event":"enroll","user":null,"service":null,"rhost":null,"method":null,"outcome":"ok","reason":null,"host":"vm","actor":"root","actor_source":"sudo"}"#
        #expect(AuditEntry(jsonLine: Substring(now)) == AuditEntry(
            time: 2, event: "enroll", user: nil, outcome: "ok", host: "vm", actor: "root", actorSource: "sudo"))
        // Spaces, tabs and CR around the tokens, `\/` and `\u` escapes, a negative time, a
        // field of a later version (read as absent) and a whole number where a string belongs
        // (read as absent), as the flat reader took them.
        let loose = " {\t\"time\" : -5 ,\"event\":\"a\\/b\\u0041\",\"outcome\":\"ok\",\"later\":\"x\",\"user\":7}\r"
        #expect(AuditEntry(jsonLine: Substring(loose)) == AuditEntry(time: -5, event: "a/bA", user: nil, outcome: "ok"))
    }

    @Test func appendRotatesAndRefusesUntrustedFiles() throws {
        let dir = try TemporaryDirectory("audit")
        let root = try SecureDirectory.open(dir.path)
        let entry = AuditEntry(time: 1, event: "unlock", user: "alice", outcome: "ok")
        try AuditLog.append(entry, in: root)
        try AuditLog.append(entry, in: root)
        var read = try AuditLog.read(stateDirectory: dir.path)
        #expect(read.entries == [entry, entry] && read.corrupt == 0)
        #expect(try Posix.lstat(dir.sub("audit.log")).st_mode & 0o7777 == 0o600)

        try Posix.write(dir.sub("audit.log"), [UInt8](repeating: 0x0A, count: Int(AuditLog.rotateBytes)))
        try AuditLog.append(entry, in: root)
        #expect(!Posix.exists(dir.sub("audit.log")) && Posix.exists(dir.sub("audit.log.1")))
        read = try AuditLog.read(stateDirectory: dir.path)
        #expect(read.entries == [entry])

        try Posix.write(dir.sub("elsewhere"), [])
        try Posix.symlink(dir.sub("elsewhere"), at: dir.sub("audit.log"))
        #expect(throws: FileTrustError.self) { try AuditLog.append(entry, in: root) }
        try Posix.check(unlink(dir.sub("audit.log")), "unlink")
        try Posix.link(dir.sub("elsewhere"), dir.sub("audit.log"))
        #expect(throws: FileTrustError.self) { try AuditLog.append(entry, in: root) }
        try Posix.check(unlink(dir.sub("audit.log")), "unlink")
        try Posix.write(dir.sub("audit.log"), [], mode: 0o640)
        #expect(throws: FileTrustError.self) { try AuditLog.append(entry, in: root) }
    }

    @Test func aLoginEndsWithTheReasonItLogs() {
        var conversation = ScriptedConversation()
        let result = conversation.end(.success, .info, "user alice from 192.0.2.7", "accepted (sms)", method: .sms)
        #expect(result == LoginResult(.success, method: .sms, reason: "accepted (sms)"))
        #expect(conversation.logs.count == 1 && conversation.logs[0].1 == "user alice from 192.0.2.7: accepted (sms)")
    }
}
