import FuzzDriver
import Glibc
import WatchwordCore

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzStateFile)) }
}

private let alice = try! UserName("alice")

/// State files: parsing arbitrary bytes as alice's file never traps, and every file that
/// parses serializes to one that parses to an equal record and serializes to the same bytes
/// (so a record read and written back by a login is the record that was read).
func fuzzStateFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let record = try? UserRecord.parse(bytes, expectedUser: alice) else { return 0 }

    let written = record.serialized()
    let again: UserRecord
    do {
        again = try UserRecord.parse(written, expectedUser: alice)
    } catch {
        fatalError("serialized record does not parse: \(error)\n\(String(decoding: written, as: UTF8.self))")
    }
    require(again == record, "round trip changed the record:\n\(record)\n\(again)")
    require(again.serialized() == written, "serialization is not stable")
    return 0
}

/// A failed property, with its message even in -O builds (where `precondition` drops it).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
