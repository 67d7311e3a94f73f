#if canImport(Glibc)
import Glibc
#endif
import CLibpq
import WatchwordCore

/// Why the database could not be used.
public struct DatabaseError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// No connection could be opened: refused, no route, timed out before the TCP
        /// connection was up, name not resolved. The only case `offline = "cached"` covers.
        case unreachable
        /// A connection was opened and then failed: certificate, authentication, protocol.
        /// Whoever answered is not known to be the database; logins are denied.
        case failed
        /// The config asks for something this program refuses (a weak `sslmode`, ...).
        case config
        /// The server answered a statement with an error (SQLSTATE in `sqlState`).
        case server
        /// The connection broke after it was up (the server went away).
        case lost
    }
    public let kind: Kind
    public let message: String
    public let sqlState: String?

    public init(_ kind: Kind, _ message: String, sqlState: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { message }
}

/// One value of a result row, as text; nil is SQL NULL.
public typealias Row = [String?]

/// libpq from Debian's libpq5, loaded with dlopen() when the config says backend = "postgres".
///
/// Why not link it: watchword-helper runs on every login, and on most hosts the store is the
/// local files. Linking libpq makes the dynamic loader map it and its 20-odd libraries
/// (libssl, Kerberos, LDAP, ...) into every login. The declarations still come from the
/// headers (the CLibpq system-library target), so types and constants are checked.
///
/// Before libpq is loaded, every `PG*` variable is removed from this process's environment:
/// libpq reads them at each connection (PGHOST, PGSSLMODE, PGPASSWORD, PGSERVICE, ...), and
/// an admin's shell or a PAM environment must not decide where a login's database is.
public final class Libpq: @unchecked Sendable {
    typealias ConnectStartParams = @convention(c) (
        UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?, Int32
    ) -> OpaquePointer?
    typealias ConnectPoll = @convention(c) (OpaquePointer?) -> PostgresPollingStatusType
    typealias Status = @convention(c) (OpaquePointer?) -> ConnStatusType
    typealias ConnInt = @convention(c) (OpaquePointer?) -> Int32
    typealias ConnString = @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
    typealias Finish = @convention(c) (OpaquePointer?) -> Void
    typealias ConninfoParse = @convention(c) (
        UnsafePointer<CChar>?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    ) -> UnsafeMutablePointer<PQconninfoOption>?
    typealias ConninfoFree = @convention(c) (UnsafeMutablePointer<PQconninfoOption>?) -> Void
    typealias Freemem = @convention(c) (UnsafeMutableRawPointer?) -> Void
    typealias SendQueryParams = @convention(c) (
        OpaquePointer?, UnsafePointer<CChar>?, Int32, UnsafePointer<Oid>?, UnsafePointer<UnsafePointer<CChar>?>?,
        UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int32
    ) -> Int32
    typealias GetResult = @convention(c) (OpaquePointer?) -> OpaquePointer?
    typealias ResultStatus = @convention(c) (OpaquePointer?) -> ExecStatusType
    typealias ResultErrorField = @convention(c) (OpaquePointer?, Int32) -> UnsafeMutablePointer<CChar>?
    typealias ResultInt = @convention(c) (OpaquePointer?) -> Int32
    typealias GetValue = @convention(c) (OpaquePointer?, Int32, Int32) -> UnsafeMutablePointer<CChar>?
    typealias GetIsNull = @convention(c) (OpaquePointer?, Int32, Int32) -> Int32
    typealias Clear = @convention(c) (OpaquePointer?) -> Void
    typealias SetNonblocking = @convention(c) (OpaquePointer?, Int32) -> Int32
    typealias ParameterStatus = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> UnsafePointer<CChar>?
    typealias SSLAttribute = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> UnsafePointer<CChar>?
    typealias SetNoticeProcessor = @convention(c) (
        OpaquePointer?, PQnoticeProcessor?, UnsafeMutableRawPointer?
    ) -> PQnoticeProcessor?
    typealias LibVersion = @convention(c) () -> Int32

