#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCrypto
import WatchwordOTP
import WatchwordCore

/// The store a login uses while the database is unreachable (`offline = "cached"`): records
/// come from this host's cache, changes are recorded there as offline events. No SMS.
public final class CachedStore: StateStore, @unchecked Sendable {
    public let cache: OfflineCache
    private let recovery: SymmetricKey?
    private let now: () -> Int64

    /// `recoveryKey`: the fleet's recovery-code key as this host last saw it (cached next to
    /// the codes), or nil when recovery codes cannot be checked offline.
    public init(cache: OfflineCache, recoveryKey: SymmetricKey?, now: @escaping () -> Int64 = unixTimeNow) {
        self.cache = cache
        self.recovery = recoveryKey
        self.now = now
    }

    private func record(_ entry: OfflineEntry?) throws(StoreError) -> UserRecord? {
        guard let entry else { return nil }
        guard let key = try cache.cacheKey(create: false) else {
            throw .unsupported("the offline cache has no \(OfflineCache.keyFile)")
        }
        var record = entry.record(key: key)
        // Without the fleet's recovery key the hashes cannot be checked; leaving them in
        // would make the login flow refuse the user's TOTP code too.
        if recovery == nil { record.recoveryCodeHashes = [] }
        return record
    }

    public func load(_ user: UserName) throws(StoreError) -> UserRecord? {
        try record(try cache.entry(user))
    }

    public func update<R>(_ user: UserName, _ body: (inout UserRecord?) throws -> R) throws -> R {
        let time = now()
        return try cache.update(user, durable: true) { (entry: inout OfflineEntry?) throws -> R in
            let before = try record(entry)
            var after = before
            let result = try body(&after)
            if let before, let after, after != before {
                entry?.apply(before, after, now: time)
            } else if before != nil && after == nil {
                throw StoreError.unsupported("users cannot be removed while the database is unreachable")
            }
            return result
        }
    }

    public func users() throws(StoreError) -> [UserName] { [] }

    public func recoveryKey(create: Bool) throws(StoreError) -> SymmetricKey? { recovery }

    public func updateSMSGlobal<R>(_ body: (inout SMSGlobalState) throws -> R) throws -> R {
        throw StoreError.unsupported("SMS is not available while the database is unreachable")
    }

    public func update<R>(
        _ user: UserName, withSMSGlobal body: (inout UserRecord?, inout SMSGlobalState) throws -> R
    ) throws -> R {
        throw StoreError.unsupported("SMS is not available while the database is unreachable")
    }

    public func appendAudit(_ entry: AuditEntry) throws {
        try AuditLog.append(entry, in: cache.root)
    }

    public func readAudit() throws -> (entries: [AuditEntry], corrupt: Int) {
        try AuditLog.read(in: cache.root)
    }
}
