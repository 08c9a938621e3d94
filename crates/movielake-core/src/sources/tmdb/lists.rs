//! TMDB API v3 bodies: list pages and error bodies as typed values, the bronze page path, and the
//! pure plan that turns one bronze list page into `silver/tmdb/list_entries` (and quarantine).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::contract::Contract;
use crate::contract::validate::{Reason, Rejection, Stage};
use crate::contract::value::{ColumnType, Value, json_kind};
use crate::output::manifest::Counts;
use crate::output::naming::stable_id;
use crate::output::silver::EncodeError;
use crate::pipelines::{Plan, routed_writes};
use crate::routing::quarantine::SourcePointer;
use crate::routing::route::{Routed, RunContext, SourceRecord, quarantine, route};
use crate::sources::tmdb::movies::{self, MovieRow};

/// The contract (and manifest pipeline name) of list entries.
pub const LIST_ENTRIES: &str = "tmdb_list_entries";
/// TMDB serves no page past this one, whatever `total_pages` says (`status_code` 22).
pub const MAX_PAGE: u32 = 500;

/// `dates` of `movie/now_playing` and `movie/upcoming`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Dates {
    pub maximum: Option<String>,
    pub minimum: Option<String>,
}

/// One page of a TMDB list. Results stay JSON objects: the contract types them, so a field that
/// changed across years is a reason in quarantine, not a parse failure of the whole page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub page: u32,
    pub total_pages: u32,
    pub total_results: u64,
    pub dates: Option<Dates>,
    pub results: Vec<Json>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PageError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is a TMDB error, not a list page: {0}")]
    Api(ApiError),
    #[error("the body is not a TMDB list page: {0}")]
    NotAListPage(String),
}

/// A TMDB error body: `{"status_code", "status_message", "success"?}` or `{"errors": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("TMDB status_code {code}: {message}")]
    Status { code: i64, message: String },
    #[error("TMDB errors: {}", .0.join("; "))]
    Errors(Vec<String>),
}

impl ApiError {
    /// TMDB `status_code` 7 (invalid API key) and 3/10 (authentication failed/suspended).
    pub fn is_auth(&self) -> bool {
        matches!(self, ApiError::Status { code: 3 | 7 | 10, .. })
    }
}

/// Reads a TMDB error body; `None` when the body is not one (the caller then reports the HTTP
/// status alone).
pub fn parse_error(body: &[u8]) -> Option<ApiError> {
    let Ok(Json::Object(map)) = serde_json::from_slice::<Json>(body) else {
        return None;
    };
    if let Some(Json::Array(errors)) = map.get("errors") {
        let texts = errors
            .iter()
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
            .collect();
        return Some(ApiError::Errors(texts));
    }
    let code = map.get("status_code").and_then(Json::as_i64)?;
    // A success response never carries a status_code; a `success: true` one is not an error.
    if map.get("success").and_then(Json::as_bool) == Some(true) {
        return None;
    }
    let message = map
        .get("status_message")
        .and_then(Json::as_str)
        .unwrap_or("(no status_message)")
        .to_string();
    Some(ApiError::Status { code, message })
}

