#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore
import WatchwordCrypto

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

/// One value of a result row, as text; nil is SQL NULL.
public typealias Row = [String?]

/// Where SCRAM's salted password is kept between logins (see `DatabaseConnection`).
public protocol SaltedPasswordCache: AnyObject {
    func lookup(salt: [UInt8], iterations: Int, password: [UInt8]) -> [UInt8]?
    func store(salt: [UInt8], iterations: Int, password: [UInt8], salted: [UInt8])
}

/// What a connection needs, parsed from the conninfo string.
public struct ConnectionOptions: Sendable {
    public var hosts: [String] = ["/var/run/postgresql"]
    public var ports: [Int] = [5432]
    public var dbname = ""
    public var user = ""
    var sslmode = SSLMode.prefer
    public var sslrootcert = ""
    public var sslcert = ""
    public var sslkey = ""
    public var applicationName = "watchword"
    public var connectTimeout = 10
    /// Sent as the startup packet's `options` (server settings for the session).
    public var serverOptions = ""
    /// Bound for each wait on the socket after connecting.
    public var readTimeout = 10

    public var sslmodeName: String { sslmode.rawValue }

    /// The keywords this client knows; anything else in a conninfo is an error, not ignored.
    static let keywords: Set<String> = [
        "host", "hostaddr", "port", "dbname", "user", "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout",
        "application_name", "options",
    ]

    /// Parses libpq's `keyword=value` form (values may be single-quoted, with `\'` and `\\`).
    public init(conninfo: String) throws(DatabaseError) {
        var fields: [String: String] = [:]
        var chars = Array(conninfo.unicodeScalars)[...]
        func skipSpace() { while let c = chars.first, c == " " || c == "\t" || c == "\n" || c == "\r" { chars = chars.dropFirst() } }
        func bad(_ why: String) -> DatabaseError { DatabaseError(.protocolError, "store.postgres.conninfo: \(why)") }
        while true {
            skipSpace()
            guard !chars.isEmpty else { break }
            var key = ""
            while let c = chars.first, c != "=", c != " ", c != "\t" {
                key.unicodeScalars.append(c)
                chars = chars.dropFirst()
            }
            skipSpace()
            guard chars.first == "=" else { throw bad("'\(key)' has no '=' (use keyword=value pairs)") }
            chars = chars.dropFirst()
            skipSpace()
            var value = ""
            if chars.first == "'" {
                chars = chars.dropFirst()
                var closed = false
                while let c = chars.first {
                    chars = chars.dropFirst()
                    if c == "\\", let next = chars.first {
                        value.unicodeScalars.append(next)
                        chars = chars.dropFirst()
                    } else if c == "'" {
                        closed = true
                        break
                    } else {
                        value.unicodeScalars.append(c)
                    }
                }
                guard closed else { throw bad("unterminated quoted value of '\(key)'") }
            } else {
                while let c = chars.first, c != " ", c != "\t", c != "\n", c != "\r" {
                    if c == "\\", chars.count > 1 {
                        chars = chars.dropFirst()
                    }
                    value.unicodeScalars.append(chars.first!)
                    chars = chars.dropFirst()
                }
            }
            guard Self.keywords.contains(key) else {
                if key == "password" { throw bad("must not hold a password: put it in store.postgres.password_file") }
                throw bad("unknown or unsupported keyword '\(key)'")
            }
            guard fields[key] == nil else { throw bad("'\(key)' given twice") }
            guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw bad("'\(key)' holds a control character")
            }
            fields[key] = value
        }
        if let host = fields["hostaddr"] ?? fields["host"], !host.isEmpty {
            hosts = host.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard !hosts.contains(where: \.isEmpty) else { throw bad("an empty host in 'host'") }
        }
        if let port = fields["port"], !port.isEmpty {
            ports = []
            for p in port.split(separator: ",", omittingEmptySubsequences: false) {
                guard let n = Int(p), (1...65535).contains(n) else { throw bad("port '\(p)' is not 1 to 65535") }
                ports.append(n)
            }
            guard ports.count == 1 || ports.count == hosts.count else { throw bad("give one port, or one per host") }
        }
        guard let user = fields["user"], !user.isEmpty else { throw bad("'user' is required") }
        self.user = user
        dbname = fields["dbname"].flatMap { $0.isEmpty ? nil : $0 } ?? user
        if let mode = fields["sslmode"] {
            guard let parsed = SSLMode(rawValue: mode) else { throw bad("sslmode '\(mode)' is not one of disable, allow, prefer, require, verify-ca, verify-full") }
            sslmode = parsed
        }
        sslrootcert = fields["sslrootcert"] ?? ""
        sslcert = fields["sslcert"] ?? ""
        sslkey = fields["sslkey"] ?? ""
        if let name = fields["application_name"] { applicationName = name }
        if let t = fields["connect_timeout"] {
            guard let n = Int(t), n >= 0 else { throw bad("connect_timeout '\(t)' is not a number of seconds") }
            if n > 0 { connectTimeout = max(n, 2) }
        }
        serverOptions = fields["options"] ?? ""
    }

    public func port(for index: Int) -> Int { ports.count == 1 ? ports[0] : ports[index] }
}

