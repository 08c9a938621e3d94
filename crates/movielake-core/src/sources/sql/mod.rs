//! The platform's SQL database of users and subscriptions (issue 16), sans IO: the tables, the
//! SQL text each dialect runs to read what changed, and the watermark rules that make repeated
//! pulls lose nothing (`watermark`). The adapters that run this text live in the binary crate.
//!
//! Each dialect uses the strongest change signal it has:
//! - SQL Server / Azure SQL: a `rowversion` column, read in the half-open range
//!   `[last ceiling, MIN_ACTIVE_ROWVERSION())`. Values at or above `MIN_ACTIVE_ROWVERSION()` may
//!   still belong to uncommitted transactions; below it everything is committed, so the range
//!   is exact and needs no overlap ("If an application uses @@DBTS rather than
//!   MIN_ACTIVE_ROWVERSION, it is possible to miss changes that are active when synchronization
//!   occurs", Microsoft's MIN_ACTIVE_ROWVERSION reference).
//! - PostgreSQL and SQLite: `(updated_at, key)` past the watermark, up to a ceiling the
//!   database computes (its clock minus a safety lag; on PostgreSQL also no later than the start
//!   of the oldest open transaction, since `now()` is the transaction's start time and such a
//!   transaction may still commit rows stamped that early), re-reading an overlap window so
//!   that a change committed late is still seen; re-read rows are recognised by key and change
//!   time and dropped.

pub mod bronze;
pub mod sample;
pub mod scd;
pub mod watermark;

/// A source table: its name, primary key and columns, in the order every dialect selects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlTable {
    pub name: &'static str,
    pub key: &'static str,
    pub columns: &'static [&'static str],
}

pub const USERS: SqlTable = SqlTable {
    name: "users",
    key: "user_id",
    columns: &[
        "user_id",
        "email",
        "display_name",
        "country",
        "created_at",
        "updated_at",
        "deleted_at",
    ],
};

pub const SUBSCRIPTIONS: SqlTable = SqlTable {
    name: "subscriptions",
    key: "subscription_id",
    columns: &[
        "subscription_id",
        "user_id",
        "plan",
        "status",
        "started_at",
        "ends_at",
        "monthly_price",
        "currency",
        "updated_at",
    ],
};

pub const TABLES: [SqlTable; 2] = [USERS, SUBSCRIPTIONS];

/// The column every timestamp dialect reads changes by.
pub const UPDATED_AT: &str = "updated_at";
/// SQL Server's change column (`rowversion`), selected as a `bigint`.
pub const ROW_VERSION: &str = "row_version";

