import Dispatch
import Foundation
import Glibc
import Testing
import WatchwordCore

/// One hostile change to a valid state directory, and the refusal it must cause.
struct HostileLayout: Sendable, CustomTestStringConvertible {
    enum Stage: Sendable {
        /// Opening the state directory itself is refused.
        case open
        /// The store opens, but reading or updating alice is refused.
        case user
    }
    let name: String
    let stage: Stage
    /// The FileTrustError case expected.
    let kind: String
    /// Makes the change, given the fixture with alice enrolled.
    let apply: @Sendable (StoreFixture) throws -> Void
    var testDescription: String { name }
}

@Suite("State directory security rules: refuse, never fix", .timeLimit(.minutes(1)))
struct StateSecurityTests {
    static let hostile: [HostileLayout] = [
        .init(name: "state dir mode 0755", stage: .open, kind: "groupOrOtherAccess") { try Posix.chmod($0.statePath, 0o755) },
        .init(name: "state dir mode 0770", stage: .open, kind: "groupOrOtherAccess") { try Posix.chmod($0.statePath, 0o770) },
        .init(name: "state dir mode 0777", stage: .open, kind: "groupOrOtherAccess") { try Posix.chmod($0.statePath, 0o777) },
        .init(name: "state dir mode 0701", stage: .open, kind: "groupOrOtherAccess") { try Posix.chmod($0.statePath, 0o701) },
        .init(name: "state dir owned by uid 1000", stage: .open, kind: "notOwnedByRoot") { try Posix.chown($0.statePath, 1000, 1000) },
        .init(name: "state dir is a symlink to a valid state dir", stage: .open, kind: "symlink") { f in
            try Posix.rename(f.statePath, f.base.sub("real"))
            try Posix.symlink(f.base.sub("real"), at: f.statePath)
        },
        .init(name: "state dir is a regular file", stage: .open, kind: "notDirectory") { f in
            try FileManager.default.removeItem(atPath: f.statePath)
            try Posix.write(f.statePath, [])
        },
        .init(name: "parent world-writable without sticky bit", stage: .open, kind: "writableAncestor") { f in
            try Posix.chmod(f.base.path, 0o777)
        },
        .init(name: "parent group-writable", stage: .open, kind: "writableAncestor") { f in
            try Posix.chmod(f.base.path, 0o770)
        },
        .init(name: "parent owned by uid 1000", stage: .open, kind: "notOwnedByRoot") { f in
            try Posix.chown(f.base.path, 1000)
        },
        .init(name: "users/ is a symlink", stage: .user, kind: "symlink") { f in
            try Posix.rename(f.usersPath, f.statePath + "/users.real")
            try Posix.symlink("users.real", at: f.usersPath)
        },
        .init(name: "users/ mode 0755", stage: .user, kind: "groupOrOtherAccess") { try Posix.chmod($0.usersPath, 0o755) },
        .init(name: "users/ owned by uid 1000", stage: .user, kind: "notOwnedByRoot") { try Posix.chown($0.usersPath, 1000) },
        .init(name: "users/ is a regular file", stage: .user, kind: "system") { f in
            try FileManager.default.removeItem(atPath: f.usersPath)
            try Posix.write(f.usersPath, [])
        },
        .init(name: "user file is a symlink to a valid file", stage: .user, kind: "symlink") { f in
            try Posix.rename(f.userFile(), f.usersPath + "/alice-real")
            try Posix.symlink("alice-real", at: f.userFile())
        },
        .init(name: "user file is a symlink to a file outside", stage: .user, kind: "symlink") { f in
            try Posix.rename(f.userFile(), f.base.sub("alice"))
            try Posix.symlink(f.base.sub("alice"), at: f.userFile())
        },
        .init(name: "user file is a dangling symlink", stage: .user, kind: "symlink") { f in
            try FileManager.default.removeItem(atPath: f.userFile())
            try Posix.symlink(f.base.sub("nowhere"), at: f.userFile())
        },
        .init(name: "user file is a FIFO", stage: .user, kind: "notRegularFile") { f in
            try FileManager.default.removeItem(atPath: f.userFile())
            try Posix.mkfifo(f.userFile(), 0o600)
        },
        .init(name: "user file is a directory", stage: .user, kind: "notRegularFile") { f in
            try FileManager.default.removeItem(atPath: f.userFile())
            try Posix.mkdir(f.userFile())
        },
        .init(name: "user file is a hard link (nlink 2)", stage: .user, kind: "hardLinked") { f in
            try Posix.link(f.userFile(), f.base.sub("alice-link"))
        },
        .init(name: "user file mode 0644", stage: .user, kind: "groupOrOtherAccess") { try Posix.chmod($0.userFile(), 0o644) },
        .init(name: "user file mode 0640", stage: .user, kind: "groupOrOtherAccess") { try Posix.chmod($0.userFile(), 0o640) },
        .init(name: "user file mode 0602", stage: .user, kind: "groupOrOtherAccess") { try Posix.chmod($0.userFile(), 0o602) },
        .init(name: "user file owned by uid 1000", stage: .user, kind: "notOwnedByRoot") { try Posix.chown($0.userFile(), 1000) },
        .init(name: "user file larger than 64 KiB", stage: .user, kind: "tooLarge") { f in
            var bytes = Fixture.totpRecord().serialized()
            bytes.append(contentsOf: Array(repeating: UInt8(ascii: "#"), count: 64 * 1024))
            try Posix.write(f.userFile(), bytes)
        },
    ]