/// One connection to the server, speaking the PostgreSQL frontend/backend protocol (v3)
/// itself: startup, TLS through libssl, SCRAM-SHA-256 (RFC 5802/7677, with the server's
/// signature checked), and the extended query protocol with text parameters.
///
/// Why not libpq: Debian's libpq.so.5 drags 23 libraries (Kerberos, LDAP, GnuTLS, ...) into
/// the helper; loading them took 6–7 ms per login here, and SCRAM's 4096 PBKDF2 rounds
/// another 2–4 ms, against a budget of 2 ms over the file store. This client needs only
/// libssl (for TLS) and caches SCRAM's salted password (root-only, like the password file).
public final class DatabaseConnection {
    private var fd: Int32 = -1
    private var tls: TLSSession?
    private var buffer: [UInt8] = []
    private var start = 0
    public private(set) var parameters: [String: String] = [:]
    private var broken = false

    public init(
        options: ConnectionOptions, password: [UInt8]?, cache: SaltedPasswordCache? = nil
    ) throws(DatabaseError) {
        var failures: [String] = []
        for (index, host) in options.hosts.enumerated() {
            do throws(DatabaseError) {
                try open(host: host, port: options.port(for: index), options: options, password: password, cache: cache)
                return
            } catch {
                closeSocket()
                if error.kind == .server && error.sqlState != nil {
                    // The server refused us (authentication, no such database): another
                    // host would be no different and the message is what the admin needs.
                    throw DatabaseError(.unreachable, "cannot connect to the database: \(error.message)", sqlState: error.sqlState)
                }
                failures.append("\(host): \(error.message)")
            }
        }
        throw DatabaseError(.unreachable, "cannot connect to the database: " + failures.joined(separator: "; "))
    }

    deinit { close() }

    /// Says goodbye (Terminate) and closes.
    public func close() {
        if fd >= 0 && !broken { try? send([UInt8(ascii: "X"), 0, 0, 0, 4]) }
        closeSocket()
    }

    private func closeSocket() {
        tls = nil
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
        buffer = []
        start = 0
    }

    public var usesTLS: Bool { tls != nil }

    public func tlsAttribute(_ name: String) -> String? {
        switch name {
        case "protocol": tls?.version
        case "cipher": tls?.cipher
        default: nil
        }
    }

    /// major * 10000 + minor, from the server's `server_version`.
    public var serverVersion: Int {
        guard let text = parameters["server_version"] else { return 0 }
        let digits = text.prefix { $0.isNumber || $0 == "." }.split(separator: ".")
        let major = digits.first.flatMap { Int($0) } ?? 0
        let minor = digits.count > 1 ? Int(digits[1]) ?? 0 : 0
        return major * 10000 + minor
    }

