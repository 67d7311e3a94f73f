import WatchwordCore

/// Twilio's Messages API: watchword makes the code and Twilio delivers the text.
///
/// `POST {api_base}/2010-04-01/Accounts/{account_sid}/Messages.json`, HTTP Basic
/// `account_sid:auth_token`, form fields `To`, `From`, `Body`; success is 201 with
/// `{"sid": ..., "status": "queued"}`; errors carry `{"code": N, "message": ...}`.
struct TwilioSender: SMSSender {
    let settings: SMSSettings.Twilio
    let timeoutSeconds: Int
    let transport: any HTTPTransport

    func send(_ message: String, to phone: PhoneNumber) throws(SMSError) {
        let url = settings.apiBase + "/2010-04-01/Accounts/" + HTTPProvider.percentEncode(settings.accountSid) + "/Messages.json"
        let response = try transport.post(
            HTTPRequest(
                url: url, body: HTTPProvider.form([("To", phone.e164), ("From", settings.from), ("Body", message)]),
                contentType: "application/x-www-form-urlencoded", user: settings.accountSid, password: settings.authToken,
                timeoutSeconds: timeoutSeconds))
        guard response.status == 200 || response.status == 201 else { throw HTTPProvider.failure("twilio", response) }
        let json = try HTTPProvider.object("twilio", response)
        guard json["sid"]?.string != nil else {
            throw SMSError(.refused, "twilio: HTTP \(response.status) without a message sid")
        }
        if let status = json["status"]?.string, status == "failed" || status == "undelivered" {
            throw SMSError(.refused, "twilio: message \(status)")
        }
    }
}

/// Twilio Verify: the service makes the code, texts it and checks it.
///
/// Start: `POST {api_base}/v2/Services/{service_sid}/Verifications` (form `To`,
/// `Channel=sms`) → 201 `{"sid": "VE...", "status": "pending"}`. Check:
/// `POST {api_base}/v2/Services/{service_sid}/VerificationCheck` (form `To`, `Code`) → 200
/// `{"status": "approved" | "pending" | ...}`; 404 when the verification expired or was
/// used; 429 when rate limited. HTTP Basic `account_sid:auth_token`.
struct TwilioVerifyService: SMSVerificationService {
    let settings: SMSSettings.TwilioVerify
    let timeoutSeconds: Int
    let transport: any HTTPTransport

    private func post(_ endpoint: String, _ fields: [(String, String)]) throws(SMSError) -> HTTPResponse {
        let url = settings.apiBase + "/v2/Services/" + HTTPProvider.percentEncode(settings.serviceSid) + "/" + endpoint
        return try transport.post(
            HTTPRequest(
                url: url, body: HTTPProvider.form(fields), contentType: "application/x-www-form-urlencoded",
                user: settings.accountSid, password: settings.authToken, timeoutSeconds: timeoutSeconds))
    }

    func start(to phone: PhoneNumber, template: String) throws(SMSError) {
        // The service writes the message itself (its template is set up in the Twilio console).
        let response = try post("Verifications", [("To", phone.e164), ("Channel", "sms")])
        guard response.status == 200 || response.status == 201 else {
            throw HTTPProvider.failure("twilio-verify", response)
        }
        let json = try HTTPProvider.object("twilio-verify", response)
        if let status = json["status"]?.string, status != "pending" {
            throw SMSError(.refused, "twilio-verify: verification is '\(HTTPProvider.redact(status))', not pending")
        }
    }

    func check(_ code: String, for phone: PhoneNumber) throws(SMSError) -> Bool {
        let response = try post("VerificationCheck", [("To", phone.e164), ("Code", code)])
        // Expired, already approved, or never started: that code is no good.
        if response.status == 404 { return false }
        guard response.status == 200 else { throw HTTPProvider.failure("twilio-verify", response) }
        let json = try HTTPProvider.object("twilio-verify", response)
        guard let status = json["status"]?.string else {
            throw SMSError(.refused, "twilio-verify: check answer without a status")
        }
        return status == "approved"
    }
}
