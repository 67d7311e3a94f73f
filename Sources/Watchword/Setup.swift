import ArgumentParser
import WatchwordCore
import WatchwordPostgres
import WatchwordSetup

#if canImport(Glibc)
import Glibc
#endif

/// `sshd` or `sudo` on the command line.
enum ServiceName: String, ExpressibleByArgument, CaseIterable {
    case sshd, sudo
    var service: Service { self == .sshd ? .sshd : .sudo }
}

/// `--root DIR`: work on another filesystem (an image, a test tree).
struct RootOptions: ParsableArguments {
    @Option(
        name: .customLong("root"),
        help: ArgumentHelp(
            "Work on the system under this directory instead of / (an image, a test tree); --state-dir and --config are then paths inside it.",
            valueName: "dir"))
    var root = "/"

    func installation(_ global: GlobalOptions) throws -> Installation {
        guard runningAsRoot() else { throw CLIError("must be run as root") }
        do {
            let systemRoot = try SystemRoot(root)
            return Installation(root: systemRoot, stateDirectory: global.stateDirectory, configPath: global.configPath)
        } catch {
            throw CLIError(error.description)
        }
    }

    /// With --root, says once that every path shown is inside it.
    func announce(_ installation: Installation) {
        if !installation.root.isHost { print("The system under \(installation.root.path) (paths below are inside it):") }
    }
}

/// `watchword enable sshd|sudo`.
struct Enable: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make sshd or sudo ask for the code.",
        discussion: """
            sudo: adds 'auth required pam_watchword.so' to /etc/pam.d/sudo right after \
            '@include common-auth' (the password, then the code).

            sshd: the same in /etc/pam.d/sshd (the password, then the code), or with \
            --with-publickey in place of '@include common-auth' (a public key, then the code); \
            and /etc/ssh/sshd_config.d/watchword.conf with UsePAM yes, \
            KbdInteractiveAuthentication yes and AuthenticationMethods keyboard-interactive \
            (or publickey,keyboard-interactive), so that a key alone no longer logs in. sshd is \
            reloaded afterwards; open sessions stay. When the config says backend = "postgres", \
            the line also names helper=/usr/libexec/watchword/watchword-helper-dynamic (every \
            login of a fleet host needs libpq); run it again after a host joins or leaves a fleet.

            Nothing is written until the new PAM stack is shown to run the module, 'sshd -t' \
            accepts the new config and 'sshd -T' shows its values in effect. Refuses while \
            nobody is enrolled (everybody would be locked out) unless --enroll-at-login, --nullok \
            or --force. \
            Every changed file is first copied to /var/backups/watchword/. Running it again \
            changes nothing; 'watchword disable' puts the files back as they were.
            """)

    @Argument(help: ArgumentHelp("The service to change.", valueName: "service"))
    var service: ServiceName

    @Flag(name: .customLong("with-publickey"), help: "sshd: a public key, then the code (instead of the password, then the code).")
    var withPublickey = false

    @Flag(help: "Let users who are not enrolled in without a code (the module's nullok option), while you enroll everybody.")
    var nullok = false

    @Flag(
        name: .customLong("enroll-at-login"),
        help: "Offer a user with no token one at login, after the password or key (the module's enroll_at_login): the safe way to roll out, in place of --nullok.")
    var enrollAtLogin = false

    @Option(
        name: .customLong("exempt-group"),
        help: ArgumentHelp("Members of GROUP are not asked for a code (the module's exempt_group=; may repeat).", valueName: "group"))
    var exemptGroups: [String] = []

    @Option(
        name: .customLong("exempt-from"),
        help: ArgumentHelp(
            "Logins from an address in CIDR (IPv4 or IPv6; a host name never matches) are not asked (exempt_from=; may repeat).",
            valueName: "cidr"))
    var exemptFrom: [String] = []

    @Flag(help: "Go on although nobody is enrolled, the module or helper is missing, or the PAM stack would skip the module.")
    var force = false

    @Flag(name: .customLong("no-reload"), help: "sshd: do not reload sshd afterwards.")
    var noReload = false

    @OptionGroup var root: RootOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if withPublickey && service != .sshd { throw ValidationError("--with-publickey is for sshd only") }
    }

    func run() throws {
        var options = ServiceSetup.Options()
        options.withPublickey = withPublickey
        options.nullok = nullok
        options.enrollAtLogin = enrollAtLogin
        options.exemptGroups = exemptGroups
        options.exemptFrom = exemptFrom
        options.force = force
        options.reload = !noReload
        options.invokingUser = getenv("SUDO_USER").map { String(cString: $0) }
        let installation = try root.installation(global)
        root.announce(installation)
        let setup = ServiceSetup(installation: installation, options: options, say: { print($0) }, warn: warning)
        do {
            try setup.enable(service.service)
        } catch {
            throw CLIError(error.description)
        }
    }
}

