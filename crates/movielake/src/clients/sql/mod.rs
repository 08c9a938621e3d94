//! The SQL source port (issue 16): a dialect's database, asked for its ceiling and for the rows
//! changed in a window (the text comes from `movielake_core::sources::sql`). Rows come back as
//! JSON objects, every value as the database renders it, with their key and change time.
//!
//! Adapters: SQL Server / Azure SQL (`tiberius`), PostgreSQL (`tokio-postgres`), SQLite
//! (`rusqlite`, bundled).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use movielake_core::sources::sql::watermark::{Accepted, Ceiling, Change, Watermark, Window};
use movielake_core::sources::sql::{Dialect, SqlTable, UPDATED_AT};
use serde_json::{Map, Value};

mod postgres;
mod sqlite;
mod sqlserver;

pub use postgres::{PgConnect, Postgres};
pub use sqlite::Sqlite;
pub use sqlserver::{MsConnect, SQLSERVER_ENTRA_SCOPE, SqlServer, SqlServerUrl};

/// One changed row: its identity for the watermark, and the row itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledRow {
    pub change: Change,
    /// SQL Server: the row's `rowversion`, as a `bigint`.
    pub row_version: Option<i64>,
    pub row: Map<String, Value>,
}

/// Why a pull did not happen, by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The database cannot be reached or dropped the connection: retry later.
    #[error(
        "cannot reach the database: {0} (hint: is the server up, and the host, port and credentials of the URL right?)"
    )]
    Unreachable(String),
    /// The database refused the query (a table or column missing, a permission): a person
    /// has to look; the hint says where.
    #[error(
        "the database refused the query: {0} (hint: are the tables those of the dialect's DDL, and may this login read them?)"
    )]
    Refused(String),
    /// The database setting names no database this binary can reach: fix the setting.
    #[error("{0}")]
    Setting(String),
    /// A row the pull cannot place (no key, no change time): nothing of the pull is landed.
    #[error("{table}: a row without a usable {column}: {row}")]
    Row { table: String, column: String, row: String },
}

/// The scope of an Entra access token for Azure Database for PostgreSQL ("Connect with
/// Microsoft Entra authentication": the token, for resource `https://ossrdbms-aad.database.windows.net`,
/// is the password; the user is the role created for the identity).
pub const POSTGRES_ENTRA_SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";

/// How to connect beyond what the URL says.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// PEM certificates to trust besides the system's roots (`MOVIELAKE_SQL_CA_FILE`).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Connects to the database a setting names (`--database`, `MOVIELAKE_SQL_DATABASE`):
/// `sqlserver://[user:password@]host[:port]/db[?encrypt=false]`,
/// `postgres://user[:password]@host:port/db[?sslmode=require]` or `sqlite:path/to/file.db`.
/// A SQL Server URL with no login, and a PostgreSQL URL for an Azure Database for PostgreSQL
/// server with no password, sign in with a fresh Entra access token from the app's managed
/// identity (or `az login`).
pub async fn connect(database: &str, options: &ConnectOptions) -> Result<Box<dyn SqlSource>, SqlError> {
    match database.split_once(':') {
        Some(("postgres" | "postgresql", _)) => {
            let password = if wants_entra_token(database) {
                Some(entra_token(POSTGRES_ENTRA_SCOPE).await?)
            } else {
                None
            };
            let pg = PgConnect {
                ca_file: options.ca_file.clone(),
                password,
            };
            Ok(Box::new(Postgres::connect_with(database, &pg).await?))
        }
        Some(("sqlite", path)) => {
            let path = std::path::Path::new(path.trim_start_matches("//"));
            if !path.is_file() {
                return Err(SqlError::Setting(format!(
                    "no SQLite database at {} (hint: sqlite:relative/path.db or sqlite:///absolute/path.db)",
                    path.display()
                )));
            }
            Ok(Box::new(Sqlite::open(path).await?))
        }
        Some(("sqlserver" | "mssql", _)) => {
            let url = SqlServerUrl::parse(database)?;
            let token = match url.login {
                Some(_) => None,
                None => Some(entra_token(SQLSERVER_ENTRA_SCOPE).await?),
            };
            let ms = MsConnect {
                ca_file: options.ca_file.clone(),
                token,
            };
            Ok(Box::new(SqlServer::connect_with(database, &ms).await?))
        }
        _ => Err(SqlError::Setting(
            "the database must be sqlserver://host:1433/db, postgres://user@host:5432/db or sqlite:path/to/file.db"
                .into(),
        )),
    }
}

