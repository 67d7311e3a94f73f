import Testing
import WatchwordCore

@Suite("Phone numbers: E.164 validation and masking")
struct PhoneNumberTests {
    @Test(
        "E.164 numbers are accepted as written",
        arguments: ["+14155550123", "+442071838750", "+32470123456", "+1234567", "+123456789012345", "+8613800138000"])
    func accepted(_ text: String) throws {
        let phone = try PhoneNumber(text)
        #expect(phone.e164 == text)
        #expect(phone.description == text)
    }

    struct Refusal: CustomTestStringConvertible, Sendable {
        let text: String
        let error: PhoneNumberError
        var testDescription: String { "'\(text)'" }
    }

    static let refusals: [Refusal] = [
        Refusal(text: "+0123", error: .leadingZero),
        Refusal(text: "+04155550123", error: .leadingZero),
        Refusal(text: "12345", error: .noPlus),
        Refusal(text: "14155550123", error: .noPlus),
        Refusal(text: "+1 555", error: .notDigits),
        Refusal(text: "+1 415 555 0123", error: .notDigits),
        Refusal(text: "+1-415-555-0123", error: .notDigits),
        Refusal(text: "+1(415)5550123", error: .notDigits),
        Refusal(text: "+1415555O123", error: .notDigits),
        Refusal(text: "phone", error: .notDigits),
        Refusal(text: "+abc", error: .notDigits),
        Refusal(text: "", error: .notDigits),
        Refusal(text: "+", error: .notDigits),
        Refusal(text: "++14155550123", error: .notDigits),
        Refusal(text: "+14155550123\n", error: .notDigits),
        Refusal(text: " +14155550123", error: .notDigits),
        Refusal(text: "+١٤١٥٥٥٥٠١٢٣", error: .notDigits),
        Refusal(text: "+１４１５５５５０１２３", error: .notDigits),
        Refusal(text: "+1234567890123456", error: .length(16)),
        Refusal(text: "+12345678901234567890", error: .length(20)),
        Refusal(text: "+123456", error: .length(6)),
        Refusal(text: "+1555", error: .length(4)),
    ]

    @Test("anything else is refused, saying why and how to write it", arguments: refusals)
    func refused(_ c: Refusal) {
        #expect(throws: c.error) { try PhoneNumber(c.text) }
        #expect(c.error.description.contains("E.164"))
        #expect(c.error.description.contains("+14155550123"))
    }

    @Test("masked: six dots and the last four digits, whatever the length")
    func masked() throws {
        #expect(try PhoneNumber("+14155550123").masked == "••••••0123")
        #expect(try PhoneNumber("+1234567").masked == "••••••4567")
        #expect(try PhoneNumber("+123456789012345").masked == "••••••2345")
    }
}
