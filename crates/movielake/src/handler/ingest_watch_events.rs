//! `ingest_watch_events`: Event Hub trigger, `cardinality: many`, `dataType: string`.

use chrono::Utc;
use movielake_core::host::{Invocation, InvocationResponse, decode_event_hub_batch};
use movielake_core::pipelines::watch_events::PIPELINE;

use super::{AppState, FunctionError};
use movielake_core::output::manifest::Poison;

use crate::pipelines::watch_events::{ingest, land_poison, record_failure};

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
    let lake = state.lake.as_ref();
    let done = match ingest(
        lake,
        &state.tables,
        &state.ledger,
        contract,
        &batch,
        fallback_time,
        state.dedupe_window,
    )
    .await
    {
        Ok(done) => done,
        Err(e) => {
            // A batch that fails every time would stop its partition for good (the host retries
            // forever): past the configured attempts it is landed whole in quarantine instead.
            let error = e.to_string();
            let attempts = record_failure(lake, &batch, fallback_time, retry, &error).await;
            if state.poison_after_attempts == 0 || attempts < state.poison_after_attempts {
                return Err(e.into());
            }
            let poison = Poison { attempts, error };
            match land_poison(lake, &state.tables, contract, &batch, fallback_time, poison).await {
                Ok(done) => {
                    tracing::error!(partition = %batch.partition_id, attempts, "poison batch landed whole in quarantine");
                    done
                }
                Err(p) => {
                    tracing::warn!(error = %p, "could not land the poison batch in quarantine either");
                    return Err(e.into());
                }
            }
        }
    };
    let mut logs = done.logs;
    if done.bronze_already_landed > 0 {
        logs.push(format!(
            "bronze already landed (retry {retry}): outputs rewritten identically"
        ));
    }
    logs.push(format!("manifest {}", done.manifest_path));
    Ok(InvocationResponse::with_logs(logs))
}
