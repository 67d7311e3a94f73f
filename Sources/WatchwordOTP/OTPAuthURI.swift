/// An `otpauth://` Key URI, the format authenticator apps scan from QR codes.
///
/// Format (Google Authenticator "Key Uri Format"):
/// `otpauth://TYPE/LABEL?PARAMETERS`, where TYPE is `totp` or `hotp`, LABEL is
/// `issuer:account` or `account`, and PARAMETERS include `secret` (base32,
/// required), `issuer`, `algorithm`, `digits`, `period` (TOTP) and `counter`
/// (HOTP, required).
///
/// The memberwise initializer does not validate; `init(parsing:)` does, and
/// `string` renders a URI that `init(parsing:)` accepts whenever the fields are
/// valid (in particular, issuer and account must not contain ':').
public struct OTPAuthURI: Sendable, Equatable {
    /// The URI's TYPE: time- or counter-based.
    public enum Kind: String, Sendable {
        case totp, hotp
    }

    /// Longest URI `init(parsing:)` accepts, in UTF-8 bytes; real ones are
    /// far shorter, and the bound keeps hostile input cheap to reject.
    public static let maximumLength = 4096
    /// Longest issuer and account name `init(parsing:)` accepts, in UTF-8 bytes after
    /// percent-decoding. `string` may write each byte as three ("%XX") and the issuer twice;
    /// with these bounds even the longest secret renders within `maximumLength`, so whatever
    /// parses renders to a URI that parses again.
    public static let maximumNameLength = 256

    /// Whether the codes are time-based (TOTP) or counter-based (HOTP).
    public var kind: Kind
    /// The account name, e.g. "alice@example.com".
    public var account: String
    /// The provider or service, e.g. "Example"; shown by apps above the account.
    public var issuer: String?
    /// The shared secret (base32 in the URI text).
    public var secret: [UInt8]
    /// The HMAC hash function; SHA1 when the URI omits it.
    public var algorithm: OTPAlgorithm
    /// The code length; 6 when the URI omits it.
    public var digits: Int
    /// The TOTP time step in seconds, 30 when the URI omits it; ignored for HOTP.
    public var period: Int
    /// The initial HOTP counter; ignored for TOTP.
    public var counter: UInt64

    /// Creates a URI from its fields without validating them.
    public init(
        kind: Kind, account: String, issuer: String? = nil, secret: [UInt8],
        algorithm: OTPAlgorithm = .sha1, digits: Int = 6, period: Int = 30, counter: UInt64 = 0
    ) {
        self.kind = kind
        self.account = account
        self.issuer = issuer
        self.secret = secret
        self.algorithm = algorithm
        self.digits = digits
        self.period = period
        self.counter = counter
    }

