#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCrypto
import WatchwordOTP
import WatchwordCore

/// One user's entry in a host's offline cache (`DIR/cache/NAME`): what lets the host check
/// that user's codes while the database is unreachable, and what it did meanwhile.
///
/// Text, one `key value` per line, like the state files:
/// ```
/// watchword-cache 1
/// user alice
/// written 1790000000          # when it was last brought up to date from the database
/// source <hex>                # keyed fingerprint of the enrollment the codes were made from
/// otp totp|hotp|none
/// otp.digits 6
/// otp.period 30
/// otp.counter 0               # HOTP: next counter expected (as last known)
/// otp.last_step 59666666|none # TOTP: last step accepted (as last known)
/// codes 59666665 2882 <hex>   # first counter, count, the hashes
/// failures 0
/// locked_until 0
/// recovery <hex>              # one per unused recovery code: the database's keyed hash
/// offline.events 0|1          # 1: something below happened offline and is not yet reconciled
/// offline.failures 0          # failures counted offline (since the last offline success)
/// offline.success 0           # time of the last offline success, 0 if none
/// offline.recovery_used <hex> # one per recovery code used offline
/// end
/// ```
public struct OfflineEntry: Sendable, Equatable {
    public var user: UserName
    public var written: Int64 = 0
    public var source = ""
    public var kind: OTPEnrollment.Kind? = nil
    public var digits = 6
    public var period = 30
    public var counter: UInt64 = 0
    public var lastStep: UInt64? = nil
    public var codes: OfflineCodes? = nil
    public var failures = 0
    public var lockedUntil: Int64 = 0
    public var recoveryCodeHashes: [String] = []
    public var offlineEvents = false
    public var offlineFailures = 0
    public var offlineSuccess: Int64 = 0
    public var offlineRecoveryUsed: [String] = []

    public static let formatHeader = "watchword-cache 1"
    public static let maxFileSize = 512 * 1024

    public init(user: UserName) { self.user = user }

    /// The record the login flow sees offline: no secret, no phone (SMS needs the database).
    public func record(key: SymmetricKey) -> UserRecord {
        var record = UserRecord(user: user, created: 0)
        if let kind, let codes {
            var otp = OTPEnrollment(
                kind: kind, secret: [], digits: digits, period: period, counter: counter, lastStep: lastStep, issuer: "")
            otp.offlineCodes = OfflineCodes(first: codes.first, hashes: codes.hashes, key: key.withUnsafeBytes { Array($0) })
            record.otp = otp
        }
        record.failures = failures
        record.lockedUntil = lockedUntil
        record.recoveryCodeHashes = recoveryCodeHashes
        return record
    }

    /// Records what an offline login changed (`before` → `after`, both from `record`).
    public mutating func apply(_ before: UserRecord, _ after: UserRecord, now: Int64) {
        if let otp = after.otp {
            if let step = otp.lastStep, step > (lastStep ?? 0) || lastStep == nil { lastStep = step }
            if otp.counter > counter { counter = otp.counter }
        }
        if after.failures > before.failures {
            offlineFailures += after.failures - before.failures
        } else if after.failures == 0 && after.lastSuccess != before.lastSuccess {
            offlineFailures = 0
            offlineSuccess = now
        }
        failures = after.failures
        lockedUntil = after.lockedUntil
        let used = before.recoveryCodeHashes.filter { !after.recoveryCodeHashes.contains($0) }
        offlineRecoveryUsed += used
        // Only what this login used goes: the record may have been served without hashes.
        recoveryCodeHashes.removeAll { used.contains($0) }
        offlineEvents = true
    }

    /// Brings a database record up to date with what happened here offline.
    public func reconcile(into record: inout UserRecord) {
        if var otp = record.otp {
            if let step = lastStep, step > (otp.lastStep ?? 0) || otp.lastStep == nil { otp.lastStep = step }
            if counter > otp.counter { otp.counter = counter }
            record.otp = otp
        }
        if offlineSuccess > 0 {
            record.failures = offlineFailures
            record.lastSuccess = max(record.lastSuccess, offlineSuccess)
        } else {
            record.failures = min(record.failures + offlineFailures, 1_000_000_000)
        }
        record.lockedUntil = max(record.lockedUntil, lockedUntil)
        record.recoveryCodeHashes.removeAll { offlineRecoveryUsed.contains($0) }
    }

