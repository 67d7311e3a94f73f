#if canImport(Glibc)
import Glibc
#endif
import CLibpq
import WatchwordCore

/// What a connection is made from: the config's conninfo, parsed by libpq and checked
/// against watchword's rules, split into one attempt per host.
///
/// The rules (the database decides every login, so it must prove who it is):
/// - over TCP, `sslmode` is `verify-full` (the default when absent) or `verify-ca`, and
///   `sslrootcert` names a file that is root's and not writable by others: libpq checks the
///   server's certificate against it (and, for verify-full, the name in `host`);
/// - a unix-socket host (`host=/dir`, e.g. a local PgBouncer) needs no TLS, but its
///   directory and every directory above it must be owned by root or a system account
///   (uid < 1000, e.g. postgres) and not writable by others (group-writable only for a
///   system group): whoever can make a socket there can answer for the database;
/// - `password`, `passfile` and `service` are refused (the password comes only from
///   `password_file`; no pgpass or service file is read); `gssencmode` other than disable is
///   refused (the encryption must be TLS's, with the certificate checked);
/// - `target_session_attrs` is `any`, `read-write` or `primary` (the store writes).
///
/// Nothing comes from libpq's other sources: the `PG*` variables are gone before libpq is
/// loaded (`Libpq.shared`), `passfile` is a path that cannot exist, and `sslcert`, `sslkey` and `sslcrl`
/// are always passed (a path that cannot exist when not configured), so files under
/// ~/.postgresql are never read.
public struct ConnectionPlan: Sendable {
    public struct Host: Sendable, Equatable {
        /// The `host` value (a name, an address, or a socket directory).
        public var host: String
        public var hostaddr: String
        public var port: String
        public var isSocket: Bool { hostaddr.isEmpty && host.hasPrefix("/") }
        /// What the admin reads in messages.
        public var label: String {
            let name = host.isEmpty ? hostaddr : host
            return port.isEmpty ? name : "\(name):\(port)"
        }
    }

    public var hosts: [Host]
    /// Keywords passed on every attempt, besides host, hostaddr, port and sslmode.
    public var common: [(String, String)]
    public var sslmode: String
    public var sslrootcert: String
    public var sslcert: String
    public var sslkey: String
    public var targetSessionAttrs: String
    public var connectTimeout: Int

    /// Where libpq looks for nothing: not a directory, so no file can ever be there.
    public static let nowhere = "/dev/null/watchword-none"
    static let refused: [String: String] = [
        "password": "must not hold a password: put it in store.postgres.password_file",
        "passfile": "must not name a passfile: the password comes from store.postgres.password_file",
        "service": "must not name a service: pg_service.conf is not read; give the keywords themselves",
    ]
    static let socketDefault = "/var/run/postgresql"

    /// Parses and checks `conninfo`; `connectTimeout` bounds each host's attempt.
    public static func make(
        conninfo: String, pq: Libpq, connectTimeout: Int, applicationName: String, serverOptions: String,
        checkFiles: Bool = true
    ) throws(DatabaseError) -> ConnectionPlan {
        func bad(_ why: String) -> DatabaseError { DatabaseError(.config, "store.postgres.conninfo: \(why)") }
        let given = try pq.parseConninfo(conninfo)
        var fields: [String: String] = [:]
        for (key, value) in given {
            if let why = refused[key] { throw bad(why) }
            guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw bad("'\(key)' holds a control character")
            }
            fields[key] = value
        }
        if let mode = fields["gssencmode"], mode != "disable" {
            throw bad("gssencmode=\(mode) is not allowed: the connection is encrypted by TLS (leave gssencmode out)")
        }
        // The values libpq would refuse only when connecting, refused here, so that a
        // connection that fails at once is known to be an outage (see `Libpq.attempt`).
        let choices: [String: [String]] = [
            "channel_binding": ["disable", "prefer", "require"],
            "ssl_min_protocol_version": ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
            "ssl_max_protocol_version": ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
            "sslcompression": ["0", "1"],
            "sslsni": ["0", "1"],
        ]
        for (key, allowed) in choices.sorted(by: { $0.key < $1.key }) {
            if let value = fields[key], !value.isEmpty, !allowed.contains(value) {
                throw bad("\(key)=\(value) is not one of \(allowed.joined(separator: ", "))")
            }
        }
        let target = fields["target_session_attrs"] ?? "any"
        guard ["any", "read-write", "primary"].contains(target) else {
            throw bad(
                "target_session_attrs=\(target) is not allowed: the store writes, so use read-write (or primary, or any)")
        }
        let sslmode = fields["sslmode"] ?? "verify-full"
        let sslrootcert = fields["sslrootcert"] ?? ""

