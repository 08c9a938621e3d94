//! TMDB movie details (`GET /movie/{id}`): which ids a pull asks for, where a detail body lands
//! in bronze, the quarantine record of a detail TMDB does not have (HTTP 404, `status_code` 34),
//! and the pure plan that turns one bronze detail into `silver/tmdb/movie_details`.
//!
//! Detail payloads changed over the years (fields came and went): the contract types what it
//! names, a missing field is null and an unknown one is kept in `_rescued`. Nested values are
//! flattened here into the columns analysts query (genre ids and names, collection id, ...), and
//! anything that does not have the expected shape is handed to the contract as is, so that it
//! ends in quarantine with a reason naming the column instead of being dropped.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::contract::Contract;
use crate::contract::validate::{Reason, Rejection, Stage};
use crate::contract::value::{ColumnType, Value, json_kind};
use crate::output::manifest::{Counts, OutputKind};
use crate::output::naming::{quarantine_part, stable_id};
use crate::output::plan::{Plan, PlannedWrite, routed_writes};
use crate::output::silver::EncodeError;
use crate::routing::quarantine::{QuarantineRecord, SourcePointer, encode_jsonl};
use crate::routing::route::{Routed, RunContext, SourceRecord, quarantine, route};
use crate::sources::tmdb::api::{ApiError, parse_error, parse_list_page};

/// The contract (and manifest pipeline name) of movie details.
pub const MOVIE_DETAILS: &str = "tmdb_movie_details";
/// The quarantine rule of a detail TMDB answered with 404.
pub const NOT_FOUND_RULE: &str = "not_found";
/// More details than this in one run would outlast a Function's time limit at the API's rate.
pub const MAX_DETAILS_PER_RUN: u32 = 5_000;

/// `[details]` of `tmdb_lists.toml`: the details of the movies seen on the run's list pages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetailsConfig {
    pub enabled: bool,
    /// Distinct movie ids fetched per run at most, in the order the lists show them.
    pub max_per_run: u32,
    pub language: Option<String>,
}

impl Default for DetailsConfig {
    fn default() -> Self {
        // 200 requests are 5 s at the default 40 requests/s: the top of every list refreshed on
        // each run without making the run long or spending the API's allowance.
        DetailsConfig {
            enabled: true,
            max_per_run: 200,
            language: None,
        }
    }
}

impl DetailsConfig {
    /// Query parameters of a detail request (credentials are the client's).
    pub fn query(&self) -> Vec<(String, String)> {
        self.language
            .iter()
            .map(|l| ("language".to_string(), l.clone()))
            .collect()
    }

    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_DETAILS_PER_RUN).contains(&self.max_per_run) {
            return Err(format!(
                "details.max_per_run must be 1..={MAX_DETAILS_PER_RUN} (use enabled = false to fetch none)"
            ));
        }
        Ok(())
    }
}

/// The API endpoint of a movie's details.
pub fn detail_endpoint(movie_id: i64) -> String {
    format!("movie/{movie_id}")
}

/// The distinct movie ids of list page bodies, in the order given (lists, then pages, then
/// positions), at most `cap`; and how many more distinct ids there were beyond the cap. A body
/// that is not a list page, or an id that is not a positive integer, contributes nothing.
pub fn detail_ids<'a>(bodies: impl IntoIterator<Item = &'a [u8]>, cap: u32) -> (Vec<i64>, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::new();
    let mut over = 0;
    for body in bodies {
        let Ok(page) = parse_list_page(body) else { continue };
        for id in page
            .results
            .iter()
            .filter_map(|r| r.get("id").and_then(Json::as_i64))
            .filter(|id| *id > 0)
        {
            if seen.insert(id) {
                if ids.len() < cap as usize {
                    ids.push(id);
                } else {
                    over += 1;
                }
            }
        }
    }
    (ids, over)
}

/// What a bronze detail path says: `bronze/tmdb/movie/ingest_date=YYYY-MM-DD/run=<run_id>/id=<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BronzeDetail {
    pub path: String,
    pub ingest_date: NaiveDate,
    pub run_id: String,
    pub movie_id: i64,
}

pub fn bronze_detail_path(ingest_date: NaiveDate, run_id: &str, movie_id: i64) -> String {
    format!(
        "bronze/tmdb/movie/ingest_date={}/run={run_id}/id={movie_id}.json",
        ingest_date.format("%Y-%m-%d")
    )
}

