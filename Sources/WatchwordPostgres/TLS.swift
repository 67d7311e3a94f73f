#if canImport(Glibc)
import Glibc
#endif

/// OpenSSL's libssl, loaded with dlopen() when a connection to the database uses TLS.
///
/// Only the calls a TLS client needs, looked up by name; every pointer is opaque. libssl
/// needs nothing but libcrypto.so.3, which the CLI already links, so loading it costs far
/// less than libpq's 23 libraries. The helper links libcrypto.a instead (Package.swift), so
/// there it loads libcrypto.so.3 too; TLS objects never leave that copy (only libssl's
/// functions are called on them, and the static copy only hashes bytes).
final class LibSSL: @unchecked Sendable {
    typealias Ptr = OpaquePointer
    let clientMethod: @convention(c) () -> Ptr?
    let ctxNew: @convention(c) (Ptr?) -> Ptr?
    let ctxFree: @convention(c) (Ptr?) -> Void
    let ctxSetVerify: @convention(c) (Ptr?, Int32, UnsafeRawPointer?) -> Void
    let ctxLoadVerifyLocations: @convention(c) (Ptr?, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Int32
    let ctxSetDefaultVerifyPaths: @convention(c) (Ptr?) -> Int32
    let ctxUseCertificateChainFile: @convention(c) (Ptr?, UnsafePointer<CChar>?) -> Int32
    let ctxUsePrivateKeyFile: @convention(c) (Ptr?, UnsafePointer<CChar>?, Int32) -> Int32
    let ctxCtrl: @convention(c) (Ptr?, Int32, Int, UnsafeMutableRawPointer?) -> Int
    let new: @convention(c) (Ptr?) -> Ptr?
    let free: @convention(c) (Ptr?) -> Void
    let setFd: @convention(c) (Ptr?, Int32) -> Int32
    let ctrl: @convention(c) (Ptr?, Int32, Int, UnsafeMutableRawPointer?) -> Int
    let get0Param: @convention(c) (Ptr?) -> Ptr?
    let paramSet1Host: @convention(c) (Ptr?, UnsafePointer<CChar>?, Int) -> Int32
    let paramSet1IPAsc: @convention(c) (Ptr?, UnsafePointer<CChar>?) -> Int32
    let connect: @convention(c) (Ptr?) -> Int32
    let read: @convention(c) (Ptr?, UnsafeMutableRawPointer?, Int32) -> Int32
    let write: @convention(c) (Ptr?, UnsafeRawPointer?, Int32) -> Int32
    let getError: @convention(c) (Ptr?, Int32) -> Int32
    let getVerifyResult: @convention(c) (Ptr?) -> Int
    let verifyCertErrorString: @convention(c) (Int) -> UnsafePointer<CChar>?
    let errGetError: @convention(c) () -> UInt
    let errErrorStringN: @convention(c) (UInt, UnsafeMutablePointer<CChar>?, Int) -> Void
    let getVersion: @convention(c) (Ptr?) -> UnsafePointer<CChar>?
    let getCurrentCipher: @convention(c) (Ptr?) -> Ptr?
    let cipherGetName: @convention(c) (Ptr?) -> UnsafePointer<CChar>?
    let shutdown: @convention(c) (Ptr?) -> Int32

    static let library = "libssl.so.3"
    nonisolated(unsafe) private static var loaded: LibSSL?

    static func shared() throws(DatabaseError) -> LibSSL {
        if let loaded { return loaded }
        let lib = try LibSSL()
        loaded = lib
        return lib
    }

    private init() throws(DatabaseError) {
        guard let handle = dlopen(Self.library, RTLD_LAZY | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw DatabaseError(.unreachable, "cannot load \(Self.library) (install libssl3): \(reason)")
        }
        func symbol<T>(_ name: String, _ type: T.Type) throws(DatabaseError) -> T {
            guard let pointer = dlsym(handle, name) else {
                throw DatabaseError(.unreachable, "\(Self.library) has no \(name)")
            }
            return unsafeBitCast(pointer, to: type)
        }
        clientMethod = try symbol("TLS_client_method", (@convention(c) () -> Ptr?).self)
        ctxNew = try symbol("SSL_CTX_new", (@convention(c) (Ptr?) -> Ptr?).self)
        ctxFree = try symbol("SSL_CTX_free", (@convention(c) (Ptr?) -> Void).self)
        ctxSetVerify = try symbol("SSL_CTX_set_verify", (@convention(c) (Ptr?, Int32, UnsafeRawPointer?) -> Void).self)
        ctxLoadVerifyLocations = try symbol(
            "SSL_CTX_load_verify_locations",
            (@convention(c) (Ptr?, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Int32).self)
        ctxSetDefaultVerifyPaths = try symbol("SSL_CTX_set_default_verify_paths", (@convention(c) (Ptr?) -> Int32).self)
        ctxUseCertificateChainFile = try symbol(
            "SSL_CTX_use_certificate_chain_file", (@convention(c) (Ptr?, UnsafePointer<CChar>?) -> Int32).self)
        ctxUsePrivateKeyFile = try symbol(
            "SSL_CTX_use_PrivateKey_file", (@convention(c) (Ptr?, UnsafePointer<CChar>?, Int32) -> Int32).self)
        ctxCtrl = try symbol("SSL_CTX_ctrl", (@convention(c) (Ptr?, Int32, Int, UnsafeMutableRawPointer?) -> Int).self)
        new = try symbol("SSL_new", (@convention(c) (Ptr?) -> Ptr?).self)
        free = try symbol("SSL_free", (@convention(c) (Ptr?) -> Void).self)
        setFd = try symbol("SSL_set_fd", (@convention(c) (Ptr?, Int32) -> Int32).self)
        ctrl = try symbol("SSL_ctrl", (@convention(c) (Ptr?, Int32, Int, UnsafeMutableRawPointer?) -> Int).self)
        get0Param = try symbol("SSL_get0_param", (@convention(c) (Ptr?) -> Ptr?).self)
        paramSet1Host = try symbol(
            "X509_VERIFY_PARAM_set1_host", (@convention(c) (Ptr?, UnsafePointer<CChar>?, Int) -> Int32).self)
        paramSet1IPAsc = try symbol(
            "X509_VERIFY_PARAM_set1_ip_asc", (@convention(c) (Ptr?, UnsafePointer<CChar>?) -> Int32).self)
        connect = try symbol("SSL_connect", (@convention(c) (Ptr?) -> Int32).self)
        read = try symbol("SSL_read", (@convention(c) (Ptr?, UnsafeMutableRawPointer?, Int32) -> Int32).self)
        write = try symbol("SSL_write", (@convention(c) (Ptr?, UnsafeRawPointer?, Int32) -> Int32).self)
        getError = try symbol("SSL_get_error", (@convention(c) (Ptr?, Int32) -> Int32).self)
        getVerifyResult = try symbol("SSL_get_verify_result", (@convention(c) (Ptr?) -> Int).self)
        verifyCertErrorString = try symbol(
            "X509_verify_cert_error_string", (@convention(c) (Int) -> UnsafePointer<CChar>?).self)
        errGetError = try symbol("ERR_get_error", (@convention(c) () -> UInt).self)
        errErrorStringN = try symbol(
            "ERR_error_string_n", (@convention(c) (UInt, UnsafeMutablePointer<CChar>?, Int) -> Void).self)
        getVersion = try symbol("SSL_get_version", (@convention(c) (Ptr?) -> UnsafePointer<CChar>?).self)
        getCurrentCipher = try symbol("SSL_get_current_cipher", (@convention(c) (Ptr?) -> Ptr?).self)
        cipherGetName = try symbol("SSL_CIPHER_get_name", (@convention(c) (Ptr?) -> UnsafePointer<CChar>?).self)
        shutdown = try symbol("SSL_shutdown", (@convention(c) (Ptr?) -> Int32).self)
    }

    /// The oldest queued OpenSSL error, as text.
    func lastError() -> String {
        let code = errGetError()
        guard code != 0 else { return "unknown TLS error" }
        var buffer = [CChar](repeating: 0, count: 256)
        errErrorStringN(code, &buffer, buffer.count)
        while errGetError() != 0 {}
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// How the server's certificate is checked (libpq's `sslmode`).
enum SSLMode: String {
    case disable, allow, prefer, require
    case verifyCA = "verify-ca"
    case verifyFull = "verify-full"

    var tries: Bool { self != .disable }
    var requires: Bool { self == .require || self == .verifyCA || self == .verifyFull }
    var verifies: Bool { self == .verifyCA || self == .verifyFull }
}

/// One TLS session over a connected socket, client side.
final class TLSSession {
    private let ssl: LibSSL
    private var ctx: OpaquePointer?
    private var session: OpaquePointer?

    /// Handshakes on `fd` and checks the server's certificate as `mode` says: against
    /// `rootCert` (a PEM file, or the system's store when empty or "system") and, with
    /// verify-full, against `host` (a name, or an IP address).
    init(
        fd: Int32, host: String, mode: SSLMode, rootCert: String, clientCert: String, clientKey: String
    ) throws(DatabaseError) {
        ssl = try LibSSL.shared()
        guard let method = ssl.clientMethod(), let ctx = ssl.ctxNew(method) else {
            throw DatabaseError(.unreachable, "TLS: \(ssl.lastError())")
        }
        self.ctx = ctx
        // TLS 1.2 or later (SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION).
        _ = ssl.ctxCtrl(ctx, 123, 0x0303, nil)
        if mode.verifies {
            let loaded: Bool
            if rootCert.isEmpty || rootCert == "system" {
                loaded = ssl.ctxSetDefaultVerifyPaths(ctx) == 1
            } else {
                loaded = ssl.ctxLoadVerifyLocations(ctx, rootCert, nil) == 1
            }
            guard loaded else {
                throw DatabaseError(.unreachable, "TLS: cannot load the root certificates \(rootCert): \(ssl.lastError())")
            }
            ssl.ctxSetVerify(ctx, 1, nil)  // SSL_VERIFY_PEER
        } else {
            ssl.ctxSetVerify(ctx, 0, nil)
        }
        if !clientCert.isEmpty {
            guard ssl.ctxUseCertificateChainFile(ctx, clientCert) == 1,
                ssl.ctxUsePrivateKeyFile(ctx, clientKey.isEmpty ? clientCert : clientKey, 1) == 1
            else {
                throw DatabaseError(.unreachable, "TLS: cannot load the client certificate: \(ssl.lastError())")
            }
        }
        guard let session = ssl.new(ctx) else { throw DatabaseError(.unreachable, "TLS: \(ssl.lastError())") }
        self.session = session
        guard ssl.setFd(session, fd) == 1 else { throw DatabaseError(.unreachable, "TLS: \(ssl.lastError())") }
        let isAddress = Self.isIPAddress(host)
        if !isAddress && !host.hasPrefix("/") {
            // SNI (SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name).
            _ = host.withCString { ssl.ctrl(session, 55, 0, UnsafeMutableRawPointer(mutating: $0)) }
        }
        if mode == .verifyFull {
            let param = ssl.get0Param(session)
            let ok = isAddress ? ssl.paramSet1IPAsc(param, host) == 1 : ssl.paramSet1Host(param, host, 0) == 1
            guard ok else { throw DatabaseError(.unreachable, "TLS: cannot check the server name \(host)") }
        }
        let result = ssl.connect(session)
        guard result == 1 else {
            let verify = ssl.getVerifyResult(session)
            if verify != 0 {
                let why = ssl.verifyCertErrorString(verify).map { String(cString: $0) } ?? "error \(verify)"
                _ = ssl.lastError()
                throw DatabaseError(.unreachable, "TLS: the server's certificate was refused: \(why)")
            }
            let code = ssl.getError(session, result)
            let why = code == 5 && errno == EAGAIN ? "timed out" : ssl.lastError()
            throw DatabaseError(.unreachable, "TLS handshake failed: \(why)")
        }
    }

    deinit {
        if let session {
            _ = ssl.shutdown(session)
            ssl.free(session)
        }
        if let ctx { ssl.ctxFree(ctx) }
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    var version: String? { ssl.getVersion(session).map { String(cString: $0) } }
    var cipher: String? { ssl.getCurrentCipher(session).flatMap { ssl.cipherGetName($0) }.map { String(cString: $0) } }

    func write(_ bytes: [UInt8]) throws(DatabaseError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                ssl.write(session, raw.baseAddress! + offset, Int32(min(bytes.count - offset, Int(Int32.max))))
            }
            guard n > 0 else { throw DatabaseError(.unreachable, "database: TLS write failed: \(ssl.lastError())") }
            offset += Int(n)
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DatabaseError) -> Int {
        let n = ssl.read(session, buffer.baseAddress, Int32(buffer.count))
        if n > 0 { return Int(n) }
        let code = ssl.getError(session, n)
        if code == 6 { return 0 }  // SSL_ERROR_ZERO_RETURN: closed
        if code == 5 && (errno == EAGAIN || errno == EWOULDBLOCK) {
            throw DatabaseError(.unreachable, "database: no answer in time")
        }
        throw DatabaseError(.unreachable, "database: TLS read failed: \(ssl.lastError())")
    }
}