    let connectStartParams: ConnectStartParams
    let connectPoll: ConnectPoll
    let status: Status
    let socket: ConnInt
    let errorMessage: ConnString
    let finish: Finish
    let conninfoParse: ConninfoParse
    let conninfoFree: ConninfoFree
    let freemem: Freemem
    let sendQueryParams: SendQueryParams
    let getResult: GetResult
    let resultStatus: ResultStatus
    let resultErrorField: ResultErrorField
    let resultErrorMessage: @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
    let ntuples: ResultInt
    let nfields: ResultInt
    let getvalue: GetValue
    let getisnull: GetIsNull
    let clear: Clear
    let consumeInput: ConnInt
    let isBusy: ConnInt
    let flush: ConnInt
    let setnonblocking: SetNonblocking
    let enterPipelineMode: ConnInt
    let exitPipelineMode: ConnInt
    let pipelineSync: ConnInt
    let parameterStatus: ParameterStatus
    let serverVersion: ConnInt
    let sslInUse: ConnInt
    let sslAttribute: SSLAttribute
    let setNoticeProcessor: SetNoticeProcessor
    public let version: Int

    public static let library = "libpq.so.5"
    nonisolated(unsafe) private static var loaded: Libpq?

    /// The process's libpq, loaded on first use (after the `PG*` variables are gone).
    public static func shared() throws(DatabaseError) -> Libpq {
        if let loaded { return loaded }
        scrubEnvironment()
        let lib = try Libpq()
        loaded = lib
        return lib
    }

    /// Whether libpq is mapped in this process (tests, `--version`-style checks).
    public static var isLoaded: Bool { loaded != nil }

    /// Removes every variable whose name starts with `PG` from the environment.
    static func scrubEnvironment() {
        while true {
            var found: String? = nil
            var p = environ
            while let entry = p.pointee {
                let text = String(cString: entry)
                if text.hasPrefix("PG"), let eq = text.firstIndex(of: "=") {
                    found = String(text[..<eq])
                    break
                }
                p += 1
            }
            guard let name = found else { return }
            if unsetenv(name) != 0 { return }
        }
    }

    private init() throws(DatabaseError) {
        // RTLD_LAZY: libpq's libraries bind a function when it is first called.
        let opened = dlopen(Self.library, RTLD_LAZY | RTLD_LOCAL)
        guard let handle = opened else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw DatabaseError(.config, "cannot load \(Self.library), which a PostgreSQL store needs (apt install libpq5; the watchword package only suggests it): \(reason)")
        }
        func symbol<T>(_ name: String, _ type: T.Type) throws(DatabaseError) -> T {
            guard let pointer = dlsym(handle, name) else {
                throw DatabaseError(.config, "\(Self.library) has no \(name) (libpq 14 or later is needed)")
            }
            return unsafeBitCast(pointer, to: type)
        }
        connectStartParams = try symbol("PQconnectStartParams", ConnectStartParams.self)
        connectPoll = try symbol("PQconnectPoll", ConnectPoll.self)
        status = try symbol("PQstatus", Status.self)
        socket = try symbol("PQsocket", ConnInt.self)
        errorMessage = try symbol("PQerrorMessage", ConnString.self)
        finish = try symbol("PQfinish", Finish.self)
        conninfoParse = try symbol("PQconninfoParse", ConninfoParse.self)
        conninfoFree = try symbol("PQconninfoFree", ConninfoFree.self)
        freemem = try symbol("PQfreemem", Freemem.self)
        sendQueryParams = try symbol("PQsendQueryParams", SendQueryParams.self)
        getResult = try symbol("PQgetResult", GetResult.self)
        resultStatus = try symbol("PQresultStatus", ResultStatus.self)
        resultErrorField = try symbol("PQresultErrorField", ResultErrorField.self)
        resultErrorMessage = try symbol(
            "PQresultErrorMessage", (@convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?).self)
        ntuples = try symbol("PQntuples", ResultInt.self)
        nfields = try symbol("PQnfields", ResultInt.self)
        getvalue = try symbol("PQgetvalue", GetValue.self)
        getisnull = try symbol("PQgetisnull", GetIsNull.self)
        clear = try symbol("PQclear", Clear.self)
        consumeInput = try symbol("PQconsumeInput", ConnInt.self)
        isBusy = try symbol("PQisBusy", ConnInt.self)
        flush = try symbol("PQflush", ConnInt.self)
        setnonblocking = try symbol("PQsetnonblocking", SetNonblocking.self)
        enterPipelineMode = try symbol("PQenterPipelineMode", ConnInt.self)
        exitPipelineMode = try symbol("PQexitPipelineMode", ConnInt.self)
        pipelineSync = try symbol("PQpipelineSync", ConnInt.self)
        parameterStatus = try symbol("PQparameterStatus", ParameterStatus.self)
        serverVersion = try symbol("PQserverVersion", ConnInt.self)
        sslInUse = try symbol("PQsslInUse", ConnInt.self)
        sslAttribute = try symbol("PQsslAttribute", SSLAttribute.self)
        setNoticeProcessor = try symbol("PQsetNoticeProcessor", SetNoticeProcessor.self)
        version = Int(try symbol("PQlibVersion", LibVersion.self)())
    }

    /// libpq's own parse of a conninfo string: the keywords given, in order, with their
    /// values (libpq's quoting rules; an unknown keyword is libpq's error).
    public func parseConninfo(_ conninfo: String) throws(DatabaseError) -> [(String, String)] {
        var errmsg: UnsafeMutablePointer<CChar>? = nil
        guard let options = conninfoParse(conninfo, &errmsg) else {
            let why = errmsg.map { Self.oneLine(String(cString: $0)) } ?? "out of memory"
            if let errmsg { freemem(errmsg) }
            throw DatabaseError(.config, "store.postgres.conninfo: \(why)")
        }
        defer { conninfoFree(options) }
        var result: [(String, String)] = []
        var p = options
        while let keyword = p.pointee.keyword {
            if let value = p.pointee.val { result.append((String(cString: keyword), String(cString: value))) }
            p += 1
        }
        return result
    }

    /// libpq's messages end in a newline and may hold several lines: one line for syslog.
    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
            .joined(separator: "; ")
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}

