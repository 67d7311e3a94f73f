/// A value in the TOML subset the config file uses.
public enum TOMLValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case boolean(Bool)
    case array([TOMLValue])

    var typeName: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .boolean: "a boolean"
        case .array: "an array"
        }
    }
}

/// A parse error with the 1-based line it happened on.
public struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let message: String
    public var description: String { "line \(line): \(message)" }
}

/// A parsed document: every key by its full dotted path (`sms.twilio.from`), with its line,
/// and every table header, each in the order of the file.
///
/// Arrays searched front to back, not dictionaries: a config has a few dozen keys, and the
/// first use of `Dictionary<String, _>` in a process costs the helper, which is a new
/// process at every login, about 0.2 M instructions of run-time type lookup (a scan of
/// every conformance record for `String: Hashable`; BENCHMARKS.md).
public struct TOMLDocument: Sendable {
    public struct Entry: Sendable, Equatable {
        public let value: TOMLValue
        public let line: Int
    }
    public struct Key: Sendable, Equatable {
        public let path: String
        public let entry: Entry
    }
    public struct Table: Sendable, Equatable {
        public let path: String
        public let line: Int
    }
    public private(set) var keys: [Key] = []
    public private(set) var tables: [Table] = []

    /// The entry at `path`, or nil.
    public func entry(_ path: String) -> Entry? {
        for key in keys where key.path == path { return key.entry }
        return nil
    }

    /// Whether `path` names a key or a table already.
    func defines(_ path: String) -> Bool {
        entry(path) != nil || tables.contains { $0.path == path }
    }

    mutating func add(_ path: String, _ entry: Entry) { keys.append(Key(path: path, entry: entry)) }
    mutating func add(table path: String, line: Int) { tables.append(Table(path: path, line: line)) }
}

/// A strict parser for the part of TOML 1.0 that a config file needs: comments, `[table]`
/// headers with bare or quoted (dotted) keys, `key = value` with basic and literal strings,
/// decimal integers, booleans and arrays of those (across lines too).
///
/// Everything else — floats, dates, inline tables, `[[arrays of tables]]`, multi-line
/// strings — is refused with the line it stands on rather than half-understood.
public struct TOMLParser {
    private let bytes: [UInt8]
    private var index = 0
    private var line = 1

    public static let maxSize = 64 * 1024

    /// `["a", "b"]` as "a.b". A loop, not joined(separator:): that generic's first use
    /// costs every login 100 k instructions of runtime type lookup.
    static func dotted(_ parts: [String]) -> String {
        var path = ""
        for index in parts.indices { path += index == 0 ? parts[index] : "." + parts[index] }
        return path
    }

    public static func parse(_ text: [UInt8]) throws(TOMLError) -> TOMLDocument {
        var parser = TOMLParser(bytes: text)
        return try parser.document()
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private func fail(_ message: String) -> TOMLError { TOMLError(line: line, message: message) }

    private var atEnd: Bool { index >= bytes.count }
    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func document() throws(TOMLError) -> TOMLDocument {
        guard bytes.count <= Self.maxSize else {
            throw TOMLError(line: 1, message: "file is larger than \(Self.maxSize) bytes")
        }
        guard String(validating: bytes, as: UTF8.self) != nil else {
            // A newline byte is never part of a multi-byte sequence, so lines validate alone.
            let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            let bad = lines.firstIndex { String(validating: $0, as: UTF8.self) == nil } ?? 0
            throw TOMLError(line: bad + 1, message: "file is not valid UTF-8")
        }
        var document = TOMLDocument()
        var table: [String] = []
        // Skip a UTF-8 byte order mark.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
        while true {
            skipBlank()
            guard let byte = current else { break }
            switch byte {
            case UInt8(ascii: "\n"):
                index += 1
                line += 1
            case UInt8(ascii: "\r") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "\n"):
                index += 1  // CRLF: the newline is taken next time round
            case UInt8(ascii: "#"):
                try skipComment()
            case UInt8(ascii: "["):
                index += 1
                if current == UInt8(ascii: "[") { throw fail("arrays of tables ([[...]]) are not supported") }
                skipBlank()
                table = try key()
                skipBlank()
                guard current == UInt8(ascii: "]") else { throw fail("expected ']' to close the table header") }
                index += 1
                let path = Self.dotted(table)
                if document.defines(path) { throw fail("table [\(path)] is defined twice") }
                document.add(table: path, line: line)
                try endOfLine()
            default:
                let keyLine = line
                let path = Self.dotted(table + (try key()))
                skipBlank()
                guard current == UInt8(ascii: "=") else { throw fail("expected '=' after key '\(path)'") }
                index += 1
                skipBlank()
                let value: TOMLValue
                do {
                    value = try self.value()
                } catch {
                    throw TOMLError(line: error.line, message: "\(path): \(error.message)")
                }
                if document.defines(path) {
                    throw TOMLError(line: keyLine, message: "key '\(path)' is defined twice")
                }
                document.add(path, .init(value: value, line: keyLine))
                try endOfLine()
            }
        }
        return document
    }

