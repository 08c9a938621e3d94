//! The table layer (Delta Lake through delta-rs) against every lake it runs on: a local folder
//! and Azurite. Append, transaction-id idempotence, time travel, the protocol every reader
//! needs, and many writers committing to one table at once.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use movielake::lake::{AzureAuth, AzureBlobLake, Lake, LocalLake, PutMode};
use movielake::tables::{Append, Committed, DataFile, FileCommit, Replace, TableLocation, Tables, Txn};

use crate::support::{azurite_endpoint, unique};

/// A lake under test: its kind, its lake port (an independent client to read the table's
/// log), its tables, and the folder that lives as long as it (local only).
type UnderTest = (String, Arc<dyn Lake>, Tables, Option<tempfile::TempDir>);

/// A local folder and, where Azurite runs, a blob lake.
async fn lakes() -> Vec<UnderTest> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let mut out: Vec<UnderTest> = vec![(
        "local".into(),
        Arc::new(LocalLake::new(&root)),
        Tables::new(TableLocation::for_lake(&root, None).unwrap()),
        Some(dir),
    )];
    if let Some(endpoint) = azurite_endpoint() {
        let lake = AzureBlobLake::new(&endpoint, AzureAuth::AzuriteDevKey).expect("azurite lake");
        lake.ensure_containers(movielake::config::CONTAINERS)
            .await
            .expect("containers");
        out.push((
            "azurite".into(),
            Arc::new(lake),
            Tables::new(TableLocation::for_lake(&endpoint, None).unwrap()),
            None,
        ));
    }
    out
}

fn batch(writer: i64, commit: i64, rows: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("writer", DataType::Utf8, false),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]));
    let ids: Vec<i64> = (0..rows).map(|r| writer * 1_000_000 + commit * 1_000 + r).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(vec![format!("w{writer}"); rows as usize])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_714_557_600_000_000); rows as usize]).with_timezone("UTC"),
            ),
        ],
    )
    .unwrap()
}

