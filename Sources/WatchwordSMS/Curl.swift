#if canImport(Glibc)
import Glibc
#endif
import CCurl
import WatchwordCore

/// One HTTPS POST to a provider.
struct HTTPRequest {
    var url: String
    var body: [UInt8]
    var contentType: String
    /// HTTP Basic credentials; handed to libcurl in memory, never in argv or the environment.
    var user: String
    var password: String
    var timeoutSeconds: Int
}

struct HTTPResponse {
    var status: Int
    var body: [UInt8]
}

/// Whatever carries requests to the providers: libcurl in the programs, anything in tests.
protocol HTTPTransport {
    func post(_ request: HTTPRequest) throws(SMSError) -> HTTPResponse
}

/// libcurl from Debian's libcurl4, loaded with dlopen() on the first request.
///
/// Why not link it: watchword-helper runs on every login, and most logins are TOTP.
/// Linking libcurl makes the dynamic loader map it and its dependencies (OpenSSL's
/// libssl, nghttp2, libidn2, librtmp, libssh2, LDAP, Kerberos, ...) into every one of those
/// logins, and curl_global_init() sets up TLS. Loading it here, only when a text is sent or
/// a code checked, keeps the TOTP path as fast as it was. The declarations still come from
/// the headers (the CCurl system-library target), so types and constants are checked.
final class Curl: HTTPTransport {
    private typealias EasyInit = @convention(c) () -> UnsafeMutableRawPointer?
    private typealias EasyCleanup = @convention(c) (UnsafeMutableRawPointer?) -> Void
    private typealias EasyPerform = @convention(c) (UnsafeMutableRawPointer?) -> CURLcode
    private typealias EasyStrerror = @convention(c) (CURLcode) -> UnsafePointer<CChar>?
    private typealias GlobalInit = @convention(c) (Int) -> CURLcode
    private typealias SlistAppend =
        @convention(c) (UnsafeMutablePointer<curl_slist>?, UnsafePointer<CChar>?) -> UnsafeMutablePointer<curl_slist>?
    private typealias SlistFreeAll = @convention(c) (UnsafeMutablePointer<curl_slist>?) -> Void

    private let easyInit: EasyInit
    private let easyCleanup: EasyCleanup
    private let easyPerform: EasyPerform
    private let easyStrerror: EasyStrerror
    private let slistAppend: SlistAppend
    private let slistFreeAll: SlistFreeAll
    private let setopt: UnsafeMutableRawPointer
    private let getinfo: UnsafeMutableRawPointer

    static let library = "libcurl.so.4"
    /// Answers larger than this are not what the APIs send; the transfer is cut off.
    static let maxResponse = 64 * 1024

    nonisolated(unsafe) private static var loaded: Curl?

    /// The process's libcurl, loaded and initialised on first use.
    static func shared() throws(SMSError) -> Curl {
        if let loaded { return loaded }
        let curl = try Curl()
        loaded = curl
        return curl
    }

    private init() throws(SMSError) {
        // RTLD_LAZY: libcurl and its 31 libraries bind a function when it is first called,
        // not all of them up front (about 1 ms of every text sent). Hardening is the same
        // either way: libraries linked with -z now are bound at load regardless.
        guard let handle = dlopen(Self.library, RTLD_LAZY | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw SMSError(.unavailable, "cannot load \(Self.library), which texts through an HTTPS provider need (apt install libcurl4; the watchword package only recommends it): \(reason)")
        }
        func symbol(_ name: String) throws(SMSError) -> UnsafeMutableRawPointer {
            guard let pointer = dlsym(handle, name) else {
                throw SMSError(.unavailable, "\(Self.library) has no \(name)")
            }
            return pointer
        }
        easyInit = unsafeBitCast(try symbol("curl_easy_init"), to: EasyInit.self)
        easyCleanup = unsafeBitCast(try symbol("curl_easy_cleanup"), to: EasyCleanup.self)
        easyPerform = unsafeBitCast(try symbol("curl_easy_perform"), to: EasyPerform.self)
        easyStrerror = unsafeBitCast(try symbol("curl_easy_strerror"), to: EasyStrerror.self)
        slistAppend = unsafeBitCast(try symbol("curl_slist_append"), to: SlistAppend.self)
        slistFreeAll = unsafeBitCast(try symbol("curl_slist_free_all"), to: SlistFreeAll.self)
        setopt = try symbol("curl_easy_setopt")
        getinfo = try symbol("curl_easy_getinfo")
        let globalInit = unsafeBitCast(try symbol("curl_global_init"), to: GlobalInit.self)
        let code = globalInit(Int(CURL_GLOBAL_ALL))
        guard code == CURLE_OK else {
            throw SMSError(.unavailable, "curl_global_init failed: \(message(code))")
        }
    }

    private func message(_ code: CURLcode) -> String {
        easyStrerror(code).map { String(cString: $0) } ?? "error \(code.rawValue)"
    }

    /// Collects the answer, refusing more than `maxResponse` bytes.
    private final class Sink {
        var body: [UInt8] = []
        var overflow = false
    }

