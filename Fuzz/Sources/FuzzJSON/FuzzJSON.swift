import FuzzDriver
import Glibc
import WatchwordCore

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzJSON)) }
}

/// The one JSON parser (SMS providers' answers come from the network; audit lines are read
/// back): any bytes parse or are refused without a trap (and in time: run.sh's -timeout);
/// whatever parses names no key twice in an object, renders to text that parses to the same
/// value and renders the same again; and the same text nested past the limit is refused. An
/// audit line that reads writes back as a line that reads to the same entry.
func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let value = JSON.parse(bytes) {
        let text = value.rendered
        guard let again = JSON.parse(Array(text.utf8)) else { fatalError("rendered JSON does not parse: \(text)") }
        require(again == value, "round trip changed the value: \(text)")
        require(again.rendered == text, "rendering is not stable: \(text)")
        require(depth(value) <= JSON.maxDepth, "a value deeper than maxDepth was accepted")
        require(keysUnique(value), "an object with a key twice was accepted: \(text)")
        // Wrapped in maxDepth more arrays, it is too deep.
        let deep = String(repeating: "[", count: JSON.maxDepth) + text + String(repeating: "]", count: JSON.maxDepth)
        require(JSON.parse(Array(deep.utf8)) == nil, "nesting past maxDepth was accepted")
    }
    // Audit lines go through the same parser.
    if let entry = AuditEntry(jsonLine: Substring(decoding: bytes, as: UTF8.self)) {
        let line = entry.jsonLine
        require(!line.utf8.contains(0x0A), "an audit line written with a newline: \(line)")
        require(AuditEntry(jsonLine: Substring(line)) == entry, "an audit entry did not read back: \(line)")
    }
    return 0
}

private func keysUnique(_ value: JSON) -> Bool {
    switch value {
    case .array(let items): return items.allSatisfy(keysUnique)
    case .object(let pairs):
        var seen: Set<String> = []
        return pairs.allSatisfy { seen.insert($0.0).inserted && keysUnique($0.1) }
    default: return true
    }
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
