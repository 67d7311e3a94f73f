#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore
import WatchwordCrypto

/// A login on a host whose store is the shared PostgreSQL database.
///
/// The database answers when it can. When it cannot be reached, `offline = "deny"` refuses
/// (PAM_AUTHINFO_UNAVAIL); `offline = "cached"` checks the code against this host's offline
/// cache. Either way a user the host cannot vouch for is refused as unavailable — never
/// "not enrolled", which `nullok` would turn into a way in.
public struct FleetLogin {
    public let config: Config
    public let stateDir: String
    public let timeout: Int
    /// This host's state directory, when it was opened (offline cache, audit fallback).
    public private(set) var localRoot: SecureDirectory? = nil
    /// Where the login's audit line goes: the database, or this host while it is down.
    public private(set) var auditStore: (any StateStore)? = nil
    /// Passed to the login flow (enrollment at login).
    public var qrCode: (String) -> [String]? = { _ in nil }

    public init(config: Config, stateDir: String, timeout: Int) {
        self.config = config
        self.stateDir = stateDir
        self.timeout = timeout
    }

    public mutating func run<C: Conversation>(
        _ request: LoginRequest, conversation: inout C,
        smsGateway: @escaping () throws(SMSError) -> SMSGateway
    ) -> LoginOutcome {
        let who = "user \(request.user)" + (request.rhost.isEmpty ? "" : " from \(request.rhost)")
        var cache: OfflineCache? = nil
        do {
            // Made when missing: it holds the offline cache and the fleet marker.
            localRoot = try SecureDirectory.open(stateDir, create: true)
        } catch {
            if config.store.postgresOffline == .cached {
                conversation.log(.warning, "offline cache unusable (logins are denied while the database is down): state \(error)")
            }
        }
        if let localRoot, config.store.postgresOffline == .cached { cache = OfflineCache(root: localRoot) }
        let settings = DatabaseSettings(config.store, timeoutSeconds: timeout, applicationName: "watchword-helper")
        let db = PostgresStore(settings: settings)
        let notes = Notes()
        if let cache {
            db.onConnect = { store in
                for line in Reconciler(db: store, cache: cache).reconcilePending() { notes.lines.append(line) }
            }
        }
        do {
            try db.open()
        } catch {
            for line in notes.lines { conversation.log(.warning, line) }
            if case .unreachable = error, let cache {
                conversation.log(.warning, "\(error): checking \(who) against this host's offline cache")
                return offline(request, who: who, cache: cache, conversation: &conversation)
            }
            conversation.log(.err, "\(who): denied: \(error)")
            conversation.error(LoginFlow.unavailableMessage)
            return .unavailable
        }
        for line in notes.lines { conversation.log(.warning, line) }
        auditStore = db
        // The database answered: from now on this state directory is never read as a local
        // store, even if the config goes missing or says `files`.
        do {
            guard let localRoot else { throw StoreError.unsupported("the state directory could not be opened") }
            try FileStore.markFleetMember(localRoot)
        } catch {
            conversation.log(.err, "state directory \(stateDir) not marked as a fleet member: \(error)")
        }

        var flow = LoginFlow(config: config, store: db, smsGateway: smsGateway)
        flow.qrCode = qrCode
        let outcome = flow.run(request, conversation: &conversation)

        // Bring this host's cache up to date with what the database holds now. Not after a
        // login the database could not serve (a schema of another version, a broken
        // connection): it said nothing about the record, so the cache stays as it was.
        if let cache, outcome != .unavailable, let user = try? UserName(request.user) {
            do {
                if try cache.fleetRecoveryKey() == nil, let key = try db.recoveryKey(create: false) {
                    try cache.saveFleetRecoveryKey(key)
                }
                // The record this login read or wrote is the row as it stands: no second query.
                let record = try db.lastSeen(user) ?? db.load(user)
                try cache.refresh(user, from: record, policy: config.policy, now: unixTimeNow())
            } catch {
                // What it holds may be what the database no longer says (a revoked token,
                // re-issued recovery codes): drop it rather than keep it.
                var dropped = false
                do {
                    try cache.update(user, durable: false) { (entry: inout OfflineEntry?) in
                        if entry?.offlineEvents != true { entry = nil }
                    }
                    dropped = true
                } catch {}
                conversation.log(.warning, "\(who): offline cache not refreshed\(dropped ? " (entry dropped)" : ""): \(error)")
            }
        }
        return outcome
    }

