//! File sources end to end: an uploaded IMDb file announced to `bronze_to_silver` over real HTTP
//! (folder lake and Azurite), `movielake ingest` and `movielake query` as a person runs them,
//! and gold answers on a small hand-computed dataset.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use movielake::lake::{AzureAuth, AzureBlobLake, Lake, LocalLake, PutMode};
use movielake::tables::Tables;
use movielake_core::output::manifest::OutputKind;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use crate::faults::{Call, Fault, FaultyLake, outage};
use crate::handler::post_to;
use crate::support::{Server, azurite_endpoint, unique};

const HEADER: &str =
    "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres\n";

/// A gzipped title.basics of `rows` good lines with three bad ones among them (lines 3, 1000
/// and the last), large enough to cross several 8 MiB read ranges once decompressed... and
/// compressed, to read through the gzip path.
fn title_basics_gz(rows: usize) -> (Vec<u8>, Vec<u64>) {
    let mut text = String::from(HEADER);
    let mut bad_lines = Vec::new();
    let mut line = 1u64;
    for i in 0..rows {
        line += 1;
        if i == 1 || i == 998 {
            text.push_str(&format!("tt{i:07}\tmovie\tBroken\tBroken\t0\tyear?\t\\N\t90\tDrama\n"));
            bad_lines.push(line);
            continue;
        }
        text.push_str(&format!(
            "tt{i:07}\tmovie\t\"Title\" number {i}\tNA\t0\t{}\t\\N\t{}\tDrama,Comedy\n",
            1900 + i % 120,
            i % 200
        ));
    }
    line += 1;
    text.push_str("tt9999999\ttoo\tfew");
    bad_lines.push(line);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).expect("gzip");
    (gz.finish().expect("gzip"), bad_lines)
}

fn read_parquet(bytes: Bytes) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet")
        .build()
        .expect("reader")
        .map(|b| b.expect("batch"))
        .collect()
}

fn landed_event(subject: &str) -> String {
    let event = json!({"specversion": "1.0", "type": "movielake.bronze.landed", "source": "uploader",
                       "id": "f1", "time": "2026-11-23T06:00:05Z", "subject": subject});
    json!({"Data": {"event": event},
           "Metadata": {"sys": {"MethodName": "bronze_to_silver", "UtcNow": "2026-11-23T06:01:00Z"}}})
    .to_string()
}

/// Uploads the file to bronze, announces it, and checks silver, quarantine and the manifest.
async fn uploaded_file_converts(lake: Arc<dyn Lake>, base: &str, name: &str) {
    let rows = 250_000;
    let (gz, bad_lines) = title_basics_gz(rows);
    let bronze = format!("bronze/imdb/title.basics/ingest_date=2026-11-23/{name}");
    lake.put(&bronze, Bytes::from(gz), PutMode::Create)
        .await
        .expect("upload");

    let (status, _, body) = post_to(base, "bronze_to_silver", landed_event(&bronze), false).await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    let logs = answer["Logs"].to_string();
    assert!(logs.contains("imdb_title_basics: in=250001"), "{logs}");
    let manifest_path = logs
        .split("manifest ")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("manifest in logs")
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&lake.get(&manifest_path).await.expect("manifest").bytes).expect("manifest json");
    assert_eq!(manifest["counts"]["records_in"], rows as u64 + 1);
    assert_eq!(manifest["counts"]["quarantined"], 3);
    assert_eq!(manifest["counts"]["silver"], rows as u64 - 2);

    let mut silver_rows = 0;
    let mut quarantined = Vec::new();
    for output in manifest["outputs"].as_array().expect("outputs") {
        let path = output["path"].as_str().expect("path");
        let bytes = lake.get(path).await.expect("output").bytes;
        assert_eq!(bytes.len() as u64, output["bytes"].as_u64().expect("bytes"), "{path}");
        match output["kind"].as_str() {
            Some("silver") => {
                let batches = read_parquet(bytes);
                let first = &batches[0];
                assert_eq!(
                    first
                        .column_by_name("original_title")
                        .expect("col")
                        .as_string::<i32>()
                        .value(0),
                    "NA"
                );
                silver_rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
            }
            Some("quarantine") => {
                for line in std::str::from_utf8(&bytes).expect("utf8").lines() {
                    let record: serde_json::Value = serde_json::from_str(line).expect("quarantine line");
                    quarantined.push(record["source"]["line"].as_u64().expect("line"));
                }
            }
            other => panic!("unexpected output kind {other:?}"),
        }
    }
    assert_eq!(silver_rows, rows - 2);
    quarantined.sort_unstable();
    assert_eq!(quarantined, bad_lines);

    // A redelivery rewrites the same objects with the same bytes.
    let before: Vec<Bytes> = output_bytes(&lake, &manifest).await;
    let (status, _, _) = post_to(base, "bronze_to_silver", landed_event(&bronze), false).await;
    assert_eq!(status, 200);
    assert_eq!(output_bytes(&lake, &manifest).await, before);
}

