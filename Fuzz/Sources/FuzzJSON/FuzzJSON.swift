import FuzzDriver
import Glibc
import WatchwordCore

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzJSON)) }
}

/// The one JSON parser (SMS providers' answers come from the network; audit lines are read
/// back): any bytes parse or are refused without a trap; whatever parses renders to text
/// that parses to the same value and renders the same again; and the same bytes nested one
/// level deeper than the limit allows are refused.
func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let value = JSON.parse(bytes) {
        let text = value.rendered
        guard let again = JSON.parse(Array(text.utf8)) else { fatalError("rendered JSON does not parse: \(text)") }
        require(again == value, "round trip changed the value: \(text)")
        require(again.rendered == text, "rendering is not stable: \(text)")
        require(depth(value) <= JSON.maxDepth, "a value deeper than maxDepth was accepted")
        // Wrapped in maxDepth more arrays, it is too deep.
        let deep = String(repeating: "[", count: JSON.maxDepth) + text + String(repeating: "]", count: JSON.maxDepth)
        require(JSON.parse(Array(deep.utf8)) == nil, "nesting past maxDepth was accepted")
    }
    // Audit lines go through the same parser.
    _ = AuditEntry(jsonLine: Substring(decoding: bytes, as: UTF8.self))
    return 0
}

private func depth(_ value: JSON) -> Int {
    switch value {
    case .array(let items): 1 + (items.map(depth).max() ?? 0)
    case .object(let pairs): 1 + (pairs.map { depth($0.1) }.max() ?? 0)
    default: 0
    }
}

/// A failed property, with its message even in -O builds (where `precondition` drops it).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
