import Foundation
import Glibc
import Testing

/// A fresh private directory (root, 0700) under /tmp for one test, removed when dropped.
/// /tmp itself is root-owned, world-writable and sticky, which the ancestor rule allows.
final class TemporaryDirectory {
    let path: String

    init(_ label: String = "core") throws {
        var template = Array("/tmp/watchword-\(label)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw POSIXFailure("mkdtemp", errno) }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        try Posix.chmod(path, 0o700)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { path + "/" + name }
}

struct POSIXFailure: Error, CustomStringConvertible {
    let call: String
    let code: Int32
    init(_ call: String, _ code: Int32) {
        self.call = call
        self.code = code
    }
    var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// Thin throwing wrappers over the system calls the tests use to build hostile layouts.
enum Posix {
    static func check(_ result: Int32, _ call: String) throws {
        if result != 0 { throw POSIXFailure(call, errno) }
    }
    static func mkdir(_ path: String, _ mode: mode_t = 0o700) throws {
        try check(Glibc.mkdir(path, mode), "mkdir \(path)")
        try chmod(path, mode)  // umask-proof
    }
    static func chmod(_ path: String, _ mode: mode_t) throws { try check(Glibc.chmod(path, mode), "chmod \(path)") }
    static func chown(_ path: String, _ uid: uid_t, _ gid: gid_t = 0) throws {
        try check(Glibc.lchown(path, uid, gid), "chown \(path)")
    }
    static func symlink(_ target: String, at path: String) throws {
        try check(Glibc.symlink(target, path), "symlink \(path)")
    }
    static func link(_ existing: String, _ new: String) throws { try check(Glibc.link(existing, new), "link \(new)") }
    static func mkfifo(_ path: String, _ mode: mode_t = 0o600) throws {
        try check(Glibc.mkfifo(path, mode), "mkfifo \(path)")
    }
    static func rename(_ from: String, _ to: String) throws { try check(Glibc.rename(from, to), "rename \(from)") }

    /// Writes a file (replacing it) with the given mode.
    static func write(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw POSIXFailure("open \(path)", errno) }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            guard n > 0 else { throw POSIXFailure("write \(path)", errno) }
            offset += n
        }
        try check(fchmod(fd, mode), "fchmod \(path)")
    }

    static func read(_ path: String) throws -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw POSIXFailure("open \(path)", errno) }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard n >= 0 else { throw POSIXFailure("read \(path)", errno) }
            if n == 0 { return result }
            result.append(contentsOf: buffer[0..<n])
        }
    }

    static func lstat(_ path: String) throws -> stat {
        var st = stat()
        try check(Glibc.lstat(path, &st), "lstat \(path)")
        return st
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return Glibc.lstat(path, &st) == 0
    }

    /// Every entry of a directory, hidden ones included (without `.` and `..`).
    static func entries(_ path: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path).sorted()
    }
}

/// Everything observable about a directory tree, to prove a refused operation changed
/// nothing: for every entry its type, mode, owner, link count, inode, size, mtime and
/// ctime, and the bytes of regular files and the targets of symlinks.
struct TreeSnapshot: Equatable, CustomStringConvertible {
    var entries: [String: String] = [:]

    init(_ root: String) throws {
        try visit(root, relative: ".")
    }

    private mutating func visit(_ path: String, relative: String) throws {
        let st = try Posix.lstat(path)
        let type = st.st_mode & S_IFMT
        var line = "mode=\(String(st.st_mode, radix: 8)) uid=\(st.st_uid) gid=\(st.st_gid) nlink=\(st.st_nlink)"
        line += " ino=\(st.st_ino) size=\(st.st_size)"
        line += " mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) ctime=\(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
        switch type {
        case S_IFREG:
            line += " bytes=\(try Posix.read(path))"
        case S_IFLNK:
            line += " target=\(try FileManager.default.destinationOfSymbolicLink(atPath: path))"
        case S_IFDIR:
            for name in try Posix.entries(path) {
                try visit(path + "/" + name, relative: relative + "/" + name)
            }
        default:
            break
        }
        entries[relative] = line
    }

    var description: String {
        entries.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\n")
    }
}
