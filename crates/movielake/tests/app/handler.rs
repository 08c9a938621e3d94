//! The custom handler over real HTTP, with requests shaped exactly as the Functions host sends
//! them: string-wrapped values, chunked bodies, large bodies.

use std::path::Path;

use futures::stream;
use serde_json::{Value, json};

use crate::support::Server;

const PARTITION_CONTEXT: &str = r#"{"FullyQualifiedNamespace":"ns.servicebus.windows.net","EventHubName":"watch-events","ConsumerGroup":"$Default","PartitionId":"0"}"#;

pub fn event(id: &str, kind: &str, position: i64) -> Value {
    json!({
        "event_id": id, "event_type": kind, "user_id": "u-1", "session_id": "s-1", "movie_id": 550,
        "occurred_at": "2024-05-01T10:00:00.100Z", "device": "tv", "country": "FR",
        "position_seconds": position, "duration_seconds": 8340
    })
}

const ID_A: &str = "00000000-0000-4000-8000-00000000000a";
const ID_B: &str = "00000000-0000-4000-8000-00000000000b";

/// An Event Hub invocation written out by hand as the host serialises it: `Data.events` is a
/// string holding a JSON array of strings (three levels of JSON), metadata arrays are strings.
pub fn host_request(bodies: &[String], first_seq: i64) -> String {
    let n = bodies.len();
    let seqs: Vec<i64> = (0..n as i64).map(|i| first_seq + i).collect();
    let wrapped = |v: Value| Value::String(v.to_string());
    json!({
        "Data": {"events": wrapped(json!(bodies))},
        "Metadata": {
            "PartitionContext": serde_json::from_str::<Value>(PARTITION_CONTEXT).unwrap(),
            "SequenceNumberArray": wrapped(json!(seqs)),
            "OffsetArray": wrapped(json!(seqs.iter().map(|s| (s * 100).to_string()).collect::<Vec<_>>())),
            "EnqueuedTimeUtcArray": wrapped(json!(vec!["2024-05-01T10:00:00.456"; n])),
            "PartitionKeyArray": wrapped(json!(vec![Value::Null; n])),
            "PropertiesArray": wrapped(json!(vec![json!({}); n])),
            "SystemPropertiesArray": wrapped(json!(vec![json!({"x-opt-sequence-number": 1}); n])),
            "sys": {"MethodName": "ingest_watch_events", "UtcNow": "2024-05-01T10:00:01.5Z", "RandGuid": "7f1c"}
        }
    })
    .to_string()
}

pub async fn post_to(base: &str, function: &str, body: String, chunked: bool) -> (u16, String, String) {
    let client = reqwest::Client::new();
    let req = client
        .post(format!("{base}/{function}"))
        .header("X-Azure-Functions-InvocationId", "4b1c9e3e");
    let req = if chunked {
        // A streamed body has no Content-Length: hyper sends it with Transfer-Encoding: chunked.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.into_bytes().chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        req.body(reqwest::Body::wrap_stream(stream::iter(chunks)))
    } else {
        req.body(body)
    };
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, resp.text().await.expect("body"))
}

/// The objects of a local lake under `prefix`, as a reader sees them: the files of a Delta
/// table (silver, gold) are the data files its log names at its latest version, read here
/// from the log's JSON commits by this test code (not by delta-rs); `_delta_log` itself and
/// files the log does not name (superseded, or written by an attempt that never committed)
/// are left out.
pub fn files(root: &Path, prefix: &str) -> Vec<String> {
    let tables: std::collections::BTreeSet<String> = raw_files(root, "")
        .into_iter()
        .filter_map(|p| p.split_once("/_delta_log/").map(|(table, _)| table.to_string()))
        .collect();
    // Silver and gold hold tables only: a data file no log names is invisible to readers.
    let mut out: Vec<String> = raw_files(root, prefix)
        .into_iter()
        .filter(|p| !p.starts_with("silver/") && !p.starts_with("gold/"))
        .collect();
    for table in tables {
        out.extend(delta_files(root, &table).into_iter().filter(|p| p.starts_with(prefix)));
    }
    out.sort();
    out
}

/// The data files (lake paths) of the local Delta table `table` at its latest version, replayed
/// from its JSON commits. No checkpoint is expected in these tests' tables.
pub fn delta_files(root: &Path, table: &str) -> Vec<String> {
    let log = root.join(table).join("_delta_log");
    let mut commits: Vec<std::path::PathBuf> = std::fs::read_dir(&log)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.ends_with(".json") && !name.starts_with('.')
        })
        .collect();
    commits.sort();
    let mut active = std::collections::BTreeSet::new();
    for commit in commits {
        for line in std::fs::read_to_string(&commit).expect("commit").lines() {
            let action: serde_json::Value = serde_json::from_str(line).expect("a JSON action");
            let path = |kind: &str| {
                action[kind]["path"]
                    .as_str()
                    .map(|p| format!("{table}/{}", percent_decode(p)))
            };
            if let Some(p) = path("add") {
                active.insert(p);
            } else if let Some(p) = path("remove") {
                active.remove(&p);
            }
        }
    }
    active.into_iter().collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8 path")
}

