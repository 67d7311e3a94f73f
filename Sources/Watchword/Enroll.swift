import ArgumentParser
import WatchwordCore
import WatchwordCrypto
import WatchwordOTP

extension OTPAlgorithm: ExpressibleByArgument {}

/// `watchword enroll USER --totp|--hotp`: make (or import) a token and recovery codes.
struct Enroll: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Enroll a user with a TOTP or HOTP token.",
        discussion: """
            Prints the otpauth:// URI on a line of its own, a QR code of it for the user's \
            authenticator app, and fresh single-use recovery codes. The codes are shown only \
            now and stored hashed. An enrolled user is replaced only with --force, which also \
            replaces the recovery codes and clears failures.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var user: UserArgument

    @Flag(help: "A time-based token (RFC 6238); what authenticator apps use.")
    var totp = false
    @Flag(help: "A counter-based token (RFC 4226), such as a hardware key fob.")
    var hotp = false

    @Option(help: ArgumentHelp("Import an existing base32 secret instead of making one (migration).", valueName: "base32"))
    var secret: String?
    @Option(help: "The HMAC algorithm: sha1 (what most apps support), sha256 or sha512.")
    var algorithm: OTPAlgorithm = .sha1
    @Option(help: "Code length: 6, 7 or 8.")
    var digits = 6
    @Option(help: ArgumentHelp("TOTP time step in seconds.", valueName: "seconds"))
    var period = 30
    @Option(help: ArgumentHelp("HOTP: the token's next counter value (when importing a token in use).", valueName: "n"))
    var counter: UInt64 = 0
    @Option(help: ArgumentHelp("The name the app shows for the account (default: this host's name).", valueName: "name"))
    var issuer: String?
    @Flag(help: "Replace an existing enrollment.")
    var force = false
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard totp != hotp else { throw ValidationError("give exactly one of --totp or --hotp") }
        guard (6...8).contains(digits) else { throw ValidationError("--digits must be 6, 7 or 8") }
        guard (1...3600).contains(period) else { throw ValidationError("--period must be 1 to 3600 seconds") }
        if hotp && period != 30 { throw ValidationError("--period applies to --totp only") }
        if totp && counter != 0 { throw ValidationError("--counter applies to --hotp only") }
        if let issuer {
            guard !issuer.isEmpty, issuer.utf8.count <= 128,
                !issuer.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == ":" })
            else { throw ValidationError("--issuer must be 1 to 128 characters without ':' or control characters") }
        }
        if let secret {
            do {
                let bytes = try Base32.decode(secret)
                guard bytes.count >= 10 else {
                    throw ValidationError("--secret is \(bytes.count) bytes; at least 10 (80 bits) are required")
                }
            } catch let error as ValidationError {
                throw error
            } catch {
                throw ValidationError("--secret: \(error)")
            }
        }
    }

    func run() throws {
        let (_, store) = try global.open(create: true)
        let name = user.user
        let secretBytes: [UInt8]
        if let secret {
            secretBytes = try Base32.decode(secret)
        } else {
            // RFC 4226 §4 asks for at least 128 bits; use the hash's own length.
            let length = switch algorithm {
            case .sha1: 20
            case .sha256: 32
            case .sha512: 64
            }
            secretBytes = try SecureRandom.bytes(count: length)
        }
        let issuerName = issuer ?? hostName()
        let enrollment = OTPEnrollment(
            kind: totp ? .totp : .hotp, secret: secretBytes, algorithm: algorithm, digits: digits, period: period,
            counter: counter, lastStep: nil, issuer: issuerName)
        _ = try HOTP(secret: secretBytes, algorithm: algorithm, digits: digits)

        guard let key = try store.recoveryKey(create: true) else { throw CLIError("could not make the recovery key") }
        let codes = try RecoveryCodes.generate()
        let now = unixTimeNow()
        try store.update(name) { (record: inout UserRecord?) throws in
            if let existing = record, existing.otp != nil, !force {
                throw CLIError("\(name) is already enrolled; use --force to replace the token and recovery codes")
            }
            var fresh = UserRecord(user: name, created: record?.created ?? now)
            fresh.otp = enrollment
            fresh.recoveryCodeHashes = codes.map { RecoveryCodes.hash($0, user: name, key: key) }
            record = fresh
        }

        let uri = OTPAuthURI(
            kind: totp ? .totp : .hotp, account: name.value, issuer: issuerName, secret: secretBytes,
            algorithm: algorithm, digits: digits, period: period, counter: counter
        ).string
        if output.json {
            print(
                JSON.object([
                    ("user", .string(name.value)),
                    ("method", .string(totp ? "totp" : "hotp")),
                    ("otpauth_uri", .string(uri)),
                    ("recovery_codes", .array(codes.map { .string($0) })),
                ]).rendered)
        } else {
            let kind = totp ? "TOTP, \(algorithm.rawValue.uppercased()), \(digits) digits, \(period) s" :
                "HOTP, \(algorithm.rawValue.uppercased()), \(digits) digits, counter \(counter)"
            print("Enrolled \(name) (\(kind)).")
            print("Add it to an authenticator app: scan the QR code, or enter the URI or secret.")
            print(uri)
            if let qr = terminalQRCode(uri) { print(qr, terminator: "") }
            print("Secret (base32): \(Base32.encode(secretBytes))")
            print("Recovery codes (each works once; keep them safe, they are not shown again):")
            for code in codes { print("  \(code)") }
        }
        if !systemHasUser(name) {
            writeStandardError("watchword: warning: no system account named '\(name)' (yet)\n")
        }
    }
}