/// An Azure Database for PostgreSQL host (`*.postgres.database.azure.com`) and no password in
/// the URL: the login is an Entra principal.
pub fn wants_entra_token(url: &str) -> bool {
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return false;
    };
    config.get_password().is_none()
        && config.get_hosts().iter().any(|h| {
            matches!(h, tokio_postgres::config::Host::Tcp(name)
                if name.to_ascii_lowercase().ends_with(".postgres.database.azure.com"))
        })
}

/// A fresh token per connection: tokens last about an hour and a pull is one connection.
async fn entra_token(scope: &str) -> Result<String, SqlError> {
    let credential = crate::lake::AzureAuth::token_credential()
        .map_err(|e| SqlError::Setting(format!("no Entra credential for the database: {e}")))?;
    let token = credential
        .get_token(&[scope], None)
        .await
        .map_err(|e| SqlError::Unreachable(format!("cannot get an Entra token for the database: {e}")))?;
    Ok(token.token.secret().to_string())
}

#[async_trait]
pub trait SqlSource: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// What a pull may read up to now: the database's clock `lag` behind (and, on SQL Server,
    /// `MIN_ACTIVE_ROWVERSION()`).
    async fn ceiling(&self, lag: Duration) -> Result<Ceiling, SqlError>;
    /// At most `limit` rows of `table` changed in `window`, in change then key order (one
    /// page: `Window::after` gives the next).
    async fn changes(&self, table: &SqlTable, window: &Window, limit: usize) -> Result<Vec<PulledRow>, SqlError>;
    /// Every key `table` holds now, as text (a full key comparison).
    async fn keys(&self, table: &SqlTable) -> Result<Vec<String>, SqlError>;
}

/// One page of a pull of `table`: the rows to land and the watermark to store once they are
/// durable, and what of the window is left.
pub struct Page {
    /// The window this page read: the sidecar records it beside the rows.
    pub window: Window,
    pub rows: Vec<PulledRow>,
    pub duplicates: usize,
    pub next: Watermark,
    /// The rest of the window when the page was full.
    pub rest: Option<Window>,
}

/// Reads one page of `window` (at most `limit` rows) past `watermark`.
pub async fn pull_page(
    source: &dyn SqlSource,
    table: &SqlTable,
    watermark: &Watermark,
    window: &Window,
    limit: usize,
    overlap: Duration,
) -> Result<Page, SqlError> {
    let limit = limit.max(1);
    let mut read = source.changes(table, window, limit).await?;
    let last = (read.len() >= limit)
        .then(|| read.last().map(|r| (r.change.clone(), r.row_version)))
        .flatten();
    let (covered, rest) = match &last {
        Some((change, version)) => (window.through(change, *version), Some(window.after(change, *version))),
        None => (window.clone(), None),
    };
    let changes: Vec<Change> = read.iter().map(|r| r.change.clone()).collect();
    let Accepted {
        fresh,
        duplicates,
        next,
    } = watermark.accept(&covered, &changes, overlap);
    // `fresh` is ascending: take those rows out without cloning them.
    let mut keep = fresh.into_iter().peekable();
    let mut index = 0;
    read.retain(|_| {
        let kept = keep.peek() == Some(&index);
        if kept {
            keep.next();
        }
        index += 1;
        kept
    });
    Ok(Page {
        window: window.clone(),
        rows: read,
        duplicates,
        next,
        rest,
    })
}

/// A whole pull of `table` past `watermark` in memory, page after page (tests and small
/// tables; `pipelines::sql_pull` lands each page before reading the next).
pub async fn pull(
    source: &dyn SqlSource,
    table: &SqlTable,
    watermark: &Watermark,
    lag: Duration,
    overlap: Duration,
) -> Result<Pulled, SqlError> {
    let ceiling = source.ceiling(lag).await?;
    let first = watermark.window(ceiling, overlap);
    let mut window = Some(first.clone());
    let (mut rows, mut duplicates, mut next) = (Vec::new(), 0, watermark.clone());
    while let Some(w) = window {
        let page = pull_page(source, table, &next, &w, PAGE_ROWS, overlap).await?;
        rows.extend(page.rows);
        duplicates += page.duplicates;
        next = page.next;
        window = page.rest;
    }
    Ok(Pulled {
        window: first,
        rows,
        duplicates,
        next,
    })
}

