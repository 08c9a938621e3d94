//! Event Grid events naming a bronze object, and the guard that decides whether we may read it.
//!
//! Two schemas arrive (Event Grid: `eventType`/`subject`/`data`/`dataVersion`; CloudEvents 1.0:
//! `specversion`/`type`/`source`/`subject`/`data`) and two event types: Storage's
//! `Microsoft.Storage.BlobCreated` (the blob named by `data.url`) and our own
//! `movielake.bronze.landed` (the subject is the lake path). An event is input from outside: the
//! guard only lets through a path inside the configured lake account, the `bronze` container and
//! a known prefix, so that an event can never make us fetch another URL or another container.

use serde_json::{Map, Value as Json};

use crate::contract::value::json_kind;
use crate::host::{HostError, Invocation};

pub const BLOB_CREATED: &str = "Microsoft.Storage.BlobCreated";
pub const BRONZE_LANDED: &str = "movielake.bronze.landed";
/// The only container events may name.
pub const BRONZE: &str = "bronze";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    EventGrid,
    CloudEvents,
}

/// What an event says, before the guard has looked at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeEvent {
    pub schema: Schema,
    pub id: Option<String>,
    pub event_type: String,
    pub subject: Option<String>,
    /// `data.url` of a BlobCreated event.
    pub url: Option<String>,
}

/// What a bronze object is, by its path: the parser `bronze_to_silver` runs on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BronzeKind {
    TmdbListPage,
    /// A movie detail body (`bronze/tmdb/movie/ingest_date=…/run=…/id=<id>.json`).
    TmdbMovieDetail,
    /// An IMDb dataset file (`bronze/imdb/<file>/ingest_date=…/<name>`), plain or gzipped.
    ImdbFile,
    /// A file of The Movies Dataset (`bronze/movies_dataset/ingest_date=…/<name>`).
    MoviesDatasetFile,
}

/// Bronze prefixes and their parsers. A source whose parser is not written yet is listed with
/// `None`, so its events are refused with a reason saying so rather than treated as unknown.
/// Adding IMDb or the movies dataset is one entry here and one arm where the kind is handled.
/// The first matching prefix wins: `tmdb/movie/ingest_date=` (details) before `tmdb/` (lists,
/// whose endpoint segments never hold `=`).
pub const BRONZE_ROUTES: &[(&str, Option<BronzeKind>)] = &[
    ("tmdb/movie/ingest_date=", Some(BronzeKind::TmdbMovieDetail)),
    ("tmdb/", Some(BronzeKind::TmdbListPage)),
    ("imdb/", Some(BronzeKind::ImdbFile)),
    ("movies_dataset/", Some(BronzeKind::MoviesDatasetFile)),
];

