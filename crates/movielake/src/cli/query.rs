//! `movielake query`: one SQL statement over silver and gold, printed as a table.

use crate::handler::AppState;
use crate::pipelines::gold;

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// One SQL statement.
    sql: String,
    /// Print at most this many rows.
    #[arg(long, default_value_t = 50)]
    max_rows: usize,
}

pub(super) async fn command(state: &AppState, QueryArgs { sql, max_rows }: QueryArgs) -> anyhow::Result<()> {
    let session = gold::SqlLake::open(state.lake.as_ref(), &state.tables, &state.contracts, &[&sql]).await?;
    let batches = session.query(&sql).await?;
    println!("{}", gold::render(&batches, max_rows)?);
    Ok(())
}
