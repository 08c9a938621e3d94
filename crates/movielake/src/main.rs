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
    /// host calls (bronze, contract, quarantine, silver), then a summary is printed.
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
    },
    /// Check every contract and print what each declares; exits non-zero on the first problem.
    Contracts,
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
            if let Some(hint) = e.downcast_ref::<ConfigError>().map(ConfigError::hint) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: bool) {
    let default = if verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MOVIELAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let contracts = config::load_contracts(cli.contracts.as_deref())?;
    let lake = config::open_lake(Some(&cli.lake), cli.lake_sas.as_deref()).await?;
    let state = AppState::new(
        lake,
        contracts,
        chrono::Duration::hours(i64::from(cli.dedupe_window_hours)),
    );
    match cli.command {
        Command::Serve { port } => {
            handler::serve(state, port)
                .await
                .with_context(|| format!("cannot serve on 127.0.0.1:{port}"))?;
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
            let c = &summary.counts;
            println!(
                "watch_events: {} invocations in {:.1?}",
                summary.invocations,
                started.elapsed()
            );
            println!("  records in       {:>7}", c.records_in);
            println!("  silver           {:>7}", c.silver);
            println!("  quarantined      {:>7}", c.quarantined);
            for (rule, n) in &c.quarantined_by_rule {
                println!("    {rule:<26} {n:>5}");
            }
            println!("  duplicates       {:>7}", c.duplicates_dropped);
            let balanced = if c.balanced() { "yes" } else { "NO" };
            println!("  in = silver + quarantined + duplicates: {balanced}");
            println!(
                "lake: {}  (silver/events/watch, quarantine/events/watch, ops/runs/watch_events)",
                state.lake.describe()
            );
            anyhow::ensure!(c.balanced(), "records were lost: the counts do not add up");
        }
    }
    Ok(())
}
