import FuzzDriver
import Glibc
import WatchwordOTP

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzBase32)) }
}

/// Base32: decoding arbitrary text never traps; whatever decodes re-encodes to text that
/// decodes to the same bytes (with and without padding, in lower case); and any byte
/// string survives encode → decode.
func fuzzBase32(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))

    if let decoded = try? Base32.decode(String(decoding: bytes, as: UTF8.self)) {
        let encoded = Base32.encode(decoded)
        check(encoded, decodesTo: decoded)
        check(Base32.encode(decoded, padding: true), decodesTo: decoded)
        check(encoded.lowercased(), decodesTo: decoded)
    }

    // The raw input as a secret.
    let plain = Base32.encode(bytes)
    let padded = Base32.encode(bytes, padding: true)
    require(padded.utf8.count % 8 == 0, "padded encoding is not a multiple of 8: \(padded)")
    require(padded.hasPrefix(plain), "padding changed the characters: \(plain) / \(padded)")
    check(plain, decodesTo: bytes)
    check(padded, decodesTo: bytes)
    return 0
}

private func check(_ text: String, decodesTo expected: [UInt8]) {
    do {
        let again = try Base32.decode(text)
        require(again == expected, "round trip changed the bytes: \(text) -> \(again), expected \(expected)")
    } catch {
        fatalError("encoded text does not decode: \(text): \(error)")
    }
}

/// A failed property, with its message even in -O builds (where `precondition` drops it).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
