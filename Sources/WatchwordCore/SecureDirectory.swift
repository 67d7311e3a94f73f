#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a file or directory in the state or config area was refused.
public enum FileTrustError: Error, Sendable, Equatable, CustomStringConvertible {
    case notAbsolute(String)
    case symlink(String)
    case notDirectory(String)
    case notRegularFile(String)
    case notOwnedByRoot(String, uid: UInt32)
    case groupOrOtherAccess(String, mode: UInt32)
    case writableAncestor(String, mode: UInt32)
    case hardLinked(String, links: UInt64)
    case tooLarge(String, size: Int64, limit: Int)
    case system(SystemError)

    public var description: String {
        switch self {
        case .notAbsolute(let p): "\(p): not an absolute path without '..'"
        case .symlink(let p): "\(p): is a symbolic link (refused)"
        case .notDirectory(let p): "\(p): not a directory"
        case .notRegularFile(let p): "\(p): not a regular file"
        case .notOwnedByRoot(let p, let uid): "\(p): owned by uid \(uid), not root"
        case .groupOrOtherAccess(let p, let mode):
            "\(p): mode \(octal(mode)) gives group or other access (must be 0700 for directories, 0600 for files)"
        case .writableAncestor(let p, let mode):
            "\(p): mode \(octal(mode)) lets group or other write into a parent directory"
        case .hardLinked(let p, let links): "\(p): has \(links) hard links (refused)"
        case .tooLarge(let p, let size, let limit): "\(p): \(size) bytes, larger than the limit of \(limit)"
        case .system(let e): e.description
        }
    }
}

func octal(_ mode: UInt32) -> String {
    var digits = String(mode & 0o7777, radix: 8)
    while digits.count < 4 { digits = "0" + digits }
    return digits
}

/// An open directory whose owner and mode were checked; every file operation in it is
/// relative to its descriptor (`openat`), so nothing can be swapped in along the path later.
public final class SecureDirectory: @unchecked Sendable {
    public let path: String
    let fd: Int32

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Opens `path` (absolute), checking every parent on the way — owned by root and not
    /// writable by group or other unless sticky (like `/tmp`) — and the directory itself:
    /// not a symlink, owned by root, mode without group/other bits.
    ///
    /// With `create`, a missing last component is made with mode 0700.
    public static func open(_ path: String, create: Bool = false) throws(FileTrustError) -> SecureDirectory {
        try walk(path, components: try splitAbsolute(path), create: create, privateLast: true)
    }

    /// Walks `components` from `/`, checking each directory on the way with the ancestor
    /// rule. With `privateLast`, the last one is opened with O_NOFOLLOW and must be a private
    /// root directory (the state directory); without, it needs only the ancestor rule (the
    /// directory holding the config file).
    private static func walk(
        _ path: String, components: [String], create: Bool, privateLast: Bool
    ) throws(FileTrustError) -> SecureDirectory {
        var current = Glibc.open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard current >= 0 else { throw .system(SystemError("open", "/", errno: errno)) }
        var walked = ""
        do {
            try checkAncestor(fd: current, path: "/")
            for (index, name) in components.enumerated() {
                walked += "/" + name
                let last = index == components.count - 1
                var flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC
                if last && privateLast { flags |= O_NOFOLLOW }
                var next = retryingOnInterrupt { openat(current, name, flags) }
                if next < 0 && errno == ENOENT && last && create {
                    if mkdirat(current, name, 0o700) != 0 && errno != EEXIST {
                        throw FileTrustError.system(SystemError("mkdir", walked, errno: errno))
                    }
                    next = retryingOnInterrupt { openat(current, name, flags) }
                }
                if next < 0 {
                    let e = errno
                    if last && (e == ELOOP || e == ENOTDIR) {
                        var st = stat()
                        if fstatat(current, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                            if (st.st_mode & S_IFMT) == S_IFLNK { throw FileTrustError.symlink(walked) }
                            throw FileTrustError.notDirectory(walked)
                        }
                    }
                    throw FileTrustError.system(SystemError("open", walked, errno: e))
                }
                close(current)
                current = next
                if last && privateLast {
                    try checkPrivateDirectory(fd: current, path: walked)
                } else {
                    try checkAncestor(fd: current, path: walked)
                }
            }
        } catch let error as FileTrustError {
            close(current)
            throw error
        } catch {
            close(current)
            throw .system(SystemError("open", path, errno: EIO))
        }
        return SecureDirectory(fd: current, path: path)
    }

