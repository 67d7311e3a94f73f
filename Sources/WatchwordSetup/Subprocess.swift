#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore

/// What a finished program said.
public struct ProgramResult: Sendable {
    /// The exit status, or 128 + the signal number when it was killed.
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public var succeeded: Bool { status == 0 }
    /// Standard error, else standard output, trimmed: the program's explanation.
    public var message: String {
        let text = stderr.isEmpty ? stdout : stderr
        return text.split(separator: "\n").map { $0.trimmingSpaces }.filter { !$0.isEmpty }
            .joined(separator: "; ")
    }
}

/// Running the system's own tools (`sshd -t`, `sshd -T`, `timedatectl`, `ssh-keygen`) with a
/// fixed, small environment, no standard input and a time limit.
public enum Subprocess {
    static let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "LC_ALL=C"]

    /// Finds a program: on `PATH` first (so an admin's PATH decides, as for any tool), then
    /// in the usual system directories.
    public static func find(_ name: String) -> String? {
        var directories: [String] = []
        if let path = getenv("PATH") {
            directories += String(cString: path).split(separator: ":").map(String.init).filter { $0.hasPrefix("/") }
        }
        directories += ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"]
        for directory in directories {
            let candidate = directory + "/" + name
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Runs `argv` (argv[0] an absolute path) with no input and collects its output (at
    /// most 1 MiB of each stream); kills it, and its process group, after `timeout` seconds.
    public static func run(_ argv: [String], timeout: Int = 20) throws(SetupError) -> ProgramResult {
        let result: ChildProcess.Result
        do {
            result = try ChildProcess.run(
                argv, input: nil, output: .capture(limit: 1 << 20), environment: environment, timeoutSeconds: timeout)
        } catch {
            switch error {
            case .spawn(let reason): throw SetupError("cannot run \(argv[0]): \(reason)")
            case .system(let reason): throw SetupError("\(argv[0]): \(reason)")
            }
        }
        let status: Int32
        switch result.ending {
        case .exited(let code): status = code
        case .signaled(let signal): status = 128 + signal
        case .timedOut: throw SetupError("\(argv[0]) did not finish within \(timeout) seconds")
        }
        return ProgramResult(
            status: status, stdout: String(decoding: result.stdout, as: UTF8.self),
            stderr: String(decoding: result.stderr, as: UTF8.self))
    }
}

extension Substring {
    /// Without leading and trailing white space (blanks, tabs, CR, LF).
    var trimmingSpaces: String {
        func blank(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\r" || c == "\n" }
        return String(drop(while: blank).reversed().drop(while: blank).reversed())
    }
}

extension String {
    var trimmingSpaces: String { self[...].trimmingSpaces }
}
