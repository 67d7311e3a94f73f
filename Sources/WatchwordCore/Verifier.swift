import WatchwordCrypto
import WatchwordOTP

/// What checking one answer did.
public enum Verdict: Sendable, Equatable {
    case accepted(Method)
    /// A wrong, reused or expired code; counted as a failure.
    case rejected(failures: Int, lockedFor: Int64?)
    /// Not a code at all (empty, not digits, too long); refused without counting.
    case malformed(String)
    /// Locked before the answer was looked at.
    case locked(remaining: Int64)
    /// Nothing here matched, but the SMS service holds a pending code: ask it whether the
    /// answer is that code. The answer is already counted as a wrong one (a failure, with
    /// `failures` and `lockedFor` as `.rejected` would give them, and one of the code's
    /// tries): whatever happens to the question, a guess is never free. Only an approval
    /// changes that, through `Verifier.finishServiceCheck`, and only while the code
    /// `codeID` is still the pending one.
    case askService(code: String, codeID: String, failures: Int, lockedFor: Int64?)

    public enum Method: String, Sendable { case totp, hotp, recovery, sms }
}

/// How the pending SMS code, if any, takes part in checking an answer.
public enum SMSCheck: Sendable {
    /// Not at all (no phone or no provider).
    case none
    /// watchword made the code and holds its keyed hash (`command`, `twilio`).
    case local
    /// The provider made the code and checks it (`twilio-verify`, `nomado`).
    case service
}

/// The policy applied to one answer: replay refusal, the HOTP look-ahead, recovery codes,
/// and failure counting with a doubling lockout. Pure: time and key are passed in.
public struct Verifier: Sendable {
    public let policy: Policy
    public init(policy: Policy) { self.policy = policy }

