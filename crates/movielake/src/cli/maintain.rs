//! `movielake maintain`: compaction, checkpoint, log cleanup and VACUUM of the lake's Delta
//! tables, the same run as the `maintain_tables` timer Function, with progress per table.

use std::fmt::Write as _;

use crate::handler::AppState;
use crate::tables::Tables;
use crate::tables::maintain::{
    Checkpoint, DEFAULT_RETENTION_HOURS, DEFAULT_TARGET_FILE_MB, MaintainError, MaintainOptions, Maintained, Retention,
    RunReport,
};

pub(super) const ABOUT: &str = "\
Keep the lake's Delta tables fast to read and small to store: the run the maintain_tables timer
Function makes every hour. For every Delta table of the lake (each silver/<source>/<table> and
gold/<name> holding a _delta_log), or only those named with --table, in this order:

  1. compaction   in each partition, runs of files smaller than --target-file-mb are rewritten
                  into files of about that size, in one commit. Readers see the same rows; the
                  small files stay on storage (time travel still reads them) until VACUUM. A
                  commit that conflicts with a writer is planned again, never half-applied.
  2. checkpoint   the latest version is written as a Parquet checkpoint, so a reader stops
                  replaying every JSON commit since the last one (ingest does not checkpoint).
  3. log cleanup  JSON commits older than the table's delta.logRetentionDuration (30 days)
                  that a checkpoint covers are deleted.
  4. VACUUM       files that left the table (compacted, replaced) more than --retention-hours
                  ago are deleted, and so are files no commit ever named (a writer that died
                  before committing) once they are that old. Time travel to versions older
                  than the retention stops working.

The retention rule: at least 1 hour; default 168 (a week of time travel). Ingest writes its
data files into the table folder before it commits them, so the retention is what keeps VACUUM
away from the files of writers still at work: less than an hour is refused. A table whose own
delta.deletedFileRetentionDuration is longer keeps its own.

One maintainer per table at a time: a table another run is maintaining (lease in
ops/maintain/leases/) is skipped and said so. The protocol stays reader 1 / writer 2.";

const EXAMPLES: &str = "\
Examples:
  movielake maintain --dry-run                     what would be compacted and vacuumed; writes nothing
  movielake maintain                               every table, as the timer Function does
  movielake maintain --table silver/events/watch   one table (repeat --table for more)
  movielake maintain --target-file-mb 256          larger files, for Spark or Synapse readers
  movielake maintain --no-vacuum                   compact and checkpoint, delete nothing
  movielake maintain --retention-hours 24          keep one day of time travel";

#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct MaintainArgs {
    /// Only this table, by its path in the lake: silver/events/watch, gold/genre_year. Repeat
    /// for several. Default: every Delta table of the lake.
    #[arg(long = "table", value_name = "TABLE")]
    tables: Vec<String>,
    /// VACUUM keeps what it could delete for this many hours (at least 1).
    #[arg(long, value_name = "HOURS", env = "MOVIELAKE_MAINTAIN_RETENTION_HOURS",
          default_value_t = DEFAULT_RETENTION_HOURS, value_parser = retention_hours)]
    retention_hours: u32,
    /// Compaction writes files of about this size, in MiB (1 to 1024).
    #[arg(long, value_name = "MIB", env = "MOVIELAKE_MAINTAIN_TARGET_FILE_MB",
          default_value_t = DEFAULT_TARGET_FILE_MB)]
    target_file_mb: u64,
    /// Skip VACUUM: compact, checkpoint and clean the log, delete no data file.
    #[arg(long)]
    no_vacuum: bool,
    /// List what would be compacted and vacuumed, per table; write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The clap check of `--retention-hours`: the refusal and its hint, before anything runs.
fn retention_hours(text: &str) -> Result<u32, String> {
    let hours: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of hours"))?;
    Retention::hours(hours)
        .map(Retention::as_hours)
        .map_err(|e| format!("{e}\n  hint: {}", e.hint()))
}

