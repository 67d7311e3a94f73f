#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call, with the call's name, the path it worked on and `errno`.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    public let call: String
    public let path: String
    public let errno: Int32

    public init(_ call: String, _ path: String, errno: Int32) {
        self.call = call
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "\(call) \(path): \(String(cString: strerror(errno)))"
    }
}

/// Retries a system call while it fails with EINTR; the one place that loop lives, for
/// every target above Core (WatchwordCrypto, below it, has its one getrandom loop).
@inline(__always)
public func retryingOnInterrupt<T: BinaryInteger>(_ body: () -> T) -> T {
    while true {
        let result = body()
        if result == -1 && errno == EINTR { continue }
        return result
    }
}

/// The current time as whole seconds since the epoch (CLOCK_REALTIME: TOTP is wall-clock time).
public func unixTimeNow() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec)
}

/// Seconds on the monotonic clock (CLOCK_MONOTONIC): for deadlines and timeouts, which a
/// change of the wall clock must not stretch or cut.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// This machine's host name, or nil when it cannot be read or is empty.
public func systemHostName() -> String? {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return nil }
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return name.isEmpty ? nil : name
}

/// Whether both the real and the effective user are root.
public func runningAsRoot() -> Bool {
    getuid() == 0 && geteuid() == 0
}
