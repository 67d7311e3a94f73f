import Testing
import WatchwordCore

@Suite("JSON: the one parser and writer")
struct JSONTests {
    @Test("answers of the APIs parse")
    func parses() throws {
        let json = try #require(JSON.parse(Array(#"{"code": 200, "message": "OK", "verify": true, "data": {"id": [1, 2.5e3, null]}}"#.utf8)))
        #expect(json["code"]?.int == 200)
        #expect(json["message"]?.string == "OK")
        #expect(json["verify"]?.bool == true)
        #expect(json["data"]?["id"] == .array([.number("1"), .number("2.5e3"), .null]))
        #expect(JSON.parse(Array(#""caf\u00e9 \ud83d\ude00 \"q\"""#.utf8)) == .string("café 😀 \"q\""))
    }

    @Test("anything that is not one JSON text is refused", arguments: ["", "{", "{\"a\":}", "[1,]", "01", "\"\u{1}\"", "{} {}", "nul", "\"\\x\"", "\"\\ud800\""])
    func refused(_ text: String) {
        #expect(JSON.parse(Array(text.utf8)) == nil)
    }

    @Test("nesting is bounded")
    func depth() {
        #expect(JSON.parse(Array((String(repeating: "[", count: 40) + String(repeating: "]", count: 40)).utf8)) == nil)
        #expect(JSON.parse(Array((String(repeating: "[", count: 10) + String(repeating: "]", count: 10)).utf8)) != nil)
    }

    @Test("objects are written with their keys in order and strings escaped")
    func writes() {
        let value = JSON.object([("to", .string("+1")), ("template", .string("a \"b\"\n{{CODE}}")), ("length", .number("6"))])
        #expect(value.rendered == #"{"to":"+1","template":"a \"b\"\n{{CODE}}","length":6}"#)
    }

    @Test("what parses renders and parses back to the same value (the fuzz target's property, on examples)")
    func roundTrip() throws {
        for text in [#"{"a":[1,-0.5e+3,true,false,null,{"b":"\u0000\u001f\\\"/é😀"}],"c":{}}"#, #"[]"#, #""\ud83d\ude00""#] {
            let value = try #require(JSON.parse(Array(text.utf8)), "\(text)")
            #expect(JSON.parse(Array(value.rendered.utf8)) == value, "\(text)")
        }
    }

    @Test("bytes that are not UTF-8, a text over maxBytes and a lone low surrogate are refused")
    func refusedBytes() {
        #expect(JSON.parse([0x22, 0xFF, 0x22]) == nil)
        #expect(JSON.parse([0x22, 0xC3, 0x22]) == nil)
        #expect(JSON.parse(Array(#""\udc00""#.utf8)) == nil)
        let big = [UInt8](repeating: 0x20, count: JSON.maxBytes) + Array("1".utf8)
        #expect(JSON.parse(big) == nil)
        #expect(JSON.parse(Array(big.dropFirst())) == .number("1"))
    }

    @Test("an object that names a key twice is refused, at any depth", arguments: [
        #"{"status":"pending","status":"approved"}"#, #"{"a":1,"b":{"c":1,"c":1}}"#, #"[{"x":null,"x":null}]"#,
        // The same key written two ways.
        #"{"ok":true,"\u006fk":false}"#,
    ])
    func duplicateKeys(_ text: String) {
        #expect(JSON.parse(Array(text.utf8)) == nil)
    }

    @Test("the same key in different objects is fine")
    func sameKeyInTwoObjects() {
        #expect(JSON.parse(Array(#"{"a":{"a":1},"b":[{"a":2},{"a":3}]}"#.utf8)) != nil)
    }

    @Test("the depth limit is exactly maxDepth")
    func depthLimit() {
        let d = JSON.maxDepth
        #expect(JSON.parse(Array((String(repeating: "[", count: d) + String(repeating: "]", count: d)).utf8)) != nil)
        #expect(JSON.parse(Array((String(repeating: "[", count: d + 1) + String(repeating: "]", count: d + 1)).utf8)) == nil)
    }

    @Test("whole numbers for the CLI are written as digits")
    func ints() {
        #expect(JSON.object([("n", .int(Int64(-42))), ("u", .int(UInt8(7))), ("s", .optional(nil))]).rendered
            == #"{"n":-42,"u":7,"s":null}"#)
    }
}
