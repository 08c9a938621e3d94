//! `movielake ingest`: land local files in bronze and convert them into silver and quarantine.

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Utc};
use movielake_core::output::manifest::Counts;

use super::print_counts;
use crate::handler::AppState;
use crate::pipelines::files;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The files to ingest.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Ingest date (the bronze partition and silver snapshot_date); default: today (UTC).
    #[arg(long)]
    date: Option<NaiveDate>,
}

pub(super) async fn command(state: &AppState, IngestArgs { files, date }: IngestArgs) -> anyhow::Result<()> {
    let date = date.unwrap_or_else(|| Utc::now().date_naive());
    let balanced = ingest_files(state, &files, date).await?;
    anyhow::ensure!(balanced, "records were lost: the counts do not add up");
    Ok(())
}

/// Ingests each file, printing its counts; whether every file's counts add up.
pub(super) async fn ingest_files(state: &AppState, files: &[PathBuf], date: NaiveDate) -> anyhow::Result<bool> {
    let mut balanced = true;
    for file in files {
        let started = std::time::Instant::now();
        let counts = ingest_file(state, file, date).await?;
        print_counts(
            &format!("{}: converted in {:.1?}", file.display(), started.elapsed()),
            &counts,
        );
        balanced &= counts.balanced();
    }
    Ok(balanced)
}

/// Lands one local file in bronze and converts it, printing progress on stderr.
async fn ingest_file(state: &AppState, file: &Path, date: NaiveDate) -> anyhow::Result<Counts> {
    let landed = files::land_local_file(state.lake.as_ref(), file, date).await?;
    let verb = if landed.already { "already in bronze" } else { "landed" };
    eprintln!("  {verb}: {} ({:.1} MiB)", landed.path, landed.bytes as f64 / 1048576.0);
    let progress: std::sync::Arc<dyn Fn(&str) + Send + Sync> = std::sync::Arc::new(|line: &str| eprintln!("  {line}"));
    let done = files::convert(
        state.lake.clone(),
        state.tables.clone(),
        state.contracts.clone(),
        &landed.path,
        progress,
    )
    .await?;
    for line in &done.logs[1..] {
        eprintln!("  {line}");
    }
    Ok(done.counts)
}
