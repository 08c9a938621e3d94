//! Bronze → silver for one landed object: read it through the lake port, run the parser its
//! path names, write silver and quarantine, the manifest last. Bronze is already there and is
//! never written here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use movielake_core::ContractSet;
use movielake_core::host::eventgrid::{Admitted, BronzeKind};
use movielake_core::output::manifest::Counts;
use movielake_core::output::plan::Plan;
use movielake_core::sources::tmdb::movies::MovieRow;
use movielake_core::sources::tmdb::{api, details, lists};

use super::silver_tables::{SilverError, commit_plan};
use super::{write_manifest, write_outputs};
use crate::lake::{Lake, LakeError};
use crate::tables::{TableError, Tables, Txn};

#[derive(Debug)]
pub enum Outcome {
    Done {
        manifest_path: String,
        counts: Counts,
        logs: Vec<String>,
    },
    /// Nothing to do for this object, and a redelivery would not change that (the blob is gone,
    /// or it is not a page: a request sidecar, say).
    Skipped(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BronzeToSilverError {
    #[error(transparent)]
    Lake(LakeError),
    #[error("contract '{0}' is not loaded; add contracts/{0}.toml")]
    MissingContract(&'static str),
    #[error("conversion task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("silver/tmdb/movies: {0}")]
    Movies(super::tmdb_movies::MoviesError),
    #[error("cannot encode silver for {path}: {source}")]
    Encode {
        path: String,
        source: movielake_core::output::silver::EncodeError,
    },
}

pub async fn process(
    shared_lake: &Arc<dyn Lake>,
    tables: &Arc<Tables>,
    contracts: &Arc<ContractSet>,
    admitted: &Admitted,
) -> Result<Outcome, BronzeToSilverError> {
    let lake = shared_lake.as_ref();
    let (started_at, clock) = (Utc::now(), Instant::now());
    let (plan, movies) = match admitted.kind {
        BronzeKind::ImdbFile | BronzeKind::MoviesDatasetFile => {
            let progress: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(|line: &str| tracing::info!("{line}"));
            return match super::files::convert(
                shared_lake.clone(),
                tables.clone(),
                contracts.clone(),
                &admitted.path,
                progress,
            )
            .await
            {
                Ok(done) => Ok(Outcome::Done {
                    manifest_path: done.manifest_path,
                    counts: done.counts,
                    logs: done.logs,
                }),
                Err(super::files::FilesError::Lake(LakeError::NotFound { .. })) => {
                    Ok(Outcome::Skipped(format!("{}: not in the lake", admitted.path)))
                }
                Err(super::files::FilesError::Lake(e)) => Err(BronzeToSilverError::Lake(e)),
                // Not what its path says: a redelivery would be refused the same way.
                Err(e @ super::files::FilesError::Unusable(_)) => Ok(Outcome::Skipped(e.to_string())),
                // Anything else fails the invocation, so Event Grid retries, then dead-letters.
                Err(other) => Err(BronzeToSilverError::Task(other.to_string())),
            };
        }
        BronzeKind::TmdbListPage => {
            let page = match api::parse_bronze_page_path(&admitted.path) {
                Ok(page) => page,
                Err(why) => {
                    return Ok(Outcome::Skipped(format!(
                        "{}: not a TMDB list page ({why})",
                        admitted.path
                    )));
                }
            };
            let contract = contracts
                .get(lists::LIST_ENTRIES)
                .ok_or(BronzeToSilverError::MissingContract(lists::LIST_ENTRIES))?;
            let Some(body) = read(lake, &admitted.path).await? else {
                return Ok(Outcome::Skipped(format!("{}: not in the lake", admitted.path)));
            };
            let repeated = repeated_from_sidecar(lake, &admitted.path).await?;
            lists::plan_page(contract, &page, &body, &repeated).map_err(|source| BronzeToSilverError::Encode {
                path: admitted.path.clone(),
                source,
            })?
        }
        BronzeKind::TmdbMovieDetail => {
            let detail = match details::parse_bronze_detail_path(&admitted.path) {
                Ok(detail) => detail,
                Err(why) => {
                    return Ok(Outcome::Skipped(format!(
                        "{}: not a TMDB movie detail ({why})",
                        admitted.path
                    )));
                }
            };
            let contract = contracts
                .get(details::MOVIE_DETAILS)
                .ok_or(BronzeToSilverError::MissingContract(details::MOVIE_DETAILS))?;
            let Some(body) = read(lake, &admitted.path).await? else {
                return Ok(Outcome::Skipped(format!("{}: not in the lake", admitted.path)));
            };
            let plan =
                details::plan_detail(contract, &detail, &body).map_err(|source| BronzeToSilverError::Encode {
                    path: admitted.path.clone(),
                    source,
                })?;
            (plan, BTreeMap::new())
        }
    };
    // One transaction id per bronze object: pages and details arrive in any order, so no
    // ordering of versions could stand for "already committed".
    let txn = Txn {
        app_id: admitted.path.clone(),
        version: 1,
    };
    apply(lake, tables, contracts, plan, &txn, &movies, started_at, clock).await
}

/// `repeated_ids` of the page's sidecar (written by the pull); none without a sidecar (a page
/// landed by other means) or with an unreadable one: then nothing is dropped.
async fn repeated_from_sidecar(lake: &dyn Lake, page_path: &str) -> Result<Vec<i64>, BronzeToSilverError> {
    let sidecar = super::tmdb_lists::sidecar_path(page_path);
    let Some(bytes) = read(lake, &sidecar).await? else {
        return Ok(Vec::new());
    };
    let meta: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(meta
        .get("repeated_ids")
        .and_then(|v| v.as_array())
        .map(|ids| ids.iter().filter_map(serde_json::Value::as_i64).collect())
        .unwrap_or_default())
}

/// The object's bytes; `None` when nothing is there (deleted since, or a forged event).
async fn read(lake: &dyn Lake, path: &str) -> Result<Option<bytes::Bytes>, BronzeToSilverError> {
    match lake.get(path).await {
        Ok(object) => Ok(Some(object.bytes)),
        Err(LakeError::NotFound { .. }) => Ok(None),
        Err(e) => Err(BronzeToSilverError::Lake(e)),
    }
}

/// Silver (one commit per table) and quarantine, then the movies MERGE, the manifest last.
#[allow(clippy::too_many_arguments)]
async fn apply(
    lake: &dyn Lake,
    tables: &Tables,
    contracts: &ContractSet,
    mut plan: Plan,
    txn: &Txn,
    movies: &BTreeMap<String, Vec<MovieRow>>,
    started_at: chrono::DateTime<Utc>,
    clock: Instant,
) -> Result<Outcome, BronzeToSilverError> {
    let all: Vec<&movielake_core::Contract> = contracts.iter().collect();
    let committing = Instant::now();
    let versions = commit_plan(lake, tables, &all, &mut plan, Some(txn))
        .await
        .map_err(|e| match e {
            SilverError::Lake(e) => BronzeToSilverError::Lake(e),
            SilverError::Table(e) => BronzeToSilverError::Table(e),
            other => BronzeToSilverError::Task(other.to_string()),
        })?;
    write_outputs(lake, &plan).await.map_err(BronzeToSilverError::Lake)?;
    let mut logs = plan.logs.clone();
    let mut versions = versions;
    if !movies.is_empty() {
        let done = super::tmdb_movies::commit(tables, movies).await.map_err(|e| match e {
            super::tmdb_movies::MoviesError::Table(e) => BronzeToSilverError::Table(e),
            other => BronzeToSilverError::Movies(other),
        })?;
        logs.push(format!(
            "{}: merged, {} inserted, {} updated{}",
            movielake_core::sources::tmdb::movies::TABLE,
            done.inserted,
            done.updated,
            done.version
                .map(|v| format!(" (version {v})"))
                .unwrap_or_else(|| " (no change)".into())
        ));
        versions.insert(movielake_core::sources::tmdb::movies::TABLE.to_string(), done.version);
    }
    let commit = committing.elapsed();
    let (manifest, manifest_path) = write_manifest(lake, plan, versions, Some(commit), started_at, clock)
        .await
        .map_err(BronzeToSilverError::Lake)?;
    Ok(Outcome::Done {
        manifest_path,
        counts: manifest.counts,
        logs,
    })
}
