//! Watch events from an Event Hub batch: bronze Parquet of the batch as received, then the
//! contract, de-duplication within the batch, silver parts per event hour, quarantine.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Timelike, Utc};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::contract::Contract;
use crate::contract::validate::{Reason, Rejection, Stage};
use crate::contract::value::Value;
use crate::enrich::Dimension;
use crate::host::EventHubBatch;
use crate::output::column_writer::ColumnParallelWriter;
use crate::output::manifest::{Counts, OutputKind, Poison};
use crate::output::naming::stable_id;
use crate::output::plan::{Plan, PlannedWrite, routed_writes};
use crate::output::silver::EncodeError;
use crate::routing::ledger::{self, LedgerBucket, LedgerEntry, Seen};
use crate::routing::quarantine::SourcePointer;
use crate::routing::route::{PrehashedMap, Routed, RunContext, SourceRecord, key_text, quarantine, route};

pub const PIPELINE: &str = "watch_events";

/// The identity of a batch: its partition and sequence range. A redelivered batch has the same
/// identity, so every name (and byte) derived from it is the same.
fn batch_identity(batch: &EventHubBatch) -> String {
    match (batch.sequence_numbers.iter().min(), batch.sequence_numbers.iter().max()) {
        (Some(first), Some(last)) if batch.misaligned.is_none() => format!("{first}-{last}"),
        _ => format!("body-{}", stable_id(&batch.bodies.join("\u{1e}"))),
    }
}

/// What names and times of a batch derive from: its identity, never the clock of the attempt.
struct BatchFacts {
    identity: String,
    partition_id: String,
    ingested_at: DateTime<Utc>,
    bronze_path: String,
}

fn facts(batch: &EventHubBatch, fallback_time: DateTime<Utc>) -> BatchFacts {
    let identity = batch_identity(batch);
    let partition_id = sanitize(&batch.partition_id);
    let times = batch.enqueued_times.iter().flatten();
    let ingested_at = times.clone().max().copied().unwrap_or(fallback_time);
    let landed_at = times.min().copied().unwrap_or(ingested_at);
    let bronze_path = format!(
        "bronze/events/watch/date={}/hour={:02}/minute={:02}/partition={partition_id}/seq={identity}.parquet",
        landed_at.format("%Y-%m-%d"),
        landed_at.hour(),
        landed_at.minute()
    );
    BatchFacts {
        identity,
        partition_id,
        ingested_at,
        bronze_path,
    }
}

/// The bronze object of a batch: written before anything else is even read.
pub fn land(batch: &EventHubBatch, fallback_time: DateTime<Utc>) -> Result<PlannedWrite, EncodeError> {
    Ok(PlannedWrite {
        path: facts(batch, fallback_time).bronze_path,
        kind: OutputKind::Bronze,
        rows: Some(batch.bodies.len() as u64),
        bytes: encode_bronze(batch)?.into(),
    })
}

