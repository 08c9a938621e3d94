//! A writer killed between writing its data files and committing them: the table stays
//! readable and unchanged, and the host's redelivery of the batch commits it once.
//!
//! "Killed" in-process: the invocation freezes for good right after its data file is written
//! (its lake write never returns, so no code of it runs after that point, as with SIGKILL), and
//! the redelivery goes to a new handler over the same lake, as after a restart. A real SIGKILL
//! of `movielake serve` would need a hook in the binary to land at that point.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use movielake::handler::AppState;
use movielake::lake::{Lake, LocalLake};
use movielake::tables::{TableLocation, Tables};

use crate::faults::{Call, Fault, FaultyLake};
use crate::handler::{event, host_request, post_to};
use crate::watch_events::{contracts_dir, id, serve_state, silver_event_ids};

fn state(lake: Arc<dyn Lake>) -> AppState {
    let contracts = movielake::config::load_contracts(Some(&contracts_dir())).expect("contracts");
    AppState::new(lake, contracts, chrono::Duration::hours(24))
}

/// Events of one event hour, so the invocation writes one data file before its commit.
fn bodies(first: u32, n: u32) -> Vec<String> {
    (first..first + n)
        .map(|i| event(&id(i), "watch_started", 0).to_string())
        .collect()
}

async fn version(root: &Path) -> Option<u64> {
    let tables = Tables::new(TableLocation::for_lake(root.to_str().unwrap(), None).unwrap());
    tables.open("silver/events/watch").await.expect("readable").version()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_before_its_commit_leaves_the_table_unchanged_and_the_replay_commits_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // A batch that made it: the table at some version, with its rows.
    let healthy = serve_state(state(Arc::new(LocalLake::new(root)))).await;
    let (status, _, body) = post_to(
        &healthy.base,
        "ingest_watch_events",
        host_request(&bodies(1, 3), 100),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let before = version(root).await;
    assert!(before.is_some());
    let rows_before = silver_event_ids(root);
    assert_eq!(rows_before.len(), 3);

    // The next batch's writer dies right after writing its data file.
    let (written, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let dies = FaultyLake::new(LocalLake::new(root), move |call, path| {
        if call == Call::Put && path.starts_with("silver/") && path.ends_with(".parquet") {
            Fault::FreezeAfter(written.clone())
        } else {
            Fault::Pass
        }
    });
    let dying = serve_state(state(Arc::new(dies))).await;
    let request = host_request(&bodies(10, 4), 200);
    let (base, request_again) = (dying.base.clone(), request.clone());
    let killed = tokio::spawn(async move { post_to(&base, "ingest_watch_events", request_again, false).await });
    let part = tokio::time::timeout(Duration::from_secs(60), seen.recv())
        .await
        .expect("the data file is written")
        .expect("a path");
    // Give it every chance to go further: it must not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!killed.is_finished(), "the invocation never answers");
    killed.abort();
    assert!(root.join(&part).is_file(), "{part} is in the table's folder");

    // The table: readable, at the same version, the same rows; the file is named by no commit.
    assert_eq!(version(root).await, before, "no commit");
    assert_eq!(silver_event_ids(root), rows_before, "no row a reader sees");
    assert!(
        !crate::handler::files(root, "silver").iter().any(|p| p == &part),
        "the log does not name {part}"
    );

    // The host redelivers the batch to a restarted handler: committed once...
    let restarted = serve_state(state(Arc::new(LocalLake::new(root)))).await;
    let (status, _, body) = post_to(&restarted.base, "ingest_watch_events", request.clone(), false).await;
    assert_eq!(status, 200, "{body}");
    let after = version(root).await;
    assert_eq!(after, before.map(|v| v + 1), "one commit");
    let mut ids = silver_event_ids(root);
    ids.sort();
    let mut expected: Vec<String> = (1..4).chain(10..14).map(id).collect();
    expected.sort();
    assert_eq!(ids, expected, "every event of both batches, once");

    // ...and a second redelivery commits nothing.
    let (status, _, body) = post_to(&restarted.base, "ingest_watch_events", request, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(version(root).await, after, "recognised by its transaction id");
    assert_eq!(silver_event_ids(root).len(), 7);
}
