#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCrypto

/// Why the state could not be used. Every case denies a login.
public enum StoreError: Error, Sendable, CustomStringConvertible {
    case untrusted(FileTrustError)
    case corrupt(path: String, StateFormatError)
    case unsupported(String)
    /// The shared database cannot be reached (refused, timed out, TLS or authentication
    /// failed, or the connection broke). With `offline = "cached"` a login may fall back to
    /// this host's cache; anything else denies.
    case unreachable(String)
    /// The state directory belongs to a fleet (`FileStore.fleetMarker`) but is opened as a
    /// local store: the config is missing or says `files`. Reading it would make every fleet
    /// user "not enrolled", which `nullok` lets through.
    case fleetMember(path: String)

    public var description: String {
        switch self {
        case .unreachable(let why): "the database is unreachable: \(why)"
        case .fleetMember(let path):
            "state \(path) belongs to a fleet (\(path)/\(FileStore.fleetMarker) says so) but the config does not say "
                + "[store] backend = \"postgres\": it is never read as a local store"
        case .untrusted(let e): "state \(e)"
        case .corrupt(let path, let e): "state file \(path) is corrupt: \(e)"
        case .unsupported(let what): what
        }
    }
}

/// Where user state lives. The login flow, the policy and the CLI see only this, so the
/// local files and a shared database can stand behind it alike.
public protocol StateStore: Sendable {
    /// The user's record as it is now, or nil when not enrolled; takes no lock.
    func load(_ user: UserName) throws(StoreError) -> UserRecord?

    /// Runs `body` on the user's record and stores what it leaves: a changed record is
    /// written atomically, nil removes it. What is stored is decided on the record as it is
    /// under the store's exclusive lock (or an equivalent compare-and-swap), so two logins
    /// cannot both use one code.
    ///
    /// The contract every store keeps and every caller relies on: **`body` may run more than
    /// once.** The database store runs it first without a lock on the record read before the
    /// prompt, and again under a row lock when that record changed meanwhile; only the last
    /// run's result and record count. So `body` must have no side effects: everything it
    /// decides goes into the record or its return value, nothing into another store call,
    /// a counter, a file or a message. Work that must happen once happens after `update`
    /// returns, from what it returned. A body that must also count a text against the
    /// global SMS limit uses `update(_:withSMSGlobal:)`, never `updateSMSGlobal` inside.
    func update<R>(_ user: UserName, _ body: (inout UserRecord?) throws -> R) throws -> R

    /// Like `update`, but `body` also gets the count of texts sent for all users
    /// (`sms.max_per_hour_total`), and both are stored together from the same run of `body`
    /// (the user's lock is taken first, then the global one). `body` may run more than once,
    /// as for `update`; a count it changes in a run that does not count is never stored.
    func update<R>(
        _ user: UserName, withSMSGlobal body: (inout UserRecord?, inout SMSGlobalState) throws -> R
    ) throws -> R

    /// Every enrolled user, sorted.
    func users() throws(StoreError) -> [UserName]

    /// Every enrolled user's record, sorted by name (one query on the database).
    func allRecords() throws(StoreError) -> [UserRecord]

    /// The key for hashing recovery codes; made on first use when `create` is set.
    func recoveryKey(create: Bool) throws(StoreError) -> SymmetricKey?

    /// Runs `body` on the count of texts sent for all users (`sms.max_per_hour_total`)
    /// under its own exclusive lock, and stores what it leaves. Not to be called from
    /// inside an `update` body (that body may run twice, and this would count twice): use
    /// `update(_:withSMSGlobal:)` to change a user and the count together.
    func updateSMSGlobal<R>(_ body: (inout SMSGlobalState) throws -> R) throws -> R

    /// Appends one line to the audit trail.
    func appendAudit(_ entry: AuditEntry) throws

    /// The audit trail, oldest first, and how many stored lines could not be read.
    func readAudit() throws -> (entries: [AuditEntry], corrupt: Int)
}

extension StateStore {
    public func allRecords() throws(StoreError) -> [UserRecord] {
        var records: [UserRecord] = []
        for name in try users() {
            if let record = try load(name) { records.append(record) }
        }
        return records
    }
}

/// The default store: one file per user under a root-only directory.
///
/// Layout: `DIR/users/NAME` (the record), `DIR/locks/NAME` (its lock file, never removed),
/// `DIR/recovery.key` (32 random bytes), `DIR/sms-global` (texts sent for all users, locked
/// through `DIR/locks/.sms-global`). Directories root 0700, files root 0600.
public final class FileStore: StateStore, @unchecked Sendable {
    public static let defaultPath = "/var/lib/watchword"
    public static let keyFile = "recovery.key"
    public static let smsGlobalFile = "sms-global"
    /// Written into a state directory when it joins a fleet (`store init`, `store
    /// import-files`, the first login through the database); from then on it is never read
    /// as a local store.
    public static let fleetMarker = "fleet"

    public let path: String
    /// The checked state directory, for what else lives there (the audit log).
    public let root: SecureDirectory
    private let create: Bool
    private let createSubdirectories: Bool
    /// A login reads its user's record before the prompt and again under the lock; when
    /// the file holds the same bytes the second read reuses the first one's parse.
    private let lastParsed = LastParsed()