/// `watchword disable sshd|sudo`.
struct Disable: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop sshd or sudo asking for the code.",
        discussion: """
            Takes out exactly what 'watchword enable' put in, so the PAM file is byte for byte \
            as it was (other edits made since are kept), and removes the sshd drop-in. Backs up \
            every changed file first; checks sshd with 'sshd -t' and puts everything back if \
            it fails. A pam_watchword.so line that watchword did not write is left alone and \
            reported (exit status 1).
            """)

    @Argument(help: ArgumentHelp("The service to change.", valueName: "service"))
    var service: ServiceName

    @Flag(name: .customLong("no-reload"), help: "sshd: do not reload sshd afterwards.")
    var noReload = false

    @OptionGroup var root: RootOptions
    @OptionGroup var global: GlobalOptions

    func run() throws {
        var options = ServiceSetup.Options()
        options.reload = !noReload
        let installation = try root.installation(global)
        root.announce(installation)
        let setup = ServiceSetup(installation: installation, options: options, say: { print($0) }, warn: warning)
        do {
            try setup.disable(service.service)
        } catch {
            throw CLIError(error.description)
        }
    }
}

/// `watchword doctor`.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check that sshd and sudo really require the code; say what is in the way.",
        discussion: """
            Checks the installation (CLI, helper, module: owners and modes), the state and \
            config, the effective PAM stacks of sshd and sudo (the module present, reached on \
            every successful login, not skipped by an earlier 'sufficient' or jump, nullok), \
            sshd's effective settings from 'sshd -T' (UsePAM, KbdInteractiveAuthentication, \
            AuthenticationMethods: does a public key alone still log in?), clock \
            synchronisation, enrolled and locked-out users. Prints one OK/WARN/FAIL line per \
            finding; the exit status is 1 when any line is FAIL.
            """)

    @OptionGroup var root: RootOptions
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let installation = try root.installation(global)
        var doctor = Doctor(installation: installation)
        if installation.root.isHost {
            let stateDirectory = global.stateDirectory
            doctor.checkDatabase = { config in checkFleetDatabase(config, stateDirectory: stateDirectory) }
        }
        let findings = doctor.run()
        let counts = Dictionary(grouping: findings, by: \.status).mapValues(\.count)
        let fails = counts[.fail] ?? 0
        let warns = counts[.warn] ?? 0
        let oks = counts[.ok] ?? 0
        if output.json {
            let checks = findings.map { finding in
                JSON.object([
                    ("status", .string(finding.status.rawValue.lowercased())), ("check", .string(finding.check)),
                    ("detail", .string(finding.detail)),
                ])
            }
            print(
                JSON.object([
                    ("root", .string(installation.root.path)), ("ok", .bool(fails == 0)), ("fail", .int(Int64(fails))), ("warn", .int(Int64(warns))),
                    ("checks", .array(checks)),
                ]).rendered)
        } else {
            root.announce(installation)
            var rows = [["STATUS", "CHECK", "DETAIL"]]
            for finding in findings { rows.append([finding.status.rawValue, finding.check, finding.detail]) }
            printTable(rows)
            print("")
            if fails > 0 {
                print("\(fails) FAIL, \(warns) WARN, \(oks) OK: the second factor is not reliably required; fix the FAIL lines.")
            } else {
                print("\(fails) FAIL, \(warns) WARN, \(oks) OK.")
            }
        }
        if fails > 0 { throw ExitCode(1) }
    }
}

func warning(_ text: String) {
    writeStandardError("watchword: warning: \(text)\n")
}