/// Parses a list page. Only the paging fields and `results` must be there and typed; the rest
/// of the body (new top-level keys) is ignored here and kept in bronze.
pub fn parse_list_page(body: &[u8]) -> Result<ListPage, PageError> {
    let root: Json = serde_json::from_slice(body).map_err(|e| PageError::NotJson(e.to_string()))?;
    if let Some(api) = parse_error(body) {
        return Err(PageError::Api(api));
    }
    let Json::Object(mut map) = root else {
        return Err(PageError::NotAListPage(format!(
            "expected a JSON object, got {}",
            json_kind(&root)
        )));
    };
    let number = |map: &Map<String, Json>, key: &str| -> Result<u64, PageError> {
        match map.get(key) {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| PageError::NotAListPage(format!("{key} is {}, not a count", json_kind(v)))),
            None => Err(PageError::NotAListPage(format!("no {key}"))),
        }
    };
    let page = u32::try_from(number(&map, "page")?).map_err(|_| PageError::NotAListPage("page is too large".into()))?;
    // total_pages/total_results are reported, not trusted: a missing one reads as this page.
    let total_pages = number(&map, "total_pages").map_or(page, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let total_results = number(&map, "total_results").unwrap_or(0);
    let results = match map.remove("results") {
        Some(Json::Array(items)) => items,
        Some(other) => {
            return Err(PageError::NotAListPage(format!(
                "results is {}, not an array",
                json_kind(&other)
            )));
        }
        None => return Err(PageError::NotAListPage("no results array".into())),
    };
    let dates = map.remove("dates").and_then(|d| serde_json::from_value(d).ok());
    Ok(ListPage {
        page,
        total_pages,
        total_results,
        dates,
        results,
    })
}

/// What a bronze TMDB page path says about the page:
/// `bronze/tmdb/<endpoint>/ingest_date=YYYY-MM-DD/run=<run_id>/page=NNNN.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BronzePage {
    pub path: String,
    /// `movie/popular`, `trending/movie/day`, ...
    pub endpoint: String,
    pub ingest_date: NaiveDate,
    pub run_id: String,
    pub page: u32,
}

/// The bronze path of a page; `endpoint` is already a safe relative path (from configuration).
pub fn bronze_page_path(endpoint: &str, ingest_date: NaiveDate, run_id: &str, page: u32) -> String {
    format!(
        "bronze/tmdb/{}/ingest_date={}/run={run_id}/page={page:04}.json",
        endpoint.trim_matches('/'),
        ingest_date.format("%Y-%m-%d")
    )
}

pub fn parse_bronze_page_path(path: &str) -> Result<BronzePage, String> {
    let usage = "expected bronze/tmdb/<endpoint>/ingest_date=YYYY-MM-DD/run=<run_id>/page=NNNN.json";
    let rest = path.strip_prefix("bronze/tmdb/").ok_or(usage)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let [endpoint @ .., date, run, page] = segments.as_slice() else {
        return Err(usage.into());
    };
    if endpoint.is_empty()
        || endpoint
            .iter()
            .any(|s| s.is_empty() || s.contains('=') || s.starts_with('.'))
    {
        return Err(usage.into());
    }
    let ingest_date = date
        .strip_prefix("ingest_date=")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .ok_or(usage)?;
    let run_id = run.strip_prefix("run=").filter(|r| !r.is_empty()).ok_or(usage)?;
    let page = page
        .strip_prefix("page=")
        .and_then(|p| p.strip_suffix(".json"))
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|p| (1..=MAX_PAGE).contains(p))
        .ok_or(usage)?;
    Ok(BronzePage {
        path: path.to_string(),
        endpoint: endpoint.join("/"),
        ingest_date,
        run_id: run_id.to_string(),
        page,
    })
}

/// Plans silver and quarantine for one bronze list page. Everything derives from the bronze
/// path and bytes (lineage time is the start of the ingest date), so a second run over the same
/// object plans the same names and bytes.
pub fn plan(contract: &Contract, bronze: &BronzePage, body: &[u8]) -> Result<Plan, EncodeError> {
    plan_with_repeats(contract, bronze, body, &[])
}

/// Like [`plan`]; `repeated` are the movie ids this page shares with earlier pages of the same
/// list and run (lists shift while they are paged): those entries are counted as duplicates,
/// not written again. The pull computes them ([`repeated_ids`]) and keeps them in the sidecar.
pub fn plan_with_repeats(
    contract: &Contract,
    bronze: &BronzePage,
    body: &[u8],
    repeated: &[i64],
) -> Result<Plan, EncodeError> {
    plan_page(contract, bronze, body, repeated).map(|(plan, _)| plan)
}

