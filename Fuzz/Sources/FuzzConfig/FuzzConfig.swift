import FuzzDriver
import Glibc
import WatchwordCore

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzConfig)) }
}

/// config.toml: parsing arbitrary bytes (TOMLParser, then Config's typed reads and checks)
/// never traps, and parsing is deterministic.
func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let config = try? Config.parse(bytes, path: "fuzz.toml") else { return 0 }
    let second = try? Config.parse(bytes, path: "fuzz.toml")
    require(second == config, "the same bytes parsed to a different config")
    return 0
}

/// A failed property, with its message even in -O builds (where `precondition` drops it).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
