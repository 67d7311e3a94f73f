import WatchwordCore

/// The SMS provider named by `[sms] provider`, ready to send.
///
/// Nothing is loaded here: HTTP providers load libcurl on their first request.
public func makeSMSGateway(_ settings: SMSSettings, showCommandOutput: Bool = false) throws(SMSError) -> SMSGateway {
    let timeout = settings.timeoutSeconds
    switch settings.provider {
    case .none:
        throw SMSError(.unavailable, "sms.provider is \"none\"")
    case .command:
        return .sender(CommandSender(argv: settings.commandArgv, timeoutSeconds: timeout, showOutput: showCommandOutput))
    case .twilio:
        return .sender(TwilioSender(settings: settings.twilio, timeoutSeconds: timeout, transport: LazyCurl()))
    case .twilioVerify:
        return .verification(
            TwilioVerifyService(settings: settings.twilioVerify, timeoutSeconds: timeout, transport: LazyCurl()))
    case .nomado:
        return .verification(
            NomadoService(
                settings: settings.nomado, codeDigits: settings.codeDigits, ttlSeconds: settings.codeTTLSeconds,
                timeoutSeconds: timeout, transport: LazyCurl()))
    }
}

/// libcurl, loaded when the first request is made.
struct LazyCurl: HTTPTransport {
    func post(_ request: HTTPRequest) throws(SMSError) -> HTTPResponse {
        try Curl.shared().post(request)
    }
}
