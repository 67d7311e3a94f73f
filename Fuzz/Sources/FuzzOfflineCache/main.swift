import FuzzDriver
import Glibc
import WatchwordCore
import WatchwordPostgres

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzOfflineCache)) }
}

private let alice = try! UserName("alice")

/// A host's offline cache entry (fleet mode): parsing arbitrary bytes as alice's entry never
/// traps, and an entry that parses serializes to bytes that parse to an equal entry and
/// serialize the same again (a refresh that reads and rewrites an entry keeps its offline
/// events).
func fuzzOfflineCache(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let entry = try? OfflineEntry.parse(bytes, expectedUser: alice) else { return 0 }
    let written = entry.serialized()
    let again: OfflineEntry
    do {
        again = try OfflineEntry.parse(written, expectedUser: alice)
    } catch {
        fatalError("serialized entry does not parse: \(error)\n\(String(decoding: written, as: UTF8.self))")
    }
    if again != entry { fatalError("round trip changed the entry") }
    if again.serialized() != written { fatalError("serialization is not stable") }
    return 0
}
