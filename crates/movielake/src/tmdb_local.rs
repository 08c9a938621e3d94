//! The TMDB flow of `movielake run`: with a token it calls the real API; without one it serves
//! the project's own sample list pages from a local HTTP server on 127.0.0.1 (and says so).
//! Either way the binary stands in for the Functions host: it invokes `pull_tmdb_lists` and then
//! hands every landed page to `bronze_to_silver` over the same host-shaped HTTP contract.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use movielake_core::host::InvocationResponse;
use movielake_core::manifest::{Counts, OutputKind, RunManifest};
use movielake_core::tmdb::ListsConfig;
use serde_json::json;

use crate::handler::{AppState, call};
use crate::pipelines::tmdb_lists::PullSettings;
use crate::tmdb::{ClientConfig, Token};

/// The bearer token the local sample server accepts (it guards nothing: it is not a secret).
const SAMPLE_TOKEN: &str = "movielake-local-sample";
/// Lists served by the sample server: every shape TMDB has (with and without `dates`).
const SAMPLE_LISTS: &str = "[[lists]]\nendpoint = \"movie/popular\"\npages = 3\n\n\
[[lists]]\nendpoint = \"movie/now_playing\"\npages = 2\n\n[[lists]]\nendpoint = \"trending/movie/week\"\npages = 2\n";
const SAMPLE_TOTAL_PAGES: u32 = 3;

#[derive(Debug, Default)]
pub struct TmdbRunSummary {
    pub pages: usize,
    pub counts: Counts,
    pub logs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TmdbRunError {
    #[error("cannot start the local TMDB sample server: {0}")]
    Serve(std::io::Error),
    #[error("{function} failed: {message}")]
    Function { function: &'static str, message: String },
    #[error("{path}: unreadable run manifest: {message}")]
    Manifest { path: String, message: String },
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
}

/// Runs pull → bronze → silver once: the real API when `TMDB_API_TOKEN` is set, else the
/// local sample server.
pub async fn run_tmdb(
    state: &AppState,
    now: DateTime<Utc>,
    progress: &dyn Fn(&str),
) -> Result<TmdbRunSummary, TmdbRunError> {
    let mut _sample_server = None;
    let real = std::env::var("TMDB_API_TOKEN")
        .ok()
        .and_then(|t| Token::new(&t))
        .is_some();
    let settings = match real {
        true => {
            progress("TMDB: TMDB_API_TOKEN is set, calling the real API");
            PullSettings::from_env().map_err(|e| TmdbRunError::Function {
                function: "pull_tmdb_lists",
                message: e.to_string(),
            })?
        }
        false => {
            let (base, stop) = serve_samples().await.map_err(TmdbRunError::Serve)?;
            progress(&format!(
                "TMDB: TMDB_API_TOKEN is not set, serving the project's sample list pages from {base}"
            ));
            _sample_server = Some(stop);
            PullSettings {
                token: Token::new(SAMPLE_TOKEN).ok_or(TmdbRunError::Function {
                    function: "pull_tmdb_lists",
                    message: "empty sample token".into(),
                })?,
                client: ClientConfig {
                    base_url: base,
                    ..ClientConfig::default()
                },
                lists: sample_lists(),
                publisher: None,
            }
        }
    };
    let state = state.clone().with_tmdb(settings);
    let timer = json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": "pull_tmdb_lists", "UtcNow": now.to_rfc3339_opts(SecondsFormat::Millis, true), "RandGuid": "local"}}
    });
    let pulled = invoke(&state, "pull_tmdb_lists", &timer).await?;
    let manifest = manifest_of(&state, &pulled).await?;
    let pages: Vec<String> = manifest
        .outputs
        .iter()
        .filter(|o| o.kind == OutputKind::Bronze && !o.path.ends_with(".meta.json"))
        .map(|o| o.path.clone())
        .collect();
    let mut summary = TmdbRunSummary {
        pages: pages.len(),
        logs: pulled.logs,
        ..Default::default()
    };
    for path in &pages {
        let event = json!({"specversion": "1.0", "type": "movielake.bronze.landed", "source": "movielake/run",
                           "id": movielake_core::naming::stable_id(path), "subject": path});
        let request = json!({"Data": {"event": event.to_string()}, "Metadata": {}});
        let response = invoke(&state, "bronze_to_silver", &request).await?;
        if let Ok(m) = manifest_of(&state, &response).await {
            summary.counts.add(&m.counts);
        }
        summary.logs.extend(response.logs);
    }
    Ok(summary)
}

