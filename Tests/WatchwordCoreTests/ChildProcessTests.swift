#if canImport(Glibc)
import Glibc
#endif
import Testing
import WatchwordCore

/// The one way watchword runs another program (the SMS `command` provider, the CLI's
/// system tools). Each test can fail: a leaked descriptor, a surviving grandchild, an
/// unbounded capture or a lost input byte shows up in what the child reports.
@Suite("ChildProcess")
struct ChildProcessTests {
    let env = ["PATH=/usr/bin:/bin", "LANG=C"]

    func sh(_ script: String, input: [UInt8]? = nil, output: ChildProcess.Output = .capture(limit: 1 << 20),
            timeout: Int = 10) throws -> ChildProcess.Result {
        try ChildProcess.run(["/bin/sh", "-c", script], input: input, output: output, environment: env, timeoutSeconds: timeout)
    }

    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test("stdin holds exactly the input, then end of file; without input it is /dev/null")
    func input() throws {
        let got = try sh("od -An -c", input: Array("code 123456".utf8))
        #expect(text(got.stdout).split(separator: " ").joined() == "code123456\n")
        let none = try sh("readlink /proc/self/fd/0; cat | wc -c")
        #expect(text(none.stdout) == "/dev/null\n0\n")
    }

    @Test("no descriptor of ours reaches the program, not even one left open without close-on-exec")
    func descriptors() throws {
        let leak = open("/dev/null", O_RDONLY)  // not close-on-exec
        defer { close(leak) }
        #expect(leak > 2)
        // ls opens the directory it lists (one more descriptor, its own).
        let got = try sh("ls /proc/self/fd | sort -n | tr '\\n' ' '")
        #expect(text(got.stdout) == "0 1 2 3 ")
    }

    @Test("the environment is the one given, and nothing else")
    func environment() throws {
        setenv("WATCHWORD_TEST_LEAK", "yes", 1)
        defer { unsetenv("WATCHWORD_TEST_LEAK") }
        let got = try sh("env | sort | tr '\\n' ' '")
        #expect(text(got.stdout) == "LANG=C PATH=/usr/bin:/bin PWD=\(currentDirectory()) ")
    }

    @Test("exit status, signal, stdout and stderr apart")
    func endings() throws {
        let failed = try sh("echo out; echo err >&2; exit 3")
        #expect(failed.ending == .exited(3) && text(failed.stdout) == "out\n" && text(failed.stderr) == "err\n")
        #expect(try sh("kill -TERM $$").ending == .signaled(SIGTERM))
    }

    @Test("captured output is bounded")
    func bounded() throws {
        let got = try sh("head -c 100000 /dev/zero", output: .capture(limit: 1000))
        #expect(got.ending == .exited(0) && got.stdout.count == 1000)
    }

    @Test("after the time limit the whole process group is killed, grandchildren included")
    func timeout() throws {
        let marker = "/tmp/watchword-childprocess-\(getpid())"
        defer { unlink(marker) }
        let start = monotonicSeconds()
        // The grandchild would touch the marker after 3 s; the child waits for it.
        let got = try sh("(sleep 3; touch \(marker)) & wait", timeout: 1)
        #expect(got.ending == .timedOut)
        #expect(monotonicSeconds() - start < 2.5)
        sleep(3)
        #expect(access(marker, F_OK) != 0, "the grandchild outlived the timeout")
    }

    @Test("what the program leaves running in its group is killed when it exits")
    func leftovers() throws {
        let marker = "/tmp/watchword-childprocess-left-\(getpid())"
        defer { unlink(marker) }
        let got = try sh("(sleep 1; touch \(marker)) >/dev/null 2>&1 & exit 0", output: .discard)
        #expect(got.ending == .exited(0))
        sleep(2)
        #expect(access(marker, F_OK) != 0, "a process of its group outlived it")
    }

    @Test("a program that cannot be run is a spawn failure")
    func spawnFailure() {
        #expect(throws: ChildProcess.Failure.spawn("No such file or directory")) {
            try ChildProcess.run(["/nonexistent/program"], input: nil, output: .discard, environment: env, timeoutSeconds: 5)
        }
    }

    private func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        return getcwd(&buffer, buffer.count).map { String(cString: $0) } ?? "?"
    }
}