    private final class Notes { var lines: [String] = [] }

    /// The login while the database is down, from this host's cache.
    private mutating func offline<C: Conversation>(
        _ request: LoginRequest, who: String, cache: OfflineCache, conversation: inout C
    ) -> LoginOutcome {
        guard let user = try? UserName(request.user) else {
            conversation.log(.notice, "\(who): denied: not a valid user name")
            return .authErr
        }
        let entry: OfflineEntry?
        let recoveryKey: SymmetricKey?
        do {
            entry = try cache.entry(user)
            // Recovery codes offline only when the config says so (store.postgres.offline_recovery).
            recoveryKey = config.store.postgresOfflineRecovery ? try cache.fleetRecoveryKey() : nil
        } catch {
            conversation.log(.err, "\(who): denied: offline cache: \(error)")
            conversation.error(LoginFlow.unavailableMessage)
            return .unavailable
        }
        let now = unixTimeNow()
        guard let entry else {
            conversation.log(.err, "\(who): denied: not in this host's offline cache (no contact with the database yet)")
            conversation.error(LoginFlow.unavailableMessage)
            return .unavailable
        }
        let age = now - entry.written
        guard age <= Int64(config.store.postgresOfflineMaxAge) else {
            conversation.log(
                .err,
                "\(who): denied: this host's offline cache for the user is \(age) s old, older than store.postgres.offline_max_age (\(config.store.postgresOfflineMaxAge) s)")
            conversation.error(LoginFlow.unavailableMessage)
            return .unavailable
        }
        let codesLive = entry.codes.map { codes in
            entry.kind == .hotp || codes.end > UInt64(max(now, 0)) / UInt64(max(entry.period, 1))
        } ?? false
        let recoveryLive = !entry.recoveryCodeHashes.isEmpty && recoveryKey != nil
        guard codesLive || recoveryLive else {
            conversation.log(
                .err, "\(who): denied: this host's offline cache for the user ran out (last refreshed \(entry.written))")
            conversation.error(LoginFlow.unavailableMessage)
            return .unavailable
        }
        let store = CachedStore(cache: cache, recoveryKey: recoveryKey)
        auditStore = store
        var flowConfig = config
        flowConfig.sms.provider = .none
        let flow = LoginFlow(config: flowConfig, store: store)
        let outcome = flow.run(request, conversation: &conversation)
        // The cache holds only enrolled users; anything else is not a way in.
        return outcome == .notEnrolled ? .unavailable : outcome
    }
}

/// Sends a host's offline events to the database.
public struct Reconciler {
    public let db: PostgresStore
    public let cache: OfflineCache

    public init(db: PostgresStore, cache: OfflineCache) {
        self.db = db
        self.cache = cache
    }

    /// Reconciles every user with offline events; returns lines for the log.
    public func reconcilePending() -> [String] {
        let users: [UserName]
        do {
            users = try cache.pendingUsers()
        } catch {
            return ["offline events not reconciled: \(error)"]
        }
        var lines: [String] = []
        for user in users {
            do {
                // Under the cache lock, so two logins on this host never send the same events twice.
                try cache.update(user, durable: true) { (entry: inout OfflineEntry?) throws in
                    guard var current = entry, current.offlineEvents else { return }
                    try db.update(user) { (record: inout UserRecord?) in
                        guard var fresh = record else { return }
                        current.reconcile(into: &fresh)
                        record = fresh
                    }
                    current.offlineEvents = false
                    current.offlineFailures = 0
                    current.offlineSuccess = 0
                    current.offlineRecoveryUsed = []
                    entry = current
                }
                lines.append("user \(user): offline events reconciled with the database")
            } catch {
                lines.append("user \(user): offline events not reconciled: \(error)")
            }
        }
        return lines
    }
}