/// Like [`plan_with_repeats`], plus the page's rows for `silver/tmdb/movies`, by bucket path
/// (merged into the buckets by the app with a compare-and-swap: [`crate::sources::tmdb::movies::merge`]).
pub fn plan_page(
    contract: &Contract,
    bronze: &BronzePage,
    body: &[u8],
    repeated: &[i64],
) -> Result<(Plan, BTreeMap<String, Vec<MovieRow>>), EncodeError> {
    let ingested_at: DateTime<Utc> = bronze.ingest_date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let part_id = stable_id(&bronze.path);
    let ctx = RunContext {
        run_id: format!("tmdb-{}-p{:04}-{part_id}", bronze.run_id, bronze.page),
        ingested_at,
    };
    let mut logs = Vec::new();
    let routed = match parse_list_page(body) {
        Ok(page) => {
            if page.page != bronze.page {
                logs.push(format!(
                    "{}: the body says page {} but the path says page {}; rows use the path",
                    bronze.path, page.page, bronze.page
                ));
            }
            let mut repeats = 0;
            let records: Vec<SourceRecord> = page
                .results
                .into_iter()
                .enumerate()
                .filter(|(_, item)| {
                    let repeat = item
                        .get("id")
                        .and_then(Json::as_i64)
                        .is_some_and(|id| repeated.contains(&id));
                    repeats += u64::from(repeat);
                    !repeat
                })
                .map(|(i, item)| entry_record(contract, bronze, i, item))
                .collect();
            let mut routed = route(contract, records, &ctx);
            routed.duplicates_dropped += repeats;
            if repeats > 0 {
                logs.push(format!(
                    "{repeats} movie(s) already on an earlier page of this list: counted, not repeated"
                ));
            }
            routed
        }
        Err(e) => {
            // The whole body is one record in quarantine: it is the unit that failed.
            let record = SourceRecord::json(String::from_utf8_lossy(body), SourcePointer::line(&bronze.path, 1));
            let rejection = Rejection {
                stage: Stage::Decode,
                reasons: vec![Reason::new("tmdb_list_page", None, e.to_string())],
            };
            let mut routed = Routed::default();
            routed.quarantine.push(quarantine(contract, &ctx, record, rejection));
            routed
        }
    };

    let mut writes = Vec::new();
    writes.extend(routed_writes(contract, &routed, &ctx, &part_id, bronze.ingest_date)?);
    let movies = movies::updates(contract, bronze, &routed.silver, &ctx.run_id, ingested_at);
    let counts = Counts::of(&routed);
    logs.insert(
        0,
        format!("tmdb {} page {}: {}", bronze.endpoint, bronze.page, counts.summary()),
    );
    let plan = Plan {
        run_id: ctx.run_id,
        pipeline: LIST_ENTRIES.into(),
        date: bronze.ingest_date,
        inputs: vec![bronze.path.clone()],
        writes,
        counts,
        contracts: [(contract.name.clone(), contract.version)].into(),
        logs,
        ledger_updates: Default::default(),
        poison: None,
    };
    Ok((plan, movies))
}

/// One result of a page as a record: `id` becomes `movie_id`, `""` in a date column becomes
/// null (TMDB's way of saying "unknown"), and list/date/page/position come from the path.
fn entry_record(contract: &Contract, bronze: &BronzePage, index: usize, item: Json) -> SourceRecord {
    let position = index + 1;
    let raw = item.to_string();
    let fields = match item {
        Json::Object(mut fields) => {
            if !fields.contains_key("movie_id")
                && let Some(id) = fields.remove("id")
            {
                fields.insert("movie_id".into(), id);
            }
            for column in contract.columns.iter().filter(|c| c.ty == ColumnType::Date) {
                if fields
                    .get(&column.name)
                    .and_then(Json::as_str)
                    .is_some_and(|s| s.trim().is_empty())
                {
                    fields.insert(column.name.clone(), Json::Null);
                }
            }
            Some(fields)
        }
        // Not an object: the contract check reports it (decode stage) from the raw text.
        _ => None,
    };
    SourceRecord {
        raw,
        fields,
        metadata: vec![
            ("list", Value::String(bronze.endpoint.clone())),
            ("snapshot_date", Value::Date(bronze.ingest_date)),
            ("page", Value::Int32(bronze.page as i32)),
            ("position", Value::Int32(i32::try_from(position).unwrap_or(i32::MAX))),
        ],
        pointer: SourcePointer {
            object: bronze.path.clone(),
            row: Some(position as u64),
            ..Default::default()
        },
    }
}

