//! Commits data files the flows wrote themselves. The flows encode their Parquet parts with the
//! core's own writer (one thread, no dictionary for ids, lineage once: see
//! `movielake_core::output::silver`) and put them into the table's folder through the lake
//! port; this module then makes them visible in one Delta commit: `add` actions for the new
//! files, `remove` actions for what a replace supersedes, and the input's transaction id.
//!
//! Until that commit a written file is invisible to every reader (nothing in the log names it),
//! so a writer that dies in between leaves the table unchanged; VACUUM removes such orphans
//! once they are older than its retention.

use std::collections::HashMap;

use deltalake::DeltaTable;
use deltalake::TableProperty;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Metadata, MetadataExt as _, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};

use super::commit::{RetryPolicy, lost_race};
use super::location::{TableLocation, classify};
use super::txns::Known;
use super::{Committed, TableError, Txn};

/// How long a table remembers a transaction id (a table property; see [`create`]).
pub const TXN_RETENTION: &str = "interval 30 days";

/// Partition column name → value as Delta writes it in `partitionValues` (`None`: null).
pub type PartitionValues = Vec<(String, Option<String>)>;

/// A Parquet file already in the table's folder, not yet in its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Relative to the table's root, not URL-encoded: `event_date=2026-01-01/hour=5/part-….parquet`.
    pub path: String,
    pub size: u64,
    pub rows: u64,
    pub partition_values: PartitionValues,
}

/// What a commit replaces besides adding its files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Replace {
    /// Nothing: a blind append.
    #[default]
    Nothing,
    /// Every file now in these partitions (a snapshot re-ingested: its rows are replaced, other
    /// partitions are never touched).
    Partitions(Vec<PartitionValues>),
    /// Exactly these files (paths as the log names them), rewritten into the commit's files
    /// (the same rows with some columns recomputed). Files others added meanwhile stay; a
    /// file someone removed meanwhile fails the commit ([`TableError::Contended`]): the rows
    /// it held may have moved.
    Files(Vec<String>),
}

/// One commit of files to one table.
#[derive(Debug, Clone)]
pub struct FileCommit {
    /// The table's schema, partition columns included (used when the commit creates the table).
    pub schema: SchemaRef,
    pub partition_by: Vec<String>,
    pub files: Vec<DataFile>,
    pub replace: Replace,
    pub txn: Option<Txn>,
}

