import FuzzDriver
import Glibc
import WatchwordCore
import WatchwordImport

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzGoogleAuthenticatorFile)) }
}

/// `~/.google_authenticator` files, which their users write and root imports: parsing any
/// bytes never traps; a file that parses has no error, a secret of at least 10 bytes, a
/// kind, a period of 1 to 3600 s and at most `UserRecord.maxRecoveryCodes` 8-digit scratch
/// codes; a file that does not parse says why.
func fuzzGoogleAuthenticatorFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var problems = ImportProblems()
    let parsed = GoogleAuthenticatorFile.parse(ForeignFile(path: "/f", bytes: bytes), problems: &problems)
    guard let ga = parsed else {
        require(!problems.errors.isEmpty, "refused without an error")
        return 0
    }
    require(problems.errors.isEmpty, "parsed despite errors: \(problems.errors)")
    require(ga.secret.count >= 10, "a secret of \(ga.secret.count) bytes")
    require((1...3600).contains(ga.period), "period \(ga.period)")
    require(ga.scratchCodes.count <= UserRecord.maxRecoveryCodes, "\(ga.scratchCodes.count) scratch codes")
    require(ga.scratchCodes.allSatisfy { $0.utf8.count == 8 && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } },
            "a scratch code that is not 8 digits")
    return 0
}

private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
