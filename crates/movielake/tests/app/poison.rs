//! Batches that cannot be processed as they are: a poison batch (one write always fails) must
//! not stall its partition, and a bodies array with an unreadable element must stay per event.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use movielake::handler::AppState;
use movielake::lake::{Lake, LakeError, LocalLake};
use serde_json::{Value, json};

use crate::faults::{Fault, FaultyLake};
use crate::handler::{event, files, host_request, post_to};
use crate::watch_events::{InProcess, contracts_dir, id, quarantine_lines, serve_state, silver_event_ids};

/// Fails every write under `prefix` after the first `allowed` of them, as an object that can
/// never be written would (a bug, a policy, a full container).
fn refusing(dir: &Path, prefix: &'static str, allowed: usize) -> Arc<FaultyLake> {
    let seen = AtomicUsize::new(0);
    Arc::new(FaultyLake::new(LocalLake::new(dir), move |call, path| {
        if call.writes() && path.starts_with(prefix) && seen.fetch_add(1, Ordering::SeqCst) >= allowed {
            return Fault::Fail(LakeError::Other {
                path: path.into(),
                message: "injected: this object can never be written".into(),
            });
        }
        Fault::Pass
    }))
}

async fn start(lake: Arc<dyn Lake>, poison_after: u32) -> InProcess {
    let contracts = movielake::config::load_contracts(Some(&contracts_dir())).expect("contracts");
    let state = AppState::new(lake, contracts, chrono::Duration::hours(24)).with_poison_after_attempts(poison_after);
    serve_state(state).await
}

/// The host's request for `bodies`, as its `retry`-th retry (`Metadata.RetryContext`).
fn attempt(bodies: &[String], retry: u64) -> String {
    let mut request: Value = serde_json::from_str(&host_request(bodies, 700)).expect("request");
    request["Metadata"]["RetryContext"] = json!({"RetryCount": retry, "MaxRetryCount": -1});
    request.to_string()
}

/// Four events over two event hours (two silver parts), one of them invalid.
fn batch() -> Vec<String> {
    let mut late = event(&id(3), "watch_finished", 100);
    late["occurred_at"] = json!("2024-05-01T09:30:00Z");
    let mut bad = event(&id(4), "watch_started", 0);
    bad["country"] = json!("France");
    vec![
        event(&id(1), "watch_started", 0).to_string(),
        event(&id(2), "watch_started", 0).to_string(),
        late.to_string(),
        bad.to_string(),
    ]
}

fn manifests(root: &Path) -> Vec<Value> {
    files(root, "ops/runs")
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(root.join(p)).expect("read")).expect("manifest"))
        .collect()
}

/// The two ways an attempt can fail after bronze: before its silver commit (a data file is
/// written, the table never names it) or after it (the ledger cannot be written: the rows are
/// in the table). Either way the poison landing leaves every event once, in quarantine.
#[tokio::test]
async fn a_batch_that_always_fails_is_landed_whole_in_quarantine_after_the_set_attempts() {
    for (prefix, allowed, committed) in [("silver/", 1, false), ("ops/ledger/", 0, true)] {
        a_batch_that_always_fails(prefix, allowed, committed).await;
    }
}

