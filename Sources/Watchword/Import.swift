import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore
import WatchwordImport
import WatchwordOTP

/// `watchword import`: take users' tokens over from another PAM module, so they keep
/// using the same authenticator app without scanning anything again.
struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import users' tokens from google-authenticator or pam_oath.",
        discussion: """
            Users keep the token they have: the same app entry or key fob goes on working, \
            nothing needs to be scanned again. Every source is read and checked first; if any \
            line cannot be imported, each such line is reported as FILE:LINE and nothing is \
            changed. Then each user's record is written atomically, one user after another.
            """,
        subcommands: [ImportGoogleAuthenticator.self, ImportOath.self])
}

/// Options both import formats take.
struct ImportOptions: ParsableArguments {
    @Flag(help: "Check the files and show what would be imported; change nothing.")
    var dryRun = false
    @Flag(help: "Replace the enrollment (token and recovery codes) of users who are already enrolled.")
    var force = false
    @Option(help: ArgumentHelp("The name apps show for the account, used by export (default: this host's name).", valueName: "name"))
    var issuer: String?

    func validate() throws {
        if let issuer {
            guard !issuer.isEmpty, issuer.utf8.count <= 128,
                !issuer.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == ":" })
            else { throw ValidationError("--issuer must be 1 to 128 characters without ':' or control characters") }
        }
    }
}

