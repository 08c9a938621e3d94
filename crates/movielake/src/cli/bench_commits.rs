//! `movielake bench commits`: how many Delta commits per second one table takes from many
//! writers at once, and how long a commit waits, the way the flows commit (a data file written
//! into the table's folder through the lake port, then one commit naming it, with a
//! transaction id). Saturated (every writer commits back to back: the table's capacity) and
//! paced (every writer commits once per interval, as an Event Hub partition does when the
//! trigger batches: the latency a batch sees, and from it the freshness of an event).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use deltalake::arrow::array::{Int64Array, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use crate::lake::{Lake, PutMode};
use crate::tables::{Committed, DataFile, FileCommit, Replace, Tables, Txn};

#[derive(Debug, Clone, clap::Args)]
pub struct CommitsArgs {
    /// Concurrent writers (each one an Event Hub partition), one run per value.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    pub writers: Vec<usize>,
    /// How long each run lasts.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Each writer commits once per this many milliseconds (0: back to back, the saturated
    /// run). The paced run is what a partition does when the trigger batches its events.
    #[arg(long, value_delimiter = ',', default_value = "0,1000")]
    pub pace_ms: Vec<u64>,
    /// The window the trigger fills a batch in (`maxWaitTime`, or batch size / rate): an
    /// event waits on average half of it before its batch is invoked. Used for the freshness
    /// estimate of the paced run.
    #[arg(long, default_value_t = 1000)]
    pub batch_window_ms: u64,
}

struct Run {
    writers: usize,
    pace_ms: u64,
    commits: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    attempts: u64,
}

pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn command(args: CommitsArgs, lake: Arc<dyn Lake>, tables: Arc<Tables>) -> anyhow::Result<()> {
    println!("lake: {}", lake.describe());
    println!("| writers | pace | commits | commits/s | commit p50 ms | commit p99 ms | attempts/commit |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut paced = Vec::new();
    for &writers in &args.writers {
        for &pace_ms in &args.pace_ms {
            let run = one_run(&args, writers, pace_ms, lake.clone(), tables.clone()).await?;
            let mut sorted = run.latencies.clone();
            sorted.sort();
            println!(
                "| {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.2} |",
                run.writers,
                if run.pace_ms == 0 {
                    "back to back".to_string()
                } else {
                    format!("every {} ms", run.pace_ms)
                },
                run.commits,
                run.commits as f64 / run.elapsed.as_secs_f64(),
                percentile(&sorted, 0.5).as_secs_f64() * 1e3,
                percentile(&sorted, 0.99).as_secs_f64() * 1e3,
                run.attempts as f64 / run.commits.max(1) as f64,
            );
            if pace_ms > 0 {
                paced.push((run, sorted));
            }
        }
    }
    for (run, sorted) in paced {
        // An event waits for its batch (uniform over the window) and then for the commit:
        // the freshness percentiles of the sum, sampled over the measured commit latencies.
        let window = args.batch_window_ms as f64;
        let mut freshness: Vec<f64> = Vec::with_capacity(sorted.len() * 100);
        for latency in &sorted {
            for k in 0..100 {
                let wait = window * ((k as f64 + 0.5) / 100.0);
                freshness.push(wait + latency.as_secs_f64() * 1e3);
            }
        }
        freshness.sort_by(f64::total_cmp);
        let at = |p: f64| freshness[((freshness.len() as f64 - 1.0) * p) as usize];
        println!(
            "\nfreshness with {} writers committing every {} ms and a {} ms batch window: \
             enqueued -> visible in silver p50 {:.0} ms, p99 {:.0} ms",
            run.writers,
            run.pace_ms,
            args.batch_window_ms,
            at(0.5),
            at(0.99)
        );
    }
    Ok(())
}

async fn one_run(
    args: &CommitsArgs,
    writers: usize,
    pace_ms: u64,
    lake: Arc<dyn Lake>,
    tables: Arc<Tables>,
) -> anyhow::Result<Run> {
    let name = format!(
        "silver/bench/commits_{writers}_{pace_ms}_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut handles = Vec::new();
    for writer in 0..writers {
        let (lake, tables, name, schema) = (lake.clone(), tables.clone(), name.clone(), schema.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut attempts = 0u64;
            let mut n: i64 = 0;
            // Writers start spread over one pace interval, as partitions do.
            if pace_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pace_ms * writer as u64 / writers as u64)).await;
            }
            while Instant::now() < deadline {
                let tick = Instant::now();
                let ids: Vec<i64> = (0..100).map(|r| (writer as i64) << 40 | n << 8 | r).collect();
                let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(ids))])?;
                let bytes = parquet_bytes(&batch)?;
                let file = format!("part-{writer}-{n}.parquet");
                lake.put(&format!("{name}/{file}"), bytes.clone().into(), PutMode::Overwrite)
                    .await?;
                let commit = FileCommit {
                    schema: schema.clone(),
                    partition_by: Vec::new(),
                    files: vec![DataFile {
                        path: file,
                        size: bytes.len() as u64,
                        rows: 100,
                        partition_values: Vec::new(),
                    }],
                    replace: Replace::Nothing,
                    txn: Some(Txn {
                        app_id: format!("bench-{writer}"),
                        version: n,
                    }),
                };
                match tables.commit_files(&name, &commit).await? {
                    Committed::Version { attempts: a, .. } => attempts += u64::from(a),
                    Committed::AlreadyCommitted { .. } => anyhow::bail!("writer {writer}: commit {n} seen twice"),
                }
                latencies.push(tick.elapsed());
                n += 1;
                if pace_ms > 0 {
                    let next = tick + Duration::from_millis(pace_ms);
                    tokio::time::sleep_until(next.into()).await;
                }
            }
            anyhow::Ok((latencies, attempts))
        }));
    }
    let mut latencies = Vec::new();
    let mut attempts = 0;
    for handle in handles {
        let (l, a) = handle.await.context("writer task")??;
        latencies.extend(l);
        attempts += a;
    }
    let elapsed = started.elapsed();
    // The table must hold every commit once: a benchmark that lost rows would be measuring
    // the wrong thing.
    let rows = tables
        .sql(&name, "SELECT count(*) AS n FROM t")
        .await?
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().map(|a| a.value(0)))
        .unwrap_or(-1);
    anyhow::ensure!(
        rows == latencies.len() as i64 * 100,
        "{name}: {rows} rows for {} commits",
        latencies.len()
    );
    Ok(Run {
        writers,
        pace_ms,
        commits: latencies.len(),
        elapsed,
        latencies,
        attempts,
    })
}

fn parquet_bytes(batch: &RecordBatch) -> anyhow::Result<Vec<u8>> {
    let mut writer = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None)?;
    writer.write(batch)?;
    Ok(writer.into_inner()?)
}