    private mutating func skipBlank() {
        while let byte = current, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { index += 1 }
    }

    private mutating func skipComment() throws(TOMLError) {
        while let byte = current, byte != UInt8(ascii: "\n") {
            if byte < 0x20 && byte != UInt8(ascii: "\t") && byte != UInt8(ascii: "\r") {
                throw fail("control character in a comment")
            }
            index += 1
        }
    }

    /// After a header or a key/value pair: blanks, an optional comment, then a newline or the end.
    private mutating func endOfLine() throws(TOMLError) {
        skipBlank()
        if current == UInt8(ascii: "#") { try skipComment() }
        if current == UInt8(ascii: "\r") { index += 1 }
        guard atEnd || current == UInt8(ascii: "\n") else {
            throw fail("unexpected text after the value (one key = value per line)")
        }
    }

    /// A dotted key of bare (`A-Za-z0-9_-`) and quoted parts.
    private mutating func key() throws(TOMLError) -> [String] {
        var parts: [String] = []
        while true {
            skipBlank()
            guard let byte = current else { throw fail("expected a key") }
            if byte == UInt8(ascii: "\"") {
                parts.append(try basicString())
            } else if byte == UInt8(ascii: "'") {
                parts.append(try literalString())
            } else {
                let start = index
                while let b = current, isBareKeyByte(b) { index += 1 }
                guard index > start else {
                    throw fail("expected a key, found '\(printable(byte))'")
                }
                parts.append(String(decoding: bytes[start..<index], as: UTF8.self))
            }
            skipBlank()
            if current == UInt8(ascii: ".") {
                index += 1
                continue
            }
            return parts
        }
    }