async fn output_bytes(lake: &Arc<dyn Lake>, manifest: &serde_json::Value) -> Vec<Bytes> {
    let mut out = Vec::new();
    for output in manifest["outputs"].as_array().expect("outputs") {
        out.push(
            lake.get(output["path"].as_str().expect("path"))
                .await
                .expect("get")
                .bytes,
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_imdb_file_is_converted_streamed_on_a_folder_lake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake_dir = dir.path().join("lake");
    let server = Server::start(lake_dir.to_str().expect("path"), dir.path());
    let lake: Arc<dyn Lake> = Arc::new(LocalLake::new(&lake_dir));
    uploaded_file_converts(lake.clone(), &server.url(""), "title.basics.tsv.gz").await;

    // Not an IMDb or Movies Dataset file: answered 200 (a redelivery would not help), skipped.
    let other = "bronze/imdb/title.basics/ingest_date=2026-11-23/notes.txt";
    lake.put(other, Bytes::from_static(b"id,name\n1,x\n"), PutMode::Create)
        .await
        .expect("upload");
    let (status, _, body) = post_to(&server.url(""), "bronze_to_silver", landed_event(other), false).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("skipped") && body.contains("not that of an IMDb file"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_imdb_file_is_converted_streamed_on_azurite() {
    let Some(endpoint) = azurite_endpoint() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&endpoint, dir.path());
    let lake = AzureBlobLake::new(&endpoint, AzureAuth::AzuriteDevKey).expect("azurite lake");
    lake.ensure_containers(&["bronze", "silver", "quarantine", "ops"])
        .await
        .expect("containers");
    let name = format!("{}.tsv.gz", unique("title.basics"));
    uploaded_file_converts(Arc::new(lake), &server.url(""), &name).await;
}

async fn serve_in_process(lake: Arc<dyn Lake>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let contracts_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let contracts = movielake::config::load_contracts(Some(&contracts_dir)).expect("contracts");
    let state = movielake::handler::AppState::new(lake, contracts, chrono::Duration::hours(24));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(movielake::handler::serve_on(listener, state, async move {
        let _ = stopped.await;
    }));
    (base, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_outage_while_writing_silver_fails_the_invocation_for_a_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gz, _) = title_basics_gz(20_000);
    let bronze = "bronze/imdb/title.basics/ingest_date=2026-11-23/title.basics.tsv.gz";
    let healthy: Arc<dyn Lake> = Arc::new(LocalLake::new(dir.path()));
    healthy
        .put(bronze, Bytes::from(gz), PutMode::Create)
        .await
        .expect("upload");

    // Streamed writes into silver fail as in an outage.
    let silver_down = FaultyLake::new(LocalLake::new(dir.path()), |call, path| {
        if call == Call::PutStream && path.starts_with("silver/") {
            outage(path)
        } else {
            Fault::Pass
        }
    });
    let (base, _stop) = serve_in_process(Arc::new(silver_down)).await;
    let (status, _, body) = post_to(&base, "bronze_to_silver", landed_event(bronze), false).await;
    assert_eq!(status, 500, "an outage must be retried, not skipped: {body}");
    assert!(
        body.contains("storage_unavailable") && body.contains("injected outage"),
        "{body}"
    );
    assert!(
        healthy.list("ops/runs/").await.expect("list").is_empty(),
        "no manifest for a failed run"
    );

    // The retry, once storage is back, converts the file.
    let (base, _stop) = serve_in_process(healthy.clone()).await;
    let (status, _, body) = post_to(&base, "bronze_to_silver", landed_event(bronze), false).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("imdb_title_basics: in=20001"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converting_a_file_again_replaces_its_snapshot_in_one_commit_and_no_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake: Arc<dyn Lake> = Arc::new(LocalLake::new(dir.path()));
    let tables = Arc::new(Tables::for_lake(lake.as_ref()));
    let contracts_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let contracts = Arc::new(movielake::config::load_contracts(Some(&contracts_dir)).expect("contracts"));
    let progress: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(|_: &str| {});
    let convert = |bronze: &'static str| {
        let (lake, tables, contracts, progress) = (lake.clone(), tables.clone(), contracts.clone(), progress.clone());
        async move {
            movielake::pipelines::files::convert(lake, tables, contracts, bronze, progress)
                .await
                .expect("convert")
        }
    };
    let count = |sql: &'static str| {
        let tables = tables.clone();
        async move {
            let batches = tables.sql("silver/imdb/title_basics", sql).await.expect("sql");
            batches[0].column(0).as_primitive::<Int64Type>().value(0)
        }
    };
    // Another day's snapshot, which a conversion of this day's file must leave alone.
    let (other_day, _) = title_basics_gz(300);
    let other = "bronze/imdb/title.basics/ingest_date=2026-11-22/title.basics.tsv.gz";
    lake.put(other, Bytes::from(other_day), PutMode::Create)
        .await
        .expect("upload");
    convert(other).await;

    let (gz, _) = title_basics_gz(1_000);
    let bronze = "bronze/imdb/title.basics/ingest_date=2026-11-23/title.basics.tsv.gz";
    lake.put(bronze, Bytes::from(gz), PutMode::Create)
        .await
        .expect("upload");
    let first = convert(bronze).await;
    let version = |done: &movielake::pipelines::files::FileConverted| {
        done_version(done, "silver/imdb/title_basics").expect("committed")
    };
    let v1 = version(&first);
    let day = "SELECT count(*) FROM t WHERE snapshot_date = DATE '2026-11-23'";
    let all = "SELECT count(*) FROM t";
    assert_eq!(count(day).await as u64, first.counts.silver);
    let again = convert(bronze).await;
    assert_eq!(version(&again), v1 + 1, "the second conversion is one commit");
    assert_eq!(again.counts, first.counts);
    assert_eq!(count(day).await as u64, first.counts.silver, "replaced, not appended");
    assert_eq!(
        count(all).await - count(day).await,
        300 - 1,
        "the other day's snapshot is untouched (one line is the header)"
    );
    // The first conversion's files are out of the table at the new version, in it at the old.
    let before = tables.open_at("silver/imdb/title_basics", v1).await.expect("v1");
    let now = tables.open("silver/imdb/title_basics").await.expect("now");
    let files = |t: &deltalake::DeltaTable| -> std::collections::BTreeSet<String> {
        t.snapshot()
            .expect("snapshot")
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .collect()
    };
    assert!(files(&before).is_disjoint(&files(&now).difference(&files(&before)).cloned().collect()));
    let first_parts: Vec<&str> = first
        .outputs
        .iter()
        .filter(|o| o.kind == OutputKind::Silver)
        .map(|o| o.path.as_str())
        .collect();
    assert!(!first_parts.is_empty());
    for part in first_parts {
        let relative = part.trim_start_matches("silver/imdb/title_basics/");
        assert!(files(&before).contains(relative), "{part} in version {v1}");
        assert!(!files(&now).contains(relative), "{part} replaced");
    }
}

fn done_version(done: &movielake::pipelines::files::FileConverted, table: &str) -> Option<u64> {
    done.tables.get(table).copied().flatten()
}

/// CSV field quoting (RFC 4180) for the hand-made Movies Dataset rows.
fn csv_row(fields: &[&str]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_string()
            }
        })
        .collect();
    quoted.join(",") + "\n"
}

