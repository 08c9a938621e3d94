//! The Movies Dataset CSV files into silver: the real Kaggle sample, then files with rows we
//! shift, repeat and corrupt, each counted and quarantined exactly as specified.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::{NaiveDate, TimeZone, Utc};
use movielake_core::contract::ContractSet;
use movielake_core::output::files::{FileContext, FileError, MemorySink, Outputs};
use movielake_core::output::manifest::Counts;
use movielake_core::routing::route::RunContext;
use movielake_core::sources::movies_dataset::{MoviesFile, convert, recognise};
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

    /// records in, silver, quarantined, duplicates dropped.
    fn fates(&self, table: &str) -> [u64; 4] {
        let c = self.counts(table);
        [c.records_in, c.silver, c.quarantined, c.duplicates_dropped]
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
        attempt: String::new(),
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
        .filter(|(i, _)| **i == movie_id)
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
    assert_eq!(c.quarantine("movies"), Vec::<Json>::new());
    assert_eq!(c.fates("movies"), [150, 150, 0, 0]);
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

const HEADER: &str = "adult,belongs_to_collection,budget,genres,homepage,id,imdb_id,original_language,original_title,overview,popularity,poster_path,production_companies,production_countries,release_date,revenue,runtime,spoken_languages,status,tagline,title,video,vote_average,vote_count";

/// A movies_metadata.csv record shaped like Kaggle's, built field by field.
#[derive(Clone)]
struct Movie {
    id: String,
    title: String,
    overview: String,
    budget: String,
    revenue: String,
    genres: String,
    collection: String,
    popularity: String,
    release_date: String,
}

impl Movie {
    fn good(id: i64) -> Self {
        Movie {
            id: id.to_string(),
            title: format!("Movie {id}"),
            overview: "A film.".into(),
            budget: "1000".into(),
            revenue: "5000".into(),
            genres: "[{'id': 16, 'name': 'Animation'}, {'id': 35, 'name': 'Comedy'}]".into(),
            collection: "{'id': 10, 'name': \"Ocean's Collection\", 'poster_path': None, 'backdrop_path': '/b.jpg'}"
                .into(),
            popularity: "1.5".into(),
            release_date: "1995-10-30".into(),
        }
    }

    #[rustfmt::skip]
    fn fields(&self) -> Vec<String> {
        let m = self;
        [
            "False", &m.collection, &m.budget, &m.genres, "", &m.id, &format!("tt{:0>7}", m.id), "en", &m.title,
            &m.overview, &m.popularity, "/p.jpg", "[{'name': 'Pixar Animation Studios', 'id': 3}]",
            "[{'iso_3166_1': 'US', 'name': 'United States of America'}]", &m.release_date, &m.revenue, "81.0",
            "[{'iso_639_1': 'en', 'name': 'English'}]", "Released", "", &m.title, "False", "7.7", "100",
        ]
        .iter()
        .map(|f| f.to_string())
        .collect()
    }

    fn csv(&self) -> String {
        self.fields().iter().map(|f| quote(f)).collect::<Vec<_>>().join(",")
    }
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn file(records: &[String], eol: &str) -> String {
    let mut text = format!("{HEADER}{eol}");
    for r in records {
        text.push_str(r);
        text.push_str(eol);
    }
    text
}

/// Each quarantined record as `line/row stage rule(column) ...`.
fn refusals(q: &[Json]) -> Vec<String> {
    let reason = |x: &Json| match (x["rule"].as_str().unwrap_or("?"), x["column"].as_str()) {
        (rule, Some(column)) => format!("{rule}({column})"),
        (rule, None) => rule.to_string(),
    };
    q.iter()
        .map(|r| {
            let reasons: Vec<String> = r["reasons"].as_array().into_iter().flatten().map(reason).collect();
            let (line, row, stage) = (&r["source"]["line"], &r["source"]["row"], &r["stage"]);
            format!("{line}/{row} {} {}", stage.as_str().unwrap_or("?"), reasons.join(" "))
        })
        .collect()
}

fn dirty_records() -> Vec<String> {
    let mut first = Movie::good(1);
    first.overview = "First line, with a comma\nand a \"quoted\" second line".into();
    let mut zero = Movie::good(2);
    zero.budget = "0".into();
    zero.revenue = "0".into();
    let mut changed = zero.clone();
    changed.title = "Movie 2, recut".into();
    // A broken quote leaves a comma unquoted: the record has one field too many.
    let shifted = Movie::good(4).csv().replacen("A film.", "A film, shifted", 1);
    // Kaggle's real shifted rows: the id is a release date, the popularity a poster path.
    let mut date_id = Movie::good(5);
    date_id.id = "1997-08-20".into();
    date_id.popularity = "/ff9qCepilowshEtG2GYWwzt2bs4.jpg".into();
    let mut bad_literal = Movie::good(6);
    bad_literal.genres = "[{'id': 16, 'name': 'Animation'}".into();
    let mut bad_date = Movie::good(7);
    bad_date.release_date = "1995-02-30".into();
    vec![
        first.csv(),
        zero.csv(),
        first.csv(),
        changed.csv(),
        shifted,
        date_id.csv(),
        bad_literal.csv(),
        bad_date.csv(),
        Movie::good(3).csv(),
    ]
}

#[test]
fn shifted_repeated_and_corrupt_rows_are_each_handled_as_specified() {
    let records = dirty_records();
    let c = run(MoviesFile::MoviesMetadata, file(&records, "\n").as_bytes()).expect("converts");
    let counts = c.counts("movies");
    assert_eq!(c.fates("movies"), [9, 3, 5, 1]);
    assert!(counts.balanced());
    let q = c.quarantine("movies");
    let object = format!("{OBJECT} line 4 row 2");
    assert_eq!(
        refusals(&q),
        vec![
            "7/4 dedupe duplicate_key(id)",
            "8/5 decode field_count",
            "9/6 schema type(id) type(popularity) regex(imdb_id)",
            "10/7 decode python_literal(genres)",
            "11/8 schema type(release_date)",
        ]
    );
    assert_eq!(
        q[0]["reasons"][0]["detail"],
        format!("same id 2 as {object} but a different body")
    );
    assert_eq!(
        q[1]["reasons"][0]["detail"].as_str().unwrap().split(" (").next(),
        Some("expected 24 fields, found 25")
    );
    assert!(
        q[3]["reasons"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("malformed Python literal: expected ',' or ']' at byte")
    );
    assert_eq!(q[0]["dataset"], "movies_dataset_movies");
    // The raw text is the CSV record exactly as it appeared in the file.
    let raws: Vec<&str> = q.iter().map(|r| r["raw"].as_str().unwrap()).collect();
    assert_eq!(raws, records[3..8].iter().map(String::as_str).collect::<Vec<_>>());

    let ids = column(&c.batches("movies"), "id");
    assert_eq!(ids, [1, 2, 3]);
    let zero = row_of(&c, "movies", "id", 2);
    assert_eq!(
        (&zero["budget"], &zero["budget_unknown"]),
        (&Json::Null, &Json::Bool(true))
    );
    assert_eq!(
        (&zero["revenue"], &zero["revenue_unknown"]),
        (&Json::Null, &Json::Bool(true))
    );
    let first = row_of(&c, "movies", "id", 1);
    assert_eq!(
        (&first["budget"], &first["budget_unknown"]),
        (&Json::from(1000), &Json::Bool(false))
    );
    assert_eq!(
        first["overview"],
        "First line, with a comma\nand a \"quoted\" second line"
    );
    // Child rows only for the movies in silver; the collection once.
    let mut genre_movies = column(&c.batches("movie_genres"), "movie_id");
    genre_movies.dedup();
    assert_eq!(genre_movies, [1, 2, 3]);
    assert_eq!(c.rows("movie_genres"), 6);
    assert_eq!(c.counts("movie_genres").silver, 6);
    assert_eq!(c.rows("movie_production_companies"), 3);
    assert_eq!(c.rows("movie_production_countries"), 3);
    assert_eq!(c.rows("movie_spoken_languages"), 3);
    assert_eq!(c.rows("collections"), 1);
    assert_eq!(
        row_of(&c, "collections", "collection_id", 10)["collection_name"],
        "Ocean's Collection"
    );

    // Windows line ends change nothing but the bytes between records.
    let crlf = run(MoviesFile::MoviesMetadata, file(&records, "\r\n").as_bytes()).expect("converts");
    assert_eq!(refusals(&crlf.quarantine("movies")), refusals(&q));
    assert_eq!(crlf.counts("movies"), counts);
}

#[test]
fn bad_bytes_wrong_shapes_and_bad_items_refuse_the_whole_record() {
    let mut not_a_list = Movie::good(2);
    not_a_list.genres = "{'id': 16, 'name': 'Animation'}".into();
    let mut no_genre_id = Movie::good(3);
    no_genre_id.genres = "[{'id': 16, 'name': 'Animation'}, {'name': 'Comedy'}]".into();
    let mut collection_list = Movie::good(4);
    collection_list.collection = "[]".into();
    let mut text = file(
        &[
            Movie::good(1).csv(),
            not_a_list.csv(),
            no_genre_id.csv(),
            collection_list.csv(),
        ],
        "\n",
    );
    text.push_str(&Movie::good(5).csv().replace("Movie 5", "Movie \u{fffd}"));
    let mut bytes = text.into_bytes();
    // Latin-1 bytes where UTF-8 is expected: the record is refused, the rest goes on.
    let at = bytes.windows(3).rposition(|w| w == "\u{fffd}".as_bytes()).unwrap();
    bytes.splice(at..at + 3, [0xe9]);
    bytes.extend_from_slice(b"\n");
    let c = run(MoviesFile::MoviesMetadata, &bytes).expect("converts");
    let q = c.quarantine("movies");
    assert_eq!(
        refusals(&q),
        vec![
            "3/2 schema shape(genres)",
            "4/3 schema required(genres)",
            "5/4 schema shape(belongs_to_collection)",
            "6/5 decode utf8(title)",
        ]
    );
    assert_eq!(q[1]["reasons"][0]["detail"], "genres[1].genre_id: missing or null");
    // The raw text keeps what can be kept of bytes that are not UTF-8 (U+FFFD for the rest).
    let last = String::from_utf8_lossy(&bytes).lines().last().map(str::to_string);
    assert_eq!(q[3]["raw"].as_str().map(str::to_string), last);
    assert_eq!(column(&c.batches("movies"), "id"), [1]);
    assert_eq!(
        column(&c.batches("movie_genres"), "movie_id"),
        [1, 1],
        "no child rows of refused movies"
    );
}

#[test]
fn files_longer_than_a_batch_keep_every_row() {
    let mut text = String::from("userId,movieId,rating,timestamp\n");
    let n = movielake_core::sources::movies_dataset::BATCH_ROWS + 1000;
    for i in 0..n {
        text.push_str(&format!("{},{},4.0,{}\n", i / 50 + 1, i % 400 + 1, 1_260_759_144 + i));
    }
    let c = run(MoviesFile::Ratings, text.as_bytes()).expect("ratings");
    assert_eq!(c.rows("ratings"), n);
    assert_eq!(c.fates("ratings"), [n as u64, n as u64, 0, 0]);
}

#[test]
fn credits_keywords_links_and_ratings() {
    let cast = "[{'cast_id': 14, 'character': \"Danny Ocean's friend\", 'credit_id': '52fe', 'gender': 2, 'id': 31, 'name': 'Tom Hanks', 'order': 0, 'profile_path': None}, {'cast_id': 15, 'character': 'Buzz', 'credit_id': '52ff', 'gender': 2, 'id': 12898, 'name': 'Tim Allen', 'order': 1, 'profile_path': '/x.jpg'}]";
    let crew = "[{'credit_id': '52fe', 'department': 'Directing', 'gender': 2, 'id': 7879, 'job': 'Director', 'name': 'John Lasseter', 'profile_path': None}]";
    let good = format!("{},{},862", quote(cast), quote(crew));
    let bad = format!("{},{},863", quote(cast), quote("[{'id': 1, 'job': 'Director'"));
    let text = format!("cast,crew,id\n{good}\n{bad}\n{good}\n");
    let c = run(MoviesFile::Credits, text.as_bytes()).expect("credits");
    assert_eq!(c.fates("credits"), [3, 1, 1, 1]);
    assert_eq!(c.fates("movie_cast"), [0, 2, 0, 0]);
    let credits = row_of(&c, "credits", "movie_id", 862);
    assert_eq!(
        (&credits["cast_count"], &credits["crew_count"]),
        (&Json::from(2), &Json::from(1))
    );
    assert_eq!(
        refusals(&c.quarantine("credits")),
        vec!["3/2 decode python_literal(crew)"]
    );
    assert_eq!(
        row_of(&c, "movie_cast", "person_id", 31)["character"],
        "Danny Ocean's friend"
    );
    assert_eq!(row_of(&c, "movie_cast", "person_id", 12898)["cast_order"], 1);
    assert_eq!(row_of(&c, "movie_crew", "person_id", 7879)["job"], "Director");
    assert_eq!(c.rows("movie_crew"), 1);

    let text = "id,keywords\n862,\"[{'id': 931, 'name': 'jealousy'}, {'id': 4290, 'name': 'toy'}]\"\nabc,[]\n";
    let c = run(MoviesFile::Keywords, text.as_bytes()).expect("keywords");
    assert_eq!(children(&c, "movie_keywords", 862, "keyword_name"), ["jealousy", "toy"]);
    assert_eq!(refusals(&c.quarantine("keywords")), vec!["3/2 schema type(movie_id)"]);
    assert_eq!(c.fates("keywords"), [2, 1, 1, 0]);
    assert_eq!(row_of(&c, "keywords", "movie_id", 862)["keyword_count"], 2);

    let c = run(
        MoviesFile::Links,
        b"movieId,imdbId,tmdbId\n1,0114709,862\n2,0113497,\nx,1,2\n",
    )
    .expect("links");
    let toy = row_of(&c, "links", "movie_id", 1);
    assert_eq!(
        (&toy["imdb_id"], &toy["tmdb_id"]),
        (&Json::from("tt0114709"), &Json::from(862))
    );
    assert_eq!(row_of(&c, "links", "movie_id", 2)["tmdb_id"], Json::Null);
    assert_eq!(refusals(&c.quarantine("links")), vec!["4/3 schema type(movie_id)"]);

    let text = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,7.0,1260759179\n1,1061,3.0,soon\n";
    let c = run(MoviesFile::Ratings, text.as_bytes()).expect("ratings");
    let r = row_of(&c, "ratings", "movie_id", 31);
    assert_eq!(
        (&r["rating"], &r["rated_at"]),
        (&Json::from(2.5), &Json::from("2009-12-14T02:52:24+00:00"))
    );
    assert_eq!(
        refusals(&c.quarantine("ratings")),
        vec!["3/2 rule max(rating)", "4/3 schema type(rated_at)"]
    );
    assert!(c.counts("ratings").balanced());
}

#[test]
fn blank_lines_and_a_missing_last_newline_keep_line_numbers_true() {
    let c = run(
        MoviesFile::Links,
        b"movieId,imdbId,tmdbId\r\n1,0114709,862\r\n\r\n\nx,1,2",
    )
    .expect("links");
    let q = c.quarantine("links");
    assert_eq!(refusals(&q), vec!["5/2 schema type(movie_id)"]);
    assert_eq!(q[0]["raw"], "x,1,2");
    assert_eq!(c.rows("links"), 1);
}

#[test]
fn files_are_recognised_by_header() {
    assert_eq!(
        recognise(format!("{HEADER}\n1,2").as_bytes()),
        Some(MoviesFile::MoviesMetadata)
    );
    assert_eq!(recognise(b"cast,crew,id\r\n"), Some(MoviesFile::Credits));
    assert_eq!(recognise(b"\xef\xbb\xbfid,keywords"), Some(MoviesFile::Keywords));
    assert_eq!(
        recognise(b"\"movieId\",\"imdbId\",\"tmdbId\"\n"),
        Some(MoviesFile::Links)
    );
    assert_eq!(
        recognise(b"userId,movieId,rating,timestamp\n"),
        Some(MoviesFile::Ratings)
    );
    assert_eq!(recognise(b"tconst\ttitleType\n"), None);
    assert_eq!(recognise(b"id,keywords,extra\n"), None);
    assert_eq!(recognise(b""), None);

    let err = run(MoviesFile::Links, b"userId,movieId,rating,timestamp\n1,2,3,4\n")
        .err()
        .expect("refused");
    assert!(matches!(err, FileError::Unrecognised { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{OBJECT}: not The Movies Dataset links.csv: expected the header movieId,imdbId,tmdbId, but the header is userId,movieId,rating,timestamp"
        )
    );
    assert!(matches!(
        run(MoviesFile::Links, b"").err(),
        Some(FileError::Unrecognised { .. })
    ));
}

#[derive(Debug, Clone)]
enum Kind {
    Good(i64, u8),
    BadLiteral(i64),
    Shifted(i64),
    DateId,
    Repeat(usize),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => (1i64..6, 0u8..2).prop_map(|(id, v)| Kind::Good(id, v)),
        1 => (1i64..6).prop_map(Kind::BadLiteral),
        1 => (1i64..6).prop_map(Kind::Shifted),
        1 => Just(Kind::DateId),
        2 => any::<usize>().prop_map(Kind::Repeat),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn nothing_is_lost(kinds in prop::collection::vec(kind(), 0..24)) {
        // Build the records, and the expected fate of each from a simple model.
        let mut records: Vec<(String, bool, Option<i64>)> = Vec::new(); // (text, valid, id)
        for k in &kinds {
            let record = match k {
                Kind::Good(id, v) => {
                    let mut m = Movie::good(*id);
                    m.title = format!("Movie {id} v{v}");
                    (m.csv(), true, Some(*id))
                }
                Kind::BadLiteral(id) => {
                    let mut m = Movie::good(*id);
                    m.genres = "[{'id': 16,".into();
                    (m.csv(), false, None)
                }
                Kind::Shifted(id) => (format!("{},extra", Movie::good(*id).csv()), false, None),
                Kind::DateId => {
                    let mut m = Movie::good(1);
                    m.id = "2012-09-29".into();
                    (m.csv(), false, None)
                }
                Kind::Repeat(i) if !records.is_empty() => records[i % records.len()].clone(),
                Kind::Repeat(_) => (Movie::good(1).csv(), true, Some(1)),
            };
            records.push(record);
        }
        let (mut silver, mut quarantined, mut duplicates) = (0u64, 0u64, 0u64);
        let mut seen: BTreeMap<i64, String> = BTreeMap::new();
        for (text, valid, id) in &records {
            match (valid, id.and_then(|i| seen.get(&i))) {
                (false, _) => quarantined += 1,
                (true, Some(first)) if first == text => duplicates += 1,
                (true, Some(_)) => quarantined += 1,
                (true, None) => {
                    silver += 1;
                    seen.insert(id.unwrap_or_default(), text.clone());
                }
            }
        }
        let texts: Vec<String> = records.iter().map(|r| r.0.clone()).collect();
        let c = run(MoviesFile::MoviesMetadata, file(&texts, "\n").as_bytes()).expect("converts");
        let counts = c.counts("movies");
        prop_assert_eq!(counts.records_in, records.len() as u64);
        prop_assert_eq!((counts.silver, counts.quarantined, counts.duplicates_dropped), (silver, quarantined, duplicates));
        prop_assert!(counts.balanced());
        prop_assert_eq!(c.rows("movies") as u64, silver);
        let q = c.quarantine("movies");
        prop_assert_eq!(q.len() as u64, quarantined);
        for r in &q {
            let row = r["source"]["row"].as_u64().unwrap() as usize;
            prop_assert_eq!(r["raw"].as_str().unwrap(), texts[row - 1].as_str());
        }
    }
}
