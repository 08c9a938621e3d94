//! The watch-events flow end to end over HTTP: duplicates, bad input, faults and replays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use movielake::handler::{AppState, serve_on};
use movielake::lake::{AzureAuth, AzureBlobLake, Lake, LocalLake};
use serde_json::{Value, json};

use crate::faults::{Fault, FaultyLake, outage};
use crate::handler::{event, host_request, post_to};

pub fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts")
}

/// `movielake`'s real router on an ephemeral 127.0.0.1 port, in this process (so the test can
/// hand it a lake that fails on purpose).
pub struct InProcess {
    pub base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(lake: Arc<dyn Lake>) -> InProcess {
    let contracts = movielake::config::load_contracts(Some(&contracts_dir())).expect("contracts");
    serve_state(AppState::new(lake, contracts, chrono::Duration::hours(24))).await
}

/// The real router in this process, with this state.
pub async fn serve_state(state: AppState) -> InProcess {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_on(listener, state, async move {
        let _ = stopped.await;
    }));
    InProcess { base, _stop: stop }
}

async fn ingest(server: &InProcess, bodies: &[String], first_seq: i64) -> (u16, String) {
    let (status, _, body) = post_to(
        &server.base,
        "ingest_watch_events",
        host_request(bodies, first_seq),
        false,
    )
    .await;
    (status, body)
}

/// Every object of a local lake and its bytes, but run manifests and failed-attempt records.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    crate::handler::files(root, "")
        .into_iter()
        // Bookkeeping of the attempts, not data: manifests and failed-attempt records hold
        // wall-clock times, and a replay after a fault has a record a clean run has not.
        .filter(|p| !p.starts_with("ops/runs/") && !p.starts_with("ops/attempts/"))
        .map(|p| {
            let bytes = std::fs::read(root.join(&p)).expect("read");
            (p, bytes)
        })
        .collect()
}

pub fn silver_event_ids(root: &Path) -> Vec<String> {
    use arrow_array::{Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut ids = Vec::new();
    for path in crate::handler::files(root, "silver") {
        let file = std::fs::File::open(root.join(path)).expect("open");
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader")
        {
            let batch = batch.expect("batch");
            let column = batch.column_by_name("event_id").expect("event_id column");
            let strings = column.as_any().downcast_ref::<StringArray>().expect("utf8");
            ids.extend((0..strings.len()).map(|i| strings.value(i).to_string()));
        }
    }
    ids.sort();
    ids
}

pub fn quarantine_lines(root: &Path) -> Vec<Value> {
    crate::handler::files(root, "quarantine")
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(root.join(p))
                .expect("read")
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .map(|l| serde_json::from_str(&l).expect("json line"))
        .collect()
}

pub fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[tokio::test]
async fn redeliveries_and_producer_duplicates_never_duplicate_silver() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(Arc::new(LocalLake::new(dir.path()))).await;
    let a: Vec<String> = (1..=3).map(|n| event(&id(n), "watch_started", 0).to_string()).collect();
    let mut changed = event(&id(1), "watch_started", 0);
    changed["device"] = json!("web");
    let b = vec![
        a[1].clone(),
        event(&id(4), "watch_started", 0).to_string(),
        changed.to_string(),
    ];

    for _ in 0..3 {
        let (status, body) = ingest(&server, &a, 0).await; // first delivery, then two redeliveries
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("in=3 silver=3 quarantined=0 duplicates=0"),
            "a redelivery keeps its own events: {body}"
        );
    }
    for _ in 0..2 {
        let (status, body) = ingest(&server, &b, 3).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("in=3 silver=1 quarantined=1 duplicates=1 (duplicate_key=1)"),
            "{body}"
        );
    }
    assert_eq!(
        silver_event_ids(dir.path()),
        vec![id(1), id(2), id(3), id(4)],
        "every event once in silver"
    );
    let q = quarantine_lines(dir.path());
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["stage"], json!("dedupe"));
    assert_eq!(q[0]["raw"], json!(changed.to_string()));
    assert!(
        q[0]["reasons"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("partition 0 sequence 0 with a different body")
    );
}