    /// Opens the state directory; with `create` (the CLI) it and its subdirectories are made
    /// when missing, never fixed when they exist with the wrong owner or mode. With
    /// `createSubdirectories` (a login that may enroll a user) the directory must exist and
    /// only what is inside it is made.
    ///
    /// A directory that has joined a fleet is refused unless `fleetMember` is set (only
    /// `store import-files`, which copies such a directory's users into the database).
    public init(
        path: String = FileStore.defaultPath, create: Bool, createSubdirectories: Bool = false, fleetMember: Bool = false
    ) throws(StoreError) {
        self.path = path
        self.create = create
        self.createSubdirectories = create || createSubdirectories
        do {
            root = try SecureDirectory.open(path, create: create)
        } catch {
            throw .untrusted(error)
        }
        if !fleetMember && root.exists(Self.fleetMarker) { throw .fleetMember(path: path) }
    }

    /// Records that the state directory at `root` belongs to a fleet (once; a no-op when it
    /// says so already).
    public static func markFleetMember(_ root: SecureDirectory) throws(StoreError) {
        guard !root.exists(fleetMarker) else { return }
        let text = "This watchword state directory belongs to a fleet (store backend postgres).\n"
            + "It is never read as a local store; see watchword-config.toml(5).\n"
        do {
            try root.writeAtomically(fleetMarker, Array(text.utf8))
        } catch {
            throw .untrusted(error)
        }
    }

    private func directory(_ name: String) throws(StoreError) -> SecureDirectory? {
        try root.optionalSubdirectory(name, create: createSubdirectories)
    }

    public func load(_ user: UserName) throws(StoreError) -> UserRecord? {
        guard let users = try directory("users") else { return nil }
        return try read(user, in: users)
    }

    private func read(_ user: UserName, in users: SecureDirectory) throws(StoreError) -> UserRecord? {
        try users.readParsed(user.value, limit: UserRecord.maxFileSize) { (bytes) throws(StateFormatError) in
            if let record = lastParsed.record(of: user, from: bytes) { return record }
            let record = try UserRecord.parse(bytes, expectedUser: user)
            lastParsed.remember(record, of: user, from: bytes)
            return record
        }
    }

    public func update<R>(_ user: UserName, _ body: (inout UserRecord?) throws -> R) throws -> R {
        let users = try directory("users")
        let locks = try directory("locks")
        if users != nil && locks == nil {
            throw StoreError.unsupported("state \(root.join("locks")): missing while users/ exists")
        }
        guard let users, let locks else {
            // Nothing is enrolled and nothing may be created: run on an empty record.
            var none: UserRecord? = nil
            let result = try body(&none)
            if none != nil { throw StoreError.unsupported("the state directory is read-only for this caller") }
            return result
        }
        let lock = try locks.storeLock(user.value)
        defer { lock.release() }
        let before = try read(user, in: users)
        var record = before
        let result = try body(&record)
        if record != before {
            do {
                if let record {
                    try users.writeAtomically(user.value, record.serialized())
                } else {
                    try users.remove(user.value)
                }
            } catch {
                throw StoreError.untrusted(error)
            }
        }
        return result
    }

    /// The user's lock, then the global one; this store runs `body` once.
    public func update<R>(
        _ user: UserName, withSMSGlobal body: (inout UserRecord?, inout SMSGlobalState) throws -> R
    ) throws -> R {
        try update(user) { (record: inout UserRecord?) throws -> R in
            try updateSMSGlobal { (global: inout SMSGlobalState) throws -> R in try body(&record, &global) }
        }
    }

    public func users() throws(StoreError) -> [UserName] {
        guard let users = try directory("users") else { return [] }
        let names: [String]
        do {
            names = try users.entries()
        } catch {
            throw .untrusted(error)
        }
        return names.compactMap { try? UserName($0) }.sorted()
    }

    public func updateSMSGlobal<R>(_ body: (inout SMSGlobalState) throws -> R) throws -> R {
        // User names cannot start with '.', so this lock never belongs to a user.
        guard let locks = try directory("locks") else {
            throw StoreError.unsupported("state \(root.join("locks")): missing")
        }
        let lock = try locks.storeLock(".sms-global")
        defer { lock.release() }
        let before = try root.readParsed(Self.smsGlobalFile, limit: SMSGlobalState.maxFileSize, SMSGlobalState.parse)
            ?? SMSGlobalState()
        var state = before
        let result = try body(&state)
        if state != before {
            do {
                try root.writeAtomically(Self.smsGlobalFile, state.serialized())
            } catch {
                throw StoreError.untrusted(error)
            }
        }
        return result
    }

    public func appendAudit(_ entry: AuditEntry) throws {
        try AuditLog.append(entry, in: root)
    }

    public func readAudit() throws -> (entries: [AuditEntry], corrupt: Int) {
        try AuditLog.read(in: root)
    }

    public func recoveryKey(create: Bool) throws(StoreError) -> SymmetricKey? {
        try root.keyFile(Self.keyFile, create: create, lockName: ".recovery-key", makeLocks: self.create)
    }
}

/// The last record a `FileStore` parsed, with the bytes it was parsed from. Parsing is a
/// function of the bytes and the expected user alone, so the same bytes for the same user
/// give the same record. Locked: a store may be shared between threads.
private final class LastParsed: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var user: UserName?
    private var bytes: [UInt8] = []
    private var parsed: UserRecord?

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func record(of user: UserName, from bytes: [UInt8]) -> UserRecord? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return self.user == user && self.bytes == bytes ? parsed : nil
    }

    func remember(_ record: UserRecord, of user: UserName, from bytes: [UInt8]) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        self.user = user
        self.bytes = bytes
        parsed = record
    }
}