    /// Opens (or with `create`, makes) a checked subdirectory.
    public func subdirectory(_ name: String, create: Bool) throws(FileTrustError) -> SecureDirectory {
        let full = join(name)
        var sub = retryingOnInterrupt { openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        if sub < 0 && errno == ENOENT && create {
            if mkdirat(fd, name, 0o700) != 0 && errno != EEXIST {
                throw .system(SystemError("mkdir", full, errno: errno))
            }
            sub = retryingOnInterrupt { openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        }
        if sub < 0 {
            let e = errno
            try refuseLink(name, full: full, errno: e)
            throw .system(SystemError("open", full, errno: e))
        }
        do {
            try Self.checkPrivateDirectory(fd: sub, path: full)
        } catch {
            close(sub)
            throw error
        }
        return SecureDirectory(fd: sub, path: full)
    }

    /// Whether a subdirectory entry exists (without following links).
    public func exists(_ name: String) -> Bool {
        var st = stat()
        return fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// Reads a whole file, or nil when it does not exist.
    ///
    /// The file must be a regular file (not a symlink, FIFO or device), owned by root,
    /// without group/other bits, with one link, and at most `limit` bytes.
    public func read(_ name: String, limit: Int) throws(FileTrustError) -> [UInt8]? {
        let full = join(name)
        let file = retryingOnInterrupt {
            openat(fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        }
        if file < 0 {
            let e = errno
            if e == ENOENT { return nil }
            try refuseLink(name, full: full, errno: e)
            throw .system(SystemError("open", full, errno: e))
        }
        defer { close(file) }
        var st = stat()
        guard fstat(file, &st) == 0 else { throw .system(SystemError("fstat", full, errno: errno)) }
        try Self.checkPrivateFile(st, path: full, limit: limit)
        return try readAll(file, path: full, limit: limit)
    }

    /// Replaces a file atomically: write a temporary file in this directory, fsync it,
    /// rename it over the old one, fsync the directory. A crash at any point leaves either
    /// the old or the new file, never a torn one. Callers hold the file's lock.
    ///
    /// Without `durable` the fsyncs are skipped: the rename still never leaves a torn file,
    /// but a crash may bring back the old one (for caches that are rebuilt anyway).
    public func writeAtomically(_ name: String, _ bytes: [UInt8], durable: Bool = true) throws(FileTrustError) {
        let temp = "." + name + ".tmp"
        let full = join(temp)
        func createTemp() -> Int32 {
            retryingOnInterrupt { openat(fd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        }
        // Made new, never opened as found: one left by a writer that died (or anything
        // planted under its name, a symlink included) is removed and the file made again.
        var file = createTemp()
        if file < 0 && errno == EEXIST {
            if unlinkat(fd, temp, 0) != 0 && errno != ENOENT {
                throw .system(SystemError("unlink", full, errno: errno))
            }
            file = createTemp()
        }
        guard file >= 0 else { throw .system(SystemError("open", full, errno: errno)) }
        testCrashPoint(.created, name)
        var ok = false
        defer {
            if !ok {
                close(file)
                unlinkat(fd, temp, 0)
            }
        }
        guard fchmod(file, 0o600) == 0 else { throw .system(SystemError("fchmod", full, errno: errno)) }
        let writeErrno: Int32 = bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = retryingOnInterrupt { write(file, raw.baseAddress! + offset, raw.count - offset) }
                guard n > 0 else { return n < 0 ? errno : ENOSPC }
                offset += n
            }
            return 0
        }
        if writeErrno != 0 { throw .system(SystemError("write", full, errno: writeErrno)) }
        testCrashPoint(.written, name)
        guard !durable || fsync(file) == 0 else { throw .system(SystemError("fsync", full, errno: errno)) }
        guard close(file) == 0 else {
            ok = true
            unlinkat(fd, temp, 0)
            throw .system(SystemError("close", full, errno: errno))
        }
        ok = true
        testCrashPoint(.synced, name)
        guard renameat(fd, temp, fd, name) == 0 else {
            let e = errno
            unlinkat(fd, temp, 0)
            throw .system(SystemError("rename", join(name), errno: e))
        }
        testCrashPoint(.renamed, name)
        if durable { try syncDirectory() }
        testCrashPoint(.dirsynced, name)
    }

    /// Appends `line` and a newline to a file in one write (made root 0600 if missing),
    /// opened with O_APPEND|O_NOFOLLOW and checked like `read` checks (regular, root, no
    /// group/other bits, one link). Returns the file's size afterwards.
    public func appendLine(_ name: String, _ line: String) throws(FileTrustError) -> Int64 {
        let full = join(name)
        let file = retryingOnInterrupt {
            openat(fd, name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0o600)
        }
        if file < 0 {
            let e = errno
            try refuseLink(name, full: full, errno: e)
            throw .system(SystemError("open", full, errno: e))
        }
        defer { close(file) }
        var st = stat()
        guard fstat(file, &st) == 0 else { throw .system(SystemError("fstat", full, errno: errno)) }
        try Self.checkPrivateFile(st, path: full, limit: 0)
        let bytes = Array((line + "\n").utf8)
        let n = bytes.withUnsafeBytes { raw in retryingOnInterrupt { write(file, raw.baseAddress!, raw.count) } }
        if n < 0 { throw .system(SystemError("write", full, errno: errno)) }
        if n != bytes.count { throw .system(SystemError("write", full, errno: ENOSPC)) }
        return Int64(st.st_size) + Int64(n)
    }

    /// A file's size (not following links), or nil when it does not exist.
    public func fileSize(_ name: String) throws(FileTrustError) -> Int64? {
        var st = stat()
        if fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return nil }
            throw .system(SystemError("stat", join(name), errno: errno))
        }
        return Int64(st.st_size)
    }

    /// Renames a file within this directory, replacing `newName`.
    public func rename(_ name: String, to newName: String) throws(FileTrustError) {
        guard renameat(fd, name, fd, newName) == 0 else {
            throw .system(SystemError("rename", join(name), errno: errno))
        }
        try syncDirectory()
    }

    /// Removes a file (not following links); a missing file is not an error.
    public func remove(_ name: String) throws(FileTrustError) {
        if unlinkat(fd, name, 0) != 0 && errno != ENOENT {
            throw .system(SystemError("unlink", join(name), errno: errno))
        }
        try syncDirectory()
    }

    /// The names in this directory, without `.`, `..` and hidden (`.`-prefixed) entries.
    public func entries() throws(FileTrustError) -> [String] {
        let dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let dir = fdopendir(dup) else {
            throw .system(SystemError("opendir", path, errno: errno))
        }
        defer { closedir(dir) }
        rewinddir(dir)
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name.hasPrefix(".") { continue }
            names.append(name)
        }
        return names
    }

    /// Takes an exclusive `flock` on a lock file in this directory (made if missing; never
    /// removed, so two processes can never hold locks on different inodes of one name).
    public func lock(_ name: String) throws(FileTrustError) -> FileLock {
        let full = join(name)
        let file = retryingOnInterrupt {
            openat(fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0o600)
        }
        if file < 0 {
            let e = errno
            try refuseLink(name, full: full, errno: e)
            throw .system(SystemError("open", full, errno: e))
        }
        var st = stat()
        guard fstat(file, &st) == 0 else {
            close(file)
            throw .system(SystemError("fstat", full, errno: errno))
        }
        do {
            try Self.checkPrivateFile(st, path: full, limit: 0)
        } catch {
            close(file)
            throw error
        }
        guard retryingOnInterrupt({ flock(file, LOCK_EX) }) == 0 else {
            close(file)
            throw .system(SystemError("flock", full, errno: errno))
        }
        return FileLock(fd: file)
    }

    func join(_ name: String) -> String {
        path.hasSuffix("/") ? path + name : path + "/" + name
    }

    private func syncDirectory() throws(FileTrustError) {
        guard fsync(fd) == 0 else { throw .system(SystemError("fsync", path, errno: errno)) }
    }

    private func refuseLink(_ name: String, full: String, errno e: Int32) throws(FileTrustError) {
        guard e == ELOOP || e == ENOTDIR || e == ENXIO else { return }
        var st = stat()
        if fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && (st.st_mode & S_IFMT) == S_IFLNK {
            throw .symlink(full)
        }
    }

    static func splitAbsolute(_ path: String) throws(FileTrustError) -> [String] {
        guard path.hasPrefix("/"), !path.utf8.contains(0), path.utf8.count < 4096 else {
            throw .notAbsolute(path)
        }
        // As bytes: String.split goes by Character, a grapheme test per byte (60 k
        // instructions a login for two paths).
        var parts: [String] = []
        let utf8 = path.utf8
        var start = utf8.startIndex
        var index = start
        while index != utf8.endIndex {
            if utf8[index] == UInt8(ascii: "/") {
                if start != index { parts.append(String(decoding: utf8[start..<index], as: UTF8.self)) }
                start = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        if start != utf8.endIndex { parts.append(String(decoding: utf8[start...], as: UTF8.self)) }
        guard !parts.contains(".."), !parts.contains("."), !parts.isEmpty else { throw .notAbsolute(path) }
        return parts
    }

    static func checkAncestor(fd: Int32, path: String) throws(FileTrustError) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .system(SystemError("fstat", path, errno: errno)) }
        guard st.st_uid == 0 else { throw .notOwnedByRoot(path, uid: st.st_uid) }
        let writable = st.st_mode & (S_IWGRP | S_IWOTH) != 0
        let sticky = st.st_mode & S_ISVTX != 0
        if writable && !sticky { throw .writableAncestor(path, mode: st.st_mode) }
    }

    static func checkPrivateDirectory(fd: Int32, path: String) throws(FileTrustError) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .system(SystemError("fstat", path, errno: errno)) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw .notDirectory(path) }
        guard st.st_uid == 0 else { throw .notOwnedByRoot(path, uid: st.st_uid) }
        guard st.st_mode & 0o077 == 0 else { throw .groupOrOtherAccess(path, mode: st.st_mode) }
    }

    static func checkPrivateFile(_ st: stat, path: String, limit: Int) throws(FileTrustError) {
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .notRegularFile(path) }
        guard st.st_uid == 0 else { throw .notOwnedByRoot(path, uid: st.st_uid) }
        guard st.st_mode & 0o077 == 0 else { throw .groupOrOtherAccess(path, mode: st.st_mode) }
        // More than one link: someone may hold another name for it. None (0) is fine: a
        // writer renamed a new version over it after we opened it, and what we read is the
        // complete old version.
        guard st.st_nlink <= 1 else { throw .hardLinked(path, links: UInt64(st.st_nlink)) }
        if limit > 0 && st.st_size > limit { throw .tooLarge(path, size: Int64(st.st_size), limit: limit) }
    }
}

