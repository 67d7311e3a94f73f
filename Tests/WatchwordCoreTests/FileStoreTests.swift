import Dispatch
import Foundation
import Glibc
import Testing
import WatchwordCore
import WatchwordCrypto

private func mode(_ path: String) throws -> mode_t { try Posix.lstat(path).st_mode & 0o7777 }
private func type(_ path: String) throws -> mode_t { try Posix.lstat(path).st_mode & S_IFMT }

@Suite("FileStore: layout, load and atomic update")
struct FileStoreTests {
    @Test("create makes the state dir, users/ and locks/ root 0700 and the files root 0600")
    func createLayout() throws {
        let f = try StoreFixture()
        #expect(!Posix.exists(f.statePath))
        let store = try f.store(create: true)
        #expect(try type(f.statePath) == S_IFDIR)
        #expect(try mode(f.statePath) == 0o700)
        try store.update(Fixture.alice) { $0 = Fixture.totpRecord() }

        for dir in [f.statePath, f.usersPath, f.locksPath] {
            let st = try Posix.lstat(dir)
            #expect(st.st_mode & S_IFMT == S_IFDIR, "\(dir)")
            #expect(st.st_mode & 0o7777 == 0o700, "\(dir)")
            #expect(st.st_uid == 0, "\(dir)")
        }
        for file in [f.userFile(), f.locksPath + "/alice"] {
            let st = try Posix.lstat(file)
            #expect(st.st_mode & S_IFMT == S_IFREG, "\(file)")
            #expect(st.st_mode & 0o7777 == 0o600, "\(file)")
            #expect(st.st_uid == 0, "\(file)")
            #expect(st.st_nlink == 1, "\(file)")
        }
        #expect(try Posix.read(f.userFile()) == Fixture.totpRecord().serialized())
    }

    @Test("create makes only the last component, never missing parents")
    func noMkdirParents() throws {
        let base = try TemporaryDirectory("store")
        let kind = storeErrorKind { _ = try FileStore(path: base.sub("missing/state"), create: true) }
        #expect(kind == "untrusted.system")
        #expect(try Posix.entries(base.path).isEmpty)
    }

    @Test("a relative or dotted state path is refused", arguments: ["state", "/tmp/../tmp/x", "/tmp/./x", ""])
    func pathMustBeAbsolute(_ path: String) {
        #expect(storeErrorKind { _ = try FileStore(path: path, create: true) } == "untrusted.notAbsolute")
    }

    @Test("a state dir marked as a fleet member is never opened as a local store, with or without create")
    func fleetMemberRefused() throws {
        let f = try StoreFixture()
        let store = try f.store(create: true)
        try store.update(Fixture.alice) { $0 = Fixture.totpRecord() }
        try FileStore.markFleetMember(store.root)
        try FileStore.markFleetMember(store.root)  // once is enough; again changes nothing
        #expect(try mode(f.statePath + "/" + FileStore.fleetMarker) == 0o600)
        #expect(storeErrorKind { _ = try f.store(create: false) } == "fleetMember")
        #expect(storeErrorKind { _ = try f.store(create: true) } == "fleetMember")
        // Only import-files reads such a directory, to copy its users into the database.
        let member = try FileStore(path: f.statePath, create: false, fleetMember: true)
        #expect(try member.load(Fixture.alice) == Fixture.totpRecord())
    }

    @Test("without create, a missing state dir is an error and is not made")
    func missingWithoutCreate() throws {
        let f = try StoreFixture()
        #expect(storeErrorKind { _ = try f.store(create: false) } == "untrusted.system")
        #expect(!Posix.exists(f.statePath))
    }

    @Test("load returns nil for a user that is not enrolled, with or without users/")
    func loadUnknown() throws {
        let f = try StoreFixture()
        try Posix.mkdir(f.statePath)
        let readOnly = try f.store(create: false)
        #expect(try readOnly.load(Fixture.alice) == nil)
        #expect(try readOnly.users() == [])
        #expect(!Posix.exists(f.usersPath))  // a reader creates nothing

        try f.enroll(Fixture.totpRecord(Fixture.bob))
        #expect(try f.store(create: false).load(Fixture.alice) == nil)
        #expect(try f.store(create: false).load(Fixture.bob) == Fixture.totpRecord(Fixture.bob))
    }

    @Test("update stores the record, load reads it back, nil removes it")
    func updateAndLoad() throws {
        let f = try StoreFixture()
        let store = try f.store()
        let seen: UserRecord?? = try store.update(Fixture.alice) { current in
            let was = current
            current = Fixture.totpRecord()
            return was
        }
        #expect(seen == .some(nil))
        #expect(try store.load(Fixture.alice) == Fixture.totpRecord())

        try store.update(Fixture.alice) { $0?.failures = 3 }
        #expect(try store.load(Fixture.alice)?.failures == 3)
        #expect(try f.store(create: false).load(Fixture.alice)?.failures == 3)

        try store.update(Fixture.alice) { $0 = nil }
        #expect(try store.load(Fixture.alice) == nil)
        #expect(!Posix.exists(f.userFile()))
        #expect(Posix.exists(f.locksPath + "/alice"))  // lock files are never removed
    }

