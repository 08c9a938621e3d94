//! Table maintenance (compaction, checkpoint, log cleanup, VACUUM) on every lake it runs on, a
//! local folder and Azurite: rows unchanged, few files per partition, the protocol every reader
//! needs, VACUUM's retention (refused under an hour, young files kept), writers committing while
//! it runs, one maintainer per table, the CLI and the timer Function over HTTP.

mod commands;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use movielake::lake::{AzureAuth, AzureBlobLake, Lake, LakeError, LocalLake, PutMode};
use movielake::tables::maintain::{MaintainError, MaintainOptions, Maintained, OptionsError, Retention};
use movielake::tables::{Append, Committed, TableLocation, Tables, Txn};
use serde_json::{Value, json};

use crate::support::{azurite_endpoint, unique};

/// A lake under test: its kind, its lake port, its tables, the folder it lives in (local only).
type UnderTest = (String, Arc<dyn Lake>, Tables, Option<tempfile::TempDir>);

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

/// `rows` rows of one writer's commit, alternating between partitions `a` and `b`.
fn batch(writer: i64, commit: i64, rows: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("part", DataType::Utf8, false),
        Field::new("writer", DataType::Utf8, false),
    ]));
    let ids: Vec<i64> = (0..rows).map(|r| writer * 1_000_000 + commit * 1_000 + r).collect();
    let parts: Vec<&str> = (0..rows).map(|r| if r % 2 == 0 { "a" } else { "b" }).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(parts)),
            Arc::new(StringArray::from(vec![format!("w{writer}"); rows as usize])),
        ],
    )
    .unwrap()
}

fn partitioned(txn: Option<Txn>) -> Append {
    Append {
        partition_by: vec!["part".into()],
        txn,
    }
}

/// A table of `commits` appends of 4 rows each: two files per commit, one per partition.
async fn small_appends(tables: &Tables, name: &str, commits: i64) {
    for commit in 0..commits {
        tables
            .append(name, vec![batch(0, commit, 4)], &partitioned(None))
            .await
            .expect("append");
    }
}

