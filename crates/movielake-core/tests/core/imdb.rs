//! IMDb TSV files into silver: the real samples in `../shared/fixtures/imdb` (read in place,
//! never copied), and hand-made lines for every way a line can be wrong.

use std::io::Write;
use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use chrono::{NaiveDate, TimeZone, Utc};
use movielake_core::ContractSet;
use movielake_core::output::files::{FileContext, FileError, MemorySink, Outputs};
use movielake_core::routing::route::RunContext;
use movielake_core::sources::imdb;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const CONTRACTS: [(&str, &str); 7] = [
    (
        "contracts/imdb_title_basics.toml",
        include_str!("../../../../contracts/imdb_title_basics.toml"),
    ),
    (
        "contracts/imdb_title_akas.toml",
        include_str!("../../../../contracts/imdb_title_akas.toml"),
    ),
    (
        "contracts/imdb_title_crew.toml",
        include_str!("../../../../contracts/imdb_title_crew.toml"),
    ),
    (
        "contracts/imdb_title_episode.toml",
        include_str!("../../../../contracts/imdb_title_episode.toml"),
    ),
    (
        "contracts/imdb_title_principals.toml",
        include_str!("../../../../contracts/imdb_title_principals.toml"),
    ),
    (
        "contracts/imdb_title_ratings.toml",
        include_str!("../../../../contracts/imdb_title_ratings.toml"),
    ),
    (
        "contracts/imdb_name_basics.toml",
        include_str!("../../../../contracts/imdb_name_basics.toml"),
    ),
];

fn contracts() -> ContractSet {
    ContractSet::load(CONTRACTS).expect("the shipped IMDb contracts load")
}

fn fixtures() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/imdb/othonas_2021");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} not found (the shared IMDb samples)", dir.display());
        None
    }
}

fn context(object: &str) -> FileContext {
    FileContext {
        object: object.to_string(),
        ingest_date: NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"),
        run: RunContext {
            run_id: "run-imdb".into(),
            ingested_at: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).single().expect("time"),
        },
        attempt: String::new(),
    }
}

struct Run {
    sink: MemorySink,
    counts: movielake_core::output::manifest::Counts,
    lines: u64,
}

fn convert_with(input: &[u8], object: &str, rows_per_part: u64) -> Result<Run, FileError> {
    let set = contracts();
    let mut out = Outputs::with_part_size(MemorySink::default(), context(object), rows_per_part);
    let converted = imdb::convert(input, &set, &mut out)?;
    let (sink, _, counts) = out.finish()?;
    let counts = counts.get(converted.file.contract).cloned().unwrap_or_default();
    Ok(Run {
        sink,
        counts,
        lines: converted.lines,
    })
}

fn convert(input: &[u8]) -> Run {
    convert_with(
        input,
        "bronze/imdb/title.basics/ingest_date=2026-11-23/title.basics.tsv",
        1 << 20,
    )
    .expect("converts")
}

fn silver(sink: &MemorySink) -> Vec<RecordBatch> {
    sink.objects
        .iter()
        .filter(|(path, _)| path.starts_with("silver/"))
        .flat_map(|(_, bytes)| {
            ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.clone()))
                .expect("parquet")
                .build()
                .expect("reader")
                .map(|b| b.expect("batch"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn quarantine(sink: &MemorySink) -> Vec<serde_json::Value> {
    sink.objects
        .iter()
        .filter(|(path, _)| path.starts_with("quarantine/"))
        .flat_map(|(_, bytes)| {
            String::from_utf8(bytes.clone())
                .expect("utf8")
                .lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array = batch.column_by_name(column).expect("column").as_string::<i32>();
    (0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i).to_string()))
        .collect()
}

fn list(batch: &RecordBatch, column: &str, row: usize) -> Option<Vec<String>> {
    let array = batch.column_by_name(column).expect("column").as_list::<i32>();
    array.is_valid(row).then(|| {
        let items = array.value(row);
        let items = items.as_string::<i32>();
        (0..items.len()).map(|i| items.value(i).to_string()).collect()
    })
}

#[test]
fn every_sample_file_converts_with_zero_quarantine() {
    let Some(dir) = fixtures() else { return };
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixture dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read fixture");
        let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        let data_lines = bytes.split(|&b| b == b'\n').skip(1).filter(|l| !l.is_empty()).count() as u64;
        let object = format!("bronze/imdb/x/ingest_date=2026-11-23/{name}");
        let result = convert_with(&bytes, &object, 1 << 20).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            quarantine(&result.sink).is_empty(),
            "{name}: {:?}",
            quarantine(&result.sink)
        );
        assert_eq!(result.lines, data_lines, "{name}");
        assert_eq!(result.counts.records_in, data_lines, "{name}");
        assert_eq!(result.counts.silver, data_lines, "{name}");
        let rows: usize = silver(&result.sink).iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows as u64, data_lines, "{name}");
        let table = name.trim_end_matches(".tsv").replace('.', "_");
        assert!(
            result
                .sink
                .objects
                .keys()
                .all(|k| k.starts_with(&format!("silver/imdb/{table}/snapshot_date=2026-11-23/part-"))),
            "{name}: {:?}",
            result.sink.objects.keys()
        );
        seen.push(table);
    }
    seen.sort();
    assert_eq!(seen.len(), 7, "all seven IMDb files are in the samples: {seen:?}");
}

