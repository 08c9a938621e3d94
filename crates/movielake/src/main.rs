use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use movielake::config::{self, ConfigError};
use movielake::handler::{self, AppState};
use movielake::run::{RunOptions, run_watch_events};

/// Serverless data-lake ingestion for Azure: the Azure Functions custom handler and the
/// operator CLI, one binary. Every input lands verbatim in bronze, is checked against its
/// contract, and ends in typed silver Parquet or in quarantine with its reasons.
#[derive(Debug, Parser)]
#[command(name = "movielake", version, propagate_version = true)]
struct Cli {
    /// Where the lake is: a folder (`./lake`, `file:///data/lake`), an Azure Blob endpoint
    /// (`https://<account>.blob.core.windows.net`, managed identity), or Azurite
    /// (`http://127.0.0.1:10000/devstoreaccount1`).
    #[arg(long, env = "MOVIELAKE_LAKE", default_value = "./lake", global = true)]
    lake: String,

    /// SAS token for a blob lake, instead of the managed identity (never logged).
    #[arg(long, env = "MOVIELAKE_LAKE_SAS", hide_env_values = true, global = true)]
    lake_sas: Option<String>,

    /// Folder of dataset contracts (`<dataset>.toml`). Default: ./contracts if present, else
    /// the contracts built into the binary.
    #[arg(long, env = "MOVIELAKE_CONTRACTS", global = true)]
    contracts: Option<PathBuf>,

