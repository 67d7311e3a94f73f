import WatchwordCore

/// What the HTTP providers share: form and path encoding, reading the JSON answer, and
/// turning an unwelcome status into an `SMSError` that is fit for the system log.
enum HTTPProvider {
    /// Percent-encodes everything but RFC 3986 unreserved characters, so a value can never
    /// end a form field or a path segment.
    static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 15)]], as: UTF8.self)
            }
        }
        return out
    }

    /// `application/x-www-form-urlencoded`, fields in the order given.
    static func form(_ fields: [(String, String)]) -> [UInt8] {
        Array(fields.map { percentEncode($0.0) + "=" + percentEncode($0.1) }.joined(separator: "&").utf8)
    }

    /// A provider's own words, made safe for syslog: printable ASCII only, at most 200
    /// characters, and every run of four or more digits hidden — the text may quote the
    /// phone number or a code.
    static func redact(_ text: String) -> String {
        var out = ""
        var digits = ""
        func flush() {
            out += digits.count >= 4 ? "…" : digits
            digits = ""
        }
        for scalar in text.unicodeScalars {
            if scalar.value >= 0x30 && scalar.value <= 0x39 {
                digits.unicodeScalars.append(scalar)
                continue
            }
            flush()
            out.unicodeScalars.append(scalar.value >= 0x20 && scalar.value < 0x7F ? scalar : "?")
        }
        flush()
        return out.count > 200 ? String(out.prefix(200)) + "…" : out
    }

    /// The error for an answer the provider did not mean as success: its status, and the
    /// error code and message the body carries (`code`/`message`, or `error`).
    static func failure(_ provider: String, _ response: HTTPResponse) -> SMSError {
        let kind: SMSError.Kind
        switch response.status {
        case 401, 403: kind = .credentials
        case 429: kind = .rateLimited
        case 500...599: kind = .serverError
        default: kind = .refused
        }
        var detail = "\(provider): HTTP \(response.status)"
        switch kind {
        case .credentials: detail += " (credentials refused: check the account and token in the config)"
        case .rateLimited: detail += " (rate limited by the provider)"
        default: break
        }
        if let json = JSON.parse(response.body) {
            var parts: [String] = []
            if let code = json["code"]?.int { parts.append("code \(code)") }
            if let message = json["message"]?.string ?? json["error"]?.string { parts.append(redact(message)) }
            if !parts.isEmpty { detail += ": " + parts.joined(separator: ": ") }
        }
        return SMSError(kind, detail)
    }

    /// The body as a JSON object, or a `.refused` error naming the provider.
    static func object(_ provider: String, _ response: HTTPResponse) throws(SMSError) -> JSON {
        guard let json = JSON.parse(response.body), case .object = json else {
            throw SMSError(.refused, "\(provider): HTTP \(response.status) with an answer that is not a JSON object")
        }
        return json
    }
}
