import Glibc

/// A private temp directory for one test, removed (with what is in it) when dropped.
final class TemporaryDirectory {
    let path: String

    init(_ label: String) throws {
        var template = Array("/tmp/watchword-\(label)-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw Failure("mkdtemp: \(String(cString: strerror(errno)))")
        }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        guard let dir = opendir(path) else { return }
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(dir)
        rmdir(path)
    }

    func sub(_ name: String) -> String { path + "/" + name }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum Posix {
    static func read(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return result }
            result.append(contentsOf: buffer[0..<n])
        }
    }

    /// Whether `pid` is gone or a zombie.
    static func isDead(_ pid: pid_t) -> Bool {
        guard let stat = try? read("/proc/\(pid)/stat") else { return true }
        let text = String(decoding: stat, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return false }
        return text[text.index(after: close)...].hasPrefix(" Z")
    }
}
