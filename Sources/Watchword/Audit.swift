import ArgumentParser
import WatchwordCore
import WatchwordPostgres

#if canImport(Glibc)
import Glibc
#endif

/// A command that changes state: it is written to the audit trail (`DIR/audit.log`) and to
/// syslog authpriv, as `ok` or `error`, whether it succeeds or fails.
protocol AuditedCommand {
    var auditEvent: String { get }
    var auditUser: String? { get }
    var auditService: String? { get }
    var auditStateDirectory: String { get }
    var global: GlobalOptions { get }
    /// Why, when the command succeeded (never a code or a secret).
    var auditNote: String? { get }
    /// Users the command changed, each given an `ok` line of its own (import).
    var auditChangedUsers: [String] { get }
}

extension AuditedCommand {
    var auditStateDirectory: String { global.stateDirectory }
    var auditService: String? { nil }
    var auditNote: String? { nil }
    var auditChangedUsers: [String] { [] }
}

/// The users an import has written so far, for its audit lines (one per user, also when a
/// later write fails).
nonisolated(unsafe) var importedUsersForAudit: [String] = []

extension Enroll: AuditedCommand {
    var auditEvent: String { "enroll" }
    var auditUser: String? { user.name }
}

extension Remove: AuditedCommand {
    var auditEvent: String { "remove" }
    var auditUser: String? { user.name }
}

extension Unlock: AuditedCommand {
    var auditEvent: String { "unlock" }
    var auditUser: String? { user.name }
}

extension RecoveryCodesCommand: AuditedCommand {
    var auditEvent: String { "recovery-codes" }
    var auditUser: String? { user.name }
}

extension SMSTest: AuditedCommand {
    var auditEvent: String { "sms-test" }
    var auditUser: String? { user.name }
}

extension Export: AuditedCommand {
    var auditEvent: String { "export" }
    var auditUser: String? { user.name }
}

extension ImportGoogleAuthenticator: AuditedCommand {
    var auditEvent: String { "import" }
    var auditUser: String? { user }
    var auditNote: String? { "google-authenticator" + (options.dryRun ? ", dry run" : "") }
    var auditChangedUsers: [String] { importedUsersForAudit }
}

extension ImportOath: AuditedCommand {
    var auditEvent: String { "import" }
    var auditUser: String? { nil }
    var auditNote: String? { "oath" + (options.dryRun ? ", dry run" : "") }
    var auditChangedUsers: [String] { importedUsersForAudit }
}

extension Enable: AuditedCommand {
    var auditEvent: String { "enable" }
    var auditUser: String? { nil }
    var auditService: String? { service.rawValue }
    var auditStateDirectory: String { root.stateDirectory(global) }
}

extension Disable: AuditedCommand {
    var auditEvent: String { "disable" }
    var auditUser: String? { nil }
    var auditService: String? { service.rawValue }
    var auditStateDirectory: String { root.stateDirectory(global) }
}

extension RootOptions {
    /// The state directory as seen from here: with --root, inside that tree.
    func stateDirectory(_ global: GlobalOptions) -> String {
        var base = root
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        return base == "/" ? global.stateDirectory : base + global.stateDirectory
    }
}

/// Writes the audit line for an admin command and sends it to syslog authpriv. A failure to
/// write the file is reported on stderr and in syslog; it changes no exit status.
///
/// Each line names the actor (`AuditActor`: who ran the command) and this host. A command
/// that changed several users (import) writes an `ok` line for each of them, and then,
/// if it failed or changed nobody, the command's own line.
func auditAdminAction(_ command: any AuditedCommand, error: (any Error)?) {
    guard runningAsRoot() else { return }
    var reason = command.auditNote
    if let error {
        let text: String
        switch error {
        case let e as CLIError: text = e.description
        case let e as StoreError: text = e.description
        case let e as ConfigError: text = e.description
        case let e as NoStateDirectory: text = e.description
        case is ValidationError: text = "invalid arguments"
        default: text = "failed"
        }
        reason = String(text.prefix { $0 != "\n" }.prefix(300))
    }
    let actor = AuditActor.current()
    let host = auditHostName()
    func entry(_ user: String?, ok: Bool, _ reason: String?) -> AuditEntry {
        AuditEntry(
            time: unixTimeNow(), event: command.auditEvent, user: user, service: command.auditService, rhost: nil,
            method: nil, outcome: ok ? "ok" : "error", reason: reason, host: host, actor: actor.name,
            actorSource: actor.source)
    }
    var entries = command.auditChangedUsers.map { entry($0, ok: true, command.auditNote) }
    if error != nil || entries.isEmpty { entries.append(entry(command.auditUser, ok: error == nil, reason)) }
    for entry in entries { writeSyslog(entry.outcome == "ok" ? LOG_INFO : LOG_NOTICE, "audit: \(entry.jsonLine)") }
    do {
        // Fleet mode: the shared trail in the database (unless the command worked on a
        // system tree under --root).
        if command.auditStateDirectory == command.global.stateDirectory, let store = try? command.global.auditStore() {
            for entry in entries { try store.appendAudit(entry) }
        } else {
            for entry in entries { try AuditLog.append(entry, stateDirectory: command.auditStateDirectory) }
        }
    } catch FileTrustError.system(let e) where e.errno == ENOENT {
        // No state directory (nothing enrolled yet and the command made none): syslog only.
    } catch {
        writeSyslog(LOG_ERR, "audit log not written: \(error)")
        writeStandardError("watchword: warning: audit log not written: \(error)\n")
    }
}