    /// Parses and validates an otpauth URI.
    ///
    /// Strict where a mistake could silently produce wrong codes or a
    /// misleading label: the scheme must be `otpauth` and TYPE `totp` or
    /// `hotp` (both in any case); the label must be non-empty, contain at most
    /// one ':' after percent-decoding, and decode to UTF-8 without control
    /// characters; issuer and account are at most `maximumNameLength` bytes;
    /// `secret` is required; an `issuer` parameter must match a
    /// label issuer; algorithm, digits, period and counter are validated (HOTP
    /// requires `counter`); a parameter given twice is rejected. Unknown
    /// parameters (`image`, ...) are ignored, as are `period` for HOTP and
    /// `counter` for TOTP. Parameter names match in any case. In parameter
    /// values '+' means a space, as in HTML forms and as Android's parser
    /// reads it; in the label it is a literal '+'.
    ///
    /// - Throws: `OTPError.invalidURI` with the reason, `OTPError.invalidBase32`
    ///   for a malformed secret, or the range errors of `TOTP` / `HOTP`
    ///   (`invalidSecretLength`, `invalidDigits`, `invalidPeriod`,
    ///   `invalidAlgorithm`).
    public init(parsing text: String) throws {
        let bytes = Array(text.utf8)
        guard bytes.count <= Self.maximumLength else {
            throw OTPError.invalidURI("longer than \(Self.maximumLength) bytes")
        }
        guard !bytes.contains(UInt8(ascii: "#")) else {
            throw OTPError.invalidURI("fragments ('#') are not allowed")
        }

        // Scheme: "otpauth://", case-insensitive per RFC 3986 §3.1.
        let prefix = Array("otpauth://".utf8)
        guard bytes.count >= prefix.count,
            asciiLowercased(bytes[0 ..< prefix.count]) == prefix
        else {
            throw OTPError.invalidURI("must start with otpauth://")
        }
        var rest = bytes[prefix.count...]

        // TYPE (the URI authority), up to the first '/'.
        let typeEnd = rest.firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") }) ?? rest.endIndex
        let typeName = String(decoding: rest[..<typeEnd], as: UTF8.self)
        guard let kind = Kind(rawValue: asciiLowercased(typeName)) else {
            throw OTPError.invalidURI("type must be totp or hotp (got \"\(typeName)\")")
        }
        guard typeEnd < rest.endIndex, rest[typeEnd] == UInt8(ascii: "/") else {
            throw OTPError.invalidURI("missing label after otpauth://\(typeName)/")
        }
        rest = rest[(typeEnd + 1)...]

        // LABEL, up to '?'.
        let queryStart = rest.firstIndex(of: UInt8(ascii: "?"))
        let rawLabel = rest[..<(queryStart ?? rest.endIndex)]
        guard !rawLabel.contains(UInt8(ascii: "/")) else {
            throw OTPError.invalidURI("label must not contain '/' (encode it as %2F)")
        }
        let label = try Self.percentDecode(rawLabel, plusIsSpace: false, what: "label")
        let (labelIssuer, account) = try Self.splitLabel(label)
        try Self.checkLength(account, what: "account name")
        if let labelIssuer { try Self.checkLength(labelIssuer, what: "issuer") }

        // PARAMETERS.
        var params: [String: String] = [:]
        if let queryStart {
            for pair in rest[(queryStart + 1)...].split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
                let eq = pair.firstIndex(of: UInt8(ascii: "="))
                let name = asciiLowercased(
                    try Self.percentDecode(pair[..<(eq ?? pair.endIndex)], plusIsSpace: true, what: "parameter name"))
                let value = try eq.map { try Self.percentDecode(pair[($0 + 1)...], plusIsSpace: true, what: "parameter \(name)") } ?? ""
                guard params[name] == nil else {
                    throw OTPError.invalidURI("parameter \(name) is given more than once")
                }
                params[name] = value
            }
        }

        guard let secretText = params["secret"], !secretText.isEmpty else {
            throw OTPError.invalidURI("missing secret parameter")
        }
        let secret = try Base32.decode(secretText)

        var issuer = labelIssuer
        if let issuerParam = params["issuer"] {
            guard !issuerParam.isEmpty else {
                throw OTPError.invalidURI("issuer parameter is empty")
            }
            try Self.checkText(issuerParam, what: "issuer")
            try Self.checkLength(issuerParam, what: "issuer")
            guard !issuerParam.unicodeScalars.contains(":") else {
                throw OTPError.invalidURI("issuer must not contain ':'")
            }
            if let labelIssuer, labelIssuer != issuerParam {
                throw OTPError.invalidURI("issuer parameter \"\(issuerParam)\" does not match label issuer \"\(labelIssuer)\"")
            }
            issuer = issuerParam
        }

        var algorithm = OTPAlgorithm.sha1
        if let name = params["algorithm"] {
            guard let a = OTPAlgorithm(caseInsensitive: name) else {
                throw OTPError.invalidAlgorithm(name)
            }
            algorithm = a
        }

        var digits = 6
        if let text = params["digits"] {
            guard let n = Self.parseDecimal(text), n <= UInt64(Int.max) else {
                throw OTPError.invalidURI("digits must be a decimal number (got \"\(text)\")")
            }
            digits = Int(n)
        }

        var period = 30
        var counter: UInt64 = 0
        switch kind {
        case .totp:
            if let text = params["period"] {
                guard let n = Self.parseDecimal(text), n <= UInt64(Int.max) else {
                    throw OTPError.invalidURI("period must be a decimal number of seconds (got \"\(text)\")")
                }
                period = Int(n)
            }
        case .hotp:
            guard let text = params["counter"] else {
                throw OTPError.invalidURI("hotp requires a counter parameter")
            }
            guard let n = Self.parseDecimal(text) else {
                throw OTPError.invalidURI("counter must be a decimal number from 0 to \(UInt64.max) (got \"\(text)\")")
            }
            counter = n
        }

        // Range checks shared with the generators, so the limits live in one place.
        _ = try TOTP(secret: secret, algorithm: algorithm, digits: digits, period: period)