#[test]
fn sample_values_are_typed() {
    let Some(dir) = fixtures() else { return };
    let basics = convert(&std::fs::read(dir.join("title.basics.tsv")).expect("read"));
    let batch = &silver(&basics.sink)[0];
    assert_eq!(strings(batch, "tconst")[0].as_deref(), Some("tt0000001"));
    assert_eq!(strings(batch, "primary_title")[0].as_deref(), Some("Carmencita"));
    let start = batch
        .column_by_name("start_year")
        .expect("col")
        .as_primitive::<Int32Type>();
    assert_eq!(start.value(0), 1894);
    let end = batch.column_by_name("end_year").expect("col");
    assert!(end.is_null(0), "\\N is null");
    let adult = batch.column_by_name("is_adult").expect("col").as_boolean();
    assert!(!adult.value(0));
    assert_eq!(
        list(batch, "genres", 0),
        Some(vec!["Documentary".into(), "Short".into()])
    );
    assert_eq!(
        strings(batch, "_source_object")[0].as_deref(),
        Some("bronze/imdb/title.basics/ingest_date=2026-11-23/title.basics.tsv")
    );

    let principals = convert_with(
        &std::fs::read(dir.join("title.principals.tsv")).expect("read"),
        "bronze/imdb/title.principals/ingest_date=2026-11-23/p.tsv",
        1 << 20,
    )
    .expect("converts");
    let batch = &silver(&principals.sink)[0];
    // Line 2 of the sample: `["Herself"]`; a `\N` is null, not an empty list.
    assert_eq!(list(batch, "characters", 0), Some(vec!["Herself".to_string()]));
    let characters = batch.column_by_name("characters").expect("col").as_list::<i32>();
    assert!((0..batch.num_rows()).any(|i| characters.is_null(i)));

    let ratings = convert_with(
        &std::fs::read(dir.join("title.ratings.tsv")).expect("read"),
        "bronze/imdb/title.ratings/ingest_date=2026-11-23/r.tsv",
        1 << 20,
    )
    .expect("converts");
    let batch = &silver(&ratings.sink)[0];
    let rating = batch
        .column_by_name("average_rating")
        .expect("col")
        .as_primitive::<Float64Type>();
    let votes = batch
        .column_by_name("num_votes")
        .expect("col")
        .as_primitive::<Int64Type>();
    assert!((0.0..=10.0).contains(&rating.value(0)) && votes.value(0) >= 0);
}

const HEADER: &str =
    "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres\n";

