import WatchwordCore

/// What is installed in a root: the PAM module directory, the module, the helper, enrolled
/// users and system accounts.
public struct Installation {
    public let root: SystemRoot
    /// Inner paths of the state directory and config file.
    public let stateDirectory: String
    public let configPath: String

    public init(root: SystemRoot, stateDirectory: String, configPath: String) {
        self.root = root
        self.stateDirectory = stateDirectory
        self.configPath = configPath
    }

    /// The PAM module directory: where `pam_unix.so` is (Debian:
    /// `/lib/x86_64-linux-gnu/security`), or nil when none is found.
    public var moduleDirectory: String? {
        let fixed = [
            "/lib/x86_64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security", "/lib/aarch64-linux-gnu/security",
            "/usr/lib/aarch64-linux-gnu/security", "/lib/security", "/lib64/security", "/usr/lib/security",
            "/usr/lib64/security",
        ]
        for directory in fixed where root.exists(directory + "/pam_unix.so") { return directory }
        for pattern in ["/lib/*/security/pam_unix.so", "/usr/lib/*/security/pam_unix.so"] {
            if let found = root.glob(pattern).first { return String(found.dropLast("/pam_unix.so".count)) }
        }
        return nil
    }

    /// Where libpam finds a module named in a PAM line (inner path), or nil when the module
    /// directory is unknown.
    public func modulePath(_ module: String) -> String? {
        if module.hasPrefix("/") { return module }
        return moduleDirectory.map { $0 + "/" + module }
    }

    /// Whether libpam would find a module; nil when that cannot be told.
    public func moduleExists(_ module: String) -> Bool? {
        guard let path = modulePath(module) else { return nil }
        return root.exists(path)
    }

