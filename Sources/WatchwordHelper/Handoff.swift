// The two builds of the helper, and how a login passes from one to the other.
//
// The module runs `watchword-helper`, linked fully statically (`-static-executable`): it
// starts like a C program, which is most of what a login costs. A static program cannot
// load libcurl (SMS), libpq (a fleet's database) or libqrencode (a QR code at enrollment),
// and must not call the user or group database (glibc's NSS modules are loaded with
// dlopen; a lookup that reaches one from a static program can crash it). So before it
// asks anything, the static helper decides whether the login may need one of those; if so
// it executes `watchword-helper-dynamic` from its own directory, the same program linked
// as usual, and gives it the header it read on descriptor 3. The module does not know the
// difference: the socket, the nonce and the exit status carry over.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import WatchwordCore

/// The name of the dynamically linked helper, next to the static one.
let dynamicHelperName = "watchword-helper-dynamic"
/// Its arguments: the header is on descriptor 3, not on the socket.
let handoffArgument = "--header-fd=3"

#if WATCHWORD_STATIC_HELPER
let isStaticHelper = true
#else
let isStaticHelper = false
#endif

/// What the static helper finds before it asks anything: whether it must hand the login
/// over, and the record it read and the file store it opened to read it, which the login
/// goes on with (one walk from `/` to the state directory, not two).
struct HandoffCheck {
    /// Why the login goes to the dynamic helper; nil when this one can do it itself.
    var reason: String?
    var read: ReadRecord?
    var store: FileStore?
}

/// Decides before anything is asked or written: the static helper keeps the file store, a
/// token or recovery codes, no SMS for this user, no group to look up, no QR code to draw.
/// A record that changes afterwards only loses the QR code (the URI and secret are still
/// shown) or makes an SMS step fail closed.
func handoffCheck(_ header: Header, config: Config?) -> HandoffCheck {
    var check = HandoffCheck()
    guard let account = header.account else {
        check.reason = "the module did not look the account up"
        return check
    }
    if !header.exemptGroups.isEmpty {
        check.reason = "exempt_group needs the group database"
        return check
    }
    // A config that does not load denies the login here as it would there.
    guard let config else { return check }
    if config.store.backend == .postgres {
        check.reason = "the store is PostgreSQL"
        return check
    }
    let name: String
    switch account {
    case .exists(let canonical): name = canonical
    case .missing: name = header.user
    }
    let record: UserRecord?
    do {
        let user = try UserName(name)
        let opened = try FileStore(path: header.stateDir, create: false, createSubdirectories: header.enrollAtLogin)
        check.store = opened
        record = try opened.load(user)
        check.read = ReadRecord(user: user, record: record)  // the login starts from it (LoginFlow.alreadyRead)
    } catch {
        return check  // denied here with the same reason
    }
    if record?.pending != nil {
        check.reason = "an enrollment waits for its first code (QR code)"
    } else if header.enrollAtLogin && account != .missing && !(record?.isEnrolled ?? false) {
        check.reason = "enrollment at login (QR code)"
    } else if record?.phone != nil && config.sms.provider != .none {
        check.reason = "SMS"
    }
    return check
}

/// Executes the dynamic helper with the header on fd 3. Returns only when that fails,
/// with why.
func handOff(_ header: Header) -> String {
    guard let directory = ownDirectory() else { return "cannot read /proc/self/exe" }
    // The header first, into a pipe on fd 3 (nothing else is open above 2 here; a header
    // is well under the pipe's 64 KiB, so the write cannot block), then the program.
    guard header.bytes.count < 60_000 else { return "the header is too large to hand over" }
    var ends: [Int32] = [-1, -1]
    guard pipe(&ends) == 0 else { return "pipe: \(String(cString: strerror(errno)))" }
    let written = header.bytes.withUnsafeBytes { raw in retryingOnInterrupt { write(ends[1], raw.baseAddress, raw.count) } }
    close(ends[1])
    guard written == header.bytes.count else { return "cannot write the header" }
    if ends[0] != 3 {
        guard dup2(ends[0], 3) == 3 else { return "dup2: \(String(cString: strerror(errno)))" }
        close(ends[0])
    }
    let program: Int32
    switch openCheckedProgram(directory: directory, name: dynamicHelperName) {
    case .success(let fd): program = fd
    case .failure(let problem): return problem.text
    }
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup(dynamicHelperName), strdup("--pam"), strdup(handoffArgument), nil]
    let environment: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), nil]
    fexecve(program, argv, environment)
    return "cannot execute \(directory)/\(dynamicHelperName): \(String(cString: strerror(errno)))"
}

/// The header the static helper read, from descriptor 3 (a pipe it filled and closed).
func readHandedOverHeader() -> [UInt8]? {
    var st = stat()
    guard fstat(3, &st) == 0, (st.st_mode & S_IFMT) == S_IFIFO else { return nil }
    defer { close(3) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { raw in retryingOnInterrupt { read(3, raw.baseAddress, raw.count) } }
        if n < 0 { return nil }
        if n == 0 { break }
        bytes += chunk[0..<n]
        if bytes.count > 65536 { return nil }
    }
    return bytes.isEmpty ? nil : bytes
}

/// open(2)'s O_PATH (Linux), which Swift's Glibc module does not export.
private let openPath: Int32 = 0o10000000

private func ownDirectory() -> String? {
    var buffer = [CChar](repeating: 0, count: 4097)
    let n = readlink("/proc/self/exe", &buffer, 4096)
    guard n > 0 else { return nil }
    let path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard path.hasPrefix("/"), let slash = path.utf8.lastIndex(of: 0x2F) else { return nil }
    return slash == path.utf8.startIndex ? "/" : String(path[..<slash])
}

struct ProgramProblem: Error {
    let text: String
}

/// Opens `directory/name` as the module opens the helper: from `/` one component at a time
/// without following links, every directory root's and not writable by group or other,
/// the program a regular file of root's, not writable by group or other, executable.
private func openCheckedProgram(directory: String, name: String) -> Result<Int32, ProgramProblem> {
    var current = open("/", openPath | O_DIRECTORY | O_CLOEXEC)
    guard current >= 0 else { return .failure(ProgramProblem(text: "cannot open /")) }
    var walked = ""
    let components = directory.split(separator: "/").map(String.init) + [name]
    for (index, component) in components.enumerated() {
        var st = stat()
        guard fstat(current, &st) == 0, st.st_uid == 0, st.st_mode & (S_IWGRP | S_IWOTH) == 0,
            (st.st_mode & S_IFMT) == S_IFDIR
        else {
            close(current)
            return .failure(ProgramProblem(text: "\(walked.isEmpty ? "/" : walked): not a directory of root's closed to group and other"))
        }
        walked += "/" + component
        let last = index == components.count - 1
        let next = openat(current, component, openPath | O_NOFOLLOW | O_CLOEXEC | (last ? 0 : O_DIRECTORY))
        close(current)
        guard next >= 0 else {
            return .failure(ProgramProblem(text: "\(walked): \(String(cString: strerror(errno)))"))
        }
        current = next
    }
    var st = stat()
    guard fstat(current, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == 0,
        st.st_mode & (S_IWGRP | S_IWOTH) == 0, st.st_mode & S_IXUSR != 0
    else {
        close(current)
        return .failure(ProgramProblem(text: "\(walked): not a program of root's closed to group and other"))
    }
    return .success(current)
}