/// Four movies whose gold numbers are computed by hand below, plus an exact repeat and a row
/// shifted by a broken quote.
fn hand_made_movies() -> String {
    let header = "adult,belongs_to_collection,budget,genres,homepage,id,imdb_id,original_language,original_title,overview,popularity,poster_path,production_companies,production_countries,release_date,revenue,runtime,spoken_languages,status,tagline,title,video,vote_average,vote_count\n";
    let company_a = "{'name': 'Alpha', 'id': 1}";
    let company_b = "{'name': 'Beta', 'id': 2}";
    let drama = "{'id': 18, 'name': 'Drama'}";
    let comedy = "{'id': 35, 'name': 'Comedy'}";
    let movie =
        |id: &str, budget: &str, genres: String, popularity: &str, companies: String, date: &str, revenue: &str| {
            csv_row(&[
                "False",
                "",
                budget,
                &genres,
                "",
                id,
                &format!("tt000000{id}"),
                "en",
                "M",
                "Plot, with a comma",
                popularity,
                "/p.jpg",
                &companies,
                "[]",
                date,
                revenue,
                "90.0",
                "[]",
                "Released",
                "",
                "M",
                "False",
                "6.5",
                "10",
            ])
        };
    let m1 = movie(
        "1",
        "100000000",
        format!("[{drama}]"),
        "10.0",
        format!("[{company_a}]"),
        "2000-03-01",
        "300000000",
    );
    let m2 = movie(
        "2",
        "0",
        format!("[{drama}, {comedy}]"),
        "20.0",
        format!("[{company_a}, {company_b}]"),
        "2000-06-01",
        "50000000",
    );
    let m3 = movie(
        "3",
        "200000000",
        format!("[{comedy}]"),
        "4.0",
        format!("[{company_b}]"),
        "2000-09-01",
        "0",
    );
    let m4 = movie(
        "4",
        "50000000",
        format!("[{drama}]"),
        "7.0",
        format!("[{company_a}]"),
        "2001-01-01",
        "80000000",
    );
    let shifted = "False,100,\"[{'id': 18, 'name': 'Drama'}]\",,1997-08-20,tt0000009,en,X\n";
    format!("{header}{m1}{m2}{m3}{m4}{m4}{shifted}")
}

