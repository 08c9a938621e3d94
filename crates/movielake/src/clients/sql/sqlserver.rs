//! The SQL Server / Azure SQL Database adapter of the SQL source port (`tiberius`).
//!
//! - Pulls read by `rowversion`, `[last ceiling, MIN_ACTIVE_ROWVERSION())` (see
//!   `movielake_core::sources::sql`): every statement's parameters are integers written into
//!   its text, so each goes as a plain batch.
//! - Sign-in: a SQL login when the URL has a user and password; otherwise a Microsoft Entra
//!   access token (scope `https://database.windows.net/.default`) from the app's managed
//!   identity, fetched for each connection.
//! - TLS (rustls) unless the URL says `encrypt=false` (local test servers only); the server's
//!   certificate is verified against the system's roots and `MOVIELAKE_SQL_CA_FILE`.
//! - Azure SQL's gateway may answer a login with a redirect to the node that holds the
//!   database ("Redirect" connection policy, the default inside Azure): the adapter connects
//!   there, with the same login.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use movielake_core::sources::sql::watermark::{Ceiling, Window};
use movielake_core::sources::sql::{Dialect, ROW_VERSION, SqlTable};
use serde_json::{Map, Number, Value};
use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::{PulledRow, SqlError, SqlSource, identify};

/// The scope of an Entra access token for Azure SQL Database.
pub const SQLSERVER_ENTRA_SCOPE: &str = "https://database.windows.net/.default";

/// How many redirects a login follows: Azure SQL sends one.
const MAX_REDIRECTS: usize = 3;

type Connection = Client<Compat<TcpStream>>;

/// A connection to SQL Server or Azure SQL Database.
pub struct SqlServer {
    // tiberius' client takes `&mut self` for every statement; a pull runs them one at a time.
    client: Mutex<Connection>,
}

/// The parts of a `sqlserver://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlServerUrl {
    pub host: String,
    pub port: u16,
    pub database: String,
    /// A SQL login; `None`: an Entra token.
    pub login: Option<(String, String)>,
    pub encrypt: bool,
}

impl SqlServerUrl {
    /// `sqlserver://[user:password@]host[:port]/database[?encrypt=false]`.
    pub fn parse(text: &str) -> Result<SqlServerUrl, SqlError> {
        let hint = "(hint: sqlserver://myserver.database.windows.net:1433/platform)";
        let url = url::Url::parse(text).map_err(|e| SqlError::Setting(format!("not a SQL Server URL: {e} {hint}")))?;
        if !matches!(url.scheme(), "sqlserver" | "mssql") {
            return Err(SqlError::Setting(format!("not a SQL Server URL {hint}")));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| SqlError::Setting(format!("the SQL Server URL names no host {hint}")))?
            .to_string();
        let database = url.path().trim_start_matches('/').to_string();
        if database.is_empty() || database.contains('/') {
            return Err(SqlError::Setting(format!(
                "the SQL Server URL names no database {hint}"
            )));
        }
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| SqlError::Setting("the SQL Server URL's login is not valid UTF-8".into()))
        };
        let login = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(password)) if !user.is_empty() => Some((decode(user)?, decode(password)?)),
            _ => {
                return Err(SqlError::Setting(
                    "a SQL login needs user and password (sqlserver://user:password@host/db); \
                     with neither, the app signs in with its Entra identity"
                        .into(),
                ));
            }
        };
        let mut encrypt = true;
        for (name, value) in url.query_pairs() {
            match (name.as_ref(), value.as_ref()) {
                ("encrypt", "true" | "yes") => encrypt = true,
                ("encrypt", "false" | "no") => encrypt = false,
                _ => {
                    return Err(SqlError::Setting(format!(
                        "unknown SQL Server URL option {name}={value} (only encrypt=true|false)"
                    )));
                }
            }
        }
        Ok(SqlServerUrl {
            host,
            port: url.port().unwrap_or(1433),
            database,
            login,
            encrypt,
        })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// How to connect beyond what the URL says.
#[derive(Debug, Clone, Default)]
pub struct MsConnect {
    /// PEM certificates to trust besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// The Entra access token when the URL has no login (never logged, never stored).
    pub token: Option<String>,
}

impl SqlServer {
    /// Connects, following the login redirects Azure SQL answers with.
    pub async fn connect_with(url: &str, options: &MsConnect) -> Result<SqlServer, SqlError> {
        let url = SqlServerUrl::parse(url)?;
        let mut config = Config::new();
        config.host(&url.host);
        config.port(url.port);
        config.database(&url.database);
        config.application_name("movielake");
        config.authentication(match (&url.login, &options.token) {
            (Some((user, password)), _) => AuthMethod::sql_server(user, password),
            (None, Some(token)) => AuthMethod::aad_token(token),
            (None, None) => {
                return Err(SqlError::Setting(
                    "no login in the SQL Server URL and no Entra token to sign in with".into(),
                ));
            }
        });
        if url.encrypt {
            config.encryption(EncryptionLevel::Required);
            if let Some(ca) = &options.ca_file {
                config.trust_cert_ca(ca.display());
            }
        } else {
            config.encryption(EncryptionLevel::NotSupported);
        }
        let client = open(config).await?;
        Ok(SqlServer {
            client: Mutex::new(client),
        })
    }

