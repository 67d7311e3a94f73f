import Testing
import WatchwordSetup

private func load(_ files: [String: String], overrides: [String: String?] = [:]) throws -> SSHDConfig {
    try SSHDConfig.load(
        read: { files[$0] },
        glob: { pattern in
            files.keys.filter { path in
                // enough of fnmatch for these tests: DIR/*.conf
                guard let star = pattern.firstIndex(of: "*") else { return path == pattern }
                let prefix = String(pattern[..<star])
                let suffix = String(pattern[pattern.index(after: star)...])
                return path.hasPrefix(prefix) && path.hasSuffix(suffix) && !path.dropFirst(prefix.count).contains("/")
            }.sorted()
        }, overrides: overrides)
}

@Suite("sshd_config: lines, includes, first value wins")
struct SSHDConfigTests {
    @Test("Keyword forms: 'Key value', 'Key=value', 'Key = value', quotes, comments")
    func lines() {
        let a = SSHDConfig.parseLine("  AuthenticationMethods publickey,keyboard-interactive  # both", file: "f", number: 1)
        #expect(a?.keyword == "authenticationmethods" && a?.arguments == ["publickey,keyboard-interactive"])
        #expect(SSHDConfig.parseLine("UsePAM=yes", file: "f", number: 1)?.arguments == ["yes"])
        #expect(SSHDConfig.parseLine("UsePAM = yes", file: "f", number: 1)?.arguments == ["yes"])
        #expect(SSHDConfig.parseLine("Banner \"/etc/my banner\"", file: "f", number: 1)?.arguments == ["/etc/my banner"])
        #expect(SSHDConfig.parseLine("# KbdInteractiveAuthentication yes", file: "f", number: 1) == nil)
        #expect(SSHDConfig.parseLine("   ", file: "f", number: 1) == nil)
    }

    @Test("Includes are followed in place, relative ones under /etc/ssh, files in byte order")
    func includes() throws {
        let config = try load([
            "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nInclude extra.conf\n",
            "/etc/ssh/sshd_config.d/watchword.conf": "KbdInteractiveAuthentication yes\n",
            "/etc/ssh/sshd_config.d/50-cloud.conf": "PasswordAuthentication yes\n",
            "/etc/ssh/extra.conf": "UsePAM no\n",
        ])
        #expect(config.files == ["/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/50-cloud.conf", "/etc/ssh/sshd_config.d/watchword.conf", "/etc/ssh/extra.conf"])
        #expect(config.firstGlobal("kbdinteractiveauthentication")?.file == "/etc/ssh/sshd_config.d/watchword.conf")
        #expect(config.allGlobal("kbdinteractiveauthentication").map(\.value) == ["yes", "no"])
        #expect(config.firstGlobal("usepam")?.location == "/etc/ssh/extra.conf:1")
    }

    @Test("ChallengeResponseAuthentication is the same setting as KbdInteractiveAuthentication")
    func alias() throws {
        let config = try load(["/etc/ssh/sshd_config": "ChallengeResponseAuthentication no\nKbdInteractiveAuthentication yes\n"])
        #expect(config.firstGlobal("kbdinteractiveauthentication")?.value == "no")
    }

    @Test("A Match in an included file ends with that file; Match blocks go last when flattened")
    func matchScope() throws {
        let config = try load([
            "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
            "/etc/ssh/sshd_config.d/a.conf": "PermitRootLogin no\nMatch User bob\n  AuthenticationMethods publickey\n",
        ])
        #expect(config.global.map(\.keyword) == ["permitrootlogin", "subsystem"])
        #expect(config.matchSettings("authenticationmethods").map(\.0.text) == ["Match User bob"])
        let flat = config.flattened()
        #expect(flat.hasSuffix("PermitRootLogin no\nSubsystem sftp /usr/lib/openssh/sftp-server\nMatch User bob\n  AuthenticationMethods publickey\n"))
    }

    @Test("An Include inside a Match block: the block carries on after the included file's own Match")
    func includeInsideMatch() throws {
        let config = try load([
            "/etc/ssh/sshd_config": "Match Group admins\nInclude /etc/ssh/m.conf\nX11Forwarding no\n",
            "/etc/ssh/m.conf": "AllowTcpForwarding no\nMatch User eve\nPermitTTY no\n",
        ])
        #expect(config.matchBlocks.map(\.header.text) == ["Match Group admins", "Match User eve", "Match Group admins"])
        #expect(config.matchBlocks.map { $0.lines.map(\.keyword) } == [["allowtcpforwarding"], ["permittty"], ["x11forwarding"]])
    }

    @Test("Overrides stand in for a file about to be written or removed")
    func overrides() throws {
        let files = ["/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n", "/etc/ssh/sshd_config.d/old.conf": "UsePAM no\n"]
        let added = try load(files, overrides: ["/etc/ssh/sshd_config.d/watchword.conf": "UsePAM yes\n"])
        #expect(added.files.contains("/etc/ssh/sshd_config.d/watchword.conf"))
        #expect(added.firstGlobal("usepam")?.value == "no")  // old.conf sorts first
        let removed = try load(files, overrides: ["/etc/ssh/sshd_config.d/old.conf": String?.none])
        #expect(removed.firstGlobal("usepam") == nil)
    }

    @Test("The drop-in's settings, and what it is recognised by")
    func dropIn() {
        let text = SSHDDropIn.content(withPublickey: true)
        #expect(SSHDDropIn.isOurs(text))
        #expect(text.contains("\nAuthenticationMethods publickey,keyboard-interactive\n"))
        #expect(SSHDDropIn.content(withPublickey: false).contains("\nAuthenticationMethods keyboard-interactive\n"))
        #expect(!SSHDDropIn.isOurs("UsePAM yes\n"))
    }
}

@Suite("sshd -T: which ways in are left")
struct SSHDEffectiveTests {
    @Test("'any' means each enabled method alone: a public key alone logs in")
    func any() {
        let v = SSHDEffective(output: "usepam yes\npubkeyauthentication yes\npasswordauthentication yes\nkbdinteractiveauthentication no\nauthenticationmethods any\n")
        #expect(v.methodLists == [["publickey"], ["password"]])
    }

    @Test("Lists naming a disabled method are dropped, as sshd does")
    func lists() {
        let v = SSHDEffective(output: "pubkeyauthentication yes\nkbdinteractiveauthentication yes\nauthenticationmethods publickey,keyboard-interactive:pam password\n")
        #expect(v.methodLists == [["publickey", "keyboard-interactive"]])
    }
}
