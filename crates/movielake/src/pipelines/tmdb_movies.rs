//! Committing `silver/tmdb/movies` buckets through the lake: read with the ETag, merge in the
//! core, write back only if nobody changed the bucket since (`IfMatch`, or `Create` for a new
//! bucket); on a lost race re-read and merge again, a few times, then fail the invocation so
//! the host retries it later. The merge keeps the latest observation whatever the order, so
//! concurrent pages cannot lose an update and a redelivered page changes nothing.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::time::Duration;

use bytes::Bytes;
use movielake_core::sources::tmdb::movies::{MovieRow, merge};

use crate::lake::{Lake, LakeError, PutMode};

/// Re-reads after a lost compare-and-swap at most this often per bucket before failing.
const ATTEMPTS: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum MoviesError {
    #[error(transparent)]
    Lake(LakeError),
    #[error("{path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("{path}: changed by other writers {ATTEMPTS} times in a row; retry later")]
    Conflict { path: String },
}

/// What the commit did, for the invocation's logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub written: usize,
    pub unchanged: usize,
    pub retries: u32,
}

pub async fn commit(lake: &dyn Lake, updates: &BTreeMap<String, Vec<MovieRow>>) -> Result<Committed, MoviesError> {
    let mut done = Committed::default();
    for (path, rows) in updates {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mode, current) = match lake.get(path).await {
                Ok(object) => (PutMode::IfMatch(object.etag), Some(object.bytes)),
                Err(LakeError::NotFound { .. }) => (PutMode::Create, None),
                Err(e) => return Err(MoviesError::Lake(e)),
            };
            let merged = merge(current.as_ref(), rows).map_err(|e| MoviesError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let Some(bytes) = merged else {
                done.unchanged += 1;
                break;
            };
            match lake.put(path, Bytes::from(bytes), mode).await {
                Ok(_) => {
                    done.written += 1;
                    break;
                }
                Err(
                    LakeError::PreconditionFailed { .. } | LakeError::AlreadyExists { .. } | LakeError::NotFound { .. },
                ) if attempt < ATTEMPTS => {
                    tracing::warn!(%path, attempt, "movies bucket changed under us; merging again");
                    done.retries += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(
                    LakeError::PreconditionFailed { .. } | LakeError::AlreadyExists { .. } | LakeError::NotFound { .. },
                ) => {
                    return Err(MoviesError::Conflict { path: path.clone() });
                }
                Err(e) => return Err(MoviesError::Lake(e)),
            }
        }
    }
    Ok(done)
}

/// A few milliseconds, growing, with jitter so that writers that collided do not collide again.
fn backoff(attempt: u32) -> Duration {
    let jitter = std::collections::hash_map::RandomState::new().hash_one(attempt) % 20;
    Duration::from_millis(u64::from(attempt) * 10 + jitter)
}
