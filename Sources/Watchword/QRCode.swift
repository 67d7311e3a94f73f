import CQRencode

/// Renders text as a QR code for a terminal, two modules per character cell with UTF-8
/// half blocks. Light modules are drawn as blocks so it reads on the usual dark background;
/// a 4-module quiet zone surrounds it, as the standard asks.
func terminalQRCode(_ text: String) -> String? {
    guard let code = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1) else { return nil }
    defer { QRcode_free(code) }
    let width = Int(code.pointee.width)
    let quiet = 4
    let size = width + 2 * quiet
    func dark(_ x: Int, _ y: Int) -> Bool {
        let mx = x - quiet
        let my = y - quiet
        guard mx >= 0, my >= 0, mx < width, my < width else { return false }
        return code.pointee.data[my * width + mx] & 1 == 1
    }
    var out = ""
    var y = 0
    while y < size {
        for x in 0..<size {
            let top = !dark(x, y)
            let bottom = y + 1 < size ? !dark(x, y + 1) : false
            switch (top, bottom) {
            case (true, true): out += "█"
            case (true, false): out += "▀"
            case (false, true): out += "▄"
            case (false, false): out += " "
            }
        }
        out += "\n"
        y += 2
    }
    return out
}
