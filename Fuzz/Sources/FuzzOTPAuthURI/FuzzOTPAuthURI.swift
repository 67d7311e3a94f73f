import FuzzDriver
import Glibc
import WatchwordOTP

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzOTPAuthURI)) }
}

/// otpauth:// URIs: parsing arbitrary text never traps, and whatever parses renders
/// (`string`) to a URI that parses back to an equal value — the documented promise of
/// `string`, which holds when issuer and account contain no ':'.
func fuzzOTPAuthURI(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let uri = try? OTPAuthURI(parsing: text) else { return 0 }
    // Any U+003A, also one that a combining mark joins into a larger Character.
    guard !uri.account.unicodeScalars.contains(":"), !(uri.issuer?.unicodeScalars.contains(":") ?? false)
    else { return 0 }

    let rendered = uri.string
    let again: OTPAuthURI
    do {
        again = try OTPAuthURI(parsing: rendered)
    } catch {
        fatalError("rendered URI does not parse: \(rendered): \(error)\n  from: \(text)")
    }
    require(again == uri, "round trip changed the URI:\n  from: \(text)\n  rendered: \(rendered)\n  \(uri)\n  \(again)")
    require(again.string == rendered, "rendering is not stable: \(rendered) / \(again.string)")
    return 0
}

/// A failed property, with its message even in -O builds (where `precondition` drops it).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
