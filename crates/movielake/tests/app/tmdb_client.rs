//! The TMDB client against a stand-in TMDB on 127.0.0.1 (real HTTP) serving the real fixture
//! page and injecting 429 (Retry-After 0/1/absent), 500, 503, slow answers, truncated JSON, an
//! invalid token and the page-501 error.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use movielake::clients::tmdb::{ClientConfig, TmdbClient, TmdbError, Token};
use movielake_core::sources::tmdb::lists::ListSpec;

pub(crate) const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.good-read-access-token.sig";

#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    TooMany(Option<&'static str>),
    Status(u16),
    Slow(Duration),
    Truncated,
}

#[derive(Default)]
pub(crate) struct Script {
    faults: HashMap<u32, VecDeque<Fault>>,
    hits: BTreeMap<u32, u32>,
    served: BTreeMap<u32, Vec<u8>>,
    in_flight: u32,
    max_in_flight: u32,
    /// Movie details (`/3/movie/{id}`): ids answered with TMDB's 404, faults per id, whether
    /// the token is refused for details only, and what was asked and served.
    pub(crate) missing: std::collections::HashSet<i64>,
    pub(crate) detail_faults: HashMap<i64, VecDeque<Fault>>,
    pub(crate) details_refused: bool,
    pub(crate) detail_hits: BTreeMap<i64, u32>,
    pub(crate) detail_queries: Vec<String>,
    pub(crate) detail_served: BTreeMap<i64, Vec<u8>>,
}

#[derive(Clone)]
struct Standin {
    fixture: Arc<Vec<u8>>,
    /// The real details of movie 550; other ids get it with their own id.
    detail: Arc<Vec<u8>>,
    total_pages: Option<u32>,
    script: Arc<Mutex<Script>>,
    /// Added to every answer (network and server time).
    latency: Duration,
}

pub(crate) fn fixture(name: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/tmdb")
        .join(name);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => {
            println!(
                "SKIPPED: {} is not readable ({e}): real TMDB responses live there",
                path.display()
            );
            None
        }
    }
}

async fn answer(State(s): State<Standin>, uri: Uri, headers: HeaderMap) -> Response {
    {
        let mut script = s.script.lock().unwrap();
        script.in_flight += 1;
        script.max_in_flight = script.max_in_flight.max(script.in_flight);
    }
    tokio::time::sleep(s.latency).await;
    let response = respond(&s, uri, headers).await;
    s.script.lock().unwrap().in_flight -= 1;
    response
}

/// The details of `id`: the real response byte for byte for 550, else the same with its id.
pub(crate) fn detail_body(detail: &[u8], id: i64) -> Vec<u8> {
    if id == 550 {
        return detail.to_vec();
    }
    let mut json: serde_json::Value = serde_json::from_slice(detail).unwrap();
    json["id"] = id.into();
    serde_json::to_vec(&json).unwrap()
}

fn fault_response(fault: Fault) -> Option<Response> {
    match fault {
        Fault::TooMany(retry_after) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"status_code":25,"status_message":"Your request count (#) is over the allowed limit of (40)."}"#,
            )
                .into_response();
            if let Some(v) = retry_after {
                r.headers_mut().insert("retry-after", v.parse().unwrap());
            }
            Some(r)
        }
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            Some((status, r#"{"status_code":11,"status_message":"Internal error."}"#).into_response())
        }
        Fault::Slow(_) | Fault::Truncated => None,
    }
}