/// Commits `commit` to table `name`: creates the table first if it is not there, skips the
/// commit when the table already holds the transaction, retries lost races with backoff.
pub(super) async fn commit_files(
    location: &TableLocation,
    retry: &RetryPolicy,
    cached: Option<DeltaTable>,
    known: &mut Known,
    name: &str,
    commit: &FileCommit,
) -> Result<(Committed, DeltaTable), TableError> {
    let mut last = String::new();
    let mut table = cached;
    for attempt in 1..=retry.attempts.max(1) {
        let current = match refresh(location, name, table.take()).await {
            Ok(t) => t,
            Err(TableError::Storage { message, .. }) if attempt < retry.attempts => {
                last = message;
                tokio::time::sleep(retry.pause(attempt)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let current = match current.version() {
            Some(_) => current,
            None => match create(current, name, commit).await {
                Ok(created) => created,
                Err(Created::LostRace(message)) => {
                    // Someone else created it: read theirs and commit to it.
                    last = message;
                    tokio::time::sleep(retry.pause(attempt)).await;
                    continue;
                }
                Err(Created::Failed(e)) => return Err(e),
            },
        };
        if let Some(txn) = &commit.txn
            && let Some(done) = known.version(name, &current, &txn.app_id).await?
            && done >= txn.version
        {
            return Ok((Committed::AlreadyCommitted { txn_version: done }, current));
        }
        let mut actions = actions(name, &current, commit)?;
        if let Some(metadata) = evolved(name, &current, &commit.schema)? {
            // The files carry a column the table does not name yet: name it in the same
            // commit, or every reader would drop it.
            actions.insert(0, Action::Metadata(metadata));
        }
        let mut properties = CommitProperties::default()
            // Checkpoints and log cleanup are the maintenance run's job: an ingest commit
            // stays one small JSON write.
            .with_create_checkpoint(false)
            .with_cleanup_expired_logs(Some(false))
            // delta-rs' conflict checker does not know that this commit depends on the
            // transaction id it read: if another attempt of the same input won the race,
            // delta-rs would commit this one after it. Every lost race comes back here to
            // read the table's transactions again.
            .with_max_retries(0);
        if let Some(txn) = &commit.txn {
            // `lastUpdated` lets the table forget transactions older than its
            // `delta.setTransactionRetentionDuration` (set at creation).
            let now = chrono::Utc::now().timestamp_millis();
            properties = properties.with_application_transaction(Transaction::new_with_last_update(
                &txn.app_id,
                txn.version,
                Some(now),
            ));
        }
        let operation = match commit.replace {
            // Rows rewritten in place: an update of the files it names. delta-rs' conflict
            // checker does not run (no retries, below): a lost race comes back to this loop,
            // which removes the named files from the new snapshot, or fails if one is gone.
            Replace::Files(_) => DeltaOperation::Update { predicate: None },
            Replace::Nothing | Replace::Partitions(_) => DeltaOperation::Write {
                mode: match commit.replace {
                    Replace::Nothing => SaveMode::Append,
                    _ => SaveMode::Overwrite,
                },
                partition_by: (!commit.partition_by.is_empty()).then(|| commit.partition_by.clone()),
                predicate: predicate(&commit.replace),
            },
        };
        let snapshot = current.snapshot().map_err(|e| classify(name, e))?;
        let done = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(snapshot), current.log_store(), operation)
            .await;
        match done {
            Ok(finalized) => {
                let version = finalized.version();
                if let Some(txn) = &commit.txn {
                    known.committed(&txn.app_id, version, txn.version);
                }
                // The next commit of this instance starts from the state delta-rs built after
                // this one (it read the new version back already).
                let mut after = current.clone();
                after.state = Some(finalized.snapshot);
                return Ok((
                    Committed::Version {
                        version,
                        attempts: attempt,
                    },
                    after,
                ));
            }
            Err(e) => {
                if lost_race(&e) {
                    last = e.to_string();
                    table = Some(current);
                    tokio::time::sleep(retry.pause(attempt)).await;
                } else {
                    return Err(classify(name, e));
                }
            }
        }
    }
    Err(TableError::Contended {
        table: name.to_string(),
        attempts: retry.attempts,
        last,
    })
}

/// The table brought up to date: the cached copy reads only the commits since it was last
/// read; without one (or if that fails) the table is opened afresh.
pub(super) async fn refresh(
    location: &TableLocation,
    name: &str,
    cached: Option<DeltaTable>,
) -> Result<DeltaTable, TableError> {
    if let Some(mut table) = cached
        && table.version().is_some()
        && table.update_incremental(None).await.is_ok()
    {
        return Ok(table);
    }
    location.open(name, None).await
}

pub(super) enum Created {
    LostRace(String),
    Failed(TableError),
}

async fn create(table: DeltaTable, name: &str, commit: &FileCommit) -> Result<DeltaTable, Created> {
    create_empty(table, name, &commit.schema, &commit.partition_by).await
}

/// Creates the empty table with `schema` and `partition_by` (protocol reader 1 / writer 2:
/// plain types, UTC timestamps, no table features).
pub(super) async fn create_empty(
    table: DeltaTable,
    name: &str,
    schema: &SchemaRef,
    partition_by: &[String],
) -> Result<DeltaTable, Created> {
    let schema: StructType = schema.as_ref().try_into_kernel().map_err(|e| {
        Created::Failed(TableError::Invalid {
            table: name.to_string(),
            message: format!("schema not expressible in Delta: {e}"),
        })
    })?;
    let created = table
        .create()
        .with_columns(schema.fields().cloned())
        .with_partition_columns(partition_by.to_vec())
        // Every TMDB page and detail is a transaction id of its own: without an expiry the
        // log would carry them all for ever. A month is far beyond any redelivery (Event Hubs
        // keeps events for 7 days on Standard, Event Grid retries for 24 hours).
        .with_configuration_property(TableProperty::SetTransactionRetentionDuration, Some(TXN_RETENTION))
        .with_save_mode(SaveMode::Ignore)
        // Two creators: the loser must not be committed as version 1 with its own metadata.
        .with_commit_properties(CommitProperties::default().with_max_retries(0))
        .await;
    match created {
        Ok(t) => Ok(t),
        Err(e) if lost_race(&e) => Err(Created::LostRace(e.to_string())),
        Err(e) => Err(Created::Failed(classify(name, e))),
    }
}

/// The table's metadata with the schema files written with `schema` need, when it differs
/// from the table's (see [`super::schema::evolve`]).
fn evolved(name: &str, table: &DeltaTable, schema: &SchemaRef) -> Result<Option<Metadata>, TableError> {
    let invalid = |message: String| TableError::Invalid {
        table: name.to_string(),
        message,
    };
    let snapshot = table.snapshot().map_err(|e| classify(name, e))?;
    let wanted: StructType = schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| invalid(format!("schema not expressible in Delta: {e}")))?;
    let Some(evolved) = super::schema::evolve(&snapshot.schema(), &wanted).map_err(invalid)? else {
        return Ok(None);
    };
    snapshot
        .metadata()
        .clone()
        .with_schema(&evolved)
        .map(Some)
        .map_err(|e| invalid(format!("schema change not recordable: {e}")))
}

/// The last version of `app_id` the table holds, if any.
pub(super) async fn txn_version(name: &str, table: &DeltaTable, app_id: &str) -> Result<Option<i64>, TableError> {
    if table.version().is_none() {
        return Ok(None);
    }
    let snapshot = table.snapshot().map_err(|e| classify(name, e))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| classify(name, e))
}