    public func serialized() -> [UInt8] {
        var lines = [Self.formatHeader, "user \(user.value)", "written \(written)", "source \(source)"]
        lines.append("otp \(kind?.rawValue ?? "none")")
        lines.append("otp.digits \(digits)")
        lines.append("otp.period \(period)")
        lines.append("otp.counter \(counter)")
        lines.append("otp.last_step \(lastStep.map { String($0) } ?? "none")")
        if let codes { lines.append("codes \(codes.first) \(codes.count) \(Hex.encode(codes.hashes))") }
        lines.append("failures \(failures)")
        lines.append("locked_until \(lockedUntil)")
        for hash in recoveryCodeHashes { lines.append("recovery \(hash)") }
        lines.append("offline.events \(offlineEvents ? 1 : 0)")
        lines.append("offline.failures \(offlineFailures)")
        lines.append("offline.success \(offlineSuccess)")
        for hash in offlineRecoveryUsed { lines.append("offline.recovery_used \(hash)") }
        lines.append("end")
        return Array((lines.joined(separator: "\n") + "\n").utf8)
    }

    public static func parse(_ bytes: [UInt8], expectedUser: UserName) throws(StateFormatError) -> OfflineEntry {
        guard bytes.count <= maxFileSize else { throw StateFormatError(line: 0, message: "file is too large") }
        guard let text = String(validating: bytes, as: UTF8.self), text.hasSuffix("\nend\n") else {
            throw StateFormatError(line: 0, message: "not UTF-8 or truncated (no 'end' line)")
        }
        var lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first == Substring(formatHeader) else {
            throw StateFormatError(line: 1, message: "not a watchword cache file")
        }
        lines.removeFirst()
        lines.removeLast()  // "end"
        var entry = OfflineEntry(user: expectedUser)
        var seen: Set<String> = []
        for (offset, line) in lines.enumerated() {
            let number = offset + 2
            func bad(_ why: String) -> StateFormatError { StateFormatError(line: number, message: why) }
            guard let space = line.firstIndex(of: " ") else { throw bad("no value") }
            let key = String(line[..<space])
            let value = String(line[line.index(after: space)...])
            if key != "recovery" && key != "offline.recovery_used" {
                guard !seen.contains(key) else { throw bad("'\(key)' twice") }
                seen.insert(key)
            }
            func int(_ range: ClosedRange<Int64>) throws(StateFormatError) -> Int64 {
                guard let n = Int64(value), value == String(n), range.contains(n) else { throw bad("\(key) is not a number") }
                return n
            }
            func hash() throws(StateFormatError) -> String {
                guard value.utf8.count == 64, Hex.decode(value) != nil, value == value.lowercased() else {
                    throw bad("\(key) is not 64 lowercase hex digits")
                }
                return value
            }
            switch key {
            case "user":
                guard value == expectedUser.value else { throw bad("file names user '\(value)'") }
            case "written": entry.written = try int(0...Int64.max)
            case "source": entry.source = value
            case "otp":
                if value != "none" {
                    guard let kind = OTPEnrollment.Kind(rawValue: value) else { throw bad("unknown otp kind") }
                    entry.kind = kind
                }
            case "otp.digits": entry.digits = Int(try int(6...8))
            case "otp.period": entry.period = Int(try int(1...3600))
            case "otp.counter":
                guard let n = UInt64(value), value == String(n) else { throw bad("otp.counter is not a number") }
                entry.counter = n
            case "otp.last_step":
                if value != "none" {
                    guard let n = UInt64(value), value == String(n) else { throw bad("otp.last_step is not a number") }
                    entry.lastStep = n
                }
            case "codes":
                let parts = value.split(separator: " ")
                guard parts.count == 3, let first = UInt64(parts[0]), let count = Int(parts[1]), count >= 0,
                    count <= 100_000, let hashes = Hex.decode(String(parts[2])),
                    hashes.count == count * OfflineCodes.hashBytes
                else { throw bad("codes: not 'FIRST COUNT HEX'") }
                entry.codes = OfflineCodes(first: first, hashes: hashes, key: [])
            case "failures": entry.failures = Int(try int(0...1_000_000_000))
            case "locked_until": entry.lockedUntil = try int(0...Int64.max)
            case "recovery": entry.recoveryCodeHashes.append(try hash())
            case "offline.events": entry.offlineEvents = try int(0...1) == 1
            case "offline.failures": entry.offlineFailures = Int(try int(0...1_000_000_000))
            case "offline.success": entry.offlineSuccess = try int(0...Int64.max)
            case "offline.recovery_used": entry.offlineRecoveryUsed.append(try hash())
            default: throw bad("unknown key '\(key)'")
            }
        }
        for required in ["written", "otp", "failures", "locked_until", "offline.events"] where !seen.contains(required) {
            throw StateFormatError(line: 0, message: "'\(required)' missing")
        }
        if entry.kind != nil && entry.codes == nil { throw StateFormatError(line: 0, message: "'codes' missing") }
        return entry
    }
}

