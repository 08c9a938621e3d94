//! Table maintenance, run by the `maintain_tables` timer Function and `movielake maintain`. The
//! ingest writers commit small files and never checkpoint (one small JSON write per commit, see
//! `files.rs`); this is where a table is made cheap to read again. Per table, in this order:
//!
//! 1. **Compaction** (delta-rs OPTIMIZE, bin-packing): in each partition, runs of files smaller
//!    than the target size are rewritten into files of about that size. The commit removes the
//!    small files with `dataChange: false`: readers see the same rows, time travel still sees
//!    the old files. A commit that loses to a writer that removed files it read is retried from
//!    a fresh plan; blind appends never conflict with it.
//! 2. **Checkpoint** of the latest version, so a reader loads one Parquet file instead of
//!    replaying every JSON commit since the last one.
//! 3. **Expired-log cleanup**: JSON commits older than the table's `delta.logRetentionDuration`
//!    (30 days by default) that a checkpoint makes unnecessary.
//! 4. **VACUUM** (full mode): deletes data files no longer in the table (removed by a
//!    compaction or a replace) once removed for longer than the retention, and files no commit
//!    ever named (a writer that died between writing a file and committing it) once older than
//!    the retention. Ingest writes its files into the table folder *before* committing them, so
//!    the retention is also what keeps VACUUM away from the files of writers still at work:
//!    hence the floor of one hour, six times the Functions' timeout (host.json).
//!
//! One maintainer per table at a time, through a lease object in `ops/maintain/leases/`:
//! delta-rs 1.1 lets two OPTIMIZE commits planned from the same snapshot both succeed (its
//! conflict checker ignores `dataChange: false` removes), and the second would put every
//! compacted row in the table twice (`tests/app/maintain.rs` pins this).

mod lease;
mod options;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::{DeltaTable, DeltaTableError, ObjectStoreError};
use futures::StreamExt;

use self::lease::Lease;
pub use self::options::{
    DEADLINE_GRACE, DEFAULT_RETENTION_HOURS, DEFAULT_TARGET_FILE_MB, MIN_RETENTION_HOURS, MaintainOptions,
    OptionsError, Retention,
};
use super::location::classify;
use super::{TableError, Tables};
use crate::lake::{Lake, LakeError};

/// How long a maintainer holds a table without renewing; renewed before every step, and no
/// step is allowed to run longer (see [`STEP_LIMIT`]).
const LEASE_TTL: Duration = Duration::from_secs(60 * 60);
/// A step still running this long is abandoned before its lease could run out under it.
const STEP_LIMIT: Duration = Duration::from_secs(50 * 60);
/// Whole OPTIMIZE attempts (plan, rewrite, commit) when writers keep removing files it read.
const OPTIMIZE_ATTEMPTS: u32 = 5;

/// Active files of a table, per partition (`event_date=2024-05-01/hour=10`; `""` unpartitioned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub files: usize,
    pub bytes: u64,
    pub partitions: BTreeMap<String, (usize, u64)>,
}

impl Layout {
    pub fn max_files_per_partition(&self) -> usize {
        self.partitions.values().map(|(files, _)| *files).max().unwrap_or(0)
    }
}

/// A run of small files of one partition that compaction merges into one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bin {
    pub partition: String,
    pub files: usize,
    pub bytes: u64,
}

/// What compaction did (or, in a dry run, would do: `bins` is the plan, nothing is added).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compaction {
    pub bins: Vec<Bin>,
    pub files_removed: u64,
    pub files_added: u64,
    pub bytes_removed: u64,
    pub bytes_added: u64,
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    Written {
        version: u64,
    },
    /// The last checkpoint is already at the latest version.
    Current {
        version: u64,
    },
    WouldWrite {
        version: u64,
    },
}

/// What VACUUM deleted (or, in a dry run, would delete), relative to the table's folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vacuumed {
    pub files: Vec<String>,
    pub retention_hours: u32,
}

/// One table's maintenance.
#[derive(Debug, Clone)]
pub struct Maintained {
    pub table: String,
    pub dry_run: bool,
    pub version_before: u64,
    pub version_after: u64,
    pub before: Layout,
    pub after: Layout,
    pub compaction: Compaction,
    pub checkpoint: Checkpoint,
    pub logs_removed: usize,
    /// `None` when VACUUM was not asked for.
    pub vacuum: Option<Vacuumed>,
    /// `(minReaderVersion, minWriterVersion)` after maintenance.
    pub protocol: (i32, i32),
    pub elapsed: Duration,
}