    @Test("update replaces the file by rename (a new inode) and leaves no temporary file")
    func atomicReplace() throws {
        let f = try StoreFixture()
        let store = try f.enroll()
        let before = try Posix.lstat(f.userFile()).st_ino
        try store.update(Fixture.alice) { $0?.failures = 1 }
        let after = try Posix.lstat(f.userFile())
        #expect(after.st_ino != before)
        #expect(after.st_mode & 0o7777 == 0o600)
        #expect(try Posix.entries(f.usersPath) == ["alice"])
        var expected = Fixture.totpRecord()
        expected.failures = 1
        #expect(try Posix.read(f.userFile()) == expected.serialized())
    }

    @Test("an update that changes nothing does not rewrite the file")
    func unchangedNotRewritten() throws {
        let f = try StoreFixture()
        let store = try f.enroll()
        let snapshot = try TreeSnapshot(f.usersPath)
        let value = try store.update(Fixture.alice) { $0?.failures ?? -1 }
        #expect(value == 0)
        #expect(try TreeSnapshot(f.usersPath) == snapshot)
    }

    @Test("a body that throws stores nothing")
    func throwingBody() throws {
        struct Boom: Error {}
        let f = try StoreFixture()
        let store = try f.enroll()
        let snapshot = try TreeSnapshot(f.statePath)
        #expect(throws: Boom.self) {
            try store.update(Fixture.alice) { record in
                record?.failures = 99
                throw Boom()
            }
        }
        #expect(try TreeSnapshot(f.statePath) == snapshot)
        #expect(try store.load(Fixture.alice)?.failures == 0)
    }

    @Test("update reads the record again under the lock: a change made after load is seen, a corrupt file refused")
    func updateSeesChangesAfterLoad() throws {
        let f = try StoreFixture()
        let store = try f.enroll()
        #expect(try store.load(Fixture.alice)?.failures == 0)
        // Another writer (its own store, as another process would be) changes the record.
        try f.store(create: false).update(Fixture.alice) { $0?.failures = 3 }
        #expect(try store.update(Fixture.alice) { $0?.failures } == 3)
        #expect(try store.load(Fixture.alice)?.failures == 3)
        // Bytes that no longer parse are refused under the lock, whatever was read before.
        var bytes = try Posix.read(f.userFile())
        bytes[bytes.count - 2] = UInt8(ascii: "X")
        try Posix.write(f.userFile(), bytes)
        #expect(storeErrorKind { _ = try store.update(Fixture.alice) { $0?.failures } } == "corrupt")
    }

    @Test("a planted temp-file symlink is not followed: the target stays untouched")
    func plantedTempSymlink() throws {
        let f = try StoreFixture()
        let store = try f.enroll()
        let victim = f.base.sub("victim")
        try Posix.write(victim, Array("precious\n".utf8))
        try Posix.symlink(victim, at: f.usersPath + "/.alice.tmp")
        try store.update(Fixture.alice) { $0?.failures = 2 }
        #expect(try Posix.read(victim) == Array("precious\n".utf8))
        #expect(try Posix.entries(f.usersPath) == ["alice"])
        #expect(try store.load(Fixture.alice)?.failures == 2)
    }

    @Test("users() lists enrolled users sorted, skipping hidden and invalid names")
    func listsUsers() throws {
        let f = try StoreFixture()
        let store = try f.store()
        for name in ["zoe", "alice", "jo@corp"] {
            try store.update(Fixture.user(name)) { $0 = Fixture.totpRecord(Fixture.user(name)) }
        }
        try Posix.write(f.usersPath + "/.hidden", [])
        try Posix.write(f.usersPath + "/-bad", [])
        #expect(try store.users().map(\.value) == ["alice", "jo@corp", "zoe"])
    }

    @Test("a corrupt user file is reported as corrupt, naming the file")
    func corruptFile() throws {
        let f = try StoreFixture()
        let store = try f.enroll()
        try Posix.write(f.userFile(), Array("watchword-user 1\nuser alice\n".utf8))
        do {
            _ = try store.load(Fixture.alice)
            Issue.record("a truncated file was loaded")
        } catch {
            #expect(error.kind == "corrupt")
            #expect("\(error)".contains(f.userFile()))
        }
        // A file for another user, moved into alice's place, is corrupt too.
        try f.enroll(Fixture.totpRecord(Fixture.bob))
        try Posix.rename(f.userFile("bob"), f.userFile("alice"))
        #expect(storeErrorKind { _ = try store.load(Fixture.alice) } == "corrupt")
    }
}