        // One attempt per host, as libpq would make them (same splitting: on commas).
        func split(_ key: String) -> [String]? {
            guard let value = fields[key], !value.isEmpty else { return nil }
            return value.split(separator: ",", omittingEmptySubsequences: false).map { String($0) }
        }
        let names = split("host")
        let addrs = split("hostaddr")
        let count = names?.count ?? addrs?.count ?? 1
        if let addrs, addrs.count != count {
            throw bad("'hostaddr' gives \(addrs.count) addresses for \(count) hosts")
        }
        let ports = split("port") ?? [""]
        guard ports.count == 1 || ports.count == count else { throw bad("give one port, or one per host") }
        for p in ports where !p.isEmpty {
            guard let n = Int(p), (1...65535).contains(n) else { throw bad("port '\(p)' is not 1 to 65535") }
        }
        var hosts: [Host] = []
        for i in 0..<count {
            var host = names?[i] ?? ""
            let addr = addrs?[i] ?? ""
            if host.isEmpty && addr.isEmpty { host = socketDefault }
            guard !host.hasPrefix("@") else { throw bad("abstract unix sockets (host=\(host)) are not allowed") }
            hosts.append(Host(host: host, hostaddr: addr, port: ports.count == 1 ? ports[0] : ports[i]))
        }

        if hosts.contains(where: { !$0.isSocket }) {
            let tcp = hosts.filter { !$0.isSocket }.map(\.label).joined(separator: ", ")
            guard sslmode == "verify-full" || sslmode == "verify-ca" else {
                throw bad(
                    "sslmode=\(sslmode) is not allowed over TCP (\(tcp)): the database must prove who it is; "
                        + "use sslmode=verify-full with sslrootcert=/etc/watchword/db-ca.crt")
            }
            guard !sslrootcert.isEmpty else {
                throw bad(
                    "sslmode=\(sslmode) needs sslrootcert: the CA file that signed the database's certificate "
                        + "(root's, not writable by others)")
            }
            guard sslrootcert.hasPrefix("/") else {
                throw bad("sslrootcert=\(sslrootcert) must be an absolute path (system is not supported by this libpq)")
            }
            if checkFiles { try checkTrustedFile(sslrootcert, key: "sslrootcert", secret: false) }
        }
        if checkFiles {
            for host in hosts where host.isSocket {
                try checkSocketDirectory(host.host)
            }
            for key in ["sslcert", "sslkey", "sslcrl", "sslcrldir"] {
                if let path = fields[key], !path.isEmpty {
                    guard path.hasPrefix("/") else { throw bad("\(key)=\(path) must be an absolute path") }
                    if key != "sslcrldir" { try checkTrustedFile(path, key: key, secret: key == "sslkey") }
                }
            }
        }