fn column_f64(batch: &RecordBatch, name: &str, row: usize) -> Option<f64> {
    let col = batch.column_by_name(name).expect("column");
    col.is_valid(row).then(|| col.as_primitive::<Float64Type>().value(row))
}

fn column_i64(batch: &RecordBatch, name: &str, row: usize) -> Option<i64> {
    let col = batch.column_by_name(name).expect("column");
    col.is_valid(row).then(|| col.as_primitive::<Int64Type>().value(row))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_answers_equal_hand_computed_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("movies_metadata.csv");
    std::fs::write(&file, hand_made_movies()).expect("write csv");
    let lake: Arc<dyn Lake> = Arc::new(LocalLake::new(dir.path().join("lake")));
    let contracts_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let contracts = Arc::new(movielake::config::load_contracts(Some(&contracts_dir)).expect("contracts"));
    let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
    let landed = movielake::pipelines::files::land_local_file(lake.as_ref(), &file, date)
        .await
        .expect("land");
    let progress: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(|_: &str| {});
    let tables = Tables::for_lake(lake.as_ref());
    let done = movielake::pipelines::files::convert(
        lake.clone(),
        Arc::new(tables.clone()),
        contracts.clone(),
        &landed.path,
        progress,
    )
    .await
    .expect("convert");
    assert_eq!(
        (
            done.counts.records_in,
            done.counts.silver,
            done.counts.quarantined,
            done.counts.duplicates_dropped
        ),
        (6, 4, 1, 1)
    );

    let models_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gold");
    let models = movielake::pipelines::gold::load_models(Some(&models_dir)).expect("models");
    let movielake::pipelines::gold::GoldRun { built, skipped, .. } = movielake::pipelines::gold::build(
        lake.as_ref(),
        &tables,
        &contracts,
        &models,
        movielake::pipelines::gold::Refresh::All,
    )
    .await
    .expect("gold");
    // This lake has no watch events: only the model over them waits.
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].starts_with("watch_by_plan_country: skipped"), "{skipped:?}");
    assert_eq!(built.len(), models.len() - 1);

    // Read back through the gold table's log, in the model's order.
    let read = |name: &'static str| {
        let tables = tables.clone();
        async move {
            let batches = tables
                .sql(&format!("gold/{name}"), "SELECT * FROM t")
                .await
                .expect("gold table");
            let schema = batches[0].schema();
            arrow_select::concat::concat_batches(&schema, &batches).expect("one batch")
        }
    };

    // genre_year, ordered by year, popularity rank, genre.
    let g = read("genre_year").await;
    let genres: Vec<&str> = (0..g.num_rows())
        .map(|i| g.column_by_name("genre").expect("genre").as_string::<i32>().value(i))
        .collect();
    assert_eq!(genres, ["Drama", "Comedy", "Drama"]);
    let m = 1_000_000;
    // Drama 2000: movies 1 and 2. Budget of 2 unknown: 100M; revenue 300M + 50M; profit only
    // movie 1 (both known): 200M; popularity (10 + 20) / 2.
    assert_eq!(column_i64(&g, "total_budget", 0), Some(100 * m));
    assert_eq!(column_i64(&g, "total_revenue", 0), Some(350 * m));
    assert_eq!(column_i64(&g, "profit", 0), Some(200 * m));
    assert_eq!(column_f64(&g, "avg_popularity", 0), Some(15.0));
    // Comedy 2000: movies 2 and 3; no movie with both known: profit NULL; popularity 12.
    assert_eq!(column_i64(&g, "total_budget", 1), Some(200 * m));
    assert_eq!(column_i64(&g, "total_revenue", 1), Some(50 * m));
    assert_eq!(column_i64(&g, "profit", 1), None);
    assert_eq!(column_f64(&g, "avg_popularity", 1), Some(12.0));
    // Drama 2001: movie 4 once (its exact repeat was dropped).
    assert_eq!(column_i64(&g, "releases", 2), Some(1));
    assert_eq!(column_i64(&g, "profit", 2), Some(30 * m));
    let most_popular = g.column_by_name("most_popular").expect("col").as_boolean();
    assert_eq!(
        (0..3).map(|i| most_popular.value(i)).collect::<Vec<_>>(),
        [true, false, true]
    );

    // company_year, ordered by year and company id.
    let c = read("company_year").await;
    let ids: Vec<i64> = (0..c.num_rows())
        .filter_map(|i| column_i64(&c, "company_id", i))
        .collect();
    assert_eq!(ids, [1, 2, 1]);
    assert_eq!(
        (0..3).map(|i| column_i64(&c, "profit", i)).collect::<Vec<_>>(),
        [Some(200 * m), None, Some(30 * m)]
    );
    assert_eq!(
        (0..3).map(|i| column_i64(&c, "total_revenue", i)).collect::<Vec<_>>(),
        [Some(350 * m), Some(50 * m), Some(80 * m)]
    );
    assert_eq!(column_f64(&c, "avg_popularity", 1), Some(12.0));

    // Releases by genre per company and year.
    let cg = read("company_year_genres").await;
    let rows: Vec<(i64, String, i64)> = (0..cg.num_rows())
        .map(|i| {
            (
                column_i64(&cg, "company_id", i).expect("id"),
                cg.column_by_name("genre")
                    .expect("genre")
                    .as_string::<i32>()
                    .value(i)
                    .to_string(),
                column_i64(&cg, "releases", i).expect("releases"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, "Comedy".into(), 1),
            (1, "Drama".into(), 2),
            (2, "Comedy".into(), 2),
            (2, "Drama".into(), 1),
            (1, "Drama".into(), 1)
        ]
    );
}

