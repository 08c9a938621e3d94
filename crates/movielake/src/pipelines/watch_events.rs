//! Watch events: plan a batch against the ledger, write it, then commit the ledger.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use movielake_core::Contract;
use movielake_core::enrich::Dimension;
use movielake_core::host::EventHubBatch;
use movielake_core::output::manifest::{Poison, RunManifest};
use movielake_core::output::naming::silver_table;
use movielake_core::output::silver::SOURCE_OBJECT;
use movielake_core::pipelines::watch_events::{PIPELINE, attempts_path, land, ledger_hours, plan, plan_poison};
use movielake_core::routing::ledger::LedgerBucket;

use super::ledger::{LedgerCache, LedgerError};
use super::silver_tables::{SilverError, commit_plan};
use super::{land_bronze, write_manifest, write_outputs};
use crate::lake::{Lake, LakeError, PutMode};
use crate::tables::{TableError, Tables, Txn};

/// Re-plans after a ledger conflict at most this often before failing the invocation (the host
/// then retries it later).
const LEDGER_ATTEMPTS: usize = 5;

#[derive(Debug)]
pub struct Ingested {
    pub manifest: RunManifest,
    pub manifest_path: String,
    pub bronze_already_landed: usize,
    pub logs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("dedupe ledger: {0}")]
    Ledger(LedgerError),
    #[error("cannot encode the batch: {0}")]
    Encode(#[from] movielake_core::output::silver::EncodeError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Silver(SilverError),
}

impl From<SilverError> for IngestError {
    fn from(e: SilverError) -> Self {
        match e {
            SilverError::Lake(e) => IngestError::Lake(e),
            SilverError::Table(e) => IngestError::Table(e),
            other => IngestError::Silver(other),
        }
    }
}

/// The batch's Delta transaction: one app id per hub, consumer group and partition, whose
/// version is the batch's last sequence number. The trigger hands a partition's batches over
/// in order, so a batch whose last number the table already holds (a redelivery, a retry
/// after the commit) is in silver already. A hub recreated under the same name starts its
/// numbers again: read it with a new consumer group.
pub fn batch_txn(batch: &EventHubBatch) -> Option<Txn> {
    let last = batch.sequence_numbers.iter().copied().max()?;
    Some(Txn {
        app_id: format!(
            "eventhub/{}/{}/{}",
            batch.event_hub.as_deref().unwrap_or("-"),
            batch.consumer_group.as_deref().unwrap_or("$Default"),
            batch.partition_id
        ),
        version: last,
    })
}

#[allow(clippy::too_many_arguments)]
pub async fn ingest(
    lake: &dyn Lake,
    tables: &Tables,
    cache: &LedgerCache,
    contract: &Contract,
    batch: &EventHubBatch,
    fallback_time: DateTime<Utc>,
    dedupe_window: Duration,
    dimension: Option<&Dimension>,
) -> Result<Ingested, IngestError> {
    let (started_at, clock) = (Utc::now(), Instant::now());
    let bronze = land(batch, fallback_time)?;
    let bronze_already_landed = land_bronze(lake, std::slice::from_ref(&bronze)).await?;
    let hours = ledger_hours(batch, fallback_time, dedupe_window);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let loaded = cache
            .load(lake, PIPELINE, &batch.partition_id, &hours)
            .await
            .map_err(IngestError::from)?;
        let buckets: Vec<&LedgerBucket> = loaded.buckets.iter().map(|b| b.as_ref()).collect();
        let mut plan = plan(contract, batch, fallback_time, &bronze, &buckets, dimension)?;
        // Silver first (an attempt that cannot commit leaves nothing a reader sees), then
        // quarantine, then the ledger: a ledger entry is a promise that the event is stored.
        let committing = Instant::now();
        let versions = commit_plan(lake, tables, &[contract], &mut plan, batch_txn(batch).as_ref()).await?;
        let commit = committing.elapsed();
        write_outputs(lake, &plan).await?;
        match cache.commit(lake, &loaded, &plan.ledger_updates).await {
            Ok(()) => {}
            Err(LedgerError::Conflict(path)) if attempt < LEDGER_ATTEMPTS => {
                tracing::warn!(%path, attempt, "dedupe ledger changed under us; planning the batch again");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let mut logs = plan.logs.clone();
        logs.extend(versions.iter().map(|(table, version)| match version {
            Some(v) => format!("{table}: committed version {v}"),
            None => format!("{table}: already held this batch (an earlier attempt committed it)"),
        }));
        let (manifest, manifest_path) = write_manifest(lake, plan, versions, Some(commit), started_at, clock).await?;
        return Ok(Ingested {
            manifest,
            manifest_path,
            bronze_already_landed,
            logs,
        });
    }
}

impl From<LedgerError> for IngestError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Lake(e) => IngestError::Lake(e),
            other => IngestError::Ledger(other),
        }
    }
}

