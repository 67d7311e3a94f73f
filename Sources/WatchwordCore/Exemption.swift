#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why an `exempt_from=` value was refused.
public struct ExemptionError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// An IPv4 or IPv6 network, as `exempt_from=` names it: `10.0.0.0/8`, `2001:db8::/32`, or
/// one address (`192.0.2.7` is `192.0.2.7/32`).
public struct AddressRange: Sendable, Equatable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6).
    public let network: [UInt8]
    public let prefixLength: Int

    /// Refuses anything but an address literal and a decimal prefix length within its
    /// family, and a range with bits set past the prefix (`10.1.2.3/8` is a typo for
    /// something: which one is not guessed).
    public init(_ text: String) throws(ExemptionError) {
        let parts = text.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = AddressRange.address(String(parts[0]), unmapping: false) else {
            throw ExemptionError("exempt_from=\(text): not an IPv4 or IPv6 address or network")
        }
        let bits = address.count * 8
        var prefix = bits
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 3, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let n = Int(digits), n <= bits
            else {
                throw ExemptionError("exempt_from=\(text): the prefix length must be 0 to \(bits)")
            }
            prefix = n
        }
        for i in 0..<address.count {
            guard address[i] & ~Self.mask(byte: i, prefix: prefix) == 0 else {
                throw ExemptionError("exempt_from=\(text): has address bits set past the /\(prefix)")
            }
        }
        network = address
        prefixLength = prefix
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = network.count == 4 ? AF_INET : AF_INET6
        _ = network.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(text)/\(prefixLength)"
    }

    /// Whether `address` (4 or 16 bytes) lies in this network.
    public func contains(_ address: [UInt8]) -> Bool {
        guard address.count == network.count else { return false }
        for i in 0..<address.count {
            let mask = Self.mask(byte: i, prefix: prefixLength)
            if mask == 0 { break }
            if address[i] & mask != network[i] & mask { return false }
        }
        return true
    }

    /// The bits of byte `i` that a `/prefix` network fixes.
    private static func mask(byte i: Int, prefix: Int) -> UInt8 {
        let kept = max(0, min(8, prefix - i * 8))
        return kept == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - kept))
    }

    /// The bytes of an address literal, or nil for anything else (a host name, an IPv6
    /// zone such as `fe80::1%eth0`, an empty string). With `unmapping`, an IPv4-mapped
    /// IPv6 address (`::ffff:192.0.2.7`, as a dual-stack listener may report an IPv4
    /// client) is its IPv4 address.
    public static func address(_ text: String, unmapping: Bool = true) -> [UInt8]? {
        guard !text.isEmpty, text.utf8.count < 64 else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if unmapping, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return Array(bytes[12..<16])
        }
        return bytes
    }
}

/// The module line's `exempt_group=` and `exempt_from=`: logins they match are not asked
/// for a code and end as `exempt` (PAM_IGNORE, what `nullok` gives an unenrolled user).
public struct Exemptions: Sendable, Equatable {
    public var groups: [String]
    public var ranges: [AddressRange]

    public init(groups: [String] = [], ranges: [AddressRange] = []) {
        self.groups = groups
        self.ranges = ranges
    }

    /// Reads the module's values; a value that is not a network denies the login (the
    /// caller reports the error), so a typo never widens or silently drops an exemption.
    public init(groups: [String], from: [String]) throws(ExemptionError) {
        var ranges: [AddressRange] = []
        for text in from { ranges.append(try AddressRange(text)) }
        self.init(groups: groups, ranges: ranges)
    }

    public var isEmpty: Bool { groups.isEmpty && ranges.isEmpty }

    /// Why this login is exempt, or nil when it is not. `rhost` matches only as an address
    /// literal: a name (which whoever controls DNS chooses) or no remote host never does.
    /// `memberOf` answers whether the user is in a group (nil: no such group).
    public func reason(rhost: String, memberOf: (String) -> Bool?) -> String? {
        if !ranges.isEmpty, let address = AddressRange.address(rhost) {
            for range in ranges where range.contains(address) {
                return "exempt: from \(rhost) in \(range)"
            }
        }
        for group in groups where memberOf(group) == true {
            return "exempt: member of group \(group)"
        }
        return nil
    }
}

/// Whether the system's user database puts `user` in `group` (as primary or supplementary
/// group), or nil when there is no such group. A user the database does not know is in no
/// group.
public func systemUserIsMember(_ user: String, of group: String) -> Bool? {
    guard let entry = getgrnam(group) else { return nil }
    let gid = entry.pointee.gr_gid
    guard let account = getpwnam(user) else { return false }
    let primary = account.pointee.pw_gid
    if primary == gid { return true }
    var count: Int32 = 64
    while true {
        var gids = [gid_t](repeating: 0, count: Int(count))
        let wanted = count
        if getgrouplist(user, primary, &gids, &count) >= 0 {
            return gids.prefix(Int(count)).contains(gid)
        }
        // Too small: count now holds the number needed (it grew), else give up.
        guard count > wanted, count <= 65536 else { return false }
    }
}
