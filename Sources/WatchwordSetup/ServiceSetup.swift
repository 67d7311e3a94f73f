#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore

/// `watchword enable` and `watchword disable`: put pam_watchword.so into a service's PAM
/// stack (and, for sshd, a drop-in that routes logins through PAM), safely.
///
/// Safe means: nothing is written until the result has been checked — the new PAM stack
/// really runs the module, sshd accepts the new config (`sshd -t`) and really uses its
/// values (`sshd -T`), somebody can still log in; every changed file is backed up first;
/// sshd is tested again afterwards and everything is put back if it fails; running it
/// twice changes nothing; `disable` gives back the files exactly as they were.
public struct ServiceSetup {
    public struct Options {
        public var withPublickey = false
        public var nullok = false
        /// The module's `enroll_at_login`.
        public var enrollAtLogin = false
        /// `exempt_group=` and `exempt_from=` for the module line.
        public var exemptGroups: [String] = []
        public var exemptFrom: [String] = []
        public var force = false
        public var reload = true
        /// The user who ran `sudo watchword ...` (`SUDO_USER`), who must not be locked out
        /// (on this machine; under `--root` the accounts are another system's).
        public var invokingUser: String?
        public init() {}
    }

    public let installation: Installation
    public let options: Options
    /// Progress for the admin, one line each.
    public let say: (String) -> Void
    /// Things the admin should know but that do not stop the run.
    public let warn: (String) -> Void

    public init(installation: Installation, options: Options, say: @escaping (String) -> Void, warn: @escaping (String) -> Void) {
        self.installation = installation
        self.options = options
        self.say = say
        self.warn = warn
    }

    var root: SystemRoot { installation.root }

    // MARK: - enable

    public func enable(_ service: Service) throws(SetupError) {
        let pamFile = service.pamFile
        guard let current = try root.read(pamFile) else {
            throw SetupError("\(root.display(pamFile)) does not exist: is \(service == .sshd ? "openssh-server" : "sudo") installed?")
        }
        if installation.configPath != Config.defaultPath && root.status(installation.configPath) == nil {
            throw SetupError(
                "\(root.display(installation.configPath)) does not exist: a module line naming it with config= denies every login; create it first (root, 0600; an empty file means the defaults)")
        }
        var moduleOptions = installation.moduleOptions
        if options.nullok { moduleOptions.insert("nullok", at: 0) }
        if options.enrollAtLogin { moduleOptions.append("enroll_at_login") }
        for group in options.exemptGroups {
            guard !group.isEmpty, group.utf8.count <= 255, group.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw SetupError("--exempt-group \(group): not a group name")
            }
            if installation.groupMembers(group) == nil {
                throw SetupError("--exempt-group \(group): there is no such group in \(root.display("/etc/group"))")
            }
            moduleOptions.append("exempt_group=\(group)")
        }
        for text in options.exemptFrom {
            do {
                moduleOptions.append("exempt_from=\(try AddressRange(text))")
            } catch {
                throw SetupError("--exempt-from: \(error)")
            }
        }
        let placement: PAMEdit.Placement = service == .sshd && options.withPublickey ? .replaceCommonAuth : .afterCommonAuth

        // 1. The new PAM file, and proof that its stack runs the module.
        let desired: [UInt8]
        let handWritten = PAMEdit.handWrittenModuleLines(current, file: pamFile)
        if let line = handWritten.first {
            warn("\(root.display(line.file)):\(line.number) already names pam_watchword.so ('\(line.text)'), not written by watchword enable; leaving \(pamFile) as it is")
            desired = current
        } else {
            desired = try PAMEdit.apply(PAMEdit.revert(current), placement: placement, options: moduleOptions, file: root.display(pamFile))
        }
        try checkStack(service, text: desired)
        try checkInstalled()
        try checkLockout(service)
        if service == .sshd, !options.nullok, !options.enrollAtLogin, case .success(let users) = installation.enrolledUsers() {
            let stranded = installation.keyAccountsWithoutCode(
                enrolled: Set(users.map(\.value)), moduleArguments: moduleOptions)
            if !stranded.isEmpty {
                warn(
                    "these accounts log in with SSH keys and are neither enrolled nor exempt, so sshd will ask them for a code they do not have: \(stranded.joined(separator: ", ")) (root only where PermitRootLogin allows it; enroll them, or exempt them with --exempt-group or --exempt-from)"
                )
            }
        }

