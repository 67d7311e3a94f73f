import ArgumentParser
import WatchwordCore

/// One user's record as scripts see it; never a secret or a hash.
func describe(_ record: UserRecord, now: Int64) -> JSON {
    var pairs: [(String, JSON)] = [("user", .string(record.user.value))]
    if let otp = record.otp {
        pairs.append(("method", .string(otp.kind.rawValue)))
        pairs.append(("algorithm", .string(otp.algorithm.rawValue)))
        pairs.append(("digits", .int(Int64(otp.digits))))
        if otp.kind == .totp {
            pairs.append(("period", .int(Int64(otp.period))))
        } else {
            pairs.append(("counter", .int(Int64(clamping: otp.counter))))
        }
        pairs.append(("issuer", .string(otp.issuer)))
    } else {
        pairs.append(("method", record.phone == nil ? .null : .string("sms")))
    }
    pairs.append(("phone", record.phone.map { .string($0.masked) } ?? .null))
    if record.phone != nil {
        pairs.append(("sms_sent_last_hour", .int(Int64(record.sms.sent.count(at: now)))))
    }
    pairs.append(("recovery_codes_left", .int(Int64(record.recoveryCodeHashes.count))))
    if let pending = record.pending {
        pairs.append(("pending", .string(pending.otp.kind.rawValue)))
        pairs.append(("pending_expires", .int(pending.expires)))
        pairs.append(("pending_expired", .bool(!pending.isAlive(at: now))))
    } else {
        pairs.append(("pending", .null))
    }
    pairs.append(("failures", .int(Int64(record.failures))))
    pairs.append(("locked", .bool(record.lockoutRemaining(at: now) != nil)))
    pairs.append(("locked_until", record.lockedUntil > 0 ? .int(record.lockedUntil) : .null))
    pairs.append(("last_success", record.lastSuccess > 0 ? .int(record.lastSuccess) : .null))
    pairs.append(("created", .int(record.created)))
    return .object(pairs)
}

/// `totp`, `hotp`, `sms`, `totp+sms`, `hotp+sms`, `totp (pending)`, or `-`.
func methodText(_ record: UserRecord) -> String {
    let methods = [record.otp?.kind.rawValue, record.phone == nil ? nil : "sms"].compactMap { $0 }
    if methods.isEmpty, let pending = record.pending {
        return "\(pending.otp.kind.rawValue) (pending\(pending.isAlive(at: unixTimeNow()) ? "" : ", expired"))"
    }
    return methods.isEmpty ? "-" : methods.joined(separator: "+")
}

/// `watchword list`: every enrolled user, one line each.
struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List enrolled users.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let store: any StateStore
        do {
            store = try global.open(create: false).1
        } catch is NoStateDirectory {
            print(output.json ? "[]" : "No users enrolled.")
            return
        }
        let now = unixTimeNow()
        let records = try store.allRecords()
        if output.json {
            print(JSON.array(records.map { describe($0, now: now) }).rendered)
            return
        }
        guard !records.isEmpty else {
            print("No users enrolled.")
            return
        }
        var rows = [["USER", "METHOD", "PHONE", "RECOVERY", "FAILURES", "LOCKED", "LAST LOGIN"]]
        for record in records {
            let locked = record.lockoutRemaining(at: now).map { "\($0) s" } ?? "no"
            rows.append([
                record.user.value, methodText(record), record.phone?.masked ?? "-",
                String(record.recoveryCodeHashes.count),
                String(record.failures), locked, formatTime(record.lastSuccess),
            ])
        }
        printTable(rows)
    }
}

/// `watchword show USER`: one user's details, never the secret.
struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a user's enrollment (never the secret).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var user: UserArgument
    @OptionGroup var output: OutputOptions

    func run() throws {
        let (_, store) = try global.open(create: false)
        let record = try requireRecord(store, user.user)
        let now = unixTimeNow()
        if output.json {
            print(describe(record, now: now).rendered)
            return
        }
        var rows: [[String]] = [["user", record.user.value]]
        if let otp = record.otp {
            rows.append(["method", otp.kind.rawValue])
            rows.append(["algorithm", otp.algorithm.rawValue])
            rows.append(["digits", String(otp.digits)])
            if otp.kind == .totp { rows.append(["period", "\(otp.period) s"]) } else {
                rows.append(["counter", String(otp.counter)])
            }
            rows.append(["issuer", otp.issuer])
        }
        if let phone = record.phone {
            if record.otp == nil { rows.append(["method", "sms"]) }
            rows.append(["phone", phone.masked])
            rows.append(["texts last hour", String(record.sms.sent.count(at: now))])
        }
        if let pending = record.pending {
            rows.append([
                "pending token",
                "\(pending.otp.kind.rawValue), shown at the next login; "
                    + (pending.isAlive(at: now) ? "expires \(formatTime(pending.expires))" : "expired \(formatTime(pending.expires))"),
            ])
        }
        rows.append(["recovery codes left", String(record.recoveryCodeHashes.count)])
        rows.append(["failures", String(record.failures)])
        rows.append([
            "locked", record.lockoutRemaining(at: now).map { "yes, \($0) s more (until \(formatTime(record.lockedUntil)))" } ?? "no",
        ])
        rows.append(["last login", formatTime(record.lastSuccess)])
        rows.append(["enrolled", formatTime(record.created)])
        for row in rows { print(row[0] + ":" + String(repeating: " ", count: 21 - row[0].count) + row[1]) }
    }
}

/// `watchword remove USER`: forget a user's token and codes.
struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove a user's enrollment.",
        discussion: "Afterwards the user's logins get PAM_AUTH_ERR (or PAM_IGNORE where the module has nullok).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var user: UserArgument

    func run() throws {
        let (_, store) = try global.open(create: false)
        let name = user.user
        _ = try requireRecord(store, name)
        try store.update(name) { (record: inout UserRecord?) throws in
            guard record != nil else { throw CLIError("\(name) is not enrolled") }
            record = nil
        }
        print("Removed \(name).")
    }
}

/// `watchword unlock USER`: clear failures and any lockout.
struct Unlock: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Clear a user's failure count and lockout.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var user: UserArgument

    func run() throws {
        let (_, store) = try global.open(create: false)
        let name = user.user
        let before = try updateEnrolled(store, name) { record in
            let failures = record.failures
            record.failures = 0
            record.lockedUntil = 0
            return failures
        }
        print("Unlocked \(name) (had \(before) failure\(before == 1 ? "" : "s")).")
    }
}

/// `watchword recovery-codes USER`: replace all recovery codes with fresh ones.
struct RecoveryCodesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recovery-codes",
        abstract: "Make fresh recovery codes for a user (the old ones stop working).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var user: UserArgument
    @OptionGroup var output: OutputOptions

    func run() throws {
        let (_, store) = try global.open(create: false)
        let name = user.user
        _ = try requireRecord(store, name)  // before the key is made, so a bad name changes nothing
        guard let key = try store.recoveryKey(create: true) else { throw CLIError("could not make the recovery key") }
        let codes = try RecoveryCodes.generate()
        try updateEnrolled(store, name) { record in
            record.recoveryCodeHashes = codes.map { RecoveryCodes.hash($0, user: name, key: key) }
        }
        if output.json {
            print(JSON.object([("user", .string(name.value)), ("recovery_codes", .array(codes.map { .string($0) }))]).rendered)
        } else {
            print("New recovery codes for \(name) (each works once; the old ones no longer work):")
            for code in codes { print("  \(code)") }
        }
    }
}

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    var widths = first.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        let line = row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
        }.joined(separator: "  ")
        print(line)
    }
}