#[tokio::test]
async fn every_kind_of_bad_input_is_quarantined_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(Arc::new(LocalLake::new(dir.path()))).await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut e = event(&id(99), "watch_started", 0);
        f(&mut e);
        e.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("definitely not json".into(), "json"),
        ("[1, 2, 3]".into(), "json_object"),
        (r#"{"event_id": "\ud800 lone surrogate"}"#.into(), "json"),
        (
            with(&|e| {
                e.as_object_mut().unwrap().remove("user_id");
            }),
            "required",
        ),
        (with(&|e| e["movie_id"] = json!("550")), "type"),
        (with(&|e| e["movie_id"] = json!(-3)), "min"),
        (with(&|e| e["position_seconds"] = json!(-1)), "min"),
        (
            with(&|e| e["duration_seconds"] = json!(9_223_372_036_854_775_807u64 as f64)),
            "type",
        ),
        (
            with(&|e| e["occurred_at"] = json!("2100-01-01T00:00:00Z")),
            "not_after_enqueue",
        ),
        (with(&|e| e["occurred_at"] = json!("1999-12-31T23:59:59Z")), "min"),
        (with(&|e| e["event_type"] = json!("watch_paused")), "one_of"),
        (with(&|e| e["country"] = json!("fr")), "regex"),
        (with(&|e| e["event_id"] = json!("1234")), "regex"),
        (
            with(&|e| {
                e["event_type"] = json!("watch_finished");
                e.as_object_mut().unwrap().remove("position_seconds");
            }),
            "finished_has_position",
        ),
        (
            with(&|e| e["position_seconds"] = json!(9000)),
            "position_within_duration",
        ),
    ];
    let bodies: Vec<String> = cases.iter().map(|(b, _)| b.clone()).collect();
    let (status, body) = ingest(&server, &bodies, 100).await;
    assert_eq!(status, 200, "bad data never fails an invocation: {body}");
    let q = quarantine_lines(dir.path());
    assert_eq!(q.len(), cases.len(), "every bad event is quarantined: {body}");
    for (line, (raw, rule)) in q.iter().zip(&cases) {
        assert_eq!(line["raw"], json!(raw), "raw kept byte for byte");
        let rules: Vec<&str> = line["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        assert!(rules.contains(rule), "{raw} should fail {rule}, got {rules:?}");
    }
    assert!(silver_event_ids(dir.path()).is_empty());

    let (status, body) = ingest(&server, &[], 500).await;
    assert_eq!(status, 200, "an empty batch is fine: {body}");
    assert!(body.contains("in=0 silver=0 quarantined=0 duplicates=0"), "{body}");
}

#[tokio::test]
async fn a_batch_of_50_000_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(Arc::new(LocalLake::new(dir.path()))).await;
    let bodies: Vec<String> = (0..50_000)
        .map(|n| event(&id(n), "watch_started", 0).to_string())
        .collect();
    let (status, body) = ingest(&server, &bodies, 0).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("in=50000 silver=50000 quarantined=0 duplicates=0"),
        "{body}"
    );
    assert_eq!(silver_event_ids(dir.path()).len(), 50_000);
}

/// Fails the `fail_at`-th write (counted in `puts`) once with a transient error, as storage
/// would in the middle of a batch.
fn failing_write(dir: &Path, fail_at: usize, puts: Arc<AtomicUsize>) -> Arc<FaultyLake> {
    Arc::new(FaultyLake::new(LocalLake::new(dir), move |call, path| {
        if call.writes() && puts.fetch_add(1, Ordering::SeqCst) == fail_at {
            return outage(path);
        }
        Fault::Pass
    }))
}

fn two_batches() -> (Vec<String>, Vec<String>) {
    let mut bad = event(&id(3), "watch_started", 0);
    bad["country"] = json!("France");
    let a = vec![
        event(&id(1), "watch_started", 0).to_string(),
        bad.to_string(),
        event(&id(2), "watch_started", 0).to_string(),
    ];
    let mut late = event(&id(5), "watch_finished", 100);
    late["occurred_at"] = json!("2024-05-01T09:30:00Z"); // another hour: another silver part
    let b = vec![
        a[0].clone(),
        event(&id(4), "watch_started", 0).to_string(),
        late.to_string(),
    ];
    (a, b)
}

