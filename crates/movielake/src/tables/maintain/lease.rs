//! The maintenance lease of a table: one maintainer at a time (see the parent module for why).

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{LEASE_TTL, MaintainError};
use crate::lake::{ETag, Lake, LakeError, PutMode};

/// The maintenance lease of one table: `ops/maintain/leases/<table>.json`, taken create-only
/// or, once expired, by compare-and-swap; renewed and released by compare-and-swap.
pub(super) struct Lease<'a> {
    lake: &'a dyn Lake,
    table: String,
    path: String,
    holder: String,
    etag: ETag,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LeaseRecord {
    holder: String,
    expires_at: DateTime<Utc>,
}

impl<'a> Lease<'a> {
    pub(super) async fn acquire(lake: &'a dyn Lake, table: &str, holder: &str) -> Result<Lease<'a>, MaintainError> {
        let path = format!("ops/maintain/leases/{table}.json");
        let failed = |source| MaintainError::Lease {
            table: table.to_string(),
            source,
        };
        let mut lease = Lease {
            lake,
            table: table.to_string(),
            path,
            holder: holder.to_string(),
            etag: ETag(String::new()),
        };
        for _ in 0..3 {
            match lake.put(&lease.path, lease.record(LEASE_TTL), PutMode::Create).await {
                Ok(etag) => {
                    lease.etag = etag;
                    return Ok(lease);
                }
                Err(LakeError::AlreadyExists { .. }) => {}
                Err(e) => return Err(failed(e)),
            }
            let current = match lake.get(&lease.path).await {
                Ok(current) => current,
                Err(LakeError::NotFound { .. }) => continue,
                Err(e) => return Err(failed(e)),
            };
            // An unreadable lease is treated as expired: it protects nothing.
            if let Ok(held) = serde_json::from_slice::<LeaseRecord>(&current.bytes)
                && held.expires_at > Utc::now()
            {
                return Err(MaintainError::Busy {
                    table: table.to_string(),
                    holder: held.holder,
                    until: held.expires_at,
                });
            }
            match lake
                .put(&lease.path, lease.record(LEASE_TTL), PutMode::IfMatch(current.etag))
                .await
            {
                Ok(etag) => {
                    lease.etag = etag;
                    return Ok(lease);
                }
                Err(LakeError::PreconditionFailed { .. } | LakeError::NotFound { .. }) => {}
                Err(e) => return Err(failed(e)),
            }
        }
        Err(MaintainError::Busy {
            table: table.to_string(),
            holder: "another maintenance run (it took the lease first)".into(),
            until: Utc::now(),
        })
    }

    fn record(&self, ttl: Duration) -> Bytes {
        let expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
        let record = LeaseRecord {
            holder: self.holder.clone(),
            expires_at,
        };
        Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
    }

    /// Extends the lease; fails if another maintainer took it (ours had expired).
    pub(super) async fn renew(&mut self) -> Result<(), MaintainError> {
        let put = self
            .lake
            .put(&self.path, self.record(LEASE_TTL), PutMode::IfMatch(self.etag.clone()));
        self.etag = put.await.map_err(|source| MaintainError::Lease {
            table: self.table.clone(),
            source,
        })?;
        Ok(())
    }

    /// Marks the lease expired, if it is still ours; a failure only delays the next run by
    /// the lease's time to live.
    pub(super) async fn release(self) {
        let put = self.lake.put(
            &self.path,
            self.record(Duration::ZERO),
            PutMode::IfMatch(self.etag.clone()),
        );
        if let Err(e) = put.await {
            tracing::warn!(table = %self.table, error = %e, "could not release the maintenance lease");
        }
    }
}
