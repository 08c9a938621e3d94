//! `pull_subscriptions`: timer trigger (schedule `%PULL_SUBSCRIPTIONS_SCHEDULE%`, NCRONTAB in
//! UTC, every 15 minutes by default). One incremental pull of each table of the platform's SQL
//! database (users, subscriptions), as `movielake pull-sql` does: bronze, contracts, silver
//! (change log, history, current state), then the table's watermark (`pipelines/sql_pull.rs`).
//!
//! The host runs one invocation of a timer Function at a time across all instances and does
//! not retry a failed one: the next occurrence is the retry
//! (https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer). A pull that
//! fails advances nothing, so the next one reads the same rows again.
//!
//! Settings (app settings; `MOVIELAKE_SQL_DATABASE` unset means this platform has no SQL
//! source yet: the invocation succeeds and says so):
//! - `MOVIELAKE_SQL_DATABASE`: `postgres://user@host:port/db` or `sqlite:path`;
//! - `MOVIELAKE_SQL_SOURCE`: the source's name in the lake's paths (`platform`);
//! - `MOVIELAKE_SQL_LAG_SECONDS` (5), `MOVIELAKE_SQL_OVERLAP_SECONDS` (900),
//!   `MOVIELAKE_SQL_KEY_CHECK_HOURS` (24; 0 compares keys every pull; `off` never).

use chrono::Duration;
use movielake_core::host::{Invocation, InvocationResponse, decode_timer};
use movielake_core::sources::sql::TABLES;

use super::{AppState, FunctionError};
use crate::clients::sql::{ConnectOptions, SqlError, connect};
use crate::pipelines::sql_pull::{PullError, PullSettings, Sink, pull_table};

pub const NAME: &str = "pull_subscriptions";
/// The trigger's binding name in `function.json`.
const BINDING: &str = "timer";

/// The database and how to pull it, from app settings.
#[derive(Debug, Clone)]
pub struct SqlSettings {
    pub database: Option<String>,
    pub connect: ConnectOptions,
    pub source: String,
    pub pull: PullSettings,
}

impl SqlSettings {
    /// `var` looks a setting up (the environment in Azure; a map in tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<SqlSettings, String> {
        let set = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let number = |name: &str, value: Option<String>, default: i64| -> Result<i64, String> {
            match set(value) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u32>()
                    .map(i64::from)
                    .map_err(|_| format!("{name}={v:?} is not a whole number")),
            }
        };
        let key_check = match set(var("MOVIELAKE_SQL_KEY_CHECK_HOURS")) {
            Some(v) if v.trim() == "off" => None,
            v => Some(Duration::hours(number("MOVIELAKE_SQL_KEY_CHECK_HOURS", v, 24)?)),
        };
        Ok(SqlSettings {
            database: set(var("MOVIELAKE_SQL_DATABASE")),
            connect: ConnectOptions {
                ca_file: set(var("MOVIELAKE_SQL_CA_FILE")).map(std::path::PathBuf::from),
            },
            source: set(var("MOVIELAKE_SQL_SOURCE")).unwrap_or_else(|| "platform".into()),
            pull: PullSettings {
                lag: Duration::seconds(number(
                    "MOVIELAKE_SQL_LAG_SECONDS",
                    var("MOVIELAKE_SQL_LAG_SECONDS"),
                    5,
                )?),
                overlap: Duration::seconds(number(
                    "MOVIELAKE_SQL_OVERLAP_SECONDS",
                    var("MOVIELAKE_SQL_OVERLAP_SECONDS"),
                    900,
                )?),
                key_check,
                page_rows: match set(var("MOVIELAKE_SQL_PAGE_ROWS")) {
                    None => crate::clients::sql::PAGE_ROWS,
                    Some(v) => v
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("MOVIELAKE_SQL_PAGE_ROWS={v:?} is not a positive whole number"))?,
                },
            },
        })
    }
}