async fn respond_detail(s: &Standin, id: i64, uri: &Uri, headers: &HeaderMap) -> Response {
    let fault = {
        let mut script = s.script.lock().unwrap();
        *script.detail_hits.entry(id).or_insert(0) += 1;
        script.detail_queries.push(uri.query().unwrap_or("").to_string());
        script.detail_faults.get_mut(&id).and_then(VecDeque::pop_front)
    };
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    if !authorized || s.script.lock().unwrap().details_refused {
        let body = fixture("errors/7_invalid_api_key_jdrouet.json").unwrap_or_default();
        return (StatusCode::UNAUTHORIZED, body).into_response();
    }
    if let Some(r) = fault.and_then(fault_response) {
        return r;
    }
    if s.script.lock().unwrap().missing.contains(&id) {
        let body = fixture("errors/34_not_found_jdrouet.json").unwrap_or_default();
        return (StatusCode::NOT_FOUND, body).into_response();
    }
    let body = detail_body(&s.detail, id);
    s.script.lock().unwrap().detail_served.insert(id, body.clone());
    ([("content-type", "application/json;charset=utf-8")], body).into_response()
}

async fn respond(s: &Standin, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(id) = uri
        .path()
        .strip_prefix("/3/movie/")
        .and_then(|id| id.parse::<i64>().ok())
    {
        return respond_detail(s, id, &uri, &headers).await;
    }
    let query: HashMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let page: u32 = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    s.script
        .lock()
        .unwrap()
        .hits
        .entry(page)
        .and_modify(|n| *n += 1)
        .or_insert(1);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        let body = fixture("errors/7_invalid_api_key_jdrouet.json").unwrap_or_default();
        return (StatusCode::UNAUTHORIZED, body).into_response();
    }
    if !(1..=500).contains(&page) {
        let body = fixture("errors/22_invalid_page_adamayoung.json").unwrap_or_default();
        return (StatusCode::BAD_REQUEST, body).into_response();
    }
    let fault = s
        .script
        .lock()
        .unwrap()
        .faults
        .get_mut(&page)
        .and_then(VecDeque::pop_front);
    let body = page_body(s, page);
    if let Some(r) = fault.and_then(fault_response) {
        return r;
    }
    match fault {
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::Truncated) => return (StatusCode::OK, body[..body.len() / 2].to_vec()).into_response(),
        _ => {}
    }
    s.script.lock().unwrap().served.insert(page, body.clone());
    ([("content-type", "application/json;charset=utf-8")], body).into_response()
}

/// Page 1 is the fixture byte for byte; other pages are the fixture with their page number.
fn page_body(s: &Standin, page: u32) -> Vec<u8> {
    if page == 1 && s.total_pages.is_none() {
        return s.fixture.to_vec();
    }
    let mut json: serde_json::Value = serde_json::from_slice(&s.fixture).unwrap();
    json["page"] = page.into();
    if let Some(total) = s.total_pages {
        json["total_pages"] = total.into();
    }
    serde_json::to_vec(&json).unwrap()
}

pub(crate) struct Running {
    pub(crate) base: String,
    pub(crate) script: Arc<Mutex<Script>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub(crate) async fn standin(fixture: Vec<u8>, total_pages: Option<u32>, faults: &[(u32, &[Fault])]) -> Running {
    standin_with_latency(fixture, total_pages, faults, Duration::ZERO).await
}

async fn standin_with_latency(
    fixture: Vec<u8>,
    total_pages: Option<u32>,
    faults: &[(u32, &[Fault])],
    latency: Duration,
) -> Running {
    let mut script = Script::default();
    for (page, list) in faults {
        script.faults.insert(*page, list.iter().copied().collect());
    }
    let script = Arc::new(Mutex::new(script));
    // Read quietly: only the detail tests need it, and they say SKIPPED themselves.
    let detail = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/tmdb/movie_details/550_fight_club_2024-02_jdrouet.json"),
    )
    .unwrap_or_else(|_| b"{}".to_vec());
    let state = Standin {
        fixture: Arc::new(fixture),
        detail: Arc::new(detail),
        total_pages,
        script: script.clone(),
        latency,
    };
    let app = Router::new().fallback(get(answer)).with_state(state);
    let (addr, stop) = crate::support::spawn_router(app).await;
    let base = format!("http://{}/3", addr);
    Running {
        base,
        script,
        _stop: stop,
    }
}

