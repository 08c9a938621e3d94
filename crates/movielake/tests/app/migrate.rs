//! `movielake migrate` on a lake written in the previous release's layout (8e900ae: loose
//! Parquet silver parts under Hive folders, 16 TMDB movie buckets, one Parquet file per gold
//! table), on a local folder and on Azurite: every table becomes a Delta table whose log names
//! the old files, unchanged; a second run changes nothing; a file of another schema keeps its
//! table out, reported.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use movielake::lake::{AzureAuth, AzureBlobLake, Lake, LocalLake, PutMode};
use movielake::tables::migrate::{self, MIGRATE_APP_ID, Options, Outcome, TableReport};
use movielake::tables::{TableLocation, Tables, Txn};
use movielake_core::ContractSet;
use movielake_core::output::silver::silver_schema;
use movielake_core::sources::tmdb::movies::{self, MovieRow};
use parquet::arrow::ArrowWriter;

use crate::support::{azurite_endpoint, unique};

/// A lake under test: its kind, its lake port, its tables, what `--lake` names it by, and the
/// folder that lives as long as it (local only).
struct UnderTest {
    kind: &'static str,
    lake: Arc<dyn Lake>,
    tables: Tables,
    location: String,
    _dir: Option<tempfile::TempDir>,
}

async fn lakes() -> Vec<UnderTest> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let mut out = vec![UnderTest {
        kind: "local",
        lake: Arc::new(LocalLake::new(&root)),
        tables: Tables::new(TableLocation::for_lake(&root, None).unwrap()),
        location: root,
        _dir: Some(dir),
    }];
    if let Some(endpoint) = azurite_endpoint() {
        let lake = AzureBlobLake::new(&endpoint, AzureAuth::AzuriteDevKey).expect("azurite lake");
        lake.ensure_containers(movielake::config::CONTAINERS)
            .await
            .expect("containers");
        out.push(UnderTest {
            kind: "azurite",
            lake: Arc::new(lake),
            tables: Tables::new(TableLocation::for_lake(&endpoint, None).unwrap()),
            location: endpoint,
            _dir: None,
        });
    }
    out
}

/// A contract of the old lake: `source` is unique per run (Azurite is shared by every test).
fn contract_toml(name: &str, source: &str, table: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = 2\nsource = \"{source}\"\ntable = \"{table}\"\nkey = [\"event_id\"]\n\
         partition_by = [\"event_date\", \"hour\"]\n\
         [[columns]]\nname = \"event_id\"\ntype = \"string\"\nrequired = true\n\
         [[columns]]\nname = \"user_id\"\ntype = \"string\"\nrequired = true\n\
         [[columns]]\nname = \"position\"\ntype = \"int64\"\n\
         [[columns]]\nname = \"event_date\"\ntype = \"date\"\nrequired = true\n\
         [[columns]]\nname = \"hour\"\ntype = \"int32\"\nrequired = true\n"
    )
}