    @Test("each hostile layout is refused and nothing in it changes", arguments: hostile)
    func refused(_ layout: HostileLayout) throws {
        let f = try StoreFixture("sec")
        try f.enroll()
        try layout.apply(f)
        let before = try TreeSnapshot(f.base.path)

        var attempts: [String: String] = [:]
        let started = ContinuousClock.now
        // A reader that blocks on a FIFO would hang the test run; this opens the FIFO for
        // writing every 2 s so a blocked open returns (late, which the timing check catches).
        let unblocker = FIFOUnblocker(f.userFile())
        defer { unblocker.stop() }
        for create in [false, true] {
            let label = create ? "create" : "no-create"
            var store: FileStore? = nil
            attempts["open \(label)"] = storeErrorKind { store = try f.store(create: create) } ?? "ok"
            guard let store else { continue }
            attempts["load \(label)"] = storeErrorKind { _ = try store.load(Fixture.alice) } ?? "ok"
            attempts["update \(label)"] =
                storeErrorKind {
                    try store.update(Fixture.alice) { record in
                        record = Fixture.totpRecord()
                        record?.failures = 42
                    }
                } ?? "ok"
        }
        let expected = "untrusted.\(layout.kind)"
        switch layout.stage {
        case .open:
            #expect(attempts == ["open create": expected, "open no-create": expected])
        case .user:
            #expect(
                attempts == [
                    "open create": "ok", "open no-create": "ok",
                    "load create": expected, "load no-create": expected,
                    "update create": expected, "update no-create": expected,
                ])
        }
        #expect(ContinuousClock.now - started < .seconds(2), "an attempt blocked")
        unblocker.stop()
        let after = try TreeSnapshot(f.base.path)
        #expect(after == before, "the layout changed:\n\(before)\n---\n\(after)")
    }

    @Test("a lock file that is a symlink is refused and its target is not touched")
    func lockSymlink() throws {
        let f = try StoreFixture("sec")
        let store = try f.enroll()
        let victim = f.base.sub("victim")
        try Posix.write(victim, Array("keep\n".utf8), mode: 0o600)
        try FileManager.default.removeItem(atPath: f.locksPath + "/alice")
        try Posix.symlink(victim, at: f.locksPath + "/alice")
        let before = try TreeSnapshot(f.base.path)
        #expect(storeErrorKind { try store.update(Fixture.alice) { $0?.failures = 1 } } == "untrusted.symlink")
        #expect(try TreeSnapshot(f.base.path) == before)
    }

    @Test("locks/ that is a symlink or open to others is refused")
    func locksDirectory() throws {
        let f = try StoreFixture("sec")
        let store = try f.enroll()
        try Posix.chmod(f.locksPath, 0o755)
        #expect(storeErrorKind { try store.update(Fixture.alice) { $0?.failures = 1 } } == "untrusted.groupOrOtherAccess")
        try Posix.rename(f.locksPath, f.statePath + "/locks.real")
        try Posix.chmod(f.statePath + "/locks.real", 0o700)
        try Posix.symlink("locks.real", at: f.locksPath)
        #expect(storeErrorKind { try store.update(Fixture.alice) { $0?.failures = 1 } } == "untrusted.symlink")
        #expect(try store.load(Fixture.alice)?.failures == 0)
    }

    @Test("create never makes a state dir under a parent others can write to")
    func createUnderWritableParent() throws {
        let base = try TemporaryDirectory("sec")
        let parent = base.sub("x")
        try Posix.mkdir(parent, 0o777)
        let before = try TreeSnapshot(base.path)
        #expect(storeErrorKind { _ = try FileStore(path: parent + "/state", create: true) } == "untrusted.writableAncestor")
        #expect(try TreeSnapshot(base.path) == before)
        #expect(!Posix.exists(parent + "/state"))
    }

    @Test("a sticky world-writable parent (like /tmp) is allowed")
    func stickyParentAllowed() throws {
        let base = try TemporaryDirectory("sec")
        let parent = base.sub("t")
        try Posix.mkdir(parent, 0o1777)
        #expect(try mode(parent) == 0o1777)
        let store = try FileStore(path: parent + "/state", create: true)
        try store.update(Fixture.alice) { $0 = Fixture.totpRecord() }
        #expect(try store.load(Fixture.alice) == Fixture.totpRecord())
    }

    @Test("a state path through a symlinked parent is followed (only the last component must not be a link)")
    func symlinkedParent() throws {
        // Documents current behaviour: ancestors are opened without O_NOFOLLOW but each one
        // reached is checked for root ownership and write access.
        let f = try StoreFixture("sec")
        try f.enroll()
        try Posix.symlink(f.base.path, at: f.base.sub("via"))
        let store = try FileStore(path: f.base.sub("via") + "/state", create: false)
        #expect(try store.load(Fixture.alice) == Fixture.totpRecord())
    }
}

