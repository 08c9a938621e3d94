//! `ingest_watch_events`: Event Hub trigger, `cardinality: many`, `dataType: string`.

use chrono::Utc;
use movielake_core::host::{Invocation, InvocationResponse, decode_event_hub_batch};
use movielake_core::pipelines::watch_events::PIPELINE;

use super::{AppState, FunctionError};
use crate::pipelines::watch_events::ingest;

pub const NAME: &str = "ingest_watch_events";
/// The trigger's binding name in `function.json`.
const BINDING: &str = "events";

pub async fn run(state: &AppState, invocation: Invocation) -> Result<InvocationResponse, FunctionError> {
    let batch = decode_event_hub_batch(&invocation, BINDING)?;
    let contract = state
        .contracts
        .get(PIPELINE)
        .ok_or_else(|| FunctionError::MissingContract(PIPELINE.into()))?;
    let fallback_time = invocation.host_time().unwrap_or_else(Utc::now);
    let retry = invocation.retry_count();
    // The decoded request holds every body a second time (and the metadata the batch does not
    // use): let it go before the batch is planned, which is when memory peaks.
    drop(invocation);
    let done = ingest(
        state.lake.as_ref(),
        &state.ledger,
        contract,
        &batch,
        fallback_time,
        state.dedupe_window,
    )
    .await?;
    let mut logs = done.logs;
    if done.bronze_already_landed > 0 {
        logs.push(format!(
            "bronze already landed (retry {retry}): outputs rewritten identically"
        ));
    }
    logs.push(format!("manifest {}", done.manifest_path));
    Ok(InvocationResponse::with_logs(logs))
}
