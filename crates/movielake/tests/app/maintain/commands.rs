//! The two front doors of table maintenance: `movielake maintain` and the `maintain_tables`
//! timer Function over real HTTP; and the figures the README quotes.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use movielake::lake::PutMode;
use movielake::tables::{DataFile, FileCommit, Replace, TableLocation, Tables};
use serde_json::{Value, json};

use super::{lakes, options, small_appends};
use crate::handler::post_to;
use crate::support::{Server, unique};

/// `movielake maintain`: progress per table and a summary; refusals with a hint.
#[tokio::test]
async fn the_command_reports_each_table_and_refuses_a_short_retention() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake").display().to_string();
    let tables = Tables::new(TableLocation::for_lake(&root, None).unwrap());
    small_appends(&tables, "silver/events/watch", 10).await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_movielake"))
            .args(["--lake", &root, "maintain"])
            .args(args)
            .current_dir(dir.path())
            .env_remove("MOVIELAKE_MAINTAIN_RETENTION_HOURS")
            .env_remove("MOVIELAKE_MAINTAIN_TARGET_FILE_MB")
            .output()
            .expect("run movielake");
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.code(), text(out.stdout), text(out.stderr))
    };
    let (code, out, err) = run(&["--dry-run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("silver/events/watch  20 files") && out.contains("would compact 20 files"),
        "{out}"
    );
    assert!(out.contains("    compact part=a: 10 files"), "{out}");

    let (code, out, err) = run(&[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("silver/events/watch  files 20 -> 2 (at most 1 a partition)"),
        "{out}"
    );
    assert!(
        out.contains("maintained 1 table in") && out.contains("0 failed"),
        "{out}"
    );

    let (code, _, err) = run(&["--retention-hours", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("VACUUM retention of 0 h refused") && err.contains("hint: use --retention-hours 1 or more"),
        "{err}"
    );

    let (code, _, err) = run(&["--table", "silver/no/such"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no Delta table silver/no/such")
            && err.contains("hint: the lake's Delta tables: silver/events/watch"),
        "{err}"
    );
}

/// The timer Function over real HTTP, as the host invokes it.
#[tokio::test]
async fn the_timer_function_maintains_every_table_and_logs_each() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake").display().to_string();
    let tables = Tables::new(TableLocation::for_lake(&root, None).unwrap());
    small_appends(&tables, "silver/events/watch", 5).await;
    small_appends(&tables, "gold/genre_year", 2).await;
    let server = Server::start(&root, dir.path());
    let timer = json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": "maintain_tables", "UtcNow": "2024-05-01T10:15:00Z", "RandGuid": "1"}}
    });
    let (status, ctype, body) = post_to(&server.url(""), "maintain_tables", timer.to_string(), false).await;
    assert_eq!((status, ctype.as_str()), (200, "application/json"), "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let logs: Vec<&str> = body["Logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        logs.iter().any(|l| l.starts_with("silver/events/watch: files 10 -> 2")),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.starts_with("gold/genre_year: files 4 -> 2")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|l| l.starts_with("2 tables maintained in")), "{logs:?}");
    assert!(
        logs.iter().all(|l| !l.contains("failed") || l.contains("0 failed")),
        "{logs:?}"
    );
}

/// Figures, not a test (README, "Table maintenance"): a day of watch events as ingest leaves it,
/// 1,000 parts of 100 rows in 24 hour partitions committed ten at a time, then one maintenance
/// run. `cargo test -p movielake --test app maintain::commands::measure -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_compacting_a_thousand_small_parts() {
    const PARTS: usize = 1_000;
    for (kind, lake, tables, _keep) in lakes().await {
        let name = format!("silver/{}/watch", unique("thousand"));
        let file_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("writer", DataType::Utf8, false),
        ]));
        let mut table_schema = file_schema.fields().to_vec();
        table_schema.push(Arc::new(Field::new("hour", DataType::Utf8, false)));
        let table_schema = Arc::new(Schema::new(table_schema));
        let started = std::time::Instant::now();
        let mut files = Vec::new();
        for part in 0..PARTS {
            let ids: Vec<i64> = (0..100).map(|r| (part * 100 + r) as i64).collect();
            let rows = RecordBatch::try_new(
                file_schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(vec![format!("w{part}"); 100])),
                ],
            )
            .unwrap();
            let mut bytes = Vec::new();
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, file_schema.clone(), None).unwrap();
            writer.write(&rows).unwrap();
            writer.close().unwrap();
            let hour = format!("{:02}", part % 24);
            let path = format!("hour={hour}/part-{part:05}.parquet");
            let size = bytes.len() as u64;
            lake.put(&format!("{name}/{path}"), bytes.into(), PutMode::Create)
                .await
                .unwrap();
            files.push(DataFile {
                path,
                size,
                rows: 100,
                partition_values: vec![("hour".into(), Some(hour))],
            });
            if files.len() == 10 {
                let commit = FileCommit {
                    schema: table_schema.clone(),
                    partition_by: vec!["hour".into()],
                    files: std::mem::take(&mut files),
                    replace: Replace::Nothing,
                    txn: None,
                };
                tables.commit_files(&name, &commit).await.expect("commit");
            }
        }
        let written = started.elapsed();
        let count = || async {
            let started = std::time::Instant::now();
            let out = tables.sql(&name, "SELECT count(*) FROM t").await.expect("count");
            (out[0].column(0).as_primitive::<Int64Type>().value(0), started.elapsed())
        };
        let (rows_before, read_before) = count().await;
        let done = tables
            .maintain(lake.as_ref(), &name, &options(168))
            .await
            .expect("maintain");
        let (rows_after, read_after) = count().await;
        assert_eq!(rows_before, rows_after);
        eprintln!(
            "{kind}: {PARTS} parts in {} partitions (written and committed in {written:.1?}): maintain {:.1?}, \
             files {} -> {} ({} a partition at most), {} -> {} bytes, v{} -> v{}; count(*) of {rows_after} rows \
             {read_before:.0?} before, {read_after:.0?} after",
            done.before.partitions.len(),
            done.elapsed,
            done.before.files,
            done.after.files,
            done.after.max_files_per_partition(),
            done.before.bytes,
            done.after.bytes,
            done.version_before,
            done.version_after,
        );
    }
}