#[test]
fn injected_bad_lines_are_quarantined_exactly_with_line_numbers() {
    let lines = [
        "tt0000001\tshort\tCarmencita\tCarmencita\t0\t1894\t\\N\t1\tDocumentary,Short", // line 2
        "tt0000002\tshort\ttoo few fields\t0\t1892",                                    // 3: field_count
        "tt0000003\tmovie\t\"Quoted\" start\t\"Quoted\" start\t0\t1892\t\\N\t4\tComedy", // 4: ok, quote kept
        "tt0000004\tmovie\tNA\tNone\t0\tnineteen\t\\N\t\\N\t\\N",                       // 5: type start_year
        "tt0000005\tmovie\tnull\tnull\t2\t1893\t\\N\t1\tShort",                         // 6: type is_adult
        "xx0000006\tmovie\tBad id\tBad id\t0\t1894\t\\N\t-3\tShort",                    // 7: regex + min
        "tt0000007\tmovie\tNA\tNone\t0\t1894\t\\N\t\\N\t\\N",                           // 8: ok, NA/None text
        "tt0000008\tmovie\textra\tfield\t0\t1894\t\\N\t1\tShort\tmore",                 // 9: field_count
        "\\N\tmovie\tno id\tno id\t0\t1894\t\\N\t1\tShort",                             // 10: required
        "tt0000010\tmovie\tLast line\tno newline\t1\t2020\t2021\t90\tDrama,Thriller",   // 11: ok
    ];
    let mut input = HEADER.as_bytes().to_vec();
    input.extend_from_slice(lines.join("\n").as_bytes());
    // An invalid UTF-8 line in the middle, as line 12 (after appending a newline to line 11).
    input.extend_from_slice(b"\ntt0000011\tmovie\tbad \xff byte\tx\t0\t1894\t\\N\t1\tShort\ntt0000012\tmovie\tok\tok\t0\t1999\t\\N\t1\tShort");
    let result = convert(&input);

    let rejected = quarantine(&result.sink);
    let mut by_line: Vec<(u64, Vec<String>)> = rejected
        .iter()
        .map(|q| {
            let rules = q["reasons"]
                .as_array()
                .expect("reasons")
                .iter()
                .map(|r| r["rule"].as_str().expect("rule").to_string())
                .collect();
            (q["source"]["line"].as_u64().expect("line"), rules)
        })
        .collect();
    by_line.sort();
    let expected: Vec<(u64, Vec<String>)> = vec![
        (3, vec!["field_count".into()]),
        (5, vec!["type".into()]),
        (6, vec!["type".into()]),
        (7, vec!["regex".into(), "min".into()]),
        (9, vec!["field_count".into()]),
        (10, vec!["required".into()]),
        (12, vec!["utf8".into()]),
    ];
    assert_eq!(by_line, expected);
    let line5 = rejected.iter().find(|q| q["source"]["line"] == 5).expect("line 5");
    assert_eq!(line5["raw"], lines[3], "the raw line is kept as read");
    assert_eq!(line5["reasons"][0]["column"], "start_year");
    assert_eq!(line5["stage"], "schema");

    assert_eq!(result.counts.records_in, 12);
    assert_eq!(result.counts.quarantined, 7);
    assert_eq!(result.counts.silver, 5);
    assert!(result.counts.balanced());

    let batches = silver(&result.sink);
    let titles: Vec<Option<String>> = batches.iter().flat_map(|b| strings(b, "primary_title")).collect();
    let originals: Vec<Option<String>> = batches.iter().flat_map(|b| strings(b, "original_title")).collect();
    assert_eq!(
        titles,
        vec![
            Some("Carmencita".into()),
            Some("\"Quoted\" start".into()),
            Some("NA".into()),
            Some("Last line".into()),
            Some("ok".into())
        ]
    );
    assert_eq!(originals[2].as_deref(), Some("None"), "None is a title, not a null");
}

#[test]
fn gzipped_input_gives_the_same_silver() {
    let Some(dir) = fixtures() else { return };
    let plain = std::fs::read(dir.join("name.basics.tsv")).expect("read");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).expect("gzip");
    let gzipped = gz.finish().expect("gzip");
    let object = "bronze/imdb/name.basics/ingest_date=2026-11-23/name.basics.tsv.gz";
    let a = convert_with(&plain, object, 1 << 20).expect("plain");
    let b = convert_with(&gzipped, object, 1 << 20).expect("gzipped");
    assert_eq!(a.sink.objects, b.sink.objects);
    assert_eq!(b.counts.silver, 99);
}

