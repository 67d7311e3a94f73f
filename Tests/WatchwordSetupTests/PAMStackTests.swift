import Testing
import WatchwordSetup

/// Debian 12's /etc/pam.d/common-auth (pam-auth-update), comments trimmed.
let debianCommonAuth = """
    # here are the per-package modules (the "Primary" block)
    auth	[success=1 default=ignore]	pam_unix.so nullok
    # here's the fallback if no module succeeds
    auth	requisite			pam_deny.so
    auth	required			pam_permit.so
    auth	optional			pam_cap.so 
    # end of pam-auth-update config

    """

/// A stack read from in-memory files (inner path → text).
func stack(_ files: [String: String], service: String = "sshd", missing: Set<String> = []) throws -> PAMStack {
    try PAMStack.load(
        service: service, read: { files[$0] }, moduleExists: { missing.contains($0) ? false : true })
}

func verdict(_ files: [String: String], service: String = "sshd", missing: Set<String> = []) throws -> StackVerdict {
    try stack(files, service: service, missing: missing).verdict(
        for: { $0.moduleName == "pam_watchword.so" }, moduleExists: { missing.contains($0) ? false : true })
}

@Suite("PAM stack: is pam_watchword.so enforced?")
struct PAMStackTests {
    @Test("Debian's common-auth, then the module: enforced (the jump over pam_deny stays inside)")
    func debianPasswordThenCode() throws {
        let v = try verdict([
            "/etc/pam.d/sshd": "@include common-auth\nauth required pam_watchword.so\naccount required pam_nologin.so\n",
            "/etc/pam.d/common-auth": debianCommonAuth,
        ])
        #expect(v.kind == .enforced)
        #expect(v.targets.map(\.line.location) == ["/etc/pam.d/sshd:2"])
    }

    @Test("The module alone (key + code): enforced")
    func moduleAlone() throws {
        let v = try verdict(["/etc/pam.d/sshd": "auth required pam_watchword.so\n"])
        #expect(v.kind == .enforced)
    }

    @Test("An earlier 'sufficient' line ends the stack before the module")
    func earlierSufficient() throws {
        let v = try verdict(
            [
                "/etc/pam.d/sudo": """
                #%PAM-1.0
                auth sufficient pam_ssh_agent_auth.so file=/etc/security/authorized_keys
                @include common-auth
                auth required pam_watchword.so
                """,
                "/etc/pam.d/common-auth": debianCommonAuth,
            ], service: "sudo")
        #expect(v.kind == .bypassed)
        #expect(v.culprit?.line.location == "/etc/pam.d/sudo:2")
        #expect(v.explanation.contains("pam_ssh_agent_auth.so"))
    }

    @Test("A sufficient line inside an included file is found through the include")
    func sufficientInInclude() throws {
        let v = try verdict([
            "/etc/pam.d/sshd": "@include common-auth\nauth required pam_watchword.so\n",
            "/etc/pam.d/common-auth": "auth sufficient pam_unix.so\nauth requisite pam_deny.so\n",
        ])
        #expect(v.kind == .bypassed)
        #expect(v.culprit?.line.location == "/etc/pam.d/common-auth:1")
        #expect(v.culprit?.described.contains("included from /etc/pam.d/sshd:1") == true)
    }

    @Test("[success=done] and a jump over the module are bypasses; a jump that stays short is not")
    func doneAndJumps() throws {
        let done = try verdict([
            "/etc/pam.d/sshd": "auth [success=done default=ignore] pam_unix.so\nauth required pam_watchword.so\n"
        ])
        #expect(done.kind == .bypassed)
        #expect(done.culprit?.line.number == 1)

        let over = try verdict([
            "/etc/pam.d/sshd": """
            auth [success=2 default=ignore] pam_unix.so
            auth requisite pam_deny.so
            auth required pam_watchword.so
            auth required pam_permit.so
            """
        ])
        #expect(over.kind == .bypassed)
        #expect(over.culprit?.line.number == 1)

        let short = try verdict([
            "/etc/pam.d/sshd": """
            auth [success=1 default=ignore] pam_unix.so
            auth requisite pam_deny.so
            auth required pam_watchword.so
            """
        ])
        #expect(short.kind == .enforced)
    }

    @Test("A jump past the end of the stack fails ('bad jump'), it does not let anybody in")
    func jumpPastTheEnd() throws {
        let v = try verdict(["/etc/pam.d/sshd": "auth required pam_watchword.so\nauth [success=5 default=bad] pam_unix.so\n"])
        #expect(v.kind == .enforced)
    }

