//! The Azure Functions custom handler: the host's HTTP contract and log streams, nothing else;
//! the work itself is the pipelines'.
//!
//! `POST /<FunctionName>` with `{"Data":…, "Metadata":…}`; we answer
//! `{"Outputs":{}, "Logs":[…], "ReturnValue":null}`. Bad data is quarantined and answered 200;
//! a failure of the infrastructure answers 500 so that the host's retry policy runs again.

mod bronze_to_silver;
mod ingest_watch_events;
pub mod logging;
mod maintain_tables;
mod pull_subscriptions;
mod pull_tmdb_lists;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use movielake_core::ContractSet;
use movielake_core::host::{HostError, Invocation, InvocationResponse, decode_invocation};
use serde_json::json;

use crate::lake::{Lake, LakeError};
use crate::pipelines::ledger::LedgerCache;
use crate::pipelines::watch_events::IngestError;

/// Every Function this binary serves; each has a `functions/<name>/function.json`.
pub const FUNCTIONS: &[&str] = &[
    ingest_watch_events::NAME,
    bronze_to_silver::NAME,
    pull_tmdb_lists::NAME,
    maintain_tables::NAME,
    pull_subscriptions::NAME,
];

/// With the retry policy of `ingest_watch_events` (exponential, 5 s to 15 min) ten attempts span
/// about 35 minutes: long enough for an outage to pass, short enough not to stall a partition.
pub const DEFAULT_POISON_AFTER_ATTEMPTS: u32 = 10;

/// How stale the enrichment dimension may be: a minute behind the SQL source's pulls, at most
/// one storage round trip (two table versions) a minute per instance.
pub const DEFAULT_DIMENSION_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// Event Hub batches and file events can be large; the host sends them in one body.
pub const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct AppState {
    pub lake: Arc<dyn Lake>,
    pub contracts: Arc<ContractSet>,
    pub ledger: Arc<LedgerCache>,
    /// How long a producer duplicate is recognised (`MOVIELAKE_DEDUPE_WINDOW_HOURS`).
    pub dedupe_window: chrono::Duration,
    /// Failed attempts of one Event Hub batch after which it is landed whole in quarantine
    /// (`MOVIELAKE_POISON_AFTER_ATTEMPTS`; 0: never, retry forever).
    pub poison_after_attempts: u32,
    /// TMDB pull settings; `None` reads them from the environment when `pull_tmdb_lists` runs.
    pub tmdb: Option<Arc<crate::pipelines::tmdb_lists::PullSettings>>,
    /// The lake's Delta tables (silver, gold), reached with the lake's own kind of credential.
    pub tables: Arc<crate::tables::Tables>,
    /// The enrichment dimension of watch events, kept per instance
    /// (`MOVIELAKE_DIMENSION_REFRESH_SECONDS`).
    pub dimension: Arc<crate::pipelines::dimension::DimensionCache>,
    /// Days of events the maintenance run enriches again (`MOVIELAKE_REENRICH_DAYS`).
    pub reenrich_days: u32,
}

impl AppState {
    pub fn new(lake: Arc<dyn Lake>, contracts: ContractSet, dedupe_window: chrono::Duration) -> Self {
        let tables = Arc::new(crate::tables::Tables::for_lake(lake.as_ref()));
        AppState {
            lake,
            tables,
            contracts: Arc::new(contracts),
            ledger: Arc::default(),
            dedupe_window,
            poison_after_attempts: DEFAULT_POISON_AFTER_ATTEMPTS,
            tmdb: None,
            dimension: Arc::new(crate::pipelines::dimension::DimensionCache::new(
                DEFAULT_DIMENSION_REFRESH,
            )),
            reenrich_days: crate::pipelines::reenrich::DEFAULT_DAYS,
        }
    }

    /// Enriches watch events from this cache (benchmarks: a generated dimension).
    pub fn with_dimension(mut self, cache: crate::pipelines::dimension::DimensionCache) -> Self {
        self.dimension = Arc::new(cache);
        self
    }

    /// Enriches events of this many days again in each maintenance run.
    pub fn with_reenrich_days(mut self, days: u32) -> Self {
        self.reenrich_days = days;
        self
    }

    /// Checks the enrichment dimension's tables for a new version at most this often.
    pub fn with_dimension_refresh(mut self, refresh: std::time::Duration) -> Self {
        self.dimension = Arc::new(crate::pipelines::dimension::DimensionCache::new(refresh));
        self
    }

    /// Tables reached otherwise than the lake port says (a SAS the port does not show).
    pub fn with_tables(mut self, tables: crate::tables::Tables) -> Self {
        self.tables = Arc::new(tables);
        self
    }

    /// Lands a batch whole in quarantine after this many failed attempts (0: never).
    pub fn with_poison_after_attempts(mut self, attempts: u32) -> Self {
        self.poison_after_attempts = attempts;
        self
    }

    /// Pulls TMDB with these settings instead of the environment's (tests, `movielake run`).
    pub fn with_tmdb(mut self, settings: crate::pipelines::tmdb_lists::PullSettings) -> Self {
        self.tmdb = Some(Arc::new(settings));
        self
    }
}

