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
    // The dimension is read from storage only when a history table moved (and that checked
    // at most every refresh); an unreadable one enriches nothing rather than stopping the
    // stream: the rows say `user_unknown` and the maintenance run enriches them again.
    let dimension = match contract.enrich_as_of {
        Some(_) => match state.dimension.get(&state.tables).await {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(error = %e, "enrichment dimension not loaded; events land as user_unknown");
                None
            }
        },
        None => None,
    };
    let done = match ingest(
        lake,
        &state.tables,
        &state.ledger,
        contract,
        &batch,
        fallback_time,
        state.dedupe_window,
        dimension.as_deref(),
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

#[cfg(test)]
mod tests {
    /// Commits per second one watch-events table took from 32 concurrent writers on Azurite,
    /// release build (`movielake bench commits`, BENCHMARKS.md "Delta commits"). Real Blob
    /// Storage answers slower than a local Azurite: host.json keeps a wide margin under it.
    const MEASURED_COMMITS_PER_SECOND: f64 = 8.4;
    /// A Standard namespace's partition takes at most one throughput unit's ingress, 1,000
    /// events/s (https://learn.microsoft.com/azure/event-hubs/event-hubs-scalability).
    const PARTITION_EVENTS_PER_SECOND: f64 = 1_000.0;
    /// The largest batch whose peak memory BENCHMARKS.md measures (under 200 MiB).
    const MEASURED_BATCH: u64 = 50_000;

    fn seconds(text: &str) -> f64 {
        let parts: Vec<f64> = text.split(':').map(|p| p.parse().expect("hh:mm:ss")).collect();
        parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
    }

    /// host.json's batching bounds how often the partitions commit to `silver/events/watch`
    /// (every invocation is one commit): the most partitions Terraform allows, each at a
    /// Standard partition's full ingress, stay under a third of the measured capacity. The
    /// keys' rules are the extension's own (Azure/azure-sdk-for-net, EventHubOptions.cs:
    /// MinEventBatchSize less than MaxEventBatchSize, MaxWaitTime at most 10 minutes and only
    /// used when MinEventBatchSize is over 1).
    #[test]
    fn host_json_batching_keeps_commits_well_under_the_measured_capacity() {
        let host: serde_json::Value =
            serde_json::from_str(include_str!("../../../../host.json")).expect("host.json is JSON");
        let hubs = &host["extensions"]["eventHubs"];
        let number = |key: &str| hubs[key].as_u64().unwrap_or_else(|| panic!("eventHubs.{key} is set"));
        let (max, min, prefetch) = (
            number("maxEventBatchSize"),
            number("minEventBatchSize"),
            number("prefetchCount"),
        );
        let wait = seconds(hubs["maxWaitTime"].as_str().expect("eventHubs.maxWaitTime is set"));
        assert!(
            1 < min && min < max,
            "1 < minEventBatchSize {min} < maxEventBatchSize {max}"
        );
        assert!(0.0 < wait && wait <= 600.0, "maxWaitTime {wait} s: at most 10 minutes");
        assert!(prefetch >= max, "prefetchCount {prefetch} holds a full batch of {max}");
        assert!(
            max <= MEASURED_BATCH,
            "maxEventBatchSize {max}: memory measured up to {MEASURED_BATCH}"
        );

        let variables = include_str!("../../../../infra/variables.tf");
        let partitions: f64 = variables
            .split("var.watch_events_partitions <= ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .expect("infra/variables.tf bounds watch_events_partitions");
        // At full ingress a partition is invoked as soon as `min` events are there.
        let per_partition = (PARTITION_EVENTS_PER_SECOND / min as f64).max(1.0 / wait);
        let commits = partitions * per_partition;
        assert!(
            commits <= MEASURED_COMMITS_PER_SECOND / 3.0,
            "{partitions} partitions commit {commits:.1}/s, over a third of the {MEASURED_COMMITS_PER_SECOND}/s measured"
        );
    }
}
