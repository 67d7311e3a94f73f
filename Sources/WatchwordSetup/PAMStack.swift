/// One service's stack of one type (`auth`) as libpam builds it: every `@include`,
/// `include` and `substack` followed, in order, each entry with its substack depth.
public struct PAMStack: Sendable {
    public struct Entry: Sendable {
        public enum Kind: Sendable {
            case module(PAMRule)
            /// The head of a `substack` line; its entries follow one level deeper.
            case substack(String)
            /// A line libpam keeps but makes fail (broken line, missing include).
            case mustFail(String)
        }
        public let kind: Kind
        public let line: PAMLine
        public let level: Int
        /// The `@include`/`include`/`substack` lines that led here, outermost first.
        public let via: [PAMLine]

        public var rule: PAMRule? {
            if case .module(let rule) = kind { return rule }
            return nil
        }

        /// `/etc/pam.d/common-auth:17 'auth [success=1 default=ignore] pam_unix.so nullok'`,
        /// with the include chain.
        public var described: String {
            var text = "\(line.location) '\(line.text)'"
            if let first = via.first { text += " (included from \(first.location))" }
            return text
        }
    }

    public let service: String
    /// The file the stack starts from (`/etc/pam.d/sshd`, or `other` when it is missing).
    public let file: String
    public let entries: [Entry]
    /// What a reader should know: a missing include, a fallback to `other`.
    public let notes: [String]

    /// libpam's limit on nested includes.
    static let maxDepth = 16

    /// Loads the `type` stack of `service` from `/etc/pam.d` (then `/usr/lib/pam.d`, then
    /// the `other` service, as libpam does).
    ///
    /// - Parameters:
    ///   - read: a file's text by inner path, nil when missing.
    ///   - moduleExists: whether a module (as written) can be found; nil when unknown. A
    ///     `-type` line whose module is missing is left out, as libpam does.
    public static func load(
        service: String, type: String = "auth", read: (String) throws(SetupError) -> String?,
        moduleExists: (String) -> Bool? = { _ in nil }
    ) throws(SetupError) -> PAMStack {
        var notes: [String] = []
        var file = "/etc/pam.d/" + service
        var text = try read(file)
        if text == nil {
            file = "/usr/lib/pam.d/" + service
            text = try read(file)
        }
        if text == nil {
            file = "/etc/pam.d/other"
            text = try read(file)
            notes.append("/etc/pam.d/\(service) does not exist; libpam uses /etc/pam.d/other")
        }
        var entries: [Entry] = []
        if let text {
            try expand(
                PAMConfig.parse(text, file: file), type: type, level: 0, depth: 0, via: [], read: read,
                moduleExists: moduleExists, into: &entries, notes: &notes)
        }
        return PAMStack(service: service, file: file, entries: entries, notes: notes)
    }

    private static func expand(
        _ lines: [PAMLine], type: String, level: Int, depth: Int, via: [PAMLine],
        read: (String) throws(SetupError) -> String?, moduleExists: (String) -> Bool?,
        into entries: inout [Entry], notes: inout [String]
    ) throws(SetupError) {
        for line in lines {
            switch line.kind {
            case .invalid(let reason):
                // libpam files a line with a bad type under the most sensitive one, auth.
                if type == "auth" || !reason.hasPrefix("unknown module type") {
                    entries.append(Entry(kind: .mustFail(reason), line: line, level: level, via: via))
                }
            case .include(let name):
                try include(
                    name, from: line, type: type, level: level, depth: depth, via: via, read: read,
                    moduleExists: moduleExists, into: &entries, notes: &notes)
            case .rule(let rule):
                guard rule.type == type else { continue }
                switch rule.control {
                case .include:
                    try include(
                        rule.module, from: line, type: type, level: level, depth: depth, via: via, read: read,
                        moduleExists: moduleExists, into: &entries, notes: &notes)
                case .substack:
                    entries.append(Entry(kind: .substack(rule.module), line: line, level: level, via: via))
                    try include(
                        rule.module, from: line, type: type, level: level + 1, depth: depth, via: via, read: read,
                        moduleExists: moduleExists, into: &entries, notes: &notes)
                case .actions:
                    if rule.silent && moduleExists(rule.module) == false {
                        notes.append("\(line.location): \(rule.module) is missing; the '-' makes libpam skip the line")
                        continue
                    }
                    entries.append(Entry(kind: .module(rule), line: line, level: level, via: via))
                }
            }
        }
    }