async fn counts(tables: &Tables, name: &str) -> (i64, i64) {
    let out = tables
        .sql(name, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM t")
        .await
        .expect("sql");
    let n = out[0].column(0).as_primitive::<Int64Type>().value(0);
    let d = out[0].column(1).as_primitive::<Int64Type>().value(0);
    (n, d)
}

#[tokio::test]
async fn append_time_travel_and_the_protocol_every_reader_reads() {
    for (kind, lake, tables, _keep) in lakes().await {
        let name = format!("silver/{}", unique("conformance"));
        let first = tables
            .append(&name, vec![batch(1, 0, 10)], &Append::default())
            .await
            .expect("append");
        assert_eq!(
            first,
            Committed::Version {
                version: 0,
                attempts: 1
            },
            "{kind}"
        );
        let second = tables
            .append(&name, vec![batch(1, 1, 5)], &Append::default())
            .await
            .expect("append");
        assert!(
            matches!(second, Committed::Version { version: 1, .. }),
            "{kind}: {second:?}"
        );
        assert_eq!(counts(&tables, &name).await, (15, 15), "{kind}");
        let v0 = tables.open_at(&name, 0).await.expect("version 0");
        assert_eq!(v0.version(), Some(0), "{kind}");
        assert_eq!(
            v0.get_file_uris().expect("files").count(),
            1,
            "{kind}: time travel sees one file"
        );

        // Read the protocol action with the lake's own client, not delta-rs: reader 1 / writer
        // 2 (Synapse serverless and Fabric read nothing newer), UTC timestamps (no NTZ).
        let log = lake
            .get(&format!("{name}/_delta_log/00000000000000000000.json"))
            .await
            .expect("first commit");
        let text = String::from_utf8(log.bytes.to_vec()).unwrap();
        let protocol: serde_json::Value = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v.get("protocol").cloned())
            .expect("a protocol action");
        assert_eq!(protocol["minReaderVersion"], 1, "{kind}: {protocol}");
        assert_eq!(protocol["minWriterVersion"], 2, "{kind}: {protocol}");
        assert!(protocol.get("readerFeatures").is_none(), "{kind}: {protocol}");
        assert!(
            text.contains(r#"\"type\":\"timestamp\""#),
            "{kind}: UTC timestamps: {text}"
        );
    }
}

#[tokio::test]
async fn a_replayed_transaction_is_recognised_by_the_table() {
    for (kind, _lake, tables, _keep) in lakes().await {
        let name = format!("silver/{}", unique("txn"));
        let txn = |version| Append {
            partition_by: vec!["writer".into()],
            txn: Some(Txn {
                app_id: "watch-events/partition-3".into(),
                version,
            }),
        };
        let first = tables
            .append(&name, vec![batch(3, 0, 7)], &txn(41))
            .await
            .expect("append");
        assert!(matches!(first, Committed::Version { version: 0, .. }), "{kind}");
        for _ in 0..2 {
            let replay = tables
                .append(&name, vec![batch(3, 0, 7)], &txn(41))
                .await
                .expect("replay");
            assert_eq!(replay, Committed::AlreadyCommitted { txn_version: 41 }, "{kind}");
        }
        let older = tables
            .append(&name, vec![batch(3, 9, 7)], &txn(40))
            .await
            .expect("older");
        assert_eq!(
            older,
            Committed::AlreadyCommitted { txn_version: 41 },
            "{kind}: an older batch is in"
        );
        let next = tables
            .append(&name, vec![batch(3, 1, 7)], &txn(42))
            .await
            .expect("next");
        assert!(
            matches!(next, Committed::Version { version: 1, .. }),
            "{kind}: {next:?}"
        );
        assert_eq!(counts(&tables, &name).await, (14, 14), "{kind}: each batch once");
    }
}

/// Eight writers commit 25 times each to one table at once, the way the flows commit: each
/// writes its data file into the table's folder through the lake port, then commits it with
/// its transaction id. The first commits also race to create the table: exactly one may.
///
/// Azurite ignores the `startFrom` listing parameter object_store sends to list the log from a
/// version on; before the table layer filtered that listing itself (`tables/azurite.rs`), every
/// writer here wedged on "Invalid table version: N" once they contended.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_commit_twenty_five_times_each_to_one_table() {
    const WRITERS: i64 = 8;
    const COMMITS: i64 = 25;
    for (kind, lake, tables, _keep) in lakes().await {
        let name = format!("silver/{}", unique("concurrent"));
        let started = std::time::Instant::now();
        let mut handles = Vec::new();
        for writer in 0..WRITERS {
            let (tables, lake, name) = (tables.clone(), lake.clone(), name.clone());
            handles.push(tokio::spawn(async move {
                let mut attempts = 0;
                for commit in 0..COMMITS {
                    let data = batch(writer, commit, 3);
                    let bytes = parquet_bytes(&data);
                    let file = format!("part-{writer}-{commit}.parquet");
                    lake.put(&format!("{name}/{file}"), bytes.clone().into(), PutMode::Overwrite)
                        .await
                        .expect("data file");
                    let commit_files = FileCommit {
                        schema: data.schema(),
                        partition_by: Vec::new(),
                        files: vec![DataFile {
                            path: file,
                            size: bytes.len() as u64,
                            rows: 3,
                            partition_values: Vec::new(),
                        }],
                        replace: Replace::Nothing,
                        txn: Some(Txn {
                            app_id: format!("writer-{writer}"),
                            version: commit,
                        }),
                    };
                    match tables.commit_files(&name, &commit_files).await {
                        Ok(Committed::Version { attempts: a, .. }) => attempts += a,
                        other => panic!("writer {writer} commit {commit}: {other:?}"),
                    }
                }
                attempts
            }));
        }
        let mut attempts = 0;
        for h in handles {
            attempts += h.await.expect("writer");
        }
        let table = tables.open(&name).await.expect("open");
        let commits = WRITERS * COMMITS;
        assert_eq!(
            table.version(),
            Some(commits as u64),
            "{kind}: the table's creation, then every commit a version"
        );
        assert_eq!(
            counts(&tables, &name).await,
            (commits * 3, commits * 3),
            "{kind}: no row lost or doubled"
        );
        eprintln!(
            "{kind}: {commits} commits by {WRITERS} writers in {:.1?} ({attempts} attempts)",
            started.elapsed()
        );
    }
}

