//! `pull_tmdb_lists`: every configured list, page by page, landed verbatim in bronze
//! (create-only) with a sidecar of request metadata; then the details of the movies on those
//! pages (`[details]`), each landed the same way, a 404 becoming a quarantine record; then the
//! announcements, and the run manifest.

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use futures::StreamExt;
use movielake_core::Contract;
use movielake_core::output::manifest::{Counts, OutputKind};
use movielake_core::output::plan::{Plan, PlannedWrite};
use movielake_core::sources::tmdb::api::bronze_page_path;
use movielake_core::sources::tmdb::details::{
    MOVIE_DETAILS, NotFound, bronze_detail_path, detail_ids, not_found_counts, plan_not_found,
};
use movielake_core::sources::tmdb::lists::{ListsConfig, repeated_ids};
use serde_json::json;

use super::write_manifest;
use crate::clients::eventgrid::{EventGridPublisher, PublishError, PublisherAuth, landed_event};
use crate::clients::tmdb::{ClientConfig, FetchedDetail, FetchedPage, TmdbClient, TmdbError, Token};
use crate::lake::{Lake, LakeError, PutMode};

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
    /// Bronze movie detail paths landed by this run (or found there from an earlier attempt).
    pub details: Vec<String>,
    /// Details TMDB does not have (404), written to quarantine.
    pub not_found: usize,
    pub already_landed: usize,
    /// Objects announced on the topic (this run's and earlier runs' left unannounced).
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
    #[error(
        "contract '{0}' is not loaded; add contracts/{0}.toml (or set enabled = false in [details] of the TMDB lists file)"
    )]
    MissingContract(&'static str),
    /// Some movie details could not be read (not a 404: those are quarantined); what was
    /// landed is in the manifest.
    #[error("{failed} TMDB movie detail(s) failed (manifest {manifest}): {}", .errors.join("; "))]
    DetailsFailed {
        failed: usize,
        manifest: String,
        errors: Vec<String>,
    },
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
    let mut meta = request_meta(
        run_id,
        &page.endpoint,
        &page.query,
        page.status,
        &page.headers,
        page.fetched_at,
        page.attempts,
        page.body.len(),
    );
    meta.insert("page".into(), json!(page.page));
    meta.insert("repeated_ids".into(), json!(repeated));
    Bytes::from(serde_json::to_vec_pretty(&meta).unwrap_or_default())
}

/// The same metadata beside a movie's details.
fn detail_sidecar(run_id: &str, detail: &FetchedDetail) -> Bytes {
    let mut meta = request_meta(
        run_id,
        &detail.endpoint,
        &detail.query,
        detail.status,
        &detail.headers,
        detail.fetched_at,
        detail.attempts,
        detail.body.len(),
    );
    meta.insert("movie_id".into(), json!(detail.movie_id));
    Bytes::from(serde_json::to_vec_pretty(&meta).unwrap_or_default())
}

