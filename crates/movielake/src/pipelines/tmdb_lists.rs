//! `pull_tmdb_lists`: every configured list, page by page, landed verbatim in bronze
//! (create-only) with a sidecar of request metadata, then the run manifest.

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use movielake_core::manifest::OutputKind;
use movielake_core::pipelines::{Plan, PlannedWrite};
use movielake_core::tmdb::{ListsConfig, bronze_page_path, repeated_ids};
use serde_json::json;

use super::write_manifest;
use crate::eventgrid::{EventGridPublisher, PublishError, PublisherAuth, landed_event};
use crate::lake::{Lake, LakeError, PutMode};
use crate::tmdb::{ClientConfig, FetchedPage, TmdbClient, TmdbError, Token};

pub const PIPELINE: &str = "tmdb_lists";

/// What a pull needs; the token stays inside (its `Debug` is redacted).
#[derive(Debug, Clone)]
pub struct PullSettings {
    pub token: Token,
    pub client: ClientConfig,
    pub lists: ListsConfig,
    /// Where `movielake.bronze.landed` goes; `None`: pages are landed but not announced.
    pub publisher: Option<EventGridPublisher>,
}

#[derive(Debug)]
pub struct Pulled {
    pub manifest_path: String,
    /// Bronze page paths landed by this run (or found there from an earlier attempt of it).
    pub pages: Vec<String>,
    pub already_landed: usize,
    /// Pages announced on the topic (this run's and earlier runs' left unannounced).
    pub announced: usize,
    pub logs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The token is refused: nothing more is tried, nothing is announced.
    #[error(transparent)]
    InvalidToken(TmdbError),
    #[error("cannot record announcements at {path}: {message}")]
    Record { path: String, message: String },
    #[error("cannot start the TMDB client: {0}")]
    Client(TmdbError),
    /// Some lists could not be read; what was landed is in the manifest.
    #[error("{failed} of {total} TMDB lists failed (manifest {manifest}): {}", .errors.join("; "))]
    ListsFailed {
        failed: usize,
        total: usize,
        manifest: String,
        errors: Vec<String>,
    },
}

/// `bronze/.../page=0001.json` → `bronze/.../page=0001.meta.json`.
pub fn sidecar_path(page_path: &str) -> String {
    match page_path.strip_suffix(".json") {
        Some(stem) => format!("{stem}.meta.json"),
        None => format!("{page_path}.meta.json"),
    }
}

/// Request metadata kept beside a page: parameters without secrets (the token is a header,
/// or an `api_key` the client adds itself and never records).
fn sidecar(run_id: &str, page: &FetchedPage, repeated: &[i64]) -> Bytes {
    let headers: serde_json::Map<String, serde_json::Value> =
        page.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let body = json!({
        "endpoint": page.endpoint,
        "page": page.page,
        "parameters": page.query.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "status": page.status,
        "headers": headers,
        "fetched_at": page.fetched_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "attempts": page.attempts,
        "bytes": page.body.len(),
        "run_id": run_id,
        "repeated_ids": repeated,
    });
    Bytes::from(serde_json::to_vec_pretty(&body).unwrap_or_default())
}