/// Why an event is not processed. None of these is worth a redelivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not an Event Grid or CloudEvents 1.0 event: {0}")]
    NotAnEvent(String),
    #[error("event type '{0}' is not handled (only {BLOB_CREATED} and {BRONZE_LANDED})")]
    UnhandledType(String),
    #[error("the event names no blob: {0}")]
    NoBlob(String),
    #[error("blob URL {0:?} is outside the configured lake account")]
    OtherAccount(String),
    #[error("blob URL {0:?} carries credentials (userinfo); refused")]
    Userinfo(String),
    #[error("blob URL {0:?} names a port the configured lake does not use")]
    Port(String),
    #[error("{0:?} is not in the '{BRONZE}' container")]
    OtherContainer(String),
    #[error("{path:?} is not a safe lake path: {why}")]
    UnsafePath { path: String, why: &'static str },
    #[error("subject {subject:?} and data.url {url:?} name different blobs")]
    Mismatch { subject: String, url: String },
    #[error("the local lake reads lake paths only; a blob URL ({0:?}) cannot be in it")]
    UrlOnLocalLake(String),
    #[error("{0:?} is under no known bronze prefix (tmdb/, imdb/, movies_dataset/)")]
    UnknownPrefix(String),
    #[error("{path:?}: no parser yet for bronze/{prefix} (comes with another issue); not processed")]
    NoParserYet { path: String, prefix: &'static str },
}

/// Reads the event of an Event Grid trigger (`Data.<binding>`, an object or a string holding it).
pub fn decode_invocation_event(inv: &Invocation, binding: &str) -> Result<Result<LakeEvent, Refusal>, HostError> {
    let data = inv
        .data(binding)
        .ok_or_else(|| HostError::Missing(format!("Data.{binding}")))?;
    Ok(decode_event(&data))
}

pub fn decode_event(value: &Json) -> Result<LakeEvent, Refusal> {
    let Json::Object(map) = value else {
        return Err(Refusal::NotAnEvent(format!(
            "expected an object, got {}",
            json_kind(value)
        )));
    };
    let text = |key: &str| map.get(key).and_then(Json::as_str).map(str::to_string);
    let (schema, type_key) = if map.contains_key("specversion") {
        match text("specversion").as_deref() {
            Some("1.0") => (Schema::CloudEvents, "type"),
            other => {
                return Err(Refusal::NotAnEvent(format!(
                    "unsupported CloudEvents specversion {other:?}"
                )));
            }
        }
    } else if map.contains_key("eventType") {
        (Schema::EventGrid, "eventType")
    } else {
        return Err(Refusal::NotAnEvent(
            "neither 'specversion' nor 'eventType' is present".into(),
        ));
    };
    let event_type = text(type_key).ok_or_else(|| Refusal::NotAnEvent(format!("'{type_key}' is not a string")))?;
    let data: Option<&Map<String, Json>> = map.get("data").and_then(Json::as_object);
    let url = data
        .and_then(|d| d.get("url"))
        .and_then(Json::as_str)
        .map(str::to_string);
    Ok(LakeEvent {
        schema,
        id: text("id"),
        event_type,
        subject: text("subject"),
        url,
    })
}

/// Where the lake is, as far as the guard is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeScope {
    /// `scheme://authority[/account]` of a blob lake (`MOVIELAKE_LAKE`), lowercased authority.
    Blob {
        scheme: String,
        authority: String,
        base_path: String,
    },
    /// A local folder: only our own events, naming lake paths, can refer to it.
    Local,
}

impl LakeScope {
    /// From `MOVIELAKE_LAKE` (`None`/a folder → local; `https://acct.blob.core.windows.net`, or
    /// Azurite's `http://127.0.0.1:10000/devstoreaccount1`).
    pub fn from_location(location: Option<&str>) -> LakeScope {
        let location = location.map(str::trim).unwrap_or("");
        let Some((scheme, rest)) = location.split_once("://") else {
            return LakeScope::Local;
        };
        if !matches!(scheme, "http" | "https") {
            return LakeScope::Local;
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        LakeScope::Blob {
            scheme: scheme.to_string(),
            authority: authority.to_ascii_lowercase(),
            base_path: path.trim_matches('/').to_string(),
        }
    }
}

/// A bronze object the event may make us read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Lake path, `bronze/...`.
    pub path: String,
    pub kind: BronzeKind,
}

/// Decides whether an event names a readable bronze object; nothing is fetched before this.
pub fn admit(scope: &LakeScope, event: &LakeEvent) -> Result<Admitted, Refusal> {
    let path = match event.event_type.as_str() {
        BRONZE_LANDED => {
            let subject = event
                .subject
                .as_deref()
                .ok_or_else(|| Refusal::NoBlob("no subject".into()))?;
            check_lake_path(subject)?
        }
        BLOB_CREATED => {
            let url = event
                .url
                .as_deref()
                .ok_or_else(|| Refusal::NoBlob("BlobCreated without data.url".into()))?;
            let from_url = path_of_url(scope, url)?;
            if let Some(subject) = &event.subject {
                let from_subject = path_of_subject(subject)?;
                if from_subject != from_url {
                    return Err(Refusal::Mismatch {
                        subject: subject.clone(),
                        url: url.to_string(),
                    });
                }
            }
            from_url
        }
        other => return Err(Refusal::UnhandledType(other.to_string())),
    };
    let kind = classify(&path)?;
    Ok(Admitted { path, kind })
}

