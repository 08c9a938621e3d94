//! `silver/tmdb/movies`: one row per movie, its latest sighting on a list page, kept by a Delta
//! MERGE by `movie_id`. A row is replaced only by a later sighting (the order of observations
//! in `movielake_core::sources::tmdb::movies`), so pages merged in any order, concurrently or
//! more than once, leave the same table; a redelivered page changes nothing and commits
//! nothing. A concurrent MERGE that touched the same files makes this one lose the commit race;
//! the table layer then merges again from the new version, with backoff.

use std::collections::BTreeMap;

use movielake_core::sources::tmdb::movies::{MovieRow, NEWER, TABLE, batch, latest};

use crate::tables::{Merged, TableError, Tables, Upsert};

#[derive(Debug, thiserror::Error)]
pub enum MoviesError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{TABLE}: cannot build the page's rows: {0}")]
    Encode(String),
}

/// Merges a page's movie rows (grouped as the core hands them) into the table.
pub async fn commit(tables: &Tables, updates: &BTreeMap<String, Vec<MovieRow>>) -> Result<Merged, MoviesError> {
    let rows = latest(updates.values().flatten());
    if rows.is_empty() {
        return Ok(Merged::default());
    }
    let refs: Vec<&MovieRow> = rows.iter().collect();
    let source = batch(&refs).map_err(|e| MoviesError::Encode(e.to_string()))?;
    Ok(tables
        .merge(TABLE, source, &["movie_id"], Upsert::ReplaceWhen(NEWER))
        .await?)
}