/// One connection to the server, through libpq.
public final class DatabaseConnection {
    private let pq: Libpq
    private var conn: OpaquePointer?
    private let waitSeconds: Int
    private var broken = false

    init(pq: Libpq, conn: OpaquePointer, waitSeconds: Int) {
        self.pq = pq
        self.conn = conn
        self.waitSeconds = waitSeconds
    }

    deinit { close() }

    public func close() {
        if let conn { pq.finish(conn) }
        conn = nil
    }

    public var usesTLS: Bool { conn.map { pq.sslInUse($0) == 1 } ?? false }

    public func tlsAttribute(_ name: String) -> String? {
        guard let conn, let value = pq.sslAttribute(conn, name) else { return nil }
        return String(cString: value)
    }

    /// major * 10000 + minor.
    public var serverVersion: Int { conn.map { Int(pq.serverVersion($0)) } ?? 0 }

    public func parameter(_ name: String) -> String? {
        guard let conn, let value = pq.parameterStatus(conn, name) else { return nil }
        return String(cString: value)
    }

    public func execute(_ sql: String, _ params: [String?] = []) throws(DatabaseError) -> [Row] {
        try batch([(sql, params)])[0]
    }

    /// Waits until the socket is ready or the wait's bound passes.
    private func wait(read: Bool, write: Bool) throws(DatabaseError) {
        guard let conn else { throw DatabaseError(.lost, "the database connection is closed") }
        var fds = pollfd(fd: pq.socket(conn), events: Int16((read ? POLLIN : 0) | (write ? POLLOUT : 0)), revents: 0)
        let n = retryingOnInterrupt { poll(&fds, 1, Int32(waitSeconds * 1000)) }
        if n == 0 {
            broken = true
            throw DatabaseError(.lost, "the database did not answer within \(waitSeconds) s")
        }
        if n < 0 {
            broken = true
            throw DatabaseError(.lost, "poll: \(String(cString: strerror(errno)))")
        }
    }

    private func connectionMessage() -> String {
        guard let conn, let text = pq.errorMessage(conn) else { return "the connection broke" }
        let line = Libpq.oneLine(String(cString: text))
        return line.isEmpty ? "the connection broke" : line
    }

    /// The next result, waiting for it within the bound.
    private func nextResult() throws(DatabaseError) -> OpaquePointer? {
        guard let conn else { throw DatabaseError(.lost, "the database connection is closed") }
        while pq.isBusy(conn) == 1 {
            try wait(read: true, write: false)
            guard pq.consumeInput(conn) == 1 else {
                broken = true
                throw DatabaseError(.lost, "database: \(connectionMessage())")
            }
        }
        return pq.getResult(conn)
    }

