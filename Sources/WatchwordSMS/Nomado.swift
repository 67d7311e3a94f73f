import WatchwordCore

/// nomado's OTP service: it makes the code, texts it (in watchword's template) and checks it.
///
/// `POST {api_base}/2fa/create`, HTTP Basic, JSON `{"to", "template" (with {{CODE}}),
/// "type": "NUMERIC", "length", "expiry"}` → `{"code": 200, "message": "OK", ...}`;
/// `POST {api_base}/2fa/verify` JSON `{"number", "token"}` → `{"code": 200, "message":
/// "OK", "verify": true}`.
struct NomadoService: SMSVerificationService {
    let settings: SMSSettings.Nomado
    let codeDigits: Int
    let ttlSeconds: Int
    let timeoutSeconds: Int
    let transport: any HTTPTransport

    private func post(_ endpoint: String, _ json: JSON) throws(SMSError) -> HTTPResponse {
        try transport.post(
            HTTPRequest(
                url: settings.apiBase + "/2fa/" + endpoint, body: Array(json.rendered.utf8),
                contentType: "application/json", user: settings.username, password: settings.password,
                timeoutSeconds: timeoutSeconds))
    }

    func start(to phone: PhoneNumber, template: String) throws(SMSError) {
        let response = try post(
            "create",
            .object([
                ("to", .string(phone.e164)),
                ("template", .string(template)),
                ("type", .string("NUMERIC")),
                ("length", .number(String(codeDigits))),
                ("expiry", .number(String(ttlSeconds))),
            ]))
        guard (200...299).contains(response.status) else { throw HTTPProvider.failure("nomado", response) }
        let json = try HTTPProvider.object("nomado", response)
        guard json["code"]?.int == 200 else { throw HTTPProvider.failure("nomado", response) }
    }

    func check(_ code: String, for phone: PhoneNumber) throws(SMSError) -> Bool {
        let response = try post("verify", .object([("number", .string(phone.e164)), ("token", .string(code))]))
        switch response.status {
        case 200...299:
            let json = try HTTPProvider.object("nomado", response)
            if json["code"]?.int == 200, let verify = json["verify"]?.bool { return verify }
            // The service's own 4xx in the body: it refused this token (wrong, expired, used).
            if let inner = json["code"]?.int, (400...499).contains(inner), inner != 401, inner != 403, inner != 429 {
                return false
            }
            throw HTTPProvider.failure("nomado", response)
        case 400, 404, 410, 422:
            return false
        default:
            throw HTTPProvider.failure("nomado", response)
        }
    }
}