/// Why a table was not maintained, grouped by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    /// Another run is maintaining it: nothing to do.
    #[error("{table}: being maintained by {holder} until {until}; skipped")]
    Busy {
        table: String,
        holder: String,
        until: DateTime<Utc>,
    },
    /// The lease object could not be read or written: retry later.
    #[error("{table}: maintenance lease: {source}")]
    Lease {
        table: String,
        #[source]
        source: LakeError,
    },
    /// A step ran past the time it had; what it wrote without committing is left for VACUUM.
    #[error("{table}: {step} stopped after {after:.0?}: out of time; the next run carries on")]
    OutOfTime {
        table: String,
        step: &'static str,
        after: Duration,
    },
    #[error(transparent)]
    Table(#[from] TableError),
}

/// A whole run over several tables.
#[derive(Debug, Default)]
pub struct RunReport {
    pub maintained: Vec<Maintained>,
    pub busy: Vec<String>,
    pub failed: Vec<(String, MaintainError)>,
    /// Not started: the deadline came first.
    pub left: Vec<String>,
    pub elapsed: Duration,
}

impl Tables {
    /// Every Delta table of the lake: each `silver/<source>/<table>` and `gold/<name>` holding
    /// a `_delta_log/`, sorted.
    pub async fn list_tables(lake: &dyn Lake) -> Result<Vec<String>, LakeError> {
        let mut tables = BTreeSet::new();
        for container in ["silver/", "gold/"] {
            for object in lake.list(container).await? {
                if let Some((table, _)) = object.path.split_once("/_delta_log/")
                    && table.contains('/')
                {
                    tables.insert(table.to_string());
                }
            }
        }
        Ok(tables.into_iter().collect())
    }

    /// Maintains `tables` one after another, calling `progress` as each finishes; a table that
    /// fails does not stop the others.
    pub async fn maintain_all(
        &self,
        lake: &dyn Lake,
        tables: &[String],
        options: &MaintainOptions,
        mut progress: impl FnMut(&str, &Result<Maintained, MaintainError>),
    ) -> RunReport {
        let started = Instant::now();
        let mut report = RunReport::default();
        for (i, table) in tables.iter().enumerate() {
            if options.deadline.is_some_and(|d| Instant::now() >= d) {
                report.left.extend(tables[i..].iter().cloned());
                break;
            }
            let outcome = self.maintain(lake, table, options).await;
            progress(table, &outcome);
            match outcome {
                Ok(done) => report.maintained.push(done),
                Err(MaintainError::Busy { .. }) => report.busy.push(table.clone()),
                Err(e) => report.failed.push((table.clone(), e)),
            }
        }
        report.elapsed = started.elapsed();
        report
    }

    /// Compacts, checkpoints, cleans the log of and vacuums table `name` (see the module
    /// documentation), holding its maintenance lease throughout.
    pub async fn maintain(
        &self,
        lake: &dyn Lake,
        name: &str,
        options: &MaintainOptions,
    ) -> Result<Maintained, MaintainError> {
        let started = Instant::now();
        let table = self.open(name).await?;
        let Some(version_before) = table.version() else {
            return Err(TableError::Invalid {
                table: name.to_string(),
                message: "not a Delta table (no _delta_log)".into(),
            }
            .into());
        };
        let before = layout(name, &table)?;
        // Past the deadline a table under way gets a grace to finish; then its step stops.
        let stop = options.deadline.map(|d| d + DEADLINE_GRACE);
        let limit = || {
            stop.map_or(STEP_LIMIT, |s| {
                s.saturating_duration_since(Instant::now()).min(STEP_LIMIT)
            })
        };
        if options.dry_run {
            // Read only: no lease, nothing written.
            let bins = plan(name, &table, options.target_file_bytes.get()).await?;
            let vacuum = match options.vacuum {
                true => Some(vacuum(name, table.clone(), options, true).await?),
                false => None,
            };
            return Ok(Maintained {
                table: name.to_string(),
                dry_run: true,
                version_before,
                version_after: version_before,
                compaction: Compaction {
                    files_removed: bins.iter().map(|b| b.files as u64).sum(),
                    files_added: bins.len() as u64,
                    bytes_removed: bins.iter().map(|b| b.bytes).sum(),
                    bins,
                    ..Compaction::default()
                },
                checkpoint: match last_checkpoint(lake, name).await? {
                    Some(v) if v == version_before => Checkpoint::Current { version: v },
                    _ => Checkpoint::WouldWrite {
                        version: version_before,
                    },
                },
                logs_removed: 0,
                vacuum,
                protocol: protocol(name, &table)?,
                after: before.clone(),
                before,
                elapsed: started.elapsed(),
            });
        }

        let mut lease = Lease::acquire(lake, name, &options.holder).await?;
        let result = async {
            let compaction = step(name, "compaction", limit(), self.compact(name, options)).await??;
            lease.renew().await?;
            let table = self.open(name).await?;
            let checkpoint = step(name, "checkpoint", limit(), checkpoint(lake, name, &table)).await??;
            let logs_removed = step(name, "log cleanup", limit(), async {
                deltalake::checkpoints::cleanup_metadata(&table, None)
                    .await
                    .map_err(|e| classify(name, e))
            })
            .await??;
            let vacuumed = match options.vacuum {
                true => {
                    lease.renew().await?;
                    let run = vacuum(name, self.open(name).await?, options, false);
                    Some(step(name, "VACUUM", limit(), run).await??)
                }
                false => None,
            };
            let table = self.open(name).await?;
            let protocol = protocol(name, &table)?;
            if protocol != (1, 2) {
                // Synapse serverless and Fabric read nothing newer; say so loudly rather than
                // let readers fail one by one.
                tracing::warn!(
                    table = name,
                    ?protocol,
                    "the table's protocol is not reader 1 / writer 2"
                );
            }
            Ok::<_, MaintainError>(Maintained {
                table: name.to_string(),
                dry_run: false,
                version_before,
                version_after: table.version().unwrap_or(version_before),
                after: layout(name, &table)?,
                before,
                compaction,
                checkpoint,
                logs_removed,
                vacuum: vacuumed,
                protocol,
                elapsed: started.elapsed(),
            })
        }
        .await;
        lease.release().await;
        result
    }

