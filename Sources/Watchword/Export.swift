import ArgumentParser
import WatchwordCore
import WatchwordOTP

/// `watchword export USER --otpauth`: the user's token as an otpauth:// URI, to move it to
/// another system or app, or to keep a backup.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a user's token as an otpauth:// URI (it holds the secret).",
        discussion: """
            For moving a user to another system or authenticator app, or for a backup. The \
            URI and its QR code hold the secret: whoever sees them can make the user's codes, \
            and a warning saying so goes to standard error. A HOTP token is exported with the \
            next counter watchword expects. Recovery codes cannot be exported: only their \
            keyed hashes are stored.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var user: UserArgument
    @Flag(help: "Export as an otpauth:// Key URI (the format authenticator apps scan).")
    var otpauth = false
    @Flag(name: .customLong("no-qr"), help: "Print the URI without a QR code.")
    var noQR = false
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard otpauth else { throw ValidationError("name the format: --otpauth (the only one so far)") }
    }

    func run() throws {
        let (_, store) = try global.open(create: false)
        let name = user.user
        let record = try requireRecord(store, name)
        guard let otp = record.otp else { throw CLIError("\(name) has no TOTP or HOTP token to export") }
        let uri = OTPAuthURI(
            kind: otp.kind == .totp ? .totp : .hotp, account: name.value, issuer: otp.issuer, secret: otp.secret,
            algorithm: otp.algorithm, digits: otp.digits, period: otp.period, counter: otp.counter
        ).string
        writeStandardError(
            "watchword: warning: the otpauth URI\(output.json || noQR ? "" : " and QR code") below hold\(output.json || noQR ? "s" : "") \(name)'s secret: whoever sees it can make \(name)'s codes; keep it out of logs, tickets and chat\n"
        )
        if output.json {
            print(
                JSON.object([
                    ("user", .string(name.value)), ("method", .string(otp.kind.rawValue)), ("otpauth_uri", .string(uri)),
                ]).rendered)
            return
        }
        print(uri)
        if !noQR, let qr = terminalQRCode(uri) { print(qr, terminator: "") }
    }
}