pub(crate) fn fast(base: &str) -> ClientConfig {
    ClientConfig {
        base_url: base.into(),
        requests_per_second: 500.0,
        max_connections: 20,
        timeout: Duration::from_millis(400),
        max_attempts: 4,
        retry_budget: 50,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(80),
        retry_after_max: Duration::from_millis(1500),
    }
}

fn spec(pages: u32) -> ListSpec {
    ListSpec {
        endpoint: "movie/popular".into(),
        pages,
        language: Some("en-US".into()),
        region: None,
        params: Default::default(),
    }
}

#[tokio::test]
async fn every_fault_is_retried_and_every_page_arrives_exactly_once() {
    let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
        return;
    };
    let slow = Duration::from_millis(1200);
    let faults: &[(u32, &[Fault])] = &[
        (1, &[Fault::TooMany(Some("0"))]),
        (2, &[Fault::TooMany(Some("1"))]),
        (3, &[Fault::TooMany(None), Fault::Status(500)]),
        (4, &[Fault::Status(503), Fault::Status(500)]),
        (5, &[Fault::Slow(slow)]),
        (6, &[Fault::Truncated]),
    ];
    let server = standin(page.clone(), None, faults).await;
    let client = TmdbClient::new(Token::new(TOKEN).unwrap(), fast(&server.base)).unwrap();
    let started = Instant::now();
    let pages = client.fetch_list(&spec(7)).await.expect("every fault is transient");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );

    let numbers: Vec<u32> = pages.iter().map(|p| p.page).collect();
    assert_eq!(numbers, (1..=7).collect::<Vec<_>>(), "each page once, in order");
    let script = server.script.lock().unwrap();
    for p in &pages {
        assert_eq!(
            p.body.as_ref(),
            script.served[&p.page].as_slice(),
            "page {} as served",
            p.page
        );
        assert_eq!(p.status, 200);
        assert!(p.query.contains(&("language".into(), "en-US".into())));
    }
    assert_eq!(pages[0].body.as_ref(), page.as_slice(), "page 1 byte for byte");
    let attempts: Vec<u32> = pages.iter().map(|p| p.attempts).collect();
    assert_eq!(attempts, vec![2, 2, 3, 3, 2, 2, 1]);
    assert_eq!(client.retries_left(), 50 - 8);
}

#[tokio::test]
async fn requests_keep_to_the_rate_and_the_connection_cap() {
    let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
        return;
    };
    let server = standin_with_latency(page, None, &[], Duration::from_millis(150)).await;
    let mut config = fast(&server.base);
    config.requests_per_second = 100.0;
    config.max_connections = 4;
    let client = TmdbClient::new(Token::new(TOKEN).unwrap(), config).unwrap();
    let started = Instant::now();
    assert_eq!(client.fetch_list(&spec(21)).await.unwrap().len(), 21);
    // 21 requests at 100/s cannot start in less than 200 ms; 20 of them 4 at a time, 150 ms
    // each, take at least 5 rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(150 + 5 * 150),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.script.lock().unwrap().max_in_flight, 4);
    let defaults = ClientConfig::default();
    assert_eq!((defaults.requests_per_second, defaults.max_connections), (40.0, 20));
}

