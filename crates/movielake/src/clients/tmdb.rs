//! The TMDB API v3 client: bearer token (or v3 key), a client-side rate limiter, at most N
//! connections, retries with exponential backoff and jitter on 429/5xx/timeouts/connection
//! errors, `Retry-After` honoured but clamped, a retry budget per run, typed errors.
//!
//! The token is a secret: it travels in a header (or, for a v3 key, in a URL that is never
//! logged); it never appears in an error, a log line, bronze or a manifest.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use movielake_core::sources::tmdb::api::{ApiError, MAX_PAGE, PageError, parse_error, parse_list_page};
use movielake_core::sources::tmdb::details::detail_endpoint;
use movielake_core::sources::tmdb::lists::{ListSpec, last_page};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

pub const DEFAULT_BASE_URL: &str = "https://api.themoviedb.org/3";
/// Response headers worth keeping beside a bronze page (no cookies, nothing secret).
const KEPT_HEADERS: &[&str] = &["content-type", "date", "etag", "cache-control", "x-memc", "age"];

/// The TMDB credential. `Debug` never shows it.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(redacted)")
    }
}

impl Token {
    /// `None` for an empty value (the setting is absent in effect).
    pub fn new(secret: &str) -> Option<Token> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Token(secret.to_string()))
    }

    /// A v3 API key is 32 hex digits; anything else is a read access token (a JWT).
    fn is_v3_key(&self) -> bool {
        self.0.len() == 32 && self.0.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub base_url: String,
    pub requests_per_second: f64,
    pub max_connections: usize,
    /// Whole request, body included.
    pub timeout: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Retries allowed across the whole run: a TMDB outage ends the run with an error instead
    /// of hammering the API for hours.
    pub retry_budget: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A longer `Retry-After` is cut to this.
    pub retry_after_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.into(),
            // TMDB allows about 50/s per IP: stay under it with room for other callers.
            requests_per_second: 40.0,
            max_connections: 20,
            timeout: Duration::from_secs(10),
            max_attempts: 6,
            retry_budget: 200,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            retry_after_max: Duration::from_secs(30),
        }
    }
}

/// One page as TMDB answered it.
#[derive(Debug, Clone)]
pub struct FetchedPage {
    pub endpoint: String,
    pub page: u32,
    /// Query parameters sent, `page` and credentials excluded.
    pub query: Vec<(String, String)>,
    pub status: u16,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    pub fetched_at: DateTime<Utc>,
    pub attempts: u32,
}

/// A movie's details as TMDB answered them.
#[derive(Debug, Clone)]
pub struct FetchedDetail {
    pub movie_id: i64,
    /// `movie/{id}`.
    pub endpoint: String,
    /// Query parameters sent, credentials excluded.
    pub query: Vec<(String, String)>,
    pub status: u16,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    pub fetched_at: DateTime<Utc>,
    pub attempts: u32,
}

/// What TMDB answered to one request (paged or not).
struct Answer {
    status: u16,
    body: Bytes,
    headers: Vec<(String, String)>,
    fetched_at: DateTime<Utc>,
}

/// Errors name the request: `movie/popular page 3`, or `movie/550` (not paged: `page` is `None`).
#[derive(Debug, thiserror::Error)]
pub enum TmdbError {
    #[error("the TMDB token is invalid (HTTP {status}: {detail}); set TMDB_API_TOKEN to a valid read access token")]
    InvalidToken { status: u16, detail: String },
    #[error("{}: TMDB serves pages 1..=500 only; not requested", request(.endpoint, .page))]
    PageOutOfRange { endpoint: String, page: Option<u32> },
    /// `api` is TMDB's own error body (`status_code` 34); `None` when the 404 came from
    /// something else (a proxy, a wrong base URL), which is not TMDB saying "no such movie".
    #[error("{}: not found (HTTP 404): {detail}", request(.endpoint, .page))]
    NotFound {
        endpoint: String,
        page: Option<u32>,
        detail: String,
        api: Option<ApiError>,
        body: Bytes,
    },
    #[error("{}: TMDB refused the request (HTTP {status}): {detail}", request(.endpoint, .page))]
    Refused {
        endpoint: String,
        page: Option<u32>,
        status: u16,
        detail: String,
    },
    #[error("{}: gave up after {attempts} attempts; last: {last}", request(.endpoint, .page))]
    GaveUp {
        endpoint: String,
        page: Option<u32>,
        attempts: u32,
        last: String,
    },
    #[error("{}: the run's retry budget ({budget}) is spent; last: {last}", request(.endpoint, .page))]
    BudgetSpent {
        endpoint: String,
        page: Option<u32>,
        budget: u32,
        last: String,
    },
    #[error("{}: the answer is not a list page: {detail}", request(.endpoint, .page))]
    NotAListPage {
        endpoint: String,
        page: Option<u32>,
        detail: String,
    },
    #[error("cannot build the TMDB HTTP client: {0}")]
    Client(String),
}

