//! The local TMDB stand-in of `movielake run` (used without TMDB_API_TOKEN): the project's own
//! sample list pages from a local HTTP server on 127.0.0.1, and movie details from the real TMDB
//! responses in `../shared/fixtures/tmdb` when that folder is there: Fight Club (550) for its
//! id, TMDB's 404 body for every other id.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use movielake_core::sources::tmdb::lists::ListsConfig;
use serde_json::json;

/// The bearer token the local sample server accepts (it guards nothing: it is not a secret).
pub const SAMPLE_TOKEN: &str = "movielake-local-sample";
/// Lists served by the sample server: every shape TMDB has (with and without `dates`).
/// Details of the first five movies: Fight Club, whose details the server has, and four it
/// answers with 404 (quarantined), as TMDB does for a movie removed since it was listed.
const SAMPLE_LISTS: &str = "[[lists]]\nendpoint = \"movie/popular\"\npages = 3\n\n\
[[lists]]\nendpoint = \"movie/now_playing\"\npages = 2\n\n[[lists]]\nendpoint = \"trending/movie/week\"\npages = 2\n\n\
[details]\nmax_per_run = 5\n";
/// The movie whose real details the sample server serves; first on the sample popular list.
pub const SAMPLE_DETAIL_ID: i64 = 550;
const DETAIL_FIXTURE: &str = "movie_details/550_fight_club_2024-02_jdrouet.json";
const NOT_FOUND_FIXTURE: &str = "errors/34_not_found_jdrouet.json";
/// TMDB's 404 for a movie it does not have, as the API sends it today; served when the real
/// captured body is not at hand.
const NOT_FOUND_BODY: &str =
    r#"{"success":false,"status_code":34,"status_message":"The resource you requested could not be found."}"#;
const SAMPLE_TOTAL_PAGES: u32 = 3;

/// The lists to pull from the sample server.
pub fn sample_lists() -> ListsConfig {
    ListsConfig::from_toml("sample lists", SAMPLE_LISTS).unwrap_or_default()
}

/// A running sample server; it stops when this is dropped.
pub struct SampleServer {
    /// The API base URL to give the client (`http://127.0.0.1:<port>/3`).
    pub base_url: String,
    /// Which movie details it serves, for the operator.
    pub details: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the sample server on an ephemeral 127.0.0.1 port.
pub async fn start() -> std::io::Result<SampleServer> {
    let details = SampleDetails::load();
    let (base_url, stop) = serve_samples(details.clone()).await?;
    Ok(SampleServer {
        base_url,
        details: details.describe(),
        _stop: stop,
    })
}

/// The detail bodies the sample server answers with.
#[derive(Debug, Clone)]
struct SampleDetails {
    /// Where the real responses were read from; `None` when the folder is not there.
    from: Option<std::path::PathBuf>,
    /// The details of [`SAMPLE_DETAIL_ID`]; `None`: that id is answered with 404 too.
    found: Option<bytes::Bytes>,
    not_found: bytes::Bytes,
}

impl SampleDetails {
    /// Reads the real responses from `../shared/fixtures/tmdb` (beside the repository, as the
    /// tests read them; the source tree's copy when run from elsewhere). They are never copied
    /// into the project or the binary.
    fn load() -> SampleDetails {
        let candidates = [
            std::path::PathBuf::from("../shared/fixtures/tmdb"),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/tmdb"),
        ];
        let dir = candidates.into_iter().find(|d| d.join(DETAIL_FIXTURE).is_file());
        let read = |name: &str| {
            dir.as_ref()
                .and_then(|d| std::fs::read(d.join(name)).ok())
                .map(bytes::Bytes::from)
        };
        SampleDetails {
            found: read(DETAIL_FIXTURE),
            not_found: read(NOT_FOUND_FIXTURE).unwrap_or_else(|| bytes::Bytes::from_static(NOT_FOUND_BODY.as_bytes())),
            from: dir,
        }
    }

    fn describe(&self) -> String {
        match (&self.from, &self.found) {
            (Some(dir), Some(_)) => format!(
                "TMDB: movie details: the real response for movie {SAMPLE_DETAIL_ID} from {}, TMDB's 404 for any other id",
                dir.display()
            ),
            _ => "TMDB: movie details: ../shared/fixtures/tmdb is not there, so every detail request is answered \
                  with TMDB's 404 (each one a quarantine record)"
                .into(),
        }
    }
}

/// Serves [`sample_page`] and the sample details on an ephemeral 127.0.0.1 port until the
/// sender is dropped.
async fn serve_samples(details: SampleDetails) -> std::io::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/3", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = Router::new().fallback(answer).with_state(Arc::new(details));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((base, stop))
}

async fn answer(State(details): State<Arc<SampleDetails>>, uri: Uri, headers: HeaderMap) -> Response {
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
    let json = [("content-type", "application/json;charset=utf-8")];
    if let Some(id) = endpoint.strip_prefix("movie/").and_then(|id| id.parse::<i64>().ok()) {
        return match (&details.found, id == SAMPLE_DETAIL_ID) {
            (Some(body), true) => (json, body.clone()).into_response(),
            _ => (StatusCode::NOT_FOUND, json, details.not_found.clone()).into_response(),
        };
    }
    (
        [("content-type", "application/json;charset=utf-8")],
        sample_page(endpoint, page).to_string(),
    )
        .into_response()
}

/// A made-up list page in TMDB's shape, deterministic per endpoint and page. It carries the
/// quirks of real pages: an empty `release_date`, a missing `video`, `dates` on now_playing.
pub fn sample_page(endpoint: &str, page: u32) -> serde_json::Value {
    let seed = movielake_core::output::naming::stable_id(endpoint);
    let offset = u64::from_str_radix(&seed[..4], 16).unwrap_or(0);
    let results: Vec<serde_json::Value> = (0..20u64)
        .map(|i| {
            // Fight Club heads the popular list: the one movie whose details the server has.
            let id = if endpoint == "movie/popular" && page == 1 && i == 0 {
                SAMPLE_DETAIL_ID as u64
            } else {
                1000 + offset + u64::from(page) * 20 + i
            };
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
