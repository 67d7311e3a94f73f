#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore

/// `watchword doctor`: whether this machine really asks for the second factor, and what is
/// in the way. Reads only; runs `sshd -T` and `timedatectl show`.
public struct Doctor {
    public let installation: Installation
    var root: SystemRoot { installation.root }
    private var findings: [Finding] = []
    /// sshd's module line says enroll_at_login and no password is checked before it: only
    /// a public key, required by every way in, can be the first factor (checkSSHD looks).
    var sshdEnrollNeedsKey = false
    /// Fleet mode: checks the shared database (connectivity, TLS, schema, clock skew) and
    /// returns its findings and records. Set by the CLI, which links the PostgreSQL store.
    public var checkDatabase: ((Config) -> (findings: [Finding], records: [UserRecord]?))?

    public init(installation: Installation) { self.installation = installation }

    static func isModule(_ rule: PAMRule) -> Bool { rule.moduleName == InstalledLayout.moduleName }

    /// Modules that check no credential: a stack of only these and pam_watchword.so asks for
    /// the code alone.
    static let noCredentialModules: Set<String> = [
        "pam_permit.so", "pam_deny.so", "pam_env.so", "pam_cap.so", "pam_faildelay.so", "pam_nologin.so",
        "pam_securetty.so", "pam_shells.so", "pam_succeed_if.so", "pam_listfile.so", "pam_access.so", "pam_time.so",
        "pam_group.so", "pam_keyinit.so", "pam_limits.so", "pam_motd.so", "pam_mail.so", "pam_warn.so", "pam_echo.so",
        "pam_loginuid.so", "pam_selinux.so", "pam_faillock.so", "pam_tally2.so", "pam_umask.so",
    ]

    public mutating func run() -> [Finding] {
        findings = []
        let stacks = Service.allCases.map { service in (service, loadStack(service)) }
        checkInstall(stacks: stacks)
        let config = checkConfig()
        if config?.store.backend == .postgres { checkFleetHelper(stacks: stacks) }
        var records = checkState(config)
        if let config, config.store.backend == .postgres {
            if let checkDatabase {
                let (found, fleet) = checkDatabase(config)
                findings += found
                records = fleet
            } else {
                add(.fail, "store.connect", "this program cannot check a PostgreSQL store")
                records = nil
            }
        }
        var nullokEverywhere = true
        var anyEnforced = false
        var protected: [Service] = []
        for (service, stack) in stacks {
            let (enforced, nullok) = checkStack(service, stack)
            if enforced {
                anyEnforced = true
                if !nullok { nullokEverywhere = false }
            }
            var requires = enforced
            if service == .sshd { requires = checkSSHD(stack: stack, moduleEnforced: enforced) && enforced }
            if requires { protected.append(service) }
        }
        checkUsers(records, moduleRequired: anyEnforced && !nullokEverywhere, stacks: stacks)
        checkClock()
        checkSMS(config, records ?? [])
        summarize(protected)
        return findings
    }

    mutating func add(_ status: Finding.Status, _ check: String, _ detail: String) {
        findings.append(Finding(status, check, detail))
    }

    private func loadStack(_ service: Service) -> Result<PAMStack, SetupError> {
        let installation = self.installation
        do {
            return .success(
                try PAMStack.load(
                    service: service.rawValue,
                    read: { (path: String) throws(SetupError) -> String? in try installation.readText(path) },
                    moduleExists: { installation.moduleExists($0) }))
        } catch {
            return .failure(error)
        }
    }

    // MARK: install

    /// A fleet host's logins all need libpq: a module line that runs the static helper has
    /// each one handed over.
    private mutating func checkFleetHelper(stacks: [(Service, Result<PAMStack, SetupError>)]) {
        var runsStatic: [String] = []
        for case (_, .success(let stack)) in stacks {
            for entry in stack.entries {
                guard let rule = entry.rule, Self.isModule(rule) else { continue }
                if !rule.arguments.contains(where: { $0.hasPrefix("helper=") })
                    || rule.arguments.contains("helper=" + InstalledLayout.helper)
                {
                    runsStatic.append(entry.line.location)
                }
            }
        }
        guard !runsStatic.isEmpty else { return }
        add(.warn, "install.helper",
            "\(runsStatic.joined(separator: ", ")): the module runs the static watchword-helper, which hands every login of "
                + "a fleet host to \(InstalledLayout.dynamicHelper) (1-3 ms more a login); `watchword enable` "
                + "names that one with helper= when the config says backend = \"postgres\"")
    }

