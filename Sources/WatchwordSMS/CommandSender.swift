#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore

/// The `command` provider: runs `sms.command.argv` (e.g. gammu-smsd-inject for a GSM
/// modem) with `{phone}` and `{message}` replaced.
///
/// No shell: the program gets the words as they are. By design of this provider the
/// message — code included — is in the program's argv; nothing else is. The environment is
/// a fixed PATH and locale, stdin is /dev/null, and in the helper stdout and stderr go to
/// /dev/null too, so whatever the program prints about the message never reaches a log.
/// It runs in a process group of its own, is killed (the whole group) after
/// `timeoutSeconds`, and only exit status 0 counts as sent.
struct CommandSender: SMSSender {
    let argv: [String]
    let timeoutSeconds: Int
    /// Pass the program's stdout and stderr through (`watchword sms-test`, for the admin).
    var showOutput = false

    static let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]

    /// Each word with `{phone}` and `{message}` replaced, in one pass (a message that
    /// contains "{phone}" stays as it is).
    static func expand(_ argv: [String], phone: String, message: String) -> [String] {
        argv.map { word in
            var out = ""
            var rest = Substring(word)
            while let brace = rest.firstIndex(of: "{") {
                out += rest[..<brace]
                let tail = rest[brace...]
                if tail.hasPrefix("{phone}") {
                    out += phone
                    rest = tail.dropFirst(7)
                } else if tail.hasPrefix("{message}") {
                    out += message
                    rest = tail.dropFirst(9)
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
        let words = Self.expand(argv, phone: phone.e164, message: message)
        let status = try Self.run(words, timeoutSeconds: timeoutSeconds, showOutput: showOutput)
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

    /// Runs `words` and waits at most `timeoutSeconds` for it.
    static func run(_ words: [String], timeoutSeconds: Int, showOutput: Bool) throws(SMSError) -> Status {
        let program = words[0]
        try closeOnExecEverything()
        // A parent that ignores SIGCHLD would have the child reaped behind our back.
        signal(SIGCHLD, SIG_DFL)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Close everything above 2 in the child itself (glibc ≥ 2.34): marking descriptors
        // close-on-exec beforehand races with any other thread that opens one in between.
        // Swift's Glibc module does not export it, so it is looked up by name.
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
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

        let deadline = monotonicMilliseconds() + Int64(timeoutSeconds) * 1000
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR {
                throw SMSError(.commandFailed, "command \(program): waitpid: \(String(cString: strerror(errno)))")
            }
            if monotonicMilliseconds() >= deadline {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
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

    static func monotonicMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