pub async fn run(state: &AppState, invocation: Invocation) -> Result<InvocationResponse, FunctionError> {
    let timer = decode_timer(&invocation, BINDING)?;
    let settings = SqlSettings::from_lookup(|name| std::env::var(name).ok())
        .map_err(|e| FunctionError::Configuration(format!("{NAME} is not configured: {e}")))?;
    let mut logs = Vec::new();
    if timer.is_past_due {
        logs.push("the timer was past due".into());
    }
    let Some(database) = settings.database else {
        logs.push(
            "MOVIELAKE_SQL_DATABASE is not set: no SQL database to pull (Terraform: sql_server, sql_database)".into(),
        );
        return Ok(InvocationResponse::with_logs(logs));
    };
    let db = connect(&database, &settings.connect)
        .await
        .map_err(|e| failure(PullError::Source(e)))?;
    let sink = Sink {
        lake: state.lake.as_ref(),
        tables: &state.tables,
        contracts: &state.contracts,
    };
    let mut first_error = None;
    // Each table on its own: one that fails does not hold the other back.
    for table in &TABLES {
        match pull_table(&sink, db.as_ref(), &settings.source, table, settings.pull).await {
            Ok(p) => {
                let c = &p.counts;
                let line = format!(
                    "{}: {} new row(s) in {} page(s), {} already landed; in {}: silver {}, quarantined {}, versions already in silver {}{}{}",
                    p.table,
                    p.rows,
                    p.pages,
                    p.duplicates,
                    c.records_in,
                    c.silver,
                    c.quarantined,
                    c.duplicates_dropped,
                    p.deleted
                        .map(|d| format!("; keys compared, {d} deleted outright"))
                        .unwrap_or_default(),
                    if p.bronze.is_empty() {
                        String::new()
                    } else {
                        format!("; bronze {}", p.bronze.join(", "))
                    },
                );
                tracing::info!(function = NAME, "{line}");
                logs.push(line);
            }
            Err(e) => {
                tracing::error!(function = NAME, table = table.name, error = %e, "pull failed");
                logs.push(format!("{}: {e}", table.name));
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        // Fails the invocation so that it shows as failed; the table that pulled stays pulled.
        Some(e) => Err(failure(e)),
        None => Ok(InvocationResponse::with_logs(logs)),
    }
}

/// A failed pull as the host's answer, by what happens next.
fn failure(e: PullError) -> FunctionError {
    match e {
        PullError::Source(SqlError::Unreachable(_)) | PullError::Raced(_) => FunctionError::Source(e.to_string()),
        PullError::Source(SqlError::Refused(_) | SqlError::Setting(_)) => FunctionError::Configuration(e.to_string()),
        PullError::Source(SqlError::Row { .. }) => FunctionError::Source(e.to_string()),
        PullError::Lake(e) => FunctionError::Lake(e),
        PullError::Table(e) => FunctionError::Table(e),
        PullError::NoContract(name) => FunctionError::MissingContract(name),
        e @ (PullError::Encode(..) | PullError::Watermark { .. }) => FunctionError::Internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<SqlSettings, String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SqlSettings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_those_of_pull_sql() {
        let s = settings(&[]).expect("settings");
        assert_eq!(s.database, None);
        assert_eq!(s.source, "platform");
        assert_eq!(s.pull, PullSettings::default());
        assert_eq!(s.connect.ca_file, None);
    }

    #[test]
    fn settings_are_read_and_bad_ones_named() {
        let s = settings(&[
            ("MOVIELAKE_SQL_DATABASE", "postgres://reader@db:5432/platform"),
            ("MOVIELAKE_SQL_LAG_SECONDS", "30"),
            ("MOVIELAKE_SQL_KEY_CHECK_HOURS", "off"),
        ])
        .expect("settings");
        assert_eq!(s.database.as_deref(), Some("postgres://reader@db:5432/platform"));
        assert_eq!(s.pull.lag, Duration::seconds(30));
        assert_eq!(s.pull.key_check, None);
        let e = settings(&[("MOVIELAKE_SQL_OVERLAP_SECONDS", "15m")]).expect_err("not a number");
        assert!(e.contains("MOVIELAKE_SQL_OVERLAP_SECONDS"), "{e}");
    }
}