private func mode(_ path: String) throws -> mode_t { try Posix.lstat(path).st_mode & 0o7777 }

@Suite("Config file trust: same rules as state")
struct ConfigFileTrustTests {
    @Test("a missing config file (or directory) means defaults")
    func missing() throws {
        let base = try TemporaryDirectory("cfg")
        #expect(try Config.load(path: base.sub("config.toml")) == Config())
        #expect(try Config.load(path: base.sub("nodir/config.toml")) == Config())
    }

    @Test("a root 0600 file is read and parsed")
    func trusted() throws {
        let base = try TemporaryDirectory("cfg")
        try Posix.write(base.sub("config.toml"), Array("[policy]\nwindow = 3\n".utf8))
        #expect(try Config.load(path: base.sub("config.toml")).policy.window == 3)
    }

    @Test("an untrusted config file is refused")
    func untrusted() throws {
        let base = try TemporaryDirectory("cfg")
        let path = base.sub("config.toml")
        let text = Array("[policy]\nwindow = 3\n".utf8)

        func refusal() -> String? {
            do {
                _ = try Config.load(path: path)
                return nil
            } catch { return error.message }
        }

        try Posix.write(path, text, mode: 0o644)
        #expect(refusal()?.contains("mode") == true)

        try Posix.chmod(path, 0o600)
        try Posix.chown(path, 1000)
        #expect(refusal()?.contains("uid 1000") == true)

        try FileManager.default.removeItem(atPath: path)
        try Posix.write(base.sub("real.toml"), text)
        try Posix.symlink(base.sub("real.toml"), at: path)
        #expect(refusal()?.contains("symbolic link") == true)

        try FileManager.default.removeItem(atPath: path)
        try Posix.mkfifo(path)
        let unblocker = FIFOUnblocker(path)
        let started = ContinuousClock.now
        #expect(refusal()?.contains("not a regular file") == true)
        #expect(ContinuousClock.now - started < .seconds(2), "reading the FIFO blocked")
        unblocker.stop()

        try FileManager.default.removeItem(atPath: path)
        try Posix.write(path, Array(repeating: UInt8(ascii: "#"), count: 64 * 1024 + 1))
        #expect(refusal()?.contains("larger") == true)

        try Posix.write(path, text)
        try Posix.chmod(base.path, 0o777)
        #expect(refusal()?.contains("parent") == true)
        try Posix.chmod(base.path, 0o700)
        #expect(refusal() == nil)

        try Posix.write(path, Array("[policy]\nwindw = 3\n".utf8))
        #expect(refusal()?.contains("line 2") == true)
    }
}

/// Opens `path` for writing (non-blocking) every 2 s until stopped, if it is a FIFO, so that
/// code wrongly blocking in open(2) on it gets released instead of hanging the test run.
final class FIFOUnblocker: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private var stopped = false

    init(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFIFO else {
            stopped = true
            return
        }
        Thread.detachNewThread { [done, finished] in
            while done.wait(timeout: .now() + 2) == .timedOut {
                let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                if fd >= 0 { close(fd) }
            }
            finished.signal()
        }
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        done.signal()
        finished.wait()
    }
}