/// SQL Server's select list: `datetime2` columns as ISO 8601 text marked UTC (style 126; NULL
/// stays NULL), everything else as it is.
fn sqlserver_columns(table: &SqlTable) -> String {
    table
        .columns
        .iter()
        .map(|c| {
            if TIMESTAMPS.contains(c) {
                format!("CONVERT(nvarchar(30), {c}, 126) + N'Z' AS {c}")
            } else {
                c.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The tables' `datetime2` / `timestamptz` columns.
pub const TIMESTAMPS: &[&str] = &["created_at", "updated_at", "deleted_at", "started_at", "ends_at"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    SqlServer,
    Postgres,
    Sqlite,
}

/// How a dialect's pulls know what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSignal {
    /// A database-wide counter bumped by every write (`rowversion`): exact half-open ranges.
    RowVersion,
    /// A timestamp the writer sets: a ceiling below the database's clock, and an overlap.
    UpdatedAt,
}

impl Dialect {
    /// The tables' DDL in this dialect (idempotent where the dialect allows).
    pub fn ddl(self) -> &'static str {
        match self {
            Dialect::SqlServer => include_str!("ddl/sqlserver.sql"),
            Dialect::Postgres => include_str!("ddl/postgres.sql"),
            Dialect::Sqlite => include_str!("ddl/sqlite.sql"),
        }
    }

    pub fn signal(self) -> ChangeSignal {
        match self {
            Dialect::SqlServer => ChangeSignal::RowVersion,
            Dialect::Postgres | Dialect::Sqlite => ChangeSignal::UpdatedAt,
        }
    }

    /// One page of the rows of `table` changed in a pull's window, at most `limit`, ordered by
    /// change then key. Timestamp dialects take three parameters: the window's lower bound
    /// (inclusive), its ceiling (inclusive) and the key after which rows at the lower bound
    /// count (`''` on a window's first page: keys are never empty), so a page ends anywhere,
    /// even inside a run of equal times, and the next one starts just past it.
    ///
    /// SQL Server is read by row version, `[from, to)`: the ceiling may be uncommitted. Its
    /// bounds are integers written into the text (`CONVERT(binary(8), …)` of a `bigint` is the
    /// big-endian `rowversion`), so the statement goes as a plain batch; its times come back as
    /// ISO 8601 text in UTC (the DDL's `SYSUTCDATETIME()` convention), the server's own
    /// rendering, whatever the driver would make of a `datetime2`.
    pub fn changes_sql(self, table: &SqlTable, limit: usize) -> String {
        let (name, key) = (table.name, table.key);
        match self {
            Dialect::SqlServer => format!(
                "SELECT TOP ({limit}) {columns}, CONVERT(bigint, {ROW_VERSION}) AS {ROW_VERSION} FROM dbo.{name} \
                 WHERE {ROW_VERSION} >= CONVERT(binary(8), CAST({{from}} AS bigint)) \
                 AND {ROW_VERSION} < CONVERT(binary(8), CAST({{to}} AS bigint)) ORDER BY {ROW_VERSION}",
                columns = sqlserver_columns(table),
            ),
            Dialect::Postgres => format!(
                "SELECT {columns} FROM {name} WHERE {UPDATED_AT} >= $1 AND {UPDATED_AT} <= $2 \
                 AND ({UPDATED_AT} > $1 OR {key} > $3) ORDER BY {UPDATED_AT}, {key} LIMIT {limit}",
                columns = table.columns.join(", "),
            ),
            Dialect::Sqlite => format!(
                "SELECT {columns} FROM {name} WHERE {UPDATED_AT} >= ?1 AND {UPDATED_AT} <= ?2 \
                 AND ({UPDATED_AT} > ?1 OR {key} > ?3) ORDER BY {UPDATED_AT}, {key} LIMIT {limit}",
                columns = table.columns.join(", "),
            ),
        }
    }

    /// SQL Server's page query for one version range (see `changes_sql`).
    pub fn sqlserver_changes(table: &SqlTable, limit: usize, from: i64, to: i64) -> String {
        Dialect::SqlServer
            .changes_sql(table, limit)
            .replace("{from}", &from.to_string())
            .replace("{to}", &to.to_string())
    }

    /// Every key of `table` now: a full key comparison finds the keys deleted outright (a hard
    /// delete leaves no row to read changes from).
    pub fn keys_sql(self, table: &SqlTable) -> String {
        let (name, key) = (table.name, table.key);
        match self {
            Dialect::SqlServer => format!("SELECT {key} FROM dbo.{name}"),
            Dialect::Postgres | Dialect::Sqlite => format!("SELECT {key} FROM {name}"),
        }
    }

    /// One row, one column: the highest change value a pull may read up to, computed by the
    /// database itself (its clock, not ours). Timestamp dialects stay `lag_seconds` behind it.
    pub fn ceiling_sql(self, lag_seconds: u32) -> String {
        match self {
            // Two columns: the row-version ceiling, and the clock (less the lag) that dates
            // the extract and the key comparisons.
            Dialect::SqlServer => format!(
                "SELECT CONVERT(bigint, MIN_ACTIVE_ROWVERSION()) AS ceiling, \
                 CONVERT(nvarchar(30), DATEADD(second, -{lag_seconds}, SYSUTCDATETIME()), 126) + N'Z' AS at"
            ),
            // pg_stat_activity shows other roles' transactions only to roles with
            // pg_read_all_stats; without it the lag and the overlap are the guard.
            Dialect::Postgres => format!(
                "SELECT LEAST(now() - make_interval(secs => {lag_seconds}), \
                 COALESCE((SELECT min(xact_start) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND xact_start IS NOT NULL), 'infinity'::timestamptz))"
            ),
            // One writer at a time: a change is committed when it is visible.
            Dialect::Sqlite => format!("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{lag_seconds} seconds')"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dialect_reads_changes_in_change_then_key_order_page_by_page() {
        insta::assert_snapshot!(Dialect::Postgres.changes_sql(&USERS, 100), @"SELECT user_id, email, display_name, country, created_at, updated_at, deleted_at FROM users WHERE updated_at >= $1 AND updated_at <= $2 AND (updated_at > $1 OR user_id > $3) ORDER BY updated_at, user_id LIMIT 100");
        insta::assert_snapshot!(Dialect::Sqlite.changes_sql(&SUBSCRIPTIONS, 100), @"SELECT subscription_id, user_id, plan, status, started_at, ends_at, monthly_price, currency, updated_at FROM subscriptions WHERE updated_at >= ?1 AND updated_at <= ?2 AND (updated_at > ?1 OR subscription_id > ?3) ORDER BY updated_at, subscription_id LIMIT 100");
        insta::assert_snapshot!(Dialect::sqlserver_changes(&USERS, 100, 7, 42), @"SELECT TOP (100) user_id, email, display_name, country, CONVERT(nvarchar(30), created_at, 126) + N'Z' AS created_at, CONVERT(nvarchar(30), updated_at, 126) + N'Z' AS updated_at, CONVERT(nvarchar(30), deleted_at, 126) + N'Z' AS deleted_at, CONVERT(bigint, row_version) AS row_version FROM dbo.users WHERE row_version >= CONVERT(binary(8), CAST(7 AS bigint)) AND row_version < CONVERT(binary(8), CAST(42 AS bigint)) ORDER BY row_version");
    }

    #[test]
    fn every_dialects_ddl_creates_every_column_the_pulls_select() {
        for dialect in [Dialect::SqlServer, Dialect::Postgres, Dialect::Sqlite] {
            let ddl = dialect.ddl();
            for table in TABLES {
                let start = ddl.find(&format!("{} (", table.name)).expect("table in the DDL");
                let body = &ddl[start..start + ddl[start..].find(");").expect("end of table")];
                for column in table.columns {
                    assert!(
                        body.contains(&format!("\n    {column} ")),
                        "{dialect:?} {}: {column}",
                        table.name
                    );
                }
                let signal = if dialect == Dialect::SqlServer {
                    ROW_VERSION
                } else {
                    UPDATED_AT
                };
                assert!(body.contains(signal), "{dialect:?} {}", table.name);
            }
        }
    }

    #[test]
    fn the_ceiling_comes_from_the_database_and_sql_server_never_reads_past_active_versions() {
        insta::assert_snapshot!(Dialect::SqlServer.ceiling_sql(30), @"SELECT CONVERT(bigint, MIN_ACTIVE_ROWVERSION()) AS ceiling, CONVERT(nvarchar(30), DATEADD(second, -30, SYSUTCDATETIME()), 126) + N'Z' AS at");
        let pg = Dialect::Postgres.ceiling_sql(30);
        assert!(
            pg.contains("now() - make_interval(secs => 30)") && pg.contains("min(xact_start)"),
            "{pg}"
        );
        assert!(Dialect::Sqlite.ceiling_sql(5).contains("'-5 seconds'"));
        assert_eq!(Dialect::SqlServer.signal(), ChangeSignal::RowVersion);
        assert_eq!(Dialect::Postgres.signal(), ChangeSignal::UpdatedAt);
    }
}