/// The parsed path; a sidecar (`id=550.meta.json`) or anything else is refused.
pub fn parse_bronze_detail_path(path: &str) -> Result<BronzeDetail, String> {
    let usage = "expected bronze/tmdb/movie/ingest_date=YYYY-MM-DD/run=<run_id>/id=<movie id>.json";
    let rest = path.strip_prefix("bronze/tmdb/movie/").ok_or(usage)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let [date, run, id] = segments.as_slice() else {
        return Err(usage.into());
    };
    let ingest_date = date
        .strip_prefix("ingest_date=")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .ok_or(usage)?;
    let run_id = run
        .strip_prefix("run=")
        .filter(|r| !r.is_empty() && !r.starts_with('.'))
        .ok_or(usage)?;
    let movie_id = id
        .strip_prefix("id=")
        .and_then(|i| i.strip_suffix(".json"))
        // Digits only: `+5` or `05` would name the same movie under a second path.
        .filter(|i| !i.is_empty() && !i.starts_with('0') && i.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|i| i.parse::<i64>().ok())
        .ok_or(usage)?;
    Ok(BronzeDetail {
        path: path.to_string(),
        ingest_date,
        run_id: run_id.to_string(),
        movie_id,
    })
}

/// When a pull ran: its run id starts with its start time (`20240201T060000Z`, as
/// `pull_tmdb_lists` names runs), else the start of its ingest date. Derived, not read from a
/// clock, so that a retried run writes the same bytes.
pub fn run_time(run_id: &str, ingest_date: NaiveDate) -> DateTime<Utc> {
    run_id
        .get(..16)
        .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
        .map_or_else(
            || ingest_date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
            |t| t.and_utc(),
        )
}

/// A detail TMDB says it does not have.
#[derive(Debug, Clone, PartialEq)]
pub struct NotFound {
    pub movie_id: i64,
    /// TMDB's error body, as received.
    pub body: String,
    /// What TMDB said (`status_code` and `status_message`).
    pub api: ApiError,
}

/// The quarantine part of a pull's 404s (`quarantine/tmdb/movie_details/date=…/part-<id of the
/// run>.jsonl`), one record per movie in id order; `None` when there is none. The name and the
/// bytes derive from the run alone, so a retried run rewrites the same object.
pub fn plan_not_found(
    contract: &Contract,
    run_id: &str,
    ingest_date: NaiveDate,
    not_found: &[NotFound],
) -> Option<PlannedWrite> {
    if not_found.is_empty() {
        return None;
    }
    let mut sorted: Vec<&NotFound> = not_found.iter().collect();
    sorted.sort_by_key(|n| n.movie_id);
    sorted.dedup_by_key(|n| n.movie_id);
    let time = run_time(run_id, ingest_date);
    let records: Vec<QuarantineRecord> = sorted
        .iter()
        .map(|n| QuarantineRecord {
            dataset: contract.name.clone(),
            contract_version: contract.version,
            stage: Stage::Decode,
            reasons: vec![Reason::new(
                NOT_FOUND_RULE,
                None,
                format!("TMDB has no details for movie {} (HTTP 404, {})", n.movie_id, n.api),
            )],
            source: SourcePointer {
                object: format!("tmdb:{}", detail_endpoint(n.movie_id)),
                ..Default::default()
            },
            run_id: run_id.to_string(),
            time,
            raw: n.body.clone(),
        })
        .collect();
    Some(PlannedWrite {
        path: quarantine_part(
            contract,
            ingest_date,
            &stable_id(&format!("tmdb-details-not-found/{run_id}")),
        ),
        kind: OutputKind::Quarantine,
        rows: Some(records.len() as u64),
        bytes: encode_jsonl(&records).into(),
    })
}

/// Counts of a pull's 404s for its manifest: each one a record in, and in quarantine.
pub fn not_found_counts(n: usize) -> Counts {
    let n = n as u64;
    let mut counts = Counts {
        records_in: n,
        quarantined: n,
        ..Default::default()
    };
    if n > 0 {
        counts.quarantined_by_rule.insert(NOT_FOUND_RULE.into(), n);
    }
    counts
}

/// Why a body is not a movie's details.
fn not_a_movie(body: &[u8]) -> Option<String> {
    let root: Json = match serde_json::from_slice(body) {
        Ok(root) => root,
        Err(e) => return Some(format!("the body is not JSON: {e}")),
    };
    if let Some(api) = parse_error(body) {
        return Some(format!("the body is a TMDB error, not a movie: {api}"));
    }
    match &root {
        Json::Object(map) if map.contains_key("results") => Some("the body is a list page, not a movie".into()),
        Json::Object(map) if !map.contains_key("id") => Some("the body has no id: not a movie".into()),
        Json::Object(_) => None,
        other => Some(format!("expected a JSON object, got {}", json_kind(other))),
    }
}