/// Why an invocation did not succeed, grouped by the answer the host must get.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("no function named '{0}' (this binary serves: {list})", list = FUNCTIONS.join(", "))]
    UnknownFunction(String),
    #[error("{0} is not an invocation: the host sends POST /<FunctionName>")]
    MethodNotAllowed(String),
    #[error("the invocation request is malformed: {0}")]
    BadRequest(#[from] HostError),
    #[error("lake: {0}")]
    Lake(#[from] LakeError),
    #[error("contract '{0}' is not loaded; add contracts/{0}.toml")]
    MissingContract(String),
    /// A Delta table refused or could not take a commit.
    #[error("table {0}")]
    Table(#[from] crate::tables::TableError),
    #[error("dedupe ledger: {0}")]
    Ledger(String),
    /// A source refused our credentials: retrying will not help until a person fixes them.
    #[error("{0}")]
    SourceAuth(String),
    /// A source we pull from failed (after its own retries).
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Configuration(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<IngestError> for FunctionError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Lake(e) => FunctionError::Lake(e),
            IngestError::Ledger(e) => FunctionError::Ledger(e.to_string()),
            IngestError::Encode(e) => FunctionError::Internal(e.to_string()),
            IngestError::Table(e) => FunctionError::Table(e),
            IngestError::Silver(e) => FunctionError::Configuration(e.to_string()),
        }
    }
}

impl FunctionError {
    /// The one place where failures become HTTP statuses.
    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            FunctionError::UnknownFunction(_) => (StatusCode::NOT_FOUND, "unknown_function"),
            FunctionError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            FunctionError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            FunctionError::Lake(e) if e.is_transient() => (StatusCode::INTERNAL_SERVER_ERROR, "storage_unavailable"),
            FunctionError::Lake(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
            FunctionError::MissingContract(_) => (StatusCode::INTERNAL_SERVER_ERROR, "configuration"),
            FunctionError::Table(crate::tables::TableError::Contended { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "table_contended")
            }
            FunctionError::Table(crate::tables::TableError::Storage { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "storage_unavailable")
            }
            FunctionError::Table(crate::tables::TableError::Invalid { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "table_invalid")
            }
            FunctionError::Ledger(_) => (StatusCode::INTERNAL_SERVER_ERROR, "ledger"),
            FunctionError::SourceAuth(_) => (StatusCode::INTERNAL_SERVER_ERROR, "source_auth"),
            FunctionError::Source(_) => (StatusCode::INTERNAL_SERVER_ERROR, "source_unavailable"),
            FunctionError::Configuration(_) => (StatusCode::INTERNAL_SERVER_ERROR, "configuration"),
            FunctionError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for FunctionError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        let message = self.to_string();
        let body = json!({
            "Outputs": {},
            "Logs": [format!("error: {message}")],
            "ReturnValue": null,
            "Error": {"Kind": kind, "Message": message},
        });
        (status, axum::Json(body)).into_response()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(health))
        .route("/{function}", post(invoke))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Anything but `GET /` and `POST /<FunctionName>` still gets a JSON answer, never an empty body.
async fn unknown_route(uri: axum::http::Uri) -> FunctionError {
    FunctionError::UnknownFunction(uri.path().trim_start_matches('/').to_string())
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> FunctionError {
    FunctionError::MethodNotAllowed(format!("{method} {}", uri.path()))
}

/// The host polls `GET /` until something answers before it sends invocations.
async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ready", "functions": FUNCTIONS}))
}

async fn invoke(
    State(state): State<AppState>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<InvocationResponse>, FunctionError> {
    let invocation_id = headers
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let span = tracing::info_span!("invocation", function = %function, id = %invocation_id);
    let _entered = span.enter();
    drop(_entered);
    let result = call(&state, &function, &body).await;
    match &result {
        Ok(response) => tracing::info!(function, invocation_id, logs = ?response.logs, "invocation succeeded"),
        Err(e) => tracing::error!(function, invocation_id, error = %e, "invocation failed"),
    }
    result.map(axum::Json)
}

/// Decodes a host request body and runs the Function: the one path for `serve` and `run`.
pub async fn call(state: &AppState, function: &str, body: &[u8]) -> Result<InvocationResponse, FunctionError> {
    if !FUNCTIONS.contains(&function) {
        return Err(FunctionError::UnknownFunction(function.to_string()));
    }
    let invocation = decode_invocation(body)?;
    dispatch(state, function, invocation).await
}

async fn dispatch(
    state: &AppState,
    function: &str,
    invocation: Invocation,
) -> Result<InvocationResponse, FunctionError> {
    match function {
        ingest_watch_events::NAME => ingest_watch_events::run(state, invocation).await,
        bronze_to_silver::NAME => bronze_to_silver::run(state, invocation).await,
        pull_tmdb_lists::NAME => pull_tmdb_lists::run(state, invocation).await,
        maintain_tables::NAME => maintain_tables::run(state, invocation).await,
        pull_subscriptions::NAME => pull_subscriptions::run(state, invocation).await,
        other => Err(FunctionError::UnknownFunction(other.to_string())),
    }
}

/// Serves on 127.0.0.1 only: the host is the one caller, on the same machine.
pub async fn serve(state: AppState, port: u16) -> std::io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, lake = %state.lake.describe(), "movielake custom handler listening");
    serve_on(listener, state, shutdown_signal()).await
}

/// Serves on a bound listener until `shutdown` completes (tests and `movielake run` bind an
/// ephemeral port on 127.0.0.1 and stand in for the host).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