nonisolated(unsafe) private var syslogOpened = false

func writeSyslog(_ priority: Int32, _ message: String) {
    if !syslogOpened {
        // openlog keeps the pointer: it must live as long as the process.
        openlog(strdup("watchword"), LOG_PID, LOG_AUTHPRIV)
        syslogOpened = true
    }
    message.withCString { text in
        withVaList([text]) { vsyslog(priority, "%s", $0) }
    }
}

/// `--since`: a duration back from now (`90s`, `30m`, `24h`, `7d`) or a Unix time.
struct Since: ExpressibleByArgument {
    let seconds: Int64?
    let time: Int64?

    init?(argument: String) {
        if let t = Int64(argument), t >= 0 {
            seconds = nil
            time = t
            return
        }
        guard let unit = argument.last, let n = Int64(argument.dropLast()), n >= 0 else { return nil }
        let scale: Int64
        switch unit {
        case "s": scale = 1
        case "m": scale = 60
        case "h": scale = 3600
        case "d": scale = 86400
        default: return nil
        }
        guard n <= Int64.max / scale else { return nil }
        seconds = n * scale
        time = nil
    }

    func start(now: Int64) -> Int64 { time ?? (now - (seconds ?? 0)) }
}

func auditJSON(_ e: AuditEntry) -> JSON {
    .object([
        ("time", .int(e.time)), ("event", .string(e.event)), ("user", .optional(e.user)),
        ("service", .optional(e.service)), ("rhost", .optional(e.rhost)), ("method", .optional(e.method)),
        ("outcome", .string(e.outcome)), ("reason", .optional(e.reason)), ("host", .optional(e.host)),
        ("actor", .optional(e.actor)), ("actor_source", .optional(e.actorSource)),
    ])
}

/// Reads the audit trail, warning on stderr about corrupt lines; empty without a state directory.
func readAuditTrail(_ global: GlobalOptions) throws -> [AuditEntry] {
    guard runningAsRoot() else { throw CLIError("must be run as root") }
    let result: (entries: [AuditEntry], corrupt: Int)
    if let store = try global.auditStore() {
        result = try store.readAudit()
    } else {
        do {
            result = try AuditLog.read(stateDirectory: global.stateDirectory)
        } catch .system(let e) where e.errno == ENOENT {
            return []
        } catch {
            throw CLIError(error.description)
        }
    }
    if result.corrupt > 0 {
        writeStandardError(
            "watchword: warning: skipped \(result.corrupt) corrupt line\(result.corrupt == 1 ? "" : "s") in the audit log\n")
    }
    return result.entries
}