/// Plans the whole batch. `fallback_time` (the host's invocation time) is only used when no
/// event carries an enqueue time. `bronze` is what [`land`] returned; `ledger` holds the
/// existing buckets of the dedupe window ([`ledger_hours`]). `dimension` enriches the
/// accepted events when the contract asks for it (`enrich_as_of`).
pub fn plan(
    contract: &Contract,
    batch: &EventHubBatch,
    fallback_time: DateTime<Utc>,
    bronze: &PlannedWrite,
    ledger: &[&LedgerBucket],
    dimension: Option<&Dimension>,
) -> Result<Plan, EncodeError> {
    let BatchFacts {
        identity,
        partition_id,
        ingested_at,
        bronze_path,
    } = facts(batch, fallback_time);
    let ctx = RunContext {
        run_id: format!("watch-{partition_id}-{identity}"),
        ingested_at,
    };

    let records = source_records(batch, &bronze_path);
    let routed = match &batch.misaligned {
        None if batch.unreadable.is_empty() => route(contract, records.map(|(_, r)| r), &ctx),
        None => {
            // Events the host's array held unreadably (a lone surrogate escape): quarantined with
            // their raw text; the others of the batch go their usual way.
            let mut unreadable = Vec::new();
            let readable =
                records.filter_map(
                    |(i, record)| match batch.unreadable.binary_search_by_key(&i, |(at, _)| *at) {
                        Ok(at) => {
                            unreadable.push((record, &batch.unreadable[at].1));
                            None
                        }
                        Err(_) => Some(record),
                    },
                );
            let mut routed = route(contract, readable, &ctx);
            for (record, why) in unreadable {
                let rejection = Rejection {
                    stage: Stage::Decode,
                    reasons: vec![Reason::new(
                        "encoding",
                        None,
                        format!(
                            "the host's array of bodies could not be read at this event ({}); kept as sent",
                            why.detail
                        ),
                    )],
                };
                routed.quarantine.push(quarantine(contract, &ctx, record, rejection));
            }
            routed
        }
        Some(why) => {
            let mut routed = Routed::default();
            for (_, record) in records {
                let rejection = Rejection {
                    stage: Stage::Decode,
                    reasons: vec![Reason::new(
                        "batch_metadata",
                        None,
                        format!("event metadata does not line up: {why}"),
                    )],
                };
                routed.quarantine.push(quarantine(contract, &ctx, record, rejection));
            }
            routed
        }
    };

    let (routed, ledger_updates) = against_ledger(contract, batch, &ctx, routed, ledger, ingested_at);

    let mut writes = vec![bronze.clone()];
    let part_id = format!("{partition_id}-{identity}");
    writes.extend(routed_writes(
        contract,
        &routed,
        &ctx,
        &part_id,
        ingested_at.date_naive(),
        dimension,
    )?);

    let counts = Counts::of(&routed);
    let mut logs = vec![format!(
        "watch events partition {} seq {identity}: {}",
        batch.partition_id,
        counts.summary()
    )];
    if !batch.unreadable.is_empty() {
        logs.push(format!(
            "{} event(s) unreadable in the host's array (lone surrogate escapes?): quarantined with their raw text",
            batch.unreadable.len()
        ));
    }
    if let Some(why) = &batch.misaligned {
        logs.push(format!(
            "batch metadata does not line up ({why}): every event quarantined"
        ));
    }
    Ok(Plan {
        run_id: ctx.run_id,
        pipeline: PIPELINE.into(),
        date: ingested_at.date_naive(),
        inputs: vec![bronze_path],
        writes,
        counts,
        contracts: [(contract.name.clone(), contract.version)].into(),
        logs,
        ledger_updates,
        poison: None,
    })
}

/// Each event of the batch as a source record, with its index: the body as received (the raw
/// element for one the host's array held unreadably), its sequence number and enqueue time.
fn source_records<'a>(
    batch: &'a EventHubBatch,
    bronze_path: &'a str,
) -> impl Iterator<Item = (usize, SourceRecord)> + 'a {
    batch.bodies.iter().enumerate().map(move |(i, body)| {
        let raw = match batch.unreadable.binary_search_by_key(&i, |(at, _)| *at) {
            Ok(at) => batch.unreadable[at].1.raw.clone(),
            Err(_) => body.clone(),
        };
        let seq = batch.sequence_numbers.get(i).copied().unwrap_or(i as i64);
        let enqueued = batch.enqueued_times.get(i).copied().flatten();
        let metadata = vec![
            ("sequence_number", Value::Int64(seq)),
            ("enqueued_at", enqueued.map_or(Value::Null, Value::Timestamp)),
        ];
        let record = SourceRecord {
            raw,
            fields: None,
            metadata,
            pointer: SourcePointer::event(bronze_path, &batch.partition_id, seq),
        };
        (i, record)
    })
}