    private mutating func checkInstall(stacks: [(Service, Result<PAMStack, SetupError>)]) {
        if let st = root.status(InstalledLayout.cli, followLinks: true) {
            if st.uid != 0 || st.groupOrOtherWritable {
                add(.fail, "install.cli", "\(root.display(InstalledLayout.cli)): owner uid \(st.uid), mode \(st.octalMode); must be root's and not writable by group or other")
            } else {
                add(.ok, "install.cli", "\(root.display(InstalledLayout.cli)): root, \(st.octalMode)")
            }
        } else {
            add(.warn, "install.cli", "\(root.display(InstalledLayout.cli)) is not installed (run install/install.sh)")
        }

        var rules: [PAMRule] = []
        for case (_, .success(let stack)) in stacks {
            rules += stack.entries.compactMap(\.rule).filter(Self.isModule)
        }
        findings += Self.olderInstall(root, rules: rules)
        var helpers = [InstalledLayout.helper]
        for rule in rules {
            for argument in rule.arguments where argument.hasPrefix("helper=") {
                let path = String(argument.dropFirst("helper=".count))
                if !helpers.contains(path) { helpers.append(path) }
            }
        }
        let explicitHelper = !rules.isEmpty && rules.allSatisfy { $0.arguments.contains { $0.hasPrefix("helper=") } }
        for helper in helpers {
            if helper == InstalledLayout.helper && explicitHelper { continue }
            if let problem = installation.helperProblem(helper) {
                add(.fail, "install.helper", "\(problem): the module refuses to run it and denies every login")
            } else {
                let st = root.status(helper)!
                add(.ok, "install.helper", "\(root.display(helper)): root, \(st.octalMode)")
            }
        }
        if helpers.contains(InstalledLayout.helper) && !explicitHelper && root.status(InstalledLayout.helper) != nil {
            if let problem = installation.helperProblem(InstalledLayout.dynamicHelper) {
                add(.fail, "install.helper", "\(problem): the package's helper hands SMS, fleet, exempt_group and "
                    + "enrollment logins to it, and those are denied")
            } else {
                add(.ok, "install.helper", "\(root.display(InstalledLayout.dynamicHelper)): root, "
                    + "\(root.status(InstalledLayout.dynamicHelper)!.octalMode)")
            }
        }

        var namedConfigs: [String] = []
        for rule in rules {
            for argument in rule.arguments where argument.hasPrefix("config=") {
                let path = String(argument.dropFirst("config=".count))
                if !namedConfigs.contains(path) { namedConfigs.append(path) }
            }
        }
        for path in namedConfigs where root.status(path) == nil {
            add(.fail, "config", "\(root.display(path)) is named by config= on a module line but does not exist: the module denies every login through that line")
        }

        var modules: [String] = []
        for rule in rules where !modules.contains(rule.module) { modules.append(rule.module) }
        if modules.isEmpty { modules = [InstalledLayout.moduleName] }
        for module in modules {
            guard let path = installation.modulePath(module) else {
                add(.warn, "install.module", "no PAM module directory (with pam_unix.so) under \(root.display("/")): cannot find \(module)")
                continue
            }
            guard let st = root.status(path, followLinks: true) else {
                add(
                    rules.isEmpty ? .warn : .fail, "install.module",
                    "\(root.display(path)) is not installed\(rules.isEmpty ? "" : ": every login whose stack names it fails")")
                continue
            }
            if st.uid != 0 || st.groupOrOtherWritable {
                add(.fail, "install.module", "\(root.display(path)): owner uid \(st.uid), mode \(st.octalMode); must be root's and not writable by group or other")
            } else {
                add(.ok, "install.module", "\(root.display(path)): root, \(st.octalMode)")
            }
        }
    }

    // MARK: config and state

