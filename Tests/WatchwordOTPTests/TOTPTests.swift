import Testing
@testable import WatchwordOTP

@Suite("TOTP (RFC 6238)")
struct TOTPTests {
    /// RFC 6238 Appendix B seeds: the ASCII digits repeated to the hash's output length.
    static func seed(_ algorithm: OTPAlgorithm) -> [UInt8] {
        switch algorithm {
        case .sha1: return Array("12345678901234567890".utf8)
        case .sha256: return Array("12345678901234567890123456789012".utf8)
        case .sha512: return Array("1234567890123456789012345678901234567890123456789012345678901234".utf8)
        }
    }

    struct Row: Sendable, CustomTestStringConvertible {
        let time: Int64
        let step: UInt64
        let algorithm: OTPAlgorithm
        let code: String
        var testDescription: String { "T=\(time) \(algorithm.rawValue) -> \(code)" }
    }

    /// RFC 6238 Appendix B, the complete test-vector table (8 digits, X = 30, T0 = 0).
    static let appendixB: [Row] = [
        Row(time: 59, step: 0x1, algorithm: .sha1, code: "94287082"),
        Row(time: 59, step: 0x1, algorithm: .sha256, code: "46119246"),
        Row(time: 59, step: 0x1, algorithm: .sha512, code: "90693936"),
        Row(time: 1111111109, step: 0x23523EC, algorithm: .sha1, code: "07081804"),
        Row(time: 1111111109, step: 0x23523EC, algorithm: .sha256, code: "68084774"),
        Row(time: 1111111109, step: 0x23523EC, algorithm: .sha512, code: "25091201"),
        Row(time: 1111111111, step: 0x23523ED, algorithm: .sha1, code: "14050471"),
        Row(time: 1111111111, step: 0x23523ED, algorithm: .sha256, code: "67062674"),
        Row(time: 1111111111, step: 0x23523ED, algorithm: .sha512, code: "99943326"),
        Row(time: 1234567890, step: 0x273EF07, algorithm: .sha1, code: "89005924"),
        Row(time: 1234567890, step: 0x273EF07, algorithm: .sha256, code: "91819424"),
        Row(time: 1234567890, step: 0x273EF07, algorithm: .sha512, code: "93441116"),
        Row(time: 2000000000, step: 0x3F940AA, algorithm: .sha1, code: "69279037"),
        Row(time: 2000000000, step: 0x3F940AA, algorithm: .sha256, code: "90698825"),
        Row(time: 2000000000, step: 0x3F940AA, algorithm: .sha512, code: "38618901"),
        Row(time: 20000000000, step: 0x27BC86AA, algorithm: .sha1, code: "65353130"),
        Row(time: 20000000000, step: 0x27BC86AA, algorithm: .sha256, code: "77737706"),
        Row(time: 20000000000, step: 0x27BC86AA, algorithm: .sha512, code: "47863826"),
    ]

    @Test("RFC 6238 Appendix B test vectors", arguments: appendixB)
    func appendixBVectors(row: Row) throws {
        let totp = try TOTP(secret: Self.seed(row.algorithm), algorithm: row.algorithm, digits: 8, period: 30)
        #expect(totp.step(at: row.time) == row.step)
        #expect(totp.code(at: row.time) == row.code)
        #expect(totp.code(step: row.step) == row.code)
    }

    @Test("RFC 6238 §4.2: T = floor((time - T0) / X)")
    func steps() throws {
        let totp = try TOTP(secret: rfc4226Secret)
        #expect(totp.step(at: 0) == 0)
        #expect(totp.step(at: 29) == 0)
        #expect(totp.step(at: 30) == 1)
        #expect(totp.step(at: 59) == 1)
        #expect(totp.step(at: 60) == 2)
        #expect(totp.step(at: .max) == UInt64(Int64.max) / 30)
        let minute = try TOTP(secret: rfc4226Secret, period: 60)
        #expect(minute.step(at: 119) == 1)
        #expect(minute.step(at: 120) == 2)
        // Codes are constant within a step.
        #expect(totp.code(at: 30) == totp.code(at: 59))
    }

    @Test("Times before the epoch map to step 0")
    func negativeTime() throws {
        let totp = try TOTP(secret: rfc4226Secret)
        #expect(totp.step(at: -1) == 0)
        #expect(totp.step(at: .min) == 0)
        #expect(totp.code(at: -100) == totp.code(step: 0))
    }

    @Test("TOTP with step as counter equals HOTP (RFC 6238 §4)")
    func matchesHOTP() throws {
        let totp = try TOTP(secret: rfc4226Secret, digits: 6)
        for (i, code) in HOTPTests.appendixDCodes.enumerated() {
            #expect(totp.code(step: UInt64(i)) == code)
            #expect(totp.code(at: Int64(i) * 30 + 7) == code)
        }
    }

    @Test("Parameter validation: period and inherited HOTP checks")
    func validation() throws {
        #expect(throws: OTPError.invalidPeriod(0)) { try TOTP(secret: rfc4226Secret, period: 0) }
        #expect(throws: OTPError.invalidPeriod(-30)) { try TOTP(secret: rfc4226Secret, period: -30) }
        #expect(throws: OTPError.invalidPeriod(3601)) { try TOTP(secret: rfc4226Secret, period: 3601) }
        #expect(throws: OTPError.invalidDigits(10)) { try TOTP(secret: rfc4226Secret, digits: 10) }
        #expect(throws: OTPError.invalidSecretLength(0)) { try TOTP(secret: []) }
        _ = try TOTP(secret: rfc4226Secret, period: 1)
        _ = try TOTP(secret: rfc4226Secret, period: 3600)
        let t = try TOTP(secret: rfc4226Secret, algorithm: .sha256, digits: 7, period: 45)
        #expect(t.hotp.algorithm == .sha256 && t.hotp.digits == 7 && t.period == 45)
        #expect(OTPError.invalidPeriod(0).description == "period must be 1 to 3600 seconds (got 0)")
    }
}
