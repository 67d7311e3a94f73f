#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One line of the audit trail (`DIR/audit.log`, JSON lines): a login attempt or an admin
/// action. Never a code or a secret: `reason` comes from the same texts that go to syslog.
public struct AuditEntry: Sendable, Equatable {
    public var time: Int64
    /// `login`, or the admin command (`enroll`, `remove`, `unlock`, ...).
    public var event: String
    public var user: String?
    public var service: String?
    public var rhost: String?
    /// `totp`, `hotp`, `sms`, `recovery`, or nil.
    public var method: String?
    /// Logins: a `LoginOutcome` raw value; admin actions: `ok` or `error`.
    public var outcome: String
    public var reason: String?
    /// The host the event happened on (its host name).
    public var host: String?
    /// Admin actions: who ran the command (see `AuditActor`); nil for logins.
    public var actor: String?
    /// Where `actor` came from: `sudo` (SUDO_USER), `loginuid` or `uid`.
    public var actorSource: String?

    public init(
        time: Int64, event: String, user: String?, service: String? = nil, rhost: String? = nil,
        method: String? = nil, outcome: String, reason: String? = nil, host: String? = nil, actor: String? = nil,
        actorSource: String? = nil
    ) {
        self.time = time
        self.event = event
        self.user = user
        self.service = service
        self.rhost = rhost
        self.method = method
        self.outcome = outcome
        self.reason = reason
        self.host = host.map { auditField($0) }
        self.actor = actor.map { auditField($0) }
        self.actorSource = actorSource.map { auditField($0) }
    }

    /// The line as written, without the newline.
    public var jsonLine: String {
        func text(_ s: String?) -> String { s.map(jsonQuote) ?? "null" }
        return "{\"time\":\(time),\"event\":\(jsonQuote(event)),\"user\":\(text(user)),"
            + "\"service\":\(text(service)),\"rhost\":\(text(rhost)),\"method\":\(text(method)),"
            + "\"outcome\":\(jsonQuote(outcome)),\"reason\":\(text(reason)),\"host\":\(text(host)),"
            + "\"actor\":\(text(actor)),\"actor_source\":\(text(actorSource))}"
    }

    /// Parses one line; nil when it is not a well-formed audit line.
    public init?(jsonLine line: Substring) {
        // The shape audit lines have always had: one object whose values are strings, whole
        // numbers that fit an Int64, or null (a key named twice is refused by the parser).
        guard case .object(let pairs)? = JSON.parse(Array(line.utf8)) else { return nil }
        for (_, value) in pairs {
            switch value {
            case .string, .null: continue
            case .number(let digits): guard Int64(digits) != nil else { return nil }
            case .bool, .array, .object: return nil
            }
        }
        let fields = JSON.object(pairs)
        guard case .number(let digits)? = fields["time"], let time = Int64(digits),
            let event = fields["event"]?.string, let outcome = fields["outcome"]?.string
        else { return nil }
        func text(_ key: String) -> String? { fields[key]?.string }
        self.init(
            time: time, event: event, user: text("user"), service: text("service"), rhost: text("rhost"),
            method: text("method"), outcome: outcome, reason: text("reason"), host: text("host"), actor: text("actor"),
            actorSource: text("actor_source"))
    }
}

/// `text` as one audit or log field: printable ASCII other than space, anything else
/// replaced by "?", at most `limit` characters. Whatever chose the text (a user typing a
/// name at a prompt, `SUDO_USER`, a host name) cannot add a field ("bob actor=root") or a
/// line to syslog, the audit trail or `watchword log`'s table.
public func auditField(_ text: String, limit: Int = 255) -> String {
    String(text.unicodeScalars.prefix(limit).map { $0.value > 0x20 && $0.value < 0x7F ? Character($0) : "?" })
}

/// This host's name as the audit trail records it.
public func auditHostName() -> String {
    systemHostName().map { auditField($0) } ?? "?"
}

