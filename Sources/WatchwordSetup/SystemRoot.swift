#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore

/// The filesystem that is being set up: `/` for this machine, or another root (`--root DIR`)
/// for an image or a test tree. Every path handed to it is written as seen from inside the
/// root (`/etc/pam.d/sshd`); `host(_:)` maps it to where it is now.
public struct SystemRoot: Sendable {
    /// `/`, or an absolute directory without a trailing slash.
    public let path: String

    public init(_ path: String = "/") throws(SetupError) {
        guard path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
            throw SetupError("--root must be an absolute path without '..'")
        }
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        var st = stat()
        guard stat(trimmed, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw SetupError("--root \(path): not a directory")
        }
        self.path = trimmed
    }

    /// Whether this is the running machine's own root.
    public var isHost: Bool { path == "/" }

    /// Where a path inside the root is now.
    public func host(_ inner: String) -> String {
        isHost ? inner : path + (inner.hasPrefix("/") ? inner : "/" + inner)
    }

    /// How a path inside the root is shown to the admin: as the system under the root sees
    /// it (`/etc/pam.d/sshd`); the CLI says once which root that is.
    public func display(_ inner: String) -> String { inner }

    /// Reads a whole file (following symlinks, as PAM and sshd do), or nil when it does not
    /// exist. Config files are public; they are bounded in size, not checked for owner.
    public func read(_ inner: String, limit: Int = 1 << 20) throws(SetupError) -> [UInt8]? {
        let full = host(inner)
        let fd = open(full, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw SetupError("cannot open \(full): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw SetupError("\(full) is not a regular file")
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buffer.withUnsafeMutableBytes { raw in retryingOnInterrupt { Glibc.read(fd, raw.baseAddress, raw.count) } }
            if n < 0 { throw SetupError("cannot read \(full): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
            if bytes.count > limit { throw SetupError("\(full) is larger than \(limit) bytes") }
        }
        return bytes
    }

    /// Reads a file as text (invalid UTF-8 is replaced, which only matters for display).
    public func readText(_ inner: String) throws(SetupError) -> String? {
        try read(inner).map { String(decoding: $0, as: UTF8.self) }
    }

    /// `lstat` of a path inside the root, or nil when it does not exist.
    public func status(_ inner: String, followLinks: Bool = false) -> FileStatus? {
        var st = stat()
        let rc = followLinks ? stat(host(inner), &st) : lstat(host(inner), &st)
        guard rc == 0 else { return nil }
        return FileStatus(st)
    }

    public func exists(_ inner: String) -> Bool { status(inner, followLinks: true) != nil }

    /// The entries matching a shell pattern, sorted bytewise (as sshd's `glob` does in the C
    /// locale), as inner paths.
    public func glob(_ innerPattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard Glibc.glob(host(innerPattern), 0, nil, &result) == 0 else { return [] }
        var paths: [String] = []
        for i in 0..<Int(result.gl_pathc) {
            guard let p = result.gl_pathv[i] else { continue }
            var full = String(cString: p)
            if !isHost { full = String(full.dropFirst(path.count)) }
            paths.append(full)
        }
        return paths.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// Replaces a file atomically: a temporary file in the same directory with the old file's
    /// owner and mode (or root 0644 for a new one), fsync, rename, fsync the directory. A
    /// symlink is refused rather than replaced by a file.
    public func replace(_ inner: String, with bytes: [UInt8], newMode: mode_t = 0o644) throws(SetupError) {
        let full = host(inner)
        let (directory, name) = split(full)
        var mode = newMode
        var owner: (uid_t, gid_t) = (0, 0)
        var st = stat()
        if lstat(full, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                throw SetupError("\(full) is not a regular file (a symlink?); change it by hand")
            }
            mode = st.st_mode & 0o7777
            owner = (st.st_uid, st.st_gid)
        }
        let temp = directory + "/." + name + ".watchword-new"
        unlink(temp)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SetupError("cannot create \(temp): \(String(cString: strerror(errno)))") }
        var ok = false
        defer {
            if !ok { unlink(temp) }
        }
        let failure: String? = bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = retryingOnInterrupt { write(fd, raw.baseAddress! + offset, raw.count - offset) }
                guard n > 0 else { return "write" }
                offset += n
            }
            if fchown(fd, owner.0, owner.1) != 0 { return "fchown" }
            if fchmod(fd, mode) != 0 { return "fchmod" }
            if fsync(fd) != 0 { return "fsync" }
            return nil
        }
        let e = errno
        close(fd)
        if let failure { throw SetupError("\(failure) \(temp): \(String(cString: strerror(e)))") }
        guard rename(temp, full) == 0 else {
            throw SetupError("cannot rename \(temp) to \(full): \(String(cString: strerror(errno)))")
        }
        ok = true
        syncDirectory(directory)
    }

    /// Removes a file; a missing one is fine.
    public func remove(_ inner: String) throws(SetupError) {
        let full = host(inner)
        if unlink(full) != 0 && errno != ENOENT {
            throw SetupError("cannot remove \(full): \(String(cString: strerror(errno)))")
        }
        syncDirectory(split(full).0)
    }

    /// Makes a directory and its missing parents with `mode` (existing ones are kept).
    public func makeDirectories(_ inner: String, mode: mode_t) throws(SetupError) {
        var walked = isHost ? "" : path
        for part in inner.split(separator: "/") {
            walked += "/" + part
            if mkdir(walked, mode) != 0 && errno != EEXIST {
                throw SetupError("cannot create \(walked): \(String(cString: strerror(errno)))")
            }
        }
    }

    private func split(_ full: String) -> (String, String) {
        guard let slash = full.lastIndex(of: "/") else { return (".", full) }
        let directory = String(full[..<slash])
        return (directory.isEmpty ? "/" : directory, String(full[full.index(after: slash)...]))
    }

    private func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}

/// What `lstat` says about a file, in the terms the checks need.
public struct FileStatus: Sendable, Equatable {
    public enum Kind: Sendable { case regular, directory, symlink, other }
    public let kind: Kind
    public let uid: UInt32
    public let mode: UInt32
    public let size: Int64

    init(_ st: stat) {
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        default: kind = .other
        }
        uid = st.st_uid
        mode = st.st_mode & 0o7777
        size = Int64(st.st_size)
    }

    /// Writable by group or other.
    public var groupOrOtherWritable: Bool { mode & 0o022 != 0 }
    /// The mode as four octal digits, e.g. `0644`.
    public var octalMode: String {
        var digits = String(mode, radix: 8)
        while digits.count < 4 { digits = "0" + digits }
        return digits
    }
}
