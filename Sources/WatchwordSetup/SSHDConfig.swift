#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore

/// One directive of an sshd_config file.
public struct SSHDLine: Sendable, Equatable {
    /// The file, as a path inside the root.
    public let file: String
    public let number: Int
    /// Lower case.
    public let keyword: String
    public let arguments: [String]
    /// The line as written.
    public let text: String

    public var location: String { "\(file):\(number)" }
    public var value: String { arguments.joined(separator: " ") }
}

/// sshd_config as sshd reads it, with every `Include` followed and flattened into one file
/// that means the same: the global lines in order, then the `Match` blocks in order.
///
/// sshd uses the first value it reads for most keywords, and a Match block's values, when it
/// matches, override the global ones wherever the block stands. So moving the blocks to the
/// end keeps the meaning, and lets sshd check the whole thing with `sshd -t -f FILE` —
/// which is how `--root` trees and not-yet-written drop-ins are validated: the Include
/// paths inside are resolved against the root here, not against `/` by sshd.
public struct SSHDConfig: Sendable {
    public struct MatchBlock: Sendable {
        public let header: SSHDLine
        public var lines: [SSHDLine]
    }

    public private(set) var global: [SSHDLine] = []
    public private(set) var matchBlocks: [MatchBlock] = []
    /// Every file read, in order.
    public private(set) var files: [String] = []
    /// Include lines that matched nothing, and the like.
    public private(set) var notes: [String] = []

    /// sshd's limit on nested includes (SERVCONF_MAX_DEPTH).
    static let maxDepth = 16

    /// Reads the main file and everything it includes.
    ///
    /// - Parameters:
    ///   - read: a file's text by inner path, nil when missing.
    ///   - glob: the inner paths matching a pattern, sorted.
    ///   - overrides: files to read as given instead of from disk (nil: as if missing) — a
    ///     drop-in about to be written or removed.
    public static func load(
        main: String = InstalledLayout.sshdConfig, read: (String) throws(SetupError) -> String?,
        glob: (String) -> [String], overrides: [String: String?] = [:]
    ) throws(SetupError) -> SSHDConfig {
        var config = SSHDConfig()
        func contents(_ path: String) throws(SetupError) -> String? {
            if let override = overrides[path] { return override }
            return try read(path)
        }
        func expand(_ pattern: String) -> [String] {
            var paths = Set(glob(pattern))
            for (path, text) in overrides {
                if text == nil {
                    paths.remove(path)
                } else if fnmatch(pattern, path, FNM_PATHNAME) == 0 {
                    paths.insert(path)
                }
            }
            return paths.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        }
        guard let text = try contents(main) else {
            throw SetupError("\(main) does not exist: is openssh-server installed?")
        }
        try config.process(
            text, file: main, block: nil, depth: 0, contents: contents, expand: expand)
        return config
    }