@Suite("FileStore: the recovery-code key")
struct RecoveryKeyTests {
    private func bytes(_ key: SymmetricKey?) -> [UInt8]? { key?.withUnsafeBytes { Array($0) } }

    @Test("made once as a 32-byte root 0600 file, then the same key every time")
    func madeOnce() throws {
        let f = try StoreFixture()
        let store = try f.store()
        #expect(try store.recoveryKey(create: false) == nil)
        #expect(!Posix.exists(f.statePath + "/recovery.key"))

        let key = try #require(bytes(try store.recoveryKey(create: true)))
        #expect(key.count == 32)
        #expect(key != [UInt8](repeating: 0, count: 32))
        let st = try Posix.lstat(f.statePath + "/recovery.key")
        #expect(st.st_mode & 0o7777 == 0o600)
        #expect(st.st_mode & S_IFMT == S_IFREG)
        #expect(st.st_uid == 0)
        #expect(try Posix.read(f.statePath + "/recovery.key") == key)

        #expect(bytes(try store.recoveryKey(create: true)) == key)
        #expect(bytes(try store.recoveryKey(create: false)) == key)
        #expect(bytes(try f.store(create: false).recoveryKey(create: false)) == key)
        #expect(try Posix.lstat(f.statePath + "/recovery.key").st_ino == st.st_ino)
    }

    @Test("two state dirs get different keys")
    func distinct() throws {
        let a = try StoreFixture(), b = try StoreFixture()
        #expect(bytes(try a.store().recoveryKey(create: true)) != bytes(try b.store().recoveryKey(create: true)))
    }

    @Test("a key file of the wrong length is an error and is never replaced", arguments: [0, 16, 31, 33, 1024])
    func wrongLength(_ length: Int) throws {
        let f = try StoreFixture()
        let store = try f.store()
        let path = f.statePath + "/recovery.key"
        try Posix.write(path, Array(repeating: 7, count: length))
        let snapshot = try TreeSnapshot(f.statePath)
        #expect(storeErrorKind { _ = try store.recoveryKey(create: false) } == "corrupt")
        #expect(storeErrorKind { _ = try store.recoveryKey(create: true) } == "corrupt")
        #expect(try TreeSnapshot(f.statePath) == snapshot)
    }

    @Test("a key file that is too large, a symlink or readable by others is refused")
    func untrustedKey() throws {
        let f = try StoreFixture()
        let store = try f.store()
        let path = f.statePath + "/recovery.key"

        try Posix.write(path, Array(repeating: 7, count: 1025))
        #expect(storeErrorKind { _ = try store.recoveryKey(create: true) } == "untrusted.tooLarge")

        try Posix.write(path, Array(repeating: 7, count: 32), mode: 0o644)
        #expect(storeErrorKind { _ = try store.recoveryKey(create: true) } == "untrusted.groupOrOtherAccess")

        try FileManager.default.removeItem(atPath: path)
        try Posix.write(f.base.sub("key"), Array(repeating: 7, count: 32))
        try Posix.symlink(f.base.sub("key"), at: path)
        let snapshot = try TreeSnapshot(f.base.path)
        #expect(storeErrorKind { _ = try store.recoveryKey(create: true) } == "untrusted.symlink")
        #expect(try TreeSnapshot(f.base.path) == snapshot)
    }
}

@Suite("FileStore: concurrent updates are serialized by the lock")
struct FileStoreConcurrencyTests {
    @Test("16 threads x 25 increments of failures end at exactly 400")
    func noLostUpdates() throws {
        let f = try StoreFixture()
        let store = try f.enroll()
        let errors = NSLock()
        nonisolated(unsafe) var failures: [String] = []
        DispatchQueue.concurrentPerform(iterations: 16) { _ in
            for _ in 0..<25 {
                do {
                    try store.update(Fixture.alice) { record in
                        guard var r = record else { throw StoreError.unsupported("record vanished") }
                        r.failures += 1
                        record = r
                    }
                } catch {
                    errors.lock()
                    failures.append("\(error)")
                    errors.unlock()
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(3))")
        #expect(try store.load(Fixture.alice)?.failures == 400)
        #expect(try Posix.entries(f.usersPath) == ["alice"])
    }

    @Test("separate store instances (as separate logins would have) also serialize")
    func separateInstances() throws {
        let f = try StoreFixture()
        try f.enroll()
        let path = f.statePath
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            guard let store = try? FileStore(path: path, create: false) else { return }
            for _ in 0..<10 {
                _ = try? store.update(Fixture.alice) { $0?.failures += 1 }
            }
        }
        #expect(try f.store(create: false).load(Fixture.alice)?.failures == 80)
    }
}