/// `watchword import google-authenticator FILE...`
struct ImportGoogleAuthenticator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "google-authenticator",
        abstract: "Import ~/.google_authenticator files (pam_google_authenticator).",
        discussion: """
            Each file gives one user: its owner, or the user named with --user. Kept: the \
            secret, TOTP or HOTP (TOTP_AUTH, HOTP_COUNTER: the next counter), the time step \
            (STEP_SIZE), the last used time step (DISALLOW_REUSE, so a code just used cannot be \
            used again), and the unused scratch codes, which become the user's recovery codes. \
            WINDOW_SIZE and RATE_LIMIT are checked but not carried over: watchword's \
            policy.window and failure lockout apply. A file owned by root needs --user (a copy \
            belongs to whoever copied it), unless it is root's own ~/.google_authenticator.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("A google-authenticator secret file.", valueName: "file"))
    var files: [String]
    @Option(help: ArgumentHelp("The user the file belongs to (default: the file's owner).", valueName: "user"))
    var user: String?
    @OptionGroup var options: ImportOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("name at least one file") }
        if let user {
            do {
                _ = try UserName(user)
            } catch {
                throw ValidationError("invalid user name: \(error)")
            }
            guard files.count == 1 else { throw ValidationError("--user names the owner of a single file") }
        }
    }

    func run() throws {
        let importer = try Importer(global: global, options: options, json: output.json)
        var problems = ImportProblems()
        var candidates: [ImportCandidate] = []
        for path in files {
            let file: ForeignFile
            do {
                file = try ForeignFile.read(path, limit: 64 * 1024)
            } catch {
                problems.error(path, error.reason)
                continue
            }
            let parsed = GoogleAuthenticatorFile.parse(file, problems: &problems)
            guard let name = owner(of: file, problems: &problems), let parsed else { continue }
            if file.readableByOthers {
                problems.warn(path, "mode \(octalMode(file.mode)) lets others read it: the secret may not be secret any more; consider enrolling \(name) afresh")
            }
            let enrollment = OTPEnrollment(
                kind: parsed.kind, secret: parsed.secret, algorithm: .sha1, digits: 6, period: parsed.period,
                counter: parsed.counter, lastStep: parsed.lastStep, issuer: importer.issuer)
            candidates.append(ImportCandidate(user: name, path: path, line: nil, enrollment: enrollment, recoveryCodes: parsed.scratchCodes))
        }
        try importer.run(candidates, problems: problems)
    }

    /// The user the file is for: --user, else its owner (root only for root's own file).
    private func owner(of file: ForeignFile, problems: inout ImportProblems) -> UserName? {
        let ownerName = getpwuid(file.ownerUID).map { String(cString: $0.pointee.pw_name) }
        if let user {
            let name = try! UserName(user)
            if file.ownerUID != 0, let ownerName, ownerName != user {
                problems.warn(file.path, "owned by \(ownerName) but imported for \(user) (--user)")
            }
            return name
        }
        guard let ownerName else {
            problems.error(file.path, "owned by uid \(file.ownerUID), which has no user name; name the user with --user")
            return nil
        }
        if file.ownerUID == 0 && !isRootsOwnFile(file.path) {
            problems.error(
                file.path, "owned by root, so it does not say whose it is (a copy belongs to whoever copied it); name the user with --user")
            return nil
        }
        do {
            return try UserName(ownerName)
        } catch {
            problems.error(file.path, "owner \(quoted(Substring(ownerName))) is not a user name watchword accepts: \(error)")
            return nil
        }
    }

    /// Whether `path` is root's own `~/.google_authenticator`.
    private func isRootsOwnFile(_ path: String) -> Bool {
        guard path.hasSuffix("/.google_authenticator") || path == ".google_authenticator",
            let home = getpwuid(0).map({ String(cString: $0.pointee.pw_dir) })
        else { return false }
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        func resolved(_ p: String) -> String? {
            guard let r = realpath(p.isEmpty ? "/" : p, nil) else { return nil }
            defer { free(r) }
            return String(cString: r)
        }
        guard let a = resolved(directory), let b = resolved(home) else { return false }
        return a == b
    }
}

/// `watchword import oath FILE`
struct ImportOath: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oath",
        abstract: "Import pam_oath's users file (/etc/users.oath).",
        discussion: """
            Every token line is imported: HOTP, HOTP/E, HOTP/E/6|7|8 as HOTP tokens, going on \
            from the file's counter (the one after it once it has been used, as liboath records \
            it); HOTP/T30 and HOTP/T60 (optionally /6|7|8) as TOTP tokens with a 30 or 60 s \
            step, where the last code used stays refused. A PIN is not carried over (a \
            warning says so). Comment lines (#) and blank lines are skipped. pam_oath tokens \
            have no recovery codes; make some with 'watchword recovery-codes USER'.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("pam_oath's users file.", valueName: "file"))
    var file: String
    @OptionGroup var options: ImportOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let importer = try Importer(global: global, options: options, json: output.json)
        var problems = ImportProblems()
        var candidates: [ImportCandidate] = []
        do {
            let source = try ForeignFile.read(file)
            if source.readableByOthers {
                problems.warn(file, "mode \(octalMode(source.mode)) lets others read it: the secrets may not be secret any more")
            }
            for entry in OathUsersFile.parse(source, issuer: importer.issuer, now: unixTimeNow(), problems: &problems) {
                candidates.append(
                    ImportCandidate(user: entry.user, path: file, line: entry.line, enrollment: entry.enrollment, recoveryCodes: []))
            }
            if candidates.isEmpty && problems.errors.isEmpty {
                problems.error(file, "holds no token lines")
            }
        } catch {
            problems.error(file, error.reason)
        }
        try importer.run(candidates, problems: problems)
    }
}

/// A token read from a source, to become `user`'s enrollment.
struct ImportCandidate {
    let user: UserName
    /// Where it came from: the file and, for files of many users, the line.
    let path: String
    let line: Int?
    var source: String { line.map { "\(path):\($0)" } ?? path }
    let enrollment: OTPEnrollment
    /// In the clear, as the source holds them; stored hashed.
    let recoveryCodes: [String]
}

/// Checks every candidate, then writes them, reporting what it did.
///
/// Atomicity: nothing is written unless every source line could be imported and every
/// affected user's current state could be read. Each user's record is then written under
/// that user's lock, atomically (temp file, fsync, rename), so no record is ever
/// half-written. Several users are not one transaction: if a write fails (a full disk, an
/// I/O error), the users before it stay imported, complete and usable, that user and the
/// ones after keep their old state, and the report names both lists. Running the same
/// command again finishes the job, since the users already imported are skipped.
struct Importer {
    let global: GlobalOptions
    let options: ImportOptions
    let json: Bool
    let issuer: String
    /// The store as it is now; nil when there is no state directory yet.
    let store: (any StateStore)?

    init(global: GlobalOptions, options: ImportOptions, json: Bool) throws {
        self.global = global
        self.options = options
        self.json = json
        issuer = options.issuer ?? hostName()
        do {
            store = try global.open(create: false).1
        } catch is NoStateDirectory {
            store = nil
        }
    }