/// Reads at most `limit` bytes from `file`; one byte more is an error (the file grew).
func readAll(_ file: Int32, path: String, limit: Int) throws(FileTrustError) -> [UInt8] {
    var result: [UInt8] = []
    while true {
        let n = appendRead(to: &result, capacity: 8192) { chunk, count in
            retryingOnInterrupt { Glibc.read(file, chunk, count) }
        }
        if n < 0 { throw .system(SystemError("read", path, errno: Int32(-n))) }
        if n == 0 { return result }
        if result.count > limit { throw .tooLarge(path, size: Int64(result.count), limit: limit) }
    }
}

/// Makes one call of `read` (a `read` or `recv`) into an uninitialised stack chunk of
/// `capacity` bytes and appends what it returned to `buffer`. Returns the bytes appended,
/// 0 at the end, or minus the call's `errno` (taken at once, before anything can change it).
/// A zeroed heap buffer for each call cost a login more instructions than the reading itself.
public func appendRead(
    to buffer: inout [UInt8], capacity: Int, _ read: (UnsafeMutableRawPointer, Int) -> Int
) -> Int {
    withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 1) { chunk in
        let n = read(chunk.baseAddress!, chunk.count)
        if n < 0 { return -Int(errno) }
        if n > 0 { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[..<n])) }
        return n
    }
}

