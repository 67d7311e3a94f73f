/// A phone number in E.164 form: `+`, a country code that does not start with 0, and at
/// most 15 digits in all — exactly what SMS providers expect in `To`.
///
/// Only the canonical spelling is accepted (no spaces, dashes, dots or parentheses): the
/// number is stored and sent as typed, so what the admin sees is what the provider gets.
public struct PhoneNumber: Sendable, Hashable, CustomStringConvertible {
    /// Digits after the `+`: E.164 allows at most 15; fewer than 7 is no real subscriber.
    public static let digitRange = 7...15

    /// The number as stored and sent, e.g. `+14155550123`.
    public let e164: String

    public init(_ text: String) throws(PhoneNumberError) {
        guard let plus = text.utf8.first, plus == UInt8(ascii: "+") else {
            throw text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) && !text.isEmpty ? .noPlus : .notDigits
        }
        let digits = text.utf8.dropFirst()
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { throw .notDigits }
        guard digits.first != UInt8(ascii: "0") else { throw .leadingZero }
        guard Self.digitRange.contains(digits.count) else { throw .length(digits.count) }
        e164 = text
    }

    /// All but the last four digits hidden, always behind six dots so the length is not
    /// shown either: `••••••4567`.
    public var masked: String { "••••••" + String(e164.suffix(4)) }

    public var description: String { e164 }
}

/// Why a phone number was refused.
public enum PhoneNumberError: Error, Sendable, Equatable, CustomStringConvertible {
    case noPlus
    case notDigits
    case leadingZero
    case length(Int)

    public var description: String {
        let form = "write it in E.164 form: '+', the country code and the number, digits only (e.g. +14155550123)"
        switch self {
        case .noPlus: return "the phone number must start with '+' and the country code; \(form)"
        case .notDigits: return "the phone number may hold only digits after the '+'; \(form)"
        case .leadingZero: return "a country code never starts with 0; \(form)"
        case .length(let n):
            return "the phone number has \(n) digits; E.164 numbers have \(PhoneNumber.digitRange.lowerBound) to \(PhoneNumber.digitRange.upperBound); \(form)"
        }
    }
}
