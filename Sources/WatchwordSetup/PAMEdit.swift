/// The changes `watchword enable` makes to a PAM service file, and how `disable` takes them
/// back out byte for byte.
///
/// Every line enable adds ends with `# added by watchword enable`; a line it takes out of
/// service is kept, prefixed with `#disabled by watchword enable: `. Removing exactly those
/// two marks gives back the file as it was, whatever else the admin changed meanwhile.
public enum PAMEdit {
    public static let addedMark = "# added by watchword enable"
    public static let disabledPrefix = "#disabled by watchword enable: "

    /// Where the module line goes relative to the `common-auth` include.
    public enum Placement: Sendable, Equatable {
        /// After it: the password first, then the code.
        case afterCommonAuth
        /// Instead of it (kept, commented out): the code only; sshd checked the key already.
        case replaceCommonAuth
    }

    /// The module line as an admin would write it by hand.
    public static func moduleText(options: [String]) -> String {
        (["auth       required   pam_watchword.so"] + options).joined(separator: " ")
    }

    /// The module line enable writes: the same, with its mark.
    public static func moduleLine(options: [String]) -> String {
        moduleText(options: options) + "   " + addedMark
    }

    /// The file with enable's changes taken out.
    public static func revert(_ bytes: [UInt8]) -> [UInt8] {
        var lines = ByteLines(bytes)
        var result: [ByteLines.Line] = []
        for line in lines.lines {
            let text = line.text
            if text.trimmingSpaces.hasSuffix(addedMark) && !text.hasPrefix("#") {
                if !line.terminated, !result.isEmpty { result[result.count - 1].terminated = false }
                continue
            }
            if text.hasPrefix(disabledPrefix) {
                result.append(ByteLines.Line(bytes: Array(line.bytes.dropFirst(disabledPrefix.utf8.count)), terminated: line.terminated))
                continue
            }
            result.append(line)
        }
        lines.lines = result
        return lines.joined
    }

    /// Whether the file carries any of enable's marks.
    public static func hasChanges(_ bytes: [UInt8]) -> Bool { revert(bytes) != bytes }

    /// Lines (1-based numbers, text) that name pam_watchword.so and were not added by enable.
    public static func handWrittenModuleLines(_ bytes: [UInt8], file: String) -> [PAMLine] {
        PAMConfig.parse(String(decoding: revert(bytes), as: UTF8.self), file: file).filter { line in
            if case .rule(let rule) = line.kind { return rule.moduleName == InstalledLayout.moduleName }
            return false
        }
    }

    /// Adds the module line to a file without enable's marks.
    ///
    /// The anchor is the first line that includes `common-auth` (`@include common-auth`,
    /// `auth include common-auth` or `auth substack common-auth`).
    public static func apply(_ bytes: [UInt8], placement: Placement, options: [String], file: String) throws(SetupError) -> [UInt8] {
        var lines = ByteLines(bytes)
        guard let anchor = lines.lines.firstIndex(where: { includesCommonAuth($0.text) }) else {
            throw SetupError(
                "\(file) has no '@include common-auth' line to put pam_watchword.so after; add '\(moduleText(options: options))' by hand where the password is checked"
            )
        }
        let added = ByteLines.Line(bytes: Array(moduleLine(options: options).utf8), terminated: lines.lines[anchor].terminated)
        switch placement {
        case .afterCommonAuth:
            lines.lines[anchor].terminated = true
            lines.lines.insert(added, at: anchor + 1)
        case .replaceCommonAuth:
            let original = lines.lines[anchor]
            lines.lines[anchor] = ByteLines.Line(bytes: Array(disabledPrefix.utf8) + original.bytes, terminated: true)
            lines.lines.insert(added, at: anchor + 1)
        }
        return lines.joined
    }

    static func includesCommonAuth(_ text: String) -> Bool {
        guard let line = PAMConfig.parseLine(String(text.prefix { $0 != "#" }), file: "", number: 0) else { return false }
        switch line.kind {
        case .include(let name): return name == "common-auth"
        case .rule(let rule):
            guard rule.type == "auth" else { return false }
            switch rule.control {
            case .include, .substack: return rule.module == "common-auth"
            default: return false
            }
        default: return false
        }
    }
}

/// A file split into lines without losing a byte: each line knows whether a newline ended it.
struct ByteLines {
    struct Line: Equatable {
        var bytes: [UInt8]
        var terminated: Bool
        var text: String { String(decoding: bytes, as: UTF8.self) }
    }
    var lines: [Line] = []

    init(_ bytes: [UInt8]) {
        var current: [UInt8] = []
        for byte in bytes {
            if byte == 0x0A {
                lines.append(Line(bytes: current, terminated: true))
                current = []
            } else {
                current.append(byte)
            }
        }
        if !current.isEmpty { lines.append(Line(bytes: current, terminated: false)) }
    }

    var joined: [UInt8] {
        var out: [UInt8] = []
        for line in lines {
            out += line.bytes
            if line.terminated { out.append(0x0A) }
        }
        return out
    }
}