#[test]
fn large_outputs_split_into_parts_and_nothing_is_lost() {
    let mut input = HEADER.to_string();
    for i in 0..1000 {
        input.push_str(&format!(
            "tt{i:07}\tmovie\tTitle {i}\tTitle {i}\t0\t2000\t\\N\t90\tDrama\n"
        ));
    }
    let result = convert_with(
        input.as_bytes(),
        "bronze/imdb/title.basics/ingest_date=2026-11-23/t.tsv",
        300,
    )
    .expect("converts");
    let parts: Vec<&String> = result.sink.objects.keys().collect();
    assert_eq!(parts.len(), 4, "{parts:?}");
    assert!(parts[0].ends_with("-00000.parquet") && parts[3].ends_with("-00003.parquet"));
    let ids: Vec<Option<String>> = silver(&result.sink).iter().flat_map(|b| strings(b, "tconst")).collect();
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids[999].as_deref(), Some("tt0000999"));
    // Deterministic: the same input gives the same names and bytes.
    let again = convert_with(
        input.as_bytes(),
        "bronze/imdb/title.basics/ingest_date=2026-11-23/t.tsv",
        300,
    )
    .expect("converts");
    assert_eq!(result.sink.objects, again.sink.objects);
}

#[test]
fn unknown_or_empty_files_are_refused_before_writing() {
    for (input, expected) in [
        (&b""[..], "empty"),
        (b"id\tname\n1\tx\n", "not the header of an IMDb dataset file"),
        (b"\x1f\x8b\x08garbage", "reading failed"),
    ] {
        match convert_with(input, "bronze/imdb/x/ingest_date=2026-11-23/x.tsv", 10) {
            Err(e) => assert!(e.to_string().contains(expected), "{e}"),
            Ok(_) => panic!("{input:?} was accepted"),
        }
    }
}

mod nothing_lost {
    use proptest::prelude::*;

    use super::*;

    /// A line that is good, or broken in one of the ways real files break.
    fn line() -> impl Strategy<Value = String> {
        let title = "[ -~]{0,12}".prop_map(|t| t.replace('\t', " "));
        (0u8..8, 0u32..10_000_000, title).prop_map(|(kind, id, title)| match kind {
            0 => format!("tt{id:07}\tshort\t{title}\t{title}\t0\t1990\t\\N\t\\N\t\\N"),
            1 => format!("tt{id:07}\tmovie\t{title}"),
            2 => format!("tt{id:07}\tmovie\t{title}\t{title}\tyes\t1990\t\\N\t5\tDrama"),
            3 => format!("xx{id}\tmovie\t{title}\t{title}\t0\t1990\t\\N\t5\tDrama"),
            4 => String::new(),
            5 => format!("tt{id:07}\tmovie\t\"{title}\tNA\t1\t2020\t2021\t-1\tDrama,Comedy"),
            _ => format!("tt{id:07}\tmovie\t{title}\t{title}\t1\t2020\t2021\t90\tDrama,Comedy"),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_line_is_in_silver_or_quarantine(lines in prop::collection::vec(line(), 0..300), gz in any::<bool>()) {
            let mut text = HEADER.to_string();
            text.push_str(&lines.join("\n"));
            let input = if gz {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(text.as_bytes()).expect("gzip");
                e.finish().expect("gzip")
            } else {
                text.into_bytes()
            };
            let result = convert_with(&input, "bronze/imdb/title.basics/ingest_date=2026-11-23/p.tsv", 50)
                .expect("converts");
            // An empty last line is the file's final newline, not a record.
            let records = lines.len() - usize::from(lines.last().is_some_and(String::is_empty));
            prop_assert_eq!(result.counts.records_in, records as u64);
            prop_assert!(result.counts.balanced());
            prop_assert_eq!(result.counts.duplicates_dropped, 0);
            let silver_rows: usize = silver(&result.sink).iter().map(RecordBatch::num_rows).sum();
            let quarantined = quarantine(&result.sink);
            prop_assert_eq!(silver_rows as u64, result.counts.silver);
            prop_assert_eq!(quarantined.len() as u64, result.counts.quarantined);
            let mut lines_seen: Vec<u64> = quarantined.iter().filter_map(|q| q["source"]["line"].as_u64()).collect();
            lines_seen.sort_unstable();
            lines_seen.dedup();
            prop_assert_eq!(lines_seen.len(), quarantined.len(), "one record per line");
        }
    }
}

#[test]
fn a_line_without_end_is_cut_and_quarantined_and_the_next_one_read() {
    let good = |id: u32| format!("tt{id:07}\tmovie\tT\tT\t0\t2000\t\\N\t90\tDrama\n");
    let mut input = HEADER.to_string() + &good(1);
    input.push_str(&"x".repeat(20 << 20)); // line 3: 20 MiB, no tab, no newline for a long while
    input.push('\n');
    input.push_str(&good(2));
    input.push_str(&"y".repeat(17 << 20)); // line 5: the last line, cut too
    let result = convert(input.as_bytes());
    let rejected = quarantine(&result.sink);
    let lines: Vec<u64> = rejected.iter().filter_map(|q| q["source"]["line"].as_u64()).collect();
    assert_eq!(lines, [3, 5]);
    for q in &rejected {
        assert_eq!(q["reasons"][0]["rule"], "line_length");
        assert_eq!(
            q["raw"].as_str().map(str::len),
            Some(64 << 10),
            "the start of the line is kept"
        );
    }
    assert_eq!((result.counts.records_in, result.counts.silver), (4, 2));
}

#[test]
fn columns_declared_without_statistics_have_none_and_the_others_keep_theirs() {
    let mut input = HEADER.to_string();
    for i in 0..100 {
        input.push_str(&format!(
            "tt{i:07}\tmovie\tTitle {i}\tTitle {i}\t0\t{}\t\\N\t90\tDrama,Comedy\n",
            1900 + i
        ));
    }
    let result = convert(input.as_bytes());
    let (_, bytes) = (result.sink.objects.iter())
        .find(|(path, _)| path.starts_with("silver/"))
        .expect("a silver part");
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.clone())).expect("parquet");
    let group = reader.metadata().row_group(0);
    let has_statistics = |path: &str| {
        let column = (group.columns().iter())
            .find(|c| c.column_path().string() == path)
            .unwrap_or_else(|| panic!("no column {path}"));
        column.statistics().is_some()
    };
    // contracts/imdb_title_basics.toml: statistics = false on free text, lists and title_type.
    for path in ["primary_title", "original_title", "title_type", "genres.list.item"] {
        assert!(!has_statistics(path), "{path} has statistics");
    }
    for path in ["tconst", "start_year", "runtime_minutes", "_ingested_at"] {
        assert!(has_statistics(path), "{path} lost its statistics");
    }
}

