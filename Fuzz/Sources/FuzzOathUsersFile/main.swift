import FuzzDriver
import Glibc
import WatchwordCore
import WatchwordImport
import WatchwordOTP

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzOathUsersFile)) }
}

/// pam_oath's users file: parsing any bytes never traps; every entry has a valid user name,
/// one entry per user, a secret of at least 10 bytes that makes an HOTP generator, and a
/// line that exists in the file.
func fuzzOathUsersFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var problems = ImportProblems()
    let entries = OathUsersFile.parse(
        ForeignFile(path: "/etc/users.oath", bytes: bytes), issuer: "host", now: 1_800_000_000, problems: &problems)
    let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).count
    var seen: Set<String> = []
    for entry in entries {
        require(seen.insert(entry.user.value).inserted, "two entries for \(entry.user)")
        require((1...lines).contains(entry.line), "entry on line \(entry.line) of \(lines)")
        require(entry.enrollment.secret.count >= 10, "a secret of \(entry.enrollment.secret.count) bytes")
        require((try? HOTP(secret: entry.enrollment.secret, algorithm: entry.enrollment.algorithm,
                           digits: entry.enrollment.digits)) != nil, "an entry that makes no HOTP generator")
    }
    return 0
}

private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
