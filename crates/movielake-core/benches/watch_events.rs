//! `cargo bench -p movielake-core`: the pure watch-events path (host payload decode, bronze and
//! silver Parquet encoding, contract, de-duplication) on one core, without any IO. The whole
//! flow with the lake and the HTTP handler, beside DuckDB, is `movielake bench events`.
//!
//! It also prints a floor: what the libraries alone take for the same batch (unescaping the
//! host's double-wrapped bodies, zstd-compressing them into a one-column Parquet file, writing
//! the silver columns from ready Arrow arrays), with no checking at all. No design built on
//! serde_json, arrow-rs and zstd goes below it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::{DateTime, Utc};
use movielake_core::host::{decode_event_hub_batch, decode_invocation, event_hub_request};
use movielake_core::output::silver::{Lineage, accepted_batch};
use movielake_core::pipelines::watch_events::{land, plan};
use movielake_core::routing::route::RunContext;
use movielake_core::sources::events::sample::{SampleOptions, watch_events};
use movielake_core::{Contract, Value, Verdict, route};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let contract = Contract::from_toml(
        "contracts/watch_events.toml",
        include_str!("../../../contracts/watch_events.toml"),
    )
    .expect("contract");
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let events = env("EVENTS", 50_000);
    let runs = env("RUNS", 5);
    let start: DateTime<Utc> = DateTime::from_timestamp(1_714_557_600, 0).unwrap_or_default();
    let generated = watch_events(&SampleOptions {
        seed: 1,
        count: events,
        start,
        bad_share: 0.04,
        duplicate_share: 0.02,
        sessions_per_second: 2_500.0,
        users: movielake_core::sources::events::sample::DEFAULT_USERS,
    });
    let pairs: Vec<(String, DateTime<Utc>)> = generated
        .into_iter()
        .map(|e| (e.body, e.occurred_at + chrono::Duration::milliseconds(350)))
        .collect();
    let body = event_hub_request("events", "ingest_watch_events", "0", 0, &pairs)
        .to_string()
        .into_bytes();

    let mut stages = [Duration::MAX; 4];
    for _ in 0..runs {
        let t = Instant::now();
        let inv = decode_invocation(&body).expect("decode");
        let batch = decode_event_hub_batch(&inv, "events").expect("batch");
        let t1 = Instant::now();
        let bronze = land(&batch, start).expect("bronze");
        let t2 = Instant::now();
        let planned = plan(&contract, &batch, start, &bronze, &[], None).expect("plan");
        let t3 = Instant::now();
        assert!(planned.counts.balanced());
        for (slot, d) in stages.iter_mut().zip([t1 - t, t2 - t1, t3 - t2, t3 - t]) {
            *slot = (*slot).min(d);
        }
    }

    let inv = decode_invocation(&body).expect("decode");
    let batch = decode_event_hub_batch(&inv, "events").expect("batch");
    let metadata = [
        ("sequence_number", Value::Int64(1)),
        ("enqueued_at", Value::Timestamp(start)),
    ];
    let check = best_of(runs, || {
        let valid = (batch.bodies.iter())
            .filter(|b| matches!(contract.check_json_with(b, &metadata), Verdict::Valid(_)))
            .count();
        assert!(valid > 0);
    });

    println!(
        "watch events, {events} per batch ({} request bytes, {} body bytes per event), best of {runs}, one core:",
        body.len() / events.max(1),
        batch.bodies.iter().map(String::len).sum::<usize>() / events.max(1)
    );
    let line = |name: &str, d: Duration| {
        println!(
            "  {name:<46} {:>8.1} ms  {:>10.0} events/s  {:>6.2} µs/event",
            d.as_secs_f64() * 1e3,
            events as f64 / d.as_secs_f64(),
            d.as_secs_f64() * 1e6 / events as f64
        )
    };
    let names = [
        "decode host payload",
        "bronze Parquet",
        "contract+dedupe+silver Parquet",
        "total",
    ];
    for (name, d) in names.iter().zip(stages) {
        line(name, d);
    }
    line("  of which the contract check alone", check);

    println!("floor: the libraries alone, no checking (same batch):");
    line("unescape bodies (serde_json, typed)", unescape_floor(&body, runs));
    line(
        "bronze body column (zstd 1, no dict/stats)",
        bronze_floor(&batch.bodies, runs),
    );
    let ctx = RunContext {
        run_id: "bench".into(),
        ingested_at: start,
    };
    let routed = route(
        &contract,
        (batch.bodies.iter().enumerate()).map(|(i, b)| movielake_core::SourceRecord {
            metadata: vec![
                ("sequence_number", Value::Int64(i as i64)),
                ("enqueued_at", Value::Timestamp(start)),
            ],
            ..movielake_core::SourceRecord::json(
                b.clone(),
                movielake_core::routing::quarantine::SourcePointer::event("bronze/x", "0", i as i64),
            )
        }),
        &ctx,
    );
    let rows: Vec<_> = routed.silver.iter().collect();
    let lineage = Lineage {
        ingested_at: start,
        run_id: "bench",
        dimension: None,
    };
    let silver = accepted_batch(&contract, &rows, &lineage).expect("silver batch");
    line(
        "silver columns from Arrow (zstd 1, no stats)",
        silver_floor(&silver, runs),
    );
}

#[derive(serde::Deserialize)]
struct Request {
    #[serde(rename = "Data")]
    data: Data,
}

#[derive(serde::Deserialize)]
struct Data {
    events: String,
}

fn unescape_floor(body: &[u8], runs: usize) -> Duration {
    best_of(runs, || {
        let request: Request = serde_json::from_slice(body).expect("request");
        let bodies: Vec<String> = serde_json::from_str(&request.data.events).expect("bodies");
        assert!(!bodies.is_empty());
    })
}

fn cheapest_zstd() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .build()
}

fn bronze_floor(bodies: &[String], runs: usize) -> Duration {
    let schema = Arc::new(Schema::new(vec![Field::new("body", DataType::Utf8, false)]));
    best_of(runs, || {
        let column: ArrayRef = Arc::new(StringArray::from_iter_values(bodies));
        let batch = RecordBatch::try_new(schema.clone(), vec![column]).expect("batch");
        let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(cheapest_zstd())).expect("writer");
        writer.write(&batch).expect("write");
        assert!(!writer.into_inner().expect("close").is_empty());
    })
}

fn silver_floor(batch: &RecordBatch, runs: usize) -> Duration {
    best_of(runs, || {
        let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(cheapest_zstd())).expect("writer");
        writer.write(batch).expect("write");
        assert!(!writer.into_inner().expect("close").is_empty());
    })
}
