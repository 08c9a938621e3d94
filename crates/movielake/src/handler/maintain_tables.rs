//! `maintain_tables`: timer trigger (schedule `%MAINTAIN_TABLES_SCHEDULE%`, NCRONTAB in UTC,
//! hourly by default). Compacts, checkpoints, cleans the log of and vacuums every Delta table of
//! the lake, as `movielake maintain` does (see `tables/maintain.rs`), then rebuilds the gold
//! models whose inputs changed since their last build (see `pipelines/gold.rs`).
//!
//! The host runs one invocation of a timer Function at a time across all instances
//! (https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#scale-out) and
//! does not retry a failed one: the next occurrence is the retry (same page, "Retry
//! behavior"). So a table that failed fails the invocation (its error is in the logs) and the
//! tables that were maintained stay maintained.

use std::time::{Duration, Instant};

use chrono::Utc;
use movielake_core::host::{Invocation, InvocationResponse, decode_timer};

use super::{AppState, FunctionError};
use crate::pipelines::gold::{self, GoldError, Refresh};
use crate::tables::Tables;
use crate::tables::maintain::{Checkpoint, MaintainError, MaintainOptions, Maintained};

pub const NAME: &str = "maintain_tables";
/// The trigger's binding name in `function.json`.
const BINDING: &str = "timer";
/// Tables are started only within this budget: host.json's `functionTimeout` is 10 minutes
/// (https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout), and a table
/// under way when the budget runs out gets `DEADLINE_GRACE` more to finish or stop. Tables not
/// reached are named in the logs; later runs start elsewhere in the list.
pub const BUDGET: Duration = Duration::from_secs(7 * 60);

pub async fn run(state: &AppState, invocation: Invocation) -> Result<InvocationResponse, FunctionError> {
    let started = Instant::now();
    let timer = decode_timer(&invocation, BINDING)?;
    let now = invocation.host_time().unwrap_or_else(Utc::now);
    let holder = format!("{NAME} at {}", now.format("%Y-%m-%dT%H:%M:%SZ"));
    let mut options = MaintainOptions::from_lookup(|name| std::env::var(name).ok(), holder)
        .map_err(|e| FunctionError::Configuration(format!("{NAME} is not configured: {e} ({})", e.hint())))?;
    options.deadline = Some(started + BUDGET);

    let mut tables = Tables::list_tables(state.lake.as_ref()).await?;
    // Start each run at another table, so a lake too large for one run's budget is still
    // maintained all round, a few tables a run.
    if !tables.is_empty() {
        let hours = usize::try_from(now.timestamp() / 3600).unwrap_or(0);
        let start = hours % tables.len();
        tables.rotate_left(start);
    }
    let mut logs = Vec::new();
    if timer.is_past_due {
        logs.push("the timer was past due".into());
    }
    if tables.is_empty() {
        logs.push("no Delta tables in the lake yet".into());
    }
    let report = state
        .tables
        .maintain_all(state.lake.as_ref(), &tables, &options, |table, outcome| {
            let line = line(table, outcome);
            // As it happens, in the host's log: the response's logs are lost if the host
            // gives up on the invocation.
            tracing::info!(function = NAME, "{line}");
            logs.push(line);
        })
        .await;
    // Events whose dimension landed late or changed since are enriched again (issue 17),
    // before gold reads them.
    let reenriched = crate::pipelines::reenrich::reenrich_all(
        state.lake.as_ref(),
        &state.tables,
        &state.contracts,
        state.reenrich_days,
        now.date_naive(),
    )
    .await;
    match &reenriched {
        Ok(outcomes) => logs.extend(outcomes.iter().map(|(table, done)| match done {
            Some(d) => format!(
                "{table}: re-enriched {} of {} rows in the last {} days ({} of {} partitions rewritten)",
                d.changed, d.rows, state.reenrich_days, d.rewritten, d.partitions
            ),
            None => format!("{table}: the enrichment dimension has not changed since the last re-enrichment"),
        })),
        Err(e) => {
            tracing::error!(function = NAME, error = %e, "re-enrichment failed");
            logs.push(format!("re-enrichment failed: {e}"));
        }
    }
    // Gold stays current without anyone running the CLI: the models whose SQL or input tables
    // changed since their last build run again (an idle lake reads no data).
    let gold = refresh_gold(state).await;
    match &gold {
        Ok(run) => {
            for built in &run.built {
                logs.push(format!(
                    "gold {}: {} rows, version {}",
                    built.name, built.rows, built.version
                ));
            }
            logs.extend(run.skipped.iter().cloned());
            logs.push(format!(
                "gold: {} models rebuilt, {} unchanged, {} waiting for input",
                run.built.len(),
                run.unchanged.len(),
                run.skipped.len()
            ));
        }
        Err(e) => {
            tracing::error!(function = NAME, error = %e, "gold refresh failed");
            logs.push(format!("gold refresh failed: {e}"));
        }
    }
    let files = |f: fn(&Maintained) -> usize| report.maintained.iter().map(f).sum::<usize>();
    logs.push(format!(
        "{} tables maintained in {:.1?}: files {} -> {}; {} skipped (busy), {} failed, {} left for the next run",
        report.maintained.len(),
        report.elapsed,
        files(|m| m.before.files),
        files(|m| m.after.files),
        report.busy.len(),
        report.failed.len(),
        report.left.len()
    ));
    if !report.left.is_empty() {
        logs.push(format!(
            "left for the next run (out of time): {}",
            report.left.join(", ")
        ));
    }
    if let Some((_, error)) = report.failed.into_iter().next() {
        // Fails the invocation, so that it shows as failed in Application Insights; the
        // tables that were maintained stay so, and every line above is in the host's log.
        return Err(match error {
            MaintainError::Table(e) => FunctionError::Table(e),
            MaintainError::Lease { source, .. } => FunctionError::Lake(source),
            other => FunctionError::Internal(other.to_string()),
        });
    }
    if let Err(e) = reenriched {
        return Err(FunctionError::Internal(format!("re-enrichment: {e}")));
    }
    if let Err(e) = gold {
        return Err(match e {
            GoldError::Lake(e) => FunctionError::Lake(e),
            GoldError::Table(e) => FunctionError::Table(e),
            other => FunctionError::Internal(other.to_string()),
        });
    }
    Ok(InvocationResponse::with_logs(logs))
}

