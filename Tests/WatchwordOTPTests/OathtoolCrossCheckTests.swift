import Foundation
import Testing
import WatchwordCrypto
import WatchwordOTP

/// The independent implementation checked against (Debian package oathtool).
private let oathtoolPath = "/usr/bin/oathtool"

/// On CI (CI=true) oathtool is installed by install/deps.sh, so the suite always runs there
/// and fails if it is missing, instead of being skipped.
private let onCI = ProcessInfo.processInfo.environment["CI"]?.lowercased() == "true"

/// Cross-checks against an independent implementation, OATH Toolkit's
/// `oathtool` (RFC 4226 / RFC 6238), for random parameters.
@Suite(
    "Cross-check with oathtool (RFC 4226, RFC 6238)",
    .enabled(
        if: onCI || FileManager.default.isExecutableFile(atPath: oathtoolPath), "\(oathtoolPath) is not installed"))
struct OathtoolCrossCheckTests {
    /// SplitMix64: a fixed seed keeps failures reproducible.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: oathtoolPath)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw OathtoolFailed(arguments: arguments, status: process.terminationStatus)
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct OathtoolFailed: Error {
        let arguments: [String]
        let status: Int32
    }

    static func randomSecret(_ rng: inout SplitMix64) -> [UInt8] {
        // Mostly realistic lengths, sometimes very short or longer than a hash block.
        let length = [1, 5, 10, 16, 20, 32, 64, 100][Int.random(in: 0 ..< 8, using: &rng)]
            + Int.random(in: 0 ... 3, using: &rng)
        return (0 ..< length).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
    }

    @Test("RFC 6238 TOTP: 30 random secrets, algorithms, digits, periods and times")
    func totp() throws {
        var rng = SplitMix64(state: 0x7761_7463_6877_6f72)
        for _ in 0 ..< 30 {
            let secret = Self.randomSecret(&rng)
            let algorithm = OTPAlgorithm.allCases.randomElement(using: &rng)!
            let digits = Int.random(in: 6 ... 8, using: &rng)
            let period = [30, 60].randomElement(using: &rng)!
            let time = Int64.random(in: 0 ... 4_102_444_800, using: &rng)  // up to 2100-01-01
            let totp = try TOTP(secret: secret, algorithm: algorithm, digits: digits, period: period)
            let arguments = [
                "--totp=\(algorithm.rawValue.uppercased())", "--digits=\(digits)",
                "--time-step-size=\(period)s", "--now=@\(time)", Hex.encode(secret),
            ]
            let expected = try Self.run(arguments)
            #expect(totp.code(at: time) == expected, "oathtool \(arguments.joined(separator: " "))")
        }
    }

    @Test("RFC 4226 HOTP: 30 random secrets, digits and counters (oathtool HOTP is SHA-1 only)")
    func hotp() throws {
        var rng = SplitMix64(state: 0x6863_6f75_6e74_6572)
        for i in 0 ..< 30 {
            let secret = Self.randomSecret(&rng)
            let digits = Int.random(in: 6 ... 8, using: &rng)
            // Small, large and 64-bit counters; the high bytes must be encoded too.
            let counter: UInt64 =
                switch i % 3 {
                case 0: UInt64.random(in: 0 ... 1000, using: &rng)
                case 1: UInt64.random(in: 0 ... UInt64(UInt32.max), using: &rng)
                default: UInt64.random(in: 0 ... UInt64(Int64.max), using: &rng)
                }
            let hotp = try HOTP(secret: secret, algorithm: .sha1, digits: digits)
            // oathtool also accepts the secret as base32, which exercises our encoder.
            let arguments = ["--base32", "-c", "\(counter)", "--digits=\(digits)", Base32.encode(secret)]
            let expected = try Self.run(arguments)
            #expect(hotp.code(counter: counter) == expected, "oathtool \(arguments.joined(separator: " "))")
        }
    }
}