/// `rows` rows under `schema` (the silver schema of the contract above, or part of it).
fn rows(schema: &SchemaRef, rows: usize, tag: &str) -> RecordBatch {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.data_type() {
                DataType::Utf8 if f.name() == "_rescued" => Arc::new(StringArray::from(vec![None::<&str>; rows])),
                DataType::Utf8 => Arc::new(StringArray::from(
                    (0..rows).map(|i| format!("{tag}-{}-{i}", f.name())).collect::<Vec<_>>(),
                )),
                DataType::Int64 => Arc::new(Int64Array::from((0..rows as i64).collect::<Vec<_>>())),
                DataType::Int32 => Arc::new(Int32Array::from((0..rows as i32).collect::<Vec<_>>())),
                DataType::Date32 => Arc::new(Date32Array::from(vec![19_844; rows])),
                DataType::Timestamp(_, _) => {
                    Arc::new(TimestampMicrosecondArray::from(vec![1_714_557_600_000_000; rows]).with_timezone("UTC"))
                }
                other => panic!("no test values for {other}"),
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

fn parquet(batch: &RecordBatch) -> Bytes {
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        batch.schema(),
        Some(movielake_core::output::silver::writer_properties()),
    )
    .unwrap();
    writer.write(batch).unwrap();
    Bytes::from(writer.into_inner().unwrap())
}

fn movie(id: i64, title: &str, day: u32) -> MovieRow {
    let date = chrono::NaiveDate::from_ymd_opt(2024, 5, day).unwrap();
    MovieRow {
        movie_id: id,
        title: Some(title.into()),
        original_title: None,
        original_language: Some("en".into()),
        release_date: None,
        popularity: Some(1.5),
        vote_average: None,
        vote_count: Some(3),
        genre_ids: Some(vec![18, 53]),
        adult: Some(false),
        video: None,
        list: "movie/popular".into(),
        page: 1,
        position: 1,
        snapshot_date: date,
        snapshot_at: date.and_hms_opt(6, 0, 0).unwrap().and_utc(),
        rescued: None,
        source_object: format!("bronze/tmdb/movie_popular/ingest_date=2024-05-{day:02}/page=0001.json"),
        ingested_at: date.and_hms_opt(6, 1, 0).unwrap().and_utc(),
        run_id: "r".into(),
    }
}

/// The old lake: what the previous release left, path → bytes.
struct OldLake {
    contracts: ContractSet,
    contract_files: Vec<(String, String)>,
    watch: String,
    wrong: String,
    gold: String,
    files: BTreeMap<String, Bytes>,
    /// (event_date, hour) → rows written there.
    partitions: BTreeMap<(String, i32), i64>,
    movies: bool,
}

async fn old_lake(lake: &dyn Lake, with_movies: bool) -> OldLake {
    let source = unique("mig").replace('-', "_");
    let contract_files = vec![
        (
            "mig_watch.toml".to_string(),
            contract_toml("mig_watch", &source, "watch"),
        ),
        (
            "mig_wrong.toml".to_string(),
            contract_toml("mig_wrong", &source, "wrong"),
        ),
    ];
    let contracts = ContractSet::load(contract_files.iter().map(|(f, t)| (f.as_str(), t.as_str()))).unwrap();
    let (watch, wrong) = (format!("silver/{source}/watch"), format!("silver/{source}/wrong"));
    let gold = format!("gold/{source}_genre_year");
    let schema = silver_schema(contracts.get("mig_watch").unwrap());
    let mut files = BTreeMap::new();
    files.insert(
        format!("{watch}/event_date=2024-05-01/hour=10/part-0-10-12.parquet"),
        parquet(&rows(&schema, 3, "a")),
    );
    files.insert(
        format!("{watch}/event_date=2024-05-01/hour=11/part-0-13-14.parquet"),
        parquet(&rows(&schema, 2, "b")),
    );
    // A part of the contract's version 1, before the nullable `position` existed: it fits
    // without a rewrite (readers read the missing column as nulls).
    let v1 = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| f.name() != "position")
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    ));
    files.insert(
        format!("{watch}/event_date=2024-05-02/hour=7/part-1-1-4.parquet"),
        parquet(&rows(&v1, 4, "c")),
    );
    // The other table: one good part, one with a column its contract never had.
    files.insert(
        format!("{wrong}/event_date=2024-05-01/hour=10/part-0-1-2.parquet"),
        parquet(&rows(&schema, 2, "d")),
    );
    let mut extra: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    extra.push(Field::new("device", DataType::Utf8, true));
    files.insert(
        format!("{wrong}/event_date=2024-05-01/hour=11/part-0-3-4.parquet"),
        parquet(&rows(&Arc::new(Schema::new(extra)), 2, "e")),
    );
    let gold_schema = Arc::new(Schema::new(vec![
        Field::new("genre", DataType::Utf8, true),
        Field::new("year", DataType::Int32, true),
        Field::new("releases", DataType::Int64, false),
    ]));
    files.insert(
        format!("{gold}/part-00000.parquet"),
        parquet(&rows(&gold_schema, 5, "g")),
    );
    if with_movies {
        // Two buckets (movie_id % 16), one row per movie each, sorted by id: the old writer's way.
        let (m1, m17, m2) = (movie(1, "One", 1), movie(17, "Seventeen", 2), movie(2, "Two", 1));
        files.insert(
            movies::bucket_path(1),
            Bytes::from(movies::encode(&[&m1, &m17]).unwrap()),
        );
        files.insert(movies::bucket_path(2), Bytes::from(movies::encode(&[&m2]).unwrap()));
    }
    for (path, bytes) in &files {
        lake.put(path, bytes.clone(), PutMode::Create).await.expect("old file");
    }
    let partitions = BTreeMap::from([
        (("2024-05-01".to_string(), 10), 3),
        (("2024-05-01".to_string(), 11), 2),
        (("2024-05-02".to_string(), 7), 4),
    ]);
    OldLake {
        contracts,
        contract_files,
        watch,
        wrong,
        gold,
        files,
        partitions,
        movies: with_movies,
    }
}

