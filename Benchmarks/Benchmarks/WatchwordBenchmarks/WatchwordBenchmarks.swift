import Benchmark
import Foundation
import WatchwordCore
import WatchwordOTP

/// The pieces of one login, each on its own: code maths, policy, parsing, and the locked,
/// atomic, fsynced write that every login ends with.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .mallocCountTotal, .peakMemoryResident], maxDuration: .seconds(2))

    let secret = Array("12345678901234567890".utf8)
    let totp = try! TOTP(secret: secret)
    let user = try! UserName("alice")

    Benchmark("TOTP code (SHA-1, 6 digits)") { benchmark in
        for i in benchmark.scaledIterations { blackHole(totp.code(at: 1_700_000_000 + Int64(i) * 30)) }
    }

    Benchmark("Verifier.check, right code, window 1") { benchmark in
        var record = UserRecord(user: user, created: 0)
        record.otp = OTPEnrollment(kind: .totp, secret: secret)
        let verifier = Verifier(policy: Policy())
        for i in benchmark.scaledIterations {
            let now = 1_700_000_000 + Int64(i) * 30
            var copy = record
            blackHole(verifier.check(Array(totp.code(at: now).utf8), record: &copy, now: now, key: nil))
        }
    }

    var sample = UserRecord(user: user, created: 1_700_000_000)
    sample.otp = OTPEnrollment(kind: .totp, secret: secret)
    sample.recoveryCodeHashes = Array(repeating: String(repeating: "ab", count: 32), count: 10)
    let bytes = sample.serialized()
    Benchmark("UserRecord parse") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? UserRecord.parse(bytes, expectedUser: user)) }
    }

    let config = Array("""
        [policy]
        window = 1
        max_failures = 5
        lockout_seconds = 30
        lockout_max_seconds = 3600
        [sms]
        provider = "none"
        """.utf8)
    Benchmark("Config parse") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? Config.parse(config)) }
    }

    Benchmark("FileStore.update (lock, read, write, fsync, rename)") { benchmark in
        let dir = "/tmp/ww-bench-store-\(getpid())"
        _ = try? FileManager.default.removeItem(atPath: dir)
        let store = try! FileStore(path: dir, create: true)
        try! store.update(user) { $0 = sample }
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            try! store.update(user) { record in record?.lastSuccess = Int64(i) }
        }
        benchmark.stopMeasurement()
        _ = try? FileManager.default.removeItem(atPath: dir)
    }
}
