import Testing

@testable import WatchwordPostgres

#if canImport(Glibc)
import Glibc
#endif

/// The conninfo policy: libpq parses, watchword's rules decide (see ConnectionPlan).
@Suite struct ConnectionPlanTests {
    /// A root-owned CA stand-in (the plan checks only ownership and mode, not contents).
    static func rootFile(_ mode: mode_t = 0o644, _ name: String = #function) -> String {
        let tag = String(name.prefix { $0.isLetter })
        let path = "/tmp/ww-plan-test-\(getpid())-\(tag)-\(mode).crt"
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, mode)
        close(fd)
        chmod(path, mode)
        return path
    }

    func plan(_ conninfo: String) throws -> ConnectionPlan {
        try ConnectionPlan.make(
            conninfo: conninfo, pq: try Libpq.shared(), connectTimeout: 10, applicationName: "t", serverOptions: "-c x=1")
    }

    func refused(_ conninfo: String, _ words: String...) {
        do {
            _ = try plan(conninfo)
            Issue.record("accepted: \(conninfo)")
        } catch {
            let text = "\(error)"
            #expect(text.contains("store.postgres.conninfo"), "\(text)")
            for word in words { #expect(text.contains(word), "\(conninfo): \(text)") }
        }
    }

    @Test func verifyFullWithARootCertIsTheRule() throws {
        let ca = Self.rootFile()
        defer { unlink(ca) }
        let p = try plan("host=db1,db2 port=5432,5433 dbname=ww user='watch word' sslrootcert=\(ca)")
        #expect(p.sslmode == "verify-full" && p.sslrootcert == ca)
        #expect(p.hosts.map(\.label) == ["db1:5432", "db2:5433"])
        let params = Dictionary(p.parameters(for: p.hosts[1], password: "pw"), uniquingKeysWith: { a, _ in a })
        #expect(params["user"] == "watch word" && params["host"] == "db2" && params["port"] == "5433")
        #expect(params["sslmode"] == "verify-full" && params["sslrootcert"] == ca && params["password"] == "pw")
        #expect(params["passfile"] == ConnectionPlan.nowhere && params["gssencmode"] == "disable")
        #expect(params["sslcert"] == ConnectionPlan.nowhere && params["sslkey"] == ConnectionPlan.nowhere)
        #expect(params["sslcrl"] == ConnectionPlan.nowhere && params["options"] == "-c x=1")
        #expect(try plan("host=db sslmode=verify-ca sslrootcert=\(ca)").sslmode == "verify-ca")
    }

    @Test func weakModesAndMissingOrLooseRootCertsAreRefused() {
        let ca = Self.rootFile()
        let loose = Self.rootFile(0o666)
        defer {
            unlink(ca)
            unlink(loose)
        }
        for mode in ["disable", "allow", "prefer", "require"] {
            refused("host=db user=u sslmode=\(mode) sslrootcert=\(ca)", "sslmode=\(mode)")
        }
        refused("host=db user=u", "sslrootcert")
        refused("host=db user=u sslmode=verify-ca", "sslrootcert")
        refused("host=db user=u sslrootcert=relative.crt", "absolute")
        refused("host=db user=u sslrootcert=system", "absolute")
        refused("host=db user=u sslrootcert=/nonexistent/ca.crt", "sslrootcert")
        refused("host=db user=u sslrootcert=\(loose)", "sslrootcert", "not writable")
        refused("hostaddr=192.0.2.1 user=u sslmode=require", "sslmode=require")
        // One weak host spoils the list.
        refused("host=/var/run/postgresql,db user=u sslmode=prefer", "sslmode=prefer")
    }

    @Test func secretsServicesAndReadOnlyTargetsAreRefused() {
        let ca = Self.rootFile(0o640)
        defer { unlink(ca) }
        refused("host=db user=u sslrootcert=\(ca) password=x", "password_file")
        refused("host=db user=u sslrootcert=\(ca) passfile=/root/.pgpass", "passfile")
        refused("host=db user=u sslrootcert=\(ca) service=ww", "service")
        refused("host=db user=u sslrootcert=\(ca) gssencmode=prefer", "gssencmode")
        for target in ["read-only", "standby", "prefer-standby"] {
            refused("host=db user=u sslrootcert=\(ca) target_session_attrs=\(target)", "target_session_attrs")
        }
        // libpq's own parser: unknown keywords and bad quoting are its errors.
        refused("host=db user=u sslrootcert=\(ca) nosuchkeyword=1", "nosuchkeyword")
        refused("host='db user=u", "")
        refused("host=db,db2 port=1,2,3 user=u sslrootcert=\(ca)", "port")
        refused("host=db user=u sslrootcert=\(ca) channel_binding=maybe", "channel_binding")
        refused("host=db user=u sslrootcert=\(ca) ssl_min_protocol_version=SSLv3", "ssl_min_protocol_version")
        #expect(throws: Never.self) { try plan("host=db user=u sslrootcert=\(ca) channel_binding=require") }
    }

    @Test func socketDirectoriesMustBeTrusted() throws {
        let dir = "/tmp/ww-plan-sock-\(getpid())"
        mkdir(dir, 0o755)
        defer { rmdir(dir) }
        let p = try plan("host=\(dir) user=u")
        #expect(p.hosts[0].isSocket)
        let params = Dictionary(p.parameters(for: p.hosts[0], password: nil), uniquingKeysWith: { a, _ in a })
        #expect(params["sslmode"] == "disable" && params["password"] == nil)
        chmod(dir, 0o777)
        refused("host=\(dir) user=u", "writable by others")
        chmod(dir, 0o775)
        chown(dir, 0, 1000)
        refused("host=\(dir) user=u", "writable by group")
        chown(dir, 1000, 0)
        chmod(dir, 0o755)
        refused("host=\(dir) user=u", "owned by uid 1000")
        refused("host=@abstract user=u", "abstract")
    }
}