/// `watchword log [USER]`: the audit trail.
struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the audit trail of logins and admin actions.",
        discussion: """
            Every login attempt and every admin action is one JSON line in DIR/audit.log \
            (root 0600; renamed to audit.log.1 past 1 MiB, so at most two files are kept), or \
            in the fleet database. Each names its host; an admin action names its actor, the \
            login that ran it (SUDO_USER, else the login uid's user, else the uid's). Codes and \
            secrets are never written. Lines that cannot be read are skipped and counted.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("Only this user's entries.", valueName: "user"))
    var user: String?
    @Option(help: ArgumentHelp("Only entries since then: a duration back from now (90s, 30m, 24h, 7d) or a Unix time.", valueName: "when"))
    var since: Since?
    @Option(help: ArgumentHelp("Only entries from this host (its host name, as the HOST column shows it).", valueName: "host"))
    var host: String?
    @Option(help: ArgumentHelp("Only admin actions run by this login (as the ACTOR column shows it).", valueName: "login"))
    var actor: String?
    @OptionGroup var output: OutputOptions

    func run() throws {
        var entries = try readAuditTrail(global)
        if let user { entries = entries.filter { $0.user == user } }
        if let host { entries = entries.filter { $0.host == host } }
        if let actor { entries = entries.filter { $0.actor == actor } }
        if let since {
            let start = since.start(now: unixTimeNow())
            entries = entries.filter { $0.time >= start }
        }
        if output.json {
            print(JSON.array(entries.map(auditJSON)).rendered)
            return
        }
        guard !entries.isEmpty else {
            print("No audit entries.")
            return
        }
        // One line per entry whatever a stored line holds: no control character reaches the terminal.
        func cell(_ s: String?) -> String {
            guard let s, !s.isEmpty else { return "-" }
            return String(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
        }
        var rows = [["TIME", "HOST", "USER", "EVENT", "ACTOR", "SERVICE", "RHOST", "METHOD", "OUTCOME", "REASON"]]
        for e in entries {
            rows.append([
                formatTime(e.time), cell(e.host), cell(e.user), cell(e.event), cell(e.actor), cell(e.service), cell(e.rhost),
                cell(e.method), cell(e.outcome), cell(e.reason),
            ])
        }
        printTable(rows)
    }
}

/// `watchword status`: one screen for an admin.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise enrollment, lockouts, recent failures and SMS use.",
        discussion: """
            Users enrolled by method (totp, hotp, sms, recovery-only; a user with a token and \
            a phone counts under both), users locked out now, failed logins in the last 24 hours \
            (from the audit trail), texts sent in the last hour and each user's last successful login.
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        var records: [UserRecord] = []
        do {
            let store = try global.open(create: false).1
            records = try store.allRecords()
        } catch is NoStateDirectory {}
        let now = unixTimeNow()
        var entries: [AuditEntry] = []
        do {
            entries = try readAuditTrail(global)
        } catch {
            writeStandardError("watchword: warning: audit log not read: \(error)\n")
        }
        var totp = 0, hotp = 0, sms = 0, recoveryOnly = 0
        for r in records {
            if r.otp?.kind == .totp { totp += 1 }
            if r.otp?.kind == .hotp { hotp += 1 }
            if r.phone != nil { sms += 1 }
            if r.otp == nil && r.phone == nil && !r.recoveryCodeHashes.isEmpty { recoveryOnly += 1 }
        }
        let locked = records.filter { $0.lockoutRemaining(at: now) != nil }.map(\.user.value)
        let pending = records.filter { !$0.isEnrolled && $0.pending?.isAlive(at: now) == true }
        let failures = entries.filter {
            $0.event == "login" && $0.time > now - 86400 && ($0.outcome == "auth_err" || $0.outcome == "maxtries")
        }
        var failuresByUser: [(String, Int)] = []
        for f in failures {
            let name = f.user ?? "-"
            if let i = failuresByUser.firstIndex(where: { $0.0 == name }) {
                failuresByUser[i].1 += 1
            } else {
                failuresByUser.append((name, 1))
            }
        }
        failuresByUser.sort { $0.0 < $1.0 }
        let smsSent = records.reduce(0) { $0 + $1.sms.sent.count(at: now) }

        if output.json {
            print(
                JSON.object([
                    ("users", .int(Int64(records.count))),
                    ("enrolled", .object([
                        ("totp", .int(Int64(totp))), ("hotp", .int(Int64(hotp))), ("sms", .int(Int64(sms))),
                        ("recovery_only", .int(Int64(recoveryOnly))),
                    ])),
                    ("pending", .object(pending.map { ($0.user.value, .int($0.pending?.expires ?? 0)) })),
                    ("locked", .array(locked.map { .string($0) })),
                    ("failures_24h", .int(Int64(failures.count))),
                    ("failures_24h_by_user", .object(failuresByUser.map { ($0.0, .int(Int64($0.1))) })),
                    ("sms_sent_last_hour", .int(Int64(smsSent))),
                    ("last_success", .object(records.map { ($0.user.value, $0.lastSuccess > 0 ? .int($0.lastSuccess) : .null) })),
                ]).rendered)
            return
        }
        func line(_ label: String, _ value: String) { print(label + String(repeating: " ", count: max(1, 24 - label.count)) + value) }
        line("Users enrolled:", "\(records.count) (totp \(totp), hotp \(hotp), sms \(sms), recovery-only \(recoveryOnly))")
        line(
            "Pending enrollment:",
            pending.isEmpty
                ? "none"
                : pending.map { "\($0.user.value) (until \(formatTime($0.pending?.expires ?? 0)))" }.joined(separator: ", "))
        line("Locked out now:", locked.isEmpty ? "none" : locked.joined(separator: ", "))
        line(
            "Failed logins (24 h):",
            String(failures.count)
                + (failuresByUser.isEmpty ? "" : " (" + failuresByUser.map { "\($0.0) \($0.1)" }.joined(separator: ", ") + ")"))
        line("SMS sent (last hour):", String(smsSent))
        if records.isEmpty {
            line("Last successful login:", "-")
        } else {
            print("Last successful login:")
            var rows: [[String]] = [["  USER", "LAST LOGIN"]]
            for r in records { rows.append(["  " + r.user.value, formatTime(r.lastSuccess)]) }
            printTable(rows)
        }
    }
}