/// Create-only; an object already there is an earlier attempt of this run, and it stays.
async fn land(lake: &dyn Lake, path: &str, bytes: Bytes) -> Result<bool, LakeError> {
    match lake.put(path, bytes, PutMode::Create).await {
        Ok(_) => Ok(true),
        Err(LakeError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn pull(
    lake: &dyn Lake,
    settings: &PullSettings,
    run_id: &str,
    ingest_date: NaiveDate,
) -> Result<Pulled, PullError> {
    let (started_at, clock): (DateTime<Utc>, Instant) = (Utc::now(), Instant::now());
    let client = TmdbClient::new(settings.token.clone(), settings.client.clone()).map_err(PullError::Client)?;
    let mut writes = Vec::new();
    let mut pages = Vec::new();
    let mut already_landed = 0;
    let mut errors = Vec::new();
    let mut logs = Vec::new();
    let mut announced: Vec<String> = Vec::new();
    let mut reannounced = 0;
    if let Some(publisher) = &settings.publisher {
        reannounced = reannounce(lake, publisher, ingest_date, &mut logs).await?;
    }
    for spec in &settings.lists.lists {
        let fetched = match client.fetch_list(spec).await {
            Ok(fetched) => fetched,
            Err(e @ TmdbError::InvalidToken { .. }) => return Err(PullError::InvalidToken(e)),
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let bodies: Vec<&[u8]> = fetched.iter().map(|p| p.body.as_ref()).collect();
        let repeats = repeated_ids(&bodies);
        let repeated_total: usize = repeats.iter().map(Vec::len).sum();
        for (page, repeated) in fetched.iter().zip(&repeats) {
            let path = bronze_page_path(&spec.endpoint, ingest_date, run_id, page.page);
            let meta = sidecar(run_id, page, repeated);
            // The page first: a sidecar never describes a page that is not there.
            if !land(lake, &path, page.body.clone()).await? {
                already_landed += 1;
            }
            land(lake, &sidecar_path(&path), meta.clone()).await?;
            writes.push(PlannedWrite {
                path: sidecar_path(&path),
                kind: OutputKind::Bronze,
                rows: None,
                bytes: meta,
            });
            writes.push(PlannedWrite {
                path: path.clone(),
                kind: OutputKind::Bronze,
                rows: None,
                bytes: page.body.clone(),
            });
            pages.push(path);
        }
        logs.push(format!(
            "tmdb {}: {} page(s) landed, {repeated_total} id(s) repeated across pages",
            spec.endpoint,
            fetched.len()
        ));
        // Announced only now that every page of the list is durable.
        let list_pages = &pages[pages.len() - fetched.len()..];
        if let Some(publisher) = &settings.publisher {
            match announce(publisher, list_pages).await {
                Ok(()) => announced.extend(list_pages.iter().cloned()),
                Err(e) => errors.push(format!(
                    "{}: landed but not announced ({e}); the next run announces it",
                    spec.endpoint
                )),
            }
        }
    }
    let plan = Plan {
        run_id: run_id.to_string(),
        pipeline: PIPELINE.into(),
        date: ingest_date,
        inputs: settings
            .lists
            .lists
            .iter()
            .map(|l| format!("tmdb:{}", l.endpoint))
            .collect(),
        writes,
        ..Default::default()
    };
    if settings.publisher.is_some() {
        let record = AnnouncementRecord {
            landed: pages.clone(),
            announced: announced.clone(),
        };
        write_record(lake, &announcements_path(ingest_date, run_id), &record).await?;
    } else {
        logs.push("EVENTGRID_TOPIC_ENDPOINT is not set: pages landed, not announced".into());
    }
    let (_, manifest_path) = write_manifest(lake, plan, started_at, clock).await?;
    if !errors.is_empty() {
        return Err(PullError::ListsFailed {
            failed: errors.len(),
            total: settings.lists.lists.len(),
            manifest: manifest_path,
            errors,
        });
    }
    logs.push(format!("retries left in the run's budget: {}", client.retries_left()));
    Ok(Pulled {
        manifest_path,
        pages,
        already_landed,
        announced: announced.len() + reannounced,
        logs,
    })
}

/// What a run landed and what it announced (`ops/announcements/...`), so that a later run
/// announces what this one could not.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct AnnouncementRecord {
    landed: Vec<String>,
    announced: Vec<String>,
}

fn announcements_path(date: NaiveDate, run_id: &str) -> String {
    format!(
        "ops/announcements/{PIPELINE}/date={}/{run_id}.json",
        date.format("%Y-%m-%d")
    )
}

async fn announce(publisher: &EventGridPublisher, paths: &[String]) -> Result<(), PublishError> {
    let now = Utc::now();
    let events: Vec<serde_json::Value> = paths
        .iter()
        .map(|p| landed_event(p, "movielake/pull_tmdb_lists", now))
        .collect();
    publisher.publish(&events).await
}

async fn write_record(lake: &dyn Lake, path: &str, record: &AnnouncementRecord) -> Result<(), PullError> {
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| PullError::Record {
        path: path.into(),
        message: e.to_string(),
    })?;
    lake.put(path, Bytes::from(bytes), PutMode::Overwrite).await?;
    Ok(())
}

/// Announces what earlier runs of the day and the day before landed but did not announce.
async fn reannounce(
    lake: &dyn Lake,
    publisher: &EventGridPublisher,
    date: NaiveDate,
    logs: &mut Vec<String>,
) -> Result<usize, PullError> {
    let mut done = 0;
    for day in [date.pred_opt().unwrap_or(date), date] {
        let prefix = format!("ops/announcements/{PIPELINE}/date={}/", day.format("%Y-%m-%d"));
        for meta in lake.list(&prefix).await? {
            let object = lake.get(&meta.path).await?;
            let Ok(mut record) = serde_json::from_slice::<AnnouncementRecord>(&object.bytes) else {
                logs.push(format!("{}: unreadable announcement record, skipped", meta.path));
                continue;
            };
            let missing: Vec<String> = record
                .landed
                .iter()
                .filter(|p| !record.announced.contains(p))
                .cloned()
                .collect();
            if missing.is_empty() {
                continue;
            }
            match announce(publisher, &missing).await {
                Ok(()) => {
                    done += missing.len();
                    logs.push(format!("{}: re-announced {} page(s)", meta.path, missing.len()));
                    record.announced.extend(missing);
                    write_record(lake, &meta.path, &record).await?;
                }
                Err(e) => logs.push(format!("{}: still not announced: {e}", meta.path)),
            }
        }
    }
    Ok(done)
}

/// The lists shipped with the binary, for when neither `TMDB_LISTS` nor `./tmdb_lists.toml` is
/// there (an installed binary without the repository beside it).
pub const EMBEDDED_LISTS: &str = include_str!("../../../../tmdb_lists.toml");

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("TMDB_API_TOKEN is not set (in Azure: a Key Vault reference to the TMDB read access token)")]
    NoToken,
    #[error("cannot read the TMDB lists file {file}: {message}")]
    Unreadable { file: String, message: String },
    #[error("cannot set up Event Grid publishing: {0}")]
    Publisher(String),
    #[error("TMDB lists refused: {0}")]
    Lists(#[from] movielake_core::tmdb::ListsConfigError),
}

impl PullSettings {
    /// `TMDB_API_TOKEN` (required), `TMDB_BASE_URL`, `TMDB_LISTS` (a file; default
    /// `./tmdb_lists.toml`, else the embedded copy).
    pub fn from_env() -> Result<Self, SettingsError> {
        let token = std::env::var("TMDB_API_TOKEN")
            .ok()
            .and_then(|t| Token::new(&t))
            .ok_or(SettingsError::NoToken)?;
        let mut client = ClientConfig::default();
        if let Ok(base) = std::env::var("TMDB_BASE_URL")
            && !base.trim().is_empty()
        {
            client.base_url = base.trim().to_string();
        }
        let file = std::env::var("TMDB_LISTS")
            .ok()
            .filter(|f| !f.trim().is_empty())
            .or_else(|| {
                std::path::Path::new("tmdb_lists.toml")
                    .is_file()
                    .then(|| "tmdb_lists.toml".into())
            });
        let lists = match file {
            Some(file) => {
                let text = std::fs::read_to_string(&file).map_err(|e| SettingsError::Unreadable {
                    file: file.clone(),
                    message: e.to_string(),
                })?;
                ListsConfig::from_toml(&file, &text)?
            }
            None => ListsConfig::from_toml("tmdb_lists.toml (embedded)", EMBEDDED_LISTS)?,
        };
        let publisher = match std::env::var("EVENTGRID_TOPIC_ENDPOINT") {
            Ok(endpoint) if !endpoint.trim().is_empty() => {
                let user_assigned_id = std::env::var("AZURE_CLIENT_ID")
                    .ok()
                    .map(|id| id.trim().to_string())
                    .filter(|id| !id.is_empty())
                    .map(azure_identity::UserAssignedId::ClientId);
                let credential = azure_identity::ManagedIdentityCredential::new(Some(
                    azure_identity::ManagedIdentityCredentialOptions {
                        user_assigned_id,
                        ..Default::default()
                    },
                ))
                .map_err(|e| SettingsError::Publisher(e.to_string()))?;
                let publisher = EventGridPublisher::new(&endpoint, PublisherAuth::Entra(credential))
                    .map_err(|e| SettingsError::Publisher(e.to_string()))?;
                Some(publisher)
            }
            _ => None,
        };
        Ok(PullSettings {
            token,
            client,
            lists,
            publisher,
        })
    }
}