/// Lands a batch that failed every attempt whole in quarantine (stage `poison`, with the error),
/// so its partition moves on and nothing is lost: every event of the batch becomes one
/// quarantine record with its body as received; bronze holds the batch as well. Writes the same
/// quarantine object a normal attempt would, so a bad record of an earlier attempt is not
/// counted twice. The caller removes the batch's silver parts an earlier attempt may have left
/// ([`plan`] with no ledger names every one of them).
pub fn plan_poison(
    contract: &Contract,
    batch: &EventHubBatch,
    fallback_time: DateTime<Utc>,
    bronze: &PlannedWrite,
    poison: Poison,
) -> Result<Plan, EncodeError> {
    let BatchFacts {
        identity,
        partition_id,
        ingested_at,
        bronze_path,
    } = facts(batch, fallback_time);
    let ctx = RunContext {
        run_id: format!("watch-{partition_id}-{identity}"),
        ingested_at,
    };
    let mut routed = Routed::default();
    for (_, record) in source_records(batch, &bronze_path) {
        let rejection = Rejection {
            stage: Stage::Poison,
            reasons: vec![Reason::new(
                "poison_batch",
                None,
                format!(
                    "the batch failed {} attempts, the last with: {}; landed whole in quarantine so that \
                     partition {} moves on (the batch is in bronze at {bronze_path})",
                    poison.attempts, poison.error, batch.partition_id
                ),
            )],
        };
        routed.quarantine.push(quarantine(contract, &ctx, record, rejection));
    }
    let mut writes = vec![bronze.clone()];
    writes.extend(routed_writes(
        contract,
        &routed,
        &ctx,
        &format!("{partition_id}-{identity}"),
        ingested_at.date_naive(),
        None,
    )?);
    let counts = Counts::of(&routed);
    let logs = vec![format!(
        "POISON watch events partition {} seq {identity}: failed {} attempts ({}); landed whole in quarantine: {}",
        batch.partition_id,
        poison.attempts,
        poison.error,
        counts.summary()
    )];
    Ok(Plan {
        run_id: ctx.run_id,
        pipeline: PIPELINE.into(),
        date: ingested_at.date_naive(),
        inputs: vec![bronze_path],
        writes,
        counts,
        contracts: [(contract.name.clone(), contract.version)].into(),
        logs,
        ledger_updates: BTreeMap::new(),
        poison: Some(poison),
    })
}

/// Where the attempts of a batch are counted (`ops/`), by its identity: a redelivery of the
/// same batch finds the same record.
pub fn attempts_path(batch: &EventHubBatch, fallback_time: DateTime<Utc>) -> String {
    let BatchFacts {
        identity, partition_id, ..
    } = facts(batch, fallback_time);
    format!("ops/attempts/{PIPELINE}/partition={partition_id}/seq={identity}.json")
}

/// The ledger buckets a batch must read: its enqueue hours and the dedupe window before them.
pub fn ledger_hours(batch: &EventHubBatch, fallback_time: DateTime<Utc>, window: Duration) -> Vec<DateTime<Utc>> {
    let times = batch.enqueued_times.iter().flatten();
    let first = times.clone().min().copied().unwrap_or(fallback_time);
    let last = times.max().copied().unwrap_or(fallback_time);
    ledger::window_hours(first, last, window)
}

/// Producer duplicates from earlier batches: dropped when identical, quarantined when the body
/// differs. Returns the accepted keys to record, bucketed by enqueue hour.
fn against_ledger(
    contract: &Contract,
    batch: &EventHubBatch,
    ctx: &RunContext,
    mut routed: Routed,
    ledger: &[&LedgerBucket],
    fallback_time: DateTime<Utc>,
) -> (Routed, BTreeMap<String, LedgerBucket>) {
    let enqueued: PrehashedMap<i64, DateTime<Utc>> = batch
        .sequence_numbers
        .iter()
        .zip(&batch.enqueued_times)
        .filter_map(|(s, t)| t.map(|t| (*s, t)))
        .collect();
    let mut by_hour: BTreeMap<DateTime<Utc>, Vec<(u128, LedgerEntry)>> = BTreeMap::new();
    let capacity = routed.silver.len();
    let accepted = std::mem::replace(&mut routed.silver, Vec::with_capacity(capacity));
    for acc in accepted {
        let (Some(key_hash), Some(seq)) = (acc.key_hash, acc.pointer.sequence_number) else {
            routed.silver.push(acc);
            continue;
        };
        match ledger::lookup(ledger.iter().copied(), key_hash, acc.body_hash, seq) {
            Seen::New | Seen::Itself => {
                let hour = enqueued.get(&seq).copied().unwrap_or(fallback_time);
                let entry = LedgerEntry {
                    body_hash: acc.body_hash,
                    sequence_number: seq,
                };
                by_hour
                    .entry(ledger::hour_of(hour))
                    .or_default()
                    .push((key_hash, entry));
                routed.silver.push(acc);
            }
            Seen::Duplicate { .. } => routed.duplicates_dropped += 1,
            Seen::Conflict { first_sequence_number } => {
                let key = key_text(contract, &acc.row.values).unwrap_or_default();
                let detail = format!(
                    "key {key} was accepted from partition {} sequence {first_sequence_number} with a different body",
                    batch.partition_id
                );
                let rejection = Rejection {
                    stage: Stage::Dedupe,
                    reasons: vec![Reason::new("duplicate_key", None, detail)],
                };
                let record = SourceRecord::json(raw_of(batch, seq), acc.pointer);
                routed.quarantine.push(quarantine(contract, ctx, record, rejection));
            }
        }
    }
    let updates = by_hour
        .into_iter()
        .map(|(hour, entries)| {
            let path = ledger::bucket_path(&contract.name, &batch.partition_id, hour);
            (path, entries.into_iter().collect::<LedgerBucket>())
        })
        .collect();
    (routed, updates)
}

