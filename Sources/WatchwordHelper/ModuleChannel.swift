#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCore
import WatchwordCrypto

/// What the module says about the login before anything else.
struct Header {
    var nonce = ""
    var user = ""
    var service = ""
    var rhost = ""
    var stateDir = ""
    var config = ""
    /// The module line named the config (`config=`): it must exist.
    var configRequired = false
    var debug = false
    /// The module's `timeout=`: the longest it waits for each message; bounds the database.
    var timeout = 30
    /// The module's `enroll_at_login`: a user with no token is offered one.
    var enrollAtLogin = false
    /// The module line's `exempt_group=` and `exempt_from=` values, in order.
    var exemptGroups: [String] = []
    var exemptFrom: [String] = []
    /// What the module's user lookup found (`account NAME`, or `account` alone for no such
    /// account); nil when the header has no `account` line and the helper looks it up.
    var account: Account?
    /// The header as it arrived, for the dynamic helper when this one hands the login over.
    var bytes: [UInt8] = []

    enum Account: Equatable {
        /// The user database's own spelling of the name (`pw_name`).
        case exists(canonical: String)
        case missing
    }
}

struct ProtocolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The socket to the module: bounded line reads, exact byte reads, and writes that cannot
/// raise SIGPIPE.
struct ModuleChannel {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var outgoing: [UInt8] = []
    static let maxLine = 4096
    static let maxAnswer = 4096

    init(fd: Int32) { self.fd = fd }

    /// A channel whose first bytes were read elsewhere (the header the static helper read
    /// before handing the login over).
    init(fd: Int32, preloaded: [UInt8]) {
        self.fd = fd
        buffer = preloaded
    }

    /// Nothing read and not yet consumed.
    var isDrained: Bool { buffer.isEmpty }

    /// Reads more bytes into the buffer; false at end of stream or on error.
    private mutating func fill() -> Bool {
        let fd = fd
        return appendRead(to: &buffer, capacity: 4096) { chunk, count in
            retryingOnInterrupt { recv(fd, chunk, count, 0) }
        } > 0
    }

    mutating func readLine() throws -> [UInt8] {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                return line
            }
            guard buffer.count <= Self.maxLine else { throw ProtocolError("line too long") }
            guard fill() else { throw ProtocolError("the module closed the connection") }
        }
    }

    mutating func readBytes(_ count: Int) throws -> [UInt8] {
        while buffer.count < count {
            guard fill() else { throw ProtocolError("the module closed the connection") }
        }
        let bytes = Array(buffer[..<count])
        buffer.removeFirst(count)
        return bytes
    }

    /// Queues one line. Lines go out together when the helper next waits for the module
    /// (`flush`, before a read and at the end): one wake-up of the module per turn instead
    /// of one per line, which on a VM costs more than the lines themselves.
    mutating func send(_ line: String) {
        outgoing += Array(line.utf8)
        outgoing.append(0x0A)
    }

    /// Writes every queued line.
    mutating func flush() {
        defer { outgoing.removeAll(keepingCapacity: true) }
        outgoing.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = retryingOnInterrupt {
                    Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                }
                if n <= 0 { return }
                offset += n
            }
        }
    }

    mutating func readHeader() throws -> Header {
        var header = Header()
        func nextLine() throws -> [UInt8] {
            let line = try readLine()
            header.bytes += line + [0x0A]
            return line
        }
        guard try nextLine().elementsEqual("WATCHWORD 1".utf8) else {
            throw ProtocolError("expected 'WATCHWORD 1'")
        }
        var seen: [String] = [] // at most 48; an array, as a Set's first use costs 130 k instructions
        var lines = 0
        while true {
            let line = try nextLine()
            if line.elementsEqual("end".utf8) { break }
            // Split as bytes (by Character, a grapheme test per byte).
            let space = line.firstIndex(of: 0x20) ?? line.endIndex
            let key = String(decoding: line[..<space], as: UTF8.self)
            let value = space < line.endIndex ? String(decoding: line[(space + 1)...], as: UTF8.self) : ""
            lines += 1
            guard lines <= 48 else { throw ProtocolError("too many header lines") }
            switch key {
            case "exempt_group", "exempt_from":
                // May repeat, as the option may on the module line.
                guard !value.isEmpty, !value.contains(" ") else { throw ProtocolError("bad \(key)") }
                if key == "exempt_group" { header.exemptGroups.append(value) } else { header.exemptFrom.append(value) }
                guard header.exemptGroups.count <= 16, header.exemptFrom.count <= 16 else {
                    throw ProtocolError("too many \(key) lines")
                }
                continue
            default:
                break
            }
            guard !seen.contains(key) else { throw ProtocolError("'\(key)' twice") }
            seen.append(key)
            switch key {
            case "nonce":
                guard Hex.isLowercase(value, count: 32) else { throw ProtocolError("bad nonce") }
                header.nonce = value
            case "user": header.user = value
            case "service": header.service = value
            case "rhost": header.rhost = value
            case "state_dir": header.stateDir = value
            case "config": header.config = value
            case "config_required":
                guard value == "0" || value == "1" else { throw ProtocolError("bad config_required") }
                header.configRequired = value == "1"
            case "enroll_at_login":
                guard value == "0" || value == "1" else { throw ProtocolError("bad enroll_at_login") }
                header.enrollAtLogin = value == "1"
            case "debug": header.debug = value == "1"
            case "account":
                guard !value.contains(" ") else { throw ProtocolError("bad account") }
                header.account = value.isEmpty ? .missing : .exists(canonical: value)
            case "timeout":
                guard let seconds = Int(value), (1...600).contains(seconds) else { throw ProtocolError("bad timeout") }
                header.timeout = seconds
            default: throw ProtocolError("unknown header '\(key)'")
            }
        }
        for required in ["nonce", "user", "service", "state_dir", "config", "config_required"] where !seen.contains(required) {
            throw ProtocolError("'\(required)' missing")
        }
        return header
    }
}

/// The login flow's conversation, carried over the module's socket.
struct SocketConversation: Conversation {
    var channel: ModuleChannel
    let debug: Bool

    /// Protocol lines carry printable text only and stay well under the module's 1024 bytes.
    private func clean(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if out.utf8.count > 900 { return out + "…" }
            out.unicodeScalars.append(scalar.value < 0x20 || scalar.value == 0x7F ? "?" : scalar)
        }
        return out
    }

    mutating func prompt(_ text: String) -> Answer {
        channel.send("prompt " + clean(text))
        channel.flush()
        guard let reply = try? channel.readLine() else { return .failed }
        let line = String(decoding: reply, as: UTF8.self)
        if line == "too-long" { return .tooLong }
        if line == "conv-error" { return .failed }
        guard line.hasPrefix("answer "), let count = Int(line.dropFirst(7)), count >= 0,
            count <= ModuleChannel.maxAnswer, let bytes = try? channel.readBytes(count)
        else { return .failed }
        return .text(bytes)
    }

    mutating func info(_ text: String) { channel.send("info " + clean(text)) }
    mutating func show(_ text: String) { channel.send("show " + clean(text)) }
    mutating func error(_ text: String) { channel.send("error " + clean(text)) }

    mutating func log(_ priority: LogPriority, _ text: String) {
        if priority == .debug && !debug { return }
        channel.send("log \(priority.rawValue) " + clean(text))
    }
}
