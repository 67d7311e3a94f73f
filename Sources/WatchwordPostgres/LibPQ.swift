#if canImport(Glibc)
import Glibc
#endif
import CLibPQ
import WatchwordCore

/// Why the database could not be used.
public struct DatabaseError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// No connection: refused, timed out, TLS or authentication failed, or it broke.
        case unreachable
        /// The server answered with an error (SQLSTATE in `sqlState`).
        case server
        /// What came back is not what this program expects.
        case protocolError
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

/// libpq from Debian's libpq5, loaded with dlopen() when the store is PostgreSQL.
///
/// Why not link it: libpq.so.5 needs 23 other libraries (OpenSSL, Kerberos, LDAP, GnuTLS,
/// ...). Linking would make the dynamic loader map them into every login of every host,
/// also those on the file store. The declarations come from the headers (the CLibPQ
/// system-library target), so the types and constants are checked.
final class LibPQ: @unchecked Sendable {
    typealias ConnectdbParams = @convention(c) (
        UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?, Int32
    ) -> OpaquePointer?
    typealias Status = @convention(c) (OpaquePointer?) -> ConnStatusType
    typealias ErrorMessage = @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
    typealias Finish = @convention(c) (OpaquePointer?) -> Void
    typealias ExecParams = @convention(c) (
        OpaquePointer?, UnsafePointer<CChar>?, Int32, UnsafePointer<Oid>?, UnsafePointer<UnsafePointer<CChar>?>?,
        UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int32
    ) -> OpaquePointer?
    typealias ResultStatus = @convention(c) (OpaquePointer?) -> ExecStatusType
    typealias ResultErrorMessage = @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
    typealias ResultErrorField = @convention(c) (OpaquePointer?, Int32) -> UnsafeMutablePointer<CChar>?
    typealias Ntuples = @convention(c) (OpaquePointer?) -> Int32
    typealias Nfields = @convention(c) (OpaquePointer?) -> Int32
    typealias GetValue = @convention(c) (OpaquePointer?, Int32, Int32) -> UnsafeMutablePointer<CChar>?
    typealias GetIsNull = @convention(c) (OpaquePointer?, Int32, Int32) -> Int32
    typealias GetLength = @convention(c) (OpaquePointer?, Int32, Int32) -> Int32
    typealias Clear = @convention(c) (OpaquePointer?) -> Void
    typealias SSLInUse = @convention(c) (OpaquePointer?) -> Int32
    typealias SSLAttribute = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> UnsafePointer<CChar>?
    typealias ServerVersion = @convention(c) (OpaquePointer?) -> Int32

    let connectdbParams: ConnectdbParams
    let status: Status
    let errorMessage: ErrorMessage
    let finish: Finish
    let execParams: ExecParams
    let resultStatus: ResultStatus
    let resultErrorMessage: ResultErrorMessage
    let resultErrorField: ResultErrorField
    let ntuples: Ntuples
    let nfields: Nfields
    let getValue: GetValue
    let getIsNull: GetIsNull
    let getLength: GetLength
    let clear: Clear
    let sslInUse: SSLInUse
    let sslAttribute: SSLAttribute
    let serverVersion: ServerVersion

    static let library = "libpq.so.5"
    nonisolated(unsafe) private static var loaded: LibPQ?

    static func shared() throws(DatabaseError) -> LibPQ {
        if let loaded { return loaded }
        let lib = try LibPQ()
        loaded = lib
        return lib
    }

    private init() throws(DatabaseError) {
        guard let handle = dlopen(Self.library, RTLD_LAZY | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw DatabaseError(.unreachable, "cannot load \(Self.library) (install libpq5): \(reason)")
        }
        func symbol<T>(_ name: String, _ type: T.Type) throws(DatabaseError) -> T {
            guard let pointer = dlsym(handle, name) else {
                throw DatabaseError(.unreachable, "\(Self.library) has no \(name)")
            }
            return unsafeBitCast(pointer, to: type)
        }
        connectdbParams = try symbol("PQconnectdbParams", ConnectdbParams.self)
        status = try symbol("PQstatus", Status.self)
        errorMessage = try symbol("PQerrorMessage", ErrorMessage.self)
        finish = try symbol("PQfinish", Finish.self)
        execParams = try symbol("PQexecParams", ExecParams.self)
        resultStatus = try symbol("PQresultStatus", ResultStatus.self)
        resultErrorMessage = try symbol("PQresultErrorMessage", ResultErrorMessage.self)
        resultErrorField = try symbol("PQresultErrorField", ResultErrorField.self)
        ntuples = try symbol("PQntuples", Ntuples.self)
        nfields = try symbol("PQnfields", Nfields.self)
        getValue = try symbol("PQgetvalue", GetValue.self)
        getIsNull = try symbol("PQgetisnull", GetIsNull.self)
        getLength = try symbol("PQgetlength", GetLength.self)
        clear = try symbol("PQclear", Clear.self)
        sslInUse = try symbol("PQsslInUse", SSLInUse.self)
        sslAttribute = try symbol("PQsslAttribute", SSLAttribute.self)
        serverVersion = try symbol("PQserverVersion", ServerVersion.self)
    }
}

/// One value of a result row, as text; nil is SQL NULL.
public typealias Row = [String?]

