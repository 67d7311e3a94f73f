import WatchwordCore

/// `doctor`'s check for two installs: the CLI or the helper that install.sh used to put
/// under /usr/local, still there beside (or instead of) the Debian package's. Nothing runs
/// the older helper unless a module line names it with `helper=`, but `watchword` typed at
/// a root shell finds /usr/local/sbin first on Debian's PATH: an older CLI would be what
/// the admin runs.
extension Doctor {
    static func olderInstall(_ root: SystemRoot, rules: [PAMRule]) -> [Finding] {
        let older = [InstalledLayout.olderCLI, InstalledLayout.olderHelper].filter { root.status($0) != nil }
        guard !older.isEmpty else { return [] }
        let shown = older.map(root.display).joined(separator: " and ")
        let named = rules.contains { $0.arguments.contains("helper=" + InstalledLayout.olderHelper) }
        let packaged = root.status(InstalledLayout.cli) != nil || root.status(InstalledLayout.helper) != nil
        let remove = "remove it (rm -f /usr/local/sbin/watchword; rm -rf /usr/local/libexec/watchword /usr/local/share/watchword)"
        var detail: String
        if packaged {
            detail = "two installs: an older \(shown) (install.sh before the Debian package) beside the package's "
                + "\(root.display(InstalledLayout.cli)) and \(root.display(InstalledLayout.helper)); "
            detail += named
                ? "a module line names the older helper with helper=, so logins run it, not the package's; "
                : "the module runs the package's helper, but `watchword` at a root shell may find the older CLI first on PATH; "
            detail += remove + (named ? " after taking helper= out of the PAM line" : "")
        } else {
            detail = "an older install (\(shown), from install.sh) and no Debian package: the module's default helper is "
                + "\(root.display(InstalledLayout.helper)); "
                + (named ? "a module line names the older helper with helper=; " : "")
                + "install the package (install/install.sh), then \(remove)"
        }
        return [Finding(.warn, "install.older", detail)]
    }
}
