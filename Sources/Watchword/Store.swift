import ArgumentParser
import WatchwordCore
import WatchwordCrypto
import WatchwordPostgres
import WatchwordSetup

#if canImport(Glibc)
import Glibc
#endif

/// `watchword store ...`: the shared PostgreSQL store of a fleet.
struct StoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Set up and maintain the shared PostgreSQL store (fleet mode).",
        discussion: """
            With [store] backend = "postgres" in the config, every host's logins and every \
            command use one database. 'init' creates the schema, 'migrate' upgrades it, \
            'import-files' moves a host's local state into it, 'refresh-cache' brings this \
            host's offline cache up to date (offline = "cached").
            """,
        subcommands: [StoreInit.self, StoreMigrate.self, StoreImportFiles.self, StoreRefreshCache.self])
}

/// Loads the config and insists on the PostgreSQL backend.
func fleetConfig(_ global: GlobalOptions) throws -> Config {
    guard runningAsRoot() else { throw CLIError("must be run as root") }
    let config = try Config.load(path: global.configPath)
    guard config.store.backend == .postgres else {
        throw CLIError("\(global.configPath) does not say [store] backend = \"postgres\"")
    }
    return config
}

/// `watchword store init`
struct StoreInit: ParsableCommand, AuditedCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the schema in the database (safe to rerun).",
        discussion: """
            The database and its role are made by the database's admin beforehand (see \
            watchword(8)). Rerunning init on a database that has the schema changes nothing; \
            on an older schema it applies the missing migrations.
            """)
    @OptionGroup var global: GlobalOptions

    var auditEvent: String { "store-init" }
    var auditUser: String? { nil }

    func run() throws {
        let config = try fleetConfig(global)
        let store = try global.openDatabase(config, checkSchema: false)
        let outcome = try Schema.migrate(store, create: true)
        try markFleetMember(global.stateDirectory)
        report(outcome)
    }
}

/// Marks this host's state directory (made when missing) as a fleet member, so that it is
/// never again read as a local store, whatever the config says later.
func markFleetMember(_ stateDirectory: String) throws {
    let root: SecureDirectory
    do {
        root = try SecureDirectory.open(stateDirectory, create: true)
    } catch {
        throw CLIError("cannot mark \(stateDirectory) as a fleet member: state \(error)")
    }
    try FileStore.markFleetMember(root)
}

func report(_ outcome: Schema.Outcome) {
    switch outcome.from {
    case nil: print("Created the watchword schema (version \(outcome.to)).")
    case outcome.to?: print("The schema is at version \(outcome.to); nothing to do.")
    case let from?: print("Migrated the schema from version \(from) to \(outcome.to).")
    }
}

/// `watchword store migrate`
struct StoreMigrate: ParsableCommand, AuditedCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Upgrade the schema to this build's version (safe to rerun).",
        discussion: """
            Applies, in one transaction, the migrations the database has not had yet. Hosts \
            refuse logins while the schema is older or newer than they know, so upgrade \
            watchword on the hosts and migrate together.
            """)
    @OptionGroup var global: GlobalOptions

    var auditEvent: String { "store-migrate" }
    var auditUser: String? { nil }

    func run() throws {
        let config = try fleetConfig(global)
        let store = try global.openDatabase(config, checkSchema: false)
        report(try Schema.migrate(store, create: false))
    }
}

