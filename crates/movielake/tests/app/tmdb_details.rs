//! Movie details in `pull_tmdb_lists` against the stand-in TMDB on 127.0.0.1 (real HTTP): the
//! real Fight Club response, TMDB's real 404 body for movies it does not have (a quarantine
//! record each, not a failed run), the per-run cap, a refused token (the run fails and nothing
//! is announced), and the hand-off of each landed detail to `bronze_to_silver`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use movielake::clients::eventgrid::{EventGridPublisher, PublisherAuth};
use serde_json::{Value, json};

use crate::handler::{files, post_to};
use crate::tmdb_announce::topic;
use crate::tmdb_client::pull::{LISTS, handler_with_lists, timer_request, timer_request_at};
use crate::tmdb_client::{Fault, TOKEN, detail_body, fixture, standin};

const RUN_DIR: &str = "bronze/tmdb/movie/ingest_date=2024-02-01/run=20240201T060000Z/";

fn lists_with_details(max_per_run: u32) -> String {
    format!("{LISTS}\n[details]\nmax_per_run = {max_per_run}\nlanguage = \"en-US\"\n")
}

/// The movie ids of the real popular page, in order (the stand-in serves it on every page).
fn page_ids(page: &[u8]) -> Vec<i64> {
    let json: Value = serde_json::from_slice(page).unwrap();
    json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// Landed detail bodies (sidecars excluded), by movie id.
fn landed_details(root: &Path) -> Vec<(i64, Vec<u8>)> {
    files(root, RUN_DIR)
        .into_iter()
        .filter(|p| !p.ends_with(".meta.json"))
        .map(|p| {
            let id = p
                .strip_prefix(RUN_DIR)
                .and_then(|f| f.strip_prefix("id="))
                .and_then(|f| f.strip_suffix(".json"))
                .and_then(|f| f.parse().ok())
                .unwrap_or_else(|| panic!("unexpected object {p}"));
            (id, std::fs::read(root.join(&p)).unwrap())
        })
        .collect()
}

fn manifest(root: &Path) -> Value {
    let runs = files(root, "ops/runs/tmdb_lists");
    assert_eq!(runs.len(), 1, "{runs:?}");
    serde_json::from_slice(&std::fs::read(root.join(&runs[0])).unwrap()).unwrap()
}

fn landed_event(path: &str) -> String {
    let event = json!({"specversion": "1.0", "type": "movielake.bronze.landed", "source": "movielake",
                       "id": path, "subject": path});
    json!({"Data": {"event": event.to_string()}, "Metadata": {}}).to_string()
}

#[tokio::test]
async fn a_404_detail_is_a_quarantine_record_and_the_others_land_once_and_become_silver() {
    let (Some(page), Some(not_found)) = (
        fixture("lists/popular_p1_2024-02_jdrouet.json"),
        fixture("errors/34_not_found_jdrouet.json"),
    ) else {
        return;
    };
    let ids = page_ids(&page);
    assert_eq!(ids.len(), 20);
    let tmdb = standin(page.clone(), None, &[]).await;
    let missing = [ids[3], ids[7]];
    {
        let mut script = tmdb.script.lock().unwrap();
        script.missing.extend(missing);
        // Transient failures on a detail are retried like a page's.
        script
            .detail_faults
            .insert(ids[0], [Fault::Status(503), Fault::TooMany(None)].into());
    }
    let dir = tempfile::tempdir().unwrap();
    let (base, _stop) = handler_with_lists(dir.path(), &tmdb.base, TOKEN, None, &lists_with_details(50)).await;

    let (status, _, body) = post_to(&base, "pull_tmdb_lists", timer_request(), false).await;
    assert_eq!(status, 200, "a 404 on a detail does not fail the run: {body}");
    assert!(
        body.contains("18 of 20 distinct movie(s) landed, 2 not found, 0 failed"),
        "{body}"
    );
    {
        let script = tmdb.script.lock().unwrap();
        // Five pages over two lists show the same 20 movies: each is asked for once.
        assert_eq!(
            script.detail_hits.keys().copied().collect::<BTreeSet<_>>(),
            ids.iter().copied().collect::<BTreeSet<_>>()
        );
        for (id, hits) in &script.detail_hits {
            assert_eq!(*hits, if *id == ids[0] { 3 } else { 1 }, "movie {id}");
        }
        assert!(
            script
                .detail_queries
                .iter()
                .all(|q| !q.contains("page=") && q.contains("language=en-US")),
            "a detail request carries no page: {:?}",
            script.detail_queries
        );
    }

    // Bronze: each found detail byte for byte, with a sidecar; nothing for the 404s.
    let landed = landed_details(dir.path());
    let landed_ids: BTreeSet<i64> = landed.iter().map(|(id, _)| *id).collect();
    let want: BTreeSet<i64> = ids.iter().copied().filter(|id| !missing.contains(id)).collect();
    assert_eq!(landed_ids, want);
    let detail = tmdb.script.lock().unwrap().detail_served.clone();
    for (id, bytes) in &landed {
        assert_eq!(bytes, &detail[id], "movie {id} as served");
        let meta: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(format!("{RUN_DIR}id={id}.meta.json"))).unwrap())
                .unwrap();
        assert_eq!(
            (
                meta["endpoint"].as_str(),
                meta["status"].as_u64(),
                meta["movie_id"].as_i64()
            ),
            (Some(format!("movie/{id}").as_str()), Some(200), Some(*id))
        );
    }
    for path in files(dir.path(), "") {
        let text = std::fs::read_to_string(dir.path().join(&path)).unwrap_or_default();
        assert!(
            !text.contains(TOKEN) && !text.contains("good-read-access-token"),
            "{path}"
        );
    }

    // Quarantine: one record per 404, in the one quarantine format.
    let q = files(dir.path(), "quarantine");
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(
        q[0].starts_with("quarantine/tmdb/movie_details/date=2024-02-01/part-"),
        "{q:?}"
    );
    let quarantined = std::fs::read(dir.path().join(&q[0])).unwrap();
    let records: Vec<Value> = String::from_utf8(quarantined.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut sorted = missing.to_vec();
    sorted.sort_unstable();
    assert_eq!(records.len(), 2);
    for (record, id) in records.iter().zip(sorted) {
        assert_eq!(record["dataset"], "tmdb_movie_details");
        assert_eq!(record["stage"], "decode");
        assert_eq!(record["reasons"][0]["rule"], "not_found");
        let detail = record["reasons"][0]["detail"].as_str().unwrap();
        assert!(
            detail.contains("status_code 34") && detail.contains("The resource you requested could not be found."),
            "{detail}"
        );
        assert_eq!(record["source"]["object"], format!("tmdb:movie/{id}"));
        assert_eq!(record["run_id"], "20240201T060000Z");
        assert_eq!(record["time"], "2024-02-01T06:00:00.000000Z");
        assert_eq!(
            record["raw"].as_str().unwrap().as_bytes(),
            not_found.as_slice(),
            "raw = TMDB's body"
        );
    }

    // The manifest counts both.
    let m = manifest(dir.path());
    assert_eq!(
        (
            &m["counts"]["records_in"],
            &m["counts"]["quarantined"],
            &m["counts"]["quarantined_by_rule"]["not_found"]
        ),
        (&json!(2), &json!(2), &json!(2))
    );
    let outputs = m["outputs"].as_array().unwrap();
    let detail_outputs = outputs
        .iter()
        .filter(|o| o["kind"] == "bronze" && o["path"].as_str().unwrap().starts_with(RUN_DIR))
        .count();
    assert_eq!(detail_outputs, 36, "18 details and their sidecars");
    assert!(
        outputs
            .iter()
            .any(|o| o["kind"] == "quarantine" && o["rows"] == 2 && o["path"] == q[0])
    );

    // A retry of the same invocation: still one copy of each, the same quarantine bytes.
    let (status, _, body) = post_to(&base, "pull_tmdb_lists", timer_request(), false).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("18 movie detail(s) already in bronze"), "{body}");
    assert_eq!(landed_details(dir.path()).len(), 18);
    assert_eq!(files(dir.path(), "quarantine"), q);
    assert_eq!(std::fs::read(dir.path().join(&q[0])).unwrap(), quarantined);

    // The hand-off: each landed detail becomes one silver row, and a redelivery changes nothing.
    for (id, _) in &landed {
        let path = format!("{RUN_DIR}id={id}.json");
        let (status, _, body) = post_to(&base, "bronze_to_silver", landed_event(&path), false).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("in=1 silver=1 quarantined=0 duplicates=0"),
            "{path}: {body}"
        );
    }
    let silver = files(dir.path(), "silver/tmdb/movie_details");
    assert_eq!(silver.len(), 18, "{silver:?}");
    assert!(
        silver
            .iter()
            .all(|p| p.starts_with("silver/tmdb/movie_details/snapshot_date=2024-02-01/part-"))
    );
    let before: Vec<Vec<u8>> = silver
        .iter()
        .map(|p| std::fs::read(dir.path().join(p)).unwrap())
        .collect();
    let again = format!("{RUN_DIR}id={}.json", landed[0].0);
    let (status, _, _) = post_to(&base, "bronze_to_silver", landed_event(&again), false).await;
    assert_eq!(status, 200);
    let after: Vec<Vec<u8>> = silver
        .iter()
        .map(|p| std::fs::read(dir.path().join(p)).unwrap())
        .collect();
    assert_eq!(before, after);
    // The sidecar is not a detail: skipped, not parsed.
    let sidecar = format!("{RUN_DIR}id={}.meta.json", landed[0].0);
    let (status, _, body) = post_to(&base, "bronze_to_silver", landed_event(&sidecar), false).await;
    assert_eq!(
        (status, body.contains("not a TMDB movie detail")),
        (200, true),
        "{body}"
    );
}

