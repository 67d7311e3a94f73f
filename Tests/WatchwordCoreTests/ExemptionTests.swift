import Testing
import WatchwordCore

@Suite struct ExemptionTests {
    @Test func rangesParseAndNormalise() throws {
        #expect(try AddressRange("10.0.0.0/8").description == "10.0.0.0/8")
        #expect(try AddressRange("192.0.2.7").description == "192.0.2.7/32")
        #expect(try AddressRange("2001:DB8::/32").description == "2001:db8::/32")
        #expect(try AddressRange("::/0").description == "::/0")
        #expect(try AddressRange("0.0.0.0/0").prefixLength == 0)
    }

    @Test(arguments: [
        "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/ 8", "10.0.0.0/8/8",
        "10.1.2.3/8", "2001:db8::1/32", "2001:db8::/129", "10.0.0/8", "host.example/8", "fe80::1%eth0/64",
        "::1/0128", "10.0.0.0/08x",
    ])
    func badRangesAreRefused(_ text: String) {
        #expect(throws: ExemptionError.self) { try AddressRange(text) }
    }

    @Test func containment() throws {
        let v4 = try AddressRange("10.128.0.0/9")
        #expect(v4.contains(AddressRange.address("10.200.1.1")!))
        #expect(!v4.contains(AddressRange.address("10.127.255.255")!))
        #expect(!v4.contains(AddressRange.address("2001:db8::1")!))
        let v6 = try AddressRange("2001:db8:8000::/33")
        #expect(v6.contains(AddressRange.address("2001:db8:ffff::1")!))
        #expect(!v6.contains(AddressRange.address("2001:db8:7fff::1")!))
        #expect(try AddressRange("0.0.0.0/0").contains(AddressRange.address("203.0.113.9")!))
    }

    @Test func onlyAddressLiteralsAreAddresses() {
        for text in ["", "localhost", "10.0.0.1.nip.io", "fe80::1%eth0", " 10.0.0.1", "10.0.0.1 ", "010.0.0.1x"] {
            #expect(AddressRange.address(text) == nil, "\(text)")
        }
        #expect(AddressRange.address("::ffff:10.1.2.3") == [10, 1, 2, 3])
        #expect(AddressRange.address("::ffff:10.1.2.3", unmapping: false)?.count == 16)
    }

    @Test func reasonNamesWhatMatched() throws {
        let exemptions = try Exemptions(groups: ["bots", "ops"], from: ["10.0.0.0/8"])
        #expect(exemptions.reason(rhost: "10.1.2.3") { _ in false } == "exempt: from 10.1.2.3 in 10.0.0.0/8")
        #expect(exemptions.reason(rhost: "ten.example") { $0 == "ops" } == "exempt: member of group ops")
        #expect(exemptions.reason(rhost: "192.0.2.1") { _ in nil } == nil)
        #expect(Exemptions().isEmpty)
    }
}
