//! Watch events: plan a batch against the ledger, write it, then commit the ledger.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use movielake_core::Contract;
use movielake_core::host::EventHubBatch;
use movielake_core::ledger::LedgerBucket;
use movielake_core::manifest::RunManifest;
use movielake_core::pipelines::watch_events::{PIPELINE, land, ledger_hours, plan};

use super::ledger::{LedgerCache, LedgerError};
use super::{land_bronze, write_manifest, write_outputs};
use crate::lake::{Lake, LakeError};

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
    Encode(#[from] movielake_core::silver::EncodeError),
}

pub async fn ingest(
    lake: &dyn Lake,
    cache: &LedgerCache,
    contract: &Contract,
    batch: &EventHubBatch,
    fallback_time: DateTime<Utc>,
    dedupe_window: Duration,
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
        let plan = plan(contract, batch, fallback_time, &bronze, &buckets)?;
        write_outputs(lake, &plan).await?;
        match cache.commit(lake, &loaded, &plan.ledger_updates).await {
            Ok(()) => {}
            Err(LedgerError::Conflict(path)) if attempt < LEDGER_ATTEMPTS => {
                tracing::warn!(%path, attempt, "dedupe ledger changed under us; planning the batch again");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let logs = plan.logs.clone();
        let (manifest, manifest_path) = write_manifest(lake, plan, started_at, clock).await?;
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