#[allow(clippy::too_many_arguments)]
fn request_meta(
    run_id: &str,
    endpoint: &str,
    query: &[(String, String)],
    status: u16,
    headers: &[(String, String)],
    fetched_at: DateTime<Utc>,
    attempts: u32,
    bytes: usize,
) -> serde_json::Map<String, serde_json::Value> {
    let headers: serde_json::Map<String, serde_json::Value> =
        headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let meta = json!({
        "endpoint": endpoint,
        "parameters": query.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "status": status,
        "headers": headers,
        "fetched_at": fetched_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "attempts": attempts,
        "bytes": bytes,
        "run_id": run_id,
    });
    match meta {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// Create-only; an object already there is an earlier attempt of this run, and it stays.
/// Returns whether it is new, and the bytes bronze holds (the earlier attempt's, if any: a
/// detail fetched again may differ, and the manifest must describe what is stored).
async fn land(lake: &dyn Lake, path: &str, bytes: Bytes) -> Result<(bool, Bytes), LakeError> {
    match lake.put(path, bytes.clone(), PutMode::Create).await {
        Ok(_) => Ok((true, bytes)),
        Err(LakeError::AlreadyExists { .. }) => Ok((false, lake.get(path).await?.bytes)),
        Err(e) => Err(e),
    }
}

/// Lands a body and then its sidecar (a sidecar never describes an object that is not there),
/// and plans both for the manifest. Returns whether the body was already there.
async fn land_with_sidecar(
    lake: &dyn Lake,
    path: &str,
    body: Bytes,
    meta: Bytes,
    writes: &mut Vec<PlannedWrite>,
) -> Result<bool, LakeError> {
    let (new, body) = land(lake, path, body).await?;
    let meta_path = sidecar_path(path);
    let (_, meta) = land(lake, &meta_path, meta).await?;
    for (path, bytes) in [(meta_path, meta), (path.to_string(), body)] {
        writes.push(PlannedWrite {
            path,
            kind: OutputKind::Bronze,
            rows: None,
            bytes,
        });
    }
    Ok(!new)
}

/// Everything a pull needs to know about the details of one run.
#[derive(Debug, Default)]
struct DetailsDone {
    landed: Vec<String>,
    already_landed: usize,
    not_found: usize,
    errors: Vec<String>,
}

pub async fn pull(
    lake: &dyn Lake,
    settings: &PullSettings,
    details_contract: Option<&Contract>,
    run_id: &str,
    ingest_date: NaiveDate,
) -> Result<Pulled, PullError> {
    let (started_at, clock): (DateTime<Utc>, Instant) = (Utc::now(), Instant::now());
    let details = &settings.lists.details;
    // Checked before any request: a pull that could not record its 404s must not start.
    let details_contract = match (details.enabled, details_contract) {
        (true, None) => return Err(PullError::MissingContract(MOVIE_DETAILS)),
        (true, Some(c)) => Some(c),
        (false, _) => None,
    };
    let client = TmdbClient::new(settings.token.clone(), settings.client.clone()).map_err(PullError::Client)?;
    let mut writes = Vec::new();
    let mut pages = Vec::new();
    let mut already_landed = 0;
    let mut errors = Vec::new();
    let mut logs = Vec::new();
    let mut reannounced = 0;
    if let Some(publisher) = &settings.publisher {
        reannounced = reannounce(lake, publisher, ingest_date, &mut logs).await?;
    }
    // Pages of each list, announced only once the whole run is durable: a token refused on a
    // later request (a detail, say) must fail the run before anything is announced.
    let mut by_list: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
    let mut bodies: Vec<Bytes> = Vec::new();
    for spec in &settings.lists.lists {
        let fetched = match client.fetch_list(spec).await {
            Ok(fetched) => fetched,
            Err(e @ TmdbError::InvalidToken { .. }) => {
                return Err(refused_token(lake, settings, ingest_date, run_id, &pages, e).await);
            }
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let list_bodies: Vec<&[u8]> = fetched.iter().map(|p| p.body.as_ref()).collect();
        let repeats = repeated_ids(&list_bodies);
        let repeated_total: usize = repeats.iter().map(Vec::len).sum();
        let first = pages.len();
        for (page, repeated) in fetched.iter().zip(&repeats) {
            let path = bronze_page_path(&spec.endpoint, ingest_date, run_id, page.page);
            let meta = sidecar(run_id, page, repeated);
            if land_with_sidecar(lake, &path, page.body.clone(), meta, &mut writes).await? {
                already_landed += 1;
            }
            pages.push(path);
            bodies.push(page.body.clone());
        }
        by_list.push((&spec.endpoint, first..pages.len()));
        logs.push(format!(
            "tmdb {}: {} page(s) landed, {repeated_total} id(s) repeated across pages",
            spec.endpoint,
            fetched.len()
        ));
    }

    let mut done = DetailsDone::default();
    let mut counts = Counts::default();
    if let Some(contract) = details_contract {
        let (ids, over) = detail_ids(bodies.iter().map(|b| b.as_ref()), details.max_per_run);
        let mut not_found = Vec::new();
        match fetch_details(
            lake,
            &client,
            settings,
            run_id,
            ingest_date,
            &ids,
            &mut writes,
            &mut not_found,
        )
        .await
        {
            Ok(d) => done = d,
            Err(DetailsError::Lake(e)) => return Err(e.into()),
            Err(DetailsError::Token(e)) => {
                return Err(refused_token(lake, settings, ingest_date, run_id, &pages, e).await);
            }
        }
        if let Some(write) = plan_not_found(contract, run_id, ingest_date, &not_found) {
            lake.put(&write.path, write.bytes.clone(), PutMode::Overwrite).await?;
            logs.push(format!(
                "tmdb movie details: {} not found on TMDB, quarantined in {}",
                not_found.len(),
                write.path
            ));
            writes.push(write);
        }
        counts = not_found_counts(done.not_found);
        logs.push(format!(
            "tmdb movie details: {} of {} distinct movie(s) landed, {} not found, {} failed{}",
            done.landed.len(),
            ids.len(),
            done.not_found,
            done.errors.len(),
            if over > 0 {
                format!(
                    "; {over} more not fetched (details.max_per_run = {})",
                    details.max_per_run
                )
            } else {
                String::new()
            }
        ));
        if done.already_landed > 0 {
            logs.push(format!(
                "{} movie detail(s) already in bronze from an earlier attempt of run {run_id}: kept",
                done.already_landed
            ));
        }
    }

    // Everything this run landed is durable now: announce it, list by list, then the details.
    let mut announced: Vec<String> = Vec::new();
    if let Some(publisher) = &settings.publisher {
        let groups = by_list
            .iter()
            .map(|(endpoint, range)| (endpoint.to_string(), &pages[range.clone()]))
            .chain([("movie details".to_string(), done.landed.as_slice())]);
        for (what, paths) in groups {
            if paths.is_empty() {
                continue;
            }
            match announce(publisher, paths).await {
                Ok(()) => announced.extend(paths.iter().cloned()),
                Err(e) => errors.push(format!(
                    "{what}: landed but not announced ({e}); the next run announces it"
                )),
            }
        }
    }
    let mut landed = pages.clone();
    landed.extend(done.landed.iter().cloned());
    let mut inputs: Vec<String> = settings
        .lists
        .lists
        .iter()
        .map(|l| format!("tmdb:{}", l.endpoint))
        .collect();
    if details_contract.is_some() {
        inputs.push("tmdb:movie/{id}".into());
    }
    let plan = Plan {
        run_id: run_id.to_string(),
        pipeline: PIPELINE.into(),
        date: ingest_date,
        inputs,
        writes,
        counts,
        contracts: details_contract
            .map(|c| [(c.name.clone(), c.version)].into())
            .unwrap_or_default(),
        ..Default::default()
    };
    if settings.publisher.is_some() {
        let record = AnnouncementRecord {
            landed: landed.clone(),
            announced: announced.clone(),
        };
        write_record(lake, &announcements_path(ingest_date, run_id), &record).await?;
    } else {
        logs.push("EVENTGRID_TOPIC_ENDPOINT is not set: pages landed, not announced".into());
    }
    let (_, manifest_path) = write_manifest(lake, plan, Default::default(), None, started_at, clock).await?;
    // Lists that could not be read or announced come first: they name the bigger loss.
    let list_errors = errors.len();
    let detail_errors = done.errors.len();
    errors.extend(done.errors);
    if list_errors > 0 {
        return Err(PullError::ListsFailed {
            failed: list_errors,
            total: settings.lists.lists.len(),
            manifest: manifest_path,
            errors,
        });
    }
    if !errors.is_empty() {
        return Err(PullError::DetailsFailed {
            failed: detail_errors,
            manifest: manifest_path,
            errors,
        });
    }
    logs.push(format!("retries left in the run's budget: {}", client.retries_left()));
    Ok(Pulled {
        manifest_path,
        pages,
        details: done.landed,
        not_found: done.not_found,
        already_landed,
        announced: announced.len() + reannounced,
        logs,
    })
}

enum DetailsError {
    Lake(LakeError),
    Token(TmdbError),
}

/// Fetches the details of `ids` (as many at once as the client has connections), lands each
/// one create-only with its sidecar, and collects the 404s TMDB itself answered. A refused
/// token stops everything; other failures (after the client's retries) are reported.
#[allow(clippy::too_many_arguments)]
async fn fetch_details(
    lake: &dyn Lake,
    client: &TmdbClient,
    settings: &PullSettings,
    run_id: &str,
    ingest_date: NaiveDate,
    ids: &[i64],
    writes: &mut Vec<PlannedWrite>,
    not_found: &mut Vec<NotFound>,
) -> Result<DetailsDone, DetailsError> {
    let query = settings.lists.details.query();
    let mut answers = futures::stream::iter(ids.iter().copied())
        .map(|id| {
            let query = &query;
            async move { (id, client.fetch_detail(id, query).await) }
        })
        .buffer_unordered(settings.client.max_connections.max(1));
    let mut fetched = Vec::new();
    let mut done = DetailsDone::default();
    while let Some((id, answer)) = answers.next().await {
        match answer {
            Ok(detail) => fetched.push(detail),
            // Dropping the stream cancels the requests in flight: no more calls with a bad token.
            Err(e @ TmdbError::InvalidToken { .. }) => return Err(DetailsError::Token(e)),
            Err(TmdbError::NotFound {
                api: Some(api), body, ..
            }) => not_found.push(NotFound {
                movie_id: id,
                body: String::from_utf8_lossy(&body).into_owned(),
                api,
            }),
            Err(e) => done.errors.push(e.to_string()),
        }
    }
    drop(answers);
    // Landed in id order, so that the manifest lists them the same way on every attempt.
    fetched.sort_by_key(|d| d.movie_id);
    for detail in &fetched {
        let path = bronze_detail_path(ingest_date, run_id, detail.movie_id);
        let meta = detail_sidecar(run_id, detail);
        if land_with_sidecar(lake, &path, detail.body.clone(), meta, writes)
            .await
            .map_err(DetailsError::Lake)?
        {
            done.already_landed += 1;
        }
        done.landed.push(path);
    }
    done.not_found = not_found.len();
    Ok(done)
}

/// The token was refused: nothing is announced. What did land is recorded as landed and not
/// announced, so that the next run with a good token announces it.
async fn refused_token(
    lake: &dyn Lake,
    settings: &PullSettings,
    date: NaiveDate,
    run_id: &str,
    landed: &[String],
    e: TmdbError,
) -> PullError {
    if settings.publisher.is_some() && !landed.is_empty() {
        let record = AnnouncementRecord {
            landed: landed.to_vec(),
            announced: Vec::new(),
        };
        if let Err(e) = write_record(lake, &announcements_path(date, run_id), &record).await {
            return e;
        }
    }
    PullError::InvalidToken(e)
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

/// The reference text when a setting still holds an App Service Key Vault reference
/// (`@Microsoft.KeyVault(...)`) instead of the secret it names; only the vault and secret part
/// is returned (a reference holds no secret).
pub fn unresolved_key_vault_reference(value: &str) -> Option<String> {
    let v = value.trim();
    let prefix = "@microsoft.keyvault(";
    v.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        .then(|| v.chars().take(200).collect())
}

/// The lists shipped with the binary, for when neither `TMDB_LISTS` nor `./tmdb_lists.toml` is
/// there (an installed binary without the repository beside it).
pub const EMBEDDED_LISTS: &str = include_str!("../../../../tmdb_lists.toml");

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("TMDB_API_TOKEN is not set (in Azure: a Key Vault reference to the TMDB read access token)")]
    NoToken,
    /// App Service resolves a Key Vault reference only when the app starts or its settings
    /// change (and every 24 hours): a secret set after that leaves the reference text itself.
    #[error(
        "TMDB_API_TOKEN is still an unresolved Key Vault reference ({0}): App Service has not read the secret. \
         Set the secret (az keyvault secret set), then restart the Function App (az functionapp restart) \
         and check the reference's status under Configuration; no request was sent to TMDB"
    )]
    UnresolvedKeyVaultReference(String),
    #[error("cannot read the TMDB lists file {file}: {message}")]
    Unreadable { file: String, message: String },
    #[error("cannot set up Event Grid publishing: {0}")]
    Publisher(String),
    #[error("TMDB lists refused: {0}")]
    Lists(#[from] movielake_core::sources::tmdb::lists::ListsConfigError),
}

impl PullSettings {
    /// `TMDB_API_TOKEN` (required), `TMDB_BASE_URL`, `TMDB_LISTS` (a file; default
    /// `./tmdb_lists.toml`, else the embedded copy).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`PullSettings::from_env`], with the settings read by `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let raw = var("TMDB_API_TOKEN").unwrap_or_default();
        if let Some(reference) = unresolved_key_vault_reference(&raw) {
            return Err(SettingsError::UnresolvedKeyVaultReference(reference));
        }
        let token = Token::new(&raw).ok_or(SettingsError::NoToken)?;
        let mut client = ClientConfig::default();
        if let Some(base) = var("TMDB_BASE_URL")
            && !base.trim().is_empty()
        {
            client.base_url = base.trim().to_string();
        }
        let file = var("TMDB_LISTS").filter(|f| !f.trim().is_empty()).or_else(|| {
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
        let publisher = match var("EVENTGRID_TOPIC_ENDPOINT") {
            Some(endpoint) if !endpoint.trim().is_empty() => {
                let user_assigned_id = var("AZURE_CLIENT_ID")
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