    /// Why the helper at `path` would be refused by the module (which checks it before every
    /// run, walking from / without following links: every directory root's and not writable
    /// by group or other, no symlink, no empty, `.` or `..` component; the helper a regular
    /// executable, root's, not writable by group or other), or nil when it is fine.
    public func helperProblem(_ path: String = InstalledLayout.helper) -> String? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard path.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            return "\(path) is not an absolute path without empty, . or .. components"
        }
        var dir = "/"
        for part in parts {
            guard let st = root.status(dir) else { break }
            guard st.kind != .symlink else { return "\(root.display(dir)) is a symlink (the module follows none to the helper)" }
            guard st.kind == .directory, st.uid == 0, !st.groupOrOtherWritable else {
                return "\(root.display(dir)): every directory above the helper must be root's and not writable by group or other"
            }
            dir = dir == "/" ? "/\(part)" : "\(dir)/\(part)"
        }
        guard let st = root.status(path) else { return "\(root.display(path)) does not exist" }
        guard st.kind == .regular else { return "\(root.display(path)) is not a regular file (the module refuses symlinks)" }
        guard st.uid == 0 else { return "\(root.display(path)) is owned by uid \(st.uid), not root" }
        guard !st.groupOrOtherWritable else { return "\(root.display(path)) has mode \(st.octalMode): writable by group or other" }
        guard st.mode & 0o111 != 0 else { return "\(root.display(path)) is not executable (mode \(st.octalMode))" }
        return nil
    }

    /// The enrolled users, or an error saying why the state could not be read. A missing
    /// state directory means nobody.
    public func enrolledUsers() -> Result<[UserName], SetupError> {
        let full = root.host(stateDirectory)
        guard root.exists(stateDirectory) else { return .success([]) }
        do {
            let store = try FileStore(path: full, create: false)
            return .success(try store.users())
        } catch {
            return .failure(SetupError("\(error)"))
        }
    }

    /// Users with a record, loaded (for lockouts); unreadable ones reported by name.
    public func records(fleetMember: Bool = false) -> (records: [UserRecord], problems: [String]) {
        guard root.exists(stateDirectory) else { return ([], []) }
        do {
            let store = try FileStore(path: root.host(stateDirectory), create: false, fleetMember: fleetMember)
            var records: [UserRecord] = []
            var problems: [String] = []
            for user in try store.users() {
                do {
                    if let record = try store.load(user) { records.append(record) }
                } catch {
                    problems.append("\(user): \(error)")
                }
            }
            return (records, problems)
        } catch {
            return ([], ["\(error)"])
        }
    }

    /// Members of the groups that may use sudo on Debian and elsewhere (`sudo`, `admin`,
    /// `wheel`), from the root's /etc/group.
    public func sudoers() -> [String] {
        guard let text = try? root.readText("/etc/group") else { return [] }
        var names: [String] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 4, ["sudo", "admin", "wheel"].contains(fields[0]) else { continue }
            for name in fields[3].split(separator: ",") where !names.contains(String(name)) {
                names.append(String(name))
            }
        }
        return names
    }

    /// The members of `group` in the root's /etc/group and /etc/passwd (named in the group's
    /// line, or having it as their primary group), or nil when there is no such group.
    public func groupMembers(_ group: String) -> [String]? {
        guard let text = try? root.readText("/etc/group") else { return nil }
        var gid: Substring? = nil
        var names: [String] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 4, fields[0] == group else { continue }
            gid = fields[2]
            names = fields[3].split(separator: ",").map(String.init)
            break
        }
        guard let gid else { return nil }
        for line in (try? root.readText("/etc/passwd"))?.split(separator: "\n") ?? [] {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 4, fields[3] == gid, !names.contains(String(fields[0])) { names.append(String(fields[0])) }
        }
        return names
    }

    /// Accounts that can log in over SSH with a key: those of the root's /etc/passwd with a
    /// `.ssh/authorized_keys` or `.ssh/authorized_keys2` in their home directory.
    public func keyLoginAccounts() -> [String] {
        guard let text = try? root.readText("/etc/passwd") else { return [] }
        var names: [String] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 7, fields[5].hasPrefix("/"), !names.contains(String(fields[0])) else { continue }
            let home = fields[5].hasSuffix("/") ? String(fields[5].dropLast()) : String(fields[5])
            if root.exists(home + "/.ssh/authorized_keys") || root.exists(home + "/.ssh/authorized_keys2") {
                names.append(String(fields[0]))
            }
        }
        return names
    }

    /// Of `keyLoginAccounts()`, those neither enrolled (`enrolled`) nor in one of the
    /// module line's `exempt_group=` groups: the module would ask them for a code they do
    /// not have.
    public func keyAccountsWithoutCode(enrolled: Set<String>, moduleArguments: [String]) -> [String] {
        var exempt: Set<String> = []
        for argument in moduleArguments where argument.hasPrefix("exempt_group=") {
            exempt.formUnion(groupMembers(String(argument.dropFirst(13))) ?? [])
        }
        return keyLoginAccounts().filter { !enrolled.contains($0) && !exempt.contains($0) }
    }

    /// Whether the config says `[store] backend = "postgres"` (false when it cannot be read:
    /// `enable` and `doctor` report that elsewhere).
    public var isFleet: Bool {
        (try? Config.load(path: root.host(configPath)))?.store.backend == .postgres
    }

    /// The helper a module line should run: on a fleet host the dynamically linked one, as
    /// every login there needs libpq, which the static `watchword-helper` would hand it
    /// anyway, after starting and reading the config itself (1-3 ms a login,
    /// BENCHMARKS.md); elsewhere the module's default, the static one.
    public var helperForLogins: String { isFleet ? InstalledLayout.dynamicHelper : InstalledLayout.helper }

    /// The PAM options that point the module at this installation's helper, state and
    /// config, when they are not the defaults.
    public var moduleOptions: [String] {
        var options: [String] = []
        let helper = helperForLogins  // reads the config
        if helper != InstalledLayout.helper { options.append("helper=\(helper)") }
        if stateDirectory != FileStore.defaultPath { options.append("state_dir=\(stateDirectory)") }
        if configPath != Config.defaultPath { options.append("config=\(configPath)") }
        return options
    }

    /// Reads a file inside the root for the PAM and sshd loaders.
    public func readText(_ inner: String) throws(SetupError) -> String? { try root.readText(inner) }
}
