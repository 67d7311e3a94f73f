import Testing
import WatchwordCore

@Suite("User names are validated before any path is built")
struct UserNameTests {
    @Test(
        "accepts ordinary, directory and machine-account names",
        arguments: [
            "alice", "a.b-c_d", "jo@corp", "host$", "_svc", "0day", "A", String(repeating: "x", count: 64),
        ])
    func accepts(_ name: String) throws {
        let user = try UserName(name)
        #expect(user.value == name)
        #expect(user.description == name)
    }

    @Test(
        "refuses names that could escape the state directory or confuse tools",
        arguments: [
            "", "..", ".", "a/b", "/etc", "../etc", "-x", ".hidden", String(repeating: "x", count: 65), "al ice",
            "\u{430}lice",  // Cyrillic а
            "\u{FF41}lice",  // fullwidth ａ
            "alic\u{E9}",  // é
            "\u{0}", "alice\u{0}", "alice\n", "al\tice", "ho$t", "$", "@corp", "a:b", "a*", "a\\b", "~root",
        ])
    func refuses(_ name: String) {
        #expect(throws: UserNameError.self) { try UserName(name) }
    }

    @Test("the error says why")
    func errorCases() {
        #expect(throws: UserNameError.empty) { try UserName("") }
        #expect(throws: UserNameError.tooLong(65)) { try UserName(String(repeating: "a", count: 65)) }
        #expect(throws: UserNameError.badFirstCharacter) { try UserName("-x") }
        #expect(throws: UserNameError.badFirstCharacter) { try UserName(".hidden") }
        #expect(throws: UserNameError.badCharacter) { try UserName("a/b") }
        #expect(throws: UserNameError.badFirstCharacter) { try UserName("\u{430}lice") }
        #expect(throws: UserNameError.badCharacter) { try UserName("al\u{456}ce") }  // Cyrillic і
    }

    @Test("the length limit counts bytes, not characters")
    func lengthInBytes() {
        // 34 characters, 66 bytes: refused for its length before its characters are looked at.
        #expect(throws: UserNameError.tooLong(66)) { try UserName("a" + String(repeating: "\u{E9}", count: 32) + "a") }
    }
}