#[tokio::test]
async fn the_cap_bounds_the_detail_requests_of_a_run() {
    let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
        return;
    };
    let ids = page_ids(&page);
    let tmdb = standin(page, None, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (base, _stop) = handler_with_lists(dir.path(), &tmdb.base, TOKEN, None, &lists_with_details(5)).await;
    let (status, _, body) = post_to(&base, "pull_tmdb_lists", timer_request(), false).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("5 of 5 distinct movie(s) landed")
            && body.contains("15 more not fetched (details.max_per_run = 5)"),
        "{body}"
    );
    let hits = tmdb.script.lock().unwrap().detail_hits.clone();
    assert_eq!(hits.values().sum::<u32>(), 5, "{hits:?}");
    // The first five movies the lists show, in their order.
    let first: BTreeSet<i64> = ids[..5].iter().copied().collect();
    assert_eq!(hits.keys().copied().collect::<BTreeSet<_>>(), first);
    let landed: BTreeSet<i64> = landed_details(dir.path()).into_iter().map(|(id, _)| id).collect();
    assert_eq!(landed, first);
}

#[tokio::test]
async fn a_refused_token_on_details_fails_the_run_and_announces_nothing() {
    let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
        return;
    };
    let tmdb = standin(page, None, &[]).await;
    tmdb.script.lock().unwrap().details_refused = true;
    let dir = tempfile::tempdir().unwrap();
    let (url, t, _stop_topic) = topic(dir.path()).await;
    let mut publisher = EventGridPublisher::new(&url, PublisherAuth::Bearer("eg-token".into())).unwrap();
    publisher.max_attempts = 2;
    publisher.backoff_base = Duration::from_millis(10);
    let (base, _stop) =
        handler_with_lists(dir.path(), &tmdb.base, TOKEN, Some(publisher), &lists_with_details(50)).await;

    let (status, _, body) = post_to(&base, "pull_tmdb_lists", timer_request(), false).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("the TMDB token is invalid") && body.contains(r#""Kind":"source_auth""#),
        "{body}"
    );
    assert!(!body.contains(TOKEN));
    assert!(t.received.lock().unwrap().is_empty(), "nothing announced");
    assert!(landed_details(dir.path()).is_empty() && files(dir.path(), "quarantine").is_empty());
    let hits: u32 = tmdb.script.lock().unwrap().detail_hits.values().sum();
    assert!(hits <= 20, "no detail retried after a 401: {hits}");

    // The pages did land: once the token works again, the next run announces them.
    tmdb.script.lock().unwrap().details_refused = false;
    let (status, _, body) = post_to(
        &base,
        "pull_tmdb_lists",
        timer_request_at("2024-02-01T07:00:00Z"),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("re-announced 5 page(s)"), "{body}");
    let received = t.received.lock().unwrap().clone();
    assert!(received.iter().all(|(_, durable)| *durable), "{received:?}");
    // The first run's 5 pages, the second run's 5 pages and 20 details.
    assert_eq!(received.len(), 30, "{received:?}");
}