        var common: [(String, String)] = []
        let own: Set<String> = [
            "host", "hostaddr", "port", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "target_session_attrs",
            "options", "connect_timeout", "application_name", "gssencmode", "client_encoding",
        ]
        for (key, value) in given where !own.contains(key) { common.append((key, value)) }
        // Not /dev/null: libpq 15 reads the passfile when no password is given (certificate
        // authentication) and warns on stderr that /dev/null is not a plain file. A path that
        // cannot exist is skipped without a word.
        common.append(("passfile", nowhere))
        common.append(("gssencmode", "disable"))
        common.append(("sslcrl", fields["sslcrl"].flatMap { $0.isEmpty ? nil : $0 } ?? nowhere))
        common.append(("client_encoding", "UTF8"))
        common.append(("application_name", fields["application_name"] ?? applicationName))
        let userOptions = fields["options"] ?? ""
        common.append(("options", userOptions.isEmpty ? serverOptions : userOptions + " " + serverOptions))
        var timeout = connectTimeout
        if let t = fields["connect_timeout"], let n = Int(t), n > 0 { timeout = min(max(n, 2), connectTimeout) }
        common.append(("connect_timeout", String(timeout)))
        return ConnectionPlan(
            hosts: hosts, common: common, sslmode: sslmode, sslrootcert: sslrootcert,
            sslcert: fields["sslcert"].flatMap { $0.isEmpty ? nil : $0 } ?? nowhere,
            sslkey: fields["sslkey"].flatMap { $0.isEmpty ? nil : $0 } ?? nowhere,
            targetSessionAttrs: target, connectTimeout: timeout)
    }

    /// A file libpq trusts (the CA, a client certificate or key, a CRL): whoever can replace
    /// it can stand in for the database.
    static func checkTrustedFile(_ path: String, key: String, secret: Bool) throws(DatabaseError) {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw DatabaseError(.config, "store.postgres.conninfo: \(key) \(path): \(String(cString: strerror(errno)))")
        }
        let mode = st.st_mode & 0o7777
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw DatabaseError(.config, "store.postgres.conninfo: \(key) \(path) is not a regular file")
        }
        if st.st_uid != 0 || mode & 0o022 != 0 || (secret && mode & 0o077 != 0) {
            throw DatabaseError(
                .config,
                "store.postgres.conninfo: \(key) \(path) is owned by uid \(st.st_uid) with mode \(String(mode, radix: 8)): "
                    + "it must be root's and not writable by others" + (secret ? " (and private: 0600)" : ""))
        }
    }

    /// A socket directory, and every directory above it: owned by root or a system account,
    /// not writable by others (a sticky directory such as /tmp excepted above the socket's),
    /// group-writable only for a system group.
    static func checkSocketDirectory(_ path: String) throws(DatabaseError) {
        var current = path
        var first = true
        while true {
            var st = stat()
            guard lstat(current, &st) == 0 else {
                throw DatabaseError(
                    .config, "store.postgres.conninfo: host=\(path): \(current): \(String(cString: strerror(errno)))")
            }
            let mode = st.st_mode & 0o7777
            let sticky = mode & 0o1000 != 0 && !first
            let problem: String?
            if st.st_mode & S_IFMT != S_IFDIR {
                problem = "is not a directory"
            } else if st.st_uid >= 1000 {
                problem = "is owned by uid \(st.st_uid), not root or a system account"
            } else if mode & 0o002 != 0 && !sticky {
                problem = "is writable by others (mode \(String(mode, radix: 8)))"
            } else if mode & 0o020 != 0 && st.st_gid >= 1000 && !sticky {
                problem = "is writable by group \(st.st_gid), not a system group"
            } else {
                problem = nil
            }
            if let problem {
                throw DatabaseError(
                    .config,
                    "store.postgres.conninfo: host=\(path): \(current) \(problem): whoever can make a socket there could answer for the database")
            }
            if current == "/" { return }
            first = false
            if let slash = current.lastIndex(of: "/") {
                current = slash == current.startIndex ? "/" : String(current[..<slash])
            } else {
                return
            }
        }
    }

    /// The keyword/value pairs for one host's attempt.
    func parameters(for host: Host, password: String?) -> [(String, String)] {
        var all = common
        all.append(("host", host.host))
        if !host.hostaddr.isEmpty { all.append(("hostaddr", host.hostaddr)) }
        if !host.port.isEmpty { all.append(("port", host.port)) }
        if host.isSocket {
            // libpq never uses TLS over a unix socket; say so rather than leave it to a default.
            all.append(("sslmode", "disable"))
        } else {
            all.append(("sslmode", sslmode))
            all.append(("sslrootcert", sslrootcert))
        }
        all.append(("sslcert", sslcert))
        all.append(("sslkey", sslkey))
        if let password { all.append(("password", password)) }
        return all
    }
}

extension Libpq {
    /// Connects to the first host of the plan that takes us, in order, as libpq would.
    ///
    /// Each host is one libpq attempt (PQconnectStartParams, expand_dbname 0, driven by
    /// PQconnectPoll), bounded by the plan's connect timeout. What happened decides what the
    /// caller may do: an attempt that never got a TCP connection up (refused, no route,
    /// timed out, name not resolved — libpq never left CONNECTION_STARTED) is an outage
    /// (`.unreachable`); an attempt that got one up and failed afterwards (certificate,
    /// authentication, protocol, or a server that never answered) is `.failed`. When every
    /// host fails, the result is `.unreachable` only if no attempt got a connection up.
    /// A server that is up but read-only (`target_session_attrs`) counts as unreachable.
    public func connect(_ plan: ConnectionPlan, password: [UInt8]?, waitSeconds: Int) throws(DatabaseError)
        -> DatabaseConnection
    {
        var outages: [String] = []
        var failures: [String] = []
        for host in plan.hosts {
            var passwordText = password.map { String(decoding: $0, as: UTF8.self) }
            let parameters = plan.parameters(for: host, password: passwordText)
            passwordText = nil
            switch attempt(parameters, plan: plan) {
            case .success(let conn):
                let connection = DatabaseConnection(pq: self, conn: conn, waitSeconds: waitSeconds)
                if let why = readOnly(connection, plan.targetSessionAttrs) {
                    connection.close()
                    outages.append("\(host.label): \(why)")
                    continue
                }
                return connection
            case .failure(let error):
                if error.kind == .unreachable {
                    outages.append("\(host.label): \(error.message)")
                } else {
                    failures.append("\(host.label): \(error.message)")
                }
            }
        }
        if !failures.isEmpty {
            throw DatabaseError(.failed, "cannot use the database: " + (failures + outages).joined(separator: "; "))
        }
        throw DatabaseError(.unreachable, "cannot connect to the database: " + outages.joined(separator: "; "))
    }