    // MARK: Connecting

    private func open(
        host: String, port: Int, options: ConnectionOptions, password: [UInt8]?, cache: SaltedPasswordCache?
    ) throws(DatabaseError) {
        let deadline = Self.now() + Double(options.connectTimeout)
        try connectSocket(host: host, port: port, deadline: deadline)
        try setTimeout(max(deadline - Self.now(), 0.05))
        let local = host.hasPrefix("/")
        if options.sslmode.tries && !local {
            // SSLRequest: length 8, code 80877103.
            try sendRaw([0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F])
            let answer = try readRaw(1)
            // Nothing may follow the one-byte answer before the handshake: bytes already
            // read here would later be taken as if they had come through TLS, and someone
            // on the path could inject them (the flaw libpq fixed as CVE-2021-23222).
            guard buffer.count == start else {
                throw DatabaseError(.unreachable, "the server sent data after its answer to the TLS request; refused")
            }
            if answer == [UInt8(ascii: "S")] {
                tls = try TLSSession(
                    fd: fd, host: host, mode: options.sslmode, rootCert: options.sslrootcert, clientCert: options.sslcert,
                    clientKey: options.sslkey)
            } else if answer == [UInt8(ascii: "N")] {
                guard !options.sslmode.requires else {
                    throw DatabaseError(.unreachable, "the server does not offer TLS and sslmode is \(options.sslmode.rawValue)")
                }
            } else {
                throw DatabaseError(.protocolError, "unexpected answer to the TLS request")
            }
        }
        var body: [UInt8] = []
        Self.int32(196608, into: &body)  // protocol 3.0
        for (key, value) in [
            ("user", options.user), ("database", options.dbname), ("application_name", options.applicationName),
            ("client_encoding", "UTF8"), ("options", options.serverOptions),
        ] where !value.isEmpty {
            body += Array(key.utf8) + [0] + Array(value.utf8) + [0]
        }
        body.append(0)
        var packet: [UInt8] = []
        Self.int32(Int32(body.count + 4), into: &packet)
        try send(packet + body)
        try authenticate(options: options, password: password, secure: tls != nil || local, cache: cache)
        // ParameterStatus, BackendKeyData, then ReadyForQuery.
        while true {
            let (type, payload) = try readMessage()
            switch type {
            case UInt8(ascii: "S"):
                let parts = payload.split(separator: 0, omittingEmptySubsequences: false)
                if parts.count >= 2 {
                    parameters[String(decoding: parts[0], as: UTF8.self)] = String(decoding: parts[1], as: UTF8.self)
                }
            case UInt8(ascii: "K"), UInt8(ascii: "N"): continue
            case UInt8(ascii: "Z"):
                try setTimeout(Double(options.readTimeout))
                return
            case UInt8(ascii: "E"): throw Self.serverError(payload)
            default: throw DatabaseError(.protocolError, "unexpected message '\(Character(Unicode.Scalar(type)))' while connecting")
            }
        }
    }

