#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Running another program: the one way watchword does it, for the SMS `command` provider
/// (a text on stdin) and the CLI's system tools (`sshd -t`, `timedatectl`, `ssh-keygen`).
///
/// What the program gets: the words as they are (no shell), the given environment and
/// nothing else, standard input from a pipe filled before it starts (or /dev/null),
/// standard output and error captured, discarded or passed through, and no other
/// descriptor: every one above 2 is closed in the child itself, so none of ours (the
/// socket to the PAM module, a lock, a state directory) leaks even when another thread
/// opens one meanwhile. Signals at their defaults and none blocked. It runs in a process
/// group of its own; after the time limit the whole group is killed, and whatever the
/// program left running in its group is killed when it exits.
public enum ChildProcess {
    public enum Output: Sendable, Equatable {
        /// To /dev/null (what a program prints about a text must never reach a log).
        case discard
        /// Through to ours (`watchword sms-test`, for the admin to see).
        case inherit
        /// Collected, at most `limit` bytes of each; more is dropped.
        case capture(limit: Int)
    }

    public enum Ending: Sendable, Equatable {
        case exited(Int32)
        case signaled(Int32)
        case timedOut
    }

    public struct Result: Sendable {
        public let ending: Ending
        public let stdout: [UInt8]
        public let stderr: [UInt8]
    }

    public enum Failure: Error, Sendable, Equatable {
        /// posix_spawn failed (no such program, not executable, ...): strerror's text.
        case spawn(String)
        /// Anything else on the way (a pipe, waitpid): what and why.
        case system(String)
    }

    /// The longest standard input given to a program.
    public static let maxInputBytes = 64 * 1024

