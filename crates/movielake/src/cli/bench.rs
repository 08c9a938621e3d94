//! `movielake bench events`: throughput and memory of the watch-events path, in process and
//! through the HTTP handler, side by side with DuckDB on the same events. A benchmark, not a
//! test: it prints figures, it asserts nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use movielake_core::ContractSet;
use movielake_core::host::event_hub_request;
use movielake_core::sources::events::sample::{SampleOptions, watch_events};

use crate::handler::{AppState, call, serve_on};
use crate::lake::LocalLake;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Events/s of the watch-events path (in process and through the HTTP handler) beside
    /// DuckDB on the same events, and peak memory of one large batch. Build with --release.
    Events {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Events per invocation.
        #[arg(long, default_value_t = 50_000)]
        batch_size: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Python with the duckdb package, for the side-by-side run. Default: ./.venv/bin/python
        /// if present.
        #[arg(long)]
        python: Option<PathBuf>,
        /// Users of the generated enrichment dimension (one user version and three subscription
        /// versions each; the events' viewers are drawn from them). The in-process run is made
        /// twice, without enrichment and with it, to show what enrichment adds per event.
        /// 0: no enriched run.
        #[arg(long, default_value_t = 1_000_000)]
        dimension_users: usize,
    },
    /// Delta commits per second into one table from 8 and 32 concurrent writers (saturated, and
    /// paced as batching partitions are), commit latency p50/p99, and the freshness it gives.
    /// On the lake given with --lake (a folder by default: pass Azurite's URL to measure blob
    /// storage). Build with --release.
    Commits(super::bench_commits::CommitsArgs),
    /// Load time and memory of the enrichment dimension: generated SCD2 histories of this many
    /// users (one user version, three subscription versions each) written to a scratch lake,
    /// then loaded in a fresh process as `ingest_watch_events` loads them. Build with --release.
    Dimension {
        #[arg(long, default_value_t = 1_000_000)]
        users: usize,
    },
    /// Loads the dimension from the lake given with --lake and prints the figures (used by
    /// `bench dimension`).
    DimensionLoad,
    /// One batch in a fresh process, printing its peak resident memory (used by `bench events`).
    Memory {
        #[arg(long, default_value_t = 50_000)]
        events: usize,
    },
}