fn sample_lists() -> ListsConfig {
    ListsConfig::from_toml("sample lists", SAMPLE_LISTS).unwrap_or(ListsConfig { lists: Vec::new() })
}

/// Through the handler's one entry point, with a host-shaped body (what `serve` receives).
async fn invoke(
    state: &AppState,
    function: &'static str,
    body: &serde_json::Value,
) -> Result<InvocationResponse, TmdbRunError> {
    call(state, function, body.to_string().as_bytes())
        .await
        .map_err(|e| TmdbRunError::Function {
            function,
            message: e.to_string(),
        })
}

async fn manifest_of(state: &AppState, response: &InvocationResponse) -> Result<RunManifest, TmdbRunError> {
    let path = response
        .logs
        .iter()
        .find_map(|l| l.strip_prefix("manifest "))
        .ok_or_else(|| TmdbRunError::Manifest {
            path: "(none)".into(),
            message: format!("no manifest in the logs: {:?}", response.logs),
        })?;
    let object = state.lake.get(path).await?;
    serde_json::from_slice(&object.bytes).map_err(|e| TmdbRunError::Manifest {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// Serves [`sample_page`] on an ephemeral 127.0.0.1 port until the sender is dropped.
async fn serve_samples() -> std::io::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/3", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = Router::new().fallback(answer).with_state(Arc::new(()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((base, stop))
}

async fn answer(State(_): State<Arc<()>>, uri: Uri, headers: HeaderMap) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SAMPLE_TOKEN}")) {
        let body =
            r#"{"status_code":7,"status_message":"Invalid API key: You must be granted a valid key.","success":false}"#;
        return (StatusCode::UNAUTHORIZED, body).into_response();
    }
    let page = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .unwrap_or(1);
    let endpoint = uri.path().trim_start_matches("/3/");
    (
        [("content-type", "application/json;charset=utf-8")],
        sample_page(endpoint, page).to_string(),
    )
        .into_response()
}

/// A made-up list page in TMDB's shape, deterministic per endpoint and page. It carries the
/// quirks of real pages: an empty `release_date`, a missing `video`, `dates` on now_playing.
pub fn sample_page(endpoint: &str, page: u32) -> serde_json::Value {
    let seed = movielake_core::naming::stable_id(endpoint);
    let offset = u64::from_str_radix(&seed[..4], 16).unwrap_or(0);
    let results: Vec<serde_json::Value> = (0..20u64)
        .map(|i| {
            let id = 1000 + offset + u64::from(page) * 20 + i;
            let mut movie = json!({
                "adult": false,
                "backdrop_path": format!("/sample-backdrop-{id}.jpg"),
                "genre_ids": [18 + (i % 3) * 10, 35],
                "id": id,
                "original_language": if i % 4 == 0 { "fr" } else { "en" },
                "original_title": format!("Sample movie {id}"),
                "overview": "A movie made up for movielake's local run.",
                "popularity": 1000.0 / (1.0 + (u64::from(page) * 20 + i) as f64),
                "poster_path": format!("/sample-poster-{id}.jpg"),
                "release_date": if i == 7 { String::new() } else { format!("20{:02}-0{}-1{}", 10 + i, 1 + i % 9, i % 10) },
                "title": format!("Sample movie {id}"),
                "video": false,
                "vote_average": (i % 10) as f64 * 0.9,
                "vote_count": i * 37,
            });
            if i == 11
                && let Some(m) = movie.as_object_mut()
            {
                m.remove("video");
            }
            movie
        })
        .collect();
    let mut body = json!({
        "page": page,
        "results": results,
        "total_pages": SAMPLE_TOTAL_PAGES,
        "total_results": SAMPLE_TOTAL_PAGES * 20,
    });
    if endpoint.ends_with("now_playing") || endpoint.ends_with("upcoming") {
        body["dates"] = json!({"maximum": "2024-02-28", "minimum": "2024-01-15"});
    }
    body
}
