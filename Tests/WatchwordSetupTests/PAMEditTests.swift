import Testing
import WatchwordSetup

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
private func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

let debianSudo = """
    #%PAM-1.0

    # Set up user limits from /etc/security/limits.conf.
    session    required   pam_limits.so

    @include common-auth
    @include common-account
    @include common-session-noninteractive

    """

@Suite("PAM file edits and their exact undoing")
struct PAMEditTests {
    @Test("After common-auth: one marked line; revert gives the same bytes back")
    func afterCommonAuth() throws {
        let edited = try PAMEdit.apply(bytes(debianSudo), placement: .afterCommonAuth, options: [], file: "sudo")
        #expect(
            text(edited) == """
                #%PAM-1.0

                # Set up user limits from /etc/security/limits.conf.
                session    required   pam_limits.so

                @include common-auth
                auth       required   pam_watchword.so   # added by watchword enable
                @include common-account
                @include common-session-noninteractive

                """)
        #expect(PAMEdit.revert(edited) == bytes(debianSudo))
        #expect(PAMEdit.hasChanges(edited))
        #expect(!PAMEdit.hasChanges(bytes(debianSudo)))
    }

    @Test("Replacing common-auth keeps it, commented out, and the module line after it")
    func replaceCommonAuth() throws {
        let original = "# sshd\n@include common-auth\naccount required pam_nologin.so\n"
        let edited = try PAMEdit.apply(bytes(original), placement: .replaceCommonAuth, options: ["nullok"], file: "sshd")
        #expect(
            text(edited)
                == "# sshd\n#disabled by watchword enable: @include common-auth\nauth       required   pam_watchword.so nullok   # added by watchword enable\naccount required pam_nologin.so\n"
        )
        #expect(PAMEdit.revert(edited) == bytes(original))
    }

    @Test("A last line without a newline survives the round trip byte for byte")
    func noFinalNewline() throws {
        for placement in [PAMEdit.Placement.afterCommonAuth, .replaceCommonAuth] {
            let original = "auth optional pam_cap.so\n@include common-auth"
            let edited = try PAMEdit.apply(bytes(original), placement: placement, options: [], file: "x")
            #expect(!text(edited).hasSuffix("\n"))
            #expect(PAMEdit.revert(edited) == bytes(original))
        }
    }

    @Test("Reverting keeps what the admin changed meanwhile")
    func keepsOtherEdits() throws {
        var edited = text(try PAMEdit.apply(bytes(debianSudo), placement: .afterCommonAuth, options: [], file: "sudo"))
        edited += "session optional pam_echo.so\n"
        #expect(text(PAMEdit.revert(bytes(edited))) == debianSudo + "session optional pam_echo.so\n")
    }

    @Test("auth include / substack common-auth are anchors too; no anchor is an error naming the line to add")
    func anchors() throws {
        let include = try PAMEdit.apply(bytes("auth include common-auth\n"), placement: .afterCommonAuth, options: [], file: "f")
        #expect(text(include).hasPrefix("auth include common-auth\nauth       required   pam_watchword.so"))
        do {
            _ = try PAMEdit.apply(bytes("auth required pam_unix.so\n"), placement: .afterCommonAuth, options: ["state_dir=/x"], file: "/etc/pam.d/sudo")
            Issue.record("no error")
        } catch {
            #expect(error.message.contains("/etc/pam.d/sudo has no '@include common-auth' line"))
            #expect(error.message.contains("'auth       required   pam_watchword.so state_dir=/x'"))
        }
    }

    @Test("Module lines the admin wrote are found and never taken out")
    func handWritten() throws {
        let file = "@include common-auth\nauth required /opt/pam_watchword.so debug\n"
        #expect(PAMEdit.handWrittenModuleLines(bytes(file), file: "f").map(\.number) == [2])
        #expect(PAMEdit.revert(bytes(file)) == bytes(file))
        let ours = try PAMEdit.apply(bytes("@include common-auth\n"), placement: .afterCommonAuth, options: [], file: "f")
        #expect(PAMEdit.handWrittenModuleLines(ours, file: "f").isEmpty)
    }
}