    enum Outcome {
        case imported(replacing: Bool)
        case skipped(String)
    }

    func run(_ candidates: [ImportCandidate], problems initial: ImportProblems) throws {
        var problems = initial
        var firstSource: [UserName: String] = [:]
        for candidate in candidates {
            if let earlier = firstSource[candidate.user] {
                problems.error(candidate.path, line: candidate.line, "\(candidate.user) is imported from \(earlier) too; watchword keeps one token per user")
            } else {
                firstSource[candidate.user] = candidate.source
            }
        }

        // Decide each user's fate from the state as it is.
        var plan: [(ImportCandidate, Outcome)] = []
        for candidate in candidates {
            do {
                let existing = try store?.load(candidate.user)
                if existing?.isEnrolled == true && !options.force {
                    plan.append((candidate, .skipped("already enrolled (--force replaces the enrollment)")))
                } else {
                    plan.append((candidate, .imported(replacing: existing?.isEnrolled == true)))
                }
            } catch {
                problems.error(candidate.path, line: candidate.line, "cannot read \(candidate.user)'s state: \(error)")
            }
        }
        for candidate in candidates where !systemHasUser(candidate.user) {
            problems.warn(candidate.path, line: candidate.line, "no system account named '\(candidate.user)' (yet)")
        }
        problems.sort()
        for warning in problems.warnings { writeStandardError("watchword: warning: \(warning.source): \(warning.message)\n") }

        guard problems.errors.isEmpty else {
            for error in problems.errors { writeStandardError("watchword: \(error.source): \(error.message)\n") }
            if json { print(report(done: [], problems: problems).rendered) }
            let n = problems.errors.count
            let problemsText = "\(n) problem\(n == 1 ? "" : "s")"
            if options.dryRun { throw CLIError("dry run: \(problemsText); the import would change nothing until \(n == 1 ? "it is" : "they are") fixed") }
            throw CLIError("nothing was imported: \(problemsText) (fix \(n == 1 ? "it" : "them") and run the command again)")
        }

        if options.dryRun {
            if json {
                print(report(done: plan, problems: problems).rendered)
            } else {
                for (candidate, outcome) in plan { print(describe(candidate, outcome, dryRun: true)) }
                let imported = plan.filter { if case .imported = $0.1 { true } else { false } }.count
                print("Dry run: would import \(imported) user\(imported == 1 ? "" : "s"), skip \(plan.count - imported); nothing was changed.")
            }
            return
        }

        // Write, one user at a time, each under its lock and atomically.
        let writable = try global.open(create: true).1
        guard let key = try writable.recoveryKey(create: true) else { throw CLIError("could not make the recovery key") }
        let now = unixTimeNow()
        var done: [(ImportCandidate, Outcome)] = []
        for (index, (candidate, planned)) in plan.enumerated() {
            guard case .imported = planned else {
                done.append((candidate, planned))
                continue
            }
            do {
                let outcome = try writable.update(candidate.user) { (record: inout UserRecord?) throws -> Outcome in
                    let enrolled = record?.isEnrolled == true
                    if enrolled && !options.force { return .skipped("enrolled meanwhile (--force replaces the enrollment)") }
                    var updated = record ?? UserRecord(user: candidate.user, created: now)
                    updated.otp = candidate.enrollment
                    updated.recoveryCodeHashes = candidate.recoveryCodes.map {
                        RecoveryCodes.hash($0, user: candidate.user, key: key)
                    }
                    updated.failures = 0
                    updated.lockedUntil = 0
                    record = updated
                    return .imported(replacing: enrolled)
                }
                done.append((candidate, outcome))
                if case .imported = outcome { importedUsersForAudit.append(candidate.user.value) }
            } catch {
                try reportFailure(at: index, of: plan, error: error, done: done, problems: problems)
            }
        }
        if json {
            print(report(done: done, problems: problems).rendered)
        } else {
            for (candidate, outcome) in done { print(describe(candidate, outcome, dryRun: false)) }
            let imported = done.filter { if case .imported = $0.1 { true } else { false } }.count
            print("Imported \(imported) user\(imported == 1 ? "" : "s"), skipped \(done.count - imported).")
        }
    }