async fn ids(tables: &Tables, name: &str) -> Vec<i64> {
    let out = tables.sql(name, "SELECT id FROM t ORDER BY id").await.expect("sql");
    out.iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

fn options(retention_hours: u32) -> MaintainOptions {
    MaintainOptions::new(128, retention_hours, "tests/app/maintain.rs").expect("options")
}

async fn exists(lake: &dyn Lake, path: &str) -> bool {
    match lake.get(path).await {
        Ok(_) => true,
        Err(LakeError::NotFound { .. }) => false,
        Err(e) => panic!("{path}: {e}"),
    }
}

/// The protocol as the lake's own client reads it from the checkpoint maintenance wrote, and
/// the check that no commit after the first changed protocol or metadata.
async fn protocol_from_the_log(lake: &dyn Lake, name: &str) -> (i32, i32) {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let last = lake
        .get(&format!("{name}/_delta_log/_last_checkpoint"))
        .await
        .expect("_last_checkpoint");
    let version = serde_json::from_slice::<Value>(&last.bytes).unwrap()["version"]
        .as_u64()
        .unwrap();
    let checkpoint = lake
        .get(&format!("{name}/_delta_log/{version:020}.checkpoint.parquet"))
        .await
        .expect("checkpoint file");
    let reader = ParquetRecordBatchReaderBuilder::try_new(checkpoint.bytes)
        .unwrap()
        .build()
        .unwrap();
    let mut found = None;
    for batch in reader {
        let batch = batch.unwrap();
        let protocol = batch.column_by_name("protocol").expect("protocol column").as_struct();
        let reader = protocol
            .column_by_name("minReaderVersion")
            .unwrap()
            .as_primitive::<arrow_array::types::Int32Type>();
        let writer = protocol
            .column_by_name("minWriterVersion")
            .unwrap()
            .as_primitive::<arrow_array::types::Int32Type>();
        for row in 0..batch.num_rows() {
            if protocol.is_valid(row) {
                found = Some((reader.value(row), writer.value(row)));
            }
        }
    }
    for object in lake.list(&format!("{name}/_delta_log/")).await.unwrap() {
        if object.path.ends_with(".json") && !object.path.ends_with("00000000000000000000.json") {
            let text = String::from_utf8(lake.get(&object.path).await.unwrap().bytes.to_vec()).unwrap();
            assert!(
                !text.contains("\"protocol\"") && !text.contains("\"metaData\""),
                "{}: {text}",
                object.path
            );
        }
    }
    found.expect("a protocol row in the checkpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_small_appends_become_a_file_or_two_per_partition_with_every_row_kept() {
    for (kind, lake, tables, _keep) in lakes().await {
        let name = format!("silver/{}/watch", unique("maintain"));
        small_appends(&tables, &name, 40).await;
        let rows = ids(&tables, &name).await;
        assert_eq!(rows.len(), 160, "{kind}");

        let dry = tables
            .maintain(
                lake.as_ref(),
                &name,
                &MaintainOptions {
                    dry_run: true,
                    ..options(168)
                },
            )
            .await;
        let dry = dry.expect("dry run");
        assert_eq!((dry.before.files, dry.before.partitions.len()), (80, 2), "{kind}");
        assert_eq!(dry.compaction.files_removed, 80, "{kind}: {:?}", dry.compaction.bins);
        assert_eq!(dry.compaction.bins.len(), 2, "{kind}: one bin a partition");
        assert_eq!(
            tables.open(&name).await.unwrap().version(),
            Some(39),
            "{kind}: a dry run writes nothing"
        );
        assert!(
            !exists(lake.as_ref(), &format!("{name}/_delta_log/_last_checkpoint")).await,
            "{kind}"
        );

        let done: Maintained = tables
            .maintain(lake.as_ref(), &name, &options(168))
            .await
            .expect("maintain");
        eprintln!("{kind}: {done:?}");
        assert_eq!(
            done.compaction.files_removed, dry.compaction.files_removed,
            "{kind}: the dry run's plan"
        );
        assert!(done.after.max_files_per_partition() <= 2, "{kind}: {:?}", done.after);
        assert_eq!(done.after.partitions.len(), 2, "{kind}");
        assert!(done.version_after > done.version_before, "{kind}");
        assert_eq!(done.protocol, (1, 2), "{kind}");
        assert!(
            done.vacuum.as_ref().is_some_and(|v| v.files.is_empty()),
            "{kind}: a week's retention deletes nothing just compacted"
        );
        assert_eq!(ids(&tables, &name).await, rows, "{kind}: the same rows, each once");
        assert_eq!(protocol_from_the_log(lake.as_ref(), &name).await, (1, 2), "{kind}");

        // Compacted files carry plain strings, as the ingest writer writes them (no Utf8View).
        let table = tables.open(&name).await.unwrap();
        let file = table
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .next()
            .expect("a file")
            .path()
            .to_string();
        let bytes = lake.get(&format!("{name}/{file}")).await.expect("compacted file").bytes;
        let schema = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .schema()
            .clone();
        assert_eq!(
            schema.field_with_name("writer").unwrap().data_type(),
            &DataType::Utf8,
            "{kind}"
        );

        // Again: nothing left to compact, the checkpoint is current.
        let again = tables
            .maintain(lake.as_ref(), &name, &options(168))
            .await
            .expect("again");
        assert_eq!(again.compaction.files_removed, 0, "{kind}");
        assert!(
            matches!(
                again.checkpoint,
                movielake::tables::maintain::Checkpoint::Current { .. }
            ),
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_deletes_only_what_is_older_than_the_retention() {
    assert!(matches!(
        Retention::hours(0),
        Err(OptionsError::RetentionTooShort { hours: 0 })
    ));
    assert!(
        MaintainOptions::new(128, 0, "t").is_err(),
        "0 h refused whatever the way in"
    );
    for (kind, lake, tables, keep) in lakes().await {
        let name = format!("silver/{}/watch", unique("vacuum"));
        small_appends(&tables, &name, 10).await;

        // A file removed two hours ago (its tombstone is old) ...
        let before: BTreeSet<String> = active(&tables, &name).await;
        tables
            .append(&name, vec![batch(9, 0, 1)], &partitioned(None))
            .await
            .expect("append");
        let old = active(&tables, &name)
            .await
            .difference(&before)
            .next()
            .cloned()
            .expect("the new file");
        remove_as_of(&tables, &name, &old, chrono::Duration::hours(2)).await;
        // ... a file a writer still at work put there a moment ago, not committed yet ...
        let young_orphan = format!("{name}/part=a/part-in-flight.parquet");
        lake.put(&young_orphan, bytes::Bytes::from_static(b"PAR1"), PutMode::Create)
            .await
            .expect("in-flight file");
        // ... and, on a folder where the clock can be set back, one a dead writer left hours ago.
        let mut expected = vec![old.clone()];
        if let Some(dir) = &keep {
            let path = dir.path().join(&name).join("part=b/part-dead-writer.parquet");
            std::fs::write(&path, b"PAR1").unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(SystemTime::now() - Duration::from_secs(3 * 3600))
                .unwrap();
            expected.push("part=b/part-dead-writer.parquet".into());
        }
        expected.sort();

        let dry = tables
            .maintain(
                lake.as_ref(),
                &name,
                &MaintainOptions {
                    dry_run: true,
                    ..options(1)
                },
            )
            .await
            .expect("dry run");
        assert_eq!(
            dry.vacuum.as_ref().map(|v| v.files.clone()),
            Some(expected.clone()),
            "{kind}"
        );
        assert!(
            exists(lake.as_ref(), &format!("{name}/{old}")).await,
            "{kind}: a dry run deletes nothing"
        );

        let done = tables
            .maintain(lake.as_ref(), &name, &options(1))
            .await
            .expect("maintain");
        let vacuumed = done.vacuum.expect("vacuumed");
        assert_eq!((vacuumed.files, vacuumed.retention_hours), (expected, 1), "{kind}");
        assert!(
            !exists(lake.as_ref(), &format!("{name}/{old}")).await,
            "{kind}: the old tombstone's file"
        );
        assert!(
            exists(lake.as_ref(), &young_orphan).await,
            "{kind}: a writer's file, not committed yet"
        );
        for file in &before {
            assert!(
                exists(lake.as_ref(), &format!("{name}/{file}")).await,
                "{kind}: {file} was compacted away a moment ago: kept for time travel"
            );
        }
        assert_eq!(ids(&tables, &name).await.len(), 40, "{kind}");
        assert_eq!(done.protocol, (1, 2), "{kind}");
    }
}

async fn active(tables: &Tables, name: &str) -> BTreeSet<String> {
    let table = tables.open(name).await.unwrap();
    table
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
        .map(|f| f.path().to_string())
        .collect()
}

/// Commits the removal of `path` as if it had happened `ago`.
async fn remove_as_of(tables: &Tables, name: &str, path: &str, ago: chrono::Duration) {
    use deltalake::kernel::Action;
    use deltalake::kernel::transaction::CommitBuilder;
    use deltalake::protocol::DeltaOperation;
    let table = tables.open(name).await.unwrap();
    let snapshot = table.snapshot().unwrap();
    let file = snapshot
        .log_data()
        .iter()
        .find(|f| f.path() == path)
        .expect("active file");
    let mut remove = file.remove_action(true);
    remove.deletion_timestamp = Some((chrono::Utc::now() - ago).timestamp_millis());
    CommitBuilder::default()
        .with_actions(vec![Action::Remove(remove)])
        .build(
            Some(snapshot),
            table.log_store(),
            DeltaOperation::Delete { predicate: None },
        )
        .await
        .expect("remove");
}

/// Four writers commit while maintenance compacts the same partitions, twice: every row stays,
/// once. A compaction that loses to a writer is planned again; appends never lose to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_keep_committing_while_maintenance_runs() {
    const WRITERS: i64 = 4;
    const COMMITS: i64 = 10;
    for (kind, lake, tables, _keep) in lakes().await {
        let name = format!("silver/{}/watch", unique("concurrent"));
        small_appends(&tables, &name, 10).await;
        let mut writers = Vec::new();
        for writer in 1..=WRITERS {
            let (tables, name) = (tables.clone(), name.clone());
            writers.push(tokio::spawn(async move {
                for commit in 0..COMMITS {
                    let txn = Txn {
                        app_id: format!("writer-{writer}"),
                        version: commit,
                    };
                    let done = tables
                        .append(&name, vec![batch(writer, commit, 4)], &partitioned(Some(txn)))
                        .await;
                    assert!(
                        matches!(done, Ok(Committed::Version { .. })),
                        "writer {writer} commit {commit}: {done:?}"
                    );
                }
            }));
        }
        let maintainer = {
            let (tables, lake, name) = (tables.clone(), lake.clone(), name.clone());
            tokio::spawn(async move {
                let mut runs = Vec::new();
                for _ in 0..2 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    runs.push(
                        tables
                            .maintain(lake.as_ref(), &name, &options(168))
                            .await
                            .expect("maintain"),
                    );
                }
                runs
            })
        };
        for writer in writers {
            writer.await.expect("writer");
        }
        for run in maintainer.await.expect("maintainer") {
            eprintln!(
                "{kind}: during the writes: compacted {} files into {} (attempts {}), v{} -> v{}",
                run.compaction.files_removed,
                run.compaction.files_added,
                run.compaction.attempts,
                run.version_before,
                run.version_after
            );
        }
        let expected = 40 + WRITERS * COMMITS * 4;
        let rows = ids(&tables, &name).await;
        let distinct: BTreeSet<i64> = rows.iter().copied().collect();
        assert_eq!(
            (rows.len() as i64, distinct.len() as i64),
            (expected, expected),
            "{kind}: no row lost or doubled"
        );
        let last = tables
            .maintain(lake.as_ref(), &name, &options(168))
            .await
            .expect("after the writers");
        assert!(last.after.max_files_per_partition() <= 2, "{kind}: {:?}", last.after);
        assert_eq!(ids(&tables, &name).await, rows, "{kind}");
        // The transaction ids live on in the checkpoint: a replay is still recognised.
        let replay = Txn {
            app_id: "writer-1".into(),
            version: COMMITS - 1,
        };
        let again = tables
            .append(&name, vec![batch(1, COMMITS - 1, 4)], &partitioned(Some(replay)))
            .await;
        assert!(
            matches!(again, Ok(Committed::AlreadyCommitted { .. })),
            "{kind}: {again:?}"
        );
    }
}

/// A table replaced whole (as gold is) while maintenance compacts it holds one result, never
/// the compacted old files beside the new ones: an overwrite that lost to the compaction is
/// done again on the new version, not committed on top of it by delta-rs' own retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_table_replaced_while_it_is_compacted_holds_one_result() {
    const REPLACES: i64 = 6;
    for (kind, lake, tables, _keep) in lakes().await {
        let name = format!("gold/{}", unique("replaced"));
        small_appends(&tables, &name, 10).await;
        let replacer = {
            let (tables, name) = (tables.clone(), name.clone());
            tokio::spawn(async move {
                for round in 1..=REPLACES {
                    let rows = batch(9, round, 6);
                    tables
                        .replace_all(&name, rows.schema(), vec![rows])
                        .await
                        .expect("replace");
                }
            })
        };
        let maintainer = {
            let (tables, lake, name) = (tables.clone(), lake.clone(), name.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    // A compaction that lost to a replace is planned again or finds nothing
                    // left to do: either is fine, an error is not.
                    tables
                        .maintain(lake.as_ref(), &name, &options(168))
                        .await
                        .expect("maintain");
                }
            })
        };
        replacer.await.expect("replacer");
        maintainer.await.expect("maintainer");
        let expected: Vec<i64> = (0..6).map(|r| 9_000_000 + REPLACES * 1_000 + r).collect();
        assert_eq!(ids(&tables, &name).await, expected, "{kind}: the last result, once");
    }
}