        // 2. For sshd, the drop-in, and proof that sshd takes it and uses its values.
        var dropIn: String?
        var currentDropIn: String?
        if service == .sshd {
            currentDropIn = try root.readText(InstalledLayout.sshdDropIn)
            if let currentDropIn, !SSHDDropIn.isOurs(currentDropIn) {
                throw SetupError(
                    "\(root.display(InstalledLayout.sshdDropIn)) exists and was not written by watchword; move it away or merge it by hand")
            }
            let text = SSHDDropIn.content(withPublickey: options.withPublickey)
            dropIn = text
            try checkSSHD(overrides: [InstalledLayout.sshdDropIn: text], wanted: SSHDDropIn.settings(withPublickey: options.withPublickey))
        }

        let pamChanges = desired != current
        let dropInChanges = dropIn != nil && dropIn != currentDropIn
        guard pamChanges || dropInChanges else {
            say("\(service) already asks for the code: \(root.display(pamFile))\(service == .sshd ? " and \(root.display(InstalledLayout.sshdDropIn))" : "") are as 'enable' leaves them; nothing changed")
            return
        }

        // 3. Back up, write, test again, put back on failure.
        let backup = Backup(root: root)
        var written: [(String, [UInt8]?)] = []  // (file, its old content or nil) for rollback
        do {
            if pamChanges { try backup.save(pamFile) }
            if dropInChanges { try backup.save(InstalledLayout.sshdDropIn) }
            for (original, copy) in backup.saved { say("backed up \(root.display(original)) to \(root.display(copy))") }
            if dropInChanges, let dropIn {
                try root.makeDirectories("/etc/ssh/sshd_config.d", mode: 0o755)
                written.append((InstalledLayout.sshdDropIn, currentDropIn.map { Array($0.utf8) }))
                try root.replace(InstalledLayout.sshdDropIn, with: Array(dropIn.utf8))
                say("wrote \(root.display(InstalledLayout.sshdDropIn)): UsePAM yes, KbdInteractiveAuthentication yes, AuthenticationMethods \(options.withPublickey ? "publickey,keyboard-interactive" : "keyboard-interactive")")
            }
            if pamChanges {
                written.append((pamFile, current))
                try root.replace(pamFile, with: desired)
                say("\(root.display(pamFile)): \(placement == .replaceCommonAuth ? "replaced '@include common-auth' with" : "added after '@include common-auth':") '\(PAMEdit.moduleText(options: moduleOptions))'")
            }
            if service == .sshd { try testSSHDAfterWriting() }
        } catch {
            rollback(written)
            throw error
        }
        if service == .sshd { reloadSSHD() }
        switch service {
        case .sshd:
            say("Keep this session open and log in again in another terminal: \(options.withPublickey ? "after the key" : "after the password"), sshd asks for 'Verification code: '.")
        case .sudo:
            say("Keep this root shell open and try 'sudo -k; sudo true' as an enrolled user in another terminal: after the password, sudo asks for 'Verification code: '.")
        }
    }

    // MARK: - disable

    public func disable(_ service: Service) throws(SetupError) {
        let pamFile = service.pamFile
        let current = try root.read(pamFile)
        let reverted = current.map(PAMEdit.revert)
        var currentDropIn: String?
        if service == .sshd {
            currentDropIn = try root.readText(InstalledLayout.sshdDropIn)
            if let text = currentDropIn, !SSHDDropIn.isOurs(text) {
                warn("\(root.display(InstalledLayout.sshdDropIn)) was not written by watchword; leaving it")
                currentDropIn = nil
            }
        }
        let pamChanges = current != nil && reverted != current
        let dropInChanges = currentDropIn != nil
        let handWritten = current.map { PAMEdit.handWrittenModuleLines($0, file: pamFile) } ?? []

        if pamChanges || dropInChanges {
            let backup = Backup(root: root)
            var written: [(String, [UInt8]?)] = []
            do {
                if pamChanges { try backup.save(pamFile) }
                if dropInChanges { try backup.save(InstalledLayout.sshdDropIn) }
                for (original, copy) in backup.saved { say("backed up \(root.display(original)) to \(root.display(copy))") }
                if pamChanges, let current, let reverted {
                    written.append((pamFile, current))
                    try root.replace(pamFile, with: reverted)
                    say("\(root.display(pamFile)): took out what 'watchword enable' added; the file is as it was before")
                }
                if dropInChanges, let currentDropIn {
                    written.append((InstalledLayout.sshdDropIn, Array(currentDropIn.utf8)))
                    try root.remove(InstalledLayout.sshdDropIn)
                    say("removed \(root.display(InstalledLayout.sshdDropIn))")
                }
                if service == .sshd && root.exists(InstalledLayout.sshdConfig) { try testSSHDAfterWriting() }
            } catch {
                rollback(written)
                throw error
            }
            if service == .sshd { reloadSSHD() }
        } else {
            say("\(service): nothing of 'watchword enable' to take out")
        }
        if let line = handWritten.first {
            throw SetupError(
                "\(root.display(line.file)):\(line.number) still names pam_watchword.so ('\(line.text)'); watchword did not add it, so remove it by hand")
        }
    }

    // MARK: - checks

    /// The module must run on every successful login of the new stack.
    func checkStack(_ service: Service, text: [UInt8]) throws(SetupError) {
        let pamFile = service.pamFile
        let newText = String(decoding: text, as: UTF8.self)
        let installation = self.installation
        let stack = try PAMStack.load(
            service: service.rawValue,
            read: { (path: String) throws(SetupError) -> String? in path == pamFile ? newText : try installation.readText(path) },
            moduleExists: { installation.moduleExists($0) })
        let verdict = stack.verdict(
            for: { $0.moduleName == InstalledLayout.moduleName }, moduleExists: { installation.moduleExists($0) })
        switch verdict.kind {
        case .enforced:
            return
        case .absent:
            throw SetupError("\(root.display(pamFile)): the module line did not end up in the auth stack")
        case .bypassed, .unreachable:
            let message = "\(root.display(pamFile)) would not make \(service) ask for the code: \(verdict.explanation)"
            guard options.force else {
                throw SetupError(message + ". Fix that line first (or use --force to add the module anyway)")
            }
            warn(message + " (going on: --force)")
        }
    }

    /// The module and the helper must be installed, or every login fails.
    func checkInstalled() throws(SetupError) {
        var problems: [String] = []
        if installation.moduleExists(InstalledLayout.moduleName) == false {
            problems.append("pam_watchword.so is not in \(root.display(installation.moduleDirectory ?? "the PAM module directory"))")
        } else if installation.moduleDirectory == nil {
            problems.append("no PAM module directory (with pam_unix.so) found")
        }
        if let problem = installation.helperProblem(installation.helperForLogins) {
            problems.append("the helper: \(problem)")
        }
        guard !problems.isEmpty else { return }
        let message = problems.joined(separator: "; ") + ": every login through the module would fail"
        guard options.force else { throw SetupError(message + ". Run install/install.sh first (or use --force)") }
        warn(message + " (going on: --force)")
    }

    /// Refuses to lock everybody (or the admin running this) out.
    func checkLockout(_ service: Service) throws(SetupError) {
        // With enroll_at_login a user with no token sets one up at login: nobody is shut out.
        guard !options.nullok, !options.enrollAtLogin else { return }
        let users: [UserName]
        switch installation.enrolledUsers() {
        case .success(let list): users = list
        case .failure(let error):
            let message = "cannot read the state directory (\(error)): every \(service) login would be refused"
            guard options.force else { throw SetupError(message + " (use --force to go on)") }
            warn(message)
            return
        }
        let names = Set(users.map(\.value))
        if names.isEmpty {
            let message =
                "nobody is enrolled yet (state: \(root.display(installation.stateDirectory))), so with the module required every \(service) login would be refused — including yours"
            guard options.force else {
                throw SetupError(
                    message
                        + ". Enroll users first (watchword enroll USER --totp), or use --enroll-at-login to have each user set up a token at their next login (the safe way to roll out), or --nullok to let users who are not enrolled in without a code while you enroll them, or --force")
            }
            warn(message + " (going on: --force)")
        }
        if root.isHost, let me = options.invokingUser, !me.isEmpty, !names.isEmpty, !names.contains(me) {
            let message = "you came in as \(me) (through sudo), who is not enrolled: \(me)'s \(service) logins would be refused"
            guard options.force else {
                throw SetupError(message + ". Enroll \(me) first (watchword enroll \(me) --totp), or use --enroll-at-login, --nullok or --force")
            }
            warn(message + " (going on: --force)")
        }
        if service == .sudo {
            let missing = installation.sudoers().filter { !names.contains($0) }
            if !missing.isEmpty && !names.isEmpty {
                warn("not enrolled, so sudo will refuse them: \(missing.joined(separator: ", ")) (members of the sudo/admin/wheel group)")
            }
        }
    }

    /// sshd must accept the config with the new drop-in, and use the drop-in's values.
    func checkSSHD(overrides: [String: String?], wanted: [(String, String)]) throws(SetupError) {
        let installation = self.installation
        let config = try SSHDConfig.load(
            read: { (path: String) throws(SetupError) -> String? in try installation.readText(path) },
            glob: { installation.root.glob($0) }, overrides: overrides)
        let dropIn = InstalledLayout.sshdDropIn
        guard config.files.contains(dropIn) else {
            throw SetupError(
                "\(root.display(InstalledLayout.sshdConfig)) does not include \(dropIn); add 'Include /etc/ssh/sshd_config.d/*.conf' at its top (as Debian's does) and run this again")
        }
        var conflicts: [String] = []
        for (keyword, value) in wanted {
            for line in config.allGlobal(keyword) where line.file != dropIn {
                let index = config.global.firstIndex(of: line)!
                let ours = config.global.firstIndex { $0.file == dropIn && SSHDConfig.aliases(keyword).contains($0.keyword) }!
                let same = line.value.lowercased() == value
                if index < ours && !same {
                    conflicts.append("\(root.display(line.file)):\(line.number) '\(line.text)' comes before the drop-in, so sshd uses it")
                } else if index < ours {
                    continue
                } else if !same {
                    say("note: \(root.display(line.file)):\(line.number) '\(line.text)' is read after the drop-in, so sshd ignores it")
                }
            }
            for (header, line) in config.matchSettings(keyword) {
                warn("\(root.display(line.file)):\(line.number) '\(line.text)' inside '\(header.text)' overrides the drop-in for connections that match")
            }
        }
        if !conflicts.isEmpty {
            throw SetupError(
                "the drop-in would not take effect: " + conflicts.joined(separator: "; ")
                    + ". Remove or change those lines (sshd takes the first value it reads), then run this again")
        }
        let runner = try SSHDRunner(root: root)
        let test = try runner.run("-t", config: config)
        guard test.succeeded else {
            throw SetupError("sshd -t rejects the configuration with the new drop-in, so nothing was changed: \(test.message)")
        }
        let effective = try runner.run("-T", config: config)
        guard effective.succeeded else { throw SetupError("sshd -T failed: \(effective.message)") }
        let values = SSHDEffective(output: effective.stdout)
        let wrong = wanted.filter { values[$0.0] != $0.1 }
        guard wrong.isEmpty else {
            let list = wrong.map { "\($0.0) is \(values[$0.0] ?? "unset"), not \($0.1)" }.joined(separator: ", ")
            throw SetupError("sshd -T shows the drop-in would not take effect (\(list)); nothing was changed")
        }
        say("sshd -t accepts the new configuration; sshd -T: usepam yes, kbdinteractiveauthentication yes, authenticationmethods \(values["authenticationmethods"] ?? "")")
    }

    /// `sshd -t` over what is now on disk.
    func testSSHDAfterWriting() throws(SetupError) {
        let installation = self.installation
        let runner = try SSHDRunner(root: root)
        let config: SSHDConfig?
        if root.isHost {
            config = nil
        } else {
            config = try SSHDConfig.load(
                read: { (path: String) throws(SetupError) -> String? in try installation.readText(path) },
                glob: { installation.root.glob($0) })
        }
        let test = try runner.run("-t", config: config)
        guard test.succeeded else {
            throw SetupError("sshd -t fails after the change, so it was put back: \(test.message)")
        }
    }

    func rollback(_ written: [(String, [UInt8]?)]) {
        for (file, old) in written.reversed() {
            do {
                if let old {
                    try root.replace(file, with: old)
                } else {
                    try root.remove(file)
                }
                warn("put back \(root.display(file))")
            } catch {
                warn("could not put back \(root.display(file)): \(error); the backup has it")
            }
        }
    }

    /// Makes a running sshd read its config again (existing sessions stay). Not under --root.
    func reloadSSHD() {
        guard root.isHost, options.reload else {
            if root.isHost { say("not reloading sshd (--no-reload): the new settings apply when it next starts or reloads") }
            return
        }
        if root.exists("/run/systemd/system"), let systemctl = Subprocess.find("systemctl") {
            for unit in ["ssh.service", "sshd.service"] {
                if let result = try? Subprocess.run([systemctl, "try-reload-or-restart", unit]), result.succeeded {
                    say("reloaded sshd (systemctl try-reload-or-restart \(unit))")
                    return
                }
            }
        }
        if let text = try? root.readText("/run/sshd.pid"), let pid = Int32(text.trimmingSpaces), pid > 1, kill(pid, 0) == 0 {
            if kill(pid, SIGHUP) == 0 {
                say("reloaded sshd (SIGHUP to pid \(pid))")
                return
            }
        }
        warn("sshd does not seem to run (no systemd unit, no /run/sshd.pid); the new settings apply when it starts")
    }
}