    /// How long a producer's duplicate event is recognised by its key, in hours.
    #[arg(long, env = "MOVIELAKE_DEDUPE_WINDOW_HOURS", default_value_t = 24, global = true,
          value_parser = clap::value_parser!(u32).range(1..=24 * 30))]
    dedupe_window_hours: u32,

    /// Failed attempts of one Event Hub batch after which `serve` lands it whole in quarantine
    /// (stage `poison`) so its partition moves on; 0 retries it forever.
    #[arg(long, env = "MOVIELAKE_POISON_AFTER_ATTEMPTS", global = true,
          default_value_t = handler::DEFAULT_POISON_AFTER_ATTEMPTS)]
    poison_after_attempts: u32,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run as the Functions custom handler: listen on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT
    /// and answer the host's invocations (`host.json` starts the binary this way).
    Serve {
        #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT", default_value_t = 8080)]
        port: u16,
    },
    /// Run the main job on the lake: generated watch events go through the same Function the
    /// host calls (bronze, contract, quarantine, silver); TMDB lists and details are pulled (from
    /// a local stand-in without TMDB_API_TOKEN) and handed to bronze_to_silver; a Movies Dataset
    /// file (generated, or --file) is ingested; gold is built. A summary of each is printed.
    Run {
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
    },
    /// Generate realistic watch events (users, sessions, start/finish pairs, some broken on
    /// purpose, some repeated) and send them somewhere.
    SendEvents {
        /// Where to: `-` (JSON lines on stdout), a file path (JSON lines), a running handler
        /// `http://127.0.0.1:PORT` (host-shaped Event Hub batches), or an Event Hub
        /// `eventhubs://<namespace>.servicebus.windows.net/<hub>` (needs `--features eventhubs`).
        #[arg(long, default_value = "-")]
        to: movielake::send::Target,
        #[arg(long, default_value_t = 1000)]
        events: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Event time of the first event (RFC 3339); default: now.
        #[arg(long)]
        start: Option<DateTime<Utc>>,
        /// Share of events broken on purpose (0 to 1).
        #[arg(long, default_value_t = 0.04)]
        bad_share: f64,
        /// Share of events that repeat an earlier one, as a retrying producer would (0 to 1).
        #[arg(long, default_value_t = 0.02)]
        duplicate_share: f64,
        /// Viewing sessions starting per second of event time (two events each).
        #[arg(long, default_value_t = 0.5)]
        sessions_per_second: f64,
        /// Partitions to spread events over (handler target), by user.
        #[arg(long, default_value_t = 4)]
        partitions: usize,
        /// Events per invocation (handler target).
        #[arg(long, default_value_t = 250)]
        batch_size: usize,
        /// First sequence number of each partition (handler target). Default: the current time
        /// in microseconds, so separate sends never reuse a sequence range.
        #[arg(long)]
        first_sequence_number: Option<i64>,
    },
    /// Land files in bronze and convert them into silver and quarantine, streamed: IMDb dataset
    /// files (title.basics.tsv.gz, name.basics.tsv, ... all seven, plain or gzipped) and The
    /// Movies Dataset (movies_metadata.csv, credits.csv, keywords.csv, links.csv, ratings.csv).
    /// Each is recognised by its header line, whatever its name. Ingesting the same file again
    /// the same day rewrites the same objects.
    ///
    /// Example: movielake ingest ~/Downloads/title.basics.tsv.gz ~/Downloads/movies_metadata.csv
    Ingest {
        /// The files to ingest.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Ingest date (the bronze partition and silver snapshot_date); default: today (UTC).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
    /// Run SQL over silver and gold (DataFusion) and print the result as a table. Silver tables
    /// are named after their contracts (movies_dataset_movies, imdb_title_basics, watch_events,
    /// tmdb_list_entries, ...), gold tables after their models (company_year, genre_year, ...).
    ///
    /// Example: movielake query "SELECT genre, year, profit FROM genre_year WHERE most_popular"
    Query {
        /// One SQL statement.
        sql: String,
        /// Print at most this many rows.
        #[arg(long, default_value_t = 50)]
        max_rows: usize,
    },
    /// Build the gold tables: run every SQL model (`gold/*.sql`) over silver and write
    /// `gold/<model>/part-00000.parquet`, then print the first rows of each.
    Gold {
        /// Folder of gold models (`<table>.sql`). Default: ./gold if present, else the models
        /// built into the binary.
        #[arg(long)]
        models: Option<PathBuf>,
        /// Rows of each table to print.
        #[arg(long, default_value_t = 5)]
        show: usize,
    },
    /// What ran and where every record went, from the run manifests in ops/runs/: per pipeline,
    /// records in, silver, quarantined (by rule), duplicates, and any run whose counts do not
    /// add up (exit code 1 then).
    Status {
        /// Only manifests whose path contains this, e.g. `date=2024-05-01` or `watch_events`.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Check every contract and print what each declares; exits non-zero on the first problem.
    Contracts,
    /// Benchmarks (figures, not tests): see BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
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
    },
    /// One batch in a fresh process, printing its peak resident memory (used by `bench events`).
    Memory {
        #[arg(long, default_value_t = 50_000)]
        events: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(cli.command, Command::Serve { .. }));
    match tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli)))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = hint_for(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// One flow's counts, with the check that nothing was lost.
fn print_counts(title: &str, c: &movielake_core::output::manifest::Counts) {
    println!("{title}");
    println!("  records in       {:>7}", c.records_in);
    println!("  silver           {:>7}", c.silver);
    println!("  quarantined      {:>7}", c.quarantined);
    for (rule, n) in &c.quarantined_by_rule {
        println!("    {rule:<26} {n:>5}");
    }
    println!("  duplicates       {:>7}", c.duplicates_dropped);
    let balanced = if c.balanced() { "yes" } else { "NO" };
    println!("  in = silver + quarantined + duplicates: {balanced}");
}

/// What to do next, for the errors a person can act on.
fn hint_for(e: &anyhow::Error) -> Option<&'static str> {
    use movielake::run::RunError;
    use movielake::send::SendError;
    if let Some(config) = e.downcast_ref::<ConfigError>() {
        return Some(config.hint());
    }
    match e.downcast_ref::<RunError>() {
        Some(RunError::Send(SendError::Refused { .. }) | RunError::Lake(_)) => Some(
            "check that --lake / MOVIELAKE_LAKE names a writable folder or a reachable storage account; \
             what was written stays, and a re-run carries on where this one stopped",
        ),
        _ => None,
    }
}

