import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import CVersion
import WatchwordCore
import WatchwordCrypto
import WatchwordOTP

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
            Enroll.self, List.self, Show.self, Remove.self, Unlock.self, RecoveryCodesCommand.self, SMSTest.self, Enable.self, Disable.self, DoctorCommand.self,
            Import.self, Export.self, Log.self, Status.self, StoreCommand.self,
        ]
    )
}

/// From the top-level VERSION file (Sources/CVersion).
let watchwordVersion = String(cString: watchword_version()).split(whereSeparator: \.isWhitespace).first.map(String.init) ?? "unknown"

extension Watchword {
    /// Runs the command; our own errors print as `watchword: MESSAGE` (exit 1), argument
    /// errors with ArgumentParser's usage text.
    static func main() {
        do {
            var command = try parseAsRoot()
            do {
                try command.run()
            } catch {
                if let audited = command as? any AuditedCommand { auditAdminAction(audited, error: error) }
                throw error
            }
            if let audited = command as? any AuditedCommand { auditAdminAction(audited, error: nil) }
        } catch let error as CLIError {
            fail(error.description, status: error.status)
        } catch let error as StoreError {
            fail(error.description)
        } catch let error as ConfigError {
            fail(error.description)
        } catch let error as NoStateDirectory {
            fail(error.description)
        } catch let error as OTPError {
            fail(error.description)
        } catch let error as CryptoError {
            fail("random number generator failed: \(error)")
        } catch {
            exit(withError: error)
        }
    }

    static func fail(_ message: String, status: Int32 = 1) -> Never {
        writeStandardError("watchword: \(message)\n")
        Glibc.exit(status)
    }
}