/// Every file under `prefix`, Delta logs and unreferenced files included.
pub fn raw_files(root: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(prefix)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == ".movielake") {
                continue; // the local lake's own bookkeeping, not lake objects
            } else if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn parquet_rows(path: &Path) -> i64 {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).expect("open parquet");
    SerializedFileReader::new(file)
        .expect("parquet")
        .metadata()
        .file_metadata()
        .num_rows()
}

/// The exact answer to an unknown function, naming every Function this binary serves.
fn unknown_function_body(name: &str) -> String {
    let message = format!(
        "no function named '{name}' (this binary serves: {})",
        movielake::handler::FUNCTIONS.join(", ")
    );
    format!(
        r#"{{"Error":{{"Kind":"unknown_function","Message":"{message}"}},"Logs":["error: {message}"],"Outputs":{{}},"ReturnValue":null}}"#
    )
}

#[tokio::test]
async fn answers_the_host_poll_and_unknown_functions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("lake").display().to_string(), dir.path());
    let resp = reqwest::get(server.url("/")).await.expect("GET /");
    assert_eq!(resp.status().as_u16(), 200);

    let (status, ctype, body) = post_to(&server.url(""), "no_such_function", "{}".into(), false).await;
    assert_eq!((status, ctype.as_str()), (404, "application/json"));
    assert_eq!(body, unknown_function_body("no_such_function"));

    let nested = reqwest::get(server.url("/api/ingest_watch_events"))
        .await
        .expect("GET nested");
    assert_eq!(nested.status().as_u16(), 404);
    assert_eq!(
        nested.text().await.unwrap(),
        unknown_function_body("api/ingest_watch_events")
    );
    let wrong = reqwest::get(server.url("/ingest_watch_events"))
        .await
        .expect("GET a function");
    assert_eq!(wrong.status().as_u16(), 405);
    assert!(wrong.text().await.unwrap().contains(r#""Kind":"method_not_allowed""#));

    let (status, _, body) = post_to(&server.url(""), "ingest_watch_events", "{\"Data\": [1,".into(), false).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"Error":{"Kind":"bad_request","Message":"the invocation request is malformed: the request body is not a JSON object: EOF while parsing a value at line 1 column 12"},"Logs":["error: the invocation request is malformed: the request body is not a JSON object: EOF while parsing a value at line 1 column 12"],"Outputs":{},"ReturnValue":null}"#
    );
    let (status, _, body) = post_to(
        &server.url(""),
        "ingest_watch_events",
        r#"{"Data":{"events":"[]"},"Metadata":{}}"#.into(),
        false,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("the request has no Metadata.PartitionContext.PartitionId"),
        "{body}"
    );
}

#[tokio::test]
async fn ingests_a_string_wrapped_chunked_batch_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake.display().to_string(), dir.path());
    let mut bad = event(ID_B, "watch_finished", -5);
    bad["country"] = json!("France");
    let bodies = vec![
        event(ID_A, "watch_started", 0).to_string(),
        bad.to_string(),
        "not json at all".to_string(),
    ];
    let request = host_request(&bodies, 10);

    let (status, ctype, body) = post_to(&server.url(""), "ingest_watch_events", request.clone(), true).await;
    assert_eq!((status, ctype.as_str()), (200, "application/json"), "{body}");
    assert_eq!(
        body,
        r#"{"Outputs":{},"Logs":["watch events partition 0 seq 10-12: in=3 silver=1 quarantined=2 duplicates=0 (json=1, min=1, regex=1)","silver/events/watch: committed version 1","manifest ops/runs/watch_events/date=2024-05-01/watch-0-10-12.json"],"ReturnValue":null}"#
    );
    let written = files(&lake, "");
    assert_eq!(
        written[..4],
        vec![
            "bronze/events/watch/date=2024-05-01/hour=10/minute=00/partition=0/seq=10-12.parquet",
            "ops/ledger/watch_events/partition=0/hour=2024-05-01T10.bin",
            "ops/runs/watch_events/date=2024-05-01/watch-0-10-12.json",
            "quarantine/events/watch/date=2024-05-01/part-0-10-12.jsonl",
        ]
    );
    // The table's one data file: named after the batch and a hash of its bytes.
    assert_eq!(written.len(), 5, "{written:?}");
    assert!(
        written[4].starts_with("silver/events/watch/event_date=2024-05-01/hour=10/part-0-10-12-"),
        "{written:?}"
    );
    assert_eq!(parquet_rows(&lake.join(&written[0])), 3, "bronze keeps every event");
    assert_eq!(parquet_rows(&lake.join(&written[4])), 1);
    let quarantine = std::fs::read_to_string(lake.join(&written[3])).unwrap();
    let lines: Vec<Value> = quarantine.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["raw"], json!(bodies[1]), "raw kept exactly");
    assert_eq!(lines[0]["source"]["sequence_number"], json!(11));
    assert_eq!(lines[1]["stage"], json!("decode"));
    // The manifest says what the commit cost, within the run's own time.
    let manifest: Value = serde_json::from_slice(&std::fs::read(lake.join(&written[2])).unwrap()).unwrap();
    let (commit, total) = (manifest["commit_ms"].as_u64(), manifest["duration_ms"].as_u64());
    assert!(matches!((commit, total), (Some(c), Some(t)) if c <= t), "{manifest}");
    assert_eq!(manifest["tables"], json!({"silver/events/watch": 1}));

    // The host retries the same batch: same names, same bytes, and it says so.
    let before: Vec<Vec<u8>> = written
        .iter()
        .filter(|p| !p.starts_with("ops/"))
        .map(|p| std::fs::read(lake.join(p)).unwrap())
        .collect();
    let retry = request.replace(
        r#""sys":{"#,
        r#""RetryContext":{"RetryCount":1,"MaxRetryCount":-1},"sys":{"#,
    );
    let (status, _, body) = post_to(&server.url(""), "ingest_watch_events", retry, false).await;
    assert_eq!(status, 200);
    assert!(body.contains("bronze already landed (retry 1)"), "{body}");
    assert!(
        body.contains("silver/events/watch: already held this batch"),
        "the table knows the batch's transaction: {body}"
    );
    assert_eq!(files(&lake, ""), written, "a retry writes no new objects");
    assert_eq!(
        raw_files(&lake, "silver/events/watch/_delta_log").len(),
        2,
        "and commits nothing: the table's creation and the first attempt's commit"
    );
    let after: Vec<Vec<u8>> = written
        .iter()
        .filter(|p| !p.starts_with("ops/"))
        .map(|p| std::fs::read(lake.join(p)).unwrap())
        .collect();
    assert!(before == after, "a retry rewrites the same bytes");
}

