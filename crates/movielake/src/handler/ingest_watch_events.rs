//! `ingest_watch_events`: Event Hub trigger, `cardinality: many`, `dataType: string`.

use std::time::Instant;

use chrono::Utc;
use movielake_core::host::{Invocation, InvocationResponse, decode_event_hub_batch};
use movielake_core::pipelines::watch_events;

use super::{AppState, FunctionError};
use crate::pipelines::apply;

pub const NAME: &str = "ingest_watch_events";
/// The trigger's binding name in `function.json`.
const BINDING: &str = "events";

pub async fn run(state: &AppState, invocation: Invocation) -> Result<InvocationResponse, FunctionError> {
    let (started_at, clock) = (Utc::now(), Instant::now());
    let batch = decode_event_hub_batch(&invocation, BINDING)?;
    let contract = state
        .contracts
        .get(watch_events::PIPELINE)
        .ok_or_else(|| FunctionError::MissingContract(watch_events::PIPELINE.into()))?;
    let fallback_time = invocation.host_time().unwrap_or(started_at);
    let plan =
        watch_events::plan(contract, &batch, fallback_time).map_err(|e| FunctionError::Internal(e.to_string()))?;
    let mut logs = plan.logs.clone();
    let applied = apply(state.lake.as_ref(), plan, started_at, clock).await?;
    if applied.bronze_already_landed > 0 {
        logs.push(format!(
            "bronze already landed (retry {}): outputs rewritten identically",
            invocation.retry_count()
        ));
    }
    logs.push(format!("manifest {}", applied.manifest_path));
    Ok(InvocationResponse::with_logs(logs))
}