    /// A write failed: say exactly who is imported and who is not, then stop.
    private func reportFailure(
        at index: Int, of plan: [(ImportCandidate, Outcome)], error: Error, done: [(ImportCandidate, Outcome)],
        problems: ImportProblems
    ) throws -> Never {
        let failed = plan[index].0
        let imported = done.compactMap { if case .imported = $0.1 { $0.0.user.value } else { nil } }
        let rest = plan[index...].compactMap { if case .imported = $0.1 { $0.0.user.value } else { nil } }
        if json {
            var object = report(done: done, problems: problems)
            if case .object(var pairs) = object {
                pairs.append(("failed", .object([("user", .string(failed.user.value)), ("source", .string(failed.source)), ("message", .string("\(error)"))])))
                pairs.append(("not_imported", .array(rest.map { .string($0) })))
                object = .object(pairs)
            }
            print(object.rendered)
        } else {
            for (candidate, outcome) in done { print(describe(candidate, outcome, dryRun: false)) }
        }
        // Thrown, not exited, so that the audit trail names the users imported before it.
        throw CLIError(
            """
            writing \(failed.user) (\(failed.source)) failed: \(error)
            watchword: imported before the failure, complete and usable: \(imported.isEmpty ? "nobody" : imported.joined(separator: " "))
            watchword: not imported, state unchanged: \(rest.joined(separator: " "))
            watchword: each user's record is written atomically, so none is half-written; fix the cause and run the same command again (users already imported are then skipped)
            """)
    }

    private func describe(_ candidate: ImportCandidate, _ outcome: Outcome, dryRun: Bool) -> String {
        switch outcome {
        case .skipped(let reason):
            return "\(dryRun ? "Would skip" : "Skipped") \(candidate.user) (\(candidate.source)): \(reason)."
        case .imported(let replacing):
            let otp = candidate.enrollment
            var what = "\(otp.kind.rawValue.uppercased()), \(otp.digits) digits, "
            what += otp.kind == .totp ? "\(otp.period) s" : "next counter \(otp.counter)"
            let codes = candidate.recoveryCodes.count
            what += codes == 0 ? "; no recovery codes" : "; \(codes) recovery code\(codes == 1 ? "" : "s")"
            let verb = dryRun ? "Would import" : "Imported"
            return "\(verb) \(candidate.user) from \(candidate.source) (\(what))\(replacing ? ", replacing the earlier enrollment" : "")."
        }
    }

    private func report(done: [(ImportCandidate, Outcome)], problems: ImportProblems) -> JSON {
        var imported: [JSON] = []
        var skipped: [JSON] = []
        for (candidate, outcome) in done {
            switch outcome {
            case .skipped(let reason):
                skipped.append(.object([
                    ("user", .string(candidate.user.value)), ("source", .string(candidate.source)), ("reason", .string(reason)),
                ]))
            case .imported(let replacing):
                let otp = candidate.enrollment
                var pairs: [(String, JSON)] = [
                    ("user", .string(candidate.user.value)), ("source", .string(candidate.source)),
                    ("method", .string(otp.kind.rawValue)), ("digits", .int(Int64(otp.digits))),
                ]
                if otp.kind == .totp {
                    pairs.append(("period", .int(Int64(otp.period))))
                } else {
                    pairs.append(("counter", .int(Int64(clamping: otp.counter))))
                }
                pairs.append(("recovery_codes", .int(Int64(candidate.recoveryCodes.count))))
                pairs.append(("replaced", .bool(replacing)))
                imported.append(.object(pairs))
            }
        }
        return .object([
            ("dry_run", .bool(options.dryRun)),
            ("imported", .array(imported)),
            ("skipped", .array(skipped)),
            ("warnings", .array(problems.warnings.map(\.json))),
            ("errors", .array(problems.errors.map(\.json))),
        ])
    }
}

/// A file mode as ls and chmod spell it: 0644.
func octalMode(_ mode: UInt32) -> String {
    let digits = String(mode & 0o7777, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

extension ImportProblem {
    var json: JSON { .object([("source", .string(source)), ("message", .string(message))]) }
}