/// A held exclusive lock; released when closed or dropped.
public final class FileLock {
    private var fd: Int32
    init(fd: Int32) { self.fd = fd }
    deinit { release() }
    public func release() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
    }
}

/// Reads a root-owned, private, regular file by absolute path, or nil when it (or its
/// directory) does not exist. Used for the config file.
public func readTrustedFile(_ path: String, limit: Int) throws(FileTrustError) -> [UInt8]? {
    let parts = try SecureDirectory.splitAbsolute(path)
    // A loop, not joined(separator:): that generic's first use is 115 k instructions of
    // runtime type lookup at every login.
    var directoryPath = parts.count > 1 ? "" : "/"
    for index in 0..<(parts.count - 1) { directoryPath += "/" + parts[index] }
    let name = parts.last!
    let directory: SecureDirectory
    do {
        directory = try SecureDirectory.openAncestorChecked(directoryPath, components: Array(parts.dropLast()))
    } catch .system(let e) where e.errno == ENOENT {
        return nil
    }
    return try directory.read(name, limit: limit)
}

extension SecureDirectory {
    /// Opens a directory that needs only the ancestor rule (root-owned, not group/other
    /// writable unless sticky) — the directory holding the config file. `components` are
    /// `path`'s, as `splitAbsolute` gave them (not split again).
    static func openAncestorChecked(_ path: String, components: [String]) throws(FileTrustError) -> SecureDirectory {
        try walk(path, components: components, create: false, privateLast: false)
    }
}
