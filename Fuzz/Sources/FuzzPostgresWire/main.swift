import FuzzDriver
import Glibc
import WatchwordPostgres

@main enum Main {
    static func main() { exit(fuzz_main(CommandLine.argc, CommandLine.unsafeArgv, fuzzPostgresWire)) }
}

/// What the PostgreSQL client reads that it did not write: the conninfo string from the
/// config, and the server's DataRow and ErrorResponse messages. The first byte picks the
/// parser. No input traps; a DataRow that parses has no more values than it announced; an
/// error's message stays one line.
func fuzzPostgresWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size > 0, let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 3 {
    case 0:
        if let options = try? ConnectionOptions(conninfo: String(decoding: bytes, as: UTF8.self)) {
            if options.hosts.isEmpty || options.user.isEmpty { fatalError("parsed without a host or user") }
            for i in options.hosts.indices { _ = options.port(for: i) }
        }
    case 1:
        if let row = try? DatabaseConnection.dataRow(bytes[...]) {
            let announced = bytes.count >= 2 ? Int(bytes[0]) << 8 | Int(bytes[1]) : 0
            if row.count != announced { fatalError("\(row.count) values for \(announced) announced") }
        }
    default:
        let error = DatabaseConnection.serverError(bytes[...])
        if error.message.contains("\n") || error.message.contains("\r") { fatalError("multi-line error message") }
    }
    return 0
}
