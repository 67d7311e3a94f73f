#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore
import WatchwordCrypto

/// How to reach the database: from `[store.postgres]` and the module's `timeout=`.
public struct DatabaseSettings {
    /// libpq's connection string (`host=... dbname=... user=... sslmode=verify-full ...`).
    public var conninfo: String
    /// Root-only file holding the password; empty: none (certificate or peer authentication).
    public var passwordFile: String
    /// The longest the caller may wait for one step (connect, one statement): the module's
    /// `timeout=` for the helper.
    public var timeoutSeconds: Int
    public var applicationName: String

    public init(conninfo: String, passwordFile: String, timeoutSeconds: Int = 30, applicationName: String = "watchword") {
        self.conninfo = conninfo
        self.passwordFile = passwordFile
        self.timeoutSeconds = timeoutSeconds
        self.applicationName = applicationName
    }

    public init(_ store: StoreSettings, timeoutSeconds: Int = 30, applicationName: String = "watchword") {
        self.init(
            conninfo: store.postgresConninfo, passwordFile: store.postgresPasswordFile, timeoutSeconds: timeoutSeconds,
            applicationName: applicationName)
    }

    /// A third of the budget, at least 2 s and at most 10, leaves room for the statements
    /// after it.
    public var connectTimeout: Int { min(max(timeoutSeconds / 3, 2), 10) }
    /// Each statement, and each wait for a row lock, is cut off after this.
    public var statementTimeoutMilliseconds: Int { max(timeoutSeconds * 1000 / 3, 1000) }

    /// The server-side bounds sent with the connection (libpq's `options`): a helper
    /// killed mid-transaction closes its socket and the server rolls back; a host that
    /// vanishes from the network is cut off by the idle-in-transaction timeout.
    var serverOptions: String {
        let ms = statementTimeoutMilliseconds
        return "-c statement_timeout=\(ms) -c lock_timeout=\(ms) -c idle_in_transaction_session_timeout=\(max(ms * 2, 5000))"
    }

    /// How long one wait on the connection may take (a statement's answer).
    var waitSeconds: Int { max(statementTimeoutMilliseconds / 1000 + 1, 2) }

    /// The connection plan: the conninfo parsed by libpq and checked against the rules
    /// (see `ConnectionPlan`).
    public func plan(checkFiles: Bool = true) throws(StoreError) -> ConnectionPlan {
        do {
            return try ConnectionPlan.make(
                conninfo: conninfo, pq: try Libpq.shared(), connectTimeout: connectTimeout,
                applicationName: applicationName, serverOptions: serverOptions, checkFiles: checkFiles)
        } catch {
            throw PostgresStore.storeError(error)
        }
    }

    /// The password: the first line of a root-owned 0600 file (the same rules as the config).
    func readPassword() throws(StoreError) -> [UInt8]? {
        guard !passwordFile.isEmpty else { return nil }
        guard passwordFile.hasPrefix("/") else {
            throw .unsupported("store.postgres.password_file must be an absolute path")
        }
        let bytes: [UInt8]?
        do {
            bytes = try readTrustedFile(passwordFile, limit: 4096)
        } catch {
            throw .unsupported("store.postgres.password_file: \(error)")
        }
        guard var bytes else { throw .unsupported("store.postgres.password_file \(passwordFile) does not exist") }
        defer { secureZero(&bytes) }
        let line = bytes.prefix { $0 != 0x0A && $0 != 0x0D }
        guard !line.isEmpty, !line.contains(0), String(validating: line, as: UTF8.self) != nil else {
            throw .unsupported("store.postgres.password_file \(passwordFile) holds no password on its first line")
        }
        return Array(line)
    }
}

/// The shared store: every host's logins and CLI on one PostgreSQL database.
///
/// A user's record is one row holding the same text as the file store's `users/NAME`
/// (parsed and checked the same way). `update` runs its body on the text this object last
/// read and writes the result with a compare-and-swap on that text; when the row changed
/// meanwhile (or never was read) it is one transaction: `SELECT ... FOR UPDATE` locks the
/// row, the body runs, the new text is written, `COMMIT`. Logins on different hosts
/// therefore decide on the row as stored, exactly as logins on one host do under the lock
/// file: one success per code, exact failure counts, one lockout.
///
/// The connection is made on first use and kept for the life of the object (one login, or
/// one CLI command).
public final class PostgresStore: StateStore, @unchecked Sendable {
    public static var schemaVersion: Int { Schema.latest }
    public let settings: DatabaseSettings
    private var db: DatabaseConnection?
    private var inTransaction = false
    private var cachedKey: SymmetricKey?
    /// Called with the connection after it is made and its schema checked (reconciliation).
    public var onConnect: ((PostgresStore) -> Void)?