/// `watchword store import-files`
struct StoreImportFiles: ParsableCommand, AuditedCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-files",
        abstract: "Copy the users of a local state directory into the database.",
        discussion: """
            Reads every user of the file store at --state-dir (default /var/lib/watchword) \
            with its secret, counters, failure count, recovery codes and SMS state, and its \
            recovery-code key, and writes them to the database in one transaction: all or \
            nothing. A user the database already has is an error unless --force. Recovery \
            codes are stored as keyed hashes, so the database must have no recovery key yet \
            or the same one; importing a second host's files with another key is refused \
            (re-issue that host's recovery codes after importing with --force instead). The \
            files are left as they are.
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Check and show what would be imported; change nothing.")
    var dryRun = false
    @Flag(help: "Replace users the database already has.")
    var force = false

    var auditEvent: String { "store-import-files" }
    var auditUser: String? { nil }
    var auditNote: String? { dryRun ? "dry run" : nil }

    func run() throws {
        let config = try fleetConfig(global)
        let files: FileStore
        do {
            files = try FileStore(path: global.stateDirectory, create: false, fleetMember: true)
        } catch {
            if case .untrusted(.system(let e)) = error, e.errno == ENOENT {
                throw NoStateDirectory(path: global.stateDirectory)
            }
            throw error
        }
        var records: [UserRecord] = []
        for name in try files.users() {
            if let record = try files.load(name) { records.append(record) }
        }
        let fileKey = try files.recoveryKey(create: false)
        let db = try global.openDatabase(config)
        let existing = Set(try db.users())
        let clashes = records.filter { existing.contains($0.user) }.map(\.user.value)
        if !clashes.isEmpty && !force {
            throw CLIError(
                "the database already has \(clashes.joined(separator: ", ")); nothing imported (use --force to replace them)")
        }
        let needsKey = records.contains { !$0.recoveryCodeHashes.isEmpty || $0.sms.pending?.hash != nil }
        if needsKey {
            guard let fileKey else {
                throw CLIError("\(global.stateDirectory) has recovery codes but no \(FileStore.keyFile); nothing imported")
            }
            if let dbKey = try db.recoveryKey(create: false), !sameKey(dbKey, fileKey) {
                throw CLIError(
                    "the database's recovery-code key differs from \(global.stateDirectory)/\(FileStore.keyFile), so "
                        + "these recovery codes could not be checked; nothing imported")
            }
        }
        if dryRun {
            for record in records {
                print("would import \(record.user)\(existing.contains(record.user) ? " (replacing)" : "")")
            }
            print("\(records.count) user\(records.count == 1 ? "" : "s") would be imported; nothing changed.")
            return
        }
        try db.transaction {
            if needsKey, let fileKey {
                guard let held = try db.adoptRecoveryKey(fileKey), sameKey(held, fileKey) else {
                    throw CLIError("the database's recovery-code key changed while importing; nothing imported")
                }
            }
            for record in records { try db.put(record) }
        }
        try markFleetMember(global.stateDirectory)
        for record in records { print("imported \(record.user)") }
        print("\(records.count) user\(records.count == 1 ? "" : "s") imported.")
    }

    private func sameKey(_ a: SymmetricKey, _ b: SymmetricKey) -> Bool {
        a.withUnsafeBytes { x in b.withUnsafeBytes { y in constantTimeEquals(Array(x), Array(y)) } }
    }
}

/// `watchword store refresh-cache`
struct StoreRefreshCache: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refresh-cache",
        abstract: "Bring this host's offline cache up to date for every user.",
        discussion: """
            With offline = "cached", a host can check codes while the database is down only \
            for users it has cached: those who logged in on it recently, and everyone after \
            this command. It first sends the host's offline events (used codes, failures) to \
            the database. Run it from cron every few hours on each host; the cache covers \
            the next 24 hours of TOTP codes, and an entry older than \
            store.postgres.offline_max_age (default a day) lets nobody in.
            """)
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let config = try fleetConfig(global)
        guard config.store.postgresOffline == .cached else {
            throw CLIError("store.postgres.offline is \"deny\": there is no offline cache to refresh")
        }
        let cache = OfflineCache(root: try SecureDirectory.open(global.stateDirectory, create: true))
        let db = try global.openDatabase(config)
        for line in Reconciler(db: db, cache: cache).reconcilePending() { print(line) }
        if let key = try db.recoveryKey(create: false) { try cache.saveFleetRecoveryKey(key) }
        let records = try db.allRecords()
        let now = unixTimeNow()
        for record in records {
            try cache.refresh(record.user, from: record, policy: config.policy, now: now)
        }
        // Users removed from the database leave the cache.
        let current = Set(records.map(\.user))
        for name in try cache.cachedUsers() where !current.contains(name) {
            try cache.refresh(name, from: nil, policy: config.policy, now: now)
        }
        print("Offline cache refreshed for \(records.count) user\(records.count == 1 ? "" : "s").")
    }
}