    private func isBareKeyByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
            || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
    }

    private mutating func value() throws(TOMLError) -> TOMLValue {
        guard let byte = current else { throw fail("expected a value") }
        switch byte {
        case UInt8(ascii: "\""): return .string(try basicString())
        case UInt8(ascii: "'"): return .string(try literalString())
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "{"): throw fail("inline tables are not supported")
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            if matchWord("true") { return .boolean(true) }
            if matchWord("false") { return .boolean(false) }
            throw fail("unknown value (strings need quotes)")
        default:
            return try number()
        }
    }

    private mutating func matchWord(_ word: String) -> Bool {
        let w = Array(word.utf8)
        guard index + w.count <= bytes.count, Array(bytes[index..<index + w.count]) == w else { return false }
        let after = index + w.count < bytes.count ? bytes[index + w.count] : UInt8(ascii: " ")
        if isBareKeyByte(after) { return false }
        index += w.count
        return true
    }

    private mutating func number() throws(TOMLError) -> TOMLValue {
        let start = index
        while let b = current,
            isBareKeyByte(b) || b == UInt8(ascii: "+") || b == UInt8(ascii: ".") || b == UInt8(ascii: ":")
        {
            index += 1
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard !text.isEmpty else { throw fail("expected a value") }
        var digits = Substring(text)
        var negative = false
        if let sign = digits.first, sign == "+" || sign == "-" {
            negative = sign == "-"
            digits = digits.dropFirst()
        }
        let valid =
            !digits.isEmpty && digits.allSatisfy { $0.isASCII && ($0.isNumber || $0 == "_") }
            && digits.first != "_" && digits.last != "_" && !digits.contains("__")
            && !(digits.count > 1 && digits.first == "0")
        guard valid else {
            let numeric = digits.first.map { $0.isASCII && $0.isNumber } ?? false
            if digits == "inf" || digits == "nan"
                || (numeric && (text.contains(".") || text.lowercased().contains("e")))
            {
                throw fail("'\(text)': floats are not supported here; use a whole number")
            }
            if numeric && (text.contains(":") || text.filter({ $0 == "-" }).count >= 2) {
                throw fail("'\(text)': dates and times are not supported")
            }
            throw fail("'\(text)' is not a value (strings need quotes, numbers are decimal integers)")
        }
        let clean = digits.filter { $0 != "_" }
        guard var magnitude = Int64(clean) else { throw fail("'\(text)' is out of range") }
        if negative { magnitude = -magnitude }
        return .integer(magnitude)
    }

    private mutating func array() throws(TOMLError) -> TOMLValue {
        index += 1  // [
        var items: [TOMLValue] = []
        while true {
            try skipWhitespaceAndComments()
            guard let byte = current else { throw fail("unterminated array") }
            if byte == UInt8(ascii: "]") {
                index += 1
                break
            }
            items.append(try value())
            try skipWhitespaceAndComments()
            if current == UInt8(ascii: ",") {
                index += 1
                continue
            }
            try skipWhitespaceAndComments()
            guard current == UInt8(ascii: "]") else { throw fail("expected ',' or ']' in array") }
            index += 1
            break
        }
        if items.count > 256 { throw fail("array has more than 256 items") }
        return .array(items)
    }

    private mutating func skipWhitespaceAndComments() throws(TOMLError) {
        while let byte = current {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") {
                index += 1
            } else if byte == UInt8(ascii: "\n") {
                index += 1
                line += 1
            } else if byte == UInt8(ascii: "#") {
                try skipComment()
            } else {
                return
            }
        }
    }

    private mutating func literalString() throws(TOMLError) -> String {
        if bytes[index...].starts(with: Array("'''".utf8)) { throw fail("multi-line strings are not supported") }
        index += 1
        let start = index
        while let b = current, b != UInt8(ascii: "'") {
            if b == UInt8(ascii: "\n") || (b < 0x20 && b != UInt8(ascii: "\t")) || b == 0x7F {
                throw fail("unterminated string or control character in string")
            }
            index += 1
        }
        guard current == UInt8(ascii: "'") else { throw fail("unterminated string") }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        index += 1
        return text
    }

    private mutating func basicString() throws(TOMLError) -> String {
        if bytes[index...].starts(with: Array("\"\"\"".utf8)) { throw fail("multi-line strings are not supported") }
        index += 1
        var out: [UInt8] = []
        while true {
            guard let b = current else { throw fail("unterminated string") }
            if b == UInt8(ascii: "\"") {
                index += 1
                break
            }
            if b == UInt8(ascii: "\n") || (b < 0x20 && b != UInt8(ascii: "\t")) || b == 0x7F {
                throw fail("unterminated string or control character in string")
            }
            if b != UInt8(ascii: "\\") {
                out.append(b)
                index += 1
                continue
            }
            index += 1
            guard let e = current else { throw fail("unterminated string") }
            index += 1
            switch e {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "u"), UInt8(ascii: "U"):
                let count = e == UInt8(ascii: "u") ? 4 : 8
                guard index + count <= bytes.count,
                    let scalarValue = UInt32(String(decoding: bytes[index..<index + count], as: UTF8.self), radix: 16),
                    let scalar = Unicode.Scalar(scalarValue)
                else { throw fail("bad unicode escape in string") }
                index += count
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                throw fail("unknown escape '\\\(printable(e))' in string")
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func printable(_ b: UInt8) -> String {
        b >= 0x20 && b < 0x7F ? String(UnicodeScalar(b)) : "\\x" + String(b, radix: 16)
    }
}
