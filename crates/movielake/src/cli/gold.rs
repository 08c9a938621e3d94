//! `movielake gold`: build every gold model and print the first rows of each table.

use std::path::{Path, PathBuf};

use crate::handler::AppState;
use crate::pipelines::gold;

#[derive(Debug, clap::Args)]
pub struct GoldArgs {
    /// Folder of gold models (`<table>.sql`). Default: ./gold if present, else the models
    /// built into the binary.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Rows of each table to print.
    #[arg(long, default_value_t = 5)]
    show: usize,
}

pub(super) async fn command(state: &AppState, GoldArgs { models, show }: GoldArgs) -> anyhow::Result<()> {
    build_gold(state, models.as_deref(), show).await
}

/// Builds every gold model and prints the first rows of each table.
pub(super) async fn build_gold(state: &AppState, models: Option<&Path>, show: usize) -> anyhow::Result<()> {
    let dir = models.map(PathBuf::from).or_else(gold::default_models_dir);
    let models = gold::load_models(dir.as_deref())?;
    let gold::GoldRun { built, skipped, .. } = gold::build(
        state.lake.as_ref(),
        &state.tables,
        &state.contracts,
        &models,
        gold::Refresh::All,
    )
    .await?;
    for line in &skipped {
        eprintln!("  {line}");
    }
    if built.is_empty() {
        return Ok(());
    }
    let session = gold::SqlLake::open(state.lake.as_ref(), &state.tables, &state.contracts, &[]).await?;
    for table in &built {
        println!("gold {} ({} rows, {})", table.name, table.rows, table.path);
        let batches = session
            .query(&format!("SELECT * FROM {} LIMIT {show}", table.name))
            .await?;
        println!("{}", gold::render(&batches, show)?);
    }
    Ok(())
}
