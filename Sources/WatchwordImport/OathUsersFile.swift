#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore
import WatchwordCrypto
import WatchwordOTP

/// pam_oath's users file (`/etc/users.oath`), as liboath reads and rewrites it: one token
/// per line, fields separated by white space, `#` starts a comment line:
///
///     TYPE  USER  PIN  SECRETHEX  [COUNTER  [LASTOTP  [TIME]]]
///     HOTP/T30  alice  -  3132333435363738393031323334353637383930
///     HOTP      bob    -  00112233445566778899  41  123456  2024-05-01T10:00:00L
///
/// TYPE is `HOTP`, `HOTP/E`, `HOTP/E/6|7|8` (counter-based) or `HOTP/T30`, `HOTP/T60`,
/// optionally `/6|7|8` (time-based, 30 or 60 s steps). PIN is `-` (none), `+` (checked
/// elsewhere) or a password typed before the code.
///
/// The counter is where liboath starts looking, and after a login it writes back the
/// counter of the code it accepted together with that code as LASTOTP; a code equal to
/// LASTOTP is refused as a replay. So the next code to accept is COUNTER + 1 when LASTOTP
/// is the code for COUNTER, else COUNTER itself. For time-based tokens liboath refuses any
/// code not later than LASTOTP; TIME (local time, `%Y-%m-%dT%H:%M:%SL`) says when it was
/// used, which finds its time step.
public enum OathUsersFile {
    public struct Entry: Sendable, Equatable {
        public var line: Int
        public var user: UserName
        public var enrollment: OTPEnrollment
        public var hasPIN: Bool
    }

    /// How far from TIME (in steps) the last code is looked for. liboath's window is the
    /// module's `window=` option; 64 steps covers every sensible one.
    public static let lastCodeSearch: UInt64 = 64

