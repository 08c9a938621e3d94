//! Watch events enriched while their batch is planned (issue 17): each accepted event carries
//! the subscription its user had at the event's own time, in the same silver file.

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, TimeZone, Utc};
use movielake_core::enrich::Dimension;
use movielake_core::host::EventHubBatch;
use movielake_core::output::manifest::OutputKind;
use movielake_core::pipelines::watch_events::{land, plan};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use super::watch_contract;

fn micros(t: &str) -> i64 {
    t.parse::<DateTime<Utc>>().expect("time").timestamp_micros()
}

fn event(n: u32, user: &str, occurred_at: &str) -> String {
    json!({
        "event_id": format!("00000000-0000-4000-8000-{n:012}"),
        "event_type": "watch_started",
        "user_id": user,
        "session_id": "s-1",
        "movie_id": 550,
        "occurred_at": occurred_at,
        "device": "tv",
        "country": "FR",
        "position_seconds": 0,
        "duration_seconds": 8340
    })
    .to_string()
}

/// u1 upgrades from basic to premium at 10:30 within one session; u2 has no subscription;
/// u3 was deleted at 10:00; nobody is u4.
fn dimension() -> Dimension {
    let mut d = Dimension::builder();
    d.user("u1", micros("2024-01-01T00:00:00Z"), None, Some("FR"));
    d.subscription(
        "u1",
        "s1",
        micros("2024-01-01T00:00:00Z"),
        Some(micros("2024-05-01T10:30:00Z")),
        Some("basic"),
        Some("active"),
    );
    d.subscription(
        "u1",
        "s1",
        micros("2024-05-01T10:30:00Z"),
        None,
        Some("premium"),
        Some("active"),
    );
    d.user("u2", micros("2024-01-01T00:00:00Z"), None, Some("DE"));
    d.user(
        "u3",
        micros("2024-01-01T00:00:00Z"),
        Some(micros("2024-05-01T10:00:00Z")),
        Some("IT"),
    );
    d.build()
}

fn planned_silver(dimension: Option<&Dimension>) -> RecordBatch {
    let bodies = vec![
        event(1, "u1", "2024-05-01T10:29:59.999999Z"),
        event(2, "u1", "2024-05-01T10:30:00Z"),
        event(3, "u2", "2024-05-01T10:31:00Z"),
        event(4, "u3", "2024-05-01T10:32:00Z"),
        event(5, "u4", "2024-05-01T10:33:00Z"),
    ];
    let enqueued = Utc.with_ymd_and_hms(2024, 5, 1, 10, 40, 0).unwrap();
    let batch = EventHubBatch {
        partition_id: "0".into(),
        sequence_numbers: (1..=bodies.len() as i64).collect(),
        enqueued_times: vec![Some(enqueued); bodies.len()],
        bodies,
        ..Default::default()
    };
    let contract = watch_contract();
    let bronze = land(&batch, enqueued).expect("bronze");
    let planned = plan(&contract, &batch, enqueued, &bronze, &[], dimension).expect("plan");
    assert_eq!(planned.counts.silver, 5, "{:?}", planned.logs);
    let silver: Vec<_> = planned.writes.iter().filter(|w| w.kind == OutputKind::Silver).collect();
    assert_eq!(silver.len(), 1, "one hour, one part");
    let reader = ParquetRecordBatchReaderBuilder::try_new(silver[0].bytes.clone())
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("rows");
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("one batch")
}

fn text(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let c = batch.column_by_name(column).expect(column).as_string::<i32>();
    (0..c.len())
        .map(|i| (!c.is_null(i)).then(|| c.value(i).to_string()))
        .collect()
}

fn some(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| (!v.is_empty()).then(|| v.to_string())).collect()
}

#[test]
fn each_event_carries_the_subscription_its_user_had_at_that_moment() {
    let silver = planned_silver(Some(&dimension()));
    assert_eq!(
        text(&silver, "dimension_status"),
        some(&["matched", "matched", "no_subscription", "user_unknown", "user_unknown"])
    );
    // One session, an upgrade between two events: each has the plan it was watched under;
    // the event exactly at the new version's start takes the new version.
    assert_eq!(text(&silver, "plan"), some(&["basic", "premium", "", "", ""]));
    assert_eq!(text(&silver, "subscription_id"), some(&["s1", "s1", "", "", ""]));
    assert_eq!(
        text(&silver, "subscription_status"),
        some(&["active", "active", "", "", ""])
    );
    assert_eq!(text(&silver, "user_country"), some(&["FR", "FR", "DE", "", ""]));
    let from = silver
        .column_by_name("dimension_valid_from")
        .expect("valid_from")
        .as_primitive::<TimestampMicrosecondType>();
    let from: Vec<Option<i64>> = (0..from.len())
        .map(|i| (!from.is_null(i)).then(|| from.value(i)))
        .collect();
    assert_eq!(
        from,
        [
            Some(micros("2024-01-01T00:00:00Z")),
            Some(micros("2024-05-01T10:30:00Z")),
            Some(micros("2024-01-01T00:00:00Z")),
            None,
            None
        ]
    );
    // The event's own columns are untouched by it.
    assert_eq!(text(&silver, "country"), some(&["FR"; 5]));
}

#[test]
fn without_a_dimension_every_event_is_user_unknown_and_still_lands() {
    let silver = planned_silver(None);
    assert_eq!(text(&silver, "dimension_status"), some(&["user_unknown"; 5]));
    assert_eq!(text(&silver, "plan"), vec![None; 5]);
}
