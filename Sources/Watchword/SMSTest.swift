import ArgumentParser
import WatchwordCore
import WatchwordSMS

/// `watchword sms-test USER`: send one text through the configured provider.
struct SMSTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sms-test",
        abstract: "Send a test text message to a user's phone through the configured provider.",
        discussion: """
            Checks the [sms] settings end to end. With the command, twilio and nomado \
            providers the text says it is a test; twilio-verify writes its own text, so the \
            user gets a code they can ignore. The text counts toward the user's and the \
            global hourly limits. The command provider's output is shown here (never during \
            logins).
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var user: UserArgument

    func run() throws {
        let (config, store) = try global.open(create: false)
        let name = user.user
        guard config.sms.provider != .none else {
            throw CLIError("sms.provider is \"none\" in \(global.configPath); set a provider in [sms] first")
        }
        let record = try requireRecord(store, name)
        guard let phone = record.phone else {
            throw CLIError("\(name) has no phone number; add one with: watchword enroll \(name) --sms +NUMBER")
        }

        let policy = SMSCodePolicy(settings: config.sms)
        let now = unixTimeNow()
        let refusal = try store.update(name, withSMSGlobal: {
            (current: inout UserRecord?, global: inout SMSGlobalState) throws -> SMSCodePolicy.Refusal? in
            guard var record = current else { throw CLIError.notEnrolled(name) }
            if let refusal = policy.planTest(for: record, now: now) { return refusal }
            if let refusal = policy.takeGlobal(&global, now: now) { return refusal }
            record.sms.sent.record(at: now)
            current = record
            return nil
        })
        if let refusal {
            throw CLIError("not sent: \(refusal.reason); try again in \(SMSCodePolicy.duration(refusal.wait))")
        }

        let provider = config.sms.provider.rawValue
        do {
            switch try makeSMSGateway(config.sms, showCommandOutput: true) {
            case .sender(let sender):
                try sender.send(SMSMessage.test(host: hostName()), to: phone)
            case .verification(let service):
                try service.start(to: phone, template: SMSMessage.testTemplate(host: hostName()))
            }
        } catch {
            throw CLIError("not sent to \(phone.masked) through \(provider): \(error)")
        }
        print("Sent a test message to \(phone.masked) through \(provider).")
    }
}
