//! Commits with what delta-rs' own loop lacks. Its loop (16 tries) retries only "version
//! already exists" and never waits, so writers from scaled-out Functions exhaust it together
//! ("Failed to commit transaction: 15", delta-io/delta-rs#3166); and on Azure a lost create-only
//! race comes back from object_store 0.13 as a precondition failure (412), which it does not
//! retry at all. Here every such outcome reloads the table and tries again after a jittered,
//! growing pause, and an append carrying a transaction id first asks the table whether that
//! transaction is already in it, so a retry never commits the same data twice.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use deltalake::DeltaTableError;
use deltalake::ObjectStoreError;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::protocol::SaveMode;

use super::location::{TableLocation, classify};
use super::{Append, TableError};

/// How long to keep trying when other writers win the commit race.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Whole attempts (reload, write, commit) before giving up with [`TableError::Contended`].
    pub attempts: u32,
    /// Pause after the first lost race; doubles each time, up to `max_pause`, with jitter.
    pub first_pause: Duration,
    pub max_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 40,
            first_pause: Duration::from_millis(20),
            max_pause: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a random pause between 0 and the capped exponential bound, so writers that
    /// lost together do not come back together.
    pub(super) fn pause(&self, attempt: u32) -> Duration {
        let bound = self
            .first_pause
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_pause);
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        bound.mul_f64((random % 10_000) as f64 / 10_000.0)
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// The data is in the table at `version`, after `attempts` attempts.
    Version { version: u64, attempts: u32 },
    /// The table already held this transaction (a replay): nothing was written.
    AlreadyCommitted { txn_version: i64 },
}

pub(super) async fn append(
    location: &TableLocation,
    retry: &RetryPolicy,
    name: &str,
    batches: Vec<RecordBatch>,
    append: &Append,
) -> Result<Committed, TableError> {
    let mut last = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        let table = match location.open(name, None).await {
            Ok(table) => table,
            // Another writer's commit landing while the log was read: read it again.
            Err(TableError::Storage { message, .. }) if attempt < retry.attempts => {
                last = message;
                tokio::time::sleep(retry.pause(attempt)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(txn) = &append.txn
            && let Some(done) = super::files::txn_version(name, &table, &txn.app_id).await?
            && done >= txn.version
        {
            return Ok(Committed::AlreadyCommitted { txn_version: done });
        }
        let mut properties = CommitProperties::default();
        if table.version().is_none() {
            // This write creates the table. Two writers creating it at once must not both
            // succeed: delta-rs retries the loser as version 1 still carrying its own protocol
            // and metadata, so the table's id changes under its readers (seen on Azurite with 8
            // writers). No retry inside delta-rs, then: the loser reloads the table here and
            // appends to it.
            properties = properties.with_max_retries(0);
        }
        if let Some(txn) = &append.txn {
            // delta-rs' own retry would commit this after a winning attempt of the same input
            // (its conflict checker does not know we read the transaction id): lose here and
            // read the table's transactions again.
            properties = properties
                .with_application_transaction(Transaction::new(&txn.app_id, txn.version))
                .with_max_retries(0);
        }
        let mut write = table
            .write(batches.iter().cloned())
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(properties);
        if !append.partition_by.is_empty() {
            write = write.with_partition_columns(append.partition_by.clone());
        }
        match write.await {
            Ok(table) => {
                return Ok(Committed::Version {
                    version: table.version().unwrap_or_default(),
                    attempts: attempt,
                });
            }
            Err(e) if lost_race(&e) => {
                last = e.to_string();
                tokio::time::sleep(retry.pause(attempt)).await;
            }
            Err(e) => return Err(classify(name, e)),
        }
    }
    Err(TableError::Contended {
        table: name.to_string(),
        attempts: retry.attempts,
        last,
    })
}

pub(super) async fn replace_all(
    location: &TableLocation,
    retry: &RetryPolicy,
    name: &str,
    schema: deltalake::arrow::datatypes::SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<u64, TableError> {
    // With no row, the empty batch still carries the schema the table is created with.
    let batches = if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    };
    let mut last = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        let table = location.open(name, None).await?;
        // No retry inside delta-rs: its conflict check lets an overwrite that lost to a
        // compaction commit on top of it, removing only the files it had read, so the
        // compacted file and the new result would both be live (rows doubled). This loop
        // reads the table again and removes what is there now.
        let properties = CommitProperties::default()
            .with_create_checkpoint(false)
            .with_cleanup_expired_logs(Some(false))
            .with_max_retries(0);
        let written = table
            .write(batches.iter().cloned())
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
            .with_commit_properties(properties)
            .await;
        match written {
            Ok(table) => return Ok(table.version().unwrap_or_default()),
            Err(e) if lost_race(&e) => {
                last = e.to_string();
                tokio::time::sleep(retry.pause(attempt)).await;
            }
            Err(e) => return Err(classify(name, e)),
        }
    }
    Err(TableError::Contended {
        table: name.to_string(),
        attempts: retry.attempts,
        last,
    })
}

/// What a merge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    pub inserted: usize,
    pub updated: usize,
    pub deleted: usize,
    /// The table version committed (`None`: nothing changed, nothing committed).
    pub version: Option<u64>,
}

