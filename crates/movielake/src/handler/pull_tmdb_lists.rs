//! `pull_tmdb_lists`: timer trigger (schedule `%TMDB_SCHEDULE%`).
//!
//! Fails the invocation (non-2xx) when the token is invalid, a list or a movie's details could
//! not be read (a 404 on a detail is a quarantine record, not a failure), or storage is down:
//! what did land stays in bronze and is named in the manifest.

use std::sync::Arc;

use chrono::Utc;
use movielake_core::host::{Invocation, InvocationResponse, decode_timer};
use movielake_core::sources::tmdb::details::MOVIE_DETAILS;

use super::{AppState, FunctionError};
use crate::pipelines::tmdb_lists::{PullError, PullSettings, pull};

pub const NAME: &str = "pull_tmdb_lists";
/// The trigger's binding name in `function.json`.
const BINDING: &str = "timer";

pub async fn run(state: &AppState, invocation: Invocation) -> Result<InvocationResponse, FunctionError> {
    let timer = decode_timer(&invocation, BINDING)?;
    let settings = match &state.tmdb {
        Some(settings) => settings.clone(),
        None => Arc::new(
            PullSettings::from_env()
                .map_err(|e| FunctionError::Configuration(format!("pull_tmdb_lists is not configured: {e}")))?,
        ),
    };
    // The host's clock names the run: one run id per invocation, shared by all its pages.
    let now = invocation.host_time().unwrap_or_else(Utc::now);
    let run_id = now.format("%Y%m%dT%H%M%SZ").to_string();
    let details_contract = state.contracts.get(MOVIE_DETAILS);
    let pulled = pull(
        state.lake.as_ref(),
        &settings,
        details_contract,
        &run_id,
        now.date_naive(),
    )
    .await
    .map_err(|e| match e {
        PullError::Lake(e) => FunctionError::Lake(e),
        e @ PullError::InvalidToken(_) => FunctionError::SourceAuth(e.to_string()),
        e @ (PullError::ListsFailed { .. } | PullError::DetailsFailed { .. }) => FunctionError::Source(e.to_string()),
        PullError::MissingContract(name) => FunctionError::MissingContract(name.into()),
        other => FunctionError::Internal(other.to_string()),
    })?;
    let mut logs = pulled.logs;
    if timer.is_past_due {
        logs.push("the timer was past due".into());
    }
    if pulled.already_landed > 0 {
        logs.push(format!(
            "{} page(s) already in bronze from an earlier attempt of run {run_id}: kept",
            pulled.already_landed
        ));
    }
    logs.push(format!("manifest {}", pulled.manifest_path));
    Ok(InvocationResponse::with_logs(logs))
}
