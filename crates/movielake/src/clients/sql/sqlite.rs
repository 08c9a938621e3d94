//! The SQLite adapter of the SQL source port: the embedded default, so that the source runs
//! with no server (`movielake run`'s sample database, a laptop). `rusqlite` with SQLite bundled;
//! its calls block, so each runs on tokio's blocking pool.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use movielake_core::sources::sql::watermark::{Ceiling, Window};
use movielake_core::sources::sql::{Dialect, SqlTable};

use super::{PulledRow, SqlError, SqlSource, decode_row};

pub struct Sqlite {
    connection: Arc<Mutex<rusqlite::Connection>>,
}

/// The DDL's text form of a time: RFC 3339, UTC, milliseconds (text order is time order).
fn text(t: DateTime<Utc>) -> String {
    let floor = DateTime::<Utc>::from_timestamp(-62_135_596_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    t.max(floor).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn refused(e: rusqlite::Error) -> SqlError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
            ) =>
        {
            SqlError::Unreachable(e.to_string())
        }
        e => SqlError::Refused(e.to_string()),
    }
}

impl Sqlite {
    /// Opens (creating it if need be) the database file at `path`.
    pub async fn open(path: &std::path::Path) -> Result<Sqlite, SqlError> {
        let path = path.to_path_buf();
        let connection = tokio::task::spawn_blocking(move || rusqlite::Connection::open(&path))
            .await
            .map_err(|e| SqlError::Unreachable(e.to_string()))?
            .map_err(|e| SqlError::Unreachable(e.to_string()))?;
        Ok(Sqlite {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let guard = connection
                .lock()
                .map_err(|_| SqlError::Unreachable("the connection's lock was poisoned".into()))?;
            f(&guard)
        })
        .await
        .map_err(|e| SqlError::Unreachable(e.to_string()))?
    }

    /// Runs `sql` (several statements allowed): the DDL, sample data, changes.
    pub async fn execute(&self, sql: &str) -> Result<(), SqlError> {
        let sql = sql.to_string();
        self.with(move |c| c.execute_batch(&sql).map_err(refused)).await
    }

    /// Runs `statements` in one transaction.
    pub async fn execute_all(&self, statements: Vec<String>) -> Result<(), SqlError> {
        self.with(move |c| {
            c.execute_batch("BEGIN").map_err(refused)?;
            for s in &statements {
                if let Err(e) = c.execute_batch(s) {
                    let _ = c.execute_batch("ROLLBACK");
                    return Err(refused(e));
                }
            }
            c.execute_batch("COMMIT").map_err(refused)
        })
        .await
    }
}

#[async_trait]
impl SqlSource for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn ceiling(&self, lag: Duration) -> Result<Ceiling, SqlError> {
        let lag = u32::try_from(lag.num_seconds().max(0)).unwrap_or(u32::MAX);
        let value: String = self
            .with(move |c| {
                c.query_row(&Dialect::Sqlite.ceiling_sql(lag), [], |r| r.get(0))
                    .map_err(refused)
            })
            .await?;
        DateTime::parse_from_rfc3339(&value)
            .map(|t| Ceiling::at(t.with_timezone(&Utc)))
            .map_err(|e| SqlError::Refused(format!("the database's clock read '{value}': {e}")))
    }

    async fn changes(&self, table: &SqlTable, window: &Window, limit: usize) -> Result<Vec<PulledRow>, SqlError> {
        // Each row as SQLite's own JSON (json_object): numbers stay numbers, nulls stay null.
        let pairs: Vec<String> = table.columns.iter().map(|c| format!("'{c}', c.{c}")).collect();
        let sql = format!(
            "SELECT json_object({}) FROM ({}) c",
            pairs.join(", "),
            Dialect::Sqlite.changes_sql(table, limit)
        );
        let (from, to, table) = (text(window.from), text(window.to), *table);
        let after = window.after_key.clone().unwrap_or_default();
        self.with(move |c| {
            let mut statement = c.prepare(&sql).map_err(refused)?;
            let rows = statement
                .query_map([&from, &to, &after], |r| r.get::<_, String>(0))
                .map_err(refused)?;
            rows.map(|r| r.map_err(refused).and_then(|text| decode_row(&table, &text)))
                .collect()
        })
        .await
    }

    async fn keys(&self, table: &SqlTable) -> Result<Vec<String>, SqlError> {
        let sql = format!(
            "SELECT CAST(c.{} AS TEXT) FROM ({}) AS c",
            table.key,
            Dialect::Sqlite.keys_sql(table)
        );
        self.with(move |c| {
            let mut statement = c.prepare(&sql).map_err(refused)?;
            let rows = statement.query_map([], |r| r.get::<_, String>(0)).map_err(refused)?;
            rows.map(|r| r.map_err(refused)).collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use movielake_core::sources::sql::watermark::Watermark;
    use movielake_core::sources::sql::{SUBSCRIPTIONS, USERS, sample};

    use super::*;
    use crate::clients::sql::pull;

    #[tokio::test]
    async fn a_sample_database_is_pulled_then_its_changes_including_a_late_one() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Sqlite::open(&dir.path().join("platform.db")).await.expect("open");
        db.execute(Dialect::Sqlite.ddl()).await.expect("ddl");
        let now = db.ceiling(Duration::zero()).await.expect("clock").at;
        db.execute_all(sample::seed_sql(Dialect::Sqlite, 10, 1, now))
            .await
            .expect("seed");
        let overlap = Duration::minutes(15);
        let first = pull(&db, &SUBSCRIPTIONS, &Watermark::default(), Duration::zero(), overlap)
            .await
            .expect("pull");
        assert_eq!(
            first.rows.len(),
            10 + 4,
            "one subscription each, an old one for every third"
        );
        let row = &first.rows[0].row;
        assert!(row["monthly_price"].is_number(), "{row:?}");
        let users = pull(&db, &USERS, &Watermark::default(), Duration::zero(), overlap)
            .await
            .expect("pull");
        let c1 = users.next.through.expect("through");

        let round = sample::demo_round(Dialect::Sqlite, c1, Duration::seconds(120));
        db.execute_all(round.changes.iter().map(|(_, sql)| sql.clone()).collect())
            .await
            .expect("round");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let second = pull(&db, &USERS, &users.next, Duration::zero(), overlap)
            .await
            .expect("pull");
        let keys: Vec<&str> = second.rows.iter().map(|r| r.change.key.as_str()).collect();
        assert_eq!(
            keys,
            ["user-000004", "user-000003"],
            "the late change too, in change order"
        );
        assert_eq!(second.duplicates, 0);
        assert_eq!(
            db.keys(&SUBSCRIPTIONS).await.expect("keys").len(),
            12,
            "user-000003's two deleted outright"
        );
    }

    #[tokio::test]
    async fn a_missing_table_is_refused_and_an_unopenable_file_is_unreachable() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Sqlite::open(&dir.path().join("empty.db")).await.expect("open");
        let window = Watermark::default().window(Ceiling::at(Utc::now()), Duration::zero());
        let e = db.changes(&USERS, &window, 10).await.expect_err("no table");
        assert!(matches!(e, SqlError::Refused(_)), "{e}");
        let e = Sqlite::open(&dir.path().join("no/such/folder/x.db")).await.err();
        assert!(matches!(e, Some(SqlError::Unreachable(_))), "{e:?}");
    }
}