#[tokio::test]
async fn paging_stops_at_total_pages_the_limit_or_500_and_never_asks_for_501() {
    let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
        return;
    };
    // The real page says total_pages = 42471: the limit and the 500 cap decide.
    let server = standin(page.clone(), None, &[]).await;
    let mut config = fast(&server.base);
    config.requests_per_second = 2000.0;
    let client = TmdbClient::new(Token::new(TOKEN).unwrap(), config).unwrap();
    let pages = client.fetch_list(&spec(500)).await.unwrap();
    assert_eq!(pages.len(), 500);
    let refused = client.fetch_page("movie/popular", &[], 501).await;
    assert!(
        matches!(refused, Err(TmdbError::PageOutOfRange { page: Some(501), .. })),
        "{refused:?}"
    );
    {
        let script = server.script.lock().unwrap();
        assert_eq!(script.hits.keys().copied().max(), Some(500), "page 501 never requested");
        assert!(script.hits.values().all(|n| *n == 1));
    }
    // A short list: total_pages decides.
    let server = standin(page, Some(3), &[]).await;
    let client = TmdbClient::new(Token::new(TOKEN).unwrap(), fast(&server.base)).unwrap();
    assert_eq!(client.fetch_list(&spec(10)).await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_invalid_token_fails_at_once_and_is_never_shown() {
    let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
        return;
    };
    let server = standin(page, None, &[]).await;
    let secret = "eyJhbGciOiJIUzI1NiJ9.revoked-token.sig";
    let client = TmdbClient::new(Token::new(secret).unwrap(), fast(&server.base)).unwrap();
    let err = client.fetch_list(&spec(3)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TmdbError::InvalidToken { status: 401, .. }), "{err:?}");
    assert!(
        text.contains("the TMDB token is invalid") && text.contains("status_code 7"),
        "{text}"
    );
    assert!(!text.contains(secret) && !format!("{err:?} {client:?}").contains(secret));
    assert_eq!(
        server.script.lock().unwrap().hits.values().sum::<u32>(),
        1,
        "no retry of a 401"
    );
}

#[tokio::test]
async fn persistent_failures_end_in_a_clear_error_within_the_retry_budget() {
    let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
        return;
    };
    let down = [Fault::Status(503); 10];
    let server = standin(page.clone(), None, &[(1, &down)]).await;
    let client = TmdbClient::new(Token::new(TOKEN).unwrap(), fast(&server.base)).unwrap();
    let err = client.fetch_list(&spec(2)).await.unwrap_err();
    assert!(
        matches!(
            err,
            TmdbError::GaveUp {
                page: Some(1),
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("HTTP 503"), "{err}");

    let server = standin(page, None, &[(2, &down), (3, &down)]).await;
    let mut config = fast(&server.base);
    config.retry_budget = 2;
    let client = TmdbClient::new(Token::new(TOKEN).unwrap(), config).unwrap();
    let err = client.fetch_list(&spec(3)).await.unwrap_err();
    assert!(matches!(err, TmdbError::BudgetSpent { budget: 2, .. }), "{err:?}");
    assert_eq!(client.retries_left(), 0);
}

#[tokio::test]
async fn a_v3_key_in_the_url_never_reaches_an_error_message() {
    let key = "0123456789abcdef0123456789abcdef";
    // Nothing listens on port 9 of 127.0.0.1: every attempt is a connection error.
    let mut config = fast("http://127.0.0.1:9/3");
    config.max_attempts = 2;
    let client = TmdbClient::new(Token::new(key).unwrap(), config).unwrap();
    let err = client.fetch_page("movie/popular", &[], 1).await.unwrap_err();
    assert!(matches!(err, TmdbError::GaveUp { .. }), "{err:?}");
    assert!(
        !err.to_string().contains(key) && !format!("{err:?}").contains(key),
        "{err}"
    );
}

/// Benchmark, not a timed test (`cargo test -p movielake --test app -- --ignored bench_tmdb`):
/// 500 pages from the stand-in with 30 ms latency at the default 40 requests/s and 20
/// connections, then again with 10 % of the pages failing once (503). The rate limit alone
/// allows 12.5 s for 500 requests.
#[tokio::test]
#[ignore = "benchmark: ~30 s; figures for BENCHMARKS.md"]
async fn bench_tmdb_500_pages_at_40_per_second() {
    let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
        return;
    };
    let latency = Duration::from_millis(30);
    for failing in [false, true] {
        let once: &[Fault] = &[Fault::Status(503)];
        let faults: Vec<(u32, &[Fault])> = if failing {
            (1..=500).filter(|p| p % 10 == 3).map(|p| (p, once)).collect()
        } else {
            Vec::new()
        };
        let server = standin_with_latency(page.clone(), None, &faults, latency).await;
        let config = ClientConfig {
            base_url: server.base.clone(),
            ..ClientConfig::default()
        };
        let client = TmdbClient::new(Token::new(TOKEN).unwrap(), config).unwrap();
        let started = Instant::now();
        let pages = client.fetch_list(&spec(500)).await.expect("500 pages");
        let elapsed = started.elapsed();
        let numbers: Vec<u32> = pages.iter().map(|p| p.page).collect();
        assert_eq!(numbers, (1..=500).collect::<Vec<_>>(), "every page once");
        let requests: u32 = server.script.lock().unwrap().hits.values().sum();
        println!(
            "BENCH tmdb pull: 500 pages, 30 ms latency, 40 req/s, {} failing once: {:.2} s for {requests} requests ({:.1} req/s; rate-limit floor {:.2} s)",
            if failing { "10 %" } else { "none" },
            elapsed.as_secs_f64(),
            f64::from(requests) / elapsed.as_secs_f64(),
            f64::from(requests) / 40.0
        );
    }
}

