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

    /// The rows of `table` changed in a pull's window, ordered by change then key. Two
    /// parameters: the window's lower bound (inclusive) and its ceiling (inclusive for
    /// timestamps; exclusive for row versions, whose ceiling may be uncommitted).
    pub fn changes_sql(self, table: &SqlTable) -> String {
        let columns = table.columns.join(", ");
        let (name, key) = (table.name, table.key);
        match self {
            Dialect::SqlServer => format!(
                "SELECT {columns}, CONVERT(bigint, {ROW_VERSION}) AS {ROW_VERSION} FROM dbo.{name} \
                 WHERE {ROW_VERSION} >= CONVERT(rowversion, @P1) AND {ROW_VERSION} < CONVERT(rowversion, @P2) \
                 ORDER BY {ROW_VERSION}, {key}"
            ),
            Dialect::Postgres => format!(
                "SELECT {columns} FROM {name} WHERE {UPDATED_AT} >= $1 AND {UPDATED_AT} <= $2 \
                 ORDER BY {UPDATED_AT}, {key}"
            ),
            Dialect::Sqlite => format!(
                "SELECT {columns} FROM {name} WHERE {UPDATED_AT} >= ?1 AND {UPDATED_AT} <= ?2 \
                 ORDER BY {UPDATED_AT}, {key}"
            ),
        }
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
            Dialect::SqlServer => "SELECT CONVERT(bigint, MIN_ACTIVE_ROWVERSION())".to_string(),
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
    fn every_dialect_reads_changes_in_change_then_key_order_within_two_bounds() {
        insta::assert_snapshot!(Dialect::Postgres.changes_sql(&USERS), @"SELECT user_id, email, display_name, country, created_at, updated_at, deleted_at FROM users WHERE updated_at >= $1 AND updated_at <= $2 ORDER BY updated_at, user_id");
        insta::assert_snapshot!(Dialect::Sqlite.changes_sql(&SUBSCRIPTIONS), @"SELECT subscription_id, user_id, plan, status, started_at, ends_at, monthly_price, currency, updated_at FROM subscriptions WHERE updated_at >= ?1 AND updated_at <= ?2 ORDER BY updated_at, subscription_id");
        insta::assert_snapshot!(Dialect::SqlServer.changes_sql(&USERS), @"SELECT user_id, email, display_name, country, created_at, updated_at, deleted_at, CONVERT(bigint, row_version) AS row_version FROM dbo.users WHERE row_version >= CONVERT(rowversion, @P1) AND row_version < CONVERT(rowversion, @P2) ORDER BY row_version, user_id");
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
        assert_eq!(
            Dialect::SqlServer.ceiling_sql(30),
            "SELECT CONVERT(bigint, MIN_ACTIVE_ROWVERSION())"
        );
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