#[tokio::test]
async fn plain_unwrapped_values_are_accepted_too() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake.display().to_string(), dir.path());
    let request = json!({
        "Data": {"events": [event(ID_A, "watch_started", 0).to_string()]},
        "Metadata": {
            "PartitionContext": {"PartitionId": "3"},
            "SequenceNumberArray": [7],
            "EnqueuedTimeUtcArray": ["2024-05-01T10:00:00.456Z"]
        }
    });
    let (status, _, body) = post_to(&server.url(""), "ingest_watch_events", request.to_string(), false).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("partition 3 seq 7-7: in=1 silver=1"), "{body}");
}

#[tokio::test]
async fn a_20_mb_chunked_batch_is_taken_whole() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake.display().to_string(), dir.path());
    let notes = "x".repeat(10_000);
    let bodies: Vec<String> = (0..2_100)
        .map(|i| {
            let mut e = event(&format!("00000000-0000-4000-8000-{i:012}"), "watch_started", 0);
            e["notes"] = json!(notes);
            e.to_string()
        })
        .collect();
    let request = host_request(&bodies, 0);
    assert!(request.len() > 20 * 1024 * 1024, "request is {} bytes", request.len());
    let (status, _, body) = post_to(&server.url(""), "ingest_watch_events", request, true).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("in=2100 silver=2100 quarantined=0"), "{body}");
}

#[tokio::test]
async fn misaligned_metadata_quarantines_every_event_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake.display().to_string(), dir.path());
    let bodies = vec![
        event(ID_A, "watch_started", 0).to_string(),
        event(ID_B, "watch_started", 0).to_string(),
    ];
    let request =
        host_request(&bodies, 5).replace(r#""SequenceNumberArray":"[5,6]""#, r#""SequenceNumberArray":"[5]""#);
    let (status, _, body) = post_to(&server.url(""), "ingest_watch_events", request, false).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("in=2 silver=0 quarantined=2"), "{body}");
    assert!(
        body.contains("2 events but SequenceNumberArray has 1 entries"),
        "{body}"
    );
    assert_eq!(files(&lake, "bronze").len(), 1, "bronze still lands");
}

#[tokio::test]
async fn storage_failures_answer_500_so_the_host_retries() {
    let dir = tempfile::tempdir().unwrap();
    let request = host_request(&[event(ID_A, "watch_started", 0).to_string()], 1);

    // A lake whose root is a file: every write fails, permanently.
    let blocked = dir.path().join("not-a-folder");
    std::fs::write(&blocked, b"").unwrap();
    let server = Server::start(&blocked.display().to_string(), dir.path());
    let (status, ctype, body) = post_to(&server.url(""), "ingest_watch_events", request.clone(), false).await;
    assert_eq!((status, ctype.as_str()), (500, "application/json"), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Error"]["Kind"], json!("storage_error"));
    assert!(
        v["Error"]["Message"]
            .as_str()
            .unwrap()
            .contains("bronze/events/watch/date=2024-05-01"),
        "{body}"
    );
    drop(server);

    // Blob storage that does not answer: transient.
    let server = Server::start("http://127.0.0.1:9/devstoreaccount1", dir.path());
    let (status, _, body) = post_to(&server.url(""), "ingest_watch_events", request, false).await;
    assert_eq!(status, 500, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Error"]["Kind"], json!("storage_unavailable"), "{body}");
}