    private static func include(
        _ name: String, from line: PAMLine, type: String, level: Int, depth: Int, via: [PAMLine],
        read: (String) throws(SetupError) -> String?, moduleExists: (String) -> Bool?,
        into entries: inout [Entry], notes: inout [String]
    ) throws(SetupError) {
        guard depth + 1 < maxDepth, !via.contains(where: { $0.file == line.file && $0.number == line.number }) else {
            entries.append(Entry(kind: .mustFail("includes nested too deeply"), line: line, level: level, via: via))
            return
        }
        var path = name.hasPrefix("/") ? name : "/etc/pam.d/" + name
        var text = try read(path)
        if text == nil && !name.hasPrefix("/") {
            path = "/usr/lib/pam.d/" + name
            text = try read(path)
        }
        guard let text else {
            notes.append("\(line.location): included file \(name) does not exist; libpam fails the stack there")
            entries.append(Entry(kind: .mustFail("missing include \(name)"), line: line, level: level, via: via))
            return
        }
        try expand(
            PAMConfig.parse(text, file: path), type: type, level: level, depth: depth + 1, via: via + [line],
            read: read, moduleExists: moduleExists, into: &entries, notes: &notes)
    }
}

/// Whether a stack enforces a module: what happens when that module fails.
public struct StackVerdict: Sendable {
    public enum Kind: Sendable, Equatable {
        /// The module is not in the stack.
        case absent
        /// Every way through the stack either runs the module or fails: a wrong code denies.
        case enforced
        /// Some way through the stack succeeds although the module failed or never ran.
        case bypassed
        /// No way through the stack reaches the module (every login fails before it).
        case unreachable
    }
    public let kind: Kind
    /// The module's entries.
    public let targets: [PAMStack.Entry]
    /// The entry that lets a login through without the module (for `bypassed`).
    public let culprit: PAMStack.Entry?
    /// One sentence: why.
    public let explanation: String
}

