#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The steps of `SecureDirectory.writeAtomically`, where a test build can be made to die.
enum WriteStep: String {
    /// The temporary file exists (empty).
    case created
    /// The new bytes are in the temporary file, not yet fsynced.
    case written
    /// The temporary file is fsynced and closed, not yet renamed.
    case synced
    /// Renamed over the old file; the directory not yet fsynced.
    case renamed
    /// The directory fsynced: the write is complete, the caller has not returned.
    case dirsynced
}

#if WATCHWORD_TEST_HOOKS
// Test builds only: Package.swift defines WATCHWORD_TEST_HOOKS for debug builds, never for
// release builds, so no installed binary has this. The integration tests use it to kill the
// helper or the CLI at each step of an atomic write (Tests/integration/test_adversarial.py).
//
// The trigger is a file `.watchword-test-kill` in the directory being written, holding
// `STEP NAME` (e.g. `renamed hal`), and it is taken only under the same rules as state
// files (regular, root-owned, no group/other bits, one link): whoever can make it there is
// root already. When the step and the file name match, the trigger is removed (so it fires
// once) and the process raises SIGKILL, as if killed from outside at that very moment.
extension SecureDirectory {
    static let testKillTrigger = ".watchword-test-kill"

    func testCrashPoint(_ step: WriteStep, _ name: String) {
        let saved = errno
        defer { errno = saved }
        guard let bytes = try? read(Self.testKillTrigger, limit: 512) else { return }
        let text = String(decoding: bytes, as: UTF8.self)
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        guard words == [step.rawValue, name] else { return }
        unlinkat(fd, Self.testKillTrigger, 0)
        raise(SIGKILL)
    }
}
#else
extension SecureDirectory {
    @inline(__always) func testCrashPoint(_ step: WriteStep, _ name: String) {}
}
#endif