async fn a_batch_that_always_fails(prefix: &'static str, allowed: usize, committed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(refusing(dir.path(), prefix, allowed), 3).await;
    let bodies = batch();

    for retry in 0..2 {
        let (status, _, body) = post_to(&server.base, "ingest_watch_events", attempt(&bodies, retry), false).await;
        assert_eq!(
            status,
            500,
            "{prefix}: attempt {} fails for the host to retry: {body}",
            retry + 1
        );
    }
    if committed {
        assert!(
            !silver_event_ids(dir.path()).is_empty(),
            "the first attempt committed its rows before the ledger failed"
        );
    } else {
        assert!(
            silver_event_ids(dir.path()).is_empty(),
            "an attempt that could not commit leaves nothing a reader sees"
        );
        assert!(
            crate::handler::raw_files(dir.path(), "silver/events/watch")
                .iter()
                .any(|p| p.ends_with(".parquet")),
            "though its first data file is in the table's folder"
        );
    }
    let record: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(&files(dir.path(), "ops/attempts")[0])).unwrap())
            .unwrap();
    assert_eq!(record["attempts"], json!(2));
    assert!(record["last_error"].as_str().unwrap().contains("can never be written"));

    let (status, _, body) = post_to(&server.base, "ingest_watch_events", attempt(&bodies, 2), false).await;
    assert_eq!(
        status, 200,
        "the third attempt lands it and the partition moves on: {body}"
    );
    assert!(body.contains("POISON"), "{body}");
    assert!(body.contains("in=4 silver=0 quarantined=4 duplicates=0"), "{body}");
    assert_eq!(
        body.contains("row(s) of an earlier attempt deleted"),
        committed,
        "{prefix}: {body}"
    );

    // Nothing lost, nothing twice: every event once, in quarantine, and none in silver.
    assert!(
        silver_event_ids(dir.path()).is_empty(),
        "no row of the batch is left in silver"
    );
    let q = quarantine_lines(dir.path());
    assert_eq!(q.len(), 4, "the whole batch, the invalid event once");
    for (line, raw) in q.iter().zip(&bodies) {
        assert_eq!(line["stage"], json!("poison"));
        assert_eq!(line["raw"], json!(raw));
        assert_eq!(line["reasons"][0]["rule"], json!("poison_batch"));
        assert!(
            line["reasons"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("failed 3 attempts")
        );
    }
    assert_eq!(
        files(dir.path(), "bronze").len(),
        1,
        "the batch is in bronze as received"
    );

    let manifests = manifests(dir.path());
    assert_eq!(manifests.len(), 1);
    let m = &manifests[0];
    assert_eq!(m["poison"]["attempts"], json!(3));
    assert!(m["poison"]["error"].as_str().unwrap().contains("can never be written"));
    assert_eq!(m["counts"]["records_in"], json!(4));
    assert_eq!(m["counts"]["quarantined"], json!(4));
    assert_eq!(m["counts"]["silver"], json!(0));

    // On-call sees it in `movielake status`.
    let statuses = movielake::cli::status::summarize(&LocalLake::new(dir.path()), None)
        .await
        .expect("status");
    let report = movielake::cli::status::render(&statuses);
    assert!(report.contains("POISON: 1 input(s)"), "{report}");
    assert!(report.contains("3 attempts"), "{report}");
    assert!(report.contains("nothing lost"), "{report}");
}

#[tokio::test]
async fn the_hosts_retry_count_alone_is_enough_and_zero_means_retry_forever() {
    let refusing = |dir: &Path| refusing(dir, "silver/", 0);
    // An instance that never saw the earlier attempts still knows them from the host.
    let dir = tempfile::tempdir().unwrap();
    let server = start(refusing(dir.path()), 10).await;
    let (status, _, body) = post_to(&server.base, "ingest_watch_events", attempt(&batch(), 9), false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(quarantine_lines(dir.path()).len(), 4);

    let dir = tempfile::tempdir().unwrap();
    let server = start(refusing(dir.path()), 0).await;
    for retry in [0, 50, 5000] {
        let (status, _, body) = post_to(&server.base, "ingest_watch_events", attempt(&batch(), retry), false).await;
        assert_eq!(status, 500, "0 disables the escape hatch: {body}");
    }
    assert!(quarantine_lines(dir.path()).is_empty());
}

#[tokio::test]
async fn an_unreadable_element_of_the_bodies_array_is_one_event_not_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Arc::new(LocalLake::new(dir.path())), 10).await;
    let good: Vec<String> = (1..=3).map(|n| event(&id(n), "watch_started", 0).to_string()).collect();
    // The array the host hands over, with a lone surrogate escape at the array level (not in
    // an event's JSON): the array as a whole is not valid JSON.
    let bad_element = r#""{\"event_id\":\"x\ud800\"}""#;
    let array = format!(
        "[{},{bad_element},{}]",
        serde_json::to_string(&good[..2]).unwrap().trim_matches(['[', ']']),
        serde_json::to_string(&good[2]).unwrap()
    );
    assert!(
        serde_json::from_str::<Vec<String>>(&array).is_err(),
        "the array must be unreadable as a whole"
    );
    let mut request: Value =
        serde_json::from_str(&host_request(&[good.clone(), vec!["x".into()]].concat(), 40)).unwrap();
    request["Data"]["events"] = Value::String(array);

    let (status, _, body) = post_to(&server.base, "ingest_watch_events", request.to_string(), false).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("in=4 silver=3 quarantined=1 duplicates=0"),
        "counts stay per event: {body}"
    );
    assert_eq!(silver_event_ids(dir.path()), vec![id(1), id(2), id(3)]);
    let q = quarantine_lines(dir.path());
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["raw"], json!(bad_element), "the raw text as it stood in the array");
    assert_eq!(q[0]["stage"], json!("decode"));
    assert_eq!(q[0]["reasons"][0]["rule"], json!("encoding"));
    assert_eq!(
        q[0]["source"]["sequence_number"],
        json!(42),
        "the third event of the batch"
    );
}