    public init(settings: DatabaseSettings) {
        self.settings = settings
    }

    /// Connects without checking the schema (for `store init`/`migrate` and `doctor`).
    public func rawConnection() throws(StoreError) -> DatabaseConnection {
        if let db { return db }
        let plan = try settings.plan()
        var password = try settings.readPassword()
        defer { if password != nil { secureZero(&password!) } }
        do {
            let connection = try Libpq.shared().connect(plan, password: password, waitSeconds: settings.waitSeconds)
            db = connection
            return connection
        } catch {
            throw Self.storeError(error)
        }
    }

    /// The connection, checked to hold the schema this build knows.
    /// The connection; the schema is checked with the first statement sent on it (in the
    /// same round trip), so a login pays no extra trip for it.
    func connection() throws(StoreError) -> DatabaseConnection {
        if let db { return db }
        let connection = try rawConnection()
        if let onConnect {
            self.onConnect = nil
            onConnect(self)
        }
        return connection
    }

    private var schemaChecked = false
    static let versionQuery = "SELECT version FROM watchword_schema"

    /// Throws unless the rows of `versionQuery` name the version this build knows.
    static func checkVersion(_ rows: [Row]) throws(StoreError) {
        guard let text = rows.first?.first ?? nil, let version = Int(text) else {
            throw .unsupported("the database's watchword_schema holds no version")
        }
        guard version == schemaVersion else {
            if version < schemaVersion {
                throw .unsupported(
                    "the database schema is version \(version), this build needs \(schemaVersion): run 'watchword store migrate'")
            }
            throw .unsupported(
                "the database schema is version \(version), newer than this build knows (\(schemaVersion)): upgrade watchword")
        }
    }

    /// Connects now, and checks the schema, instead of on first use.
    public func connect() throws(StoreError) {
        _ = try batch([])
    }

    /// Connects now; the schema is checked with the first statement (a login: the load).
    public func open() throws(StoreError) {
        _ = try connection()
    }

    public func close() {
        db?.close()
        db = nil
    }

    static func storeError(_ error: DatabaseError) -> StoreError {
        switch error.kind {
        case .unreachable, .lost: .unreachable(error.message)
        case .config, .failed, .server: .unsupported(error.message)
        }
    }

    @discardableResult
    private func batch(_ statements: [(String, [String?])]) throws(StoreError) -> [[Row]] {
        let connection = try connection()
        let checking = !schemaChecked
        let all = checking ? [(Self.versionQuery, [])] + statements : statements
        guard !all.isEmpty else { return [] }
        var results: [[Row]]
        do {
            results = try connection.batch(all)
        } catch {
            if error.kind == .lost { close() }
            if checking && error.sqlState == "42P01" {
                throw .unsupported("the database has no watchword schema: run 'watchword store init'")
            }
            throw Self.storeError(error)
        }
        if checking {
            do {
                try Self.checkVersion(results.removeFirst())
            } catch {
                close()  // whatever the batch began is rolled back with the connection
                throw error
            }
            schemaChecked = true
        }
        return results
    }

    @discardableResult
    private func run(_ sql: String, _ parameters: [String?] = []) throws(StoreError) -> [Row] {
        try batch([(sql, parameters)])[0]
    }

    // MARK: Users

    private func parse(_ text: String?, _ user: UserName) throws(StoreError) -> UserRecord? {
        guard let text else { return nil }
        do {
            return try UserRecord.parse(Array(text.utf8), expectedUser: user)
        } catch {
            throw .corrupt(path: "database row users/\(user.value)", error)
        }
    }

    private static func text(_ record: UserRecord) -> String {
        String(decoding: record.serialized(), as: UTF8.self)
    }

    /// The row's text as this process last read or wrote it, for the optimistic write.
    private var seen: [String: String] = [:]
    /// Set while `update` runs its body without the row lock.
    private var optimistic = false

    /// The user's record as this object last read or wrote it, without asking the
    /// database again; nil when it has no such text (then ask with `load`).
    public func lastSeen(_ user: UserName) -> UserRecord? {
        seen[user.value].flatMap { try? parse($0, user) }
    }

    /// Raised when an optimistic body calls `updateSMSGlobal`, which breaks the contract of
    /// `update` (use `update(_:withSMSGlobal:)`): the body is then run under the row lock,
    /// so that even such a caller counts once.
    private struct NeedsLock: Error {}

    public func load(_ user: UserName) throws(StoreError) -> UserRecord? {
        let rows = try run("SELECT record FROM users WHERE name = $1", [user.value])
        let text = rows.first?.first ?? nil
        seen[user.value] = text
        return try parse(text, user)
    }

