//! The Movies Dataset CSV files into silver: the real Kaggle sample, then files with rows we
//! shift, repeat and corrupt, each counted and quarantined exactly as specified.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::{NaiveDate, TimeZone, Utc};
use movielake_core::contract::ContractSet;
use movielake_core::files::{FileContext, FileError, MemorySink, Outputs};
use movielake_core::manifest::Counts;
use movielake_core::movies_dataset::{MoviesFile, convert, recognise};
use movielake_core::route::RunContext;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;
use serde_json::Value as Json;

const OBJECT: &str = "bronze/movies_dataset/ingest_date=2024-05-01/movies_metadata.csv";

fn contracts() -> ContractSet {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("contracts folder") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with("movies_dataset_") && name.ends_with(".toml") {
            files.push((
                format!("contracts/{name}"),
                std::fs::read_to_string(&path).expect("read"),
            ));
        }
    }
    ContractSet::load(files.iter().map(|(f, t)| (f.as_str(), t.as_str()))).expect("movies_dataset contracts load")
}

struct Converted {
    objects: BTreeMap<String, Vec<u8>>,
    counts: BTreeMap<String, Counts>,
}

impl Converted {
    fn counts(&self, table: &str) -> Counts {
        self.counts
            .get(&format!("movies_dataset_{table}"))
            .cloned()
            .unwrap_or_default()
    }

    fn batches(&self, table: &str) -> Vec<RecordBatch> {
        let prefix = format!("silver/movies_dataset/{table}/snapshot_date=2024-05-01/");
        let mut batches = Vec::new();
        for (path, bytes) in &self.objects {
            if path.starts_with(&prefix) {
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes.clone()))
                    .expect("parquet")
                    .build()
                    .expect("reader");
                batches.extend(reader.map(|b| b.expect("batch")));
            }
        }
        batches
    }

    fn rows(&self, table: &str) -> usize {
        self.batches(table).iter().map(RecordBatch::num_rows).sum()
    }

    fn quarantine(&self, table: &str) -> Vec<Json> {
        let prefix = format!("quarantine/movies_dataset/{table}/date=2024-05-01/");
        self.objects
            .iter()
            .filter(|(p, _)| p.starts_with(&prefix))
            .flat_map(|(_, b)| {
                String::from_utf8(b.clone())
                    .expect("utf8")
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .map(|l| serde_json::from_str(&l).expect("json line"))
            .collect()
    }
}

fn run(kind: MoviesFile, input: &[u8]) -> Result<Converted, FileError> {
    let ctx = FileContext {
        object: OBJECT.into(),
        ingest_date: NaiveDate::from_ymd_opt(2024, 5, 1).expect("date"),
        run: RunContext {
            run_id: "run-1".into(),
            ingested_at: Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap(),
        },
    };
    let mut out = Outputs::new(MemorySink::default(), ctx);
    convert(kind, input, &contracts(), &mut out)?;
    let (sink, _, counts) = out.finish()?;
    Ok(Converted {
        objects: sink.objects,
        counts,
    })
}

/// One column of a table over all its batches, rendered as JSON for easy comparison.
fn column(batches: &[RecordBatch], name: &str) -> Vec<Json> {
    let mut out = Vec::new();
    for b in batches {
        let a = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
        for i in 0..a.len() {
            if a.is_null(i) {
                out.push(Json::Null);
                continue;
            }
            out.push(match a.data_type() {
                arrow_schema::DataType::Int64 => Json::from(a.as_primitive::<Int64Type>().value(i)),
                arrow_schema::DataType::Int32 => Json::from(a.as_primitive::<Int32Type>().value(i)),
                arrow_schema::DataType::Float64 => Json::from(a.as_primitive::<Float64Type>().value(i)),
                arrow_schema::DataType::Boolean => Json::from(a.as_boolean().value(i)),
                arrow_schema::DataType::Utf8 => Json::from(a.as_string::<i32>().value(i)),
                arrow_schema::DataType::Date32 => {
                    let days = a.as_primitive::<Date32Type>().value(i);
                    let d = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(days.into());
                    Json::from(d.to_string())
                }
                arrow_schema::DataType::Timestamp(..) => {
                    let us = a.as_primitive::<TimestampMicrosecondType>().value(i);
                    Json::from(Utc.timestamp_micros(us).unwrap().to_rfc3339())
                }
                other => panic!("unexpected type {other}"),
            });
        }
    }
    out
}

/// The row of `table` whose `key` column equals `id`, as column -> value.
fn row_of(c: &Converted, table: &str, key: &str, id: i64) -> BTreeMap<String, Json> {
    let batches = c.batches(table);
    let keys = column(&batches, key);
    let at = keys
        .iter()
        .position(|k| k == &Json::from(id))
        .unwrap_or_else(|| panic!("{table}: no {key} {id}"));
    let schema = batches[0].schema();
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), column(&batches, f.name())[at].clone()))
        .collect()
}

