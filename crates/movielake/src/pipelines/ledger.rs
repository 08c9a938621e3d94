//! Reading and committing the de-duplication ledger through the lake.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use movielake_core::routing::ledger::{LedgerBucket, bucket_path};

use crate::lake::{ETag, Lake, LakeError, PutMode};

/// Buckets already read, by path and ETag: a partition's buckets change only when this
/// instance writes them, so most invocations read nothing but a listing.
#[derive(Debug, Default)]
pub struct LedgerCache {
    buckets: Mutex<HashMap<String, (ETag, Arc<LedgerBucket>)>>,
}

/// The buckets a plan was made against, with their versions for the compare-and-swap.
#[derive(Debug, Default)]
pub struct LoadedLedger {
    pub buckets: Vec<Arc<LedgerBucket>>,
    versions: HashMap<String, (ETag, Arc<LedgerBucket>)>,
}

/// Why the ledger could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{path}: {message}")]
    Corrupt { path: String, message: String },
    /// Another writer changed a bucket since it was read: re-read, re-plan, retry.
    #[error("{0}: changed by another writer")]
    Conflict(String),
}

impl LedgerCache {
    pub async fn load(
        &self,
        lake: &dyn Lake,
        dataset: &str,
        partition: &str,
        hours: &[DateTime<Utc>],
    ) -> Result<LoadedLedger, LedgerError> {
        let wanted: Vec<String> = hours.iter().map(|h| bucket_path(dataset, partition, *h)).collect();
        // One listing per day of the window, not of the whole partition: old buckets pile up
        // until the lifecycle rule expires them, and must not slow every batch down.
        let prefix = movielake_core::routing::ledger::partition_prefix(dataset, partition);
        let mut days: Vec<String> = hours.iter().map(|h| h.format("%Y-%m-%d").to_string()).collect();
        days.dedup();
        let mut listed = Vec::new();
        for day in days {
            listed.extend(lake.list(&format!("{prefix}hour={day}")).await?);
        }
        let mut loaded = LoadedLedger::default();
        for meta in listed.into_iter().filter(|m| wanted.contains(&m.path)) {
            let cached = self.cached(&meta.path).filter(|(etag, _)| *etag == meta.etag);
            let (etag, bucket) = match cached {
                Some(hit) => hit,
                None => {
                    let object = match lake.get(&meta.path).await {
                        Ok(o) => o,
                        Err(LakeError::NotFound { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    let bucket = LedgerBucket::decode(&object.bytes).map_err(|e| LedgerError::Corrupt {
                        path: meta.path.clone(),
                        message: e.to_string(),
                    })?;
                    let entry = (object.etag, Arc::new(bucket));
                    self.remember(&meta.path, entry.clone());
                    entry
                }
            };
            loaded.buckets.push(bucket.clone());
            loaded.versions.insert(meta.path, (etag, bucket));
        }
        Ok(loaded)
    }

    /// Merges `updates` into the buckets as read, each written only if nobody changed it since.
    pub async fn commit(
        &self,
        lake: &dyn Lake,
        loaded: &LoadedLedger,
        updates: &BTreeMap<String, LedgerBucket>,
    ) -> Result<(), LedgerError> {
        for (path, additions) in updates {
            let (mode, mut merged) = match loaded.versions.get(path) {
                Some((etag, bucket)) => (PutMode::IfMatch(etag.clone()), (**bucket).clone()),
                None => (PutMode::Create, LedgerBucket::default()),
            };
            if !merged.merge(additions) && matches!(mode, PutMode::IfMatch(_)) {
                continue; // a redelivery: nothing new to record
            }
            match lake.put(path, Bytes::from(merged.encode()), mode).await {
                Ok(etag) => self.remember(path, (etag, Arc::new(merged))),
                Err(
                    LakeError::PreconditionFailed { .. } | LakeError::AlreadyExists { .. } | LakeError::NotFound { .. },
                ) => {
                    self.forget(path);
                    return Err(LedgerError::Conflict(path.clone()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn cached(&self, path: &str) -> Option<(ETag, Arc<LedgerBucket>)> {
        self.buckets.lock().ok()?.get(path).cloned()
    }

    fn remember(&self, path: &str, entry: (ETag, Arc<LedgerBucket>)) {
        if let Ok(mut map) = self.buckets.lock() {
            // Bounded: a day of hourly buckets for a few dozen partitions.
            if map.len() > 4096 {
                map.clear();
            }
            map.insert(path.to_string(), entry);
        }
    }

    fn forget(&self, path: &str) {
        if let Ok(mut map) = self.buckets.lock() {
            map.remove(path);
        }
    }
}