    public func update<R>(_ user: UserName, _ body: (inout UserRecord?) throws -> R) throws -> R {
        try update(user, optimistically: true, body)
    }

    /// The user's row and the global count in one transaction, straight under the row lock
    /// (a text is rare; the compare-and-swap could not cover the second row). The body runs
    /// again only when a new row met another host's insert, and then on a fresh transaction:
    /// a count changed by a run that did not count is rolled back with it.
    public func update<R>(
        _ user: UserName, withSMSGlobal body: (inout UserRecord?, inout SMSGlobalState) throws -> R
    ) throws -> R {
        try update(user, optimistically: false) { (record: inout UserRecord?) throws -> R in
            try updateSMSGlobal { (global: inout SMSGlobalState) throws -> R in try body(&record, &global) }
        }
    }

    private func update<R>(
        _ user: UserName, optimistically: Bool, _ body: (inout UserRecord?) throws -> R
    ) throws -> R {
        guard !inTransaction else { throw StoreError.unsupported("nested update of \(user) in one transaction") }
        // The common case of a login: the record read before the prompt is still the row.
        // The body runs on it and the change is written in one statement that succeeds only
        // if the row still holds exactly that text (compare and swap). Any change by another
        // login since then makes it match no row, and the locked path below runs the body
        // again on the current row. Either way the body's decision stands on the row as
        // stored: one success per code, exact counts.
        if optimistically, let known = seen[user.value], let before = try? parse(known, user) {
            var record: UserRecord? = before
            optimistic = true
            let outcome: Result<R, any Error>
            do {
                outcome = .success(try body(&record))
            } catch {
                outcome = .failure(error)
            }
            optimistic = false
            switch outcome {
            case .failure(let error) where !(error is NeedsLock):
                throw error
            case .success(let result) where record == before:
                return result
            case .success(let result):
                if let record {
                    let text = Self.text(record)
                    let swapped = try run(
                        "UPDATE users SET record = $2, updated_at = now() WHERE name = $1 AND record = $3 RETURNING 1",
                        [user.value, text, known])
                    if !swapped.isEmpty {
                        seen[user.value] = text
                        return result
                    }
                }
            default:
                break
            }
            seen[user.value] = nil
        }
        // A new row may meet another host inserting the same user: then start again on
        // the row that host made.
        for _ in 0..<3 {
            // BEGIN and the row lock in one round trip; the write and COMMIT in another.
            let locked = try batch([
                ("BEGIN", []), ("SELECT record FROM users WHERE name = $1 FOR UPDATE", [user.value]),
            ])
            inTransaction = true
            var finished = false
            defer {
                if !finished {
                    _ = try? db?.execute("ROLLBACK")
                }
                inTransaction = false
            }
            let lockedText = locked[1].first?.first ?? nil
            seen[user.value] = lockedText
            let before = try parse(lockedText, user)
            var record = before
            let result = try body(&record)
            guard record != before else {
                try run("COMMIT")
                finished = true
                return result
            }
            if let record {
                if before == nil {
                    // Another host's row won: roll back (with anything else this run
                    // changed, such as the global SMS count) and run the body again on it.
                    let inserted = try run(
                        "INSERT INTO users (name, record) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING 1",
                        [user.value, Self.text(record)])
                    if inserted.isEmpty { continue }
                    try run("COMMIT")
                    finished = true
                    seen[user.value] = Self.text(record)
                    return result
                }
                try batch([
                    ("UPDATE users SET record = $2, updated_at = now() WHERE name = $1", [user.value, Self.text(record)]),
                    ("COMMIT", []),
                ])
                seen[user.value] = Self.text(record)
            } else {
                try batch([("DELETE FROM users WHERE name = $1", [user.value]), ("COMMIT", [])])
                seen[user.value] = nil
            }
            finished = true
            return result
        }
        throw StoreError.unsupported("\(user) was enrolled by another host at the same moment; try again")
    }

    public func users() throws(StoreError) -> [UserName] {
        try run("SELECT name FROM users").compactMap { row in row.first.flatMap { $0 }.flatMap { try? UserName($0) } }
            .sorted()
    }

    /// Every record in one query (the CLI's `list`, the cache refresh).
    public func allRecords() throws(StoreError) -> [UserRecord] {
        var records: [UserRecord] = []
        for row in try run("SELECT name, record FROM users ORDER BY name") {
            guard let nameText = row[0], let name = try? UserName(nameText) else { continue }
            if let record = try parse(row[1], name) { records.append(record) }
        }
        return records
    }