impl OldLake {
    /// The tables of this lake (with `--table`, so a shared Azurite's other tables are not
    /// touched).
    fn tables(&self) -> Vec<String> {
        let mut names = vec![self.watch.clone(), self.wrong.clone(), self.gold.clone()];
        if self.movies {
            names.push(movies::TABLE.to_string());
        }
        names
    }
}

fn by_table(reports: Vec<TableReport>) -> BTreeMap<String, TableReport> {
    reports.into_iter().map(|r| (r.table.clone(), r)).collect()
}

async fn count(tables: &Tables, name: &str) -> i64 {
    let out = tables.sql(name, "SELECT count(*) FROM t").await.expect("count");
    out[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn an_old_lake_becomes_delta_tables_without_a_data_file_rewritten() {
    for t in lakes().await {
        let kind = t.kind;
        // silver/tmdb/movies has one name in every lake: on a shared Azurite other tests own it.
        let old = old_lake(t.lake.as_ref(), kind == "local").await;
        let options = |dry_run| Options {
            dry_run,
            only: old.tables(),
        };

        // A dry run says what it would commit and writes nothing.
        let dry = by_table(
            migrate::migrate(t.lake.as_ref(), &t.tables, &old.contracts, &options(true), |_| {})
                .await
                .expect("dry run"),
        );
        assert_eq!(
            dry[&old.watch].outcome,
            Outcome::WouldMigrate { files: 3, rows: 9 },
            "{kind}"
        );
        assert_eq!(
            dry[&old.gold].outcome,
            Outcome::WouldMigrate { files: 1, rows: 5 },
            "{kind}"
        );
        for table in old.tables() {
            let log = t.lake.list(&format!("{table}/_delta_log/")).await.unwrap();
            assert!(log.is_empty(), "{kind}: a dry run wrote {log:?}");
        }

        let reports = by_table(
            migrate::migrate(t.lake.as_ref(), &t.tables, &old.contracts, &options(false), |_| {})
                .await
                .expect("migrate"),
        );
        assert!(
            matches!(reports[&old.watch].outcome, Outcome::Migrated { files: 3, rows: 9, .. }),
            "{kind}: {:?}",
            reports[&old.watch]
        );
        assert!(reports[&old.watch].unnamed.is_empty(), "{kind}: every file in the log");
        assert!(
            matches!(reports[&old.gold].outcome, Outcome::Migrated { files: 1, rows: 5, .. }),
            "{kind}"
        );

        // The table with a file of another schema: reported with its reason, nothing committed.
        match &reports[&old.wrong].outcome {
            Outcome::NotMigrated { problems, .. } => {
                assert_eq!(problems.len(), 1, "{kind}: {problems:?}");
                assert!(problems[0].path.ends_with("hour=11/part-0-3-4.parquet"), "{kind}");
                assert!(
                    problems[0].problem.contains("column device is not in the table"),
                    "{kind}"
                );
            }
            other => panic!("{kind}: {other:?}"),
        }
        let log = t.lake.list(&format!("{}/_delta_log/", old.wrong)).await.unwrap();
        assert!(log.is_empty(), "{kind}: the refused table got a log: {log:?}");

        // The rows are there, in the partitions their folders named; nulls where the older
        // part had no `position`.
        let out = t
            .tables
            .sql(
                &old.watch,
                "SELECT CAST(event_date AS VARCHAR), hour, count(*), count(position) FROM t \
                 GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .await
            .expect("partitions");
        let mut seen = BTreeMap::new();
        let mut with_position = 0;
        for batch in &out {
            let dates = arrow_cast(batch.column(0));
            for (i, date) in dates.into_iter().enumerate() {
                let hour = batch.column(1).as_primitive::<arrow_array::types::Int32Type>().value(i);
                seen.insert((date, hour), batch.column(2).as_primitive::<Int64Type>().value(i));
                with_position += batch.column(3).as_primitive::<Int64Type>().value(i);
            }
        }
        assert_eq!(seen, old.partitions, "{kind}");
        assert_eq!(with_position, 5, "{kind}: the version-1 part reads as null positions");
        assert_eq!(count(&t.tables, &old.gold).await, 5, "{kind}");

        // Not a byte rewritten: the log names the old paths, which hold the old bytes.
        for table in [&old.watch, &old.gold] {
            let delta = t.tables.open(table).await.unwrap();
            let mut named: Vec<String> = delta
                .snapshot()
                .unwrap()
                .log_data()
                .iter()
                .map(|f| format!("{table}/{}", f.path()))
                .collect();
            named.sort();
            let old_paths: Vec<String> = old
                .files
                .keys()
                .filter(|p| p.starts_with(&format!("{table}/")))
                .cloned()
                .collect();
            assert_eq!(named, old_paths, "{kind}");
        }
        for (path, bytes) in &old.files {
            assert_eq!(
                &t.lake.get(path).await.expect("still there").bytes,
                bytes,
                "{kind}: {path}"
            );
        }

        // Protocol reader 1 / writer 2, read from the first commit with the lake's own client.
        for table in [&old.watch, &old.gold] {
            let first = t
                .lake
                .get(&format!("{table}/_delta_log/00000000000000000000.json"))
                .await
                .expect("first commit");
            let text = String::from_utf8(first.bytes.to_vec()).unwrap();
            let protocol = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|v| v.get("protocol").cloned())
                .expect("a protocol action");
            assert_eq!(protocol["minReaderVersion"], 1, "{kind}: {protocol}");
            assert_eq!(protocol["minWriterVersion"], 2, "{kind}: {protocol}");
        }
        let txn = Txn {
            app_id: MIGRATE_APP_ID.into(),
            version: 1,
        };
        assert!(t.tables.holds(&old.watch, &txn).await.unwrap(), "{kind}");

        if old.movies {
            assert!(
                matches!(
                    reports[movies::TABLE].outcome,
                    Outcome::Migrated { files: 2, rows: 3, .. }
                ),
                "{kind}: {:?}",
                reports[movies::TABLE]
            );
            assert_eq!(count(&t.tables, movies::TABLE).await, 3, "{kind}");
            // The app's next write to it is a MERGE: a later sighting replaces its movie's
            // row in the old bucket file, and the table keeps one row per movie.
            let later = movie(17, "Seventeen (restored)", 9);
            let merged = t
                .tables
                .merge(
                    movies::TABLE,
                    movies::batch(&[&later]).unwrap(),
                    &["movie_id"],
                    movielake::tables::Upsert::ReplaceWhen(movies::NEWER),
                )
                .await
                .expect("merge");
            assert_eq!((merged.inserted, merged.updated), (0, 1), "{kind}");
            let out = t
                .tables
                .sql(movies::TABLE, "SELECT title FROM t WHERE movie_id = 17")
                .await
                .unwrap();
            assert_eq!(
                out[0].column(0).as_string::<i32>().value(0),
                "Seventeen (restored)",
                "{kind}"
            );
            assert_eq!(count(&t.tables, movies::TABLE).await, 3, "{kind}");
        }

        // Again: nothing changes (same versions); the refused table is refused again.
        let versions = |names: Vec<String>| {
            let tables = t.tables.clone();
            async move {
                let mut out = Vec::new();
                for name in names {
                    out.push(tables.open(&name).await.unwrap().version());
                }
                out
            }
        };
        let before = versions(vec![old.watch.clone(), old.gold.clone()]).await;
        let again = by_table(
            migrate::migrate(t.lake.as_ref(), &t.tables, &old.contracts, &options(false), |_| {})
                .await
                .expect("again"),
        );
        assert!(
            matches!(again[&old.watch].outcome, Outcome::AlreadyMigrated { .. }),
            "{kind}"
        );
        assert!(
            matches!(again[&old.gold].outcome, Outcome::AlreadyMigrated { .. }),
            "{kind}"
        );
        assert!(
            matches!(again[&old.wrong].outcome, Outcome::NotMigrated { .. }),
            "{kind}"
        );
        assert_eq!(
            versions(vec![old.watch.clone(), old.gold.clone()]).await,
            before,
            "{kind}"
        );

        // The same through the binary: it says so per table and exits non-zero for the
        // refused table, with the file, the reason and the hint.
        let contracts_dir = tempfile::tempdir().unwrap();
        for (file, text) in &old.contract_files {
            std::fs::write(contracts_dir.path().join(file), text).unwrap();
        }
        let mut args = vec!["--lake".to_string(), t.location.clone()];
        args.extend(["--contracts".to_string(), contracts_dir.path().display().to_string()]);
        args.push("migrate".into());
        for table in old.tables() {
            args.extend(["--table".to_string(), table]);
        }
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_movielake"))
            .args(&args)
            .output()
            .expect("movielake migrate");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr),
        );
        assert!(!run.status.success(), "{kind}: {stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("{}: already migrated", old.watch)),
            "{kind}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("{}: NOT MIGRATED", old.wrong)),
            "{kind}: {stdout}"
        );
        assert!(stdout.contains("column device is not in the table"), "{kind}: {stdout}");
        assert!(stdout.contains("hint: move each file"), "{kind}: {stdout}");
        assert!(stderr.contains("1 table(s) not migrated"), "{kind}: {stderr}");
        assert_eq!(
            versions(vec![old.watch.clone(), old.gold.clone()]).await,
            before,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn the_binary_migrates_a_lake_and_explains_itself() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_movielake"))
        .args(["migrate", "--help"])
        .output()
        .expect("movielake migrate --help");
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in ["Idempotent", "without rewriting", "move the file out", "--dry-run"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }

    // A whole local lake, no --table: the refused table aside, everything migrates, and a
    // dry run before writes nothing.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let lake = LocalLake::new(&root);
    let old = old_lake(&lake, true).await;
    std::fs::remove_dir_all(dir.path().join(old.wrong.clone())).unwrap();
    let contracts_dir = tempfile::tempdir().unwrap();
    for (file, text) in &old.contract_files {
        std::fs::write(contracts_dir.path().join(file), text).unwrap();
    }
    let run = |dry_run: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_movielake"));
        command
            .arg("--lake")
            .arg(&root)
            .arg("--contracts")
            .arg(contracts_dir.path())
            .arg("migrate");
        if dry_run {
            command.arg("--dry-run");
        }
        let out = command.output().expect("movielake migrate");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = run(true);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{}: would commit 3 files, 9 rows", old.watch)),
        "{stdout}"
    );
    assert!(
        stdout.contains("summary: 3 tables: 3 would be migrated (6 files, 17 rows)"),
        "{stdout}"
    );
    assert!(
        !dir.path().join(&old.watch).join("_delta_log").exists(),
        "dry run wrote a log"
    );

    let (ok, stdout, stderr) = run(false);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "{}: 3 files, 9 rows committed as they are (version 1)",
            old.watch
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("silver/tmdb/movies: 2 files, 3 rows committed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 migrated (6 files, 17 rows, no data file rewritten)"),
        "{stdout}"
    );
    let tables = Tables::new(TableLocation::for_lake(&root, None).unwrap());
    assert_eq!(count(&tables, &old.watch).await, 9);
    assert_eq!(count(&tables, movies::TABLE).await, 3);

    let (ok, stdout, stderr) = run(false);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("0 migrated"), "{stdout}");
    assert!(
        stdout.contains(&format!("{}: already migrated (version 1)", old.watch)),
        "{stdout}"
    );
}

/// A date column as text (`CAST(... AS VARCHAR)` may come back as a view).
fn arrow_cast(column: &ArrayRef) -> Vec<String> {
    let cast = deltalake::arrow::compute::cast(column, &DataType::Utf8).unwrap();
    cast.as_string::<i32>()
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}