    private func readOnly(_ connection: DatabaseConnection, _ target: String) -> String? {
        guard target != "any" else { return nil }
        if connection.parameter("in_hot_standby") == "on" { return "a standby (target_session_attrs=\(target))" }
        if target == "read-write" {
            if let value = connection.parameter("default_transaction_read_only") {
                if value == "on" { return "read-only (target_session_attrs=\(target))" }
            } else if let rows = try? connection.execute("SHOW transaction_read_only"), rows.first?.first == "on" {
                return "read-only (target_session_attrs=\(target))"
            }
        }
        return nil
    }

    private func attempt(_ parameters: [(String, String)], plan: ConnectionPlan) -> Result<OpaquePointer, DatabaseError> {
        let keys = parameters.map { strdup($0.0) }
        let values = parameters.map { strdup($0.1) }
        defer {
            for p in keys { free(p) }
            for p in values {
                if let p { explicit_bzero(p, strlen(p)) }
                free(p)
            }
        }
        let conn: OpaquePointer? = (keys + [nil]).map { $0.map { UnsafePointer($0) } }.withUnsafeBufferPointer { k in
            (values + [nil]).map { $0.map { UnsafePointer($0) } }.withUnsafeBufferPointer { v in
                connectStartParams(k.baseAddress, v.baseAddress, 0)
            }
        }
        guard let conn else { return .failure(DatabaseError(.failed, "out of memory")) }
        _ = setNoticeProcessor(conn, { _, _ in }, nil)
        let deadline = monotonicSeconds() + Double(plan.connectTimeout)
        var opened = false
        var state = PGRES_POLLING_WRITING
        func message() -> String {
            let text = errorMessage(conn).map { Self.oneLine(String(cString: $0)) } ?? ""
            return text.isEmpty ? "the connection failed" : text
        }
        if status(conn) == CONNECTION_BAD {
            // Failed before a first wait: libpq's first PQconnectPoll resolves the name and
            // calls connect(); a connection that comes up at once (a unix socket) leaves it in
            // CONNECTION_MADE, never BAD. So no connection was opened: the name did not
            // resolve or connect() failed at once. (libpq's option checks would also fail
            // here; the plan has made them already: ConnectionPlan.make.)
            let why = message()
            finish(conn)
            return .failure(DatabaseError(.unreachable, why))
        }
        while true {
            let s = status(conn)
            if s != CONNECTION_STARTED && s != CONNECTION_NEEDED && s != CONNECTION_BAD { opened = true }
            if state == PGRES_POLLING_OK && s == CONNECTION_OK { return .success(conn) }
            if state == PGRES_POLLING_FAILED || s == CONNECTION_BAD {
                let why = message()
                finish(conn)
                return .failure(DatabaseError(opened ? .failed : .unreachable, why))
            }
            let remaining = deadline - monotonicSeconds()
            if remaining <= 0 {
                finish(conn)
                return .failure(
                    DatabaseError(
                        opened ? .failed : .unreachable,
                        opened
                            ? "connected, but no answer within \(plan.connectTimeout) s"
                            : "timed out after \(plan.connectTimeout) s"))
            }
            var fds = pollfd(
                fd: socket(conn), events: Int16(state == PGRES_POLLING_READING ? POLLIN : POLLOUT), revents: 0)
            let n = retryingOnInterrupt { poll(&fds, 1, Int32(min(remaining, 600) * 1000) + 1) }
            if n < 0 {
                finish(conn)
                return .failure(DatabaseError(opened ? .failed : .unreachable, "poll: \(String(cString: strerror(errno)))"))
            }
            if n == 0 { continue }
            state = connectPoll(conn)
        }
    }

}
