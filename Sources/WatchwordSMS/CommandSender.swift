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
        guard message.utf8.count <= Self.maxMessageBytes else {
            throw SMSError(
                .commandFailed, "command \(program): the text is \(message.utf8.count) bytes, more than \(Self.maxMessageBytes)")
        }
        let status: ChildProcess.Ending
        do {
            status = try ChildProcess.run(
                words, input: Array(message.utf8), output: showOutput ? .inherit : .discard,
                environment: Self.environment, timeoutSeconds: timeoutSeconds
            ).ending
        } catch {
            switch error {
            case .spawn(let reason): throw SMSError(.commandFailed, "command \(program) could not be run: \(reason)")
            case .system(let reason): throw SMSError(.commandFailed, "command \(program): \(reason)")
            }
        }
        switch status {
        case .exited(0): return
        case .exited(let code): throw SMSError(.commandFailed, "command \(program) exited with status \(code)")
        case .signaled(let signal): throw SMSError(.commandFailed, "command \(program) was killed by signal \(signal)")
        case .timedOut:
            throw SMSError(.timeout, "command \(program) did not finish within \(timeoutSeconds) seconds; killed")
        }
    }
}