    /// Runs statements in one round trip (libpq's pipeline mode, one sync after them all)
    /// and returns each one's rows. The first error stops the rest (the server skips to the
    /// sync) and is thrown; inside an explicit transaction that transaction is then aborted.
    public func batch(_ statements: [(String, [String?])]) throws(DatabaseError) -> [[Row]] {
        guard let conn, !broken else { throw DatabaseError(.lost, "the database connection is closed") }
        guard !statements.isEmpty else { return [] }
        do throws(DatabaseError) {
            guard pq.enterPipelineMode(conn) == 1 else { throw DatabaseError(.lost, "database: \(connectionMessage())") }
            for (sql, params) in statements {
                let sent = Self.withCStrings(params) { values in
                    pq.sendQueryParams(conn, sql, Int32(params.count), nil, values, nil, nil, 0)
                }
                guard sent == 1 else { throw DatabaseError(.lost, "database: \(connectionMessage())") }
            }
            guard pq.pipelineSync(conn) == 1 else { throw DatabaseError(.lost, "database: \(connectionMessage())") }
            while true {
                let rc = pq.flush(conn)
                if rc == 0 { break }
                guard rc == 1 else { throw DatabaseError(.lost, "database: \(connectionMessage())") }
                try wait(read: true, write: true)
                guard pq.consumeInput(conn) == 1 else { throw DatabaseError(.lost, "database: \(connectionMessage())") }
            }
            var results: [[Row]] = []
            var failure: DatabaseError? = nil
            for _ in statements {
                var rows: [Row] = []
                while let result = try nextResult() {
                    defer { pq.clear(result) }
                    switch pq.resultStatus(result) {
                    case PGRES_TUPLES_OK:
                        let n = pq.ntuples(result)
                        let fields = pq.nfields(result)
                        for r in 0..<n {
                            var row: Row = []
                            for f in 0..<fields {
                                if pq.getisnull(result, r, f) == 1 {
                                    row.append(nil)
                                } else if let value = pq.getvalue(result, r, f) {
                                    row.append(String(cString: value))
                                } else {
                                    row.append(nil)
                                }
                            }
                            rows.append(row)
                        }
                    case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY, PGRES_PIPELINE_ABORTED:
                        break
                    default:
                        if failure == nil { failure = error(of: result) }
                    }
                }
                results.append(rows)
            }
            // The sync point ends the pipeline.
            guard let sync = try nextResult() else { throw DatabaseError(.lost, "database: no end of the pipeline") }
            let syncStatus = pq.resultStatus(sync)
            pq.clear(sync)
            guard syncStatus == PGRES_PIPELINE_SYNC else {
                throw DatabaseError(.lost, "database: the pipeline did not end where it should")
            }
            guard pq.exitPipelineMode(conn) == 1 else { throw DatabaseError(.lost, "database: \(connectionMessage())") }
            if let failure { throw failure }
            return results
        } catch {
            if error.kind != .server { broken = true }
            // The server going away (shutdown, crash, admin) is an outage.
            if let state = error.sqlState, state.hasPrefix("08") || state.hasPrefix("57P") {
                broken = true
                throw DatabaseError(.lost, error.message, sqlState: state)
            }
            if pq.status(conn) == CONNECTION_BAD {
                broken = true
                throw DatabaseError(.lost, error.message, sqlState: error.sqlState)
            }
            throw error
        }
    }

    private func error(of result: OpaquePointer) -> DatabaseError {
        func field(_ code: UInt8) -> String? {
            pq.resultErrorField(result, Int32(code)).map { String(cString: $0) }
        }
        let state = field(UInt8(ascii: "C"))
        let primary = field(UInt8(ascii: "M")) ?? pq.resultErrorMessage(result).map { String(cString: $0) } ?? "error"
        let severity = field(UInt8(ascii: "V")) ?? "ERROR"
        // Bounded, on one line, without control characters: it goes to syslog.
        let clean = String(
            String(Libpq.oneLine(primary).unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }).prefix(400))
        let sev = String(severity.unicodeScalars.filter { ("A"..."Z").contains($0) }.prefix(16))
        let code = state.map { String($0.unicodeScalars.filter { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)) }.prefix(5)) }
        return DatabaseError(.server, "database: \(sev): \(clean)" + (code.map { " (SQLSTATE \($0))" } ?? ""), sqlState: code)
    }

    /// Runs `body` with the values as C strings (nil for SQL NULL).
    static func withCStrings<R>(_ values: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
        guard !values.isEmpty else { return body(nil) }
        var owned: [UnsafeMutablePointer<CChar>?] = values.map { $0.flatMap { strdup($0) } }
        defer { for p in owned { free(p) } }
        return owned.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) { p in
                body(UnsafePointer(p))
            }
        }
    }
}