#[tokio::test]
async fn a_storage_failure_at_any_write_then_a_replay_leaves_the_same_lake() {
    let (a, b) = two_batches();
    let clean = tempfile::tempdir().unwrap();
    let server = serve(Arc::new(LocalLake::new(clean.path()))).await;
    assert_eq!(ingest(&server, &a, 0).await.0, 200);
    assert_eq!(ingest(&server, &b, 3).await.0, 200);
    let expected = snapshot(clean.path());
    assert_eq!(silver_event_ids(clean.path()), vec![id(1), id(2), id(4), id(5)]);

    // Count the writes of batch b, then fail each one of them in turn.
    let puts = Arc::new(AtomicUsize::new(0));
    let server = serve(failing_write(
        tempfile::tempdir().unwrap().keep().as_path(),
        usize::MAX,
        puts.clone(),
    ))
    .await;
    ingest(&server, &a, 0).await;
    let after_a = puts.load(Ordering::SeqCst);
    ingest(&server, &b, 3).await;
    let writes_of_b = puts.load(Ordering::SeqCst) - after_a;
    assert!(
        writes_of_b >= 5,
        "bronze, 2 silver parts, ledger, manifest: {writes_of_b}"
    );

    for k in 0..writes_of_b {
        let dir = tempfile::tempdir().unwrap();
        let server = serve(failing_write(dir.path(), after_a + k, Arc::default())).await;
        assert_eq!(ingest(&server, &a, 0).await.0, 200);
        let (status, body) = ingest(&server, &b, 3).await;
        assert_eq!(
            status, 500,
            "write {k} of the batch failed: the host must retry: {body}"
        );
        assert!(body.contains("storage_unavailable"), "{body}");
        let (status, body) = ingest(&server, &b, 3).await;
        assert_eq!(status, 200, "replay after write {k} failed: {body}");
        assert!(
            snapshot(dir.path()) == expected,
            "after a failure at write {k} and a replay, the lake differs from a clean run"
        );
    }
}

/// A private Azurite with on-disk persistence, so it can be stopped and started again.
struct Azurite {
    child: std::process::Child,
}

impl Azurite {
    fn binary() -> Option<PathBuf> {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/node_modules/.bin/azurite-blob");
        bin.exists().then_some(bin)
    }