pub(crate) mod pull {
    use super::*;
    use movielake::handler::{AppState, serve_on};
    use movielake::lake::LocalLake;
    use movielake::pipelines::tmdb_lists::PullSettings;
    use movielake_core::sources::tmdb::lists::ListsConfig;
    use serde_json::json;

    use crate::handler::{files, post_to};

    async fn handler(
        root: &std::path::Path,
        tmdb_base: &str,
        token: &str,
    ) -> (String, tokio::sync::oneshot::Sender<()>) {
        handler_with(root, tmdb_base, token, None).await
    }

    /// Two lists, five pages; no details (their own tests turn them on).
    pub(crate) const LISTS: &str = "[[lists]]\nendpoint = \"movie/popular\"\npages = 3\nlanguage = \"en-US\"\n\n[[lists]]\nendpoint = \"trending/movie/day\"\npages = 2\n";

    /// The real handler in process, pulling [`LISTS`] from `tmdb_base` into a local lake at `root`.
    pub(crate) async fn handler_with(
        root: &std::path::Path,
        tmdb_base: &str,
        token: &str,
        publisher: Option<movielake::clients::eventgrid::EventGridPublisher>,
    ) -> (String, tokio::sync::oneshot::Sender<()>) {
        let lists = format!("{LISTS}\n[details]\nenabled = false\n");
        handler_with_lists(root, tmdb_base, token, publisher, &lists).await
    }

    /// Like [`handler_with`], with the lists file given.
    pub(crate) async fn handler_with_lists(
        root: &std::path::Path,
        tmdb_base: &str,
        token: &str,
        publisher: Option<movielake::clients::eventgrid::EventGridPublisher>,
        lists: &str,
    ) -> (String, tokio::sync::oneshot::Sender<()>) {
        let contracts_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
        let contracts = movielake::config::load_contracts(Some(&contracts_dir)).expect("contracts");
        let lists = ListsConfig::from_toml("test.toml", lists).unwrap();
        let settings = PullSettings {
            token: Token::new(token).unwrap(),
            client: fast(tmdb_base),
            lists,
            publisher,
        };
        let state =
            AppState::new(Arc::new(LocalLake::new(root)), contracts, chrono::Duration::hours(24)).with_tmdb(settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_on(listener, state, async move {
            let _ = stopped.await;
        }));
        (base, stop)
    }

    pub(crate) fn timer_request() -> String {
        timer_request_at("2024-02-01T06:00:00.5Z")
    }