    /// OPTIMIZE with a fresh plan per attempt: a lost race leaves only uncommitted files (VACUUM
    /// removes them after the retention), never a half commit.
    async fn compact(&self, name: &str, options: &MaintainOptions) -> Result<Compaction, TableError> {
        let mut last = String::new();
        for attempt in 1..=OPTIMIZE_ATTEMPTS {
            let table = self.open(name).await?;
            let mut config = SessionConfig::new();
            // Plain strings in the rewritten files, as the ingest writer writes them: a reader
            // that honours the Arrow schema in the Parquet footer sees one type across files.
            config.options_mut().execution.parquet.schema_force_view_types = false;
            let session = SessionContext::new_with_config(config).state();
            let mut metadata = std::collections::HashMap::new();
            metadata.insert("movielake".to_string(), serde_json::json!("maintain"));
            let run = table
                .optimize()
                .with_target_size(options.target_file_bytes)
                .with_session_state(Arc::new(session))
                // Two bins at a time: bounded memory on a 2 GB Function instance.
                .with_max_concurrent_tasks(2)
                .with_commit_properties(CommitProperties::default().with_metadata(metadata));
            match run.await {
                Ok((_, metrics)) => {
                    return Ok(Compaction {
                        bins: Vec::new(),
                        files_removed: metrics.num_files_removed,
                        files_added: metrics.num_files_added,
                        bytes_removed: u64::try_from(metrics.files_removed.total_size).unwrap_or(0),
                        bytes_added: u64::try_from(metrics.files_added.total_size).unwrap_or(0),
                        attempts: attempt,
                    });
                }
                Err(e) if lost_race(&e) => {
                    last = e.to_string();
                    tokio::time::sleep(pause(attempt)).await;
                }
                Err(e) => return Err(classify(name, e)),
            }
        }
        Err(TableError::Contended {
            table: name.to_string(),
            attempts: OPTIMIZE_ATTEMPTS,
            last,
        })
    }
}

/// Runs one step within `limit`.
async fn step<T>(
    table: &str,
    step: &'static str,
    limit: Duration,
    work: impl Future<Output = Result<T, TableError>>,
) -> Result<Result<T, MaintainError>, MaintainError> {
    match tokio::time::timeout(limit, work).await {
        Ok(done) => Ok(done.map_err(MaintainError::from)),
        Err(_) => Err(MaintainError::OutOfTime {
            table: table.to_string(),
            step,
            after: limit,
        }),
    }
}

fn layout(name: &str, table: &DeltaTable) -> Result<Layout, TableError> {
    let snapshot = table.snapshot().map_err(|e| classify(name, e))?;
    let columns = snapshot.metadata().partition_columns().to_vec();
    let mut out = Layout::default();
    for file in snapshot.log_data().iter() {
        let size = u64::try_from(file.size()).unwrap_or(0);
        let entry = out
            .partitions
            .entry(partition_key(&columns, &file.partition_values_map()))
            .or_default();
        entry.0 += 1;
        entry.1 += size;
        out.files += 1;
        out.bytes += size;
    }
    Ok(out)
}

