#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore

/// A file another tool wrote (a `~/.google_authenticator`, pam_oath's users file), read
/// once for import. Such a file may belong to the user it describes, so it is opened
/// without following a final symlink and without blocking on a FIFO, must be a regular
/// file of bounded size, and its owner and mode come from the same descriptor.
public struct ForeignFile: Sendable {
    public static let maxSize = 1 << 20

    public let path: String
    public let bytes: [UInt8]
    public let ownerUID: UInt32
    public let mode: UInt32

    /// A file's contents as if read from `path` (tests, fuzzing).
    public init(path: String, bytes: [UInt8], ownerUID: UInt32 = 0, mode: UInt32 = 0o600) {
        self.path = path
        self.bytes = bytes
        self.ownerUID = ownerUID
        self.mode = mode
    }

    /// Whether group or other may read it (the secret may be known to others).
    public var readableByOthers: Bool { mode & 0o044 != 0 }

    /// Reads `path`; the error names the path and the reason.
    public static func read(_ path: String, limit: Int = maxSize) throws(ForeignFileError) -> ForeignFile {
        // open(2) O_NOFOLLOW | O_NONBLOCK: a symlink or a FIFO is refused, never followed or waited on.
        let fd = path.withCString { Glibc.open($0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
        guard fd >= 0 else {
            let code = errno
            if code == ELOOP { throw ForeignFileError(path, "is a symbolic link (refused; give the real file)") }
            throw ForeignFileError(path, "\(String(cString: strerror(code)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ForeignFileError(path, "\(String(cString: strerror(errno)))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw ForeignFileError(path, "not a regular file") }
        guard st.st_size <= limit else { throw ForeignFileError(path, "\(st.st_size) bytes, larger than \(limit)") }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { raw in retryingOnInterrupt { Glibc.read(fd, raw.baseAddress, raw.count) } }
            if n < 0 { throw ForeignFileError(path, "\(String(cString: strerror(errno)))") }
            if n == 0 { break }
            bytes += buffer[0..<n]
            guard bytes.count <= limit else { throw ForeignFileError(path, "larger than \(limit) bytes") }
        }
        for i in buffer.indices { buffer[i] = 0 }
        return ForeignFile(path: path, bytes: bytes, ownerUID: st.st_uid, mode: st.st_mode & 0o7777)
    }

    /// The file's lines without their line ends (`\n`, or `\r\n`), numbered from 1;
    /// nil when the file is not UTF-8 text.
    public func lines() -> [(number: Int, text: Substring)]? {
        guard !bytes.contains(0), String(validating: bytes, as: UTF8.self) != nil else { return nil }
        // Split the bytes, not the String: to Swift "\r\n" is one Character, which is not
        // "\n", so a CRLF file would be one long line.
        var parts = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        if parts.last?.isEmpty == true { parts.removeLast() }
        return parts.enumerated().map { index, line in
            let text = line.last == 0x0D ? line.dropLast() : line
            return (index + 1, Substring(String(decoding: text, as: UTF8.self)))
        }
    }
}

/// A source file that could not be read.
public struct ForeignFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    init(_ path: String, _ reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(path): \(reason)" }
}

/// Something wrong (or worth knowing) about one place in an import source.
public struct ImportProblem: Sendable, Equatable {
    public let path: String
    /// The line it concerns, or nil when it concerns the whole file.
    public let line: Int?
    public let message: String

    /// `FILE:LINE`, or `FILE`.
    public var source: String { line.map { "\(path):\($0)" } ?? path }
}

/// What parsing the import sources found besides the tokens.
public struct ImportProblems: Sendable {
    public var errors: [ImportProblem] = []
    public var warnings: [ImportProblem] = []

    public init() {}

    public mutating func error(_ path: String, line: Int? = nil, _ message: String) {
        errors.append(ImportProblem(path: path, line: line, message: message))
    }

    public mutating func warn(_ path: String, line: Int? = nil, _ message: String) {
        warnings.append(ImportProblem(path: path, line: line, message: message))
    }

    /// Both lists in file order (as the files were first named), then line order.
    public mutating func sort() {
        var order: [String: Int] = [:]
        for p in errors + warnings where order[p.path] == nil { order[p.path] = order.count }
        func sorted(_ list: [ImportProblem]) -> [ImportProblem] {
            list.enumerated().sorted {
                let a = (order[$0.element.path]!, $0.element.line ?? 0, $0.offset)
                let b = (order[$1.element.path]!, $1.element.line ?? 0, $1.offset)
                return a < b
            }.map(\.element)
        }
        errors = sorted(errors)
        warnings = sorted(warnings)
    }
}

/// Text from a foreign file made safe to quote in a message: printable ASCII only, bounded.
/// Only ever used for fields that are not secret (option names, token types, user names).
public func quoted(_ text: Substring, limit: Int = 40) -> String {
    var out = ""
    for scalar in text.unicodeScalars.prefix(limit) {
        out += scalar.value >= 0x20 && scalar.value < 0x7F ? String(scalar) : "?"
    }
    if text.unicodeScalars.count > limit { out += "…" }
    return "'\(out)'"
}

/// A decimal number of ASCII digits only (no sign, no spaces), or nil.
public func decimal(_ text: Substring) -> UInt64? {
    guard !text.isEmpty, text.utf8.count <= 20, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
    return UInt64(text)
}
