/// One logical line of a PAM service file (`/etc/pam.d/NAME`), parsed the way libpam reads
/// it: `#` starts a comment anywhere, a trailing backslash joins the next physical line, a
/// control in brackets is one token.
public struct PAMLine: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Debian's `@include FILE`: every line of FILE, of the type being loaded.
        case include(String)
        case rule(PAMRule)
        /// A line libpam would keep but make fail when run (unknown type, missing control).
        case invalid(String)
    }

    /// The file, as a path inside the root.
    public let file: String
    /// The first physical line (1-based).
    public let number: Int
    /// The line without its comment, white space collapsed: what the admin wrote.
    public let text: String
    public let kind: Kind

    /// `FILE:LINE`.
    public var location: String { "\(file):\(number)" }
}

/// `[-]TYPE CONTROL MODULE ARGS...`
public struct PAMRule: Sendable, Equatable {
    /// A leading `-`: libpam skips the line silently when the module cannot be loaded.
    public let silent: Bool
    /// `auth`, `account`, `password` or `session` (lower case).
    public let type: String
    public let control: PAMControl
    /// The module path as written (`pam_unix.so` or an absolute path); for `include` and
    /// `substack`, the file named.
    public let module: String
    public let arguments: [String]

    /// The module's file name (`pam_unix.so` for `/lib/.../pam_unix.so`).
    public var moduleName: String { module.split(separator: "/").last.map(String.init) ?? module }
}

/// What libpam does with each return value of a module.
public enum PAMAction: Sendable, Equatable, Hashable {
    case ok, done, bad, die, ignore, reset
    /// Skip the next N modules.
    case jump(Int)
}

/// A control field: a keyword (`required`, ...) or `[value=action ...]`, or `include` /
/// `substack`.
public enum PAMControl: Sendable, Equatable {
    case include
    case substack
    /// Return value name (`success`, `auth_err`, ..., `default`) → action.
    case actions([String: PAMAction], written: String)

    public static func parse(_ token: String) -> PAMControl? {
        switch token.lowercased() {
        case "required":
            return .actions(["success": .ok, "new_authtok_reqd": .ok, "ignore": .ignore, "default": .bad], written: "required")
        case "requisite":
            return .actions(["success": .ok, "new_authtok_reqd": .ok, "ignore": .ignore, "default": .die], written: "requisite")
        case "optional":
            return .actions(["success": .ok, "new_authtok_reqd": .ok, "default": .ignore], written: "optional")
        case "sufficient":
            return .actions(["success": .done, "new_authtok_reqd": .done, "default": .ignore], written: "sufficient")
        case "include": return .include
        case "substack": return .substack
        default: break
        }
        guard token.hasPrefix("["), token.hasSuffix("]") else { return nil }
        var map: [String: PAMAction] = [:]
        for pair in token.dropFirst().dropLast().split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.lowercased() }
            guard parts.count == 2 else { continue }  // libpam logs and ignores such a pair
            let action: PAMAction
            switch parts[1] {
            case "ok": action = .ok
            case "done": action = .done
            case "bad": action = .bad
            case "die": action = .die
            case "ignore": action = .ignore
            case "reset": action = .reset
            default:
                guard let n = Int(parts[1]), n > 0 else { action = .bad; break }
                action = .jump(n)
            }
            map[parts[0]] = action
        }
        return .actions(map, written: token)
    }

    /// The action for a return value: its own, else `default`, else `bad` (libpam's rule for
    /// a bracketed control).
    public func action(for value: String) -> PAMAction {
        guard case .actions(let map, _) = self else { return .bad }
        return map[value] ?? map["default"] ?? .bad
    }

    /// The return values this control names explicitly (without `default`).
    public var namedValues: [String] {
        guard case .actions(let map, _) = self else { return [] }
        return map.keys.filter { $0 != "default" }.sorted()
    }

    public var written: String {
        switch self {
        case .include: "include"
        case .substack: "substack"
        case .actions(_, let written): written
        }
    }
}

/// Parsing PAM service files.
public enum PAMConfig {
    public static let types: Set<String> = ["auth", "account", "password", "session"]

    /// The logical lines of a file.
    public static func parse(_ text: String, file: String) -> [PAMLine] {
        var lines: [PAMLine] = []
        var pending = ""
        var start = 0
        let physical = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, raw) in physical.enumerated() {
            if pending.isEmpty { start = index + 1 }
            var content = Substring(raw)
            var continues = false
            if let hash = content.firstIndex(of: "#") {
                content = content[..<hash]
            } else if content.hasSuffix("\\") {
                content = content.dropLast()
                continues = true
            }
            pending += (pending.isEmpty ? "" : " ") + content
            if continues && index < physical.count - 1 { continue }
            let logical = pending
            pending = ""
            if let line = parseLine(logical, file: file, number: start) { lines.append(line) }
        }
        return lines
    }

    static func parseLine(_ logical: String, file: String, number: Int) -> PAMLine? {
        let tokens = tokenize(logical)
        guard let first = tokens.first else { return nil }
        let text = tokens.joined(separator: " ")
        if first == "@include" {
            guard tokens.count >= 2 else { return PAMLine(file: file, number: number, text: text, kind: .invalid("@include without a file")) }
            return PAMLine(file: file, number: number, text: text, kind: .include(tokens[1]))
        }
        var type = first.lowercased()
        let silent = type.hasPrefix("-")
        if silent { type.removeFirst() }
        guard types.contains(type) else {
            return PAMLine(file: file, number: number, text: text, kind: .invalid("unknown module type '\(first)'"))
        }
        guard tokens.count >= 2, let control = PAMControl.parse(tokens[1]) else {
            return PAMLine(file: file, number: number, text: text, kind: .invalid("no valid control field"))
        }
        guard tokens.count >= 3 else {
            return PAMLine(file: file, number: number, text: text, kind: .invalid("no module named"))
        }
        let arguments = tokens.dropFirst(3).map { token -> String in
            token.hasPrefix("[") && token.hasSuffix("]") ? String(token.dropFirst().dropLast()) : token
        }
        let rule = PAMRule(silent: silent, type: type, control: control, module: tokens[2], arguments: Array(arguments))
        return PAMLine(file: file, number: number, text: text, kind: .rule(rule))
    }

    /// Splits on white space; a token starting with `[` runs to the next `]`.
    static func tokenize(_ line: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        var inBracket = false
        for ch in line {
            if inBracket {
                current.append(ch)
                if ch == "]" {
                    inBracket = false
                    tokens.append(current)
                    current = ""
                }
            } else if ch == " " || ch == "\t" || ch == "\r" || ch == "\n" {
                if !current.isEmpty {
                    tokens.append(current)
                    current = ""
                }
            } else if ch == "[" && current.isEmpty {
                current.append(ch)
                inBracket = true
            } else {
                current.append(ch)
            }
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }
}