    /// Runs `sql` and returns its first result's rows as JSON objects.
    async fn rows(&self, sql: &str) -> Result<Vec<Map<String, Value>>, SqlError> {
        let mut client = self.client.lock().await;
        let rows = client
            .simple_query(sql)
            .await
            .map_err(classify)?
            .into_first_result()
            .await
            .map_err(classify)?;
        // One result set: every row has the first row's columns.
        let names: Vec<String> = rows
            .first()
            .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
            .unwrap_or_default();
        rows.into_iter()
            .map(|row| {
                names
                    .iter()
                    .zip(row)
                    .map(|(name, data)| {
                        json(&data)
                            .map(|v| (name.clone(), v))
                            .map_err(|what| (name.clone(), what))
                    })
                    .collect::<Result<Map<String, Value>, _>>()
                    .map_err(|(name, what)| SqlError::Row {
                        table: "(result)".into(),
                        column: name,
                        row: what,
                    })
            })
            .collect()
    }
}

/// Opens the connection, and again at the address a redirect names.
async fn open(mut config: Config) -> Result<Connection, SqlError> {
    for _ in 0..=MAX_REDIRECTS {
        let tcp = TcpStream::connect(config.get_addr())
            .await
            .map_err(|e| SqlError::Unreachable(format!("{}: {e}", config.get_addr())))?;
        // Small statements and their answers: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        match Client::connect(config.clone(), tcp.compat_write()).await {
            Ok(client) => return Ok(client),
            Err(tiberius::error::Error::Routing { host, port }) => {
                tracing::info!(%host, port, "SQL Server redirected the login");
                config.host(&host);
                config.port(port);
            }
            Err(e) => return Err(classify(e)),
        }
    }
    Err(SqlError::Unreachable(format!(
        "SQL Server redirected the login more than {MAX_REDIRECTS} times"
    )))
}

/// Errors Microsoft.Data.SqlClient's retry logic treats as transient
/// (`SqlConfigurableRetryFactory.BaselineTransientErrors`): a failover, a busy or paused
/// database, throttling, a deadlock, a lock timeout.
const TRANSIENT: &[u32] = &[
    233, 997, 1204, 1205, 1222, 4060, 4221, 10053, 10054, 10060, 10928, 10929, 40143, 40197, 40501, 40540, 40613,
    42108, 42109, 49918, 49919, 49920,
];

/// An error by what the caller does next.
fn classify(e: tiberius::error::Error) -> SqlError {
    use tiberius::error::Error;
    match &e {
        Error::Server(token) if TRANSIENT.contains(&token.code()) => {
            SqlError::Unreachable(format!("SQL Server error {}: {}", token.code(), token.message()))
        }
        Error::Server(token) => SqlError::Refused(format!("SQL Server error {}: {}", token.code(), token.message())),
        Error::Tls(_) => SqlError::Refused(format!(
            "{} (hint: a server certificate no trusted root signs? set MOVIELAKE_SQL_CA_FILE to its CA's PEM)",
            super::postgres::with_causes(&e)
        )),
        Error::Io { .. } | Error::Routing { .. } => SqlError::Unreachable(super::postgres::with_causes(&e)),
        _ => SqlError::Refused(super::postgres::with_causes(&e)),
    }
}

/// A float as a JSON number; NaN and infinities have none, and are not made NULL.
fn finite(v: Option<f64>) -> Result<Value, String> {
    match v {
        None => Ok(Value::Null),
        Some(f) => Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} has no JSON number")),
    }
}

/// A value as JSON: numbers stay numbers (decimals by their exact text), text stays text,
/// NULL is null. Other types are not selected by this source's statements.
fn json(data: &ColumnData<'_>) -> Result<Value, String> {
    let number = |n: Option<Number>| n.map_or(Value::Null, Value::Number);
    Ok(match data {
        ColumnData::U8(v) => number(v.map(Number::from)),
        ColumnData::I16(v) => number(v.map(Number::from)),
        ColumnData::I32(v) => number(v.map(Number::from)),
        ColumnData::I64(v) => number(v.map(Number::from)),
        ColumnData::F32(v) => finite(v.map(f64::from))?,
        ColumnData::F64(v) => finite(*v)?,
        ColumnData::Bit(v) => v.map_or(Value::Null, Value::Bool),
        ColumnData::String(v) => v.as_ref().map_or(Value::Null, |s| Value::String(s.to_string())),
        ColumnData::Guid(v) => v.map_or(Value::Null, |g| Value::String(g.to_string())),
        ColumnData::Numeric(v) => match v {
            None => Value::Null,
            Some(n) => {
                let text = n.to_string();
                text.parse::<Number>()
                    .map(Value::Number)
                    .map_err(|_| format!("decimal {text} is not a JSON number"))?
            }
        },
        ColumnData::Binary(v) => v.as_ref().map_or(Value::Null, |b| {
            Value::String(b.iter().map(|x| format!("{x:02x}")).collect())
        }),
        other => return Err(format!("a column of an unexpected type ({other:?}): select it as text")),
    })
}