/// `add` for every new file; for a replace, `remove` for every file now in its partitions.
fn actions(name: &str, table: &DeltaTable, commit: &FileCommit) -> Result<Vec<Action>, TableError> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut actions = Vec::with_capacity(commit.files.len());
    if let Replace::Partitions(partitions) = &commit.replace {
        let wanted: Vec<HashMap<String, Option<String>>> =
            partitions.iter().map(|p| p.iter().cloned().collect()).collect();
        let snapshot = table.snapshot().map_err(|e| classify(name, e))?;
        for file in snapshot.log_data().iter() {
            if wanted.contains(&file.partition_values_map()) {
                actions.push(Action::Remove(file.remove_action(true)));
            }
        }
    }
    if let Replace::Files(paths) = &commit.replace {
        let wanted: std::collections::HashSet<&str> = paths.iter().map(String::as_str).collect();
        let snapshot = table.snapshot().map_err(|e| classify(name, e))?;
        for file in snapshot.log_data().iter() {
            if wanted.contains(file.path().as_ref()) {
                actions.push(Action::Remove(file.remove_action(true)));
            }
        }
        if actions.len() != wanted.len() {
            return Err(TableError::Contended {
                table: name.to_string(),
                attempts: 1,
                last: format!(
                    "{} of the {} files being rewritten were removed meanwhile (a compaction?); run again",
                    wanted.len() - actions.len(),
                    wanted.len()
                ),
            });
        }
    }
    for file in &commit.files {
        actions.push(Action::Add(Add {
            path: file.path.clone(),
            partition_values: file.partition_values.iter().cloned().collect(),
            size: i64::try_from(file.size).unwrap_or(i64::MAX),
            modification_time: now,
            data_change: true,
            // Row counts let readers (Spark, DuckDB, Fabric) answer count(*) and plan scans
            // from the log alone.
            stats: Some(format!("{{\"numRecords\":{}}}", file.rows)),
            ..Default::default()
        }));
    }
    Ok(actions)
}

/// The replace's partitions as a predicate, for the log's operation record and for the
/// conflict checker of concurrent writers.
fn predicate(replace: &Replace) -> Option<String> {
    let Replace::Partitions(partitions) = replace else {
        return None;
    };
    let one = |p: &PartitionValues| {
        p.iter()
            .map(|(column, value)| match value {
                Some(v) => format!("{column} = '{}'", v.replace('\'', "''")),
                None => format!("{column} IS NULL"),
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    Some(
        partitions
            .iter()
            .map(|p| format!("({})", one(p)))
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replace_names_its_partitions_in_the_predicate() {
        let replace = Replace::Partitions(vec![
            vec![("snapshot_date".into(), Some("2026-12-04".into()))],
            vec![("list".into(), Some("it's".into())), ("day".into(), None)],
        ]);
        assert_eq!(
            predicate(&replace).as_deref(),
            Some("(snapshot_date = '2026-12-04') OR (list = 'it''s' AND day IS NULL)")
        );
        assert_eq!(predicate(&Replace::Nothing), None);
    }
}