/// What a merge does with rows whose key the table holds already. Rows whose key it does not
/// hold are always inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert<'a> {
    /// Never replace: the table keeps what it has (an insert-only log).
    InsertNew,
    /// Replace the row when this condition (SQL over `s.` source and `t.` target columns)
    /// holds.
    ReplaceWhen(&'a str),
    /// Make the table's rows say what the source says: replace those that differ; a source
    /// row whose boolean column `deleted` is true deletes its match instead and is never
    /// inserted (the column itself is not written). A recomputed slice of a table, with its
    /// vanished rows named: a MERGE that must find them by itself ("not matched by source")
    /// reads and judges every row of the table.
    Sync { deleted: Option<&'a str> },
}

/// Upserts `source` into the table by `key` (see [`Upsert`]). The table is created, empty,
/// with the source's schema if it is not there.
pub(super) async fn merge(
    location: &TableLocation,
    retry: &RetryPolicy,
    name: &str,
    source: RecordBatch,
    key: &[&str],
    upsert: Upsert<'_>,
) -> Result<Merged, TableError> {
    use deltalake::datafusion::prelude::SessionContext;
    let invalid = |e: &dyn std::fmt::Display| TableError::Invalid {
        table: name.to_string(),
        message: e.to_string(),
    };
    let deleted = match upsert {
        Upsert::Sync { deleted } => deleted,
        _ => None,
    };
    // What the table holds: the source's columns but the deletion flag.
    let schema = {
        let all = source.schema();
        let kept: Vec<usize> = (0..all.fields().len())
            .filter(|&i| Some(all.field(i).name().as_str()) != deleted)
            .collect();
        std::sync::Arc::new(all.project(&kept).map_err(|e| invalid(&e))?)
    };
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut last = String::new();
    // A recomputed slice (`Sync`) was computed from what its caller read: after a lost race
    // the caller reads and computes again, rather than this MERGE replaying a stale source.
    let attempts = match upsert {
        Upsert::Sync { .. } => 1,
        _ => retry.attempts.max(1),
    };
    for attempt in 1..=attempts {
        let mut table = location.open(name, None).await?;
        if table.version().is_none() {
            match super::files::create_empty(table, name, &schema, &[]).await {
                Ok(created) => table = created,
                Err(super::files::Created::LostRace(message)) => {
                    last = message;
                    tokio::time::sleep(retry.pause(attempt)).await;
                    continue;
                }
                Err(super::files::Created::Failed(e)) => return Err(e),
            }
        }
        let frame = SessionContext::new()
            .read_batch(source.clone())
            .map_err(|e| invalid(&e))?;
        let properties = CommitProperties::default()
            .with_create_checkpoint(false)
            .with_cleanup_expired_logs(Some(false));
        let quoted = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
        let on = key
            .iter()
            .map(|k| format!("t.{0} = s.{0}", quoted(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let differs = columns
            .iter()
            .map(|c| format!("(t.{0} IS DISTINCT FROM s.{0})", quoted(c)))
            .collect::<Vec<_>>()
            .join(" OR ");
        // The first clause that holds applies: a flagged row deletes before any update.
        let kept = deleted.map(|d| format!("NOT s.{}", quoted(d)));
        let newer = match upsert {
            Upsert::InsertNew => "false".to_string(),
            Upsert::ReplaceWhen(newer) => newer.to_string(),
            Upsert::Sync { .. } => format!("({differs})"),
        };
        let builder = table
            .merge(frame, on)
            .with_source_alias("s")
            .with_target_alias("t")
            .with_commit_properties(properties);
        let builder = match deleted {
            Some(d) => builder.when_matched_delete(|delete| delete.predicate(format!("s.{}", quoted(d)))),
            None => Ok(builder),
        };
        let merged = builder
            .and_then(|m| {
                m.when_matched_update(|update| {
                    columns.iter().fold(update.predicate(newer.as_str()), |u, c| {
                        u.update(quoted(c), format!("s.{}", quoted(c)))
                    })
                })
            })
            .and_then(|m| {
                m.when_not_matched_insert(|insert| {
                    let insert = match &kept {
                        Some(kept) => insert.predicate(kept.as_str()),
                        None => insert,
                    };
                    columns
                        .iter()
                        .fold(insert, |i, c| i.set(quoted(c), format!("s.{}", quoted(c))))
                })
            });
        let merged = match merged {
            Ok(builder) => builder.await,
            Err(e) => return Err(classify(name, e)),
        };
        match merged {
            Ok((after, metrics)) => {
                let changed = metrics.num_target_rows_inserted
                    + metrics.num_target_rows_updated
                    + metrics.num_target_rows_deleted
                    > 0;
                return Ok(Merged {
                    inserted: metrics.num_target_rows_inserted,
                    updated: metrics.num_target_rows_updated,
                    deleted: metrics.num_target_rows_deleted,
                    version: if changed { after.version() } else { None },
                });
            }
            Err(e) if lost_race(&e) => {
                last = e.to_string();
                tokio::time::sleep(retry.pause(attempt)).await;
            }
            Err(e) => return Err(classify(name, e)),
        }
    }
    Err(TableError::Contended {
        table: name.to_string(),
        attempts: retry.attempts,
        last,
    })
}

pub(super) async fn delete_where(
    location: &TableLocation,
    retry: &RetryPolicy,
    name: &str,
    predicate: &str,
) -> Result<u64, TableError> {
    let mut last = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        let table = location.open(name, None).await?;
        if table.version().is_none() {
            return Ok(0);
        }
        let properties = CommitProperties::default()
            .with_create_checkpoint(false)
            .with_cleanup_expired_logs(Some(false));
        match table
            .delete()
            .with_predicate(predicate.to_string())
            .with_commit_properties(properties)
            .await
        {
            Ok((_, metrics)) => return Ok(metrics.num_deleted_rows.unwrap_or(0) as u64),
            Err(e) if lost_race(&e) => {
                last = e.to_string();
                tokio::time::sleep(retry.pause(attempt)).await;
            }
            Err(e) => return Err(classify(name, e)),
        }
    }
    Err(TableError::Contended {
        table: name.to_string(),
        attempts: retry.attempts,
        last,
    })
}

/// Another writer got the version this commit wanted, however delta-rs or object_store said so.
pub(super) fn lost_race(e: &DeltaTableError) -> bool {
    match e {
        DeltaTableError::VersionAlreadyExists(_) => true,
        // Seen on Azurite under contention: the version another writer just created could not
        // be read back yet while delta-rs re-read the log after losing the race.
        DeltaTableError::InvalidVersion(_) => true,
        DeltaTableError::Transaction { source } => matches!(
            source,
            TransactionError::VersionAlreadyExists(_)
                | TransactionError::MaxCommitAttempts(_)
                | TransactionError::CommitConflict(_)
        ),
        DeltaTableError::ObjectStore { source } => matches!(
            source,
            ObjectStoreError::Precondition { .. } | ObjectStoreError::AlreadyExists { .. }
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_capped_and_jittered() {
        let policy = RetryPolicy::default();
        for attempt in 1..50 {
            let bound = policy
                .first_pause
                .saturating_mul(1u32 << attempt.min(16))
                .min(policy.max_pause);
            assert!(policy.pause(attempt) <= bound);
        }
        let pauses: std::collections::BTreeSet<Duration> = (0..20).map(|_| policy.pause(10)).collect();
        assert!(pauses.len() > 10, "jittered: {pauses:?}");
    }

    #[test]
    fn the_races_delta_rs_does_not_retry_are_retried_here() {
        let precondition = DeltaTableError::ObjectStore {
            source: ObjectStoreError::Precondition {
                path: "_delta_log/00000000000000000001.json".into(),
                source: "412 ConditionNotMet".into(),
            },
        };
        assert!(lost_race(&precondition), "Azure's 412 on a lost create-only race");
        let exhausted = DeltaTableError::Transaction {
            source: TransactionError::MaxCommitAttempts(15),
        };
        assert!(lost_race(&exhausted));
        let other = DeltaTableError::ObjectStore {
            source: ObjectStoreError::NotFound {
                path: "x".into(),
                source: "404".into(),
            },
        };
        assert!(!lost_race(&other));
    }
}
