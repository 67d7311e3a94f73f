import Testing
import WatchwordCrypto
@testable import WatchwordOTP

/// The RFC 4226 Appendix D secret: ASCII "12345678901234567890".
let rfc4226Secret = Array("12345678901234567890".utf8)

@Suite("HOTP (RFC 4226)")
struct HOTPTests {
    /// RFC 4226 Appendix D, table 1: HMAC-SHA-1(secret, count) for count 0...9.
    static let appendixDHMAC = [
        "cc93cf18508d94934c64b65d8ba7667fb7cde4b0",
        "75a48a19d4cbe100644e8ac1397eea747a2d33ab",
        "0bacb7fa082fef30782211938bc1c5e70416ff44",
        "66c28227d03a2d5529262ff016a1e6ef76557ece",
        "a904c900a64b35909874b33e61c5938a8e15ed1c",
        "a37e783d7b7233c083d4f62926c7a25f238d0316",
        "bc9cd28561042c83f219324d3c607256c03272ae",
        "a4fb960c0bc06e1eabb804e5b397cdc4b45596fa",
        "1b3c89f65e6c9e883012052823443f048b4332db",
        "1637409809a679dc698207310c8c7fc07290d9e5",
    ]
    /// RFC 4226 Appendix D, table 2: the truncated 31-bit values, in decimal.
    static let appendixDTruncated: [UInt32] = [
        1284755224, 1094287082, 137359152, 1726969429, 1640338314,
        868254676, 1918287922, 82162583, 673399871, 645520489,
    ]
    /// RFC 4226 Appendix D, table 3: the 6-digit HOTP values.
    static let appendixDCodes = [
        "755224", "287082", "359152", "969429", "338314",
        "254676", "287922", "162583", "399871", "520489",
    ]

    @Test("RFC 4226 Appendix D: intermediate HMAC-SHA-1 values", arguments: 0 ..< 10)
    func appendixDIntermediateHMAC(count: Int) {
        var message = [UInt8](repeating: 0, count: 8)
        message[7] = UInt8(count)
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(bytes: rfc4226Secret))
        #expect(Hex.encode(mac) == Self.appendixDHMAC[count])
        // RFC 4226 §5.3 dynamic truncation of that HMAC.
        #expect(HOTP.truncate(mac) == Self.appendixDTruncated[count])
    }

    @Test("RFC 4226 Appendix D: HOTP values for count 0...9", arguments: 0 ..< 10)
    func appendixDCodes(count: Int) throws {
        let hotp = try HOTP(secret: rfc4226Secret)
        #expect(hotp.code(counter: UInt64(count)) == Self.appendixDCodes[count])
    }

    @Test("RFC 4226 §5.4: worked truncation example")
    func section54Example() {
        // §5.4: offset 0x5a & 0xf = 10, DBC 0x50ef7f19 = 1357872921, code 872921.
        let mac = Hex.decode("1f8698690e02ca16618550ef7f19da8e945b555a")!
        #expect(HOTP.truncate(mac) == 0x50ef7f19)
        #expect(HOTP.truncate(mac) % 1_000_000 == 872921)
    }

    @Test("RFC 4226 §5.3: codes are zero-padded to the digit count")
    func zeroPadding() throws {
        // Appendix D count 2 truncates to 137359152: 7 digits = "7359152", 8 = "37359152".
        #expect(try HOTP(secret: rfc4226Secret, digits: 7).code(counter: 2) == "7359152")
        #expect(try HOTP(secret: rfc4226Secret, digits: 8).code(counter: 7) == "82162583")
        // Search a few counters for a code with a leading zero and check its length.
        let hotp = try HOTP(secret: rfc4226Secret, digits: 6)
        let codes = (0 ..< 200).map { hotp.code(counter: UInt64($0)) }
        #expect(codes.allSatisfy { $0.count == 6 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) })
        #expect(codes.contains { $0.hasPrefix("0") })
        #expect(HOTP.zeroPadded(42, to: 6) == "000042")
        #expect(HOTP.zeroPadded(0, to: 8) == "00000000")
    }

    @Test("RFC 4226 §5.2: the counter is 8 bytes big-endian, including the high bits")
    func largeCounter() throws {
        let hotp = try HOTP(secret: rfc4226Secret, digits: 8)
        let counter: UInt64 = 0x0102_0304_0506_0708
        let mac = HMAC<Insecure.SHA1>.authenticationCode(
            for: [1, 2, 3, 4, 5, 6, 7, 8], using: SymmetricKey(bytes: rfc4226Secret))
        #expect(hotp.code(counter: counter) == HOTP.zeroPadded(HOTP.truncate(mac) % 100_000_000, to: 8))
        #expect(hotp.code(counter: .max).count == 8)
    }

    @Test("Parameter validation: secret length and digits")
    func validation() throws {
        #expect(throws: OTPError.invalidSecretLength(0)) { try HOTP(secret: []) }
        #expect(throws: OTPError.invalidSecretLength(1025)) { try HOTP(secret: [UInt8](repeating: 1, count: 1025)) }
        #expect(throws: OTPError.invalidDigits(5)) { try HOTP(secret: rfc4226Secret, digits: 5) }
        #expect(throws: OTPError.invalidDigits(9)) { try HOTP(secret: rfc4226Secret, digits: 9) }
        #expect(throws: OTPError.invalidDigits(-1)) { try HOTP(secret: rfc4226Secret, digits: -1) }
        _ = try HOTP(secret: [7])
        _ = try HOTP(secret: [UInt8](repeating: 1, count: 1024), algorithm: .sha512, digits: 8)
        #expect(OTPError.invalidDigits(9).description == "digits must be 6, 7 or 8 (got 9)")
        #expect(OTPError.invalidSecretLength(0).description == "secret must be 1 to 1024 bytes (got 0)")
    }
}
