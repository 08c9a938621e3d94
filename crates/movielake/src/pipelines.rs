//! Applies a core [`Plan`] through the lake port, in the order that keeps nothing lost:
//! bronze first (create-only), then silver and quarantine, the run manifest last.

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use movielake_core::manifest::{Output, OutputKind, RunManifest};
use movielake_core::naming::run_manifest;
use movielake_core::pipelines::Plan;

use crate::lake::{Lake, LakeError, PutMode};

/// Writes in flight at once: enough to hide blob latency, few enough for a small instance.
const CONCURRENT_WRITES: usize = 8;

#[derive(Debug)]
pub struct Applied {
    pub manifest: RunManifest,
    pub manifest_path: String,
    /// Bronze objects that were already there (a retry or a redelivery).
    pub bronze_already_landed: usize,
}

pub async fn apply(
    lake: &dyn Lake,
    plan: Plan,
    started_at: DateTime<Utc>,
    clock: Instant,
) -> Result<Applied, LakeError> {
    let mut bronze_already_landed = 0;
    for w in plan.writes.iter().filter(|w| w.kind == OutputKind::Bronze) {
        match lake.put(&w.path, Bytes::from(w.bytes.clone()), PutMode::Create).await {
            Ok(_) => {}
            Err(LakeError::AlreadyExists { .. }) => bronze_already_landed += 1,
            Err(e) => return Err(e),
        }
    }
    futures::stream::iter(plan.writes.iter().filter(|w| w.kind != OutputKind::Bronze).map(Ok))
        .try_for_each_concurrent(CONCURRENT_WRITES, |w| async move {
            lake.put(&w.path, Bytes::from(w.bytes.clone()), PutMode::Overwrite)
                .await
                .map(|_| ())
        })
        .await?;

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
    let manifest = RunManifest {
        run_id: plan.run_id.clone(),
        pipeline: plan.pipeline.clone(),
        binary_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        finished_at: Utc::now(),
        duration_ms: clock.elapsed().as_millis() as u64,
        inputs: plan.inputs,
        outputs,
        counts: plan.counts,
        contracts: plan.contracts,
    };
    let manifest_path = run_manifest(&plan.pipeline, plan.date, &plan.run_id);
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| LakeError::Other {
        path: manifest_path.clone(),
        message: format!("cannot encode the run manifest: {e}"),
    })?;
    lake.put(&manifest_path, Bytes::from(body), PutMode::Overwrite).await?;
    Ok(Applied {
        manifest,
        manifest_path,
        bronze_already_landed,
    })
}
