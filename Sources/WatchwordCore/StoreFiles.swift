#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCrypto

/// What the file store and a fleet host's offline cache both do with their directory:
/// optional subdirectories, parsed files, and 32-byte key files made on first use. Every
/// error comes back as the `StoreError` that denies a login.
extension SecureDirectory {
    /// The exclusive lock on `name` in this (locks) directory; a lock that cannot be taken
    /// safely is a `StoreError.untrusted`.
    public func storeLock(_ name: String) throws(StoreError) -> FileLock {
        do {
            return try lock(name)
        } catch {
            throw StoreError.untrusted(error)
        }
    }

    /// The subdirectory, or nil when it is missing and `create` is not set.
    public func optionalSubdirectory(_ name: String, create: Bool) throws(StoreError) -> SecureDirectory? {
        do {
            return try subdirectory(name, create: create)
        } catch .system(let e) where e.errno == ENOENT && !create {
            return nil
        } catch {
            throw .untrusted(error)
        }
    }

    /// A file read under the trust rules and parsed, or nil when it does not exist.
    public func readParsed<T>(
        _ name: String, limit: Int, _ parse: ([UInt8]) throws(StateFormatError) -> T
    ) throws(StoreError) -> T? {
        let bytes: [UInt8]?
        do {
            bytes = try read(name, limit: limit)
        } catch {
            throw .untrusted(error)
        }
        guard let bytes else { return nil }
        do {
            return try parse(bytes)
        } catch {
            throw .corrupt(path: join(name), error)
        }
    }

    /// A key file of 32 random bytes. Missing: nil, or with `create` made under the lock
    /// `locks/LOCKNAME` (a name no user can have) so that two callers make one key;
    /// `locks/` itself is made only with `makeLocks` (else no key without it).
    public func keyFile(_ name: String, create: Bool, lockName: String, makeLocks: Bool) throws(StoreError) -> SymmetricKey? {
        func parseKey(_ bytes: [UInt8]) throws(StateFormatError) -> SymmetricKey {
            guard bytes.count == 32 else { throw StateFormatError(line: 0, message: "key is \(bytes.count) bytes, not 32") }
            return SymmetricKey(bytes: bytes)
        }
        if let key = try readParsed(name, limit: 1024, parseKey) { return key }
        guard create, let locks = try optionalSubdirectory("locks", create: makeLocks) else { return nil }
        let lock = try locks.storeLock(lockName)
        defer { lock.release() }
        if let key = try readParsed(name, limit: 1024, parseKey) { return key }
        guard let fresh = try? SecureRandom.bytes(count: 32) else {
            throw .unsupported("the kernel's random number generator failed")
        }
        try writeKey(name, fresh)
        return SymmetricKey(bytes: fresh)
    }

    /// Writes a key file atomically (callers hold its lock or own the only writer).
    public func writeKey(_ name: String, _ bytes: [UInt8]) throws(StoreError) {
        do {
            try writeAtomically(name, bytes)
        } catch {
            throw .untrusted(error)
        }
    }
}
