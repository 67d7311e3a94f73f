import ArgumentParser
import WatchwordCore
import WatchwordPostgres

#if canImport(Glibc)
import Glibc
#endif

/// Options every command takes: where the state and the config are.
struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: ArgumentHelp("The state directory.", valueName: "dir"))
    var stateDirectory = FileStore.defaultPath

    @Option(name: .customLong("config"), help: ArgumentHelp("The config file.", valueName: "file"))
    var configPath = Config.defaultPath

    func validate() throws {
        guard stateDirectory.hasPrefix("/") else {
            throw ValidationError("--state-dir must be an absolute path")
        }
        guard configPath.hasPrefix("/") else { throw ValidationError("--config must be an absolute path") }
    }

    /// Checks for root, loads the config and opens the store: the state directory (made
    /// when `create` is set and it is missing), or the shared database.
    func open(create: Bool) throws -> (Config, any StateStore) {
        guard runningAsRoot() else { throw CLIError("must be run as root") }
        let config = try Config.load(path: configPath)
        switch config.store.backend {
        case .files:
            do {
                return (config, try FileStore(path: stateDirectory, create: create))
            } catch {
                if !create, case .untrusted(.system(let e)) = error, e.errno == ENOENT {
                    throw NoStateDirectory(path: stateDirectory)
                }
                throw error
            }
        case .postgres:
            return (config, try openDatabase(config))
        }
    }

    /// The shared database, connected and its schema checked. One connection per command:
    /// the audit line after the command goes through the one the command used.
    func openDatabase(_ config: Config, checkSchema: Bool = true) throws -> PostgresStore {
        let store: PostgresStore
        if let opened = openedDatabase, opened.config == configPath {
            store = opened.store
        } else {
            store = PostgresStore(settings: DatabaseSettings(config.store))
            openedDatabase = (configPath, store)
        }
        if checkSchema {
            try store.connect()
        } else {
            _ = try store.rawConnection()
        }
        return store
    }

    /// Where the audit trail lives: the database in fleet mode, else the state directory.
    func auditStore() throws -> (any StateStore)? {
        let config = try Config.load(path: configPath)
        guard config.store.backend == .postgres else { return nil }
        return try openDatabase(config)
    }
}

/// The database the running command opened (a CLI process runs one command).
nonisolated(unsafe) private var openedDatabase: (config: String, store: PostgresStore)?

/// Whether to print JSON instead of text.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON instead of text.")
    var json = false
}

/// A user named on the command line, validated before any path is built.
struct UserArgument: ParsableArguments {
    @Argument(help: ArgumentHelp("The user's login name.", valueName: "user"))
    var name: String

    var user: UserName { try! UserName(name) }

    func validate() throws {
        do {
            _ = try UserName(name)
        } catch {
            throw ValidationError("invalid user name: \(error)")
        }
    }
}

/// An error the CLI reports as `watchword: MESSAGE`, with exit status 1 or one of the
/// documented statuses scripts can tell apart (watchword(8), EXIT STATUS).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    let status: Int32
    init(_ description: String, status: Int32 = 1) {
        self.description = description
        self.status = status
    }

    /// The user has a token (or phone or recovery codes) and the command would replace it.
    static let alreadyEnrolledStatus: Int32 = 3
    /// The user has no enrollment to show, change or remove.
    static let notEnrolledStatus: Int32 = 4

    static func notEnrolled(_ user: UserName) -> CLIError {
        CLIError("\(user) is not enrolled", status: notEnrolledStatus)
    }
}

/// The state directory does not exist yet: nobody is enrolled.
struct NoStateDirectory: Error, CustomStringConvertible {
    let path: String
    var description: String { "no state directory at \(path) (a wrong --state-dir, or nobody has been enrolled here yet)" }
}

/// Loads a record or fails with a clear message when the user is not enrolled.
func requireRecord(_ store: any StateStore, _ user: UserName) throws -> UserRecord {
    guard let record = try store.load(user) else { throw CLIError.notEnrolled(user) }
    return record
}

/// Runs `body` on an enrolled user's record under the user's lock. An unknown user is an
/// error, found before the lock is taken so that no lock file is made for a bad name.
func updateEnrolled<R>(_ store: any StateStore, _ user: UserName, _ body: (inout UserRecord) throws -> R) throws -> R {
    _ = try requireRecord(store, user)
    return try store.update(user) { (record: inout UserRecord?) throws -> R in
        guard var current = record else { throw CLIError.notEnrolled(user) }
        let result = try body(&current)
        record = current
        return result
    }
}

func writeStandardError(_ text: String) {
    _ = text.withCString { write(2, $0, strlen($0)) }
}

/// The local host name, for the default issuer.
func hostName() -> String { systemHostName() ?? "watchword" }

/// Whether the system knows this user (a warning only: directory users may be resolved later).
func systemHasUser(_ user: UserName) -> Bool {
    getpwnam(user.value) != nil
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`, or `never` for 0.
func formatTime(_ time: Int64) -> String {
    guard time > 0 else { return "never" }
    var t = time_t(time)
    var parts = tm()
    gmtime_r(&t, &parts)
    var buffer = [CChar](repeating: 0, count: 64)
    let n = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%S UTC", &parts)
    return n > 0 ? String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : String(time)
}
