// watchword-helper: the verification side of pam_watchword.so.
//
// Run only by the PAM module, as root, with a socket on fds 0 and 1 (see
// docs/helper-protocol.md). It reads who is logging in, asks for a code through the
// module, checks it against the state store and reports the outcome both on the socket
// and as its exit status.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCore
import WatchwordCrypto
import WatchwordSMS
import WatchwordPostgres
import WatchwordQR

/// The protocol exit status for "cannot run": the module maps it to PAM_AUTHINFO_UNAVAIL.
let unavailable = LoginOutcome.unavailable.exitStatus

func refuse(_ message: String) -> Never {
    let text = "watchword-helper: \(message)\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(unavailable)
}

let arguments = CommandLine.arguments
// `--pam` from the module; `--pam --header-fd=3` from the static helper handing a login over.
let handedOver = arguments.count == 3 && arguments[1] == "--pam" && arguments[2] == handoffArgument
guard (arguments.count == 2 && arguments[1] == "--pam") || handedOver else {
    refuse("this program is run by pam_watchword.so, not by hand; use 'watchword' to manage users")
}
guard runningAsRoot() else { refuse("must run as root") }
var in0 = stat()
var out1 = stat()
guard fstat(0, &in0) == 0, fstat(1, &out1) == 0, (in0.st_mode & S_IFMT) == S_IFSOCK,
    in0.st_ino == out1.st_ino, in0.st_dev == out1.st_dev
else {
    refuse("fds 0 and 1 must be the socket from pam_watchword.so")
}
signal(SIGPIPE, SIG_IGN)
guard initializeCryptoForShortLivedProcess() else { refuse("cannot initialise OpenSSL") }

/// The name the system's user database gives for `name`, and whether it knows the user at
/// all: one lookup (an NSS lookup costs a login about 0.6 ms).
///
/// A directory service that matches names without regard to case (sssd, winbind) would
/// log "ALICE" in as alice; looking state up under the canonical name keeps that from
/// reaching an unenrolled "ALICE" record (and a `nullok` pass) instead of alice's.
func lookUpAccount(_ name: String) -> (canonical: String, exists: Bool) {
    guard let entry = getpwnam(name) else { return (name, false) }
    guard let canonical = entry.pointee.pw_name else { return (name, true) }
    let bytes = Array(UnsafeBufferPointer(start: canonical, count: strlen(canonical))).map { UInt8(bitPattern: $0) }
    return (String(validating: bytes, as: UTF8.self) ?? name, true)
}

var channel = ModuleChannel(fd: 0)
if handedOver {
    guard let bytes = readHandedOverHeader() else { refuse("no header on fd 3 from the static helper") }
    channel = ModuleChannel(fd: 0, preloaded: bytes)
}
let header: Header
do {
    header = try channel.readHeader()
} catch {
    refuse("bad header from the module: \(error)")
}
// The module writes nothing more until it is asked; a handed-over header is whole.
guard channel.isDrained else { refuse("bytes after the header") }

var conversation = SocketConversation(channel: channel, debug: header.debug)
/// `text` as one log field: printable ASCII other than space, anything else replaced by
/// "?", at most `limit` characters (as the module writes its result line). The user name,
/// service and remote host are chosen by whoever logs in; this keeps them from forging a
/// field ("x outcome=success") or a line in syslog and the audit trail.
func logField(_ text: String, limit: Int) -> String {
    String(text.unicodeScalars.prefix(limit).map { $0.value > 0x20 && $0.value < 0x7F ? Character($0) : "?" })
}

// Anything outside printable ASCII makes a name invalid anyway; replacing it keeps
// the name invalid and keeps forged fields and stray bytes out of the log.
let shownUser = logField(header.user, limit: Int.max)
// Used for the log and the audit trail only (as the module's own line shows them).
let shownService = logField(header.service, limit: 63)
let shownRhost = logField(header.rhost, limit: 255)

/// Where the login's audit line goes: the store the login used (the state directory it
/// opened and checked, or the database), else the state directory's path, walked again
/// (and failing the same way, which is logged).
enum AuditTarget {
    case store(any StateStore)
    case directory(SecureDirectory)
    case path(String)

    func append(_ entry: AuditEntry) throws {
        switch self {
        case .store(let store): try store.appendAudit(entry)
        case .directory(let root): try AuditLog.append(entry, in: root)
        case .path(let path): try AuditLog.append(entry, stateDirectory: path)
        }
    }
}

/// The config, or why it did not load (which denies the login, after the hand-over check).
/// Not `Result<Config, any Error>`: that generic type's first use costs every login 0.1 M
/// instructions of run-time checks of its requirements (BENCHMARKS.md).
enum LoadedConfig {
    case loaded(Config)
    case failed(any Error)

    init(path: String, required: Bool) {
        do { self = .loaded(try Config.load(path: path, required: required)) } catch { self = .failed(error) }
    }

    var value: Config? {
        if case .loaded(let config) = self { return config }
        return nil
    }

    func get() throws -> Config {
        switch self {
        case .loaded(let config): return config
        case .failed(let error): throw error
        }
    }
}