        self.init(
            kind: kind, account: account, issuer: issuer, secret: secret,
            algorithm: algorithm, digits: digits, period: period, counter: counter)
    }

    /// The URI text, suitable for a QR code.
    ///
    /// Label and issuer are percent-encoded (only RFC 3986 unreserved
    /// characters are left as they are, so a space becomes %20), the secret is
    /// base32 without padding, and the algorithm is uppercase. Parameters are
    /// always written out, defaults included, because some apps ignore values
    /// they do not expect and others assume different defaults.
    public var string: String {
        var label = Self.percentEncode(account)
        if let issuer {
            label = Self.percentEncode(issuer) + ":" + label
        }
        var s = "otpauth://\(kind.rawValue)/\(label)?secret=\(Base32.encode(secret))"
        if let issuer {
            s += "&issuer=\(Self.percentEncode(issuer))"
        }
        s += "&algorithm=\(algorithm.rawValue.uppercased())&digits=\(digits)"
        switch kind {
        case .totp: s += "&period=\(period)"
        case .hotp: s += "&counter=\(counter)"
        }
        return s
    }
}

extension OTPAuthURI {
    /// Splits a decoded label into issuer prefix and account. Spaces before the
    /// account are dropped, as the Key Uri Format allows "Issuer: account".
    private static func splitLabel(_ label: String) throws -> (issuer: String?, account: String) {
        try checkText(label, what: "label")
        // By code point: a ':' that a combining mark joins into one Character with the next
        // scalar is still a separator, which splitting the Characters would miss.
        let parts = label.unicodeScalars.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1:
            // Leading spaces go here too, not only after "issuer:": `string` writes the label
            // as "issuer:account" whenever there is an issuer (the parameter may be the only
            // source), so an account that began with a space would not come back unchanged.
            let account = String(parts[0].drop(while: { $0 == " " }))
            guard !account.isEmpty else { throw OTPError.invalidURI("label (account name) is empty") }
            return (nil, account)
        case 2:
            let issuer = String(parts[0])
            let account = String(parts[1].drop(while: { $0 == " " }))
            guard !issuer.isEmpty else { throw OTPError.invalidURI("issuer before ':' in the label is empty") }
            guard !account.isEmpty else { throw OTPError.invalidURI("account name after ':' in the label is empty") }
            return (issuer, account)
        default:
            throw OTPError.invalidURI("label must contain at most one ':' (issuer:account)")
        }
    }

    /// Rejects control characters, which have no business in a label and could
    /// forge lines in logs or terminals.
    private static func checkText(_ s: String, what: String) throws {
        for scalar in s.unicodeScalars where scalar.value < 0x20 || (0x7f ... 0x9f).contains(scalar.value) {
            throw OTPError.invalidURI("\(what) contains control character U+\(hex4(scalar.value))")
        }
    }

    private static func checkLength(_ s: String, what: String) throws {
        guard s.utf8.count <= maximumNameLength else {
            throw OTPError.invalidURI("\(what) is longer than \(maximumNameLength) bytes")
        }
    }

    private static func hex4(_ v: UInt32) -> String {
        let h = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - h.count)) + h
    }

    /// Decodes %XX escapes (and '+' as space if asked); the result must be UTF-8.
    private static func percentDecode(_ raw: ArraySlice<UInt8>, plusIsSpace: Bool, what: String) throws -> String {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i < raw.endIndex {
            let c = raw[i]
            if c == UInt8(ascii: "%") {
                guard i + 2 < raw.endIndex, let hi = hexValue(raw[i + 1]), let lo = hexValue(raw[i + 2]) else {
                    throw OTPError.invalidURI("malformed percent escape in \(what)")
                }
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(plusIsSpace && c == UInt8(ascii: "+") ? UInt8(ascii: " ") : c)
                i += 1
            }
        }
        // String(decoding:) repairs invalid UTF-8 with U+FFFD, so any change in the
        // bytes means the input was invalid. (String(validating:) would say so
        // directly but needs macOS 15, and the package declares macOS 13.)
        let s = String(decoding: out, as: UTF8.self)
        guard s.utf8.elementsEqual(out) else {
            throw OTPError.invalidURI("\(what) is not valid UTF-8 after percent-decoding")
        }
        return s
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0") ... UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a") ... UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A") ... UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Percent-encodes every byte except RFC 3986 §2.3 unreserved characters.
    static func percentEncode(_ s: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "A") ... UInt8(ascii: "Z"), UInt8(ascii: "a") ... UInt8(ascii: "z"),
                UInt8(ascii: "0") ... UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(c)
            default:
                out += [UInt8(ascii: "%"), hex[Int(c >> 4)], hex[Int(c & 0x0f)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses ASCII digits only: no sign, no spaces, no overflow (unlike `Int("+5")`).
    private static func parseDecimal(_ s: String) -> UInt64? {
        guard !s.isEmpty else { return nil }
        var n: UInt64 = 0
        for c in s.utf8 {
            guard (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains(c) else { return nil }
            let (m, o1) = n.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            n = a
        }
        return n
    }
}