/// A host's offline cache for fleet mode (`offline = "cached"`), in its local state directory:
/// `DIR/cache.key` (this host's key for the code hashes), `DIR/cache/NAME` (one
/// `OfflineEntry` per user), `DIR/pending/NAME` (an empty marker: NAME has offline events
/// not yet reconciled with the database), locks in `DIR/locks/`.
public final class OfflineCache: @unchecked Sendable {
    public static let keyFile = "cache.key"
    /// How far ahead TOTP codes are cached, and when a refresh recomputes them.
    public static let horizonSeconds: Int64 = 24 * 3600
    public static let refreshBelowSeconds: Int64 = 12 * 3600
    /// HOTP counters cached beyond the look-ahead window.
    public static let hotpExtra = 100

    public let root: SecureDirectory
    private var key: SymmetricKey?

    public init(root: SecureDirectory) { self.root = root }

    private func directory(_ name: String, create: Bool) throws(StoreError) -> SecureDirectory? {
        try root.optionalSubdirectory(name, create: create)
    }

    /// This host's hashing key; made on first use when `create` is set.
    public func cacheKey(create: Bool) throws(StoreError) -> SymmetricKey? {
        if let key { return key }
        key = try root.keyFile(Self.keyFile, create: create, lockName: ".cache-key", makeLocks: true)
        return key
    }

    public func entry(_ user: UserName) throws(StoreError) -> OfflineEntry? {
        guard let dir = try directory("cache", create: false) else { return nil }
        return try dir.readParsed(user.value, limit: OfflineEntry.maxFileSize) { (bytes) throws(StateFormatError) in
            try OfflineEntry.parse(bytes, expectedUser: user)
        }
    }

    /// Runs `body` on the user's entry under the user's lock and writes what it leaves.
    /// `durable`: fsync (offline events must survive a crash; refreshes can be redone).
    public func update<R>(
        _ user: UserName, durable: Bool, _ body: (inout OfflineEntry?) throws -> R
    ) throws -> R {
        guard let cache = try directory("cache", create: true), let locks = try directory("locks", create: true) else {
            throw StoreError.unsupported("cannot make the cache directory")
        }
        let lock = try locks.storeLock(user.value)
        defer { lock.release() }
        let before = try entry(user)
        var entry = before
        let result = try body(&entry)
        if entry != before {
            do {
                if let entry {
                    try cache.writeAtomically(user.value, entry.serialized(), durable: durable)
                } else {
                    try cache.remove(user.value)
                }
                let pending = try root.subdirectory("pending", create: true)
                if entry?.offlineEvents == true {
                    if !pending.exists(user.value) { try pending.writeAtomically(user.value, [], durable: durable) }
                } else if pending.exists(user.value) {
                    try pending.remove(user.value)
                }
            } catch {
                throw StoreError.untrusted(error)
            }
        }
        return result
    }

    /// Every user with a cache entry.
    public func cachedUsers() throws(StoreError) -> [UserName] { try userNames(in: "cache") }

    /// Users with offline events not yet reconciled (an empty directory in normal times).
    public func pendingUsers() throws(StoreError) -> [UserName] { try userNames(in: "pending") }

    private func userNames(in name: String) throws(StoreError) -> [UserName] {
        guard let dir = try directory(name, create: false) else { return [] }
        do {
            return try dir.entries().compactMap { try? UserName($0) }
        } catch {
            throw .untrusted(error)
        }
    }