/// The login: the config, then an exemption, the file store or the fleet.
func login(
    _ request: inout LoginRequest, config loaded: LoadedConfig,
    alreadyRead: ReadRecord?, opened: FileStore?, conversation: inout SocketConversation
) -> (LoginResult, AuditTarget) {
    var audit = AuditTarget.path(header.stateDir)
    do {
        let config = try loaded.get()
        switch header.account {
        case .exists(let canonical):
            request.user = logField(canonical, limit: Int.max)
            request.accountExists = true
        case .missing: request.accountExists = false
        case nil:
            let account = lookUpAccount(shownUser)
            request.user = logField(account.canonical, limit: Int.max)
            request.accountExists = account.exists
        }
        let user = request.user
        // Drawn only when a user enrolls at login; no escape sequences (see terminalLines).
        // The static helper draws none (it hands such logins over; see Handoff.swift).
        let qrCode = { (text: String) -> [String]? in
            isStaticHelper ? nil : QRMatrix.encode(text)?.terminalLines(colours: false)
        }
        // The provider is made only if this login sends or checks a text; never in the
        // static helper, which cannot load libcurl and hands SMS logins over.
        let gateway = { () throws(SMSError) -> SMSGateway in
            if isStaticHelper { throw SMSError(.unavailable, "SMS in the static helper (the record changed while it ran)") }
            return try makeSMSGateway(config.sms)
        }
        let exemptions = try Exemptions(groups: header.exemptGroups, from: header.exemptFrom)
        let exemptReason = exemptions.reason(rhost: header.rhost) { group in
            let member = systemUserIsMember(user, of: group)
            if member == nil { conversation.log(.warning, "exempt_group=\(logField(group, limit: 255)): no such group") }
            return member
        }
        if let exemptReason {
            // Not asked, whatever the state says; the store (the one the hand-over check
            // opened, if it did) serves the audit line only.
            switch config.store.backend {
            case .files:
                if let store = opened ?? (try? FileStore(path: header.stateDir, create: false)) { audit = .store(store) }
            case .postgres:
                let db = PostgresStore(settings: DatabaseSettings(
                    config.store, timeoutSeconds: header.timeout, applicationName: "watchword-helper"))
                do {
                    try db.open()
                    audit = .store(db)
                } catch {
                    conversation.log(.warning, "audit line of an exempt login not sent to the database: \(error)")
                }
            }
            return (conversation.end(.exempt, .info, request.who, exemptReason), audit)
        }
        switch config.store.backend {
        case .files:
            let store = try opened ?? FileStore(path: header.stateDir, create: false, createSubdirectories: header.enrollAtLogin)
            audit = .store(store)
            var flow = LoginFlow(config: config, store: store, smsGateway: gateway)
            flow.qrCode = qrCode
            flow.alreadyRead = alreadyRead
            return (flow.run(request, conversation: &conversation), audit)
        case .postgres:
            var fleet = FleetLogin(config: config, stateDir: header.stateDir, timeout: header.timeout)
            fleet.qrCode = qrCode
            let result = fleet.run(request, conversation: &conversation, smsGateway: gateway)
            if let store = fleet.auditStore {
                audit = .store(store)
            } else if let root = fleet.localRoot {
                audit = .directory(root)
            }
            return (result, audit)
        }
    } catch {
        conversation.error(LoginFlow.unavailableMessage)
        return (conversation.end(.unavailable, .err, request.who, "denied: \(error)"), audit)
    }
}

/// Where every login ends: its audit line (failing to write it changes no outcome; it is
/// logged instead), the result line, and the exit status the module checks against it.
func finish(_ result: LoginResult, request: LoginRequest, audit: AuditTarget, conversation: inout SocketConversation) -> Never {
    let entry = AuditEntry(
        time: unixTimeNow(), event: "login", user: request.user, service: shownService, rhost: shownRhost,
        method: result.outcome == .success ? result.method?.rawValue : nil, outcome: result.outcome.rawValue,
        reason: result.reason, host: auditHostName())
    do {
        try audit.append(entry)
    } catch {
        conversation.log(.err, "audit log not written: \(error)")
    }
    conversation.channel.send("result \(header.nonce) \(result.outcome.rawValue)")
    conversation.channel.flush()
    exit(result.outcome.exitStatus)
}

var request = LoginRequest(user: shownUser, rhost: shownRhost, enrollAtLogin: header.enrollAtLogin)
let config = LoadedConfig(path: header.config, required: header.configRequired)
let check = isStaticHelper ? handoffCheck(header, config: config.value) : HandoffCheck()
if let reason = check.reason {
    conversation.log(.debug, "\(request.who): handed to \(dynamicHelperName): \(reason)")
    conversation.channel.flush()
    let problem = handOff(header)
    conversation.error(LoginFlow.unavailableMessage)
    let result = conversation.end(.unavailable, .err, request.who, "denied: \(problem)")
    finish(result, request: request, audit: .path(header.stateDir), conversation: &conversation)
}
let (result, audit) = login(
    &request, config: config, alreadyRead: check.read, opened: check.store, conversation: &conversation)
finish(result, request: request, audit: audit, conversation: &conversation)
