//! `movielake run`: the main job on one lake. First a sample SQLite database of users and
//! subscriptions is pulled before and after a round of changes ([`super::run_sql`]): its
//! history is what watch events are enriched with. Then the binary stands in for the Functions
//! host: it serves the real handler on an ephemeral 127.0.0.1 port and sends it host-shaped
//! Event Hub invocations over HTTP, so the run exercises exactly the path Azure does, and shows
//! a few enriched events. Then the TMDB flow (the real API with TMDB_API_TOKEN, else the local
//! stand-in, [`tmdb_local`]): it invokes `pull_tmdb_lists` and hands every landed page to
//! `bronze_to_silver` over the same host-shaped HTTP contract. Then files are ingested and gold
//! is built.

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use movielake_core::host::InvocationResponse;
use movielake_core::output::manifest::{Counts, OutputKind, RunManifest};
use serde_json::json;

use super::gold::build_gold;
use super::ingest::ingest_files;
use super::print_counts;
use super::run_sql::print_enriched;
use crate::cli::send::{SendError, SendOptions, Target, send_events};
use crate::clients::tmdb::{ClientConfig, Token};
use crate::clients::tmdb_local;
use crate::handler::{AppState, call, serve_on};
use crate::lake::LakeError;
use crate::pipelines::tmdb_lists::PullSettings;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// How many watch events to generate.
    #[arg(long, default_value_t = 4000)]
    events: usize,
    /// Seed of the generator: the same seed gives the same events and the same lake.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Event time of the first event (RFC 3339).
    #[arg(long, default_value = "2024-05-01T10:00:00Z")]
    start: DateTime<Utc>,
    /// Event Hub partitions to spread the events over.
    #[arg(long, default_value_t = 4)]
    partitions: usize,
    /// Events per invocation (the host's maxEventBatchSize).
    #[arg(long, default_value_t = 250)]
    batch_size: usize,
    /// IMDb or Movies Dataset files to ingest (see `movielake ingest`). Without any, a
    /// generated movies_metadata.csv of --movies movies (with a few dirty rows) is ingested,
    /// so the gold tables have something to show.
    #[arg(long = "file")]
    files: Vec<PathBuf>,
    /// Movies in the generated movies_metadata.csv.
    #[arg(long, default_value_t = 300)]
    movies: usize,
    /// Users in the sample SQLite database of users and subscriptions.
    #[arg(long, default_value_t = 200)]
    users: usize,
}

pub(super) async fn command(state: &AppState, args: RunArgs) -> anyhow::Result<()> {
    let RunArgs {
        events,
        seed,
        start,
        partitions,
        batch_size,
        files,
        movies,
        users,
    } = args;
    eprintln!(
        "movielake run: {events} watch events (seed {seed}) into {}",
        state.lake.describe()
    );
    // The platform's SQL database first: a sample SQLite one (its users created in the week
    // before the events), pulled, changed, pulled again. Its history is the dimension the
    // watch events are enriched with.
    let generated = std::env::temp_dir().join(format!("movielake-run-{}", std::process::id()));
    std::fs::create_dir_all(&generated)?;
    let started = std::time::Instant::now();
    let sql = super::run_sql::run_sql(state, &generated, users, seed, start, &|line| eprintln!("  {line}")).await?;
    print_counts(
        &format!(
            "sql (users, subscriptions): {} pulls in {:.1?}",
            sql.pulls,
            started.elapsed()
        ),
        &sql.counts,
    );
    super::run_sql::print_history(&sql);

    let opts = RunOptions {
        events,
        seed,
        start,
        partitions,
        batch_size,
        users: users.max(5) as u64,
    };
    let started = std::time::Instant::now();
    let summary = run_watch_events(state, &opts, &|line| eprintln!("  {line}")).await?;
    let title = format!(
        "watch_events: {} invocations in {:.1?}",
        summary.invocations,
        started.elapsed()
    );
    print_counts(&title, &summary.counts);
    print_enriched(state).await?;

    let started = std::time::Instant::now();
    let tmdb = run_tmdb(state, Utc::now(), &|line| eprintln!("  {line}")).await?;
    print_counts(
        &format!("tmdb lists: {} pages in {:.1?}", tmdb.pages, started.elapsed()),
        &tmdb.counts,
    );
    // Files: the ones given, or a generated Movies Dataset sample (same seed, same bytes).
    let date = start.date_naive();
    let files = if files.is_empty() {
        let path = generated.join("movies_metadata.csv");
        std::fs::write(
            &path,
            movielake_core::sources::movies_dataset::sample::movies_metadata_csv(movies, seed, true),
        )?;
        vec![path]
    } else {
        files
    };
    let files_balanced = ingest_files(state, &files, date).await?;
    let _ = std::fs::remove_dir_all(&generated);
    let models = Some(PathBuf::from("gold")).filter(|d| d.is_dir());
    build_gold(state, models.as_deref(), 5).await?;
    println!(
        "lake: {}  (silver/…, gold/…, quarantine/…, ops/runs/…; try `movielake query \"SELECT * FROM genre_year WHERE most_popular\"`)",
        state.lake.describe()
    );
    anyhow::ensure!(
        summary.counts.balanced() && tmdb.counts.balanced() && files_balanced && sql.counts.balanced(),
        "records were lost: the counts do not add up"
    );
    Ok(())
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub events: usize,
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub partitions: usize,
    pub batch_size: usize,
    /// Viewers (the sample SQL database's users, whose subscriptions enrich the events).
    pub users: u64,
}

