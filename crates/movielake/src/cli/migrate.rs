//! `movielake migrate`: a lake written by the previous version (loose Parquet silver and gold)
//! becomes Delta tables in place; see `tables::migrate`. This file prints what it does.

use crate::handler::AppState;
use crate::tables::migrate::{self, Options, Outcome, Progress, TableReport};

/// Turn a lake written by the previous version (loose Parquet silver and gold) into Delta tables,
/// in place, without rewriting any data file.
///
/// Each table gets one commit naming its old Parquet files as they are: silver parts
/// (`silver/<source>/<table>/<col>=<value>/part-*.parquet`, checked against the table's
/// contract), the TMDB movie buckets (`silver/tmdb/movies/bucket=NN/movies.parquet`, one row per
/// movie: the table the app MERGEs into) and gold parts (`gold/<name>/part-00000.parquet`). Row
/// counts come from each file's footer. A table that already has a Delta log is left alone.
///
/// Idempotent: the commit carries the transaction `movielake-migrate`, so running it again
/// commits nothing; a run that stopped half-way (storage down, Ctrl-C) is simply run again.
///
/// A table is migrated whole or not at all. A file that does not fit (columns of another
/// contract version, not Parquet, a folder that is not a partition) is listed with the reason,
/// and nothing is committed for its table: move the file out of the table's folder (keep it;
/// its rows can be rebuilt from bronze) and run migrate again. The command then exits non-zero.
///
/// Stop the Function App's triggers while migrating: a table the app writes first becomes a
/// Delta table without the old files.
///
/// Example: movielake migrate --dry-run; movielake migrate
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Print what would be committed to each table (files, rows), write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only this table (repeatable): `silver/events/watch`, `silver/tmdb/movies`,
    /// `gold/genre_year`. Default: every table found under silver/ and gold/.
    #[arg(long = "table", value_name = "TABLE")]
    tables: Vec<String>,
}

pub(super) async fn command(state: &AppState, MigrateArgs { dry_run, tables }: MigrateArgs) -> anyhow::Result<()> {
    let lake = state.lake.describe();
    if dry_run {
        println!("migrate {lake} (dry run: nothing is written)");
    } else {
        println!("migrate {lake}");
    }
    let options = Options { dry_run, only: tables };
    let reports = migrate::migrate(
        state.lake.as_ref(),
        &state.tables,
        &state.contracts,
        &options,
        |progress| match progress {
            Progress::Reading { table, files } => eprintln!("{table}: reading the footers of {files} Parquet files"),
            Progress::Done(report) => print!("{}", render(report)),
        },
    )
    .await?;
    print!("{}", summary(&reports));
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::NotMigrated { .. }))
        .map(|r| r.table.as_str())
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "{} table(s) not migrated: {} (why and what to do above; the other tables are done, and a \
         re-run only looks at what is left)",
        failed.len(),
        failed.join(", ")
    );
    Ok(())
}

/// One table's lines.
pub fn render(report: &TableReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let table = &report.table;
    let _ = match &report.outcome {
        Outcome::Migrated { version, files, rows } => writeln!(
            s,
            "{table}: {files} files, {rows} rows committed as they are (version {version})"
        ),
        Outcome::WouldMigrate { files, rows } => writeln!(s, "{table}: would commit {files} files, {rows} rows"),
        Outcome::AlreadyMigrated { version } => {
            writeln!(s, "{table}: already migrated (version {version}), nothing to do")
        }
        Outcome::AlreadyDelta { version } => writeln!(s, "{table}: already a Delta table (version {version}), skipped"),
        Outcome::Nothing => writeln!(s, "{table}: no Parquet files, nothing to do"),
        Outcome::NotMigrated { reason, problems, hint } => {
            let _ = writeln!(s, "{table}: NOT MIGRATED, nothing committed: {reason}");
            for p in problems {
                let _ = writeln!(s, "    {}: {}", p.path, p.problem);
            }
            writeln!(s, "  hint: {hint}")
        }
    };
    if !report.unnamed.is_empty() {
        let _ = writeln!(
            s,
            "  {} Parquet files in its folder are not in its log: no reader sees them, VACUUM \
             (`movielake maintain`) deletes them; if they hold rows the table should have, move \
             them out and re-ingest their input",
            report.unnamed.len()
        );
        for path in report.unnamed.iter().take(10) {
            let _ = writeln!(s, "    {path}");
        }
        if report.unnamed.len() > 10 {
            let _ = writeln!(s, "    ... and {} more", report.unnamed.len() - 10);
        }
    }
    s
}

/// The totals over every table.
pub fn summary(reports: &[TableReport]) -> String {
    let (mut migrated, mut would, mut done, mut failed, mut files, mut rows) = (0, 0, 0, 0, 0, 0);
    for r in reports {
        match &r.outcome {
            Outcome::Migrated { files: f, rows: n, .. } => {
                migrated += 1;
                files += f;
                rows += n;
            }
            Outcome::WouldMigrate { files: f, rows: n } => {
                would += 1;
                files += f;
                rows += n;
            }
            Outcome::AlreadyMigrated { .. } | Outcome::AlreadyDelta { .. } | Outcome::Nothing => done += 1,
            Outcome::NotMigrated { .. } => failed += 1,
        }
    }
    let moved = if would > 0 {
        format!("{would} would be migrated ({files} files, {rows} rows)")
    } else {
        format!("{migrated} migrated ({files} files, {rows} rows, no data file rewritten)")
    };
    format!(
        "summary: {} tables: {moved}, {done} already Delta or empty, {failed} not migrated\n",
        reports.len()
    )
}