fn request(endpoint: &str, page: &Option<u32>) -> String {
    match page {
        Some(page) => format!("{endpoint} page {page}"),
        None => endpoint.to_string(),
    }
}

/// Spaces requests evenly at the configured rate, across every task of the client.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[derive(Debug)]
pub struct TmdbClient {
    http: reqwest::Client,
    token: Token,
    config: ClientConfig,
    pacer: Pacer,
    connections: Semaphore,
    retries_left: AtomicU32,
    jitter: RandomState,
}

/// What one attempt came to.
enum Attempt {
    Done(Answer),
    /// Worth another attempt; the delay TMDB asked for, if any.
    Transient(String, Option<Duration>),
    Fatal(TmdbError),
}

impl TmdbClient {
    pub fn new(token: Token, config: ClientConfig) -> Result<Self, TmdbError> {
        let connections = config.max_connections.max(1);
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .pool_max_idle_per_host(connections)
            .build()
            .map_err(|e| TmdbError::Client(e.without_url().to_string()))?;
        let rate = if config.requests_per_second > 0.0 {
            config.requests_per_second
        } else {
            40.0
        };
        Ok(TmdbClient {
            http,
            token,
            pacer: Pacer {
                interval: Duration::from_secs_f64(1.0 / rate),
                next: Mutex::new(Instant::now()),
            },
            connections: Semaphore::new(connections),
            retries_left: AtomicU32::new(config.retry_budget),
            config,
            jitter: RandomState::new(),
        })
    }

    /// Retries still allowed in this run.
    pub fn retries_left(&self) -> u32 {
        self.retries_left.load(Ordering::Relaxed)
    }

    /// Every page of a list, page 1 first to learn `total_pages`, then up to
    /// `min(total_pages, spec.pages, 500)` concurrently; sorted by page.
    pub async fn fetch_list(&self, spec: &ListSpec) -> Result<Vec<FetchedPage>, TmdbError> {
        let query = spec.query();
        let first = self.fetch_page(&spec.endpoint, &query, 1).await?;
        let total_pages = match parse_list_page(&first.body) {
            Ok(page) => page.total_pages,
            Err(e @ (PageError::NotJson(_) | PageError::Api(_) | PageError::NotAListPage(_))) => {
                return Err(TmdbError::NotAListPage {
                    endpoint: spec.endpoint.clone(),
                    page: Some(1),
                    detail: e.to_string(),
                });
            }
        };
        let last = last_page(total_pages, spec.pages);
        let mut pages: Vec<FetchedPage> = futures::stream::iter(2..=last)
            .map(|page| self.fetch_page(&spec.endpoint, &query, page))
            .buffer_unordered(self.config.max_connections.max(1))
            .try_collect()
            .await?;
        pages.push(first);
        pages.sort_by_key(|p| p.page);
        Ok(pages)
    }

    /// One page, with retries. Never requests a page past 500.
    pub async fn fetch_page(
        &self,
        endpoint: &str,
        query: &[(String, String)],
        page: u32,
    ) -> Result<FetchedPage, TmdbError> {
        if !(1..=MAX_PAGE).contains(&page) {
            return Err(TmdbError::PageOutOfRange {
                endpoint: endpoint.into(),
                page: Some(page),
            });
        }
        let (answer, attempts) = self.fetch(endpoint, query, Some(page)).await?;
        Ok(FetchedPage {
            endpoint: endpoint.into(),
            page,
            query: query.to_vec(),
            status: answer.status,
            body: answer.body,
            headers: answer.headers,
            fetched_at: answer.fetched_at,
            attempts,
        })
    }

    /// A movie's details (`movie/{id}`, no `page`), with the same pacing, retries and typed
    /// errors as pages. A movie TMDB does not have is [`TmdbError::NotFound`].
    pub async fn fetch_detail(&self, movie_id: i64, query: &[(String, String)]) -> Result<FetchedDetail, TmdbError> {
        let endpoint = detail_endpoint(movie_id);
        let (answer, attempts) = self.fetch(&endpoint, query, None).await?;
        Ok(FetchedDetail {
            movie_id,
            endpoint,
            query: query.to_vec(),
            status: answer.status,
            body: answer.body,
            headers: answer.headers,
            fetched_at: answer.fetched_at,
            attempts,
        })
    }