pub(super) async fn command(state: &AppState, args: MaintainArgs) -> anyhow::Result<()> {
    let holder = format!("movielake maintain (pid {})", std::process::id());
    let mut options = MaintainOptions::new(args.target_file_mb, args.retention_hours, holder)
        .map_err(|e| anyhow::anyhow!("{e}\nhint: {}", e.hint()))?;
    options.vacuum = !args.no_vacuum;
    options.dry_run = args.dry_run;

    let all = Tables::list_tables(state.lake.as_ref()).await?;
    let tables = if args.tables.is_empty() {
        all
    } else {
        let wanted: Vec<String> = args.tables.iter().map(|t| t.trim_matches('/').to_string()).collect();
        if let Some(missing) = wanted.iter().find(|t| !all.contains(t)) {
            let known = if all.is_empty() {
                "none yet".to_string()
            } else {
                all.join(", ")
            };
            anyhow::bail!(
                "no Delta table {missing} in {}\nhint: the lake's Delta tables: {known}",
                state.lake.describe()
            );
        }
        wanted
    };
    if tables.is_empty() {
        println!(
            "no Delta tables in {} (silver/<source>/<table>/_delta_log, gold/<name>/_delta_log)",
            state.lake.describe()
        );
        return Ok(());
    }
    if options.dry_run {
        println!("dry run: nothing is written");
    }
    let report = state
        .tables
        .maintain_all(state.lake.as_ref(), &tables, &options, |table, outcome| {
            print!("{}", render(table, outcome));
        })
        .await;
    println!("{}", summary(&report, options.dry_run));
    if !options.dry_run {
        // Events whose dimension landed late or changed since (issue 17).
        let outcomes = crate::pipelines::reenrich::reenrich_all(
            state.lake.as_ref(),
            &state.tables,
            &state.contracts,
            state.reenrich_days,
            chrono::Utc::now().date_naive(),
        )
        .await?;
        for (table, done) in outcomes {
            match done {
                Some(d) => println!(
                    "{table}: re-enriched {} of {} rows of the last {} days ({} of {} partitions rewritten, one commit each)",
                    d.changed, d.rows, state.reenrich_days, d.rewritten, d.partitions
                ),
                None => println!("{table}: the enrichment dimension has not changed since the last re-enrichment"),
            }
        }
    }
    anyhow::ensure!(
        report.failed.is_empty(),
        "{} table(s) not maintained: {}",
        report.failed.len(),
        report
            .failed
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// One table's lines: what it was, what it is, what maintenance did, how long it took.
fn render(table: &str, outcome: &Result<Maintained, MaintainError>) -> String {
    let mut s = String::new();
    let done = match outcome {
        Ok(done) => done,
        Err(MaintainError::Busy { .. }) => return format!("{table}  skipped: {}\n", outcome_error(outcome)),
        Err(_) => return format!("{table}  FAILED: {}\n", outcome_error(outcome)),
    };
    if done.dry_run {
        let c = &done.compaction;
        let _ = write!(
            s,
            "{table}  {}, {} in {}",
            count(done.before.files as u64, "file"),
            mib(done.before.bytes),
            count(done.before.partitions.len() as u64, "partition")
        );
        if c.files_removed == 0 {
            s.push_str("  nothing to compact");
        } else {
            let _ = write!(
                s,
                "  would compact {} ({}) into {}",
                count(c.files_removed, "file"),
                mib(c.bytes_removed),
                c.files_added
            );
        }
        let _ = write!(s, "  {}", checkpoint(&done.checkpoint));
        if let Some(v) = &done.vacuum {
            let _ = write!(s, "  would vacuum {}", count(v.files.len() as u64, "file"));
        }
        s.push('\n');
        for bin in &c.bins {
            let where_ = if bin.partition.is_empty() {
                "(unpartitioned)"
            } else {
                &bin.partition
            };
            let _ = writeln!(
                s,
                "    compact {where_}: {} ({}) -> 1",
                count(bin.files as u64, "file"),
                mib(bin.bytes)
            );
        }
        for file in done.vacuum.iter().flat_map(|v| &v.files) {
            let _ = writeln!(s, "    vacuum  {file}");
        }
        return s;
    }
    let _ = write!(
        s,
        "{table}  files {} -> {} (at most {} a partition)  {} -> {}  v{} -> v{}  {}",
        done.before.files,
        done.after.files,
        done.after.max_files_per_partition(),
        mib(done.before.bytes),
        mib(done.after.bytes),
        done.version_before,
        done.version_after,
        checkpoint(&done.checkpoint)
    );
    if done.logs_removed > 0 {
        let _ = write!(s, "  {} removed", count(done.logs_removed as u64, "old log file"));
    }
    match &done.vacuum {
        Some(v) => {
            let _ = write!(
                s,
                "  vacuumed {} ({} h)",
                count(v.files.len() as u64, "file"),
                v.retention_hours
            );
        }
        None => s.push_str("  no vacuum"),
    }
    let _ = writeln!(s, "  {:.1?}", done.elapsed);
    if done.compaction.attempts > 1 {
        let _ = writeln!(
            s,
            "    compaction conflicted with writers and was planned again: {} attempts",
            done.compaction.attempts
        );
    }
    if done.protocol != (1, 2) {
        let (r, w) = done.protocol;
        let _ = writeln!(
            s,
            "    warning: protocol reader {r} / writer {w}: Synapse and Fabric need reader 1 / writer 2"
        );
    }
    s
}

fn outcome_error(outcome: &Result<Maintained, MaintainError>) -> String {
    outcome.as_ref().err().map(ToString::to_string).unwrap_or_default()
}

fn checkpoint(c: &Checkpoint) -> String {
    match c {
        Checkpoint::Written { version } => format!("checkpoint v{version}"),
        Checkpoint::Current { version } => format!("checkpoint v{version} (already)"),
        Checkpoint::WouldWrite { version } => format!("would checkpoint v{version}"),
    }
}

/// The run in one line.
fn summary(report: &RunReport, dry_run: bool) -> String {
    let sum = |f: fn(&Maintained) -> u64| report.maintained.iter().map(f).sum::<u64>();
    let (before, after) = (sum(|m| m.before.files as u64), sum(|m| m.after.files as u64));
    let (bytes_before, bytes_after) = (sum(|m| m.before.bytes), sum(|m| m.after.bytes));
    let vacuumed = sum(|m| m.vacuum.as_ref().map_or(0, |v| v.files.len() as u64));
    let mut s = if dry_run {
        format!(
            "dry run over {} in {:.1?}: would compact {} of {}, would vacuum {}",
            count(report.maintained.len() as u64, "table"),
            report.elapsed,
            sum(|m| m.compaction.files_removed),
            count(before, "file"),
            count(vacuumed, "file")
        )
    } else {
        format!(
            "maintained {} in {:.1?}: files {before} -> {after}, {} -> {}, vacuumed {}",
            count(report.maintained.len() as u64, "table"),
            report.elapsed,
            mib(bytes_before),
            mib(bytes_after),
            count(vacuumed, "file")
        )
    };
    let _ = write!(
        s,
        "; {} skipped (busy), {} failed",
        report.busy.len(),
        report.failed.len()
    );
    if !report.left.is_empty() {
        let _ = write!(s, "; {} left for the next run (out of time)", report.left.len());
    }
    s
}

/// `1 file`, `2 files`.
fn count(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