#[derive(Debug, Default)]
pub struct RunSummary {
    pub invocations: usize,
    pub counts: Counts,
    pub manifests: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the local handler: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{path}: unreadable run manifest: {message}")]
    Manifest { path: String, message: String },
}

pub async fn run_watch_events(
    state: &AppState,
    opts: &RunOptions,
    progress: &dyn Fn(&str),
) -> Result<RunSummary, RunError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(RunError::Serve)?;
    let base = format!("http://{}", listener.local_addr().map_err(RunError::Serve)?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    let send = SendOptions {
        events: opts.events,
        seed: opts.seed,
        start: opts.start,
        bad_share: 0.04,
        duplicate_share: 0.02,
        sessions_per_second: 0.5,
        partitions: opts.partitions,
        batch_size: opts.batch_size,
        // The same seed gives the same batches and names: a re-run rewrites the same lake.
        first_sequence_number: 0,
        users: opts.users,
    };
    let sent = send_events(&Target::Handler(base), &send, progress).await;
    let _ = stop.send(());
    let _ = server.await;
    let sent = sent?;

    let mut summary = RunSummary {
        invocations: sent.invocations,
        ..Default::default()
    };
    for response in &sent.responses {
        if let Some(path) = response.logs.iter().find_map(|l| l.strip_prefix("manifest ")) {
            let object = state.lake.get(path).await?;
            let manifest: RunManifest = serde_json::from_slice(&object.bytes).map_err(|e| RunError::Manifest {
                path: path.to_string(),
                message: e.to_string(),
            })?;
            summary.counts.add(&manifest.counts);
            summary.manifests.push(path.to_string());
        }
    }
    Ok(summary)
}

#[derive(Debug, Default)]
pub struct TmdbRunSummary {
    pub pages: usize,
    /// Movie details landed in bronze (and handed to `bronze_to_silver`).
    pub details: usize,
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
    Lake(#[from] LakeError),
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
            let server = tmdb_local::start().await.map_err(TmdbRunError::Serve)?;
            progress(&format!(
                "TMDB: TMDB_API_TOKEN is not set, serving the project's sample list pages from {}",
                server.base_url
            ));
            progress(&server.details);
            let base = server.base_url.clone();
            _sample_server = Some(server);
            PullSettings {
                token: Token::new(tmdb_local::SAMPLE_TOKEN).ok_or(TmdbRunError::Function {
                    function: "pull_tmdb_lists",
                    message: "empty sample token".into(),
                })?,
                client: ClientConfig {
                    base_url: base,
                    ..ClientConfig::default()
                },
                lists: tmdb_local::sample_lists(),
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
    let landed: Vec<String> = manifest
        .outputs
        .iter()
        .filter(|o| o.kind == OutputKind::Bronze && !o.path.ends_with(".meta.json"))
        .map(|o| o.path.clone())
        .collect();
    let details = landed
        .iter()
        .filter(|p| movielake_core::sources::tmdb::details::parse_bronze_detail_path(p).is_ok())
        .count();
    let mut summary = TmdbRunSummary {
        pages: landed.len() - details,
        details,
        logs: pulled.logs,
        // The pull's own records: details TMDB answered with 404, in quarantine.
        counts: manifest.counts.clone(),
    };
    for path in &landed {
        let event = json!({"specversion": "1.0", "type": "movielake.bronze.landed", "source": "movielake/run",
                           "id": movielake_core::output::naming::stable_id(path), "subject": path});
        let request = json!({"Data": {"event": event.to_string()}, "Metadata": {}});
        let response = invoke(&state, "bronze_to_silver", &request).await?;
        if let Ok(m) = manifest_of(&state, &response).await {
            summary.counts.add(&m.counts);
        }
        summary.logs.extend(response.logs);
    }
    Ok(summary)
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
