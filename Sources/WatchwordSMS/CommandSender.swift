#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore

/// The `command` provider: runs `sms.command.argv` (e.g. gammu-smsd-inject for a GSM
/// modem) with `{phone}` replaced, and writes the text to its standard input.
///
/// No shell: the program gets the words as they are. The text — code included — is never
/// in the program's argv or environment, which every local user can read
/// (/proc/PID/cmdline): it is written to a pipe on the program's stdin, which is then
/// closed, so the program reads the text and then end of file. The pipe is filled before
/// the program starts and is made large enough for the whole text, so the write can
/// neither block on a program that never reads nor fail with EPIPE/SIGPIPE on one that
/// exits without reading. The environment is a fixed PATH and locale; in the helper
/// stdout and stderr go to /dev/null, so whatever the program prints about the message
/// never reaches a log. It runs in a process group of its own, is killed (the whole group)
/// after `timeoutSeconds`, and only exit status 0 counts as sent.
struct CommandSender: SMSSender {
    let argv: [String]
    let timeoutSeconds: Int
    /// Pass the program's stdout and stderr through (`watchword sms-test`, for the admin).
    var showOutput = false

    static let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]

    /// The longest text written to the program (an SMS is at most a few hundred bytes;
    /// this bounds the pipe the text is put in).
    static let maxMessageBytes = 64 * 1024

    /// Each word with `{phone}` replaced, in one pass. Nothing else is replaced: the text
    /// goes to stdin (and Config refuses `{message}` and `{code}` in argv).
    static func expand(_ argv: [String], phone: String) -> [String] {
        argv.map { word in
            var out = ""
            var rest = Substring(word)
            while let brace = rest.firstIndex(of: "{") {
                out += rest[..<brace]
                let tail = rest[brace...]
                if tail.hasPrefix("{phone}") {
                    out += phone
                    rest = tail.dropFirst(7)
                } else {
                    out += "{"
                    rest = tail.dropFirst()
                }
            }
            return out + rest
        }
    }

    func send(_ message: String, to phone: PhoneNumber) throws(SMSError) {
        guard let program = argv.first else { throw SMSError(.unavailable, "command: sms.command.argv is empty") }
        // Config.parse refuses such an argv already; a sender built some other way must not
        // put the code on the command line either.
        if let problem = SMSSettings.commandArgvProblem(argv) { throw SMSError(.unavailable, "command: \(problem)") }
        let words = Self.expand(argv, phone: phone.e164)
        let status = try Self.run(words, input: Array(message.utf8), timeoutSeconds: timeoutSeconds, showOutput: showOutput)
        switch status {
        case .exited(0): return
        case .exited(let code): throw SMSError(.commandFailed, "command \(program) exited with status \(code)")
        case .signaled(let signal): throw SMSError(.commandFailed, "command \(program) was killed by signal \(signal)")
        case .timedOut:
            throw SMSError(.timeout, "command \(program) did not finish within \(timeoutSeconds) seconds; killed")
        }
    }

    enum Status: Equatable {
        case exited(Int32)
        case signaled(Int32)
        case timedOut
    }

    /// Runs `words` with `input` on its standard input and waits at most `timeoutSeconds`
    /// for it.
    static func run(_ words: [String], input: [UInt8], timeoutSeconds: Int, showOutput: Bool) throws(SMSError) -> Status {
        let program = words[0]
        try closeOnExecEverything()
        // A parent that ignores SIGCHLD would have the child reaped behind our back.
        signal(SIGCHLD, SIG_DFL)

        // The program's stdin: a pipe holding the whole input, its write end closed.
        let stdinRead = try filledPipe(input, program: program)
        defer { close(stdinRead) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // First, so that closing from 3 below cannot close the pipe before it is stdin.
        // dup2 leaves the copy without close-on-exec; the original (O_CLOEXEC, and ≥ 3)
        // goes at exec.
        posix_spawn_file_actions_adddup2(&actions, stdinRead, 0)
        // Close everything above 2 in the child itself (glibc ≥ 2.34): marking descriptors
        // close-on-exec beforehand races with any other thread that opens one in between.
        // Swift's Glibc module does not export it, so it is looked up by name.
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }
        if !showOutput {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }

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

        var cArgs: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, program, &actions, &attributes, &cArgs, &cEnv)
        guard spawned == 0 else {
            throw SMSError(.commandFailed, "command \(program) could not be run: \(String(cString: strerror(spawned)))")
        }

        let deadline = monotonicSeconds() + Double(timeoutSeconds)
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR {
                throw SMSError(.commandFailed, "command \(program): waitpid: \(String(cString: strerror(errno)))")
            }
            if monotonicSeconds() >= deadline {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                _ = retryingOnInterrupt { waitpid(pid, &status, 0) }
                return .timedOut
            }
            var pause = timespec(tv_sec: 0, tv_nsec: 5_000_000)
            nanosleep(&pause, nil)
        }
        // Whatever the program left running in its group is not wanted either.
        kill(-pid, SIGKILL)
        if status & 0x7F == 0 { return .exited((status >> 8) & 0xFF) }
        return .signaled(status & 0x7F)
    }

    /// A pipe that already holds all of `input`, with its write end closed: the read end,
    /// close-on-exec. Nothing is written once the program runs, so nothing can block on a
    /// program that does not read, and nothing can meet a closed pipe (EPIPE, SIGPIPE).
    static func filledPipe(_ input: [UInt8], program: String) throws(SMSError) -> Int32 {
        guard input.count <= maxMessageBytes else {
            throw SMSError(.commandFailed, "command \(program): the text is \(input.count) bytes, more than \(maxMessageBytes)")
        }
        var fds: [Int32] = [-1, -1]
        guard Self.closeOnExecPipe(&fds) == 0 else {
            throw SMSError(.commandFailed, "command \(program): pipe: \(String(cString: strerror(errno)))")
        }
        var (readEnd, writeEnd) = (fds[0], fds[1])
        defer { close(writeEnd) }
        // With 0, 1 or 2 closed in this process the pipe could get one of them, and the
        // spawn's dup2 onto 0 or its opens of 1 and 2 would then lose it: move it above 2.
        if readEnd < 3 {
            let moved = fcntl(readEnd, F_DUPFD_CLOEXEC, 3)
            let error = errno
            close(readEnd)
            guard moved >= 0 else {
                throw SMSError(.commandFailed, "command \(program): pipe: \(String(cString: strerror(error)))")
            }
            readEnd = moved
        }
        // Only the write end is non-blocking (the program must wait on its stdin, not get
        // EAGAIN; the two ends are separate open files, so the flag is not shared).
        _ = fcntl(writeEnd, F_SETFL, fcntl(writeEnd, F_GETFL) | O_NONBLOCK)
        // A pipe holds 64 KiB by default; ask for more only if ever needed.
        if fcntl(writeEnd, Self.getPipeSize) < input.count { _ = fcntl(writeEnd, Self.setPipeSize, Int32(input.count)) }
        var written = 0
        while written < input.count {
            let n = input.withUnsafeBytes { write(writeEnd, $0.baseAddress! + written, input.count - written) }
            if n > 0 {
                written += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                // Non-blocking: EAGAIN means the pipe is full, which it was made not to be.
                let reason = n < 0 ? String(cString: strerror(errno)) : "short write"
                close(readEnd)
                throw SMSError(.commandFailed, "command \(program): writing the text to its stdin: \(reason)")
            }
        }
        return readEnd
    }

    /// pipe2(fds, O_CLOEXEC): both ends close-on-exec from the start, so no program spawned
    /// meanwhile by another thread inherits them. Swift's Glibc module does not export
    /// pipe2, so it is looked up by name, with pipe and fcntl as the fallback.
    static func closeOnExecPipe(_ fds: inout [Int32]) -> Int32 {
        if let pipe2 = Self.pipe2 { return fds.withUnsafeMutableBufferPointer { pipe2($0.baseAddress!, O_CLOEXEC) } }
        guard pipe(&fds) == 0 else { return -1 }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return 0
    }

    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    static let pipe2: Pipe2? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "pipe2") else { return nil }
        return unsafeBitCast(symbol, to: Pipe2.self)
    }()

    /// F_GETPIPE_SZ and F_SETPIPE_SZ (Linux; not exported by Swift's Glibc module).
    static let getPipeSize: Int32 = 1032
    static let setPipeSize: Int32 = 1031

    /// Marks every open descriptor from 3 up close-on-exec, so that the program inherits
    /// only stdin, stdout and stderr — never the socket to the PAM module or a lock.
    static func closeOnExecEverything() throws(SMSError) {
        guard let dir = opendir("/proc/self/fd") else {
            throw SMSError(.unavailable, "command: cannot list /proc/self/fd: \(String(cString: strerror(errno)))")
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

    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
        else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

}
