#if canImport(Glibc)
import Glibc
#endif

/// Copies of the files one `enable` or `disable` changes, taken before the change, under
/// `/var/backups/watchword/YYYYMMDD-HHMMSS/` with their full path below it (root, 0700).
public final class Backup {
    private let root: SystemRoot
    private var directory: String?
    /// (original, copy) pairs, inner paths, in the order saved.
    public private(set) var saved: [(original: String, copy: String)] = []

    public init(root: SystemRoot) { self.root = root }

    /// Copies `inner` into the backup (if it exists); a second call for the same file keeps
    /// the first copy, which is the state before this run.
    public func save(_ inner: String) throws(SetupError) {
        guard !saved.contains(where: { $0.original == inner }) else { return }
        guard let bytes = try root.read(inner) else { return }
        let base = try makeDirectory()
        let copy = base + inner
        if let slash = copy.lastIndex(of: "/") {
            try root.makeDirectories(String(copy[..<slash]), mode: 0o700)
        }
        try root.replace(copy, with: bytes, newMode: 0o600)
        saved.append((inner, copy))
    }

    private func makeDirectory() throws(SetupError) -> String {
        if let directory { return directory }
        try root.makeDirectories(InstalledLayout.backups, mode: 0o700)
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y%m%d-%H%M%S", &parts)
        let stamp = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        for attempt in 0..<100 {
            let name = InstalledLayout.backups + "/" + stamp + (attempt == 0 ? "" : "-\(attempt)")
            if mkdir(root.host(name), 0o700) == 0 {
                directory = name
                return name
            }
            guard errno == EEXIST else {
                throw SetupError("cannot create \(root.host(name)): \(String(cString: strerror(errno)))")
            }
        }
        throw SetupError("cannot find a free backup directory name under \(root.host(InstalledLayout.backups))")
    }
}
