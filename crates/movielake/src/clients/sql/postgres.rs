//! The PostgreSQL adapter of the SQL source port (Azure Database for PostgreSQL, or any 13+).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use movielake_core::sources::sql::watermark::Window;
use movielake_core::sources::sql::{Dialect, SqlTable};

use super::{PulledRow, SqlError, SqlSource, decode_row};

/// PostgreSQL (Azure Database for PostgreSQL, or any 13+). The session runs in UTC so that
/// timestamps render the same whoever configured the server.
pub struct Postgres {
    client: tokio_postgres::Client,
}

/// The lowest time PostgreSQL's `timestamptz` takes that every client library handles.
fn pg_floor() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(-62_135_596_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC) // 0001-01-01
}

impl Postgres {
    /// Connects with a libpq URL or key=value string (`postgres://user@host:port/db`).
    pub async fn connect(url: &str) -> Result<Postgres, SqlError> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| SqlError::Unreachable(with_causes(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        client
            .batch_execute("SET TIME ZONE 'UTC'")
            .await
            .map_err(|e| SqlError::Unreachable(e.to_string()))?;
        Ok(Postgres { client })
    }

    /// Runs `sql` (several statements allowed): the DDL, tests' data.
    pub async fn execute(&self, sql: &str) -> Result<(), SqlError> {
        self.client.batch_execute(sql).await.map_err(refused)
    }
}

fn refused(e: tokio_postgres::Error) -> SqlError {
    match e.as_db_error() {
        Some(db) if !e.is_closed() && !transient(db.code().code()) => {
            SqlError::Refused(format!("{}: {}", db.severity(), db.message()))
        }
        _ => SqlError::Unreachable(with_causes(&e)),
    }
}

/// SQLSTATEs that say "try again later", not "this query is wrong": connection exceptions
/// (class 08), operator intervention such as a terminated backend or a shutdown (57), too
/// many connections and other resource limits (53), serialization failures and deadlocks
/// (40001, 40P01). A killed backend sends 57P01 before it closes the socket, so which of the
/// two the client sees first is a race: both must mean the same thing.
fn transient(code: &str) -> bool {
    ["08", "57", "53"].iter().any(|class| code.starts_with(class)) || matches!(code, "40001" | "40P01")
}

/// `error connecting to server: Connection refused (os error 111)`: the library's message
/// alone does not say why.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[async_trait]
impl SqlSource for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn ceiling(&self, lag: Duration) -> Result<DateTime<Utc>, SqlError> {
        let lag = u32::try_from(lag.num_seconds().max(0)).unwrap_or(u32::MAX);
        let row = self
            .client
            .query_one(&Dialect::Postgres.ceiling_sql(lag), &[])
            .await
            .map_err(refused)?;
        row.try_get::<_, DateTime<Utc>>(0).map_err(refused)
    }

    async fn changes(&self, table: &SqlTable, window: &Window) -> Result<Vec<PulledRow>, SqlError> {
        // Each row as PostgreSQL's own JSON: exact numerics, ISO timestamps, nulls kept.
        let sql = format!(
            "SELECT row_to_json(c)::text FROM ({}) c",
            Dialect::Postgres.changes_sql(table)
        );
        let from = window.from.max(pg_floor());
        let rows = self.client.query(&sql, &[&from, &window.to]).await.map_err(refused)?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get(0).map_err(refused)?;
                decode_row(table, &text)
            })
            .collect()
    }

    async fn keys(&self, table: &SqlTable) -> Result<Vec<String>, SqlError> {
        let sql = format!("SELECT k::text FROM ({}) AS c(k)", Dialect::Postgres.keys_sql(table));
        let rows = self.client.query(&sql, &[]).await.map_err(refused)?;
        rows.iter()
            .map(|r| r.try_get::<_, String>(0).map_err(refused))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::transient;

    #[test]
    fn outages_are_retried_and_mistakes_are_not() {
        for code in ["57P01", "57P03", "08006", "53300", "40001", "40P01"] {
            assert!(transient(code), "{code} is an outage");
        }
        for code in ["42P01", "42703", "22P02", "28P01", "23505"] {
            assert!(!transient(code), "{code} is a mistake to fix");
        }
    }
}
