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
guard arguments.count == 2, arguments[1] == "--pam" else {
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

/// The name the system's user database gives for `name`, when it knows the user.
///
/// A directory service that matches names without regard to case (sssd, winbind) would
/// log "ALICE" in as alice; looking state up under the canonical name keeps that from
/// reaching an unenrolled "ALICE" record (and a `nullok` pass) instead of alice's.
func canonicalUserName(_ name: String) -> String {
    guard let entry = getpwnam(name), let canonical = entry.pointee.pw_name else { return name }
    let bytes = Array(UnsafeBufferPointer(start: canonical, count: strlen(canonical))).map { UInt8(bitPattern: $0) }
    return String(validating: bytes, as: UTF8.self) ?? name
}

var channel = ModuleChannel(fd: 0)
let header: Header
do {
    header = try channel.readHeader()
} catch {
    refuse("bad header from the module: \(error)")
}

var conversation = AuditingConversation(SocketConversation(channel: channel, debug: header.debug))
let outcome: LoginOutcome
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
var auditUser = shownUser
var stateRoot: SecureDirectory? = nil
var auditStore: (any StateStore)? = nil
do {
    let config = try Config.load(path: header.config, required: header.configRequired)
    auditUser = logField(canonicalUserName(shownUser), limit: Int.max)
    let request = LoginRequest(
        user: auditUser, service: shownService, rhost: shownRhost, tty: header.tty, debug: header.debug,
        enrollAtLogin: header.enrollAtLogin, accountExists: getpwnam(header.user) != nil)
    // Drawn only when a user enrolls at login; no escape sequences (see terminalLines).
    let qrCode = { (text: String) -> [String]? in QRMatrix.encode(text)?.terminalLines(colours: false) }
    // The provider is made only if this login sends or checks a text.
    let gateway = { () throws(SMSError) -> SMSGateway in try makeSMSGateway(config.sms) }
    let exemptions = try Exemptions(groups: header.exemptGroups, from: header.exemptFrom)
    let exemptReason = exemptions.reason(rhost: header.rhost) { group in
        let member = systemUserIsMember(auditUser, of: group)
        if member == nil { conversation.log(.warning, "exempt_group=\(logField(group, limit: 255)): no such group") }
        return member
    }
    if let exemptReason {
        // Not asked, whatever the state says; the state is opened for the audit line only.
        conversation.log(.info, "user \(auditUser)\(shownRhost.isEmpty ? "" : " from \(shownRhost)"): \(exemptReason)")
        outcome = .exempt
        switch config.store.backend {
        case .files:
            let store = try? FileStore(path: header.stateDir, create: false)
            stateRoot = store?.root
            auditStore = store
        case .postgres:
            let db = PostgresStore(settings: DatabaseSettings(
                config.store, timeoutSeconds: header.timeout, applicationName: "watchword-helper"))
            do {
                try db.open()
                auditStore = db
            } catch {
                conversation.log(.warning, "audit line of an exempt login not sent to the database: \(error)")
            }
        }
    } else {
        switch config.store.backend {
        case .files:
            let store = try FileStore(path: header.stateDir, create: false, createSubdirectories: header.enrollAtLogin)
            stateRoot = store.root
            auditStore = store
            var flow = LoginFlow(config: config, store: store, smsGateway: gateway)
            flow.qrCode = qrCode
            outcome = flow.run(request, conversation: &conversation)
        case .postgres:
            var fleet = FleetLogin(config: config, stateDir: header.stateDir, timeout: header.timeout)
            fleet.qrCode = qrCode
            outcome = fleet.run(request, conversation: &conversation, smsGateway: gateway)
            stateRoot = fleet.localRoot
            auditStore = fleet.auditStore
        }
    }
} catch {
    conversation.log(.err, "denied: \(error)")
    conversation.error("Two-factor authentication is unavailable; contact your administrator.")
    outcome = .unavailable
}
// The audit line; failing to write it changes no outcome (it is logged to syslog instead).
let entry = AuditEntry(
    time: unixTimeNow(), event: "login", user: auditUser, service: shownService, rhost: shownRhost,
    method: outcome == .success ? conversation.method : nil, outcome: outcome.rawValue, reason: conversation.reason,
    host: auditHostName())
do {
    // Through the store the login used (the state directory it already opened and checked,
    // or the database); walk the path again only when no store could be opened (then that
    // walk fails the same way and is logged).
    if let auditStore {
        try auditStore.appendAudit(entry)
    } else if let stateRoot {
        try AuditLog.append(entry, in: stateRoot)
    } else {
        try AuditLog.append(entry, stateDirectory: header.stateDir)
    }
} catch {
    conversation.base.log(.err, "audit log not written: \(error)")
}
conversation.base.channel.send("result \(header.nonce) \(outcome.rawValue)")
exit(outcome.exitStatus)
