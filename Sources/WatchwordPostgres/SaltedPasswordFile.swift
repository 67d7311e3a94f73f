import WatchwordCore
import WatchwordCrypto

/// SCRAM's salted password, kept in this host's state directory (`DIR/db-scram`, root 0600)
/// so that a login does not pay the server's 4096 PBKDF2-SHA256 rounds (2–4 ms here) every
/// time. Like the password file it lets its reader log in to the database as watchword, and
/// nothing more; it is keyed to the salt, the round count and a hash of the password, so a
/// new password or a new verifier on the server makes it be derived again.
public final class SaltedPasswordFile: SaltedPasswordCache {
    public static let fileName = "db-scram"
    let root: SecureDirectory

    public init(root: SecureDirectory) { self.root = root }

    private static func tag(_ salt: [UInt8], _ iterations: Int, _ password: [UInt8]) -> String {
        let message = Array("watchword-scram 1".utf8) + [0] + salt + [0] + Array(String(iterations).utf8) + [0] + password
        return Hex.encode(SHA256.hash(message))
    }

    public func lookup(salt: [UInt8], iterations: Int, password: [UInt8]) -> [UInt8]? {
        guard let bytes = try? root.read(Self.fileName, limit: 1024) else { return nil }
        let parts = String(decoding: bytes, as: UTF8.self).split(separator: " ")
        guard parts.count == 2, parts[0] == Substring(Self.tag(salt, iterations, password)),
            let salted = Hex.decode(String(parts[1].prefix { $0 != "\n" })), salted.count == 32
        else { return nil }
        return salted
    }

    public func store(salt: [UInt8], iterations: Int, password: [UInt8], salted: [UInt8]) {
        let line = "\(Self.tag(salt, iterations, password)) \(Hex.encode(salted))\n"
        // A lost write only costs the next login one derivation.
        try? root.writeAtomically(Self.fileName, Array(line.utf8), durable: false)
    }
}
