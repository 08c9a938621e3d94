//! The operator CLI: the arguments (clap) and one file per command with its plumbing. Commands
//! drive the handler, pipelines, clients and lake; nothing else calls into the CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, ConfigError};
use crate::handler::{self, AppState};

pub mod bench;
mod bench_commits;
mod bench_dimension;
mod contracts;
mod gold;
mod ingest;
mod maintain;
mod migrate;
mod pull_sql;
mod query;
pub mod run;
pub mod run_sql;
pub mod send;
mod serve;
pub mod status;

/// Serverless data-lake ingestion for Azure: the Azure Functions custom handler and the
/// operator CLI, one binary. Every input lands verbatim in bronze, is checked against its
/// contract, and ends in a typed silver Delta table or in quarantine with its reasons.
#[derive(Debug, Parser)]
#[command(name = "movielake", version, propagate_version = true)]
pub struct Cli {
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

    /// How often, in seconds, an instance checks whether the subscription dimension that
    /// enriches watch events (silver/sql/{users,subscriptions}_history) has a new version, and
    /// reloads it if so. Events enriched with a stale or missing version are enriched again by
    /// the maintenance run.
    #[arg(long, env = "MOVIELAKE_DIMENSION_REFRESH_SECONDS", global = true, default_value_t = handler::DEFAULT_DIMENSION_REFRESH.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    dimension_refresh_seconds: u64,

    /// Days of watch events the maintenance run (`maintain_tables`, `movielake maintain`)
    /// enriches again: events whose user's dimension landed after them, or changed since.
    #[arg(long, env = "MOVIELAKE_REENRICH_DAYS", global = true,
          default_value_t = crate::pipelines::reenrich::DEFAULT_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=366))]
    reenrich_days: u32,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run as the Functions custom handler: listen on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT
    /// and answer the host's invocations (`host.json` starts the binary this way).
    Serve(serve::ServeArgs),
    /// Run the main job on the lake: generated watch events go through the same Function the
    /// host calls (bronze, contract, quarantine, silver); TMDB lists and details are pulled (from
    /// a local stand-in without TMDB_API_TOKEN) and handed to bronze_to_silver; a Movies Dataset
    /// file (generated, or --file) is ingested; gold is built. A summary of each is printed.
    Run(run::RunArgs),
    /// Generate realistic watch events (users, sessions, start/finish pairs, some broken on
    /// purpose, some repeated) and send them somewhere.
    SendEvents(send::SendEventsArgs),
    /// Land files in bronze and convert them into silver and quarantine, streamed: IMDb dataset
    /// files (title.basics.tsv.gz, name.basics.tsv, ... all seven, plain or gzipped) and The
    /// Movies Dataset (movies_metadata.csv, credits.csv, keywords.csv, links.csv, ratings.csv).
    /// Each is recognised by its header line, whatever its name. Ingesting the same file again
    /// the same day rewrites the same objects.
    ///
    /// Example: movielake ingest ~/Downloads/title.basics.tsv.gz ~/Downloads/movies_metadata.csv
    Ingest(ingest::IngestArgs),
    /// Run SQL over silver and gold (DataFusion) and print the result as a table. Silver tables
    /// are named after their contracts (movies_dataset_movies, imdb_title_basics, watch_events,
    /// tmdb_list_entries, ...), gold tables after their models (company_year, genre_year, ...).
    ///
    /// Example: movielake query "SELECT genre, year, profit FROM genre_year WHERE most_popular"
    Query(query::QueryArgs),
    /// Build the gold tables: run every SQL model (`gold/*.sql`) over silver and replace
    /// the Delta table `gold/<model>` with each result in one commit, then print its first rows.
    Gold(gold::GoldArgs),
    /// What ran and where every record went, from the run manifests in ops/runs/: per pipeline,
    /// records in, silver, quarantined (by rule), duplicates, and any run whose counts do not
    /// add up (exit code 1 then).
    Status(status::StatusArgs),
    /// Compact, checkpoint and VACUUM the lake's Delta tables (what the maintain_tables timer
    /// Function runs).
    #[command(long_about = maintain::ABOUT)]
    Maintain(maintain::MaintainArgs),
    /// Check every contract and print what each declares; exits non-zero on the first problem.
    Contracts,
    Migrate(migrate::MigrateArgs),
    PullSql(pull_sql::PullSqlArgs),
    /// Benchmarks (figures, not tests): see BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

impl Cli {
    /// Whether this is `serve` (the host's logging, see [`init_tracing`]).
    pub fn serves(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

/// The whole binary: parse, set up logging, run the command, report a failure with a hint.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.serves());
    match tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(dispatch(cli)))
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
pub fn hint_for(e: &anyhow::Error) -> Option<&'static str> {
    use run::RunError;
    use send::SendError;
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

pub fn init_tracing(serve: bool) {
    // The CLI reports a failure once, itself; the handler's own error log is for `serve`.
    // delta-kernel logs an ERROR for every table it is asked about that does not exist yet
    // ("No files in log segment"): for us that is an empty table, not a failure. delta-rs
    // logs every lost commit race: the table layer retries those itself and reports the
    // ones it gives up on. Its MERGE warns on every run that a metric of the scan is missing
    // (it derives the value itself): noise for whoever reads the output.
    let quiet = "buoyant_kernel::snapshot=off,deltalake_core::kernel::transaction=off,\
                 deltalake_core::operations::merge=error";
    let default = if serve {
        format!("info,{quiet}")
    } else {
        format!("warn,movielake::handler=off,{quiet}")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MOVIELAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    if serve {
        fmt.with_writer(handler::logging::host_streams()).init();
    } else {
        fmt.with_writer(std::io::stderr).init();
    }
}

/// Opens the lake and the contracts every command shares, then runs the command.
async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let contracts = config::load_contracts(cli.contracts.as_deref())?;
    let lake = config::open_lake(Some(&cli.lake), cli.lake_sas.as_deref()).await?;
    let state = AppState::new(
        lake,
        contracts,
        chrono::Duration::hours(i64::from(cli.dedupe_window_hours)),
    )
    .with_poison_after_attempts(cli.poison_after_attempts)
    .with_dimension_refresh(std::time::Duration::from_secs(cli.dimension_refresh_seconds))
    .with_reenrich_days(cli.reenrich_days)
    .with_tables(crate::tables::Tables::new(crate::tables::TableLocation::for_lake(
        &cli.lake,
        cli.lake_sas.as_deref(),
    )?));
    match cli.command {
        Command::Serve(args) => serve::command(state, args).await,
        Command::SendEvents(args) => send::command(args).await,
        Command::Bench { what } => bench::command(what, &state).await,
        Command::Query(args) => query::command(&state, args).await,
        Command::Gold(args) => gold::command(&state, args).await,
        Command::Ingest(args) => ingest::command(&state, args).await,
        Command::Status(args) => status::command(&state, args).await,
        Command::Maintain(args) => maintain::command(&state, args).await,
        Command::Contracts => contracts::command(&state),
        Command::Run(args) => run::command(&state, args).await,
        Command::Migrate(args) => migrate::command(&state, args).await,
        Command::PullSql(args) => pull_sql::command(&state, args).await,
    }
}