fn init_tracing(serve: bool) {
    // The CLI reports a failure once, itself; the handler's own error log is for `serve`.
    let default = if serve { "info" } else { "warn,movielake::handler=off" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MOVIELAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    if serve {
        fmt.with_writer(movielake::logging::host_streams()).init();
    } else {
        fmt.with_writer(std::io::stderr).init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let contracts = config::load_contracts(cli.contracts.as_deref())?;
    let lake = config::open_lake(Some(&cli.lake), cli.lake_sas.as_deref()).await?;
    let state = AppState::new(
        lake,
        contracts,
        chrono::Duration::hours(i64::from(cli.dedupe_window_hours)),
    )
    .with_poison_after_attempts(cli.poison_after_attempts);
    match cli.command {
        Command::Serve { port } => {
            handler::serve(state, port)
                .await
                .with_context(|| format!("cannot serve on 127.0.0.1:{port}"))?;
        }
        Command::SendEvents {
            to,
            events,
            seed,
            start,
            bad_share,
            duplicate_share,
            sessions_per_second,
            partitions,
            batch_size,
            first_sequence_number,
        } => {
            anyhow::ensure!((0.0..=1.0).contains(&bad_share), "--bad-share must be between 0 and 1");
            anyhow::ensure!(
                (0.0..=1.0).contains(&duplicate_share),
                "--duplicate-share must be between 0 and 1"
            );
            let now = Utc::now();
            let opts = movielake::send::SendOptions {
                events,
                seed,
                start: start.unwrap_or(now),
                bad_share,
                duplicate_share,
                sessions_per_second,
                partitions,
                batch_size,
                first_sequence_number: first_sequence_number.unwrap_or(now.timestamp_micros()),
            };
            let summary = movielake::send::send_events(&to, &opts, &|line| eprintln!("  {line}")).await?;
            match summary.invocations {
                0 => eprintln!("sent {} events", summary.sent),
                n => eprintln!("sent {} events in {n} invocations", summary.sent),
            }
        }
        Command::Bench { what } => bench(what, &state).await?,
        Command::Query { sql, max_rows } => {
            let session = movielake::gold::SqlLake::open(state.lake.as_ref(), &state.contracts, &[&sql]).await?;
            let batches = session.query(&sql).await?;
            println!("{}", movielake::gold::render(&batches, max_rows)?);
        }
        Command::Gold { models, show } => build_gold(&state, models.as_deref(), show).await?,
        Command::Ingest { files, date } => {
            let date = date.unwrap_or_else(|| Utc::now().date_naive());
            let balanced = ingest_files(&state, &files, date).await?;
            anyhow::ensure!(balanced, "records were lost: the counts do not add up");
        }
        Command::Status { filter } => {
            let statuses = movielake::status::summarize(state.lake.as_ref(), filter.as_deref()).await?;
            print!("{}", movielake::status::render(&statuses));
            let lost = statuses.values().filter(|s| !s.unbalanced.is_empty()).count();
            anyhow::ensure!(lost == 0, "{lost} pipeline(s) have runs whose counts do not add up");
        }
        Command::Contracts => {
            for c in state.contracts.iter() {
                let key: Vec<&str> = c.key.iter().map(|&i| c.columns[i].name.as_str()).collect();
                println!(
                    "{} v{} ({}): silver/{}/{}  {} columns, {} row rules, key [{}]",
                    c.name,
                    c.version,
                    c.file,
                    c.source,
                    c.table,
                    c.columns.len(),
                    c.rules.len(),
                    key.join(", ")
                );
            }
        }
        Command::Run {
            events,
            seed,
            start,
            partitions,
            batch_size,
            files,
            movies,
        } => {
            eprintln!(
                "movielake run: {events} watch events (seed {seed}) into {}",
                state.lake.describe()
            );
            let opts = RunOptions {
                events,
                seed,
                start,
                partitions,
                batch_size,
            };
            let started = std::time::Instant::now();
            let summary = run_watch_events(&state, &opts, &|line| eprintln!("  {line}")).await?;
            let title = format!(
                "watch_events: {} invocations in {:.1?}",
                summary.invocations,
                started.elapsed()
            );
            print_counts(&title, &summary.counts);

            let started = std::time::Instant::now();
            let tmdb = movielake::tmdb_local::run_tmdb(&state, Utc::now(), &|line| eprintln!("  {line}")).await?;
            print_counts(
                &format!("tmdb lists: {} pages in {:.1?}", tmdb.pages, started.elapsed()),
                &tmdb.counts,
            );
            // Files: the ones given, or a generated Movies Dataset sample (same seed, same bytes).
            let date = start.date_naive();
            let generated = std::env::temp_dir().join(format!("movielake-run-{}", std::process::id()));
            let files = if files.is_empty() {
                std::fs::create_dir_all(&generated)?;
                let path = generated.join("movies_metadata.csv");
                std::fs::write(
                    &path,
                    movielake_core::sources::movies_dataset::sample::movies_metadata_csv(movies, seed, true),
                )?;
                vec![path]
            } else {
                files
            };
            let files_balanced = ingest_files(&state, &files, date).await?;
            let _ = std::fs::remove_dir_all(&generated);
            let models = Some(PathBuf::from("gold")).filter(|d| d.is_dir());
            build_gold(&state, models.as_deref(), 5).await?;
            println!(
                "lake: {}  (silver/…, gold/…, quarantine/…, ops/runs/…; try `movielake query \"SELECT * FROM genre_year WHERE most_popular\"`)",
                state.lake.describe()
            );
            anyhow::ensure!(
                summary.counts.balanced() && tmdb.counts.balanced() && files_balanced,
                "records were lost: the counts do not add up"
            );
        }
    }
    Ok(())
}

/// Builds every gold model and prints the first rows of each table.
async fn build_gold(state: &AppState, models: Option<&std::path::Path>, show: usize) -> anyhow::Result<()> {
    let dir = models
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("gold")).filter(|d| d.is_dir()));
    let models = movielake::gold::load_models(dir.as_deref())?;
    let (built, skipped) = movielake::gold::build(state.lake.as_ref(), &state.contracts, &models).await?;
    for line in &skipped {
        eprintln!("  {line}");
    }
    if built.is_empty() {
        return Ok(());
    }
    let session = movielake::gold::SqlLake::open(state.lake.as_ref(), &state.contracts, &[]).await?;
    for table in &built {
        println!("gold {} ({} rows, {})", table.name, table.rows, table.path);
        let batches = session
            .query(&format!("SELECT * FROM {} LIMIT {show}", table.name))
            .await?;
        println!("{}", movielake::gold::render(&batches, show)?);
    }
    Ok(())
}

