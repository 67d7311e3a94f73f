import Testing
@testable import WatchwordCrypto

@Suite("HMAC (RFC 2202, RFC 4231)")
struct HMACTests {
    static let hiThere = Array("Hi There".utf8)
    static let jefeData = Array("what do ya want for nothing?".utf8)
    static let largeKeyData = Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)

    @Test("RFC 2202 §3: HMAC-SHA-1 test cases 1, 2, 3 and 6")
    func rfc2202() {
        func mac(_ key: [UInt8], _ data: [UInt8]) -> String {
            Hex.encode(HMAC<Insecure.SHA1>.authenticationCode(for: data, using: SymmetricKey(bytes: key)))
        }
        #expect(mac([UInt8](repeating: 0x0b, count: 20), Self.hiThere) == "b617318655057264e28bc0b6fb378c8ef146be00")
        #expect(mac(Array("Jefe".utf8), Self.jefeData) == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        #expect(
            mac([UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50))
                == "125d7342b9ac11cd91a39af48aa17b4f63f175d3")
        #expect(mac([UInt8](repeating: 0xaa, count: 80), Self.largeKeyData) == "aa4ae5e15272d00e95705637ce8a3b55ed402112")
    }

    @Test("RFC 4231 §4.2, §4.3, §4.7: HMAC-SHA-256 test cases 1, 2 and 6")
    func rfc4231SHA256() {
        func mac(_ key: [UInt8], _ data: [UInt8]) -> String {
            Hex.encode(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(bytes: key)))
        }
        #expect(
            mac([UInt8](repeating: 0x0b, count: 20), Self.hiThere)
                == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(
            mac(Array("Jefe".utf8), Self.jefeData)
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(
            mac([UInt8](repeating: 0xaa, count: 131), Self.largeKeyData)
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test("RFC 4231 §4.2, §4.3, §4.7: HMAC-SHA-512 test cases 1, 2 and 6")
    func rfc4231SHA512() {
        func mac(_ key: [UInt8], _ data: [UInt8]) -> String {
            Hex.encode(HMAC<SHA512>.authenticationCode(for: data, using: SymmetricKey(bytes: key)))
        }
        #expect(
            mac([UInt8](repeating: 0x0b, count: 20), Self.hiThere)
                == "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                + "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854")
        #expect(
            mac(Array("Jefe".utf8), Self.jefeData)
                == "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                + "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737")
        #expect(
            mac([UInt8](repeating: 0xaa, count: 131), Self.largeKeyData)
                == "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
                + "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598")
    }

    @Test("Empty key and empty message (RFC 2104 pads the key with zeros)")
    func emptyInputs() {
        let mac = HMAC<SHA256>.authenticationCode(for: [], using: SymmetricKey(bytes: []))
        #expect(Hex.encode(mac) == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }

    /// Every key length around both block sizes (64, 128) and the digest sizes, messages
    /// around a block: the direct HMAC and digest (libcrypto's SHA functions, RFC 2104 written
    /// out in DirectDigest) must give what OpenSSL's EVP HMAC and EVP_Digest give.
    @Test("HMAC and digests over libcrypto's SHA functions equal OpenSSL's EVP results")
    func directEqualsEVP() {
        func check<H: HashFunction>(_: H.Type) -> [String] {
            var mismatches: [String] = []
            for keyLength in [0, 1, 19, 20, 21, 32, 63, 64, 65, 127, 128, 129, 200] {
                let key = SymmetricKey(bytes: (0..<keyLength).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
                for messageLength in [0, 1, 8, 55, 56, 63, 64, 65, 111, 112, 128, 300] {
                    let message = (0..<messageLength).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ keyLength) }
                    if HMAC<H>.authenticationCode(for: message, using: key)
                        != HMAC<H>.evpAuthenticationCode(for: message, using: key) {
                        mismatches.append("\(H.name) HMAC key \(keyLength) message \(messageLength)")
                    }
                    if keyLength == 0 && H.hash(message) != H.evpHash(message) {
                        mismatches.append("\(H.name) digest \(messageLength)")
                    }
                }
            }
            return mismatches
        }
        #expect(DirectDigest(Insecure.SHA1.self) == .sha1 && DirectDigest(SHA512.self) == .sha512)
        #expect(check(Insecure.SHA1.self) + check(SHA256.self) + check(SHA512.self) == [])
    }

    @Test("Digest sizes and names")
    func metadata() {
        #expect(Insecure.SHA1.digestByteCount == 20 && Insecure.SHA1.name == "sha1")
        #expect(SHA256.digestByteCount == 32 && SHA256.name == "sha256")
        #expect(SHA512.digestByteCount == 64 && SHA512.name == "sha512")
        #expect(HMAC<Insecure.SHA1>.authenticationCode(for: [1], using: SymmetricKey(bytes: [2])).count == 20)
        #expect(HMAC<SHA512>.authenticationCode(for: [1], using: SymmetricKey(bytes: [2])).count == 64)
    }

    @Test("SymmetricKey keeps a copy of its bytes")
    func symmetricKey() {
        var bytes: [UInt8] = [1, 2, 3]
        let key = SymmetricKey(bytes: bytes)
        secureZero(&bytes)
        #expect(bytes == [0, 0, 0])
        #expect(key.byteCount == 3)
        #expect(key.withUnsafeBytes { Array($0) } == [1, 2, 3])
        let empty = SymmetricKey(bytes: [])
        #expect(empty.byteCount == 0)
        #expect(empty.withUnsafeBytes { $0.count } == 0)
    }
}