fn raw_of(batch: &EventHubBatch, seq: i64) -> String {
    batch
        .sequence_numbers
        .iter()
        .position(|s| *s == seq)
        .and_then(|i| batch.bodies.get(i))
        .cloned()
        .unwrap_or_default()
}

/// Keeps a partition id usable as one path segment, whatever the host sent.
fn sanitize(id: &str) -> String {
    let clean: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    if clean.is_empty() { "unknown".into() } else { clean }
}

/// The batch as received: one row per event, body untouched, with its Event Hub metadata.
pub fn encode_bronze(batch: &EventHubBatch) -> Result<Vec<u8>, EncodeError> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("body", DataType::Utf8, false),
        Field::new("partition_id", DataType::Utf8, false),
        Field::new("sequence_number", DataType::Int64, true),
        Field::new("offset", DataType::Utf8, true),
        Field::new("enqueued_time", ts, true),
        Field::new("partition_key", DataType::Utf8, true),
        Field::new("properties", DataType::Utf8, true),
    ]));
    let rows = batch.bodies.len();
    let mut body = StringBuilder::with_capacity(rows, batch.bodies.iter().map(String::len).sum());
    let mut partition_id = StringBuilder::with_capacity(rows, rows * batch.partition_id.len());
    let mut seq = Int64Builder::with_capacity(rows);
    let mut offset = StringBuilder::with_capacity(rows, batch.offsets.iter().map(String::len).sum());
    let mut enqueued = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut key = StringBuilder::with_capacity(rows, 0);
    let mut props = StringBuilder::with_capacity(rows, 2 * rows);
    for (i, b) in batch.bodies.iter().enumerate() {
        body.append_value(b);
        partition_id.append_value(&batch.partition_id);
        seq.append_option(batch.sequence_numbers.get(i).copied());
        offset.append_option(batch.offsets.get(i));
        enqueued.append_option(
            batch
                .enqueued_times
                .get(i)
                .copied()
                .flatten()
                .map(|t| t.timestamp_micros()),
        );
        key.append_option(batch.partition_keys.get(i).cloned().flatten());
        props.append_option(batch.properties.get(i).map(|p| p.to_string()));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(body.finish()),
        Arc::new(partition_id.finish()),
        Arc::new(seq.finish()),
        Arc::new(offset.finish()),
        Arc::new(enqueued.finish()),
        Arc::new(key.finish()),
        Arc::new(props.finish()),
    ];
    let record_batch = RecordBatch::try_new(schema.clone(), columns)?;
    // zstd level 1: bronze is written once per batch and rarely read; speed matters more here.
    // Min/max of whole bodies and properties prune nothing and cost a comparison per event.
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_column_statistics_enabled(ColumnPath::from("body"), EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("properties"), EnabledStatistics::None)
        .build();
    let mut writer = ColumnParallelWriter::try_new(Vec::new(), schema, properties, &record_batch, 1)?;
    writer.write(&record_batch)?;
    Ok(writer.into_inner()?)
}
