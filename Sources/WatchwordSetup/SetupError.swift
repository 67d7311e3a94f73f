/// Why `enable`, `disable` or `doctor` could not do what was asked; the message says what to
/// do about it.
public struct SetupError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The services watchword knows how to set up.
public enum Service: String, Sendable, CaseIterable {
    case sshd, sudo

    /// The PAM service file, as seen inside the root.
    public var pamFile: String { "/etc/pam.d/" + rawValue }
}

/// Fixed places in an installed system (see DESIGN.md, "Installed layout").
public enum InstalledLayout {
    /// Where the Debian package installs the CLI and the helper (the module's default).
    public static let cli = "/usr/sbin/watchword"
    public static let helper = "/usr/libexec/watchword/watchword-helper"
    /// The package's helper is static; it hands SMS, fleet, exempt_group and enrollment
    /// logins to this one beside it.
    public static let dynamicHelper = "/usr/libexec/watchword/watchword-helper-dynamic"
    /// Where install.sh put them before the package: `doctor` reports them when they are
    /// still there (two installs), and nothing runs them unless a `helper=` names one.
    public static let olderCLI = "/usr/local/sbin/watchword"
    public static let olderHelper = "/usr/local/libexec/watchword/watchword-helper"
    public static let moduleName = "pam_watchword.so"
    public static let pamDirectory = "/etc/pam.d"
    public static let sshdConfig = "/etc/ssh/sshd_config"
    public static let sshdDropIn = "/etc/ssh/sshd_config.d/watchword.conf"
    public static let backups = "/var/backups/watchword"

    /// Whether SMS delivery is built into this version (it is: WatchwordSMS); when it is
    /// not, `doctor` warns when a config names a provider.
    public static let smsDeliveryBuilt = true
}
