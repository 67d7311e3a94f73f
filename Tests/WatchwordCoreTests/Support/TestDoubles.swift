import Testing
import WatchwordCore
import WatchwordCrypto

/// An in-memory PAM conversation: answers prompts from a script and records everything the
/// login flow says, in order. An exhausted script answers `.failed` (the user hung up).
struct ScriptedConversation: Conversation {
    enum Event: Equatable, CustomStringConvertible {
        case prompt(String)
        case info(String)
        case error(String)
        case log(LogPriority, String)

        var description: String {
            switch self {
            case .prompt(let t): "prompt(\(t))"
            case .info(let t): "info(\(t))"
            case .error(let t): "error(\(t))"
            case .log(let p, let t): "log(\(p.rawValue): \(t))"
            }
        }
    }

    var script: [Answer]
    /// Runs when a prompt is shown, before it is answered (to race the login with an admin).
    var onPrompt: (() -> Void)?
    private(set) var events: [Event] = []

    init(_ script: [Answer] = []) { self.script = script }

    /// Convenience: each string is answered as its UTF-8 bytes.
    init(answers: [String]) { self.init(answers.map { .text(Array($0.utf8)) }) }

    mutating func prompt(_ text: String) -> Answer {
        events.append(.prompt(text))
        onPrompt?()
        return script.isEmpty ? .failed : script.removeFirst()
    }
    mutating func info(_ text: String) { events.append(.info(text)) }
    mutating func error(_ text: String) { events.append(.error(text)) }
    mutating func log(_ priority: LogPriority, _ text: String) { events.append(.log(priority, text)) }

    var prompts: [String] { events.compactMap { if case .prompt(let t) = $0 { t } else { nil } } }
    var infos: [String] { events.compactMap { if case .info(let t) = $0 { t } else { nil } } }
    var errors: [String] { events.compactMap { if case .error(let t) = $0 { t } else { nil } } }
    var logs: [(LogPriority, String)] { events.compactMap { if case .log(let p, let t) = $0 { (p, t) } else { nil } } }
    var logLines: [String] { logs.map(\.1) }
    /// Everything that leaves the helper other than the prompts: log, info and error lines.
    var outputLines: [String] { events.compactMap { if case .prompt = $0 { nil } else { $0.description } } }
}

/// A clock that stands still until told to move.
final class TestClock: @unchecked Sendable {
    private(set) var time: Int64
    init(_ time: Int64) { self.time = time }
    func advance(by seconds: Int64) { time += seconds }
    func set(_ time: Int64) { self.time = time }
    var now: () -> Int64 { { [self] in self.time } }
}

/// A store that only counts calls, to prove the login flow never reached it.
final class SpyStore: StateStore, @unchecked Sendable {
    private(set) var calls: [String] = []
    func load(_ user: UserName) throws(StoreError) -> UserRecord? {
        calls.append("load \(user)")
        return nil
    }
    func update<R>(_ user: UserName, _ body: (inout UserRecord?) throws -> R) throws -> R {
        calls.append("update \(user)")
        var none: UserRecord? = nil
        return try body(&none)
    }
    func users() throws(StoreError) -> [UserName] {
        calls.append("users")
        return []
    }
    func recoveryKey(create: Bool) throws(StoreError) -> SymmetricKey? {
        calls.append("recoveryKey")
        return nil
    }
    func updateSMSGlobal<R>(_ body: (inout SMSGlobalState) throws -> R) throws -> R {
        calls.append("updateSMSGlobal")
        var state = SMSGlobalState()
        return try body(&state)
    }
    func update<R>(
        _ user: UserName, withSMSGlobal body: (inout UserRecord?, inout SMSGlobalState) throws -> R
    ) throws -> R {
        calls.append("update \(user) withSMSGlobal")
        var none: UserRecord? = nil
        var state = SMSGlobalState()
        return try body(&none, &state)
    }
    func appendAudit(_ entry: AuditEntry) throws {
        calls.append("appendAudit")
    }
    func readAudit() throws -> (entries: [AuditEntry], corrupt: Int) {
        calls.append("readAudit")
        return ([], 0)
    }
}

/// A store that keeps the letter of `StateStore.update`'s contract as hard as it may: every
/// body runs twice, first on a copy whose result and changes are thrown away (as the
/// database store's compare-and-swap does when another login changed the record), then for
/// real on the wrapped store. A caller whose body has side effects shows them twice here.
final class RerunningStore: StateStore, @unchecked Sendable {
    let inner: any StateStore
    /// How many times a body was run.
    private(set) var runs = 0
    init(_ inner: any StateStore) { self.inner = inner }

    func load(_ user: UserName) throws(StoreError) -> UserRecord? { try inner.load(user) }
    func update<R>(_ user: UserName, _ body: (inout UserRecord?) throws -> R) throws -> R {
        var copy = try inner.load(user)
        runs += 1
        _ = try body(&copy)
        return try inner.update(user) { (record: inout UserRecord?) throws -> R in
            runs += 1
            return try body(&record)
        }
    }
    func update<R>(
        _ user: UserName, withSMSGlobal body: (inout UserRecord?, inout SMSGlobalState) throws -> R
    ) throws -> R {
        var copy = try inner.load(user)
        var global = try inner.updateSMSGlobal { $0 }
        runs += 1
        _ = try body(&copy, &global)
        return try inner.update(user, withSMSGlobal: { (record: inout UserRecord?, global: inout SMSGlobalState) throws -> R in
            runs += 1
            return try body(&record, &global)
        })
    }
    func users() throws(StoreError) -> [UserName] { try inner.users() }
    func recoveryKey(create: Bool) throws(StoreError) -> SymmetricKey? { try inner.recoveryKey(create: create) }
    func updateSMSGlobal<R>(_ body: (inout SMSGlobalState) throws -> R) throws -> R {
        var copy = try inner.updateSMSGlobal { $0 }
        _ = try body(&copy)
        return try inner.updateSMSGlobal(body)
    }
    func appendAudit(_ entry: AuditEntry) throws { try inner.appendAudit(entry) }
    func readAudit() throws -> (entries: [AuditEntry], corrupt: Int) { try inner.readAudit() }
}