    private func connectSocket(host: String, port: Int, deadline: Double) throws(DatabaseError) {
        if host.hasPrefix("/") {
            let path = host + "/.s.PGSQL.\(port)"
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
                throw DatabaseError(.unreachable, "socket path too long: \(path)")
            }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw DatabaseError(.unreachable, "socket: \(Self.errorText(errno))") }
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            try finishConnect(rc, deadline: deadline, what: path)
            return
        }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let list else {
            throw DatabaseError(.unreachable, "cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var last = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let current = entry {
            entry = current.pointee.ai_next
            fd = socket(
                current.pointee.ai_family,
                Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { continue }
            let rc = Glibc.connect(fd, current.pointee.ai_addr, current.pointee.ai_addrlen)
            do throws(DatabaseError) {
                try finishConnect(rc, deadline: deadline, what: "\(host) port \(port)")
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
                return
            } catch {
                last = error.message
                Glibc.close(fd)
                fd = -1
            }
        }
        throw DatabaseError(.unreachable, last)
    }

    /// Waits for a non-blocking connect, then makes the socket blocking (reads and writes
    /// are bounded by SO_RCVTIMEO/SO_SNDTIMEO instead).
    private func finishConnect(_ rc: Int32, deadline: Double, what: String) throws(DatabaseError) {
        if rc != 0 {
            guard errno == EINPROGRESS || errno == EAGAIN else {
                throw DatabaseError(.unreachable, "connect to \(what): \(Self.errorText(errno))")
            }
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            while true {
                let left = Int32(max((deadline - Self.now()) * 1000, 0))
                let n = poll(&poller, 1, left)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw DatabaseError(.unreachable, "connect to \(what): timed out") }
                break
            }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0 else { throw DatabaseError(.unreachable, "connect to \(what): \(Self.errorText(error))") }
        }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
    }

    private func setTimeout(_ seconds: Double) throws(DatabaseError) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        if tv.tv_sec == 0 && tv.tv_usec == 0 { tv.tv_usec = 1000 }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    // MARK: Authentication

    private func authenticate(
        options: ConnectionOptions, password: [UInt8]?, secure: Bool, cache: SaltedPasswordCache?
    ) throws(DatabaseError) {
        var scram: SCRAM? = nil
        while true {
            let (type, payload) = try readMessage()
            if type == UInt8(ascii: "E") { throw Self.serverError(payload) }
            guard type == UInt8(ascii: "R"), payload.count >= 4 else {
                throw DatabaseError(.protocolError, "unexpected message during authentication")
            }
            let code = Self.readInt32(payload, 0)
            let data = Array(payload[4...])
            switch code {
            case 0:
                guard scram == nil || scram!.serverVerified else {
                    throw DatabaseError(.unreachable, "the server ended SCRAM without proving it knows the password")
                }
                return
            case 3:
                // Cleartext password: only where nobody can listen.
                guard secure else {
                    throw DatabaseError(.unreachable, "the server asks for the password in the clear over an unencrypted connection; refused")
                }
                guard let password else { throw DatabaseError(.unreachable, "the server asks for a password and none is configured") }
                try sendMessage(UInt8(ascii: "p"), password + [0])
            case 10:
                let mechanisms = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                guard mechanisms.contains("SCRAM-SHA-256") else {
                    throw DatabaseError(.unreachable, "the server offers no SCRAM-SHA-256 (\(mechanisms.joined(separator: ", ")))")
                }
                guard let password else { throw DatabaseError(.unreachable, "the server asks for a password and none is configured") }
                var s = try SCRAM(password: password, cache: cache)
                let first = s.clientFirst()
                var body = Array("SCRAM-SHA-256".utf8) + [0]
                Self.int32(Int32(first.count), into: &body)
                body += first
                try sendMessage(UInt8(ascii: "p"), body)
                scram = s
            case 11:
                guard var s = scram else { throw DatabaseError(.protocolError, "SCRAM continue without a start") }
                let final = try s.clientFinal(serverFirst: data)
                scram = s
                try sendMessage(UInt8(ascii: "p"), final)
            case 12:
                guard var s = scram else { throw DatabaseError(.protocolError, "SCRAM final without a start") }
                try s.verifyServerFinal(data)
                scram = s
            case 5:
                throw DatabaseError(.unreachable, "the server asks for md5 authentication; use scram-sha-256 (pg_hba.conf)")
            default:
                throw DatabaseError(.unreachable, "the server asks for an authentication method this client does not speak (\(code))")
            }
        }
    }

    // MARK: Queries

    /// Runs one statement with text parameters and returns its rows as text.
    @discardableResult
    public func execute(_ sql: String, _ params: [String?] = []) throws(DatabaseError) -> [Row] {
        try batch([(sql, params)])[0]
    }

    /// Runs statements in one round trip (one Sync after them all) and returns each one's
    /// rows. The first error stops the rest (the server skips to the Sync) and is thrown;
    /// inside an explicit transaction that transaction is then aborted.
    public func batch(_ statements: [(String, [String?])]) throws(DatabaseError) -> [[Row]] {
        guard fd >= 0, !broken else { throw DatabaseError(.unreachable, "the database connection is closed") }
        var out: [UInt8] = []
        for (sql, params) in statements {
            // Parse (unnamed statement), Bind (text in, text out), Execute.
            var parse = [UInt8(0)] + Array(sql.utf8) + [0]
            Self.int16(0, into: &parse)
            Self.message(UInt8(ascii: "P"), parse, into: &out)
            var bind: [UInt8] = [0, 0]
            Self.int16(0, into: &bind)
            Self.int16(Int16(params.count), into: &bind)
            for p in params {
                if let p {
                    let bytes = Array(p.utf8)
                    Self.int32(Int32(bytes.count), into: &bind)
                    bind += bytes
                } else {
                    Self.int32(-1, into: &bind)
                }
            }
            Self.int16(0, into: &bind)
            Self.message(UInt8(ascii: "B"), bind, into: &out)
            Self.message(UInt8(ascii: "E"), [0, 0, 0, 0, 0], into: &out)
        }
        Self.message(UInt8(ascii: "S"), [], into: &out)
        do throws(DatabaseError) {
            try send(out)
            var results: [[Row]] = []
            var rows: [Row] = []
            var failure: DatabaseError? = nil
            while true {
                let (type, payload) = try readMessage()
                switch type {
                case UInt8(ascii: "D"):
                    rows.append(try Self.dataRow(payload))
                case UInt8(ascii: "C"), UInt8(ascii: "I"):
                    results.append(rows)
                    rows = []
                case UInt8(ascii: "E"):
                    failure = Self.serverError(payload)
                case UInt8(ascii: "Z"):
                    if let failure { throw failure }
                    guard results.count == statements.count else {
                        throw DatabaseError(.protocolError, "\(results.count) results for \(statements.count) statements")
                    }
                    return results
                case UInt8(ascii: "1"), UInt8(ascii: "2"), UInt8(ascii: "n"), UInt8(ascii: "N"), UInt8(ascii: "S"),
                    UInt8(ascii: "s"):
                    continue
                default:
                    throw DatabaseError(.protocolError, "unexpected message '\(Character(Unicode.Scalar(type)))'")
                }
            }
        } catch {
            if error.kind != .server { broken = true }
            // The server going away (shutdown, crash, admin) is an outage.
            if let state = error.sqlState, state.hasPrefix("08") || state.hasPrefix("57P") {
                broken = true
                throw DatabaseError(.unreachable, error.message, sqlState: state)
            }
            throw error
        }
    }

    /// A DataRow message's values (public for the fuzz target).
    public static func dataRow(_ payload: ArraySlice<UInt8>) throws(DatabaseError) -> Row {
        guard payload.count >= 2 else { throw DatabaseError(.protocolError, "short data row") }
        let base = payload.startIndex
        let count = Int(UInt16(payload[base]) << 8 | UInt16(payload[base + 1]))
        var i = base + 2
        var row: Row = []
        for _ in 0..<count {
            guard i + 4 <= payload.endIndex else { throw DatabaseError(.protocolError, "short data row") }
            let length = Int(readInt32(payload, i - base))
            i += 4
            if length < 0 {
                row.append(nil)
                continue
            }
            guard i + length <= payload.endIndex else { throw DatabaseError(.protocolError, "short data row") }
            guard let text = String(validating: payload[i..<(i + length)], as: UTF8.self) else {
                throw DatabaseError(.protocolError, "a value is not UTF-8")
            }
            row.append(text)
            i += length
        }
        return row
    }

    // MARK: Messages

    static let maxMessage = 16 << 20

    private func readMessage() throws(DatabaseError) -> (UInt8, ArraySlice<UInt8>) {
        let head = try readRaw(5)
        let length = Int(Self.readInt32(head[...], 1))
        guard length >= 4, length <= Self.maxMessage else {
            throw DatabaseError(.protocolError, "a message of \(length) bytes from the server")
        }
        let body = try readRaw(length - 4)
        return (head[0], body[...])
    }

    private func readRaw(_ count: Int) throws(DatabaseError) -> [UInt8] {
        while buffer.count - start < count {
            if start > 0 && start == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                start = 0
            }
            var chunk = [UInt8](repeating: 0, count: max(16384, count))
            let n: Int
            if let tls {
                var failure: DatabaseError? = nil
                n = chunk.withUnsafeMutableBytes { raw in
                    do throws(DatabaseError) {
                        return try tls.read(into: raw)
                    } catch {
                        failure = error
                        return -1
                    }
                }
                if let failure { throw failure }
            } else {
                n = chunk.withUnsafeMutableBytes { raw in Glibc.read(fd, raw.baseAddress, raw.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    let e = errno
                    throw DatabaseError(
                        .unreachable, e == EAGAIN || e == EWOULDBLOCK ? "database: no answer in time" : "database: read: \(Self.errorText(e))")
                }
            }
            guard n > 0 else { throw DatabaseError(.unreachable, "database: the server closed the connection") }
            buffer += chunk[0..<n]
        }
        let out = Array(buffer[start..<(start + count)])
        start += count
        return out
    }

    private func sendMessage(_ type: UInt8, _ body: [UInt8]) throws(DatabaseError) {
        var out: [UInt8] = []
        Self.message(type, body, into: &out)
        try send(out)
    }

    private func send(_ bytes: [UInt8]) throws(DatabaseError) {
        if let tls { return try tls.write(bytes) }
        try sendRaw(bytes)
    }

    private func sendRaw(_ bytes: [UInt8]) throws(DatabaseError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw DatabaseError(.unreachable, "database: write: \(Self.errorText(errno))")
            }
            offset += n
        }
    }

    static func message(_ type: UInt8, _ body: [UInt8], into out: inout [UInt8]) {
        out.append(type)
        int32(Int32(body.count + 4), into: &out)
        out += body
    }

    static func int32(_ value: Int32, into out: inout [UInt8]) {
        let v = UInt32(bitPattern: value)
        out += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    static func int16(_ value: Int16, into out: inout [UInt8]) {
        let v = UInt16(bitPattern: value)
        out += [UInt8(v >> 8), UInt8(v & 0xFF)]
    }

    static func readInt32(_ bytes: ArraySlice<UInt8>, _ offset: Int) -> Int32 {
        let i = bytes.startIndex + offset
        let v = UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
        return Int32(bitPattern: v)
    }

    static func readInt32(_ bytes: [UInt8], _ offset: Int) -> Int32 { readInt32(bytes[...], offset) }

    /// An ErrorResponse: severity, SQLSTATE and message, on one line.
    public static func serverError(_ payload: ArraySlice<UInt8>) -> DatabaseError {
        var fields: [UInt8: String] = [:]
        var i = payload.startIndex
        while i < payload.endIndex, payload[i] != 0 {
            let code = payload[i]
            i += 1
            let end = payload[i...].firstIndex(of: 0) ?? payload.endIndex
            fields[code] = String(decoding: payload[i..<end], as: UTF8.self)
            i = min(end + 1, payload.endIndex)
        }
        // Every field the server sent is cleaned: the text goes to syslog as one line.
        func clean(_ text: String, _ limit: Int) -> String {
            String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) }.prefix(limit))
        }
        let message = clean(fields[UInt8(ascii: "M")] ?? "unknown error", 400)
        let severity = clean(fields[UInt8(ascii: "V")] ?? fields[UInt8(ascii: "S")] ?? "ERROR", 16)
        let state = fields[UInt8(ascii: "C")].map { clean($0, 5) }
        return DatabaseError(.server, "database: \(severity): \(message)", sqlState: state)
    }

    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// SCRAM-SHA-256 without channel binding (RFC 5802, RFC 7677), as PostgreSQL speaks it.