/// Ingests each file, printing its counts; whether every file's counts add up.
async fn ingest_files(state: &AppState, files: &[PathBuf], date: chrono::NaiveDate) -> anyhow::Result<bool> {
    let mut balanced = true;
    for file in files {
        let started = std::time::Instant::now();
        let counts = ingest_file(state, file, date).await?;
        print_counts(
            &format!("{}: converted in {:.1?}", file.display(), started.elapsed()),
            &counts,
        );
        balanced &= counts.balanced();
    }
    Ok(balanced)
}

/// Lands one local file in bronze and converts it, printing progress on stderr.
async fn ingest_file(
    state: &AppState,
    file: &std::path::Path,
    date: chrono::NaiveDate,
) -> anyhow::Result<movielake_core::output::manifest::Counts> {
    use movielake::pipelines::files;
    let landed = files::land_local_file(state.lake.as_ref(), file, date).await?;
    let verb = if landed.already { "already in bronze" } else { "landed" };
    eprintln!("  {verb}: {} ({:.1} MiB)", landed.path, landed.bytes as f64 / 1048576.0);
    let progress: std::sync::Arc<dyn Fn(&str) + Send + Sync> = std::sync::Arc::new(|line: &str| eprintln!("  {line}"));
    let done = files::convert(state.lake.clone(), state.contracts.clone(), &landed.path, progress).await?;
    for line in &done.logs[1..] {
        eprintln!("  {line}");
    }
    Ok(done.counts)
}

async fn bench(what: BenchCommand, state: &AppState) -> anyhow::Result<()> {
    use movielake::bench;
    let workdir = tempfile_dir()?;
    match what {
        BenchCommand::Memory { events } => {
            let (elapsed, peak) = bench::one_batch(events, &state.contracts, &workdir).await?;
            println!("{events} {} {}", elapsed.as_secs_f64(), peak.unwrap_or(f64::NAN));
        }
        BenchCommand::Events {
            events,
            batch_size,
            seed,
            python,
        } => {
            let python = python.or_else(|| Some(PathBuf::from(".venv/bin/python")).filter(|p| p.exists()));
            let opts = bench::BenchOptions {
                events,
                batch_size,
                seed,
                python,
                workdir: workdir.clone(),
            };
            let figures = bench::run(&opts, &state.contracts, &|line| eprintln!("  {line}")).await?;
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