/// Plans silver and quarantine for one bronze detail object. Everything derives from the path
/// and the bytes (lineage time is the pull's run time), so a redelivery plans the same writes.
pub fn plan_detail(contract: &Contract, bronze: &BronzeDetail, body: &[u8]) -> Result<Plan, EncodeError> {
    let ingested_at = run_time(&bronze.run_id, bronze.ingest_date);
    let part_id = stable_id(&bronze.path);
    let ctx = RunContext {
        run_id: format!("tmdb-{}-m{}-{part_id}", bronze.run_id, bronze.movie_id),
        ingested_at,
    };
    let mut logs = Vec::new();
    let pointer = SourcePointer::line(&bronze.path, 1);
    let raw = String::from_utf8_lossy(body).into_owned();
    let routed = match not_a_movie(body) {
        None => {
            let Ok(Json::Object(fields)) = serde_json::from_slice::<Json>(body) else {
                // not_a_movie has just parsed it as an object.
                return Ok(Plan::default());
            };
            if fields.get("id").and_then(Json::as_i64) != Some(bronze.movie_id) {
                logs.push(format!(
                    "{}: the body's id {} is not the requested movie {}; the row keeps the body's",
                    bronze.path,
                    fields.get("id").map_or_else(|| "(none)".into(), Json::to_string),
                    bronze.movie_id
                ));
            }
            let record = SourceRecord {
                raw,
                fields: Some(flatten(contract, fields)),
                metadata: vec![("snapshot_date", Value::Date(bronze.ingest_date))],
                pointer,
            };
            route(contract, [record], &ctx)
        }
        Some(why) => {
            // The whole body is the record, and it is not a movie.
            let rejection = Rejection {
                stage: Stage::Decode,
                reasons: vec![Reason::new("tmdb_movie", None, why)],
            };
            let mut routed = Routed::default();
            routed
                .quarantine
                .push(quarantine(contract, &ctx, SourceRecord::json(raw, pointer), rejection));
            routed
        }
    };
    let writes = routed_writes(contract, &routed, &ctx, &part_id, bronze.ingest_date, None)?;
    let counts = Counts::of(&routed);
    logs.insert(
        0,
        format!("tmdb movie {} details: {}", bronze.movie_id, counts.summary()),
    );
    Ok(Plan {
        run_id: ctx.run_id,
        pipeline: MOVIE_DETAILS.into(),
        date: bronze.ingest_date,
        inputs: vec![bronze.path.clone()],
        writes,
        counts,
        contracts: [(contract.name.clone(), contract.version)].into(),
        logs,
        ledger_updates: Default::default(),
        poison: None,
    })
}

/// A list of objects in a detail body → a list column of one key of each (and optionally a
/// second column of another key): `(field, column, key, Some((column, key)))`.
type NestedList = (
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);
const NESTED_LISTS: &[NestedList] = &[
    ("genres", "genre_ids", "id", Some(("genre_names", "name"))),
    ("production_companies", "production_company_ids", "id", None),
    ("production_countries", "production_country_codes", "iso_3166_1", None),
    ("spoken_languages", "spoken_language_codes", "iso_639_1", None),
];

/// A detail body's fields as the contract names them: `id` → `movie_id`; `genres` →
/// `genre_ids`/`genre_names`; `belongs_to_collection` → `collection_id`/`collection_name`;
/// production companies, countries and spoken languages → lists of their ids and codes; `""` in
/// a date column → null (TMDB's "unknown"). A nested value of another shape is passed on as
/// found, for the contract to refuse with the column's name.
fn flatten(contract: &Contract, mut fields: Map<String, Json>) -> Map<String, Json> {
    if !fields.contains_key("movie_id")
        && let Some(id) = fields.remove("id")
    {
        fields.insert("movie_id".into(), id);
    }
    for &(from, to, key, second) in NESTED_LISTS {
        if fields.contains_key(to) {
            continue;
        }
        let Some(value) = fields.remove(from) else { continue };
        let (first, other) = match &value {
            Json::Array(items) => {
                let pick = |key: &str| {
                    Json::Array(
                        items
                            .iter()
                            .map(|item| match item {
                                Json::Object(o) => o.get(key).cloned().unwrap_or(Json::Null),
                                // Not an object: left for the contract's type check to name.
                                other => other.clone(),
                            })
                            .collect(),
                    )
                };
                (pick(key), second.map(|(_, k)| pick(k)))
            }
            Json::Null => (Json::Null, second.map(|_| Json::Null)),
            other => (other.clone(), second.map(|_| other.clone())),
        };
        fields.insert(to.into(), first);
        if let (Some((name, _)), Some(v)) = (second, other) {
            fields.insert(name.into(), v);
        }
    }
    if let Some(collection) = fields.remove("belongs_to_collection") {
        let (id, name) = match &collection {
            Json::Object(c) => (
                c.get("id").cloned().unwrap_or(Json::Null),
                c.get("name").cloned().unwrap_or(Json::Null),
            ),
            Json::Null => (Json::Null, Json::Null),
            other => (other.clone(), Json::Null),
        };
        fields.insert("collection_id".into(), id);
        fields.insert("collection_name".into(), name);
    }
    // TMDB writes "" for an unknown date or IMDb id in some years, null in others.
    let blank_is_null = contract
        .columns
        .iter()
        .filter(|c| c.ty == ColumnType::Date || c.name == "imdb_id");
    for column in blank_is_null {
        if fields
            .get(&column.name)
            .and_then(Json::as_str)
            .is_some_and(|s| s.trim().is_empty())
        {
            fields.insert(column.name.clone(), Json::Null);
        }
    }
    fields
}
