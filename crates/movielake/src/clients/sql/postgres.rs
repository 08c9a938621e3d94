//! The PostgreSQL adapter of the SQL source port (Azure Database for PostgreSQL, or any 13+).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use movielake_core::sources::sql::watermark::{Ceiling, Window};
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

/// How to open the connection beyond what the URL says.
#[derive(Debug, Clone, Default)]
pub struct PgConnect {
    /// PEM certificates to trust besides the system's roots (a private CA, a test server).
    pub ca_file: Option<std::path::PathBuf>,
    /// The password when the URL has none: an Entra access token on Azure Database for
    /// PostgreSQL (never logged, never stored).
    pub password: Option<String>,
}

impl Postgres {
    /// Connects with a libpq URL or key=value string (`postgres://user@host:port/db`).
    pub async fn connect(url: &str) -> Result<Postgres, SqlError> {
        Postgres::connect_with(url, &PgConnect::default()).await
    }

    /// Connects over TLS when the URL says `sslmode=require`, verifying the server's
    /// certificate and name against the system's roots and `options.ca_file` (stricter than
    /// libpq's `require`, which does not verify); in the clear otherwise.
    pub async fn connect_with(url: &str, options: &PgConnect) -> Result<Postgres, SqlError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            SqlError::Setting(format!(
                "not a PostgreSQL URL: {e} (hint: postgres://user@host:5432/db)"
            ))
        })?;
        if config.get_password().is_none()
            && let Some(password) = &options.password
        {
            config.password(password.as_str());
        }
        let client = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(options.ca_file.as_deref())?);
            open(&config, tls).await?
        } else {
            open(&config, tokio_postgres::NoTls).await?
        };
        client
            .batch_execute("SET TIME ZONE 'UTC'")
            .await
            .map_err(|e| SqlError::Unreachable(e.to_string()))?;
        Ok(Postgres { client })
    }

    /// Whether this session's connection is encrypted (`pg_stat_ssl`).
    pub async fn encrypted(&self) -> Result<bool, SqlError> {
        let row = self
            .client
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .await
            .map_err(refused)?;
        row.try_get(0).map_err(refused)
    }

    /// Runs `sql` (several statements allowed): the DDL, tests' data.
    pub async fn execute(&self, sql: &str) -> Result<(), SqlError> {
        self.client.batch_execute(sql).await.map_err(refused)
    }
}

/// Connects, and drives the connection on its own task until the client is dropped.
async fn open<T>(config: &tokio_postgres::Config, tls: T) -> Result<tokio_postgres::Client, SqlError>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|e| SqlError::Unreachable(with_causes(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// rustls with *ring* named explicitly: the dependency tree enables both of rustls' crypto
/// providers, and then none is the default.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, SqlError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| SqlError::Setting(format!("cannot read the CA file {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in rustls_pemfile_certs(&pem) {
            if roots.add(cert).is_ok() {
                added += 1;
            }
        }
        if added == 0 {
            return Err(SqlError::Setting(format!(
                "{} holds no PEM certificate (hint: -----BEGIN CERTIFICATE-----)",
                path.display()
            )));
        }
    }
    if roots.is_empty() {
        return Err(SqlError::Setting(
            "no trusted root certificates: install the system's CA bundle (ca-certificates) or set MOVIELAKE_SQL_CA_FILE"
                .into(),
        ));
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| SqlError::Setting(format!("TLS: {e}")))
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
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

    async fn ceiling(&self, lag: Duration) -> Result<Ceiling, SqlError> {
        let lag = u32::try_from(lag.num_seconds().max(0)).unwrap_or(u32::MAX);
        let row = self
            .client
            .query_one(&Dialect::Postgres.ceiling_sql(lag), &[])
            .await
            .map_err(refused)?;
        row.try_get::<_, DateTime<Utc>>(0).map(Ceiling::at).map_err(refused)
    }

    async fn changes(&self, table: &SqlTable, window: &Window, limit: usize) -> Result<Vec<PulledRow>, SqlError> {
        // Each row as PostgreSQL's own JSON: exact numerics, ISO timestamps, nulls kept. The
        // key compares as text (`$3::text`): the tables' keys are text.
        let sql = format!(
            "SELECT row_to_json(c)::text FROM ({}) c",
            Dialect::Postgres.changes_sql(table, limit).replace("$3", "$3::text")
        );
        let from = window.from.max(pg_floor());
        let after = window.after_key.as_deref().unwrap_or("");
        let rows = self
            .client
            .query(&sql, &[&from, &window.to, &after])
            .await
            .map_err(refused)?;
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