#[async_trait]
impl SqlSource for SqlServer {
    fn dialect(&self) -> Dialect {
        Dialect::SqlServer
    }

    async fn ceiling(&self, lag: Duration) -> Result<Ceiling, SqlError> {
        let lag = u32::try_from(lag.num_seconds().max(0)).unwrap_or(u32::MAX);
        let rows = self.rows(&Dialect::SqlServer.ceiling_sql(lag)).await?;
        let row = rows
            .first()
            .ok_or_else(|| SqlError::Refused("the ceiling query returned no row".into()))?;
        let version = row.get("ceiling").and_then(Value::as_i64);
        let at = row
            .get("at")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        match (version, at) {
            (Some(version), Some(at)) => Ok(Ceiling {
                at,
                row_version: Some(version),
            }),
            _ => Err(SqlError::Refused(format!("the ceiling query returned {row:?}"))),
        }
    }

    async fn changes(&self, table: &SqlTable, window: &Window, limit: usize) -> Result<Vec<PulledRow>, SqlError> {
        let versions = window
            .versions
            .ok_or_else(|| SqlError::Setting("SQL Server reads by row version: a time window was asked for".into()))?;
        let sql = Dialect::sqlserver_changes(table, limit, versions.from, versions.to);
        self.rows(&sql)
            .await?
            .into_iter()
            .map(|row| {
                let version = row.get(ROW_VERSION).and_then(Value::as_i64);
                let mut pulled = identify(table, row)?;
                pulled.row_version = Some(version.ok_or_else(|| SqlError::Row {
                    table: table.name.to_string(),
                    column: ROW_VERSION.to_string(),
                    row: format!("{:?}", pulled.row).chars().take(300).collect(),
                })?);
                Ok(pulled)
            })
            .collect()
    }

    async fn keys(&self, table: &SqlTable) -> Result<Vec<String>, SqlError> {
        self.rows(&Dialect::SqlServer.keys_sql(table))
            .await?
            .into_iter()
            .map(|row| match row.get(table.key) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                _ => Err(SqlError::Row {
                    table: table.name.to_string(),
                    column: table.key.to_string(),
                    row: format!("{row:?}"),
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_server_database_login_and_encryption() {
        let url = SqlServerUrl::parse("sqlserver://myserver.database.windows.net/platform").expect("url");
        assert_eq!(
            url,
            SqlServerUrl {
                host: "myserver.database.windows.net".into(),
                port: 1433,
                database: "platform".into(),
                login: None,
                encrypt: true,
            }
        );
        let url = SqlServerUrl::parse("mssql://reader:p%40ss@127.0.0.1:14330/db?encrypt=false").expect("url");
        assert_eq!(url.login, Some(("reader".into(), "p@ss".into())));
        assert_eq!((url.port, url.encrypt), (14330, false));
        for bad in [
            "sqlserver://host",
            "sqlserver://reader@host/db",
            "sqlserver://host/db?trust=yes",
            "postgres://host/db",
        ] {
            assert!(matches!(SqlServerUrl::parse(bad), Err(SqlError::Setting(_))), "{bad}");
        }
    }

    #[test]
    fn values_decode_to_json_by_their_type() {
        use std::borrow::Cow;
        assert_eq!(json(&ColumnData::I64(Some(42))), Ok(Value::from(42)));
        assert_eq!(json(&ColumnData::I32(None)), Ok(Value::Null));
        assert_eq!(json(&ColumnData::String(Some(Cow::from("é")))), Ok(Value::from("é")));
        let price = tiberius::numeric::Numeric::new_with_scale(999, 2);
        assert_eq!(
            json(&ColumnData::Numeric(Some(price))).map(|v| v.to_string()),
            Ok("9.99".to_string())
        );
        assert!(json(&ColumnData::F64(Some(f64::NAN))).is_err(), "not silently NULL");
        assert!(json(&ColumnData::Xml(None)).is_err());
    }

    #[test]
    fn outages_are_retried_and_mistakes_are_not() {
        assert!(TRANSIENT.contains(&40613) && TRANSIENT.contains(&1205));
        assert!(
            !TRANSIENT.contains(&208),
            "invalid object name: fix the DDL or the login"
        );
        assert!(!TRANSIENT.contains(&18456), "login failed: fix the principal");
    }
}
