//! The TMDB wire types every part of a pull shares: list pages and error bodies as typed values,
//! and the bronze path of a page. Imports none of lists, details or movies.

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::contract::value::json_kind;

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