    fn start(bin: &Path, port: u16, location: &Path) -> Azurite {
        let child = std::process::Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--location"])
            .arg(location)
            .args(["--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start azurite");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "azurite did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Azurite { child }
    }
}

impl Drop for Azurite {
    /// SIGTERM, so Azurite flushes its on-disk metadata (a SIGKILL can lose the last seconds).
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Like [`snapshot`] for a blob lake. Data files are compared by name and bytes (names carry a
/// hash of the bytes, so a replay that wrote the same rows wrote the same files); the logs,
/// which hold commit times, are compared by what the table holds (see the caller).
async fn blob_snapshot(lake: &dyn Lake) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for container in ["bronze/", "silver/", "quarantine/", "ops/"] {
        for meta in lake.list(container).await.expect("list") {
            if !meta.path.starts_with("ops/runs/")
                && !meta.path.starts_with("ops/attempts/")
                && !meta.path.contains("/_delta_log/")
            {
                out.insert(
                    meta.path.clone(),
                    lake.get(&meta.path).await.expect("get").bytes.to_vec(),
                );
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_stopped_mid_way_then_restarted_and_replayed() {
    let Some(bin) = Azurite::binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Azurite (scripts/azurite.sh)"
        );
        eprintln!("SKIPPED: Azurite is not installed in .tools (run scripts/azurite.sh start once)");
        return;
    };
    let (a, b) = two_batches();
    let clean = tempfile::tempdir().unwrap();
    let server = serve(Arc::new(LocalLake::new(clean.path()))).await;
    ingest(&server, &a, 0).await;
    ingest(&server, &b, 3).await;
    let expected = snapshot(clean.path());

    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}/devstoreaccount1");
    let azurite = Azurite::start(&bin, port, data.path());
    let lake = Arc::new(AzureBlobLake::new(&endpoint, AzureAuth::AzuriteDevKey).unwrap());
    lake.ensure_containers(&["bronze", "silver", "quarantine", "gold", "ops"])
        .await
        .unwrap();
    let server = serve(lake.clone()).await;
    assert_eq!(ingest(&server, &a, 0).await.0, 200);

    drop(azurite);
    let (status, body) = ingest(&server, &b, 3).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("storage_unavailable"), "{body}");

    let _azurite = Azurite::start(&bin, port, data.path());
    let (status, body) = ingest(&server, &b, 3).await;
    assert_eq!(status, 200, "{body}");
    let stored = blob_snapshot(lake.as_ref()).await;
    assert_eq!(stored.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    assert!(
        stored == expected,
        "the blob lake after an outage and a replay differs from a clean run"
    );
    // And the table, read through its log, holds every accepted event once.
    let tables = movielake::tables::Tables::for_lake(lake.as_ref());
    let ids = tables
        .sql("silver/events/watch", "SELECT event_id FROM t ORDER BY event_id")
        .await
        .expect("table");
    let ids: Vec<String> = ids
        .iter()
        .flat_map(|b| {
            let column = arrow_array::cast::AsArray::as_string::<i32>(b.column(0)).clone();
            (0..arrow_array::Array::len(&column)).map(move |i| column.value(i).to_string())
        })
        .collect();
    assert_eq!(ids, vec![id(1), id(2), id(4), id(5)]);
}

#[tokio::test]
async fn status_sums_the_manifests_and_flags_runs_that_do_not_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let lake: Arc<dyn Lake> = Arc::new(LocalLake::new(dir.path()));
    let server = serve(lake.clone()).await;
    let (a, b) = two_batches();
    assert_eq!(ingest(&server, &a, 0).await.0, 200);
    assert_eq!(ingest(&server, &b, 3).await.0, 200);

    let statuses = movielake::cli::status::summarize(lake.as_ref(), None)
        .await
        .expect("status");
    let watch = &statuses["watch_events"];
    assert_eq!(watch.runs, 2);
    let c = &watch.counts;
    assert_eq!(
        (c.records_in, c.silver, c.quarantined, c.duplicates_dropped),
        (6, 4, 1, 1)
    );
    assert_eq!(c.quarantined_by_rule.get("regex"), Some(&1));
    assert!(watch.unbalanced.is_empty());
    assert!(movielake::cli::status::render(&statuses).contains("nothing lost"));

    // A manifest whose counts do not add up is named.
    let path = crate::handler::files(dir.path(), "ops/runs")
        .into_iter()
        .next()
        .expect("a manifest");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(dir.path().join(&path)).unwrap()).unwrap();
    manifest["counts"]["silver"] = json!(0);
    std::fs::write(dir.path().join(&path), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let statuses = movielake::cli::status::summarize(lake.as_ref(), None)
        .await
        .expect("status");
    assert_eq!(statuses["watch_events"].unbalanced, vec![path.clone()]);
    assert!(movielake::cli::status::render(&statuses).contains(&format!("COUNTS DO NOT ADD UP: {path}")));
}

#[tokio::test]
async fn a_producer_duplicate_across_midnight_is_still_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(Arc::new(LocalLake::new(dir.path()))).await;
    let mut late = event(&id(7), "watch_started", 0);
    late["occurred_at"] = json!("2024-05-01T23:59:00Z");
    let body = late.to_string();
    let at = |t: &str, bodies: &[String], seq| host_request(bodies, seq).replace("2024-05-01T10:00:00.456", t);
    for (time, seq, expected) in [
        ("2024-05-01T23:59:30.000", 0, "in=1 silver=1 quarantined=0 duplicates=0"),
        ("2024-05-02T00:00:30.000", 1, "in=1 silver=0 quarantined=0 duplicates=1"),
    ] {
        let (status, _, answer) = post_to(
            &server.base,
            "ingest_watch_events",
            at(time, std::slice::from_ref(&body), seq),
            false,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains(expected), "{time}: {answer}");
    }
    assert_eq!(silver_event_ids(dir.path()), vec![id(7)]);
}