/// Runs the gold models with changes (see [`Refresh::Changed`]).
async fn refresh_gold(state: &AppState) -> Result<gold::GoldRun, GoldError> {
    let models = gold::load_models(gold::default_models_dir().as_deref())?;
    gold::build(
        state.lake.as_ref(),
        &state.tables,
        &state.contracts,
        &models,
        Refresh::Changed,
    )
    .await
}

/// One table as one log line.
fn line(table: &str, outcome: &Result<Maintained, MaintainError>) -> String {
    let done = match outcome {
        Ok(done) => done,
        Err(e) => return e.to_string(),
    };
    let checkpoint = match done.checkpoint {
        Checkpoint::Written { version } => format!("checkpoint v{version}"),
        Checkpoint::Current { version } | Checkpoint::WouldWrite { version } => {
            format!("checkpoint v{version} already")
        }
    };
    let vacuum = match &done.vacuum {
        Some(v) => format!("vacuumed {} files ({} h)", v.files.len(), v.retention_hours),
        None => "no vacuum".into(),
    };
    format!(
        "{table}: files {} -> {} ({} bytes -> {}), v{} -> v{}, {checkpoint}, {vacuum}, {:.1?}",
        done.before.files,
        done.after.files,
        done.before.bytes,
        done.after.bytes,
        done.version_before,
        done.version_after,
        done.elapsed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget and the grace of the table under way end before host.json's functionTimeout.
    #[test]
    fn the_budget_fits_the_function_timeout() {
        let host: serde_json::Value =
            serde_json::from_str(include_str!("../../../../host.json")).expect("host.json is JSON");
        let timeout = host["functionTimeout"].as_str().expect("functionTimeout is set");
        let parts: Vec<u64> = timeout.split(':').map(|p| p.parse().expect("hh:mm:ss")).collect();
        let timeout = Duration::from_secs(parts[0] * 3600 + parts[1] * 60 + parts[2]);
        let grace = crate::tables::maintain::DEADLINE_GRACE;
        assert!(
            BUDGET + grace + Duration::from_secs(30) <= timeout,
            "BUDGET {BUDGET:?} and its grace {grace:?} leave under 30 s of {timeout:?}"
        );
    }
}