/// Rows per page unless a setting says otherwise: big enough that a page's commits are few
/// per row, small enough that a page's rows fit any instance (`BENCHMARKS.md`).
pub const PAGE_ROWS: usize = 20_000;

/// A whole pull (see [`pull`]).
pub struct Pulled {
    pub window: Window,
    pub rows: Vec<PulledRow>,
    pub duplicates: usize,
    pub next: Watermark,
}

/// A row's JSON object and its identity: the key (text or number) and `updated_at`.
pub(crate) fn decode_row(table: &SqlTable, text: &str) -> Result<PulledRow, SqlError> {
    let Ok(Value::Object(row)) = serde_json::from_str::<Value>(text) else {
        return Err(SqlError::Row {
            table: table.name.to_string(),
            column: "row".into(),
            row: text.chars().take(300).collect(),
        });
    };
    identify(table, row)
}

/// A row's key (text or number) and change time (`updated_at`, RFC 3339).
pub(crate) fn identify(table: &SqlTable, row: Map<String, Value>) -> Result<PulledRow, SqlError> {
    let bad = |column: &str, row: &Map<String, Value>| SqlError::Row {
        table: table.name.to_string(),
        column: column.to_string(),
        row: Value::Object(row.clone()).to_string().chars().take(300).collect(),
    };
    let key = match row.get(table.key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(bad(table.key, &row)),
    };
    let Some(at) = row
        .get(UPDATED_AT)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
    else {
        return Err(bad(UPDATED_AT, &row));
    };
    // serde_json's map is ordered by name: the same row always hashes the same.
    let digest = serde_json::to_vec(&row).map_or(0, |bytes| xxhash_rust::xxh3::xxh3_64(&bytes));
    Ok(PulledRow {
        change: Change { key, at, digest },
        row_version: None,
        row,
    })
}

#[cfg(test)]
mod tests {
    use movielake_core::sources::sql::USERS;

    use super::*;

    /// Terraform composes MOVIELAKE_SQL_DATABASE (infra/locals.tf, `sql_url`): each dialect's
    /// form, filled in as Terraform would, is a URL this binary reads the intended way.
    #[test]
    fn the_database_urls_terraform_composes_are_read_as_meant() {
        let locals = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/locals.tf"))
            .expect("infra/locals.tf");
        let template = |dialect: &str| -> String {
            let line = locals
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{dialect} ")) && l.contains("= \""))
                .unwrap_or_else(|| panic!("no {dialect} URL in infra/locals.tf's sql_url"));
            let start = line.find('"').expect("quoted") + 1;
            line[start..line.rfind('"').expect("quoted")]
                .replace("${var.sql_server}", "myserver.example.net")
                .replace("${local.sql_port}", "1433")
                .replace("${var.sql_database}", "platform")
                .replace("${local.sql_login}", "id-movielake")
        };
        let ms = SqlServerUrl::parse(&template("sqlserver")).expect("sqlserver URL");
        assert_eq!(
            (ms.host.as_str(), ms.port, ms.database.as_str(), ms.login, ms.encrypt),
            ("myserver.example.net", 1433, "platform", None, true),
            "Entra token, TLS"
        );
        let pg: tokio_postgres::Config = template("postgres").parse().expect("postgres URL");
        assert_eq!(pg.get_user(), Some("id-movielake"));
        assert_eq!(pg.get_dbname(), Some("platform"));
        assert!(pg.get_password().is_none(), "Entra token");
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert!(wants_entra_token(
            &template("postgres").replace("myserver.example.net", "db.postgres.database.azure.com")
        ));
    }

    #[test]
    fn a_row_is_known_by_its_key_and_change_time_and_a_row_without_them_is_refused() {
        let row = decode_row(
            &USERS,
            r#"{"user_id":"u1","email":"a@b","updated_at":"2024-05-01T10:00:00.123456+00:00","deleted_at":null}"#,
        )
        .expect("row");
        assert_eq!(row.change.key, "u1");
        assert_eq!(row.change.at.to_rfc3339(), "2024-05-01T10:00:00.123456+00:00");
        assert_eq!(row.row["deleted_at"], Value::Null);
        for bad in [
            r#"{"email":"a@b","updated_at":"2024-05-01T10:00:00+00:00"}"#,
            r#"{"user_id":"u1","updated_at":"yesterday"}"#,
            r#"[1,2]"#,
        ] {
            assert!(matches!(decode_row(&USERS, bad), Err(SqlError::Row { .. })), "{bad}");
        }
    }
}