fn children(c: &Converted, table: &str, movie_id: i64, name: &str) -> Vec<Json> {
    let batches = c.batches(table);
    let ids = column(&batches, "movie_id");
    let names = column(&batches, name);
    ids.iter()
        .zip(names)
        .filter(|(i, _)| **i == Json::from(movie_id))
        .map(|(_, n)| n)
        .collect()
}

#[test]
fn the_real_kaggle_sample_converts_with_zero_quarantine() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/movies_dataset/movies_metadata_head150.csv");
    let Ok(bytes) = std::fs::read(&path) else {
        println!(
            "SKIPPED: {} is absent (the shared real-data fixtures are not beside the repository)",
            path.display()
        );
        return;
    };
    assert_eq!(recognise(&bytes), Some(MoviesFile::MoviesMetadata));
    let c = run(MoviesFile::MoviesMetadata, &bytes).expect("converts");
    let counts = c.counts("movies");
    assert_eq!(c.quarantine("movies"), Vec::<Json>::new());
    assert_eq!(
        (
            counts.records_in,
            counts.silver,
            counts.quarantined,
            counts.duplicates_dropped
        ),
        (150, 150, 0, 0)
    );
    assert_eq!(c.rows("movies"), 150);

    let toy = row_of(&c, "movies", "id", 862);
    assert_eq!(toy["title"], "Toy Story");
    assert_eq!(toy["imdb_id"], "tt0114709");
    assert_eq!(toy["budget"], 30_000_000);
    assert_eq!(toy["budget_unknown"], false);
    assert_eq!(toy["revenue"], 373_554_033);
    assert_eq!(toy["release_date"], "1995-10-30");
    assert_eq!(toy["release_year"], 1995);
    assert_eq!(toy["runtime"], 81.0);
    assert_eq!(toy["popularity"], 21.946943);
    assert_eq!(toy["vote_average"], 7.7);
    assert_eq!(toy["vote_count"], 5415);
    assert_eq!(toy["adult"], false);
    assert_eq!(toy["video"], false);
    assert_eq!(toy["status"], "Released");
    assert_eq!(toy["collection_id"], 10194);
    assert_eq!(toy["_source_object"], OBJECT);
    let rescued: Json = serde_json::from_str(toy["_rescued"].as_str().unwrap()).unwrap();
    assert_eq!(rescued["homepage"], "http://toystory.disney.com/toy-story");
    assert_eq!(
        children(&c, "movie_genres", 862, "genre_name"),
        ["Animation", "Comedy", "Family"]
    );
    assert_eq!(children(&c, "movie_genres", 862, "genre_id"), [16, 35, 10751]);
    assert_eq!(
        children(&c, "movie_production_companies", 862, "company_name"),
        ["Pixar Animation Studios"]
    );
    assert_eq!(children(&c, "movie_production_countries", 862, "iso_3166_1"), ["US"]);
    assert_eq!(children(&c, "movie_spoken_languages", 862, "iso_639_1"), ["en"]);
    let toy_story = row_of(&c, "collections", "collection_id", 10194);
    assert_eq!(toy_story["collection_name"], "Toy Story Collection");
    let collection_ids = column(&c.batches("collections"), "collection_id");
    let mut unique = collection_ids.iter().map(Json::to_string).collect::<Vec<_>>();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), collection_ids.len(), "one row per collection");

    // Budget and revenue 0 in the file are unknown, not zero.
    let grumpier = row_of(&c, "movies", "id", 15602);
    assert_eq!(
        (&grumpier["budget"], &grumpier["budget_unknown"]),
        (&Json::Null, &Json::Bool(true))
    );
    assert_eq!(
        (&grumpier["revenue"], &grumpier["revenue_unknown"]),
        (&Json::Null, &Json::Bool(true))
    );
}