#[test]
fn ingest_and_query_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("title.basics.tsv");
    let text = format!(
        "{HEADER}tt0000001\tshort\tCarmencita\tCarmencita\t0\t1894\t\\N\t1\tDocumentary,Short\n\
         tt0000002\tmovie\tnull\tNone\t0\tbad\t\\N\t1\tShort\n\
         tt0000003\tmovie\t\"Quoted\"\tNA\t0\t1900\t\\N\t\\N\t\\N"
    );
    std::fs::write(&file, text).expect("write");
    let lake = dir.path().join("lake");
    let movielake = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_movielake"))
            .arg("--lake")
            .arg(&lake)
            .arg("--contracts")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts"))
            .args(args)
            .output()
            .expect("run movielake")
    };
    let ingest = movielake(&["ingest", file.to_str().expect("path"), "--date", "2026-11-23"]);
    let stdout = String::from_utf8_lossy(&ingest.stdout);
    assert!(
        ingest.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    let count = |label: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string)
    };
    assert_eq!(count("records in").as_deref(), Some("3"), "{stdout}");
    assert_eq!(count("quarantined").as_deref(), Some("1"), "{stdout}");

    let query = movielake(&[
        "query",
        "SELECT count(*) AS n, count(runtime_minutes) AS with_runtime, max(original_title) AS o FROM imdb_title_basics",
    ]);
    let out = String::from_utf8_lossy(&query.stdout);
    assert!(query.status.success(), "{}", String::from_utf8_lossy(&query.stderr));
    assert!(out.contains("| 2 | 1            | NA |"), "{out}");

    // The same file again the same day: kept as landed, converted to the same objects.
    let again = movielake(&["ingest", file.to_str().expect("path"), "--date", "2026-11-23"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already in bronze"));
    // A corrected file of the same size under the same name is not taken for it.
    let text = std::fs::read_to_string(&file)
        .expect("read")
        .replace("Carmencita", "Carmencito");
    std::fs::write(&file, text).expect("write");
    let changed = movielake(&["ingest", file.to_str().expect("path"), "--date", "2026-11-23"]);
    assert!(!changed.status.success());
    assert!(
        String::from_utf8_lossy(&changed.stderr).contains("already holds another file"),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );

    let unknown = dir.path().join("notes.csv");
    std::fs::write(&unknown, "a,b\n1,2\n").expect("write");
    let refused = movielake(&["ingest", unknown.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("not an IMDb dataset file"), "{stderr}");
    let bad_sql = movielake(&["query", "SELECT * FROM no_such_table"]);
    assert!(!bad_sql.status.success());
    assert!(String::from_utf8_lossy(&bad_sql.stderr).contains("no_such_table"));
}