/// One connection to the server. Not shared between threads.
public final class DatabaseConnection {
    private let pq: LibPQ
    private var conn: OpaquePointer?

    /// Connects with libpq's keyword/value pairs; the first `dbname` may be a whole
    /// connection string (expanded by libpq). The password is passed in memory only.
    /// libpq's own defaults from the environment (PG*) and ~/.pgpass are not consulted.
    public init(parameters: [(String, String)]) throws(DatabaseError) {
        pq = try LibPQ.shared()
        // libpq fills unset parameters from PGHOST, PGSSLMODE, ... An admin's shell must not
        // change where the CLI connects or how it checks the server.
        Self.clearLibPQEnvironment()
        var pairs = parameters
        if !pairs.contains(where: { $0.0 == "passfile" }) { pairs.append(("passfile", "/dev/null")) }
        var keywords: [UnsafeMutablePointer<CChar>?] = pairs.map { strdup($0.0) }
        var values: [UnsafeMutablePointer<CChar>?] = pairs.map { strdup($0.1) }
        keywords.append(nil)
        values.append(nil)
        defer {
            for v in values {
                if let v {
                    // The password is among the values: wipe before freeing.
                    memset(v, 0, strlen(v))
                    free(v)
                }
            }
            for k in keywords { free(k) }
        }
        let connection = keywords.withUnsafeBufferPointer { k in
            values.withUnsafeBufferPointer { v in
                k.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: k.count) { kp in
                    v.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: v.count) { vp in
                        pq.connectdbParams(kp, vp, 1)
                    }
                }
            }
        }
        guard let connection else { throw DatabaseError(.unreachable, "out of memory connecting to the database") }
        guard pq.status(connection) == CONNECTION_OK else {
            let message = Self.clean(pq.errorMessage(connection))
            pq.finish(connection)
            throw DatabaseError(.unreachable, "cannot connect to the database: \(message)")
        }
        conn = connection
    }

    deinit { close() }

    public func close() {
        if let conn { pq.finish(conn) }
        conn = nil
    }

    static func clearLibPQEnvironment() {
        var names: [String] = []
        var p = environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            if text.hasPrefix("PG"), let eq = text.firstIndex(of: "=") { names.append(String(text[..<eq])) }
            p += 1
        }
        for name in names { unsetenv(name) }
    }

    /// libpq's messages end in a newline and may span lines; one line for syslog.
    static func clean(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "unknown error" }
        let text = String(decoding: UnsafeBufferPointer(start: message, count: strlen(message)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let parts = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).map { $0.trimmingSpaces }
        let joined = parts.filter { !$0.isEmpty }.joined(separator: "; ")
        return String(joined.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) }).prefix(400)
            .description
    }
    static func clean(_ message: UnsafeMutablePointer<CChar>?) -> String { clean(UnsafePointer(message)) }

    public var usesTLS: Bool { conn.map { pq.sslInUse($0) == 1 } ?? false }

    public func tlsAttribute(_ name: String) -> String? {
        guard let conn, let value = pq.sslAttribute(conn, name) else { return nil }
        return String(cString: value)
    }

    public var serverVersion: Int { conn.map { Int(pq.serverVersion($0)) } ?? 0 }

    /// Runs one statement with text parameters and returns its rows as text.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [String?] = []) throws(DatabaseError) -> [Row] {
        guard let conn else { throw DatabaseError(.unreachable, "the database connection is closed") }
        var copies: [UnsafeMutablePointer<CChar>?] = parameters.map { $0.map { strdup($0) } ?? nil }
        defer { for c in copies { free(c) } }
        let result = copies.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.map { base in
                base.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) { params in
                    pq.execParams(conn, sql, Int32(parameters.count), nil, params, nil, nil, 0)
                }
            } ?? pq.execParams(conn, sql, 0, nil, nil, nil, nil, 0)
        }
        guard let result else {
            let message = Self.clean(pq.errorMessage(conn))
            throw DatabaseError(.unreachable, "database: \(message)")
        }
        defer { pq.clear(result) }
        let status = pq.resultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else {
            let message = Self.clean(pq.resultErrorMessage(result))
            let state = pq.resultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            // A broken connection, or the server going away (admin shutdown, crash), is an outage.
            let gone = pq.status(conn) != CONNECTION_OK || state.map { $0.hasPrefix("08") || $0.hasPrefix("57P") } ?? false
            throw DatabaseError(gone ? .unreachable : .server, "database: \(message)", sqlState: state)
        }
        var rows: [Row] = []
        let count = pq.ntuples(result)
        let fields = pq.nfields(result)
        rows.reserveCapacity(Int(count))
        for r in 0..<count {
            var row: Row = []
            for f in 0..<fields {
                if pq.getIsNull(result, r, f) == 1 {
                    row.append(nil)
                } else if let value = pq.getValue(result, r, f) {
                    let length = Int(pq.getLength(result, r, f))
                    let bytes = UnsafeRawBufferPointer(start: value, count: length)
                    guard let text = String(validating: bytes, as: UTF8.self) else {
                        throw DatabaseError(.protocolError, "database: a value is not UTF-8")
                    }
                    row.append(text)
                } else {
                    row.append(nil)
                }
            }
            rows.append(row)
        }
        return rows
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