extension PAMStack {
    /// Runs libpam's dispatch rules (pam_dispatch.c) over every combination of module
    /// results, with the target modules always failing, and reports whether any combination
    /// still ends in PAM_SUCCESS — and which line makes it so.
    public func verdict(for isTarget: (PAMRule) -> Bool, moduleExists: (String) -> Bool? = { _ in nil }) -> StackVerdict {
        let targetIndices = entries.indices.filter { entries[$0].rule.map(isTarget) ?? false }
        let targets = targetIndices.map { entries[$0] }
        guard !targetIndices.isEmpty else {
            return StackVerdict(kind: .absent, targets: [], culprit: nil, explanation: "\(file) does not name the module")
        }
        let targetSet = Set(targetIndices)
        let maxLevel = entries.map(\.level).max() ?? 0

        enum Impression: Hashable { case undefined, positiveSuccess, positiveFailure, negative }
        struct State: Hashable {
            var position: Int
            var impression: Impression
            var saved: [Impression]
            var reachedTarget: Bool
            var culprit: Int?
        }

        func outcomes(_ index: Int) -> [String] {
            let entry = entries[index]
            switch entry.kind {
            case .substack: return []
            case .mustFail: return ["perm_denied"]
            case .module(let rule):
                if targetSet.contains(index) { return ["auth_err"] }
                if moduleExists(rule.module) == false { return ["module_unknown"] }
                switch rule.moduleName {
                case "pam_deny.so": return ["auth_err"]
                case "pam_permit.so": return ["success"]
                default: return Array(Set(["success", "auth_err", "ignore"] + rule.control.namedValues)).sorted()
                }
            }
        }
        /// The first index after the run of entries at `level` or deeper that follows `index`.
        func endOfLevel(after index: Int, level: Int) -> Int {
            var next = index + 1
            while next < entries.count && entries[next].level >= level { next += 1 }
            return next
        }
        func skipped(_ from: Int, _ to: Int) -> Bool {
            guard to > from + 1 else { return false }
            return targetIndices.contains { $0 > from && $0 < to }
        }

        var seen: Set<State> = []
        var queue = [State(position: 0, impression: .undefined, saved: Array(repeating: .undefined, count: maxLevel + 1), reachedTarget: false, culprit: nil)]
        var reached = false
        var bypass: State?
        while !queue.isEmpty && bypass == nil {
            var state = queue.removeFirst()
            guard seen.insert(state).inserted else { continue }
            guard state.position < entries.count else {
                if state.impression == .positiveSuccess { bypass = state }
                continue
            }
            let index = state.position
            let entry = entries[index]
            let previousLevel = index == 0 ? 0 : entries[index - 1].level
            if entry.level > previousLevel {
                for level in (previousLevel + 1)...entry.level { state.saved[level] = state.impression }
            }
            if case .substack = entry.kind {
                state.position += 1
                queue.append(state)
                continue
            }
            let isTarget = targetSet.contains(index)
            if isTarget {
                reached = true
                state.reachedTarget = true
            }
            let control: PAMControl
            switch entry.kind {
            case .module(let rule): control = rule.control
            default: control = .actions(["default": .bad], written: "")
            }
            for value in outcomes(index) {
                var next = state
                let action = control.action(for: value)
                var position = index + 1
                switch action {
                case .ok, .done:
                    if next.impression == .undefined || next.impression == .positiveSuccess {
                        if value != "ignore" { next.impression = value == "success" ? .positiveSuccess : .positiveFailure }
                    }
                    if action == .done && (next.impression == .positiveSuccess || next.impression == .positiveFailure) {
                        position = endOfLevel(after: index, level: entry.level)
                        if next.culprit == nil && skipped(index, position) { next.culprit = index }
                    }
                case .bad, .die:
                    next.impression = .negative
                    if action == .die {
                        position = endOfLevel(after: index, level: entry.level)
                    }
                case .ignore:
                    break
                case .reset:
                    if next.impression == .negative && next.reachedTarget && next.culprit == nil { next.culprit = index }
                    next.impression = next.saved[entry.level]
                case .jump(let n):
                    var h = index
                    var left = n
                    while h + 1 < entries.count && entries[h + 1].level >= entry.level && left > 0 {
                        repeat { h += 1 } while h + 1 < entries.count && entries[h + 1].level > entry.level
                        left -= 1
                    }
                    if left > 0 { next.impression = .negative }  // "bad jump in stack"
                    position = h + 1
                    if next.culprit == nil && skipped(index, position) { next.culprit = index }
                }
                if isTarget && next.impression != .negative && next.culprit == nil { next.culprit = index }
                next.position = position
                queue.append(next)
            }
        }

        let main = targets[0]
        if let bypass {
            let culprit = bypass.culprit.map { entries[$0] }
            let explanation: String
            if let index = bypass.culprit, targetSet.contains(index) {
                explanation = "\(entries[index].described): control '\(entries[index].rule?.control.written ?? "")' lets the stack succeed when the code is wrong; use 'required'"
            } else if let culprit {
                explanation = "\(culprit.described) can end or jump past the stack before \(main.line.location) is reached: a login succeeds without a code"
            } else {
                explanation = "the stack can succeed without \(main.line.location)"
            }
            return StackVerdict(kind: .bypassed, targets: targets, culprit: culprit, explanation: explanation)
        }
        if !reached {
            return StackVerdict(
                kind: .unreachable, targets: targets, culprit: nil,
                explanation: "\(main.line.location) is never reached: every login fails before it")
        }
        return StackVerdict(
            kind: .enforced, targets: targets, culprit: nil,
            explanation: "\(main.line.location) '\(main.line.text)' runs on every successful login")
    }
}