    private mutating func checkConfig() -> Config? {
        let path = installation.configPath
        guard root.status(path) != nil else {
            add(.ok, "config", "\(root.display(path)) does not exist: the defaults apply")
            return Config()
        }
        do {
            let config = try Config.load(path: root.host(path))
            add(.ok, "config", "\(root.display(path)): root, 0600, valid (store: \(config.store.backend.rawValue))")
            return config
        } catch {
            add(.fail, "config", "\(error): the module denies every login until it is fixed")
            return nil
        }
    }

    private mutating func checkState(_ config: Config?) -> [UserRecord]? {
        let path = installation.stateDirectory
        guard let st = root.status(path) else {
            add(.warn, "state", "\(root.display(path)) does not exist: nobody is enrolled")
            return []
        }
        let fleet = config?.store.backend == .postgres
        if !fleet, root.status(path + "/" + FileStore.fleetMarker) != nil {
            add(
                .fail, "state.fleet",
                "\(root.display(path)) belongs to a fleet (\(FileStore.fleetMarker) marker) but "
                    + "\(root.display(installation.configPath)) \(config == nil ? "is unusable" : root.status(installation.configPath) == nil ? "is missing" : "says backend = \"files\""): "
                    + "the module denies every login until the config says backend = \"postgres\"")
            return nil
        }
        var problems: [String] = []
        walk(path, st, &problems)
        let (records, unreadable) = installation.records(fleetMember: fleet)
        problems += unreadable.filter { text in !problems.contains { text.contains($0) } }
        if problems.isEmpty {
            add(.ok, "state", "\(root.display(path)): root, 0700; every file root, 0600")
        } else {
            for problem in problems { add(.fail, "state", "\(problem): the module denies logins that need it") }
        }
        return records
    }

    /// Every directory root 0700 and every file root 0600, no symlinks.
    private func walk(_ path: String, _ st: FileStatus, _ problems: inout [String]) {
        let shown = root.display(path)
        switch st.kind {
        case .symlink: problems.append("\(shown) is a symbolic link")
        case .other: problems.append("\(shown) is not a regular file")
        case .regular:
            if st.uid != 0 || st.mode & 0o077 != 0 { problems.append("\(shown): owner uid \(st.uid), mode \(st.octalMode); must be root, 0600") }
        case .directory:
            if st.uid != 0 || st.mode & 0o077 != 0 { problems.append("\(shown): owner uid \(st.uid), mode \(st.octalMode); must be root, 0700") }
            guard let dir = opendir(root.host(path)) else { return }
            defer { closedir(dir) }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name != "." && name != ".." { names.append(name) }
            }
            for name in names.sorted() {
                let child = path + "/" + name
                if let childStatus = root.status(child) { walk(child, childStatus, &problems) }
            }
        }
    }

    private mutating func checkUsers(_ records: [UserRecord]?, moduleRequired: Bool, stacks: [(Service, Result<PAMStack, SetupError>)]) {
        guard let records else { return }
        let enrolled = records.filter(\.isEnrolled)
        if enrolled.isEmpty {
            if moduleRequired {
                add(.fail, "users", "nobody is enrolled, and the module is required without nullok: every login through it is refused (watchword enroll USER --totp)")
            } else {
                add(.warn, "users", "nobody is enrolled (watchword enroll USER --totp)")
            }
            return
        }
        let names = enrolled.map(\.user.value)
        add(.ok, "users", "\(enrolled.count) enrolled: \(names.joined(separator: ", "))")
        let now = unixTimeNow()
        for record in records {
            if let left = record.lockoutRemaining(at: now) {
                add(.warn, "users.locked", "\(record.user) is locked out for \(left) s more after \(record.failures) failures (watchword unlock \(record.user))")
            }
        }
        for case (.sshd, .success(let stack)) in stacks {
            let rules = stack.entries.compactMap(\.rule).filter(Self.isModule)
            guard !rules.isEmpty, !rules.contains(where: { $0.arguments.contains("nullok") }) else { continue }
            let stranded = installation.keyAccountsWithoutCode(
                enrolled: Set(names), moduleArguments: rules.flatMap(\.arguments))
            if !stranded.isEmpty {
                add(.warn, "users.keys", "log in with SSH keys but are neither enrolled nor exempt, so sshd asks them for a code they do not have: \(stranded.joined(separator: ", ")) (root only where PermitRootLogin allows it)")
            }
        }
        for case (.sudo, .success(let stack)) in stacks {
            let rules = stack.entries.compactMap(\.rule).filter(Self.isModule)
            guard !rules.isEmpty, !rules.contains(where: { $0.arguments.contains("nullok") || $0.arguments.contains("enroll_at_login") })
            else { continue }
            let missing = installation.sudoers().filter { !names.contains($0) }
            if !missing.isEmpty {
                add(.warn, "users.sudo", "in the sudo/admin/wheel group but not enrolled, so sudo refuses them: \(missing.joined(separator: ", "))")
            }
        }
    }

    // MARK: PAM

    /// Returns whether the module is enforced in the stack, and whether it lets a user with
    /// no token be (nullok) or become (enroll_at_login) anything but refused.
    private mutating func checkStack(_ service: Service, _ loaded: Result<PAMStack, SetupError>) -> (Bool, Bool) {
        let check = "pam.\(service)"
        let stack: PAMStack
        switch loaded {
        case .success(let s): stack = s
        case .failure(let error):
            add(.fail, check, "cannot read the \(service) PAM stack: \(error)")
            return (false, false)
        }
        if service == .sshd && root.status(service.pamFile) == nil && Subprocess.find("sshd") == nil {
            add(.ok, check, "sshd is not installed")
            return (false, false)
        }
        for note in stack.notes { add(.warn, check, note) }
        let installation = self.installation
        let verdict = stack.verdict(for: Self.isModule, moduleExists: { installation.moduleExists($0) })
        let shownFile = root.display(stack.file)
        switch verdict.kind {
        case .absent:
            add(.warn, check, "\(shownFile): no pam_watchword.so in the auth stack, so \(service) does not ask for a code (watchword enable \(service))")
            return (false, false)
        case .bypassed:
            add(.fail, check, "\(service) can succeed without the code: \(verdict.explanation)")
            return (false, false)
        case .unreachable:
            add(.fail, check, "\(verdict.explanation) (\(service) logins are all refused)")
            return (false, false)
        case .enforced:
            break
        }
        let target = verdict.targets[0]
        add(.ok, check, "\(target.described) runs on every successful \(service) login and a wrong code denies")
        let rules = verdict.targets.compactMap(\.rule)
        let nullok = rules.contains { $0.arguments.contains("nullok") }
        if nullok {
            add(.warn, check, "\(target.line.location): nullok lets users who are not enrolled in without a code; drop it once everybody is enrolled")
        }
        checkExemptions(check, target.line.location, rules.flatMap(\.arguments))
        if rules.contains(where: { $0.arguments.contains("enroll_at_login") }) {
            // Anything before the module that is not a module without credentials checks
            // the first factor (pam_unix, pam_sss, ...).
            let before = stack.entries.prefix { entry in entry.rule.map { !Self.isModule($0) } ?? true }
            let firstFactor = before.contains { entry in
                entry.rule.map { !Self.noCredentialModules.contains($0.moduleName) } ?? false
            }
            if firstFactor {
                add(.ok, check, "\(target.line.location): enroll_at_login: a user with no token sets one up at login, after the first factor")
            } else if service == .sshd {
                sshdEnrollNeedsKey = true
            } else {
                add(.warn, check, "\(target.line.location): enroll_at_login, but nothing before the module checks a password: whoever reaches it can set up a token for an account that has none")
            }
        }
        if rules.contains(where: \.silent) {
            add(.warn, check, "\(target.line.location): the leading '-' makes libpam skip the line silently if the module goes missing; drop it")
        }
        for rule in rules {
            for argument in rule.arguments {
                if argument.hasPrefix("state_dir="), String(argument.dropFirst(10)) != installation.stateDirectory {
                    add(.warn, check, "\(target.line.location) uses \(argument); this check looked at \(installation.stateDirectory) (use --state-dir)")
                }
                if argument.hasPrefix("config="), String(argument.dropFirst(7)) != installation.configPath {
                    add(.warn, check, "\(target.line.location) uses \(argument); this check looked at \(installation.configPath) (use --config)")
                }
            }
        }
        // Like nullok for "nobody enrolled": a user with no token is offered one, not refused.
        return (true, nullok || rules.contains { $0.arguments.contains("enroll_at_login") })
    }

    /// `exempt_group=` and `exempt_from=` are meant: listed as OK, with a warning where an
    /// exempt group holds users who may use sudo or does not exist, and a FAIL for a range
    /// the helper cannot read (every login through the line is then refused).
    private mutating func checkExemptions(_ check: String, _ location: String, _ arguments: [String]) {
        var listed: [String] = []
        for argument in arguments {
            if argument.hasPrefix("exempt_from=") {
                let text = String(argument.dropFirst(12))
                do {
                    _ = try AddressRange(text)
                    listed.append("logins from \(text)")
                } catch {
                    add(.fail, check, "\(location): \(error): every login through this line is refused")
                }
            } else if argument.hasPrefix("exempt_group=") {
                let group = String(argument.dropFirst(13))
                guard let members = installation.groupMembers(group) else {
                    add(.warn, check, "\(location): exempt_group=\(group): no such group, so it exempts nobody")
                    continue
                }
                listed.append("group \(group) (\(members.isEmpty ? "no members" : members.joined(separator: ", ")))")
                let sudoers = installation.sudoers()
                let admins = ["sudo", "admin", "wheel"].contains(group) ? members : members.filter { sudoers.contains($0) }
                if !admins.isEmpty {
                    add(.warn, check, "\(location): exempt_group=\(group) holds users who may use sudo (\(admins.joined(separator: ", "))): they are never asked for a code")
                }
            }
        }
        if !listed.isEmpty {
            add(.ok, check, "\(location): exempt by intent, not asked for a code: \(listed.joined(separator: "; "))")
        }
    }

    // MARK: clock and SMS

    private mutating func checkClock() {
        guard let timedatectl = Subprocess.find("timedatectl") else {
            add(.warn, "clock", "unknown whether the clock is synchronised (no timedatectl); TOTP codes depend on the time")
            return
        }
        guard let result = try? Subprocess.run([timedatectl, "show"], timeout: 10), result.succeeded else {
            add(.warn, "clock", "unknown whether the clock is synchronised (timedatectl show failed); TOTP codes depend on the time")
            return
        }
        var values: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
        }
        switch values["NTPSynchronized"] {
        case "yes": add(.ok, "clock", "synchronised (timedatectl: NTPSynchronized=yes)")
        case "no":
            add(.warn, "clock", "not synchronised (timedatectl: NTPSynchronized=no, NTP=\(values["NTP"] ?? "?")); TOTP codes fail when the clock drifts (timedatectl set-ntp true)")
        default:
            add(.warn, "clock", "unknown whether the clock is synchronised (timedatectl show has no NTPSynchronized)")
        }
    }

    private mutating func checkSMS(_ config: Config?, _ records: [UserRecord]) {
        guard let config else { return }
        let phoneUsers = records.filter { $0.phone != nil }.map(\.user.value)
        guard config.sms.provider != .none else {
            if !phoneUsers.isEmpty {
                add(.warn, "sms", "sms.provider is \"none\" but \(phoneUsers.joined(separator: ", ")) \(phoneUsers.count == 1 ? "has" : "have") a phone number: no texts are sent (users with only SMS cannot log in)")
            }
            return
        }
        guard InstalledLayout.smsDeliveryBuilt else {
            add(.warn, "sms", "sms.provider is \"\(config.sms.provider.rawValue)\" but SMS delivery is not built in this version: nobody gets a code by SMS")
            return
        }
        if config.sms.provider == .command, let program = config.sms.commandArgv.first {
            guard let st = root.status(program, followLinks: true), st.kind == .regular, st.mode & 0o111 != 0 else {
                add(.warn, "sms", "sms.command.argv names \(root.display(program)), which is not an executable file: every text fails")
                return
            }
        }
        add(.ok, "sms", "sms.provider is \"\(config.sms.provider.rawValue)\"")
    }
}
