import WatchwordCore

/// The database schema, as numbered migrations. `watchword store init` and `store migrate`
/// apply those not yet applied, in one transaction, under an exclusive lock on
/// `watchword_schema`, so two hosts running them at once cannot both apply one.
public enum Schema {
    /// Migration N (1-based) brings the schema from version N-1 to N. Append only: never
    /// edit one that has shipped.
    static let migrations: [[String]] = [
        [
            // One row per enrolled user: the same text as the file store's users/NAME.
            """
            CREATE TABLE users (
                name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 256),
                record text NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now())
            """,
            // The fleet's recovery-code key (hex), shared by every host.
            "CREATE TABLE settings (name text PRIMARY KEY, value text NOT NULL)",
            // Texts sent for all users (sms.max_per_hour_total): one row.
            """
            CREATE TABLE sms_global (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                state text NOT NULL)
            """,
            "INSERT INTO sms_global (state) VALUES ('')",
            // The audit trail of every host: the same JSON lines as DIR/audit.log.
            """
            CREATE TABLE audit (
                id bigserial PRIMARY KEY,
                time bigint NOT NULL,
                username text,
                line text NOT NULL)
            """,
            "CREATE INDEX audit_username_time ON audit (username, time)",
        ],
        [
            // Version 2: which host each audit line came from (the line's "host"), so one
            // host's events can be found. Rows from version 1 keep a null host.
            "ALTER TABLE audit ADD COLUMN host text",
            "CREATE INDEX audit_host_time ON audit (host, time)",
        ],
    ]

    public static var latest: Int { migrations.count }

    public struct Outcome: Sendable {
        public let from: Int?
        public let to: Int
    }

    /// Brings the schema to the latest version. Without `create`, a database with no schema
    /// is an error (`store migrate` on the wrong database should not quietly make tables).
    public static func migrate(_ store: PostgresStore, create: Bool) throws(StoreError) -> Outcome {
        let db = try store.rawConnection()
        func exec(_ sql: String, _ params: [String?] = []) throws(StoreError) -> [Row] {
            do {
                return try db.execute(sql, params)
            } catch {
                throw PostgresStore.storeError(error)
            }
        }
        _ = try exec("BEGIN")
        var committed = false
        defer { if !committed { _ = try? db.execute("ROLLBACK") } }
        _ = try exec(
            """
            CREATE TABLE IF NOT EXISTS watchword_schema (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                version integer NOT NULL)
            """)
        _ = try exec("LOCK TABLE watchword_schema IN ACCESS EXCLUSIVE MODE")
        let rows = try exec("SELECT version FROM watchword_schema")
        var version: Int? = nil
        if let text = rows.first?.first ?? nil {
            guard let v = Int(text) else { throw .unsupported("watchword_schema holds no version") }
            version = v
        }
        if version == nil && !create {
            throw .unsupported("the database has no watchword schema: run 'watchword store init'")
        }
        let from = version
        let start = version ?? 0
        guard start <= latest else {
            throw .unsupported(
                "the database schema is version \(start), newer than this build knows (\(latest)): upgrade watchword")
        }
        if start < latest {
            for migration in migrations[start...] {
                for statement in migration { _ = try exec(statement) }
            }
            if version == nil {
                _ = try exec("INSERT INTO watchword_schema (version) VALUES ($1)", [String(latest)])
            } else {
                _ = try exec("UPDATE watchword_schema SET version = $1", [String(latest)])
            }
        }
        _ = try exec("COMMIT")
        committed = true
        return Outcome(from: from, to: latest)
    }
}
