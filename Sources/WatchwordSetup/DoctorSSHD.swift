#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore

/// `doctor`'s sshd checks: sshd's effective settings (`sshd -T`) and whether every way in
/// asks for the code.
extension Doctor {

    /// Returns whether every way into sshd asks for the code (given an enforced stack).
    mutating func checkSSHD(stack loaded: Result<PAMStack, SetupError>, moduleEnforced: Bool) -> Bool {
        guard let runner = try? SSHDRunner(root: root) else {
            if root.status(Service.sshd.pamFile) != nil {
                add(.warn, "sshd.config", "sshd is not installed on this machine, so its effective settings cannot be checked")
            }
            return false
        }
        guard root.exists(InstalledLayout.sshdConfig) else {
            add(.ok, "sshd.config", "no \(root.display(InstalledLayout.sshdConfig)): sshd is not set up here")
            return false
        }
        let installation = self.installation
        let config: SSHDConfig
        do {
            config = try SSHDConfig.load(
                read: { (path: String) throws(SetupError) -> String? in try installation.readText(path) },
                glob: { installation.root.glob($0) })
        } catch {
            add(.fail, "sshd.config", "\(error)")
            return false
        }
        let result: ProgramResult
        do {
            result = try runner.run("-T", config: root.isHost ? nil : config)
        } catch {
            add(.fail, "sshd.config", "sshd -T: \(error)")
            return false
        }
        guard result.succeeded else {
            add(.fail, "sshd.config", "sshd -T rejects the configuration (sshd would not start): \(result.message)")
            return false
        }
        let values = SSHDEffective(output: result.stdout)
        let severe: Finding.Status = moduleEnforced ? .fail : .warn
        let usePAM = values["usepam"] == "yes"
        let kbd = values["kbdinteractiveauthentication"] == "yes"
        add(
            usePAM ? .ok : severe, "sshd.config",
            "UsePAM \(values["usepam"] ?? "?")\(usePAM ? "" : ": sshd does not use PAM, so it never runs pam_watchword.so")\(origin("usepam", config))")
        add(
            kbd ? .ok : severe, "sshd.config",
            "KbdInteractiveAuthentication \(values["kbdinteractiveauthentication"] ?? "?")\(kbd ? "" : ": sshd never asks PAM's questions, so nobody is asked for the code")\(origin("kbdinteractiveauthentication", config))"
        )
        add(.ok, "sshd.config", "AuthenticationMethods \(values["authenticationmethods"] ?? "any")\(origin("authenticationmethods", config))")
        for keyword in ["authenticationmethods", "kbdinteractiveauthentication", "usepam", "pubkeyauthentication", "passwordauthentication"] {
            for (header, line) in config.matchSettings(keyword) {
                add(.warn, "sshd.config", "\(root.display(line.file)):\(line.number) '\(line.text)' inside '\(header.text)' changes this for matching connections; only the defaults were checked")
            }
        }

        // Which ways in are left, and does each ask for the code?
        let lists = values.methodLists
        guard case .success(let stack) = loaded, moduleEnforced else {
            if lists.isEmpty {
                add(.fail, "sshd.bypass", "no AuthenticationMethods list can be satisfied: sshd lets nobody in")
            } else {
                add(.warn, "sshd.bypass", "sshd logins do not ask for a code (the module is not enforced in its PAM stack)")
            }
            return false
        }
        let codeOnly = stack.entries.allSatisfy { entry in
            guard let rule = entry.rule else { return true }
            return Self.isModule(rule) || Self.noCredentialModules.contains(rule.moduleName)
        }
        var bypass = false
        var asking: [String] = []
        for list in lists {
            let shown = list.joined(separator: ",")
            if list.contains("keyboard-interactive") && usePAM {
                if codeOnly && list == ["keyboard-interactive"] {
                    add(.fail, "sshd.bypass", "'\(shown)' alone logs in with just the code: the PAM stack checks no password (add @include common-auth, or require publickey first: watchword enable sshd --with-publickey)")
                    bypass = true
                } else {
                    asking.append(shown)
                }
            } else if list == ["password"] && usePAM {
                add(.warn, "sshd.bypass", "'password' logins answer every PAM question with the password, so the code prompt gets the password and fails (and counts a failure); allow keyboard-interactive instead (watchword enable sshd)")
            } else {
                let what = list == ["publickey"] ? "a public key alone logs in: sshd does not run PAM's auth stack for publickey" : "'\(shown)' logs in without PAM's auth stack"
                add(.fail, "sshd.bypass", "\(what) (AuthenticationMethods \(values["authenticationmethods"] ?? "any")); require keyboard-interactive: watchword enable sshd [--with-publickey]")
                bypass = true
            }
        }
        if sshdEnrollNeedsKey {
            let keyless = asking.filter { !$0.split(separator: ",").contains("publickey") }
            if keyless.isEmpty {
                add(.ok, "sshd.bypass", "enroll_at_login: the public key is the first factor of every way in")
            } else {
                add(.warn, "sshd.bypass", "enroll_at_login, and '\(keyless.joined(separator: "' and '"))' checks no password or key before the module: whoever reaches it can set up a token for an account that has none (watchword enable sshd --with-publickey, or keep common-auth before the module)")
            }
        }
        if asking.isEmpty && !bypass {
            add(.fail, "sshd.bypass", "no way to log in asks for the code through keyboard-interactive")
            return false
        } else if !bypass {
            add(.ok, "sshd.bypass", "every sshd login needs the code: \(asking.joined(separator: " or "))")
            return true
        }
        return false
    }

    /// ` (from FILE:LINE)` for where sshd takes a keyword's value from.
    private func origin(_ keyword: String, _ config: SSHDConfig) -> String {
        guard let line = config.firstGlobal(keyword) else { return " (default)" }
        return " (from \(root.display(line.file)):\(line.number))"
    }

    /// The answer to the question doctor is for.
    mutating func summarize(_ protected: [Service]) {
        let missing = Service.allCases.filter { !protected.contains($0) }
        if missing.isEmpty {
            add(.ok, "summary", "sshd and sudo both require the code")
        } else if protected.isEmpty {
            add(.fail, "summary", "neither sshd nor sudo requires the code")
        } else {
            add(
                .warn, "summary",
                "\(protected.map(\.rawValue).joined(separator: " and ")) requires the code; \(missing.map(\.rawValue).joined(separator: " and ")) does not")
        }
    }
}