    @Test("optional or sufficient on the module itself ignores a wrong code")
    func weakControlOnTheModule() throws {
        for control in ["optional", "sufficient", "[success=ok default=ignore]"] {
            let v = try verdict([
                "/etc/pam.d/sshd": "auth required pam_unix.so\nauth \(control) pam_watchword.so\n"
            ])
            #expect(v.kind == .bypassed, "\(control)")
            #expect(v.culprit?.line.number == 2)
            #expect(v.explanation.contains("use 'required'"))
        }
        for control in ["required", "requisite", "[success=ok default=bad]", "[success=ok default=die]"] {
            let v = try verdict(["/etc/pam.d/sshd": "auth \(control) pam_watchword.so\n"])
            #expect(v.kind == .enforced, "\(control)")
        }
    }

    @Test("A 'sufficient' inside a substack ends only the substack")
    func substackScope() throws {
        let v = try verdict([
            "/etc/pam.d/sshd": "auth substack password-auth\nauth required pam_watchword.so\n",
            "/etc/pam.d/password-auth": "auth sufficient pam_unix.so\nauth requisite pam_deny.so\n",
        ])
        #expect(v.kind == .enforced)
        let included = try verdict([
            "/etc/pam.d/sshd": "auth include password-auth\nauth required pam_watchword.so\n",
            "/etc/pam.d/password-auth": "auth sufficient pam_unix.so\nauth requisite pam_deny.so\n",
        ])
        #expect(included.kind == .bypassed)
    }

    @Test("A '-auth' line whose module is missing is skipped by libpam: the module is absent")
    func silentMissingModule() throws {
        let v = try verdict(["/etc/pam.d/sshd": "-auth required pam_watchword.so\n"], missing: ["pam_watchword.so"])
        #expect(v.kind == .absent)
        let present = try verdict(["/etc/pam.d/sshd": "-auth required pam_watchword.so\n"])
        #expect(present.kind == .enforced)
    }

    @Test("A stack that always fails first never reaches the module")
    func unreachable() throws {
        let v = try verdict(["/etc/pam.d/sshd": "auth requisite pam_deny.so\nauth required pam_watchword.so\n"])
        #expect(v.kind == .unreachable)
    }

    @Test("No module line: absent; a missing include fails the stack where it stands")
    func absentAndMissingInclude() throws {
        #expect(try verdict(["/etc/pam.d/sshd": "@include common-auth\n", "/etc/pam.d/common-auth": debianCommonAuth]).kind == .absent)
        let s = try stack(["/etc/pam.d/sshd": "@include nosuch\nauth required pam_watchword.so\n"])
        #expect(s.notes.contains { $0.contains("nosuch does not exist") })
        #expect(try verdict(["/etc/pam.d/sshd": "@include nosuch\nauth required pam_watchword.so\n"]).kind == .enforced)
    }

    @Test("Only lines of the asked type count; a missing service file falls back to 'other'")
    func typesAndOther() throws {
        let s = try stack([
            "/etc/pam.d/other": "auth required pam_watchword.so\nsession sufficient pam_permit.so\n"
        ])
        #expect(s.file == "/etc/pam.d/other")
        #expect(s.entries.count == 1)
    }
}

@Suite("PAM config lines")
struct PAMConfigTests {
    @Test("Comments anywhere, continuation lines, bracket controls")
    func parsing() {
        let lines = PAMConfig.parse(
            """
            # a comment
            auth [success=1 default=ignore]\tpam_unix.so nullok # trailing
            auth required \\
              pam_watchword.so debug
            @include common-auth
            session optional pam_mail.so standard noenv # [1]
            bogus required pam_x.so
            """, file: "/etc/pam.d/x")
        #expect(lines.map(\.number) == [2, 3, 5, 6, 7])
        guard case .rule(let first) = lines[0].kind else { Issue.record("not a rule"); return }
        #expect(first.control.action(for: "success") == .jump(1))
        #expect(first.control.action(for: "auth_err") == .ignore)
        #expect(first.arguments == ["nullok"])
        guard case .rule(let second) = lines[1].kind else { Issue.record("not a rule"); return }
        #expect(second.module == "pam_watchword.so" && second.arguments == ["debug"])
        #expect(lines[2].kind == .include("common-auth"))
        guard case .rule(let mail) = lines[3].kind else { Issue.record("not a rule"); return }
        #expect(mail.arguments == ["standard", "noenv"])
        guard case .invalid = lines[4].kind else { Issue.record("bogus type accepted"); return }
    }

    @Test("Keyword controls mean what libpam's pam_handlers.c says")
    func keywordControls() {
        #expect(PAMControl.parse("required")?.action(for: "auth_err") == .bad)
        #expect(PAMControl.parse("required")?.action(for: "ignore") == .ignore)
        #expect(PAMControl.parse("requisite")?.action(for: "auth_err") == .die)
        #expect(PAMControl.parse("sufficient")?.action(for: "success") == .done)
        #expect(PAMControl.parse("sufficient")?.action(for: "auth_err") == .ignore)
        #expect(PAMControl.parse("optional")?.action(for: "auth_err") == .ignore)
        #expect(PAMControl.parse("[success=ok]")?.action(for: "auth_err") == .bad)
    }
}