/// Who ran an admin command: the invoking login, not the root it runs as.
///
/// `SUDO_USER` when it is set and names a user the system knows (sudo sets it to the user
/// who ran sudo); else the login uid the kernel keeps for the session
/// (`/proc/self/loginuid`, set at login by pam_loginuid and kept across su and sudo;
/// 4294967295 means unset); else the real uid's name. A name the user database does not
/// know is written as `#UID`. Root can set any of these, so this names whoever ran the
/// command as far as the system knows it, not a proof.
public struct AuditActor: Sendable, Equatable {
    public let name: String
    /// `sudo`, `loginuid` or `uid`.
    public let source: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
    }

    public static func current(environment sudoUser: String? = getenv("SUDO_USER").map { String(cString: $0) })
        -> AuditActor
    {
        if let sudoUser, !sudoUser.isEmpty, let known = userName(getpwnam(sudoUser)) {
            return AuditActor(name: auditField(known), source: "sudo")
        }
        if let uid = loginUID() {
            return AuditActor(name: auditField(userName(getpwuid(uid)) ?? "#\(uid)"), source: "loginuid")
        }
        let uid = getuid()
        return AuditActor(name: auditField(userName(getpwuid(uid)) ?? "#\(uid)"), source: "uid")
    }

    /// The kernel's login uid of this process; nil when unset or unreadable.
    static func loginUID() -> uid_t? {
        let fd = open("/proc/self/loginuid", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 31) }
        guard n > 0 else { return nil }
        let text = String(decoding: buffer[..<n], as: UTF8.self).trimmingWhitespace
        guard let value = UInt32(text), value != UInt32.max else { return nil }
        return uid_t(value)
    }

    private static func userName(_ entry: UnsafeMutablePointer<passwd>?) -> String? {
        guard let entry, let name = entry.pointee.pw_name else { return nil }
        return String(validating: Array(UnsafeBufferPointer(start: name, count: strlen(name))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension String {
    fileprivate var trimmingWhitespace: String {
        String(self.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}

/// Appends to and reads the audit trail in a state directory.
public enum AuditLog {
    public static let fileName = "audit.log"
    public static let oldFileName = "audit.log.1"
    public static let lockName = ".audit"
    /// Past this size the log is renamed to `audit.log.1` (replacing the old one).
    public static let rotateBytes: Int64 = 1 << 20
    /// Reading allows for lines written past the limit before rotation.
    static let readLimit = 4 << 20

    /// Appends one line to `DIR/audit.log` (one open, one write, one close), rotating when
    /// the file has grown past `rotateBytes`.
    public static func append(_ entry: AuditEntry, stateDirectory path: String) throws(FileTrustError) {
        let root = try SecureDirectory.open(path)
        try append(entry, in: root)
    }

    public static func append(_ entry: AuditEntry, in root: SecureDirectory) throws(FileTrustError) {
        let size = try root.appendLine(fileName, entry.jsonLine)
        guard size > rotateBytes else { return }
        let locks = try root.subdirectory("locks", create: true)
        let lock = try locks.lock(lockName)
        defer { lock.release() }
        // Another writer may have rotated while we waited for the lock.
        guard let current = try root.fileSize(fileName), current > rotateBytes else { return }
        try root.rename(fileName, to: oldFileName)
    }

    /// Every entry, oldest first (`audit.log.1`, then `audit.log`), and how many lines were
    /// skipped as corrupt.
    public static func read(stateDirectory path: String) throws(FileTrustError) -> (entries: [AuditEntry], corrupt: Int) {
        try read(in: try SecureDirectory.open(path))
    }

    public static func read(in root: SecureDirectory) throws(FileTrustError) -> (entries: [AuditEntry], corrupt: Int) {
        var entries: [AuditEntry] = []
        var corrupt = 0
        for name in [oldFileName, fileName] {
            guard let bytes = try root.read(name, limit: readLimit) else { continue }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true) {
                if let entry = AuditEntry(jsonLine: line) { entries.append(entry) } else { corrupt += 1 }
            }
        }
        return (entries, corrupt)
    }
}