    // MARK: Shared state

    public func updateSMSGlobal<R>(_ body: (inout SMSGlobalState) throws -> R) throws -> R {
        // Counted only under the user's row lock, so that a body run twice counts once.
        if optimistic { throw NeedsLock() }
        let own = !inTransaction
        if own { try run("BEGIN") }
        var committed = false
        defer { if own && !committed { _ = try? db?.execute("ROLLBACK") } }
        let rows = try run("SELECT state FROM sms_global WHERE singleton FOR UPDATE")
        guard let row = rows.first else { throw StoreError.unsupported("the database has no sms_global row") }
        let before: SMSGlobalState
        if let text = row[0], !text.isEmpty {
            do {
                before = try SMSGlobalState.parse(Array(text.utf8))
            } catch {
                throw StoreError.corrupt(path: "database row sms_global", error)
            }
        } else {
            before = SMSGlobalState()
        }
        var state = before
        let result = try body(&state)
        if state != before {
            try run(
                "UPDATE sms_global SET state = $1 WHERE singleton", [String(decoding: state.serialized(), as: UTF8.self)])
        }
        if own { try run("COMMIT") }
        committed = true
        return result
    }

    public static let recoveryKeySetting = "recovery_key"

    public func recoveryKey(create: Bool) throws(StoreError) -> SymmetricKey? {
        if let cachedKey { return cachedKey }
        if let key = try readKey() {
            cachedKey = key
            return key
        }
        guard create else { return nil }
        guard var fresh = try? SecureRandom.bytes(count: 32) else {
            throw .unsupported("the kernel's random number generator failed")
        }
        defer { secureZero(&fresh) }
        try run(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            [Self.recoveryKeySetting, Hex.encode(fresh)])
        cachedKey = try readKey()
        return cachedKey
    }

    private func readKey() throws(StoreError) -> SymmetricKey? {
        let rows = try run("SELECT value FROM settings WHERE name = $1", [Self.recoveryKeySetting])
        guard let text = rows.first?.first ?? nil else { return nil }
        guard let bytes = Hex.decode(text), bytes.count == 32 else {
            throw .corrupt(
                path: "database row settings/\(Self.recoveryKeySetting)",
                StateFormatError(line: 0, message: "not a 32-byte key in hex"))
        }
        return SymmetricKey(bytes: bytes)
    }

    /// Stores `key` as the fleet's recovery key when there is none; returns the key the
    /// database holds afterwards (`store import-files`).
    public func adoptRecoveryKey(_ key: SymmetricKey) throws(StoreError) -> SymmetricKey? {
        let hex = key.withUnsafeBytes { Hex.encode(Array($0)) }
        try run(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            [Self.recoveryKeySetting, hex])
        cachedKey = nil
        return try recoveryKey(create: false)
    }

    // MARK: Audit

    public func appendAudit(_ entry: AuditEntry) throws {
        try run(
            "INSERT INTO audit (time, username, host, line) VALUES ($1, $2, $3, $4)",
            [String(entry.time), entry.user, entry.host, entry.jsonLine])
    }

    public func readAudit() throws -> (entries: [AuditEntry], corrupt: Int) {
        var entries: [AuditEntry] = []
        var corrupt = 0
        for row in try run("SELECT line FROM audit ORDER BY id") {
            if let line = row[0], let entry = AuditEntry(jsonLine: line[...]) {
                entries.append(entry)
            } else {
                corrupt += 1
            }
        }
        return (entries, corrupt)
    }

    // MARK: Whole-store operations

    /// Runs `body` in one transaction (`store import-files`: all or nothing).
    public func transaction<R>(_ body: () throws -> R) throws -> R {
        guard !inTransaction else { throw StoreError.unsupported("nested transaction") }
        try run("BEGIN")
        inTransaction = true
        var committed = false
        defer {
            if !committed { _ = try? db?.execute("ROLLBACK") }
            inTransaction = false
        }
        let result = try body()
        try run("COMMIT")
        committed = true
        return result
    }

    /// Writes a record as it is, replacing any row (inside `transaction`).
    public func put(_ record: UserRecord) throws(StoreError) {
        try run(
            "INSERT INTO users (name, record) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, updated_at = now()",
            [record.user.value, Self.text(record)])
    }

    /// The database's clock, as Unix seconds with a fraction.
    public func databaseTime() throws(StoreError) -> Double {
        let rows = try run("SELECT extract(epoch FROM clock_timestamp())::float8")
        guard let text = rows.first?.first ?? nil, let value = Double(text) else {
            throw .unsupported("the database did not say what time it is")
        }
        return value
    }
}
