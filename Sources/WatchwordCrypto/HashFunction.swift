import COpenSSL

/// A cryptographic hash function usable as the algorithm parameter of `HMAC`.
///
/// Conformances are provided for `Insecure.SHA1`, `SHA256` and `SHA512`. The
/// implementation is OpenSSL's; a conforming type outside this module works
/// only if OpenSSL knows a digest by its `name`.
public protocol HashFunction: Sendable {
    /// The length of a digest (and so of an HMAC tag) in bytes.
    static var digestByteCount: Int { get }
    /// The lowercase algorithm name, as OpenSSL and configuration files spell it ("sha1", "sha256", "sha512").
    static var name: String { get }
}

/// Hash functions whose OpenSSL digest is known statically, so no name lookup is needed.
protocol OpenSSLDigest: HashFunction {
    /// OpenSSL's `const EVP_MD *` for this function; a static object that is never freed.
    static var evpMD: OpaquePointer { get }
}

extension HashFunction {
    /// The OpenSSL message digest implementing this hash function.
    static var messageDigest: OpaquePointer {
        if let known = Self.self as? any OpenSSLDigest.Type {
            return known.evpMD
        }
        guard let md = EVP_get_digestbyname(name) else {
            preconditionFailure("OpenSSL has no digest named \(name)")
        }
        return md
    }
}

/// Algorithms that are no longer fit for general use but still required by a protocol.
///
/// SHA-1 lives here because its collision resistance is broken. HMAC-SHA1, which
/// RFC 4226 and RFC 6238 use and nearly every authenticator app defaults to, does
/// not rely on collision resistance and remains sound for one-time passwords.
public enum Insecure {
    /// SHA-1 (FIPS 180-4): a 20-byte digest.
    public enum SHA1: HashFunction, OpenSSLDigest {
        public static var digestByteCount: Int { 20 }
        public static var name: String { "sha1" }
        static var evpMD: OpaquePointer { EVP_sha1() }
    }
}

/// SHA-256 (FIPS 180-4): a 32-byte digest.
public enum SHA256: HashFunction, OpenSSLDigest {
    public static var digestByteCount: Int { 32 }
    public static var name: String { "sha256" }
    static var evpMD: OpaquePointer { EVP_sha256() }
}

/// SHA-512 (FIPS 180-4): a 64-byte digest.
public enum SHA512: HashFunction, OpenSSLDigest {
    public static var digestByteCount: Int { 64 }
    public static var name: String { "sha512" }
    static var evpMD: OpaquePointer { EVP_sha512() }
}
