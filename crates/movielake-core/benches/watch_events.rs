//! `cargo bench -p movielake-core`: the pure watch-events path (host payload decode, bronze and
//! silver Parquet encoding, contract, de-duplication) on one core, without any IO. The whole
//! flow with the lake and the HTTP handler, beside DuckDB, is `movielake bench events`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use movielake_core::Contract;
use movielake_core::host::{decode_event_hub_batch, decode_invocation, event_hub_request};
use movielake_core::pipelines::watch_events::{land, plan};
use movielake_core::sample::{SampleOptions, watch_events};

fn main() {
    let contract = Contract::from_toml(
        "contracts/watch_events.toml",
        include_str!("../../../contracts/watch_events.toml"),
    )
    .expect("contract");
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let start: DateTime<Utc> = DateTime::from_timestamp(1_714_557_600, 0).unwrap_or_default();
    let generated = watch_events(&SampleOptions {
        seed: 1,
        count: events,
        start,
        bad_share: 0.04,
        duplicate_share: 0.02,
        sessions_per_second: 2_500.0,
    });
    let pairs: Vec<(String, DateTime<Utc>)> = generated
        .into_iter()
        .map(|e| (e.body, e.occurred_at + chrono::Duration::milliseconds(350)))
        .collect();
    let body = event_hub_request("events", "ingest_watch_events", "0", 0, &pairs)
        .to_string()
        .into_bytes();

    let runs: usize = std::env::var("RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut stages = [Duration::MAX; 4];
    for _ in 0..runs {
        let t = Instant::now();
        let inv = decode_invocation(&body).expect("decode");
        let batch = decode_event_hub_batch(&inv, "events").expect("batch");
        let t1 = Instant::now();
        let bronze = land(&batch, start).expect("bronze");
        let t2 = Instant::now();
        let planned = plan(&contract, &batch, start, &bronze, &[]).expect("plan");
        let t3 = Instant::now();
        assert!(planned.counts.balanced());
        for (slot, d) in stages.iter_mut().zip([t1 - t, t2 - t1, t3 - t2, t3 - t]) {
            *slot = (*slot).min(d);
        }
    }
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!("watch events, {events} per batch, best of {runs}, one core:");
    for (name, d) in [
        "decode host payload",
        "bronze Parquet",
        "contract+dedupe+silver Parquet",
        "total",
    ]
    .iter()
    .zip(stages)
    {
        println!(
            "  {name:<32} {:>8.1} ms  {:>10.0} events/s",
            d.as_secs_f64() * 1e3,
            rate(d)
        );
    }
}
