#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A QR code's modules, row by row, `true` for dark.
public struct QRMatrix: Sendable, Equatable {
    public let width: Int
    public let modules: [Bool]

    public init(width: Int, modules: [Bool]) {
        precondition(modules.count == width * width)
        self.width = width
        self.modules = modules
    }

    public func isDark(_ x: Int, _ y: Int) -> Bool {
        x >= 0 && y >= 0 && x < width && y < width && modules[y * width + x]
    }

    /// Encodes `text` (byte mode, error correction M, the smallest version that holds it)
    /// with libqrencode, loaded with dlopen() on first use: the helper, which draws a code
    /// only when a user enrolls at login, never loads it on an ordinary login. Nil when
    /// libqrencode.so.4 (Debian's libqrencode4) is missing or the text does not fit.
    public static func encode(_ text: String) -> QRMatrix? {
        guard let library = QRencodeLibrary.shared else { return nil }
        guard let code = text.withCString({ library.encodeString($0, 0, 1 /* QR_ECLEVEL_M */, 2 /* QR_MODE_8 */, 1) })
        else { return nil }
        defer { library.free(code) }
        // typedef struct { int version; int width; unsigned char *data; } QRcode;
        let width = Int(code.load(fromByteOffset: 4, as: Int32.self))
        let data = code.load(fromByteOffset: 8, as: UnsafePointer<UInt8>?.self)
        guard width > 0, width <= 177, let data else { return nil }
        // Bit 0 of each byte: 1 for a dark module (qrencode.h).
        let modules = (0..<width * width).map { data[$0] & 1 == 1 }
        return QRMatrix(width: width, modules: modules)
    }

    /// Terminal lines, two rows of modules per line with Unicode half blocks, inside the
    /// 4-module quiet zone the standard asks for.
    ///
    /// With `colours` each line is drawn black on white (SGR 30;47) whatever the terminal's
    /// theme, as `google-authenticator -Q UTF8` does. Without (text that may pass through
    /// a filter of control characters, such as OpenSSH's for keyboard-interactive), light
    /// modules are the blocks: right on the usual dark background, inverted on a light one
    /// (scanners that read inverted codes still do; the URI and secret are shown too).
    public func terminalLines(colours: Bool) -> [String] {
        let quiet = 4
        let size = width + 2 * quiet
        func dark(_ x: Int, _ y: Int) -> Bool { y < size && isDark(x - quiet, y - quiet) }
        var lines: [String] = []
        var y = 0
        while y < size {
            var line = colours ? "\u{1B}[30;47m" : ""
            for x in 0..<size {
                // With colours the foreground (black) draws dark modules; without, the
                // blocks are the light ones.
                let top = colours ? dark(x, y) : !dark(x, y)
                let bottom = y + 1 < size && (colours ? dark(x, y + 1) : !dark(x, y + 1))
                switch (top, bottom) {
                case (true, true): line += "█"
                case (true, false): line += "▀"
                case (false, true): line += "▄"
                case (false, false): line += " "
                }
            }
            if colours { line += "\u{1B}[0m" }
            lines.append(line)
            y += 2
        }
        return lines
    }
}

/// libqrencode's two functions used here (qrencode.h), the `QRcode *` kept opaque.
private final class QRencodeLibrary: @unchecked Sendable {
    typealias Encode = @convention(c) (UnsafePointer<CChar>, Int32, Int32, Int32, Int32) -> UnsafeMutableRawPointer?
    typealias Free = @convention(c) (UnsafeMutableRawPointer) -> Void
    let encodeString: Encode
    let free: Free

    private init(encodeString: Encode, free: Free) {
        self.encodeString = encodeString
        self.free = free
    }

    static let shared: QRencodeLibrary? = {
        guard let handle = dlopen("libqrencode.so.4", RTLD_LAZY | RTLD_LOCAL),
            let encode = dlsym(handle, "QRcode_encodeString"), let free = dlsym(handle, "QRcode_free")
        else { return nil }
        return QRencodeLibrary(
            encodeString: unsafeBitCast(encode, to: Encode.self), free: unsafeBitCast(free, to: Free.self))
    }()
}