    /// POSTs `request`; the status and body of any HTTP answer, or why there was none.
    ///
    /// TLS certificates and host names are checked (libcurl's defaults, set explicitly),
    /// only the scheme of `url` is allowed (https, or http for a loopback `api_base`),
    /// redirects are not followed, no proxy from the environment is used, and the whole
    /// exchange — DNS, connect, TLS, answer — is bounded by `timeoutSeconds`.
    func post(_ request: HTTPRequest) throws(SMSError) -> HTTPResponse {
        guard let easy = easyInit() else { throw SMSError(.unavailable, "curl_easy_init failed") }
        defer { easyCleanup(easy) }
        var headers: UnsafeMutablePointer<curl_slist>? = nil
        defer { slistFreeAll(headers) }
        for line in ["Content-Type: \(request.contentType)", "Accept: application/json", "Expect:"] {
            guard let next = slistAppend(headers, line) else { throw SMSError(.unavailable, "out of memory") }
            headers = next
        }
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        defer { errorBuffer.deallocate() }
        let sink = Sink()
        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()
        let scheme = request.url.lowercased().hasPrefix("https://") ? "https" : "http"
        let timeout = request.timeoutSeconds * 1000

        var failed: (CURLoption, CURLcode)? = nil
        func set(_ option: CURLoption, _ value: Int) {
            let code = ww_curl_setopt_long(setopt, easy, option, value)
            if code != CURLE_OK && failed == nil { failed = (option, code) }
        }
        func set(_ option: CURLoption, _ value: String) {
            let code = value.withCString { ww_curl_setopt_pointer(setopt, easy, option, $0) }
            if code != CURLE_OK && failed == nil { failed = (option, code) }
        }
        func set(_ option: CURLoption, pointer: UnsafeRawPointer?) {
            let code = ww_curl_setopt_pointer(setopt, easy, option, pointer)
            if code != CURLE_OK && failed == nil { failed = (option, code) }
        }
        // String options are copied by libcurl, so the temporaries may go.
        set(CURLOPT_URL, request.url)
        set(CURLOPT_PROTOCOLS_STR, scheme)
        set(CURLOPT_FOLLOWLOCATION, 0)
        set(CURLOPT_PROXY, "")
        set(CURLOPT_SSL_VERIFYPEER, 1)
        set(CURLOPT_SSL_VERIFYHOST, 2)
        // No SIGALRM for DNS timeouts (the threaded resolver does without).
        set(CURLOPT_NOSIGNAL, 1)
        set(CURLOPT_TIMEOUT_MS, timeout)
        set(CURLOPT_CONNECTTIMEOUT_MS, timeout)
        set(CURLOPT_USERAGENT, "watchword")
        set(CURLOPT_HTTPAUTH, 1)  // CURLAUTH_BASIC
        set(CURLOPT_USERNAME, request.user)
        set(CURLOPT_PASSWORD, request.password)
        set(CURLOPT_HTTPHEADER, pointer: UnsafeRawPointer(headers))
        set(CURLOPT_POSTFIELDSIZE, request.body.count)
        request.body.withUnsafeBytes { raw in
            // An empty body still needs a valid pointer for COPYPOSTFIELDS.
            set(CURLOPT_COPYPOSTFIELDS, pointer: raw.baseAddress ?? UnsafeRawPointer(errorBuffer))
        }
        set(CURLOPT_ERRORBUFFER, pointer: UnsafeRawPointer(errorBuffer))
        set(CURLOPT_WRITEDATA, pointer: UnsafeRawPointer(sinkPointer))
        let write: curl_write_callback = { data, size, count, context in
            guard let data, let context else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(context).takeUnretainedValue()
            let n = size * count
            guard sink.body.count + n <= Curl.maxResponse else {
                sink.overflow = true
                return 0  // makes libcurl stop with CURLE_WRITE_ERROR
            }
            data.withMemoryRebound(to: UInt8.self, capacity: n) { sink.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: n)) }
            return n
        }
        let code = ww_curl_setopt_write_function(setopt, easy, write)
        if code != CURLE_OK && failed == nil { failed = (CURLOPT_WRITEFUNCTION, code) }
        if let (option, code) = failed {
            throw SMSError(.unavailable, "libcurl refused option \(option.rawValue): \(message(code))")
        }

        let result = withExtendedLifetime(sink) { easyPerform(easy) }
        guard result == CURLE_OK else {
            if sink.overflow { throw SMSError(.refused, "answer larger than \(Self.maxResponse) bytes") }
            let text = String(cString: errorBuffer)
            let detail = text.isEmpty ? message(result) : text
            let kind: SMSError.Kind = result == CURLE_OPERATION_TIMEDOUT ? .timeout : .unreachable
            let what = kind == .timeout ? "no answer within \(request.timeoutSeconds) seconds" : "cannot reach the provider"
            throw SMSError(kind, "\(what): \(detail)")
        }
        var status = 0
        _ = ww_curl_getinfo_long(getinfo, easy, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, body: sink.body)
    }
}
