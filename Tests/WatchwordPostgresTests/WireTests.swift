import Testing
import WatchwordCrypto
@testable import WatchwordPostgres

/// The pieces of the PostgreSQL client that need no server: SCRAM against RFC 7677's
/// exchange, conninfo parsing, and the parsers of what the server sends.
@Suite struct WireTests {
    @Test func scramMatchesRFC7677() throws {
        var scram = SCRAM(password: Array("pencil".utf8), nonce: "rOprNGfwEbeRWgbNEkqO", userName: "user")
        #expect(String(decoding: scram.clientFirst(), as: UTF8.self) == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        let serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        let final = try scram.clientFinal(serverFirst: Array(serverFirst.utf8))
        #expect(
            String(decoding: final, as: UTF8.self)
                == "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        try scram.verifyServerFinal(Array("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".utf8))
        #expect(scram.serverVerified)
    }

    @Test func aServerThatDoesNotKnowThePasswordIsRefused() throws {
        var scram = SCRAM(password: Array("pencil".utf8), nonce: "rOprNGfwEbeRWgbNEkqO", userName: "user")
        _ = scram.clientFirst()
        _ = try scram.clientFinal(
            serverFirst: Array("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".utf8))
        #expect(throws: DatabaseError.self) {
            try scram.verifyServerFinal(Array("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".utf8))
        }
        #expect(!scram.serverVerified)
    }

    @Test(arguments: [
        "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // not our nonce
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // nothing added by the server
        "r=rOprNGfwEbeRWgbNEkqOxx,s=!!!,i=4096",  // salt not base64
        "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",
        "",
    ])
    func malformedServerFirstMessagesAreRefused(_ text: String) {
        var scram = SCRAM(password: Array("pencil".utf8), nonce: "rOprNGfwEbeRWgbNEkqO", userName: "user")
        _ = scram.clientFirst()
        #expect(throws: DatabaseError.self) { _ = try scram.clientFinal(serverFirst: Array(text.utf8)) }
    }

    @Test func base64AndPBKDF2KnownAnswers() {
        #expect(Base64.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64.encode(Array("fooba".utf8)) == "Zm9vYmE=")
        #expect(Base64.encode(Array("foob".utf8)) == "Zm9vYg==")
        #expect(Base64.decode("Zm9vYg==") == Array("foob".utf8))
        for bad in ["Zm9vYg=", "Zm9v Yg==", "Zm=vYg==", "Zm9vYg=A"] { #expect(Base64.decode(bad) == nil) }
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64).
        let derived = PBKDF2<SHA256>.derive(password: Array("passwd".utf8), salt: Array("salt".utf8), iterations: 1, count: 64)
        #expect(Hex.encode(derived).hasPrefix("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"))
    }

    @Test func conninfoIsParsedStrictly() throws {
        let o = try ConnectionOptions(
            conninfo: "host=db.example.org,db2.example.org port=5433 dbname=ww user='watch word' sslmode=verify-full sslrootcert=/etc/ca.crt")
        #expect(o.hosts == ["db.example.org", "db2.example.org"])
        #expect(o.port(for: 1) == 5433)
        #expect(o.dbname == "ww" && o.user == "watch word" && o.sslmodeName == "verify-full" && o.sslrootcert == "/etc/ca.crt")
        let local = try ConnectionOptions(conninfo: "user=watchword")
        #expect(local.hosts == ["/var/run/postgresql"] && local.dbname == "watchword" && local.sslmodeName == "prefer")
        for bad in [
            "host=db user=ww password=secret", "host=db", "host=db user=ww sslmode=maybe", "host=db user=ww port=0",
            "host=db user=ww port=1,2", "host=db user=ww frobnicate=1", "host=db user=ww user=other",
            "host=db user='ww", "host=db user=ww dbname=a\u{1}b", "postgresql://ww@db/ww", "host=,db user=ww",
        ] {
            #expect(throws: DatabaseError.self, "\(bad)") { _ = try ConnectionOptions(conninfo: bad) }
        }
    }

    @Test func serverMessagesAreParsedWithinTheirBounds() throws {
        // DataRow: 2 columns, "ab" and NULL.
        let row: [UInt8] = [0, 2, 0, 0, 0, 2, 0x61, 0x62, 0xFF, 0xFF, 0xFF, 0xFF]
        #expect(try DatabaseConnection.dataRow(row[...]) == ["ab", nil])
        for bad: [UInt8] in [[0], [0, 1], [0, 1, 0, 0, 0, 9, 0x61], [0, 1, 0, 0, 0, 1, 0xFF]] {
            #expect(throws: DatabaseError.self) { _ = try DatabaseConnection.dataRow(bad[...]) }
        }
        let error = DatabaseConnection.serverError(Array("SERROR\0VERROR\0C42P01\0Mno such\ntable\0\0".utf8)[...])
        #expect(error.sqlState == "42P01")
        #expect(error.message == "database: ERROR: no such table")
        // Every field is kept to one line (the fuzzer found a severity with a newline).
        let forged = DatabaseConnection.serverError(Array("VERRO\nforged: line\0C42P01\0Mx\0\0".utf8)[...])
        #expect(!forged.message.contains("\n"))
        // Truncated or unterminated fields never read past the end.
        _ = DatabaseConnection.serverError(Array("SERROR\0Mcut".utf8)[...])
        _ = DatabaseConnection.serverError([])
    }
}
