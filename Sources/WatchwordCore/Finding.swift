/// One line of `watchword doctor`. In Core so that each part that knows a subsystem can
/// check it (WatchwordSetup the PAM stacks and sshd, WatchwordPostgres the shared database).
public struct Finding: Sendable, Equatable {
    public enum Status: String, Sendable, Comparable {
        case ok = "OK", warn = "WARN", fail = "FAIL"
        public static func < (a: Status, b: Status) -> Bool {
            let order: [Status] = [.ok, .warn, .fail]
            return order.firstIndex(of: a)! < order.firstIndex(of: b)!
        }
    }
    public let status: Status
    /// A stable name for scripts: `install.helper`, `pam.sshd`, `sshd.bypass`, ...
    public let check: String
    public let detail: String

    public init(_ status: Status, _ check: String, _ detail: String) {
        self.status = status
        self.check = check
        self.detail = detail
    }
}