    pub(crate) fn timer_request_at(now: &str) -> String {
        json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
               "Metadata": {"sys": {"MethodName": "pull_tmdb_lists", "UtcNow": now, "RandGuid": "1"}}})
        .to_string()
    }

    #[tokio::test]
    async fn pages_land_once_with_sidecars_and_turn_into_silver() {
        let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
            return;
        };
        let tmdb = standin(page.clone(), None, &[(2, &[Fault::TooMany(None)])]).await;
        let dir = tempfile::tempdir().unwrap();
        let (base, _stop) = handler(dir.path(), &tmdb.base, TOKEN).await;

        let (status, _, body) = post_to(&base, "pull_tmdb_lists", timer_request(), false).await;
        assert_eq!(status, 200, "{body}");
        let bronze = files(dir.path(), "bronze");
        let pages: Vec<&String> = bronze.iter().filter(|p| !p.ends_with(".meta.json")).collect();
        assert_eq!(pages.len(), 5, "{bronze:?}");
        assert_eq!(bronze.len(), 10, "a sidecar per page");
        let first = "bronze/tmdb/movie/popular/ingest_date=2024-02-01/run=20240201T060000Z/page=0001.json";
        assert_eq!(std::fs::read(dir.path().join(first)).unwrap(), page, "byte for byte");
        for path in &bronze {
            let text = std::fs::read_to_string(dir.path().join(path)).unwrap();
            assert!(
                !text.contains(TOKEN) && !text.contains("good-read-access-token"),
                "{path}"
            );
        }
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(first.replace(".json", ".meta.json"))).unwrap())
                .unwrap();
        assert_eq!(
            (sidecar["status"].as_u64(), sidecar["page"].as_u64()),
            (Some(200), Some(1))
        );
        assert!(files(dir.path(), "ops/runs/tmdb_lists").len() == 1);
        let manifest = std::fs::read_to_string(dir.path().join(&files(dir.path(), "ops/runs/tmdb_lists")[0])).unwrap();
        assert!(!manifest.contains(TOKEN));

        // A retry of the same invocation keeps what landed: still one copy of each page.
        let (status, _, body) = post_to(&base, "pull_tmdb_lists", timer_request(), false).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("5 page(s) already in bronze"), "{body}");
        assert_eq!(files(dir.path(), "bronze").len(), 10);

        // The hand-off: each landed page announced to bronze_to_silver becomes silver. The
        // stand-in serves the same 20 movies on every page (a list that shifted while paged):
        // the repeats on later pages are counted, not written to silver again.
        assert!(
            body.contains("40 id(s) repeated across pages") && body.contains("20 id(s) repeated"),
            "{body}"
        );
        for path in pages {
            let event = json!({"specversion": "1.0", "type": "movielake.bronze.landed", "source": "movielake", "id": path, "subject": path});
            let request = json!({"Data": {"event": event.to_string()}, "Metadata": {}}).to_string();
            let (status, _, body) = post_to(&base, "bronze_to_silver", request, false).await;
            assert_eq!(status, 200, "{body}");
            let want = if path.ends_with("page=0001.json") {
                "in=20 silver=20 quarantined=0 duplicates=0"
            } else {
                "in=20 silver=0 quarantined=0 duplicates=20"
            };
            assert!(body.contains(want), "{path}: {body}");
        }
        assert_eq!(
            files(dir.path(), "silver/tmdb/list_entries").len(),
            2,
            "one part per list: page 1"
        );
    }

    #[tokio::test]
    async fn an_invalid_token_fails_the_run_and_lands_nothing() {
        let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
            return;
        };
        let tmdb = standin(page, None, &[]).await;
        let dir = tempfile::tempdir().unwrap();
        let secret = "eyJhbGciOiJIUzI1NiJ9.expired.sig";
        let (base, _stop) = handler(dir.path(), &tmdb.base, secret).await;
        let (status, _, body) = post_to(&base, "pull_tmdb_lists", timer_request(), false).await;
        assert_eq!(status, 500, "{body}");
        assert!(
            body.contains("the TMDB token is invalid") && !body.contains(secret),
            "{body}"
        );
        assert!(
            body.contains(r#""Kind":"source_auth""#),
            "on-call sees a credentials problem: {body}"
        );
        assert!(files(dir.path(), "bronze").is_empty() && files(dir.path(), "ops").is_empty());
    }
}