    /// Runs `argv` (argv[0] an absolute path) and waits for it at most `timeoutSeconds`.
    /// `input` nil: stdin is /dev/null.
    public static func run(
        _ argv: [String], input: [UInt8]?, output: Output, environment: [String], timeoutSeconds: Int
    ) throws(Failure) -> Result {
        // A parent that ignores SIGCHLD would have the child reaped behind our back.
        signal(SIGCHLD, SIG_DFL)
        if addCloseFrom == nil { try closeOnExecEverything() }
        var parentEnds: [Int32] = []  // read ends of stdout/stderr, then stdin's, all closed at the end
        var childEnds: [Int32] = []
        defer { for fd in parentEnds + childEnds { close(fd) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let input {
            let readEnd = try filledPipe(input)
            childEnds.append(readEnd)
            posix_spawn_file_actions_adddup2(&actions, readEnd, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        var captured: [Int32] = []
        switch output {
        case .inherit: break
        case .discard:
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        case .capture:
            for target: Int32 in [1, 2] {
                let (readEnd, writeEnd) = try pipeAbove2()
                parentEnds.append(readEnd)
                childEnds.append(writeEnd)
                captured.append(readEnd)
                posix_spawn_file_actions_adddup2(&actions, writeEnd, target)
            }
        }
        // After the dup2s (they copy onto 0–2, which this keeps): close everything above 2
        // in the child (glibc ≥ 2.34). Where that is missing every descriptor was marked
        // close-on-exec above, which races with threads that open one meanwhile.
        if let closeFrom = addCloseFrom { _ = closeFrom(&actions, 3) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGPIPE, SIGCHLD, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGALRM] { sigaddset(&defaults, s) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { for p in cArgs + cEnv { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, &attributes, cArgs, cEnv)
        for fd in childEnds { close(fd) }
        childEnds = []
        guard spawned == 0 else { throw .spawn(String(cString: strerror(spawned))) }

        let limit: Int
        if case .capture(let bytes) = output { limit = bytes } else { limit = 0 }
        var collected: [Int32: [UInt8]] = [:]
        var status: Int32 = 0
        var exited = false
        let deadline = monotonicSeconds() + Double(timeoutSeconds)
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            if !exited {
                let r = retryingOnInterrupt { waitpid(pid, &status, WNOHANG) }
                if r < 0 {
                    let reason = String(cString: strerror(errno))
                    kill(-pid, SIGKILL)
                    throw .system("waitpid: \(reason)")
                }
                if r == pid {
                    exited = true
                    // Whatever the program left running in its group is not wanted either
                    // (and would hold the output pipes open).
                    kill(-pid, SIGKILL)
                }
            }
            if exited && captured.isEmpty { break }
            if monotonicSeconds() >= deadline {
                if exited { break }  // something outside its group holds the output open
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                if !exited { _ = retryingOnInterrupt { waitpid(pid, &status, 0) } }
                return Result(ending: .timedOut, stdout: collected[1] ?? [], stderr: collected[2] ?? [])
            }
            if captured.isEmpty {
                var pause = timespec(tv_sec: 0, tv_nsec: 5_000_000)
                nanosleep(&pause, nil)
                continue
            }
            var fds = captured.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            _ = retryingOnInterrupt { poll(&fds, nfds_t(fds.count), 20) }
            for entry in fds where entry.revents != 0 {
                let n = buffer.withUnsafeMutableBytes { raw in retryingOnInterrupt { read(entry.fd, raw.baseAddress, raw.count) } }
                let stream: Int32 = entry.fd == parentEnds[0] ? 1 : 2
                if n > 0 {
                    let kept = max(0, min(n, limit - (collected[stream]?.count ?? 0)))
                    collected[stream, default: []] += buffer[0..<kept]
                } else {
                    captured.removeAll { $0 == entry.fd }
                }
            }
        }
        let ending: Ending = status & 0x7F == 0 ? .exited((status >> 8) & 0xFF) : .signaled(status & 0x7F)
        return Result(ending: ending, stdout: collected[1] ?? [], stderr: collected[2] ?? [])
    }

    /// A pipe that already holds all of `input`, its write end closed: the read end,
    /// close-on-exec. Nothing is written once the program runs, so nothing can block on a
    /// program that does not read, and nothing can meet a closed pipe (EPIPE, SIGPIPE).
    private static func filledPipe(_ input: [UInt8]) throws(Failure) -> Int32 {
        guard input.count <= maxInputBytes else {
            throw .system("the input is \(input.count) bytes, more than \(maxInputBytes)")
        }
        let (readEnd, writeEnd) = try pipeAbove2()
        defer { close(writeEnd) }
        // Only the write end is non-blocking (the program must wait on its stdin, not get
        // EAGAIN; the two ends are separate open files, so the flag is not shared).
        _ = fcntl(writeEnd, F_SETFL, fcntl(writeEnd, F_GETFL) | O_NONBLOCK)
        // A pipe holds 64 KiB by default; ask for more only if ever needed.
        if fcntl(writeEnd, getPipeSize) < input.count { _ = fcntl(writeEnd, setPipeSize, Int32(input.count)) }
        var written = 0
        while written < input.count {
            let n = input.withUnsafeBytes { raw in
                retryingOnInterrupt { write(writeEnd, raw.baseAddress! + written, input.count - written) }
            }
            guard n > 0 else {
                // Non-blocking: EAGAIN means the pipe is full, which it was made not to be.
                let reason = n < 0 ? String(cString: strerror(errno)) : "short write"
                close(readEnd)
                throw .system("writing its standard input: \(reason)")
            }
            written += n
        }
        return readEnd
    }

    /// pipe2(O_CLOEXEC), both ends above 2: with 0, 1 or 2 closed in this process the pipe
    /// could get one of them, and the spawn's dup2 onto 0–2 would then lose it.
    private static func pipeAbove2() throws(Failure) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let made: Int32
        if let pipe2 {
            made = fds.withUnsafeMutableBufferPointer { pipe2($0.baseAddress!, O_CLOEXEC) }
        } else {
            made = pipe(&fds)
            for fd in fds where made == 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
        guard made == 0 else { throw .system("pipe: \(String(cString: strerror(errno)))") }
        for i in 0..<2 where fds[i] < 3 {
            let moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3)
            let error = errno
            close(fds[i])
            fds[i] = moved
            guard moved >= 0 else {
                if fds[1 - i] >= 0 { close(fds[1 - i]) }
                throw .system("pipe: \(String(cString: strerror(error)))")
            }
        }
        return (fds[0], fds[1])
    }

    /// Marks every open descriptor from 3 up close-on-exec (only where glibc has no
    /// posix_spawn_file_actions_addclosefrom_np).
    private static func closeOnExecEverything() throws(Failure) {
        guard let dir = opendir("/proc/self/fd") else {
            throw .system("cannot list /proc/self/fd: \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            guard let fd = Int32(name), fd > 2 else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 && flags & FD_CLOEXEC == 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    /// F_GETPIPE_SZ and F_SETPIPE_SZ (Linux; not exported by Swift's Glibc module).
    private static let getPipeSize: Int32 = 1032
    private static let setPipeSize: Int32 = 1031

    // Looked up by name: Swift's Glibc module does not export them.
    private typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    private static let pipe2: Pipe2? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "pipe2")
        .map { unsafeBitCast($0, to: Pipe2.self) }
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = dlsym(
        UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np"
    ).map { unsafeBitCast($0, to: AddCloseFrom.self) }
}
