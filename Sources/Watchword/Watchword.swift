import ArgumentParser

/// The admin command: enroll users and look after their second factor.
@main
struct Watchword: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watchword",
        abstract: "Manage watchword, the second factor for SSH logins and sudo.",
        discussion: """
            Users are enrolled with a TOTP or HOTP token (an authenticator app) and get \
            single-use recovery codes. pam_watchword.so then asks for a code at every login \
            of a service whose PAM stack names it. State lives in a root-only directory \
            (default /var/lib/watchword); settings in /etc/watchword/config.toml.

            Every command must run as root.
            """,
        version: watchwordVersion,
        subcommands: [
            Enroll.self, List.self, Show.self, Remove.self, Unlock.self, RecoveryCodesCommand.self,
        ]
    )
}

let watchwordVersion = "0.1.0"
