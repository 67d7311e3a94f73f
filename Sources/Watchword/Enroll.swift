import ArgumentParser
import WatchwordCore
import WatchwordCrypto
import WatchwordOTP

extension OTPAlgorithm: ExpressibleByArgument {}

/// `watchword enroll USER --totp|--hotp [--sms +NUMBER]`: make (or import) a token and
/// recovery codes, and/or set the phone number for SMS codes.
struct Enroll: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Enroll a user with a TOTP or HOTP token, a phone number for SMS codes, or both.",
        discussion: """
            With --totp or --hotp, prints the otpauth:// URI on a line of its own, a QR code \
            of it for the user's authenticator app, and fresh single-use recovery codes. The \
            codes are shown only now and stored hashed. An enrolled token is replaced only \
            with --force, which also replaces the recovery codes and clears failures.

            With --sms, sets the number the login texts codes to (E.164: +, country code, \
            number, digits only). On its own it keeps an existing token and recovery codes; a \
            new user gets recovery codes. A different number already on file is replaced only \
            with --force. Texts need a provider in [sms] of the config.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var user: UserArgument

    @Flag(help: "A time-based token (RFC 6238); what authenticator apps use.")
    var totp = false
    @Flag(help: "A counter-based token (RFC 4226), such as a hardware key fob.")
    var hotp = false
    @Option(help: ArgumentHelp("Text codes to this phone number (E.164, e.g. +14155550123).", valueName: "number"))
    var sms: String?

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
    @Flag(
        name: .customLong("at-next-login"),
        help: "Make the token pending: it is shown to the user at their next login (URI and QR code) and becomes active when they type its first code; you never see its secret.")
    var atNextLogin = false
    @Option(
        help: ArgumentHelp(
            "With --at-next-login: how long the token waits, e.g. 7d, 12h, 30m (default 7d, at most 90d).",
            valueName: "duration"))
    var expires: String?
    @Flag(help: "Replace an existing token or phone number.")
    var force = false
    @OptionGroup var output: OutputOptions

    var otpKind: OTPEnrollment.Kind? { totp ? .totp : hotp ? .hotp : nil }

    func validate() throws {
        if let sms {
            do {
                _ = try PhoneNumber(sms)
            } catch {
                throw ValidationError("--sms \(sms): \(error)")
            }
            guard !(totp && hotp) else { throw ValidationError("give at most one of --totp or --hotp") }
            if otpKind == nil
                && (secret != nil || issuer != nil || algorithm != .sha1 || digits != 6 || period != 30 || counter != 0)
            {
                throw ValidationError("--secret, --algorithm, --digits, --period, --counter and --issuer need --totp or --hotp")
            }
        } else {
            guard totp != hotp else { throw ValidationError("give exactly one of --totp or --hotp (and/or --sms NUMBER)") }
        }
        if atNextLogin {
            guard otpKind != nil, sms == nil, secret == nil else {
                throw ValidationError("--at-next-login needs --totp or --hotp, and takes neither --sms nor --secret")
            }
            if let expires, Self.seconds(expires) == nil {
                throw ValidationError("--expires \(expires): give a number and a unit (m, h or d), from 1m to 90d")
            }
        } else if expires != nil {
            throw ValidationError("--expires applies to --at-next-login only")
        }
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
        let (config, store) = try global.open(create: true)
        let name = user.user
        let phone = try sms.map { try PhoneNumber($0) }

        var enrollment: OTPEnrollment? = nil
        var secretBytes: [UInt8] = []
        let issuerName = issuer ?? hostName()
        if let otpKind {
            if let secret {
                secretBytes = try Base32.decode(secret)
            } else {
                // RFC 4226 §4 asks for at least 128 bits; use the hash's own length.
                let length =
                    switch algorithm {
                    case .sha1: 20
                    case .sha256: 32
                    case .sha512: 64
                    }
                secretBytes = try SecureRandom.bytes(count: length)
            }
            enrollment = OTPEnrollment(
                kind: otpKind, secret: secretBytes, algorithm: algorithm, digits: digits, period: period,
                counter: counter, lastStep: nil, issuer: issuerName)
            _ = try HOTP(secret: secretBytes, algorithm: algorithm, digits: digits)
        }

        if atNextLogin, let enrollment {
            try makePending(enrollment, store: store, name: name)
            return
        }
        guard let key = try store.recoveryKey(create: true) else { throw CLIError("could not make the recovery key") }
        let fresh = try RecoveryCodes.generate()
        let now = unixTimeNow()
        // The recovery codes issued now; empty when an SMS-only change kept the old ones.
        let codes: [String] = try store.update(name) { (record: inout UserRecord?) throws -> [String] in
            let existing = record
            if let phone, let old = existing?.phone, old != phone, !force {
                throw CLIError("\(name) already has the phone number \(old.masked); use --force to replace it")
            }
            if let enrollment {
                if existing?.otp != nil, !force {
                    throw CLIError("\(name) is already enrolled; use --force to replace the token and recovery codes")
                }
                var replaced = UserRecord(user: name, created: existing?.created ?? now)
                replaced.otp = enrollment
                replaced.recoveryCodeHashes = fresh.map { RecoveryCodes.hash($0, user: name, key: key) }
                // A new token leaves the phone, and the SMS limits keep counting.
                replaced.phone = phone ?? existing?.phone
                replaced.sms = existing?.sms ?? SMSState()
                if replaced.phone != existing?.phone { replaced.sms.pending = nil }
                record = replaced
                return fresh
            }
            guard let phone else { return [] }
            if var current = existing {
                if current.phone != phone {
                    current.phone = phone
                    current.sms.pending = nil
                }
                record = current
                return []
            }
            var created = UserRecord(user: name, created: now)
            created.phone = phone
            created.recoveryCodeHashes = fresh.map { RecoveryCodes.hash($0, user: name, key: key) }
            record = created
            return fresh
        }

        let uri = enrollment.map { _ in
            OTPAuthURI(
                kind: totp ? .totp : .hotp, account: name.value, issuer: issuerName, secret: secretBytes,
                algorithm: algorithm, digits: digits, period: period, counter: counter
            ).string
        }
        if output.json {
            var pairs: [(String, JSON)] = [
                ("user", .string(name.value)),
                ("method", .string(otpKind?.rawValue ?? "sms")),
            ]
            if let uri { pairs.append(("otpauth_uri", .string(uri))) }
            if let phone { pairs.append(("phone", .string(phone.e164))) }
            pairs.append(("recovery_codes", .array(codes.map { .string($0) })))
            print(JSON.object(pairs).rendered)
        } else {
            if let uri {
                let kind =
                    totp
                    ? "TOTP, \(algorithm.rawValue.uppercased()), \(digits) digits, \(period) s"
                    : "HOTP, \(algorithm.rawValue.uppercased()), \(digits) digits, counter \(counter)"
                print("Enrolled \(name) (\(kind)).")
                print("Add it to an authenticator app: scan the QR code, or enter the URI or secret.")
                print(uri)
                if let qr = terminalQRCode(uri) { print(qr, terminator: "") }
                print("Secret (base32): \(Base32.encode(secretBytes))")
            }
            if let phone {
                print(uri == nil && !codes.isEmpty ? "Enrolled \(name) for SMS codes to \(phone.e164)." : "SMS codes for \(name) go to \(phone.e164).")
            }
            if codes.isEmpty {
                print("The token (if any) and the recovery codes are unchanged.")
            } else {
                print("Recovery codes (each works once; keep them safe, they are not shown again):")
                for code in codes { print("  \(code)") }
            }
        }
        if phone != nil && config.sms.provider == .none {
            writeStandardError(
                "watchword: warning: sms.provider is \"none\" in \(global.configPath); no texts are sent until a provider is set\n")
        }
        if !systemHasUser(name) {
            writeStandardError("watchword: warning: no system account named '\(name)' (yet)\n")
        }
    }
}

extension Enroll {
    /// `30m`, `12h`, `7d` in seconds, from one minute to 90 days; nil for anything else.
    static func seconds(_ text: String) -> Int64? {
        guard let unit = text.last, let n = Int64(text.dropLast()), text.dropLast().allSatisfy(\.isASCII), n > 0 else {
            return nil
        }
        let factor: Int64
        switch unit {
        case "m": factor = 60
        case "h": factor = 3600
        case "d": factor = 86400
        default: return nil
        }
        let (seconds, overflow) = n.multipliedReportingOverflow(by: factor)
        return !overflow && seconds >= 60 && seconds <= 90 * 86400 ? seconds : nil
    }

    /// `--at-next-login`: store the token as pending; the user sees it at their next login.
    func makePending(_ enrollment: OTPEnrollment, store: any StateStore, name: UserName) throws {
        let now = unixTimeNow()
        let lifetime = expires.flatMap(Self.seconds) ?? PendingEnrollment.defaultLifetime
        let pending = PendingEnrollment(otp: enrollment, expires: now + lifetime)
        let replaced: Bool = try store.update(name) { (record: inout UserRecord?) throws -> Bool in
            var current = record ?? UserRecord(user: name, created: now)
            let enrolled = current.isEnrolled
            if enrolled {
                guard force else {
                    throw CLIError(
                        "\(name) is already enrolled; --force replaces the token, recovery codes and phone number with a token shown at the next login")
                }
                // The user now has nothing but the pending token; the SMS limits keep counting.
                current.otp = nil
                current.recoveryCodeHashes = []
                current.phone = nil
                current.sms.pending = nil
            }
            current.pending = pending
            record = current
            return enrolled
        }
        if output.json {
            print(
                JSON.object([
                    ("user", .string(name.value)), ("method", .string(enrollment.kind.rawValue)),
                    ("pending", .bool(true)), ("expires", .int(pending.expires)), ("replaced", .bool(replaced)),
                ]).rendered)
        } else {
            if replaced {
                print("Removed \(name)'s token, recovery codes and phone number (--force).")
            }
            print(
                "\(name) is shown a new \(enrollment.kind.rawValue.uppercased()) token at their next login (until \(formatTime(pending.expires))); it becomes active when they type its first code.")
            print("Until then \(name) counts as not enrolled; the recovery codes are shown to them once the token is active.")
        }
    }
}