/// One maintainer per table: a live lease turns a second one away, an expired or unreadable
/// one is taken over.
#[tokio::test]
async fn a_table_being_maintained_is_skipped_not_maintained_twice() {
    for (kind, lake, tables, _keep) in lakes().await {
        let name = format!("silver/{}/watch", unique("lease"));
        small_appends(&tables, &name, 3).await;
        let lease = format!("ops/maintain/leases/{name}.json");
        let held = json!({"holder": "maintain_tables at 2024-05-01T10:15:00Z", "expires_at": chrono::Utc::now() + chrono::Duration::minutes(30)});
        lake.put(&lease, held.to_string().into(), PutMode::Overwrite)
            .await
            .unwrap();
        match tables.maintain(lake.as_ref(), &name, &options(168)).await {
            Err(MaintainError::Busy { holder, .. }) => {
                assert_eq!(holder, "maintain_tables at 2024-05-01T10:15:00Z", "{kind}")
            }
            other => panic!("{kind}: {other:?}"),
        }
        assert_eq!(
            tables.open(&name).await.unwrap().version(),
            Some(2),
            "{kind}: untouched"
        );

        for stale in [
            json!({"holder": "a run that died", "expires_at": chrono::Utc::now() - chrono::Duration::minutes(1)})
                .to_string(),
            "not a lease".to_string(),
        ] {
            lake.put(&lease, stale.into(), PutMode::Overwrite).await.unwrap();
            tables
                .maintain(lake.as_ref(), &name, &options(168))
                .await
                .expect("taken over");
        }
        let released: Value = serde_json::from_slice(&lake.get(&lease).await.unwrap().bytes).unwrap();
        assert_eq!(released["holder"], "tests/app/maintain.rs", "{kind}");
        let until: chrono::DateTime<chrono::Utc> = serde_json::from_value(released["expires_at"].clone()).unwrap();
        assert!(until <= chrono::Utc::now(), "{kind}: released when done");
    }
}