/// Our own count of a batch's failed attempts (`ops/attempts/…`), beside the host's retry count.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Attempts {
    attempts: u32,
    last_error: String,
    host_retry_count: u64,
    last_failed_at: Option<DateTime<Utc>>,
}

/// Records one more failed attempt of `batch` and returns how many attempts have failed: the
/// larger of our own record and the host's retry count (an instance that restarted, or a record
/// that could not be written, still counts). Best effort: storage that refuses this write is
/// storage the next attempt will also find down.
pub async fn record_failure(
    lake: &dyn Lake,
    batch: &EventHubBatch,
    fallback_time: DateTime<Utc>,
    host_retry_count: u64,
    error: &str,
) -> u32 {
    let path = attempts_path(batch, fallback_time);
    let recorded = match lake.get(&path).await {
        Ok(object) => serde_json::from_slice::<Attempts>(&object.bytes).unwrap_or_default(),
        Err(_) => Attempts::default(),
    };
    let host = u32::try_from(host_retry_count.saturating_add(1)).unwrap_or(u32::MAX);
    let attempts = recorded.attempts.saturating_add(1).max(host);
    let record = Attempts {
        attempts,
        last_error: error.to_string(),
        host_retry_count,
        last_failed_at: Some(Utc::now()),
    };
    if let Ok(body) = serde_json::to_vec_pretty(&record)
        && let Err(e) = lake.put(&path, body.into(), PutMode::Overwrite).await
    {
        tracing::warn!(%path, error = %e, "could not record the failed attempt");
    }
    attempts
}

/// Lands a batch that failed `poison.attempts` times whole in quarantine (stage `poison`),
/// after deleting from silver any row an earlier attempt of it committed, so that every event
/// is counted once: `in = silver + quarantined + duplicates` holds for the batch.
pub async fn land_poison(
    lake: &dyn Lake,
    tables: &Tables,
    contract: &Contract,
    batch: &EventHubBatch,
    fallback_time: DateTime<Utc>,
    poison: Poison,
) -> Result<Ingested, IngestError> {
    let (started_at, clock) = (Utc::now(), Instant::now());
    let bronze = land(batch, fallback_time)?;
    let bronze_already_landed = land_bronze(lake, std::slice::from_ref(&bronze)).await?;
    // Every silver row of the batch names its bronze object: that finds them whichever
    // attempt committed them, and after a compaction merged their files with others.
    let table = silver_table(contract);
    let predicate = format!("{SOURCE_OBJECT} = '{}'", bronze.path.replace('\'', "''"));
    let removed = tables.delete_where(&table, &predicate).await?;
    let plan = plan_poison(contract, batch, fallback_time, &bronze, poison)?;
    write_outputs(lake, &plan).await?;
    let mut logs = plan.logs.clone();
    if removed > 0 {
        logs.push(format!("{table}: {removed} row(s) of an earlier attempt deleted"));
    }
    let (manifest, manifest_path) = write_manifest(lake, plan, Default::default(), None, started_at, clock).await?;
    Ok(Ingested {
        manifest,
        manifest_path,
        bronze_already_landed,
        logs,
    })
}
