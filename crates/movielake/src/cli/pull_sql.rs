//! `movielake pull-sql`: one incremental pull of the platform's users and subscriptions into
//! bronze and silver (what the `pull_subscriptions` timer Function runs).

use anyhow::Context;
use movielake_core::sources::sql::{SqlTable, TABLES};

use crate::clients::sql::{ConnectOptions, connect};
use crate::handler::AppState;
use crate::pipelines::sql_pull::{PullSettings, Sink, pull_table};

/// Pull what changed in the platform's SQL database since the last pull (users, subscriptions):
/// land it in bronze (`bronze/sql/<table>/extract_date=…/run=…/part-00001.csv.gz` and a sidecar), check it against the contracts
/// sql_users and sql_subscriptions into silver and quarantine, then move each table's
/// watermark (`ops/watermarks/sql/<source>/<table>.json`). Silver: `silver/sql/<table>_changes`
/// (every version), `silver/sql/<table>` (current state, deleted keys flagged) and
/// `silver/sql/<table>_history` (valid_from/valid_to). Safe to run again at any time: rows
/// already landed are recognised by key and change time.
///
/// SQL Server reads by row version, up to MIN_ACTIVE_ROWVERSION() (exact: no lag, no
/// overlap). PostgreSQL and SQLite read by updated_at up to the database's clock minus
/// --lag-seconds (on PostgreSQL, never past the start of the oldest open transaction) and
/// re-read --overlap-seconds before the last pull. Rows come --page-rows at a time, each page
/// landed and the watermark moved before the next is read: memory stays bounded and a pull
/// cut short resumes where it stopped.
///
/// Examples:
///   movielake pull-sql --database sqlserver://myserver.database.windows.net/platform
///   movielake pull-sql --database postgres://reader@127.0.0.1:5432/platform
///   movielake pull-sql --database sqlite:platform.db --table subscriptions
#[derive(Debug, clap::Args)]
pub struct PullSqlArgs {
    /// The database: `sqlserver://host[:1433]/db` (SQL Server / Azure SQL Database; with no
    /// login in the URL the app signs in with an Entra token from its managed identity or
    /// `az login`; `sqlserver://user:password@…` for a SQL login; TLS unless `?encrypt=false`),
    /// `postgres://user[:password]@host:port/db` (PostgreSQL; add `?sslmode=require` for TLS,
    /// the server's certificate verified; an Azure Database for PostgreSQL host with no
    /// password signs in with an Entra token) or `sqlite:path/to/file.db` (SQLite).
    #[arg(long, env = "MOVIELAKE_SQL_DATABASE", hide_env_values = true)]
    database: String,
    /// PEM certificates to trust besides the system's roots, for TLS (a private CA). Azure SQL
    /// Database's and Azure Database for PostgreSQL's certificates chain to public roots: not
    /// needed there.
    #[arg(long, env = "MOVIELAKE_SQL_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Name of the source in the lake's paths.
    #[arg(long, default_value = "platform")]
    source: String,
    /// Only these tables (users, subscriptions); all by default.
    #[arg(long = "table")]
    tables: Vec<String>,
    /// How far behind the database's clock a pull stays.
    #[arg(long, default_value_t = 5)]
    lag_seconds: u32,
    /// How much before the last pull's ceiling each pull reads again (changes committed late).
    #[arg(long, default_value_t = 900)]
    overlap_seconds: u32,
    /// How often a pull also reads every key to find rows deleted outright (hard deletes),
    /// in hours since the last such comparison; 0: every pull. A full scan of the key column:
    /// keep it rare on big tables.
    #[arg(long, default_value_t = 24, conflicts_with = "no_key_check")]
    key_check_hours: u32,
    /// Never compare keys (hard deletes are then not seen; soft deletes, `deleted_at`, are).
    #[arg(long)]
    no_key_check: bool,
    /// Rows read, landed and committed at a time: memory is bounded by a page, and a pull cut
    /// short resumes after the last page landed.
    #[arg(long, env = "MOVIELAKE_SQL_PAGE_ROWS", default_value_t = crate::clients::sql::PAGE_ROWS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    page_rows: u64,
}

pub(super) async fn command(state: &AppState, args: PullSqlArgs) -> anyhow::Result<()> {
    let tables: Vec<SqlTable> = if args.tables.is_empty() {
        TABLES.to_vec()
    } else {
        args.tables
            .iter()
            .map(|name| {
                TABLES
                    .iter()
                    .find(|t| t.name == name)
                    .copied()
                    .with_context(|| format!("no SQL table '{name}' (the tables are users and subscriptions)"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let options = ConnectOptions {
        ca_file: args.ca_file.clone(),
    };
    let db = connect(&args.database, &options).await?;
    let db = db.as_ref();
    let settings = PullSettings {
        lag: chrono::Duration::seconds(i64::from(args.lag_seconds)),
        overlap: chrono::Duration::seconds(i64::from(args.overlap_seconds)),
        key_check: (!args.no_key_check).then(|| chrono::Duration::hours(i64::from(args.key_check_hours))),
        page_rows: usize::try_from(args.page_rows).unwrap_or(usize::MAX),
    };
    let sink = Sink {
        lake: state.lake.as_ref(),
        tables: &state.tables,
        contracts: &state.contracts,
    };
    for table in &tables {
        let pulled = pull_table(&sink, db, &args.source, table, settings).await?;
        println!(
            "{}: {} new row(s) in {} page(s), {} already landed; read through {}",
            pulled.table,
            pulled.rows,
            pulled.pages,
            pulled.duplicates,
            pulled.through.map_or_else(|| "-".to_string(), |t| t.to_rfc3339()),
        );
        for object in &pulled.bronze {
            println!("  bronze {object}");
        }
        if let Some(gone) = pulled.deleted {
            println!("  keys compared: {gone} deleted outright since the last comparison");
        }
        if !pulled.manifests.is_empty() {
            let c = &pulled.counts;
            println!(
                "  in {}: silver {}, quarantined {}, versions already in silver {}; manifests {}",
                c.records_in,
                c.silver,
                c.quarantined,
                c.duplicates_dropped,
                pulled.manifests.join(", ")
            );
        }
    }
    Ok(())
}
