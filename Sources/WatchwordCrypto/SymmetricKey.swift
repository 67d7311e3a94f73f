import COpenSSL

/// Secret key material for `HMAC`.
///
/// The bytes are copied into storage owned by the key and wiped with
/// `OPENSSL_cleanse` when the last copy of the key goes away, so the key does not
/// linger in freed heap memory. (The array passed to `init(bytes:)` is the
/// caller's to wipe, e.g. with `secureZero`.)
public struct SymmetricKey: Sendable {
    private let storage: Storage

    /// Creates a key from a copy of `bytes`. Any length is allowed, including zero.
    public init(bytes: [UInt8]) {
        storage = Storage(bytes)
    }

    /// The length of the key in bytes.
    public var byteCount: Int { storage.count }

    /// Calls `body` with the raw key bytes; the pointer must not escape `body`.
    ///
    /// The buffer always has a non-nil base address, even for an empty key, so it
    /// can be handed to C functions that reject NULL.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.base, count: storage.count))
    }
}

extension SymmetricKey {
    /// Heap storage that is wiped on deallocation.
    ///
    /// `@unchecked Sendable` is sound: the memory is written only in `init` and
    /// `deinit`, and is read-only for the whole time the object can be shared.
    private final class Storage: @unchecked Sendable {
        let base: UnsafeMutableRawPointer
        let count: Int
        private let allocated: Int

        init(_ bytes: [UInt8]) {
            count = bytes.count
            // At least one byte, so `base` is a real pointer even for an empty key.
            allocated = max(bytes.count, 1)
            base = .allocate(byteCount: allocated, alignment: 1)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: allocated)
            bytes.withUnsafeBytes { source in
                if let from = source.baseAddress {
                    base.copyMemory(from: from, byteCount: source.count)
                }
            }
        }

        deinit {
            OPENSSL_cleanse(base, allocated)
            base.deallocate()
        }
    }
}