    public static func parse(_ file: ForeignFile, issuer: String, now: Int64, problems: inout ImportProblems) -> [Entry] {
        let path = file.path
        func error(_ line: Int, _ message: String) { problems.error(path, line: line, message) }
        func warn(_ line: Int, _ message: String) { problems.warn(path, line: line, message) }
        guard let lines = file.lines() else {
            problems.error(path, "not a text file (not UTF-8, or holds NUL bytes)")
            return []
        }
        var entries: [Entry] = []
        var seen: [UserName: Int] = [:]
        for (number, text) in lines {
            let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\u{0B}" || $0 == "\u{0C}" })
            guard let typeText = fields.first, !typeText.hasPrefix("#") else { continue }
            guard fields.count >= 4 else {
                error(number, "expected 'TYPE USER PIN SECRET [COUNTER [LASTOTP [TIME]]]', found \(fields.count) field\(fields.count == 1 ? "" : "s")")
                continue
            }
            guard fields.count <= 7 else {
                error(number, "\(fields.count) fields; at most 7 (TYPE USER PIN SECRET COUNTER LASTOTP TIME)")
                continue
            }
            guard let (digits, period) = tokenType(typeText) else {
                error(number, "unknown token type \(quoted(typeText)) (HOTP, HOTP/E[/6|7|8], HOTP/T30[/6|7|8], HOTP/T60[/6|7|8])")
                continue
            }
            let user: UserName
            do {
                user = try UserName(String(fields[1]))
            } catch {
                problems.error(path, line: number, "invalid user name \(quoted(fields[1])): \(error)")
                continue
            }
            if let earlier = seen[user] {
                error(number, "\(user) already has a token on line \(earlier); watchword keeps one token per user")
                continue
            }
            seen[user] = number
            guard let secret = Hex.decode(String(fields[3])) else {
                error(number, "the secret is not hex (an even number of 0-9, a-f)")
                continue
            }
            guard secret.count >= 10 else {
                error(number, "the secret is \(secret.count) bytes; at least 10 (80 bits) are required")
                continue
            }
            guard secret.count <= 1024 else {
                error(number, "the secret is \(secret.count) bytes; at most 1024")
                continue
            }
            var counter: UInt64 = 0
            if fields.count > 4 {
                guard let n = decimal(fields[4]) else {
                    error(number, "the counter is not a whole number")
                    continue
                }
                counter = n
            }
            var lastCode: String? = nil
            if fields.count > 5 {
                let text = fields[5]
                guard text.utf8.count <= 10, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    error(number, "the last OTP is not a code of digits")
                    continue
                }
                lastCode = String(text)
            }
            var lastTime: Int64? = nil
            if fields.count > 6 {
                guard let t = parseTime(fields[6]) else {
                    error(number, "the time is not YYYY-MM-DDTHH:MM:SSL")
                    continue
                }
                lastTime = t
            }
            let hotp: HOTP
            do {
                hotp = try HOTP(secret: secret, digits: digits)
            } catch {
                problems.error(path, line: number, "\(error)")
                continue
            }

            var enrollment = OTPEnrollment(
                kind: period == nil ? .hotp : .totp, secret: secret, digits: digits, period: period ?? 30,
                issuer: issuer)
            if let period {
                if let lastCode {
                    let reference = lastTime ?? now
                    if let step = stepOf(lastCode, hotp: hotp, near: reference, period: period) {
                        enrollment.lastStep = step
                    } else if reference >= 0 {
                        // Not found: refuse everything up to when it was used, which covers it.
                        enrollment.lastStep = UInt64(reference) / UInt64(period)
                        if now - reference < Int64(lastCodeSearch) * Int64(period) {
                            warn(number, "the last OTP matches no time step near its time; codes up to that time are refused")
                        }
                    }
                }
            } else {
                enrollment.counter = counter
                if let lastCode, constantTimeEquals(Array(hotp.code(counter: counter).utf8), Array(lastCode.utf8)) {
                    guard counter < UInt64.max - 1 else {
                        error(number, "the counter is at its maximum")
                        continue
                    }
                    enrollment.counter = counter + 1
                }
            }
            if fields[2] != "-" && fields[2] != "+" {
                warn(
                    number,
                    "\(user) has a PIN, which is not carried over: watchword asks for the code alone (after the password, where the PAM stack asks for one)"
                )
            }
            entries.append(Entry(line: number, user: user, enrollment: enrollment, hasPIN: fields[2] != "-" && fields[2] != "+"))
        }
        return entries
    }

    /// Digits and time step (nil: counter-based) of a liboath token type.
    static func tokenType(_ text: Substring) -> (Int, Int?)? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.first == "HOTP", parts.count <= 3 else { return nil }
        if parts.count == 1 { return (6, nil) }
        var digits = 6
        if parts.count == 3 {
            guard let d = ["6": 6, "7": 7, "8": 8][String(parts[2])] else { return nil }
            digits = d
        }
        switch parts[1] {
        case "E": return (digits, nil)
        case "T30": return (digits, 30)
        case "T60": return (digits, 60)
        default: return nil
        }
    }

    /// liboath's time stamp, `%Y-%m-%dT%H:%M:%SL` (always 20 characters), in local time.
    static func parseTime(_ text: Substring) -> Int64? {
        let b = Array(text.utf8)
        guard b.count == 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T"),
            b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"), b[19] == UInt8(ascii: "L")
        else { return nil }
        func number(_ range: Range<Int>) -> Int32? {
            var n: Int32 = 0
            for c in b[range] {
                guard c >= 0x30 && c <= 0x39 else { return nil }
                n = n * 10 + Int32(c - 0x30)
            }
            return n
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        parts.tm_isdst = -1
        let t = mktime(&parts)
        return t == -1 ? nil : Int64(t)
    }

    /// The time step near `time` whose code is `code`, the nearest one if several are.
    static func stepOf(_ code: String, hotp: HOTP, near time: Int64, period: Int) -> UInt64? {
        guard time >= 0, code.utf8.count == hotp.digits else { return nil }
        let center = UInt64(time) / UInt64(period)
        let given = Array(code.utf8)
        var found: UInt64? = nil
        for distance in 0...lastCodeSearch {
            for step in [center + distance, center >= distance ? center - distance : nil].compactMap({ $0 }) {
                if found == nil && constantTimeEquals(Array(hotp.code(counter: step).utf8), given) { found = step }
            }
            if found != nil { break }
        }
        return found
    }
}