/// Hands out the input in reads of the sizes given, cycling (a network stream, a decompressor).
struct Chunked<'a> {
    input: &'a [u8],
    sizes: &'a [usize],
    next: usize,
}

impl std::io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.next % self.sizes.len()]
            .min(buf.len())
            .min(self.input.len());
        self.next += 1;
        buf[..size].copy_from_slice(&self.input[..size]);
        self.input = &self.input[size..];
        Ok(size)
    }
}

#[test]
fn the_output_bytes_do_not_depend_on_how_the_input_was_read() {
    // More lines than a batch and than a part, some rejected, so batch, page and part edges
    // all fall somewhere.
    let mut input = HEADER.to_string();
    for i in 0..150_000u32 {
        let year = if i % 997 == 0 {
            "soon".to_string()
        } else {
            (1900 + i % 120).to_string()
        };
        let genres = ["Drama", "Comedy,Short", "\\N"][(i % 3) as usize];
        input.push_str(&format!(
            "tt{i:07}\tmovie\tT{}\tT{}\t0\t{year}\t\\N\t{}\t{genres}\n",
            i % 5000,
            i % 4000,
            i % 200
        ));
    }
    let object = "bronze/imdb/title.basics/ingest_date=2026-11-23/title.basics.tsv";
    let run = |sizes: &[usize]| {
        let set = contracts();
        let mut out = Outputs::with_part_size(MemorySink::default(), context(object), 100_000);
        let reader = Chunked {
            input: input.as_bytes(),
            sizes,
            next: 0,
        };
        imdb::convert(reader, &set, &mut out).expect("converts");
        out.finish().expect("finish").0.objects
    };
    let whole = run(&[usize::MAX]);
    let ragged = run(&[40_000, 7, 1 << 20, 12_345, 3]);
    assert_eq!(whole.keys().collect::<Vec<_>>(), ragged.keys().collect::<Vec<_>>());
    assert!(
        whole.len() >= 3,
        "two silver parts and a quarantine part: {:?}",
        whole.keys()
    );
    for (path, bytes) in &whole {
        assert!(ragged[path] == *bytes, "{path} differs with other read sizes");
    }
}