/// Writes `data` as one file of table `name` and commits it.
async fn put_and_commit(
    lake: &dyn Lake,
    tables: &Tables,
    name: &str,
    file: &str,
    data: &RecordBatch,
) -> Result<Committed, movielake::tables::TableError> {
    let bytes = parquet_bytes(data);
    lake.put(&format!("{name}/{file}"), bytes.clone().into(), PutMode::Overwrite)
        .await
        .expect("data file");
    let commit = FileCommit {
        schema: data.schema(),
        partition_by: Vec::new(),
        files: vec![DataFile {
            path: file.to_string(),
            size: bytes.len() as u64,
            rows: data.num_rows() as u64,
            partition_values: Vec::new(),
        }],
        replace: Replace::Nothing,
        txn: None,
    };
    tables.commit_files(name, &commit).await
}

/// `batch` with one more column, `note`, optional, with a value in every row.
fn with_note(data: &RecordBatch, note: &str) -> RecordBatch {
    let mut fields: Vec<Field> = data.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("note", DataType::Utf8, true));
    let mut columns = data.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![note; data.num_rows()])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// A contract that gained an optional column: the commit that first writes it names it in the
/// table's schema, so readers see its values (null in the older rows); a change that would
/// break the rows already there (a column's type) is refused and commits nothing.
#[tokio::test]
async fn a_new_optional_column_is_named_by_the_commit_that_first_writes_it() {
    for (kind, lake, tables, _keep) in lakes().await {
        let name = format!("silver/{}", unique("evolve"));
        put_and_commit(lake.as_ref(), &tables, &name, "a.parquet", &batch(1, 0, 3))
            .await
            .expect("first commit");
        put_and_commit(
            lake.as_ref(),
            &tables,
            &name,
            "b.parquet",
            &with_note(&batch(2, 0, 2), "new"),
        )
        .await
        .expect("the commit with the new column");
        let out = tables
            .sql(&name, "SELECT count(*), count(note), min(note) FROM t")
            .await
            .expect("sql");
        assert_eq!(out[0].column(0).as_primitive::<Int64Type>().value(0), 5, "{kind}");
        assert_eq!(
            out[0].column(1).as_primitive::<Int64Type>().value(0),
            2,
            "{kind}: the new column is read"
        );
        // Older writers (without the column) still commit: their rows read as null in it.
        put_and_commit(lake.as_ref(), &tables, &name, "c.parquet", &batch(3, 0, 1))
            .await
            .expect("a file without the optional column");
        let version = tables.open(&name).await.expect("open").version();

        let data = batch(4, 0, 1);
        let mut fields: Vec<Field> = data.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[1] = Field::new("writer", DataType::Int64, false);
        let mut columns = data.columns().to_vec();
        columns[1] = Arc::new(Int64Array::from(vec![4]));
        let retyped = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let refused = put_and_commit(lake.as_ref(), &tables, &name, "d.parquet", &retyped).await;
        match refused {
            Err(movielake::tables::TableError::Invalid { message, .. }) => {
                assert!(
                    message.contains("'writer'") && message.contains("new name"),
                    "{kind}: {message}"
                )
            }
            other => panic!("{kind}: a type change must be refused: {other:?}"),
        }
        assert_eq!(
            tables.open(&name).await.expect("open").version(),
            version,
            "{kind}: nothing committed"
        );
        let out = tables.sql(&name, "SELECT count(*) FROM t").await.expect("sql");
        assert_eq!(out[0].column(0).as_primitive::<Int64Type>().value(0), 6, "{kind}");
    }
}

fn parquet_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut writer = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None).expect("writer");
    writer.write(batch).expect("write");
    writer.into_inner().expect("bytes")
}
