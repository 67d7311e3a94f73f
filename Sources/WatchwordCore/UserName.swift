/// A user name that is safe to use as a file name in the state directory.
///
/// Checked before any path is built: 1–64 bytes; first byte a letter, digit or `_`;
/// then letters, digits, `.`, `_`, `-`, `@` (directory users such as `jo@corp`) and a final
/// `$` (Samba machine accounts). So no `/`, no `..`, no leading `-` or `.`, nothing outside
/// ASCII, no control bytes.
public struct UserName: Sendable, Hashable, Comparable, CustomStringConvertible {
    public static let maxLength = 64
    public let value: String

    public init(_ text: String) throws(UserNameError) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= Self.maxLength else { throw .tooLong(bytes.count) }
        for (index, byte) in bytes.enumerated() {
            let alnum =
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A)
                || (byte >= 0x61 && byte <= 0x7A)
            if index == 0 {
                guard alnum || byte == 0x5F else { throw .badFirstCharacter }
                continue
            }
            let allowed =
                alnum || byte == 0x2E || byte == 0x5F || byte == 0x2D || byte == 0x40
                || (byte == 0x24 && index == bytes.count - 1)
            guard allowed else { throw .badCharacter }
        }
        value = text
    }

    public var description: String { value }
    public static func < (a: UserName, b: UserName) -> Bool { a.value < b.value }
}

/// Why a user name was refused.
public enum UserNameError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    case tooLong(Int)
    case badFirstCharacter
    case badCharacter

    public var description: String {
        switch self {
        case .empty: "user name is empty"
        case .tooLong(let n): "user name is \(n) bytes long (at most \(UserName.maxLength))"
        case .badFirstCharacter: "user name must start with a letter, a digit or '_'"
        case .badCharacter:
            "user name may hold only ASCII letters, digits, '.', '_', '-', '@' (and a final '$')"
        }
    }
}