struct SCRAM {
    let password: [UInt8]
    let nonce: String
    let cache: SaltedPasswordCache?
    /// Empty: PostgreSQL takes the user from the startup packet.
    var userName = ""
    var clientFirstBare = ""
    var authMessage: [UInt8] = []
    var serverKey: [UInt8] = []
    var serverVerified = false

    init(password: [UInt8], cache: SaltedPasswordCache?) throws(DatabaseError) {
        self.password = password
        self.cache = cache
        guard let random = try? SecureRandom.kernelBytes(count: 18) else {
            throw DatabaseError(.unreachable, "the kernel's random number generator failed")
        }
        nonce = Base64.encode(random)
    }

    /// With a given nonce (the RFC 7677 test vector).
    init(password: [UInt8], nonce: String, userName: String) {
        self.password = password
        self.nonce = nonce
        self.userName = userName
        cache = nil
    }

    mutating func clientFirst() -> [UInt8] {
        // The user name is the startup packet's; PostgreSQL ignores this one.
        clientFirstBare = "n=\(userName),r=\(nonce)"
        return Array(("n,," + clientFirstBare).utf8)
    }

    mutating func clientFinal(serverFirst data: [UInt8]) throws(DatabaseError) -> [UInt8] {
        let text = String(decoding: data, as: UTF8.self)
        var fields: [Character: String] = [:]
        for part in text.split(separator: ",") {
            guard part.count >= 2, part.dropFirst().first == "=" else { continue }
            fields[part.first!] = String(part.dropFirst(2))
        }
        guard let serverNonce = fields["r"], serverNonce.hasPrefix(nonce), serverNonce.count > nonce.count,
            let saltText = fields["s"], let salt = Base64.decode(saltText), !salt.isEmpty,
            let iterText = fields["i"], let iterations = Int(iterText), (1...10_000_000).contains(iterations)
        else { throw DatabaseError(.unreachable, "SCRAM: the server's first message is malformed") }
        var salted: [UInt8]
        if let cached = cache?.lookup(salt: salt, iterations: iterations, password: password) {
            salted = cached
        } else {
            salted = PBKDF2<SHA256>.derive(password: password, salt: salt, iterations: iterations, count: 32)
            cache?.store(salt: salt, iterations: iterations, password: password, salted: salted)
        }
        defer { secureZero(&salted) }
        let saltedKey = SymmetricKey(bytes: salted)
        var clientKey = HMAC<SHA256>.authenticationCode(for: Array("Client Key".utf8), using: saltedKey)
        defer { secureZero(&clientKey) }
        serverKey = HMAC<SHA256>.authenticationCode(for: Array("Server Key".utf8), using: saltedKey)
        let storedKey = SHA256.hash(clientKey)
        let withoutProof = "c=biws,r=\(serverNonce)"
        authMessage = Array("\(clientFirstBare),\(text),\(withoutProof)".utf8)
        let signature = HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(bytes: storedKey))
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        return Array("\(withoutProof),p=\(Base64.encode(proof))".utf8)
    }

    mutating func verifyServerFinal(_ data: [UInt8]) throws(DatabaseError) {
        let text = String(decoding: data, as: UTF8.self)
        guard text.hasPrefix("v="), let signature = Base64.decode(String(text.dropFirst(2).prefix { $0 != "," })) else {
            throw DatabaseError(.unreachable, "SCRAM: the server did not prove it knows the password")
        }
        let expected = HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(bytes: serverKey))
        guard constantTimeEquals(signature, expected) else {
            throw DatabaseError(.unreachable, "SCRAM: the server's signature is wrong (not the real server?)")
        }
        serverVerified = true
    }
}