fn partition_key(columns: &[String], values: &std::collections::HashMap<String, Option<String>>) -> String {
    columns
        .iter()
        .map(|c| match values.get(c).cloned().flatten() {
            Some(v) => format!("{c}={v}"),
            None => format!("{c}=null"),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// delta-rs' compaction plan, for a dry run: per partition, files in the order its planner
/// takes them (newest first), skipping files over the target; a bin ends at the target size or
/// at a skipped file, and a bin of one file is left alone.
async fn plan(name: &str, table: &DeltaTable, target: u64) -> Result<Vec<Bin>, TableError> {
    let snapshot = table.snapshot().map_err(|e| classify(name, e))?;
    let columns = snapshot.metadata().partition_columns().to_vec();
    let log_store = table.log_store();
    let mut files = snapshot.snapshot().file_views(log_store.as_ref(), None);
    // Per partition: the finished bins and the open one.
    let mut partitions: BTreeMap<String, (Vec<Bin>, Option<Bin>)> = BTreeMap::new();
    while let Some(file) = files.next().await {
        let file = file.map_err(|e| classify(name, e))?;
        let key = partition_key(&columns, &file.partition_values_map());
        let size = u64::try_from(file.size()).unwrap_or(0);
        let (done, open) = partitions.entry(key.clone()).or_default();
        if size > target {
            // A large file is left alone and ends the run in front of it.
            done.extend(open.take());
            continue;
        }
        match open.take() {
            Some(mut bin) if bin.bytes + size <= target => {
                bin.files += 1;
                bin.bytes += size;
                *open = Some(bin);
            }
            previous => {
                done.extend(previous);
                *open = Some(Bin {
                    partition: key,
                    files: 1,
                    bytes: size,
                });
            }
        }
    }
    Ok(partitions
        .into_values()
        .flat_map(|(done, open)| done.into_iter().chain(open))
        .filter(|bin| bin.files > 1)
        .collect())
}

/// The version `_delta_log/_last_checkpoint` names, if any.
async fn last_checkpoint(lake: &dyn Lake, name: &str) -> Result<Option<u64>, TableError> {
    match lake.get(&format!("{name}/_delta_log/_last_checkpoint")).await {
        Ok(object) => Ok(serde_json::from_slice::<serde_json::Value>(&object.bytes)
            .ok()
            .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64))),
        Err(LakeError::NotFound { .. }) => Ok(None),
        Err(e) => Err(TableError::Storage {
            table: name.to_string(),
            message: e.to_string(),
        }),
    }
}

async fn checkpoint(lake: &dyn Lake, name: &str, table: &DeltaTable) -> Result<Checkpoint, TableError> {
    let version = table.version().unwrap_or_default();
    if last_checkpoint(lake, name).await? == Some(version) {
        return Ok(Checkpoint::Current { version });
    }
    deltalake::checkpoints::create_checkpoint(table, None)
        .await
        .map_err(|e| classify(name, e))?;
    Ok(Checkpoint::Written { version })
}

/// VACUUM in full mode with the run's retention (or the table's own
/// `delta.deletedFileRetentionDuration` when that is set and longer).
async fn vacuum(
    name: &str,
    table: DeltaTable,
    options: &MaintainOptions,
    dry_run: bool,
) -> Result<Vacuumed, TableError> {
    let snapshot = table.snapshot().map_err(|e| classify(name, e))?;
    let mut retention = chrono::Duration::hours(i64::from(options.retention.as_hours()));
    // Set only when the table says so itself (no default filled in).
    if let Some(own) = snapshot.table_config().deleted_file_retention_duration {
        retention = retention.max(chrono::Duration::from_std(own).unwrap_or(retention));
    }
    let (_, metrics) = table
        .vacuum()
        .with_mode(VacuumMode::Full)
        .with_retention_period(retention)
        // The floor is ours (Retention): delta-rs' check would hold every run to the table's
        // default of 7 days.
        .with_enforce_retention_duration(false)
        .with_dry_run(dry_run)
        .await
        .map_err(|e| classify(name, e))?;
    let mut files = metrics.files_deleted;
    files.sort();
    Ok(Vacuumed {
        files,
        retention_hours: u32::try_from(retention.num_hours()).unwrap_or(u32::MAX),
    })
}

fn protocol(name: &str, table: &DeltaTable) -> Result<(i32, i32), TableError> {
    let protocol = table.snapshot().map_err(|e| classify(name, e))?.protocol().clone();
    Ok((protocol.min_reader_version(), protocol.min_writer_version()))
}

/// Another writer committed something this commit conflicts with (the same outcomes
/// `commit.rs` retries).
fn lost_race(e: &DeltaTableError) -> bool {
    match e {
        DeltaTableError::VersionAlreadyExists(_) | DeltaTableError::InvalidVersion(_) => true,
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

/// Full jitter, growing from 200 ms to 5 s: a rewrite is expensive, let the writers pass.
fn pause(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let bound = Duration::from_millis(200)
        .saturating_mul(1 << attempt.min(5))
        .min(Duration::from_secs(5));
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    bound.mul_f64((random % 10_000) as f64 / 10_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_stay_under_their_bound() {
        for attempt in 1..10 {
            assert!(pause(attempt) <= Duration::from_secs(5));
        }
    }
}
