//! `movielake run`: the main job on one lake, through the same Function code the host calls.

use chrono::{DateTime, Utc};
use movielake_core::host::event_hub_request;
use movielake_core::manifest::Counts;
use movielake_core::sample::{SampleOptions, partition_for, watch_events};

use crate::handler::{AppState, FunctionError, call};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub events: usize,
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub partitions: usize,
    pub batch_size: usize,
}

#[derive(Debug, Default)]
pub struct RunSummary {
    pub invocations: usize,
    pub counts: Counts,
    pub manifests: Vec<String>,
}

/// Generates watch events, cuts them into host-shaped Event Hub batches (partitioned by
/// user, consecutive sequence numbers) and invokes `ingest_watch_events` for each.
pub async fn run_watch_events(
    state: &AppState,
    opts: &RunOptions,
    progress: &dyn Fn(&str),
) -> Result<RunSummary, FunctionError> {
    let events = watch_events(&SampleOptions {
        seed: opts.seed,
        count: opts.events,
        start: opts.start,
        bad_share: 0.04,
        duplicate_share: 0.02,
    });
    let partitions = opts.partitions.max(1);
    let mut per_partition: Vec<Vec<(String, DateTime<Utc>)>> = vec![Vec::new(); partitions];
    for e in events {
        // Enqueued a moment after it happened, as a device upload would be.
        let partition = partition_for(&e.partition_key, partitions);
        per_partition[partition].push((e.body, e.occurred_at + chrono::Duration::milliseconds(350)));
    }
    let mut summary = RunSummary::default();
    let total_batches: usize = per_partition
        .iter()
        .map(|p| p.len().div_ceil(opts.batch_size.max(1)))
        .sum();
    for (partition, events) in per_partition.iter().enumerate() {
        for (n, chunk) in events.chunks(opts.batch_size.max(1)).enumerate() {
            let first_seq = (n * opts.batch_size.max(1)) as i64;
            let request = event_hub_request(
                "events",
                "ingest_watch_events",
                &partition.to_string(),
                first_seq,
                chunk,
            );
            let body = serde_json::to_vec(&request).map_err(|e| FunctionError::Internal(e.to_string()))?;
            let response = call(state, "ingest_watch_events", &body).await?;
            summary.invocations += 1;
            progress(&format!(
                "[{}/{total_batches}] {}",
                summary.invocations,
                response.logs.first().map_or("", String::as_str)
            ));
            if let Some(m) = response.logs.iter().find_map(|l| l.strip_prefix("manifest ")) {
                summary.manifests.push(m.to_string());
            }
        }
    }
    for path in &summary.manifests {
        let object = state.lake.get(path).await?;
        let manifest: movielake_core::manifest::RunManifest = serde_json::from_slice(&object.bytes)
            .map_err(|e| FunctionError::Internal(format!("{path}: unreadable manifest: {e}")))?;
        summary.counts.add(&manifest.counts);
    }
    Ok(summary)
}