    /// Trims surrounding white space and drops single spaces or hyphens between digits
    /// (`123 456`, `123-456`, as apps show codes); a code is then 1–64 ASCII digits, else nil.
    public static func normalize(_ answer: [UInt8]) -> String? {
        // Space, tab, LF, VT, FF, CR. (Not a Set: its first use costs a login 125 k
        // instructions of runtime type lookup.)
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || (byte >= 0x09 && byte <= 0x0D) }
        func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
        var slice = answer[...]
        while let first = slice.first, isSpace(first) { slice = slice.dropFirst() }
        while let last = slice.last, isSpace(last) { slice = slice.dropLast() }
        guard slice.count <= 64 + 63 else { return nil }
        var digits: [UInt8] = []
        var previous: UInt8? = nil
        for (offset, byte) in zip(slice.indices, slice) {
            if isDigit(byte) {
                digits.append(byte)
            } else if byte == 0x20 || byte == 0x2D, let before = previous, isDigit(before),
                offset + 1 < slice.endIndex, isDigit(slice[offset + 1])
            {
                // A separator between two digits: skipped.
            } else {
                return nil
            }
            previous = byte
        }
        guard !digits.isEmpty, digits.count <= 64 else { return nil }
        return String(decoding: digits, as: UTF8.self)
    }

    /// Whether an answer is empty once trimmed (the user just pressed Enter).
    public static func isBlank(_ answer: [UInt8]) -> Bool {
        answer.allSatisfy { [0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C].contains($0) }
    }

    /// Checks `answer` against the record at `now`, updating replay state, counters and lockout.
    ///
    /// With `sms`, the pending SMS code takes part too: a wrong answer uses up one of its
    /// tries (it dies after `PendingSMSCode.maxTries`), an expired one is dropped, and a
    /// code the service holds is left to `.askService`, the answer counted as wrong first.
    ///
    /// A service's code used up by tries stays in the record (dead: no answer is sent to the
    /// service for it) until it expires, is replaced or a login is accepted: an answer
    /// already at the service may yet be approved, and its approval must find the code.
    /// Its identity is needed to ask the service; one without (`PendingSMSCode.id`, an old
    /// record) is never asked about, so the caller gives it one first.
    public func check(
        _ answer: [UInt8], record: inout UserRecord, now: Int64, key: SymmetricKey?, sms: SMSCheck = .none
    ) -> Verdict {
        if let remaining = record.lockoutRemaining(at: now) { return .locked(remaining: remaining) }
        guard let code = Self.normalize(answer) else {
            return .malformed(Self.isBlank(answer) ? "empty answer" : "answer is not a code of digits")
        }
        if let pending = record.sms.pending,
            now >= pending.expires || (pending.hash != nil && pending.tries >= PendingSMSCode.maxTries)
        {
            record.sms.pending = nil
        }
        if let method = acceptOTP(code, record: &record, now: now) {
            return succeed(method, record: &record, now: now)
        }
        if case .local = sms, let key, let hash = record.sms.pending?.hash {
            let candidate = Array(SMSCodePolicy.hash(code, user: record.user, key: key).utf8)
            if constantTimeEquals(Array(hash.utf8), candidate) {
                return succeed(.sms, record: &record, now: now)
            }
        }
        if let key, let index = RecoveryCodes.match(code, user: record.user, key: key, hashes: record.recoveryCodeHashes) {
            record.recoveryCodeHashes.remove(at: index)
            return succeed(.recovery, record: &record, now: now)
        }
        if case .service = sms, let pending = record.sms.pending, pending.hash == nil, let id = pending.id,
            pending.isAlive(at: now), (4...10).contains(code.utf8.count)
        {
            // Counted before the service is asked: a service that fails, hangs or is made to
            // fail does not make a guess free, nor tell a right one from a wrong one.
            useSMSTry(record: &record)
            let (failures, lockedFor) = countFailure(record: &record, now: now)
            return .askService(code: code, codeID: id, failures: failures, lockedFor: lockedFor)
        }
        useSMSTry(record: &record)
        return fail(record: &record, now: now)
    }

    /// Checks the first code of the pending token `secret` (enrollment at login). The token
    /// must still be the pending one, alive, and the user still without an active token:
    /// otherwise nil, and nothing changes. A right code makes it the user's token (a code
    /// cannot be used twice: its step is the last accepted) and takes `recoveryHashes` as
    /// the user's recovery codes; a wrong one is counted as any failure is.
    public func confirmPending(
        _ answer: [UInt8], secret: [UInt8], record: inout UserRecord, now: Int64, recoveryHashes: [String]
    ) -> Verdict? {
        guard let pending = record.pending, pending.isAlive(at: now), record.otp == nil,
            constantTimeEquals(pending.otp.secret, secret)
        else { return nil }
        if let remaining = record.lockoutRemaining(at: now) { return .locked(remaining: remaining) }
        guard let code = Self.normalize(answer) else {
            return .malformed(Self.isBlank(answer) ? "empty answer" : "answer is not a code of digits")
        }
        var trial = record
        trial.otp = pending.otp
        guard let method = acceptOTP(code, record: &trial, now: now) else { return fail(record: &record, now: now) }
        record.otp = trial.otp
        record.pending = nil
        record.recoveryCodeHashes = recoveryHashes
        return succeed(method, record: &record, now: now)
    }

    /// Completes `.askService` under the user's lock once the service has answered. An
    /// approval is taken only if the code `codeID` is still the pending one and has not
    /// expired: the first login to come back with it is accepted (the failure its answer
    /// was counted as is given back, as any success does) and the code is gone; every other
    /// login, whatever the service said, stays a counted failure. A refusal changes nothing
    /// (the answer was counted when it was asked).
    public func finishServiceCheck(approved: Bool, codeID: String, record: inout UserRecord, now: Int64) -> Verdict {
        if approved, let pending = record.sms.pending, pending.hash == nil, pending.id == codeID, now < pending.expires {
            return succeed(.sms, record: &record, now: now)
        }
        return .rejected(failures: record.failures, lockedFor: record.lockoutRemaining(at: now))
    }

    /// A wrong answer while a code is pending is a guess at it too. A code watchword checks
    /// is dropped at its last try; one the service checks is kept, dead, for the answers
    /// still at the service (see `check`).
    private func useSMSTry(record: inout UserRecord) {
        guard var pending = record.sms.pending, pending.tries < PendingSMSCode.maxTries else { return }
        pending.tries += 1
        record.sms.pending = pending.tries >= PendingSMSCode.maxTries && pending.hash != nil ? nil : pending
    }

    private func succeed(_ method: Verdict.Method, record: inout UserRecord, now: Int64) -> Verdict {
        record.failures = 0
        record.lockedUntil = 0
        record.lastSuccess = now
        // Whatever got the user in, a texted code has served its purpose.
        record.sms.pending = nil
        return .accepted(method)
    }

    /// Counts a failure; from `maxFailures` on, each failure locks for twice as long as the
    /// one before, up to `lockoutMaxSeconds`.
    public func fail(record: inout UserRecord, now: Int64) -> Verdict {
        let (failures, lockedFor) = countFailure(record: &record, now: now)
        return .rejected(failures: failures, lockedFor: lockedFor)
    }

    /// `fail`'s count: the failures now, and the seconds of lockout this one started.
    private func countFailure(record: inout UserRecord, now: Int64) -> (Int, Int64?) {
        record.failures = min(record.failures + 1, 1_000_000_000)
        guard record.failures >= policy.maxFailures else { return (record.failures, nil) }
        let doublings = min(record.failures - policy.maxFailures, 30)
        let seconds = min(Int64(policy.lockoutSeconds) << Int64(doublings), Int64(policy.lockoutMaxSeconds))
        record.lockedUntil = now + seconds
        return (record.failures, seconds)
    }

    private func acceptOTP(_ code: String, record: inout UserRecord, now: Int64) -> Verdict.Method? {
        guard var otp = record.otp, code.utf8.count == otp.digits else { return nil }
        let given = Array(code.utf8)
        // The code for a counter (HOTP) or time step (TOTP), compared in constant time: from
        // the secret, or from the offline cache's keyed hashes.
        let matches: (UInt64) -> Bool
        if let offline = otp.offlineCodes {
            let user = record.user
            matches = { offline.matches(given, counter: $0, user: user) }
        } else {
            guard let hotp = try? HOTP(secret: otp.secret, algorithm: otp.algorithm, digits: otp.digits) else { return nil }
            matches = { constantTimeEquals(Array(hotp.code(counter: $0).utf8), given) }
        }
        switch otp.kind {
        case .totp:
            guard now >= 0 else { return nil }
            let current = UInt64(now) / UInt64(otp.period)
            var matched: UInt64? = nil
            let low = current >= UInt64(policy.window) ? current - UInt64(policy.window) : 0
            for step in low...(current + UInt64(policy.window)) {
                // Every candidate is computed and compared so timing says nothing about which matched.
                let equal = matches(step)
                let fresh = otp.lastStep.map { step > $0 } ?? true
                if equal && fresh && matched == nil { matched = step }
            }
            guard let step = matched else { return nil }
            otp.lastStep = step
            record.otp = otp
            return .totp
        case .hotp:
            var matched: UInt64? = nil
            for offset in 0...UInt64(policy.hotpLookahead) {
                // UInt64.max itself is never accepted: the counter could not move past it.
                let (counter, overflow) = otp.counter.addingReportingOverflow(offset)
                if overflow || counter == UInt64.max { break }
                if matches(counter) && matched == nil {
                    matched = counter
                }
            }
            guard let counter = matched else { return nil }
            otp.counter = counter + 1
            record.otp = otp
            return .hotp
        }
    }
}