    /// Brings the user's entry up to date from the database's record (with the secret).
    /// The code hashes are recomputed only when the enrollment changed or the cached run
    /// ends within `refreshBelowSeconds`; otherwise only the small fields change. Offline
    /// events not yet reconciled are kept.
    public func refresh(_ user: UserName, from record: UserRecord?, policy: Policy, now: Int64) throws {
        guard let record else {
            // Removed from the database: nothing to verify offline any more.
            try update(user, durable: false) { (entry: inout OfflineEntry?) in entry = nil }
            return
        }
        let key = try cacheKey(create: true)!
        try update(user, durable: false) { (entry: inout OfflineEntry?) throws in
            var fresh = entry ?? OfflineEntry(user: user)
            // Offline events not yet reconciled still count: keep the larger of both.
            let keep = fresh.offlineEvents
            fresh.failures = keep ? max(record.failures, fresh.failures) : record.failures
            fresh.lockedUntil = keep ? max(record.lockedUntil, fresh.lockedUntil) : record.lockedUntil
            fresh.recoveryCodeHashes = record.recoveryCodeHashes.filter { !fresh.offlineRecoveryUsed.contains($0) }
            if let otp = record.otp {
                let source = Self.fingerprint(otp, key: key)
                if fresh.source != source {
                    fresh.counter = 0
                    fresh.lastStep = nil
                }
                fresh.kind = otp.kind
                fresh.digits = otp.digits
                fresh.period = otp.period
                fresh.counter = keep ? max(otp.counter, fresh.counter) : otp.counter
                if keep, let mine = fresh.lastStep {
                    fresh.lastStep = max(mine, otp.lastStep ?? 0)
                } else {
                    fresh.lastStep = otp.lastStep
                }
                let (first, count) = Self.run(otp, policy: policy, now: now)
                var stale = fresh.source != source || fresh.codes == nil
                if let codes = fresh.codes, !stale {
                    let margin =
                        otp.kind == .totp
                        ? UInt64(Self.refreshBelowSeconds) / UInt64(otp.period) : UInt64(policy.hotpLookahead + Self.hotpExtra / 2)
                    stale = codes.first > first || codes.end < first + margin
                }
                if stale {
                    var codes = try OfflineCodes.make(otp: otp, user: user, first: first, count: count, key: key)
                    codes.key = []
                    fresh.codes = codes
                    fresh.source = source
                }
            } else {
                fresh.kind = nil
                fresh.codes = nil
                fresh.source = ""
            }
            // Within a minute of the last contact: store.postgres.offline_max_age counts from it.
            if fresh != entry || fresh.written < now - 60 {
                fresh.written = now
            }
            entry = fresh
        }
    }

    public static let recoveryKeyFile = "fleet-recovery.key"

    /// The fleet's recovery-code key as this host last saw it (offline recovery codes).
    public func fleetRecoveryKey() throws(StoreError) -> SymmetricKey? {
        try root.keyFile(Self.recoveryKeyFile, create: false, lockName: "", makeLocks: false)
    }

    public func saveFleetRecoveryKey(_ key: SymmetricKey) throws(StoreError) {
        let bytes = key.withUnsafeBytes { Array($0) }
        if let current = try fleetRecoveryKey(), current.withUnsafeBytes({ Array($0) }) == bytes { return }
        try root.writeKey(Self.recoveryKeyFile, bytes)
    }

    /// The counters to cache: TOTP from the current step back by the window to the horizon;
    /// HOTP from the expected counter through the look-ahead and `hotpExtra` more.
    static func run(_ otp: OTPEnrollment, policy: Policy, now: Int64) -> (UInt64, Int) {
        switch otp.kind {
        case .totp:
            let step = UInt64(max(now, 0)) / UInt64(otp.period)
            let first = step >= UInt64(policy.window) ? step - UInt64(policy.window) : 0
            let count = Int(Self.horizonSeconds / Int64(otp.period)) + 2 * policy.window + 1
            return (first, count)
        case .hotp:
            return (otp.counter, policy.hotpLookahead + 1 + Self.hotpExtra)
        }
    }

    /// A keyed fingerprint of what the codes are made from (never the secret itself).
    static func fingerprint(_ otp: OTPEnrollment, key: SymmetricKey) -> String {
        let message = Array("\(otp.kind.rawValue) \(otp.algorithm.rawValue) \(otp.digits) \(otp.period) ".utf8) + otp.secret
        return Hex.encode(Array(HMAC<SHA256>.authenticationCode(for: message, using: key).prefix(16)))
    }
}