@Suite("Constant-time comparison, hex, secureZero")
struct CryptoUtilityTests {
    @Test("constantTimeEquals")
    func constantTime() {
        #expect(constantTimeEquals([], []))
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([0, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(!constantTimeEquals([], [0]))
        #expect(constantTimeEquals(Array("123456".utf8), Array("123456".utf8)))
        #expect(!constantTimeEquals(Array("123456".utf8), Array("123457".utf8)))
    }

    @Test("Hex (RFC 4648 §10 base16 vectors)")
    func hex() {
        #expect(Hex.encode([]) == "")
        #expect(Hex.encode(Array("foobar".utf8)) == "666f6f626172")
        #expect(Hex.encode([0x00, 0xff, 0x0a]) == "00ff0a")
        #expect(Hex.decode("666F6F626172") == Array("foobar".utf8))
        #expect(Hex.decode("00ff0A") == [0x00, 0xff, 0x0a])
        #expect(Hex.decode("") == [])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.decode("0x00") == nil)
        #expect(Hex.decode(" 00") == nil)
    }

    @Test("secureZero")
    func zero() {
        var a: [UInt8] = [1, 2, 3, 4]
        secureZero(&a)
        #expect(a == [0, 0, 0, 0])
        var empty: [UInt8] = []
        secureZero(&empty)
        #expect(empty.isEmpty)
    }
}

@Suite("SecureRandom")
struct SecureRandomTests {
    @Test("bytes: requested length, not constant")
    func bytes() throws {
        #expect(try SecureRandom.bytes(count: 0) == [])
        #expect(try SecureRandom.bytes(count: 1).count == 1)
        let a = try SecureRandom.bytes(count: 32)
        let b = try SecureRandom.bytes(count: 32)
        #expect(a.count == 32)
        #expect(a != b)  // 2^-256 chance of a false failure
    }

    @Test("uniform(below:) stays in bounds and covers the range")
    func uniform() throws {
        #expect(try SecureRandom.uniform(below: 1) == 0)
        var seen = Set<UInt32>()
        for _ in 0 ..< 2000 {
            let r = try SecureRandom.uniform(below: 7)
            #expect(r < 7)
            seen.insert(r)
        }
        #expect(seen.count == 7)
        for bound: UInt32 in [2, 3, 10, 1000, 0x8000_0001, .max] {
            for _ in 0 ..< 200 {
                #expect(try SecureRandom.uniform(below: bound) < bound)
            }
        }
    }

    @Test("digits(count:): length, alphabet, and a loose uniformity check")
    func digits() throws {
        #expect(try SecureRandom.digits(count: 0) == "")
        for n in [1, 6, 8, 100] {
            let s = try SecureRandom.digits(count: n)
            #expect(s.utf8.count == n)
            #expect(s.utf8.allSatisfy { (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains($0) })
        }
        // 1,000,000 digits: each should appear ~100,000 times with σ ≈ 300. A
        // ±2,000 band (≈ 6.7σ) makes a false failure negligible, yet catches the
        // classic bias of taking a byte mod 10 without rejection (0...5 would
        // each appear ~101,600 times and 6...9 ~97,700).
        var counts = [Int](repeating: 0, count: 10)
        for c in try SecureRandom.digits(count: 1_000_000).utf8 {
            counts[Int(c - UInt8(ascii: "0"))] += 1
        }
        #expect(counts.allSatisfy { (98_000 ... 102_000).contains($0) }, "counts: \(counts)")
    }
}
