//! TMDB list pages: the pure plan that turns one bronze list page into
//! `silver/tmdb/list_entries` (and quarantine), and the lists to pull (`tmdb_lists.toml`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::contract::Contract;
use crate::contract::validate::{Reason, Rejection, Stage};
use crate::contract::value::{ColumnType, Value};
use crate::output::manifest::Counts;
use crate::output::naming::stable_id;
use crate::output::plan::{Plan, routed_writes};
use crate::output::silver::EncodeError;
use crate::routing::quarantine::SourcePointer;
use crate::routing::route::{Routed, RunContext, SourceRecord, quarantine, route};
use crate::sources::tmdb::api::{BronzePage, MAX_PAGE, parse_list_page};
use crate::sources::tmdb::details::DetailsConfig;
use crate::sources::tmdb::movies::{self, MovieRow};

/// The contract (and manifest pipeline name) of list entries.
pub const LIST_ENTRIES: &str = "tmdb_list_entries";

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
    writes.extend(routed_writes(
        contract,
        &routed,
        &ctx,
        &part_id,
        bronze.ingest_date,
        None,
    )?);
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
    pub details: DetailsConfig,
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