pub(super) async fn command(what: BenchCommand, state: &AppState) -> anyhow::Result<()> {
    let workdir = tempfile_dir()?;
    match what {
        BenchCommand::Commits(args) => {
            super::bench_commits::command(args, state.lake.clone(), state.tables.clone()).await?;
        }
        BenchCommand::Dimension { users } => {
            super::bench_dimension::command(users, &workdir.join("lake")).await?;
        }
        BenchCommand::DimensionLoad => super::bench_dimension::load_command(state).await?,
        BenchCommand::Memory { events } => {
            let (elapsed, peak) = one_batch(events, &state.contracts, &workdir).await?;
            println!("{events} {} {}", elapsed.as_secs_f64(), peak.unwrap_or(f64::NAN));
        }
        BenchCommand::Events {
            events,
            batch_size,
            seed,
            python,
            dimension_users,
        } => {
            let python = python.or_else(|| Some(PathBuf::from(".venv/bin/python")).filter(|p| p.exists()));
            let opts = BenchOptions {
                events,
                batch_size,
                seed,
                python,
                workdir: workdir.clone(),
                dimension_users,
            };
            let (figures, latency) = run(&opts, &state.contracts, &|line| eprintln!("  {line}")).await?;
            let memory = std::process::Command::new(std::env::current_exe()?)
                .args(["bench", "memory", "--events", "50000"])
                .output()?;
            let memory = String::from_utf8_lossy(&memory.stdout).to_string();
            let fields: Vec<&str> = memory.split_whitespace().collect();
            println!("| run | events | seconds | events/s |");
            println!("|---|---:|---:|---:|");
            for f in &figures {
                println!(
                    "| {} | {} | {:.2} | {:.0} |",
                    f.name,
                    f.events,
                    f.elapsed.as_secs_f64(),
                    f.per_second()
                );
            }
            if let (Some(plain), Some(enriched)) =
                (figures.first(), figures.iter().find(|f| f.name.contains("enriched")))
            {
                let added = (enriched.elapsed.as_secs_f64() - plain.elapsed.as_secs_f64()) / plain.events.max(1) as f64;
                println!(
                    "\nenrichment adds {:.2} µs per event in process ({:.0} -> {:.0} events/s)",
                    added * 1e6,
                    plain.per_second(),
                    enriched.per_second()
                );
            }
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "\nin process, per invocation of {batch_size} events ({} invocations): p50 {:.1} ms, p99 {:.1} ms; \
                 of which the silver commit (data files + Delta commit, from the run manifests, {} runs): \
                 p50 {:.1} ms, p99 {:.1} ms",
                latency.invocation.count,
                ms(latency.invocation.p50),
                ms(latency.invocation.p99),
                latency.commit.count,
                ms(latency.commit.p50),
                ms(latency.commit.p99),
            );
            if let [n, secs, peak] = fields.as_slice() {
                println!(
                    "\npeak memory (VmHWM) of a fresh process taking one batch of {n} events: {peak} MiB ({secs} s)"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&workdir);
    Ok(())
}

/// A scratch folder under the system temp dir, removed by the caller.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("movielake-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// A busy hub: 5,000 events per second of event time, so a 50,000-event batch spans seconds of
/// event time (one or two hourly partitions), as a real batch would.
const BENCH_SESSIONS_PER_SECOND: f64 = 2_500.0;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub events: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Python with duckdb (for the side-by-side run); `None` skips DuckDB, saying so.
    pub python: Option<PathBuf>,
    pub workdir: PathBuf,
    /// Users of the enrichment dimension of the enriched run (0: none).
    pub dimension_users: usize,
}

/// One host request body per batch, generated up front so generation is not timed. Batches
/// rotate over four partitions with increasing sequence numbers, as a real hub delivers them.
fn batches(opts: &BenchOptions) -> Vec<Vec<u8>> {
    (0..batch_count(opts))
        .map(|i| {
            let enqueued: Vec<(String, DateTime<Utc>)> = batch_events(opts, i)
                .into_iter()
                .map(|e| (e.body, e.occurred_at + chrono::Duration::milliseconds(350)))
                .collect();
            let partition = (i % 4).to_string();
            let first_seq = (i / 4 * opts.batch_size) as i64;
            event_hub_request("events", "ingest_watch_events", &partition, first_seq, &enqueued)
                .to_string()
                .into_bytes()
        })
        .collect()
}

fn batch_count(opts: &BenchOptions) -> usize {
    opts.events.div_ceil(opts.batch_size.max(1))
}

/// The events of batch `i`: the same for movielake and for DuckDB.
fn batch_events(opts: &BenchOptions, i: usize) -> Vec<movielake_core::sources::events::sample::GeneratedEvent> {
    let start: DateTime<Utc> = DateTime::from_timestamp(1_714_557_600, 0).unwrap_or_default();
    watch_events(&SampleOptions {
        seed: opts.seed + i as u64,
        count: opts.batch_size.min(opts.events - i * opts.batch_size),
        start: start + chrono::Duration::hours(i as i64),
        bad_share: 0.04,
        duplicate_share: 0.02,
        sessions_per_second: BENCH_SESSIONS_PER_SECOND,
        users: (opts.dimension_users as u64).max(movielake_core::sources::events::sample::DEFAULT_USERS),
    })
}

fn state(lake_dir: &Path, contracts: &ContractSet) -> AppState {
    AppState::new(
        Arc::new(LocalLake::new(lake_dir)),
        contracts.clone(),
        chrono::Duration::hours(24),
    )
}

pub struct Figure {
    pub name: String,
    pub events: usize,
    pub elapsed: Duration,
}

impl Figure {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn run(
    opts: &BenchOptions,
    contracts: &ContractSet,
    progress: &dyn Fn(&str),
) -> anyhow::Result<(Vec<Figure>, Latency)> {
    progress(&format!(
        "generating {} events in batches of {}",
        opts.events, opts.batch_size
    ));
    let bodies = batches(opts);
    let mut figures = Vec::new();

    // Without enrichment: the watch contract without `enrich_as_of`.
    let plain = match contracts.get(movielake_core::pipelines::watch_events::PIPELINE) {
        Some(watch) => {
            let mut watch = watch.clone();
            watch.enrich_as_of = None;
            contracts.clone().with(watch)
        }
        None => contracts.clone(),
    };
    let dir = opts.workdir.join("in-process");
    let st = state(&dir, &plain);
    let mut invocations = Vec::with_capacity(bodies.len());
    let started = Instant::now();
    for body in &bodies {
        let one = Instant::now();
        call(&st, "ingest_watch_events", body).await?;
        invocations.push(one.elapsed());
    }
    figures.push(Figure {
        name: "movielake in process (decode+validate+write), no enrichment".into(),
        events: opts.events,
        elapsed: started.elapsed(),
    });
    progress(&format!("in process: {:.0} events/s", figures[0].per_second()));
    let commits = commit_times(&dir)?;
    if opts.dimension_users > 0 {
        let built = Instant::now();
        let dimension = Arc::new(generated_dimension(opts.dimension_users));
        progress(&format!(
            "dimension: {} users, {} versions, {:.0} MiB, built in {:.1?}",
            dimension.users(),
            dimension.versions(),
            dimension.heap_bytes() as f64 / (1 << 20) as f64,
            built.elapsed()
        ));
        // Enriched and plain in turn, each into a fresh lake, three rounds: the medians
        // compare runs made under the same conditions (the first plain run above warmed up).
        let mut times = [Vec::new(), Vec::new()];
        for round in 0..3 {
            for (mode, enriched) in [false, true].into_iter().enumerate() {
                let dir = opts.workdir.join(format!("in-process-{round}-{mode}"));
                let st = if enriched {
                    state(&dir, contracts).with_dimension(crate::pipelines::dimension::DimensionCache::preloaded(
                        crate::handler::DEFAULT_DIMENSION_REFRESH,
                        dimension.clone(),
                        (None, None),
                    ))
                } else {
                    state(&dir, &plain)
                };
                let started = Instant::now();
                for body in &bodies {
                    call(&st, "ingest_watch_events", body).await?;
                }
                times[mode].push(started.elapsed());
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let median = |mut v: Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let [plain_times, enriched_times] = times;
        progress(&format!(
            "plain {plain_times:.2?}, enriched {enriched_times:.2?} (rounds in turn)"
        ));
        figures[0] = Figure {
            name: "movielake in process (decode+validate+write), no enrichment (median of 3, in turn)".into(),
            events: opts.events,
            elapsed: median(plain_times),
        };
        figures.push(Figure {
            name: format!(
                "movielake in process, enriched ({} M-user dimension; median of 3, in turn)",
                opts.dimension_users as f64 / 1e6
            ),
            events: opts.events,
            elapsed: median(enriched_times),
        });
    }
    let latency = Latency {
        invocation: Spread::of(invocations),
        commit: Spread::of(commits),
    };

    let dir = opts.workdir.join("http");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/ingest_watch_events", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, state(&dir, contracts), async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let started = Instant::now();
    for body in &bodies {
        let response = client.post(&url).body(body.clone()).send().await?;
        anyhow::ensure!(response.status().is_success(), "handler answered {}", response.status());
        response.bytes().await?;
    }
    figures.push(Figure {
        name: "movielake through the HTTP handler".into(),
        events: opts.events,
        elapsed: started.elapsed(),
    });
    let _ = stop.send(());
    let _ = server.await;
    progress(&format!(
        "through HTTP: {:.0} events/s",
        figures.last().map_or(0.0, Figure::per_second)
    ));

    match &opts.python {
        None => progress("DuckDB skipped: no Python with duckdb (create .venv: scripts/test.sh does)"),
        Some(python) => figures.extend(duckdb(python, opts, progress)?),
    }
    Ok((figures, latency))
}

/// Per-invocation latencies of the in-process run.
pub struct Latency {
    /// Each invocation, end to end.
    pub invocation: Spread,
    /// Each invocation's silver commit (data files + Delta commit), as its run manifest records.
    pub commit: Spread,
}

/// Median and 99th percentile of a set of durations.
pub struct Spread {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
}

impl Spread {
    fn of(mut all: Vec<Duration>) -> Spread {
        all.sort();
        Spread {
            count: all.len(),
            p50: super::bench_commits::percentile(&all, 0.50),
            p99: super::bench_commits::percentile(&all, 0.99),
        }
    }
}

/// `commit_ms` of every watch-events run manifest in the folder lake `dir`.
fn commit_times(dir: &Path) -> anyhow::Result<Vec<Duration>> {
    let mut found = Vec::new();
    let runs = dir.join("ops/runs/watch_events");
    for day in std::fs::read_dir(&runs).with_context(|| format!("reading {}", runs.display()))? {
        for file in std::fs::read_dir(day?.path())? {
            let path = file?.path();
            let manifest: movielake_core::output::manifest::RunManifest =
                serde_json::from_slice(&std::fs::read(&path)?).with_context(|| format!("{}", path.display()))?;
            found.extend(manifest.commit_ms.map(Duration::from_millis));
        }
    }
    Ok(found)
}

fn duckdb(python: &Path, opts: &BenchOptions, progress: &dyn Fn(&str)) -> anyhow::Result<Vec<Figure>> {
    use std::io::Write;
    let path = opts.workdir.join("events.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for i in 0..batch_count(opts) {
        for e in batch_events(opts, i) {
            writeln!(out, "{}", e.body)?;
        }
    }
    out.flush()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_duckdb.py");
    progress("DuckDB: read_json -> COPY TO parquet (threads=1, then default)");
    let output = std::process::Command::new(python).arg(&script).arg(&path).output()?;
    anyhow::ensure!(
        output.status.success(),
        "DuckDB run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let secs = |k: &str| Duration::from_secs_f64(v[k].as_f64().unwrap_or(f64::NAN).max(0.0));
    Ok(vec![
        Figure {
            name: "DuckDB read_json -> parquet, threads=1".into(),
            events: opts.events,
            elapsed: secs("threads1_s"),
        },
        Figure {
            name: format!("DuckDB read_json -> parquet, threads={}", v["default_threads"]),
            events: opts.events,
            elapsed: secs("default_s"),
        },
    ])
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `users` users (`user-000000`…), each created in 2020 with three subscription versions:
/// basic, standard from mid-2023, premium from 2024-05-01 12:00 (inside the benchmark's
/// events, so lookups fall on both sides of a boundary).
fn generated_dimension(users: usize) -> movielake_core::enrich::Dimension {
    let at = |s: &str| {
        s.parse::<DateTime<Utc>>()
            .map(|t| t.timestamp_micros())
            .unwrap_or_default()
    };
    let (created, standard, premium) = (
        at("2020-01-01T00:00:00Z"),
        at("2023-06-01T00:00:00Z"),
        at("2024-05-01T12:00:00Z"),
    );
    const COUNTRIES: [&str; 8] = ["FR", "DE", "US", "GB", "ES", "IT", "NL", "BR"];
    let mut b = movielake_core::enrich::Dimension::builder();
    for u in 0..users {
        let user = movielake_core::sources::sql::sample::user_id(u);
        let id = format!("sub-{u:06}-1");
        b.user(&user, created, None, Some(COUNTRIES[u % COUNTRIES.len()]));
        b.subscription(&user, &id, created, Some(standard), Some("basic"), Some("active"));
        b.subscription(&user, &id, standard, Some(premium), Some("standard"), Some("active"));
        b.subscription(&user, &id, premium, None, Some("premium"), Some("active"));
    }
    b.build()
}

/// One batch in this process, for a clean peak-memory reading (`bench memory`).
pub async fn one_batch(
    events: usize,
    contracts: &ContractSet,
    workdir: &Path,
) -> anyhow::Result<(Duration, Option<f64>)> {
    let opts = BenchOptions {
        events,
        batch_size: events,
        seed: 7,
        python: None,
        workdir: workdir.to_path_buf(),
        dimension_users: 0,
    };
    let body = batches(&opts).pop().unwrap_or_default();
    let st = state(&workdir.join("memory"), contracts);
    let started = Instant::now();
    call(&st, "ingest_watch_events", &body).await?;
    Ok((started.elapsed(), peak_rss_mib()))
}