    /// One request with retries; `page` is added to the query when given.
    async fn fetch(
        &self,
        endpoint: &str,
        query: &[(String, String)],
        page: Option<u32>,
    ) -> Result<(Answer, u32), TmdbError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (last, retry_after) = match self.attempt(endpoint, query, page).await {
                Attempt::Done(answer) => return Ok((answer, attempt)),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Transient(last, retry_after) => (last, retry_after),
            };
            if attempt >= self.config.max_attempts {
                return Err(TmdbError::GaveUp {
                    endpoint: endpoint.into(),
                    page,
                    attempts: attempt,
                    last,
                });
            }
            let spent = self
                .retries_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err();
            if spent {
                return Err(TmdbError::BudgetSpent {
                    endpoint: endpoint.into(),
                    page,
                    budget: self.config.retry_budget,
                    last,
                });
            }
            let delay = retry_after.unwrap_or_else(|| self.backoff(attempt, endpoint));
            tracing::warn!(endpoint, ?page, attempt, delay_ms = delay.as_millis() as u64, %last, "TMDB request will be retried");
            tokio::time::sleep(delay).await;
        }
    }

    /// Exponential backoff with jitter: a random delay in [d/2, d], d = base * 2^(attempt-1),
    /// capped; the jitter keeps 20 concurrent retries from arriving together.
    fn backoff(&self, attempt: u32, endpoint: &str) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.config.backoff_max);
        let unit = (self.jitter.hash_one((attempt, endpoint, std::time::SystemTime::now())) % 1_000) as f64 / 1_000.0;
        exp.mul_f64(0.5 + 0.5 * unit)
    }

    async fn attempt(&self, endpoint: &str, query: &[(String, String)], page: Option<u32>) -> Attempt {
        self.pacer.wait().await;
        // Closed only if the client is dropped, which cannot happen while it is borrowed here.
        let Ok(_permit) = self.connections.acquire().await else {
            return Attempt::Fatal(TmdbError::Client("connection limiter closed".into()));
        };
        let mut url = match url::Url::parse(&format!("{}/{endpoint}", self.config.base_url.trim_end_matches('/'))) {
            Ok(url) => url,
            Err(e) => return Attempt::Fatal(TmdbError::Client(format!("TMDB base URL: {e}"))),
        };
        {
            let mut pairs = url.query_pairs_mut();
            pairs.extend_pairs(query);
            if let Some(page) = page {
                pairs.append_pair("page", &page.to_string());
            }
            if self.token.is_v3_key() {
                pairs.append_pair("api_key", &self.token.0);
            }
        }
        let mut request = self.http.get(url);
        if !self.token.is_v3_key() {
            request = request.bearer_auth(&self.token.0);
        }
        let fetched_at = Utc::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Transient(describe(e), None),
        };
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), self.config.retry_after_max);
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
            .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
            .collect();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Transient(format!("HTTP {status}, body cut short: {}", describe(e)), None),
        };
        let detail = || match parse_error(&body) {
            Some(api) => api.to_string(),
            None => format!("{} bytes of non-TMDB body", body.len()),
        };
        match status {
            200 => {}
            401 => {
                return Attempt::Fatal(TmdbError::InvalidToken {
                    status,
                    detail: detail(),
                });
            }
            429 => return Attempt::Transient(format!("HTTP 429 (rate limited): {}", detail()), retry_after),
            500..=599 => return Attempt::Transient(format!("HTTP {status}: {}", detail()), retry_after),
            404 => {
                return Attempt::Fatal(TmdbError::NotFound {
                    endpoint: endpoint.into(),
                    page,
                    detail: detail(),
                    api: parse_error(&body),
                    body,
                });
            }
            _ => {
                let auth = matches!(parse_error(&body), Some(ref api) if api.is_auth());
                if auth {
                    return Attempt::Fatal(TmdbError::InvalidToken {
                        status,
                        detail: detail(),
                    });
                }
                return Attempt::Fatal(TmdbError::Refused {
                    endpoint: endpoint.into(),
                    page,
                    status,
                    detail: detail(),
                });
            }
        }
        // A 200 whose body is not JSON was cut or mangled on the way: ask again rather than land
        // it (bronze keeps what TMDB meant to send).
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            return Attempt::Transient(format!("HTTP 200 with a body that is not JSON ({e})"), None);
        }
        Attempt::Done(Answer {
            status,
            body,
            headers,
            fetched_at,
        })
    }
}

/// The error and its causes, without the URL (with a v3 key the URL holds the secret).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// `Retry-After` in seconds, clamped; a missing, zero or unreadable value (an HTTP date, say)
/// gives `None` so that backoff applies.
fn retry_after(headers: &reqwest::header::HeaderMap, max: Duration) -> Option<Duration> {
    let secs: f64 = headers.get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs).min(max))
}