/// Why the lease exists: delta-rs 1.1 commits two OPTIMIZEs planned from one snapshot, and the
/// table then holds every compacted row twice. If this starts failing after an upgrade, delta-rs
/// has fixed its conflict check; the lease stays harmless.
#[tokio::test]
async fn delta_rs_lets_two_optimizes_of_one_snapshot_both_commit() {
    let (_, _, tables, _keep) = lakes().await.into_iter().next().unwrap();
    let name = format!("silver/{}/watch", unique("twice"));
    small_appends(&tables, &name, 5).await;
    let first = tables.open(&name).await.unwrap();
    let second = tables.open(&name).await.unwrap();
    first.optimize().await.expect("first");
    second.optimize().await.expect("second: not refused");
    assert_eq!(ids(&tables, &name).await.len(), 40, "20 rows, twice");
}

#[tokio::test]
async fn the_lake_lists_its_delta_tables_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let (lake, tables) = (
        LocalLake::new(&root),
        Tables::new(TableLocation::for_lake(&root, None).unwrap()),
    );
    small_appends(&tables, "silver/events/watch", 1).await;
    small_appends(&tables, "gold/genre_year", 1).await;
    lake.put(
        "silver/imdb/title_basics/snapshot_date=2024-05-01/part-1.parquet",
        "x".into(),
        PutMode::Create,
    )
    .await
    .unwrap();
    let listed = Tables::list_tables(&lake).await.unwrap();
    assert_eq!(listed, vec!["gold/genre_year", "silver/events/watch"]);
}
