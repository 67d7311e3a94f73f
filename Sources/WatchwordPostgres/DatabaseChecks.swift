#if canImport(Glibc)
import Glibc
#endif
import WatchwordCore

/// `doctor`'s checks of the shared database.
public func checkFleetDatabase(_ config: Config, stateDirectory: String) -> (findings: [Finding], records: [UserRecord]?) {
    var findings: [Finding] = []
    let store = PostgresStore(settings: DatabaseSettings(config.store))
    // The rules first: a conninfo that lets an impostor answer is a FAIL even when the
    // database answers now.
    let plan: ConnectionPlan
    do {
        plan = try store.settings.plan()
    } catch {
        findings.append(Finding(.fail, "store.conninfo", "\(error): logins are denied"))
        return (findings, nil)
    }
    for host in plan.hosts {
        if host.isSocket {
            findings.append(Finding(.ok, "store.tls", "\(host.host): unix socket in a directory only root and system accounts can write: no TLS needed"))
        } else if plan.sslmode == "verify-full" {
            findings.append(Finding(.ok, "store.tls", "\(host.label): TLS, certificate checked against \(plan.sslrootcert) and the name \(host.host.isEmpty ? host.hostaddr : host.host) verified (sslmode=verify-full)"))
        } else {
            findings.append(Finding(.ok, "store.tls", "\(host.label): TLS, certificate checked against the private CA \(plan.sslrootcert) (sslmode=verify-ca: any certificate that CA signed is accepted, whatever its name)"))
        }
    }
    let db: DatabaseConnection
    do {
        db = try store.rawConnection()
    } catch {
        let offline = config.store.postgresOffline == .cached
        if offline, case .unreachable = error {
            findings.append(Finding(.fail, "store.connect", "\(error): logins are checked against each host's offline cache"))
        } else {
            findings.append(Finding(.fail, "store.connect", "\(error): logins are denied"))
        }
        return (findings, nil)
    }
    var connected = "connected to PostgreSQL \(db.serverVersion / 10000).\(db.serverVersion % 10000)"
    if db.usesTLS {
        let what = [db.tlsAttribute("protocol"), db.tlsAttribute("cipher")].compactMap { $0 }.joined(separator: ", ")
        connected += " over TLS (\(what))"
    }
    findings.append(Finding(.ok, "store.connect", connected))

    var records: [UserRecord]? = nil
    do {
        try store.connect()
        findings.append(Finding(.ok, "store.schema", "schema version \(PostgresStore.schemaVersion), as this build expects"))
        records = try store.allRecords()
    } catch {
        findings.append(Finding(.fail, "store.schema", "\(error): logins are denied"))
    }

    do {
        let before = Double(unixTimeNow())
        let dbTime = try store.databaseTime()
        let skew = dbTime - before
        let shown = "\(Int(skew.rounded())) s"
        if abs(skew) > 30 {
            findings.append(Finding(.fail, "store.clock", "this host's clock is \(shown) off the database's: hosts disagree on the TOTP time step; fix NTP"))
        } else if abs(skew) > 5 {
            findings.append(Finding(.warn, "store.clock", "this host's clock is \(shown) off the database's"))
        } else {
            findings.append(Finding(.ok, "store.clock", "within \(max(Int(abs(skew).rounded()), 1)) s of the database's clock"))
        }
    } catch {
        findings.append(Finding(.warn, "store.clock", "cannot read the database's clock: \(error)"))
    }

    if config.store.postgresOffline == .cached {
        do {
            let cache = OfflineCache(root: try SecureDirectory.open(stateDirectory))
            let cached = try cache.cachedUsers().count
            let pending = try cache.pendingUsers().count
            let total = records?.count ?? 0
            if pending > 0 {
                findings.append(Finding(.warn, "store.cache", "\(pending) user(s) have offline events not yet sent to the database: run 'watchword store refresh-cache'"))
            } else if cached < total {
                findings.append(Finding(.warn, "store.cache", "\(cached) of \(total) users cached on this host: the others are denied while the database is down; run 'watchword store refresh-cache' from cron"))
            } else {
                findings.append(Finding(.ok, "store.cache", "offline cache holds all \(cached) users"))
            }
        } catch {
            findings.append(Finding(.warn, "store.cache", "offline cache unusable: \(error): logins are denied while the database is down"))
        }
    }
    return (findings, records)
}