    private mutating func process(
        _ text: String, file: String, block: Int?, depth: Int,
        contents: (String) throws(SetupError) -> String?, expand: (String) -> [String]
    ) throws(SetupError) {
        files.append(file)
        var current = block
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard let line = Self.parseLine(String(raw), file: file, number: index + 1) else { continue }
            switch line.keyword {
            case "match":
                matchBlocks.append(MatchBlock(header: line, lines: []))
                current = matchBlocks.count - 1
            case "include":
                guard depth + 1 < Self.maxDepth else {
                    throw SetupError("\(line.location): Include nested more than \(Self.maxDepth) deep")
                }
                for argument in line.arguments {
                    if argument.hasPrefix("~") {
                        notes.append("\(line.location): Include \(argument) (a home directory) is not followed")
                        continue
                    }
                    let pattern = argument.hasPrefix("/") ? argument : "/etc/ssh/" + argument
                    let paths = expand(pattern)
                    if paths.isEmpty { notes.append("\(line.location): Include \(argument) matches no file") }
                    for path in paths {
                        guard let included = try contents(path) else { continue }
                        let blocksBefore = matchBlocks.count
                        try process(included, file: path, block: current, depth: depth + 1, contents: contents, expand: expand)
                        // A Match inside the included file ends with it; the lines after the
                        // Include belong to the including file's block again.
                        if matchBlocks.count != blocksBefore, let open = current {
                            matchBlocks.append(MatchBlock(header: matchBlocks[open].header, lines: []))
                            current = matchBlocks.count - 1
                        }
                    }
                }
            default:
                if let current {
                    matchBlocks[current].lines.append(line)
                } else {
                    global.append(line)
                }
            }
        }
    }

    /// Parses one line: `Keyword value...` or `Keyword=value`; quotes group words; `#` at
    /// the start of a word starts a comment.
    public static func parseLine(_ raw: String, file: String, number: Int) -> SSHDLine? {
        func isSpace(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\r" || c == "\u{0C}" }
        var rest = Substring(raw).drop(while: isSpace)
        guard let first = rest.first, first != "#" else { return nil }
        let keyword = rest.prefix { !isSpace($0) && $0 != "=" }
        rest = rest.dropFirst(keyword.count).drop(while: isSpace)
        if rest.first == "=" { rest = rest.dropFirst().drop(while: isSpace) }
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        for ch in rest {
            if let q = quote {
                if ch == q { quote = nil } else { current.append(ch) }
            } else if isSpace(ch) {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else if ch == "#" && !inWord {
                break
            } else if ch == "\"" || ch == "'" {
                quote = ch
                inWord = true
            } else {
                current.append(ch)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return SSHDLine(
            file: file, number: number, keyword: keyword.lowercased(), arguments: words, text: raw.trimmingSpaces)
    }

    /// The config as one file for `sshd -t -f`. With `dropHostKeys`, HostKey lines are left
    /// out (a `--root` tree's keys are not this machine's; the caller passes `-h`).
    public func flattened(dropHostKeys: Bool = false) -> String {
        var out = "# Flattened by watchword from \(files.first ?? "sshd_config") for sshd -t\n"
        for line in global where !(dropHostKeys && line.keyword == "hostkey") {
            out += line.text + "\n"
        }
        for block in matchBlocks {
            out += block.header.text + "\n"
            for line in block.lines { out += "  " + line.text + "\n" }
        }
        return out
    }

    /// Keywords that mean the same setting.
    static func aliases(_ keyword: String) -> Set<String> {
        switch keyword {
        case "kbdinteractiveauthentication", "challengeresponseauthentication":
            return ["kbdinteractiveauthentication", "challengeresponseauthentication"]
        default:
            return [keyword]
        }
    }

    /// The global line sshd takes a keyword's value from (the first one).
    public func firstGlobal(_ keyword: String) -> SSHDLine? {
        let names = Self.aliases(keyword)
        return global.first { names.contains($0.keyword) }
    }

    /// Every global line setting a keyword, in order.
    public func allGlobal(_ keyword: String) -> [SSHDLine] {
        let names = Self.aliases(keyword)
        return global.filter { names.contains($0.keyword) }
    }

    /// Match blocks that set a keyword: (block header, line).
    public func matchSettings(_ keyword: String) -> [(SSHDLine, SSHDLine)] {
        let names = Self.aliases(keyword)
        return matchBlocks.flatMap { block in block.lines.filter { names.contains($0.keyword) }.map { (block.header, $0) } }
    }
}

/// The drop-in `watchword enable sshd` writes.
public enum SSHDDropIn {
    public static let mark = "# Written by 'watchword enable sshd'"

    /// The settings it makes, keyword (lower case, as `sshd -T` prints them) → value.
    public static func settings(withPublickey: Bool) -> [(String, String)] {
        [
            ("usepam", "yes"),
            ("kbdinteractiveauthentication", "yes"),
            ("authenticationmethods", withPublickey ? "publickey,keyboard-interactive" : "keyboard-interactive"),
        ]
    }

    public static func content(withPublickey: Bool) -> String {
        let methods = withPublickey ? "publickey,keyboard-interactive" : "keyboard-interactive"
        return """
            \(mark); 'watchword disable sshd' removes it.
            # sshd takes the first value it reads for each keyword, and sshd_config includes
            # this directory near its top, so these lines win over the ones further down.
            # Logins: \(withPublickey ? "a public key, then the code (PAM asks only for the code)" : "the password, then the code (both through PAM)").
            UsePAM yes
            KbdInteractiveAuthentication yes
            AuthenticationMethods \(methods)

            """
    }

    public static func isOurs(_ text: String) -> Bool { text.hasPrefix(mark) }
}

/// `sshd -T` output: keyword (lower case) → value.
public struct SSHDEffective: Sendable, Equatable {
    public let values: [String: String]

    public init(output: String) {
        var values: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard let key = parts.first else { continue }
            let k = key.lowercased()
            if values[k] == nil { values[k] = parts.count > 1 ? String(parts[1]) : "" }
        }
        self.values = values
    }

    public subscript(_ key: String) -> String? { values[key] }

    /// The allowed ways to log in: each an ordered list of methods. `AuthenticationMethods
    /// any` means every enabled method on its own.
    public var methodLists: [[String]] {
        let enabled = enabledMethods
        let configured = values["authenticationmethods"] ?? "any"
        if configured == "any" { return enabled.map { [$0] } }
        return configured.split(separator: " ").map { list in
            list.split(separator: ",").map { String($0.split(separator: ":").first ?? $0) }
        }.filter { list in list.allSatisfy { enabled.contains($0) } }
    }

    /// The methods this sshd offers at all.
    public var enabledMethods: [String] {
        var methods: [String] = []
        if values["pubkeyauthentication"] == "yes" { methods.append("publickey") }
        if values["passwordauthentication"] == "yes" { methods.append("password") }
        if values["kbdinteractiveauthentication"] == "yes" { methods.append("keyboard-interactive") }
        if values["hostbasedauthentication"] == "yes" { methods.append("hostbased") }
        if values["gssapiauthentication"] == "yes" { methods.append("gssapi-with-mic") }
        return methods
    }
}

/// Runs the machine's sshd over a (flattened) config: `sshd -t` and `sshd -T`.
public struct SSHDRunner {
    public let root: SystemRoot
    public let sshd: String

    public init(root: SystemRoot) throws(SetupError) {
        guard let sshd = Subprocess.find("sshd") else {
            throw SetupError("sshd is not installed (no sshd on PATH or in /usr/sbin)")
        }
        self.root = root
        self.sshd = sshd
    }

    /// `sshd -t` (test) or `sshd -T` (print effective settings) over `config`. On this
    /// machine's root with `config` nil, sshd reads its own files; otherwise the config is
    /// flattened into a private temporary file, and with `--root` the tree's host keys are
    /// replaced by a throwaway one.
    public func run(_ mode: String, config: SSHDConfig?) throws(SetupError) -> ProgramResult {
        // sshd refuses to test without its privilege separation directory; its own start-up
        // script makes it the same way.
        if access("/run/sshd", F_OK) != 0 { mkdir("/run/sshd", 0o755) }
        guard let config else { return try Subprocess.run([sshd, mode]) }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = directory.path + "/sshd_config"
        var argv = [sshd, mode, "-f", file]
        if !root.isHost {
            guard let keygen = Subprocess.find("ssh-keygen") else { throw SetupError("ssh-keygen is not installed") }
            let key = directory.path + "/host_key"
            let made = try Subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", key])
            guard made.succeeded else { throw SetupError("ssh-keygen failed: \(made.message)") }
            argv += ["-h", key]
        }
        try directory.write("sshd_config", config.flattened(dropHostKeys: !root.isHost))
        return try Subprocess.run(argv)
    }
}

/// A private directory under /tmp (root, 0700), removed with what is in it.
struct TemporaryDirectory {
    let path: String

    init() throws(SetupError) {
        var template = Array("/tmp/watchword-setup-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw SetupError("mkdtemp: \(String(cString: strerror(errno)))") }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func write(_ name: String, _ text: String) throws(SetupError) {
        let full = path + "/" + name
        let fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SetupError("cannot create \(full): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { raw in retryingOnInterrupt { Glibc.write(fd, raw.baseAddress, raw.count) } }
            guard n > 0 else { throw SetupError("cannot write \(full): \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    func remove() {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name != "." && name != ".." { unlink(path + "/" + name) }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}