#[tokio::test]
async fn a_detail_that_keeps_failing_fails_the_run_after_retries_and_the_rest_is_kept() {
    let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
        return;
    };
    let ids = page_ids(&page);
    let tmdb = standin(page, None, &[]).await;
    tmdb.script
        .lock()
        .unwrap()
        .detail_faults
        .insert(ids[2], [Fault::Status(503); 10].into());
    let dir = tempfile::tempdir().unwrap();
    let (base, _stop) = handler_with_lists(dir.path(), &tmdb.base, TOKEN, None, &lists_with_details(50)).await;
    let (status, _, body) = post_to(&base, "pull_tmdb_lists", timer_request(), false).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains(&format!("movie/{}: gave up after 4 attempts", ids[2]))
            && body.contains(r#""Kind":"source_unavailable""#),
        "{body}"
    );
    assert_eq!(tmdb.script.lock().unwrap().detail_hits[&ids[2]], 4);
    assert_eq!(landed_details(dir.path()).len(), 19, "what did land is kept");
    assert!(files(dir.path(), "quarantine").is_empty(), "a failure is not a 404");
    let m = manifest(dir.path());
    assert_eq!(m["counts"]["quarantined"], 0);
}

#[tokio::test]
async fn the_real_fight_club_details_become_silver_with_no_quarantine() {
    let (Some(page), Some(details)) = (
        fixture("lists/popular_p1_2024-02_jdrouet.json"),
        fixture("movie_details/550_fight_club_2024-02_jdrouet.json"),
    ) else {
        return;
    };
    let tmdb = standin(page, None, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (base, _stop) = handler_with_lists(dir.path(), &tmdb.base, TOKEN, None, &lists_with_details(5)).await;
    let path = format!("{RUN_DIR}id=550.json");
    std::fs::create_dir_all(dir.path().join(RUN_DIR)).unwrap();
    std::fs::write(dir.path().join(&path), &details).unwrap();
    assert_eq!(
        detail_body(&details, 550),
        details,
        "the stand-in serves 550 byte for byte"
    );

    let (status, _, body) = post_to(&base, "bronze_to_silver", landed_event(&path), false).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("in=1 silver=1 quarantined=0 duplicates=0"), "{body}");
    assert!(files(dir.path(), "quarantine").is_empty());
    let silver = files(dir.path(), "silver/tmdb/movie_details");
    assert_eq!(silver.len(), 1);
    let bytes = bytes::Bytes::from(std::fs::read(dir.path().join(&silver[0])).unwrap());
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    use arrow_array::cast::AsArray;
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_string()
    };
    assert_eq!(
        (text("imdb_id"), text("title"), text("_source_object")),
        ("tt0137523".into(), "Fight Club".into(), path.clone())
    );
    assert!(
        batch.column_by_name("_rescued").unwrap().is_null(0),
        "every field is a column"
    );

    // Paths that only look like a detail are skipped, never parsed.
    for bad in [format!("{RUN_DIR}id=0550.json"), format!("{RUN_DIR}id=550.meta.json")] {
        let (status, _, body) = post_to(&base, "bronze_to_silver", landed_event(&bad), false).await;
        assert_eq!((status, body.contains("skipped: ")), (200, true), "{bad}: {body}");
    }
}