/// For each page body of one list run, in page order, the movie ids already seen on an earlier
/// page. A body that is not a list page contributes nothing.
pub fn repeated_ids(bodies: &[&[u8]]) -> Vec<Vec<i64>> {
    let mut seen = std::collections::HashSet::new();
    bodies
        .iter()
        .map(|body| {
            let ids: Vec<i64> = parse_list_page(body)
                .map(|p| {
                    p.results
                        .iter()
                        .filter_map(|r| r.get("id").and_then(Json::as_i64))
                        .collect()
                })
                .unwrap_or_default();
            let mut repeated: Vec<i64> = ids.iter().copied().filter(|id| seen.contains(id)).collect();
            seen.extend(ids);
            repeated.sort_unstable();
            repeated.dedup();
            repeated
        })
        .collect()
}

/// The last page to request: `min(total_pages, limit, 500)`, at least 1 (page 1 is how we learn
/// `total_pages`).
pub fn last_page(total_pages: u32, limit: u32) -> u32 {
    total_pages.min(limit).clamp(1, MAX_PAGE)
}

/// One list to pull (`tmdb_lists.toml`, `[[lists]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    /// `movie/popular`, `trending/movie/day`, `discover/movie`, ...
    pub endpoint: String,
    /// Pages to read at most (never past 500).
    #[serde(default = "default_pages")]
    pub pages: u32,
    pub language: Option<String>,
    pub region: Option<String>,
    /// Extra query parameters (`discover/movie`: `sort_by`, `with_genres`, ...).
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
}

fn default_pages() -> u32 {
    1
}

impl ListSpec {
    /// Query parameters in a stable order, `page` excluded.
    pub fn query(&self) -> Vec<(String, String)> {
        let mut q: Vec<(String, String)> = self.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        q.extend(self.language.iter().map(|l| ("language".to_string(), l.clone())));
        q.extend(self.region.iter().map(|r| ("region".to_string(), r.clone())));
        q.sort();
        q
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListsConfig {
    pub lists: Vec<ListSpec>,
    /// `[details]`: the details of the movies on this run's pages (on by default).
    #[serde(default)]
    pub details: crate::sources::tmdb::details::DetailsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ListsConfigError {
    pub file: String,
    pub message: String,
}

impl ListsConfig {
    /// Parses and checks `tmdb_lists.toml`. An endpoint becomes a URL path and a bronze path,
    /// so only lowercase segments are allowed; keys that carry credentials are refused (the
    /// token travels in a header, never in a URL or in bronze).
    pub fn from_toml(file: &str, text: &str) -> Result<Self, ListsConfigError> {
        let err = |message: String| ListsConfigError {
            file: file.to_string(),
            message,
        };
        let config: ListsConfig = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        config.details.check().map_err(err)?;
        for list in &config.lists {
            let ok_segment = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !list.endpoint.split('/').all(ok_segment) {
                return Err(err(format!(
                    "endpoint {:?} must be lowercase segments like movie/popular",
                    list.endpoint
                )));
            }
            if !(1..=MAX_PAGE).contains(&list.pages) {
                return Err(err(format!("{}: pages must be 1..=500", list.endpoint)));
            }
            if let Some(key) = list
                .params
                .keys()
                .find(|k| matches!(k.as_str(), "api_key" | "page" | "session_id" | "access_token"))
            {
                return Err(err(format!(
                    "{}: parameter '{key}' is not allowed here (paging and credentials are the client's)",
                    list.endpoint
                )));
            }
        }
        Ok(config)
    }
}
