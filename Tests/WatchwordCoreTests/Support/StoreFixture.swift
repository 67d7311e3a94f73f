import Glibc
import Testing
import WatchwordCore

/// A state directory `BASE/state` in a fresh root-only temp dir.
struct StoreFixture {
    let base: TemporaryDirectory
    var statePath: String { base.sub("state") }
    var usersPath: String { statePath + "/users" }
    var locksPath: String { statePath + "/locks" }
    func userFile(_ name: String = "alice") -> String { usersPath + "/" + name }

    init(_ label: String = "store") throws { base = try TemporaryDirectory(label) }

    func store(create: Bool = true) throws -> FileStore { try FileStore(path: statePath, create: create) }

    /// Makes the state directory and stores `record` through the real store, so that
    /// `users/`, `locks/` and the user's lock file all exist.
    @discardableResult
    func enroll(_ record: UserRecord = Fixture.totpRecord()) throws -> FileStore {
        let store = try store(create: true)
        try store.update(record.user) { $0 = record }
        return store
    }
}

extension FileTrustError {
    /// The case, without its payload, for matching in tests.
    var kind: String {
        switch self {
        case .notAbsolute: "notAbsolute"
        case .symlink: "symlink"
        case .notDirectory: "notDirectory"
        case .notRegularFile: "notRegularFile"
        case .notOwnedByRoot: "notOwnedByRoot"
        case .groupOrOtherAccess: "groupOrOtherAccess"
        case .writableAncestor: "writableAncestor"
        case .hardLinked: "hardLinked"
        case .tooLarge: "tooLarge"
        case .system: "system"
        }
    }
}

extension StoreError {
    var kind: String {
        switch self {
        case .untrusted(let e): "untrusted.\(e.kind)"
        case .corrupt: "corrupt"
        case .unsupported: "unsupported"
        case .unreachable: "unreachable"
        case .fleetMember: "fleetMember"
        }
    }
}

/// The error `body` threw, as a StoreError kind, or nil when it did not throw.
func storeErrorKind(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as StoreError {
        return error.kind
    } catch {
        return "other: \(error)"
    }
}
