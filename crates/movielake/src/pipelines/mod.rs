//! The app's pipelines: each applies core plans (gold: SQL models) through the lake port. No
//! host payloads, no command line: the handler and the CLI call them.
//!
//! A core [`Plan`] is applied in the order that keeps nothing lost: bronze first (create-only),
//! then silver and quarantine, the ledger, the run manifest last.

pub mod bronze_to_silver;
pub mod dimension;
pub mod files;
pub mod gold;
pub mod ledger;
pub mod reenrich;
pub mod silver_tables;
pub mod sql_pull;
pub mod sql_scd;
pub mod tmdb_lists;
pub mod tmdb_movies;
pub mod watch_events;

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use movielake_core::output::manifest::{Output, OutputKind, RunManifest};
use movielake_core::output::naming::run_manifest;
use movielake_core::output::plan::{Plan, PlannedWrite};

use crate::lake::{Lake, LakeError, PutMode};

/// Writes in flight at once: enough to hide blob latency, few enough for a small instance.
const CONCURRENT_WRITES: usize = 8;

/// Lands bronze objects create-only. Finding one there already is a retry or a redelivery, and
/// fine, if it holds the same bytes: bronze is immutable, and an input whose identity is reused
/// for other content (sequence numbers replayed by a misconfigured producer) must not overwrite
/// silver built from the first one. Returns how many were already there.
pub async fn land_bronze(lake: &dyn Lake, writes: &[PlannedWrite]) -> Result<usize, LakeError> {
    let mut already_landed = 0;
    for w in writes.iter().filter(|w| w.kind == OutputKind::Bronze) {
        match lake.put(&w.path, w.bytes.clone(), PutMode::Create).await {
            Ok(_) => {}
            Err(LakeError::AlreadyExists { .. }) => {
                if lake.get(&w.path).await?.bytes != w.bytes {
                    return Err(LakeError::Other {
                        path: w.path.clone(),
                        message: "already holds different content for the same input identity (a reused \
                                  Event Hub sequence range?); bronze is never overwritten"
                            .into(),
                    });
                }
                already_landed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(already_landed)
}

/// Writes quarantine and the other plain objects (not bronze, already landed; not silver,
/// which goes into tables): names and bytes are deterministic, so overwriting on a retry
/// changes nothing.
pub async fn write_outputs(lake: &dyn Lake, plan: &Plan) -> Result<(), LakeError> {
    let plain = |w: &&PlannedWrite| !matches!(w.kind, OutputKind::Bronze | OutputKind::Silver);
    futures::stream::iter(plan.writes.iter().filter(plain).map(Ok))
        .try_for_each_concurrent(CONCURRENT_WRITES, |w| async move {
            lake.put(&w.path, w.bytes.clone(), PutMode::Overwrite).await.map(|_| ())
        })
        .await
}

/// Records the run (inputs, outputs, counts, contract versions) at a name derived from the
/// input, so a retry rewrites the same manifest. Returns it and its path.
pub async fn write_manifest(
    lake: &dyn Lake,
    plan: Plan,
    tables: silver_tables::TableVersions,
    commit: Option<std::time::Duration>,
    started_at: DateTime<Utc>,
    clock: Instant,
) -> Result<(RunManifest, String), LakeError> {
    let outputs = plan
        .writes
        .iter()
        .map(|w| Output {
            path: w.path.clone(),
            kind: w.kind,
            rows: w.rows,
            bytes: w.bytes.len() as u64,
        })
        .collect();
    let date = plan.date;
    let manifest = RunManifest {
        run_id: plan.run_id,
        pipeline: plan.pipeline,
        binary_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        finished_at: Utc::now(),
        duration_ms: clock.elapsed().as_millis() as u64,
        commit_ms: commit.map(|d| d.as_millis() as u64),
        inputs: plan.inputs,
        outputs,
        counts: plan.counts,
        contracts: plan.contracts,
        poison: plan.poison,
        tables,
    };
    let manifest_path = put_manifest(lake, &manifest, date).await?;
    Ok((manifest, manifest_path))
}

/// Writes a run manifest at `ops/runs/<pipeline>/date=<date>/<run id>.json` (overwrite: a retry
/// of the same input rewrites it). Returns its path.
pub async fn put_manifest(
    lake: &dyn Lake,
    manifest: &RunManifest,
    date: chrono::NaiveDate,
) -> Result<String, LakeError> {
    let manifest_path = run_manifest(&manifest.pipeline, date, &manifest.run_id);
    let body = serde_json::to_vec_pretty(manifest).map_err(|e| LakeError::Other {
        path: manifest_path.clone(),
        message: format!("cannot encode the run manifest: {e}"),
    })?;
    lake.put(&manifest_path, Bytes::from(body), PutMode::Overwrite).await?;
    Ok(manifest_path)
}