/// The parser for a bronze path, by its prefix.
pub fn classify(path: &str) -> Result<BronzeKind, Refusal> {
    let key = path.strip_prefix("bronze/").unwrap_or(path);
    for (prefix, kind) in BRONZE_ROUTES {
        if key.starts_with(prefix) {
            return kind.ok_or(Refusal::NoParserYet {
                path: path.to_string(),
                prefix,
            });
        }
    }
    Err(Refusal::UnknownPrefix(path.to_string()))
}

/// `https://<account host>[/<account>]/bronze/<key>` → `bronze/<key>`.
fn path_of_url(scope: &LakeScope, url: &str) -> Result<String, Refusal> {
    let LakeScope::Blob {
        scheme,
        authority,
        base_path,
    } = scope
    else {
        return Err(Refusal::UrlOnLocalLake(url.to_string()));
    };
    let other = || Refusal::OtherAccount(url.to_string());
    let (url_scheme, rest) = url.split_once("://").ok_or_else(other)?;
    if !url_scheme.eq_ignore_ascii_case(scheme) {
        return Err(other());
    }
    let (url_authority, path) = rest.split_once('/').ok_or_else(other)?;
    if url_authority.contains('@') {
        return Err(Refusal::Userinfo(url.to_string()));
    }
    let url_authority = url_authority.to_ascii_lowercase();
    if url_authority != *authority && !same_account_dfs(&url_authority, authority) {
        let host = |a: &str| a.rsplit_once(':').map_or(a.to_string(), |(h, _)| h.to_string());
        if host(&url_authority) == host(authority) {
            return Err(Refusal::Port(url.to_string()));
        }
        return Err(other());
    }
    let path = if base_path.is_empty() {
        path
    } else {
        path.strip_prefix(base_path.as_str())
            .and_then(|p| p.strip_prefix('/'))
            .ok_or_else(other)?
    };
    check_lake_path(path)
}

/// On an ADLS Gen2 account, BlobCreated from the DFS API (`FlushWithClose`) names the blob by
/// the account's `dfs` endpoint: the same account as its `blob` endpoint, and the same blob.
fn same_account_dfs(url_authority: &str, lake_authority: &str) -> bool {
    match (
        url_authority.strip_suffix(".dfs.core.windows.net"),
        lake_authority.strip_suffix(".blob.core.windows.net"),
    ) {
        (Some(a), Some(b)) => a == b && !a.is_empty(),
        _ => false,
    }
}

/// `/blobServices/default/containers/<c>/blobs/<key>` (the leading `/` is missing in some
/// CloudEvents samples) → `<c>/<key>`.
fn path_of_subject(subject: &str) -> Result<String, Refusal> {
    let rest = subject
        .trim_start_matches('/')
        .strip_prefix("blobServices/default/containers/")
        .ok_or_else(|| Refusal::NoBlob(format!("subject {subject:?} is not a blob subject")))?;
    let (container, key) = rest
        .split_once("/blobs/")
        .ok_or_else(|| Refusal::NoBlob(format!("subject {subject:?} is not a blob subject")))?;
    check_lake_path(&format!("{container}/{key}"))
}

/// A lake path we may read: `bronze/...`, plain segments of a small alphabet. Our bronze names
/// only use these characters, so anything else (percent-encoding, backslashes, `..`) is a trick
/// or a mistake, and refusing it beats decoding it.
pub fn check_lake_path(path: &str) -> Result<String, Refusal> {
    let unsafe_path = |why| Refusal::UnsafePath {
        path: path.to_string(),
        why,
    };
    if path.contains('%') {
        return Err(unsafe_path("percent-encoded characters are not accepted"));
    }
    if path.contains('\\') {
        return Err(unsafe_path("backslashes are not accepted"));
    }
    if path.contains(['?', '#']) {
        return Err(unsafe_path("a query or fragment is not accepted"));
    }
    if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '=' | '.' | '-'))
    {
        return Err(unsafe_path("only ASCII letters, digits and / _ = . - are accepted"));
    }
    if path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(unsafe_path("empty, '.' or '..' segments are not accepted"));
    }
    match path.split_once('/') {
        Some((BRONZE, _)) => Ok(path.to_string()),
        _ => Err(Refusal::OtherContainer(path.to_string())),
    }
}
