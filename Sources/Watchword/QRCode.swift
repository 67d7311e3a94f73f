#if canImport(Glibc)
import Glibc
#endif
import WatchwordQR

/// `text` as a QR code for the terminal: black on white whatever the theme when standard
/// output is a terminal, plain half blocks otherwise; nil (and a note) when libqrencode is
/// missing, the URI being printed anyway.
func terminalQRCode(_ text: String) -> String? {
    guard let matrix = QRMatrix.encode(text) else {
        writeStandardError("watchword: note: no QR code: libqrencode.so.4 is missing (apt install libqrencode4)\n")
        return nil
    }
    return matrix.terminalLines(colours: isatty(1) == 1).joined(separator: "\n") + "\n"
}
