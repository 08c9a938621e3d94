//! TMDB list pages into silver, with the real responses in `../shared/fixtures/tmdb` (read in
//! place, never copied; each test says SKIPPED when the folder is absent).

use std::path::PathBuf;

use arrow_array::{Array, Int64Array, ListArray, RecordBatch};
use chrono::NaiveDate;
use movielake_core::contract::Contract;
use movielake_core::output::manifest::OutputKind;
use movielake_core::output::plan::Plan;
use movielake_core::sources::tmdb::api::{
    ApiError, BronzePage, PageError, bronze_page_path, parse_bronze_page_path, parse_error, parse_list_page,
};
use movielake_core::sources::tmdb::lists::plan;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value as Json, json};

const CONTRACT: &str = include_str!("../../../../contracts/tmdb_list_entries.toml");

fn contract() -> Contract {
    Contract::from_toml("contracts/tmdb_list_entries.toml", CONTRACT).expect("the shipped contract loads")
}

fn fixtures() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/tmdb");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("SKIPPED: {} is absent (real TMDB responses live there)", dir.display());
        None
    }
}

fn fixture(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const LISTS: &[(&str, &str)] = &[
    ("movie/popular", "lists/popular_p1_2024-02_jdrouet.json"),
    ("movie/now_playing", "lists/now_playing_p1_2024-02_jdrouet.json"),
    ("movie/top_rated", "lists/top_rated_p1_2023-04_c-eg.json"),
];

fn bronze(endpoint: &str) -> BronzePage {
    let date = NaiveDate::from_ymd_opt(2024, 2, 1).unwrap();
    parse_bronze_page_path(&bronze_page_path(endpoint, date, "20240201T060000Z-ab12", 1)).unwrap()
}

fn silver_batches(plan: &Plan) -> Vec<RecordBatch> {
    plan.writes
        .iter()
        .filter(|w| w.kind == OutputKind::Silver)
        .flat_map(|w| {
            ParquetRecordBatchReaderBuilder::try_new(w.bytes.clone())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
        })
        .collect()
}

fn quarantine_lines(plan: &Plan) -> Vec<Json> {
    plan.writes
        .iter()
        .filter(|w| w.kind == OutputKind::Quarantine)
        .flat_map(|w| {
            String::from_utf8(w.bytes.to_vec())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Json>>()
        })
        .collect()
}

fn first_result_edited(body: &[u8], edit: impl FnOnce(&mut serde_json::Map<String, Json>)) -> Vec<u8> {
    let mut page: Json = serde_json::from_slice(body).unwrap();
    edit(page["results"][0].as_object_mut().unwrap());
    serde_json::to_vec(&page).unwrap()
}

#[test]
fn real_pages_parse_into_silver_with_no_quarantine() {
    let Some(dir) = fixtures() else { return };
    let contract = contract();
    for (endpoint, file) in LISTS {
        let body = fixture(&dir, file);
        let page = parse_list_page(&body).unwrap();
        assert_eq!((page.page, page.results.len()), (1, 20), "{file}");
        assert!(page.total_pages >= 1);
        assert_eq!(page.dates.is_some(), *endpoint == "movie/now_playing", "{file}");

        let plan = plan(&contract, &bronze(endpoint), &body).unwrap();
        assert_eq!(plan.counts.quarantined, 0, "{file}: {:?}", quarantine_lines(&plan));
        assert_eq!((plan.counts.records_in, plan.counts.silver), (20, 20), "{file}");
        assert!(plan.counts.balanced());
        let paths: Vec<&str> = plan.writes.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(paths.len(), 1, "{paths:?}");
        assert!(paths[0].starts_with("silver/tmdb/list_entries/snapshot_date=2024-02-01/part-"));

        let batches = silver_batches(&plan);
        let batch = &batches[0];
        assert!(
            batch.column_by_name("_rescued").unwrap().null_count() == 20,
            "{file}: nothing unknown"
        );
        let genres = batch.column_by_name("genre_ids").unwrap();
        let genres = genres.as_any().downcast_ref::<ListArray>().unwrap();
        let first = genres.value(0);
        let first = first.as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(!first.is_empty() && first.values().iter().all(|g| *g > 0), "{file}");
        let ids = batch.column_by_name("movie_id").unwrap();
        assert_eq!(ids.null_count(), 0);
    }
}

#[test]
fn the_same_page_plans_the_same_bytes() {
    let Some(dir) = fixtures() else { return };
    let body = fixture(&dir, LISTS[0].1);
    let a = plan(&contract(), &bronze("movie/popular"), &body).unwrap();
    let b = plan(&contract(), &bronze("movie/popular"), &body).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_removed_field_is_null_an_added_one_rescued_a_mistyped_one_quarantined() {
    let Some(dir) = fixtures() else { return };
    let body = fixture(&dir, LISTS[0].1);
    let contract = contract();

    let removed = first_result_edited(&body, |r| {
        r.remove("vote_count");
        r.remove("genre_ids");
        r.insert("release_date".into(), json!(""));
    });
    let p = plan(&contract, &bronze("movie/popular"), &removed).unwrap();
    assert_eq!((p.counts.silver, p.counts.quarantined), (20, 0));
    let batch = &silver_batches(&p)[0];
    for column in ["vote_count", "genre_ids", "release_date"] {
        assert!(batch.column_by_name(column).unwrap().is_null(0), "{column}");
        assert!(!batch.column_by_name(column).unwrap().is_null(1), "{column}");
    }

    let added = first_result_edited(&body, |r| {
        r.insert("imdb_rating".into(), json!(7.5));
    });
    let p = plan(&contract, &bronze("movie/popular"), &added).unwrap();
    assert_eq!((p.counts.silver, p.counts.quarantined), (20, 0));
    let batch = &silver_batches(&p)[0];
    let rescued = batch.column_by_name("_rescued").unwrap();
    let rescued = rescued.as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
    assert_eq!(rescued.value(0), r#"{"imdb_rating":7.5}"#);
    assert!(rescued.is_null(1));

    let mistyped = first_result_edited(&body, |r| {
        r.insert("popularity".into(), json!("very"));
    });
    let p = plan(&contract, &bronze("movie/popular"), &mistyped).unwrap();
    assert_eq!((p.counts.silver, p.counts.quarantined), (19, 1));
    let q = quarantine_lines(&p);
    assert_eq!(q[0]["stage"], "schema");
    assert_eq!(q[0]["reasons"][0]["column"], "popularity");
    assert_eq!(q[0]["source"]["row"], 1);
    assert!(q[0]["raw"].as_str().unwrap().contains("\"very\""));
}

#[test]
fn a_body_that_is_not_a_list_page_is_one_quarantine_record() {
    let Some(dir) = fixtures() else { return };
    let contract = contract();
    for body in [
        fixture(&dir, "errors/7_invalid_api_key_jdrouet.json"),
        fixture(&dir, "movie_details/550_fight_club_2024-02_jdrouet.json"),
        br#"{"page": 1, "results": [{"id": 1"#.to_vec(),
        b"[1,2]".to_vec(),
    ] {
        let p = plan(&contract, &bronze("movie/popular"), &body).unwrap();
        assert_eq!((p.counts.records_in, p.counts.quarantined), (1, 1));
        let q = quarantine_lines(&p);
        assert_eq!(q[0]["stage"], "decode");
        assert_eq!(q[0]["reasons"][0]["rule"], "tmdb_list_page");
        assert_eq!(q[0]["raw"].as_str().unwrap().as_bytes(), body.as_slice());
    }
}

#[test]
fn error_bodies_are_typed() {
    let Some(dir) = fixtures() else { return };
    let status = |file: &str| parse_error(&fixture(&dir, file));
    assert!(
        matches!(status("errors/7_invalid_api_key_jdrouet.json"), Some(e @ ApiError::Status { code: 7, .. }) if e.is_auth())
    );
    assert!(matches!(
        status("errors/34_not_found_jdrouet.json"),
        Some(ApiError::Status { code: 34, .. })
    ));
    assert!(matches!(
        status("errors/22_invalid_page_adamayoung.json"),
        Some(ApiError::Status { code: 22, .. })
    ));
    assert_eq!(
        parse_error(br#"{"errors":["page must be less than or equal to 500"]}"#),
        Some(ApiError::Errors(vec!["page must be less than or equal to 500".into()]))
    );
    assert_eq!(parse_error(&fixture(&dir, LISTS[0].1)), None);
    assert!(matches!(
        parse_list_page(&fixture(&dir, "errors/22_invalid_page_adamayoung.json")),
        Err(PageError::Api(ApiError::Status { code: 22, .. }))
    ));
}

#[test]
fn bronze_page_paths_round_trip_and_refuse_what_is_not_one() {
    let date = NaiveDate::from_ymd_opt(2024, 2, 1).unwrap();
    let path = bronze_page_path("trending/movie/day", date, "r1", 7);
    assert_eq!(
        path,
        "bronze/tmdb/trending/movie/day/ingest_date=2024-02-01/run=r1/page=0007.json"
    );
    let page = parse_bronze_page_path(&path).unwrap();
    assert_eq!(
        (page.endpoint.as_str(), page.page, page.run_id.as_str()),
        ("trending/movie/day", 7, "r1")
    );
    for bad in [
        "bronze/tmdb/ingest_date=2024-02-01/run=r1/page=0001.json",
        "bronze/tmdb/movie/popular/ingest_date=2024-13-01/run=r1/page=0001.json",
        "bronze/tmdb/movie/popular/ingest_date=2024-02-01/run=/page=0001.json",
        "bronze/tmdb/movie/popular/ingest_date=2024-02-01/run=r1/page=0501.json",
        "bronze/tmdb/movie/popular/ingest_date=2024-02-01/run=r1/page=0000.json",
        "bronze/tmdb/../popular/ingest_date=2024-02-01/run=r1/page=0001.json",
        "bronze/imdb/title.basics/ingest_date=2024-02-01/title.basics.tsv.gz",
    ] {
        assert!(parse_bronze_page_path(bad).is_err(), "{bad}");
    }
}

#[test]
fn paging_never_goes_past_500_and_the_lists_file_is_checked() {
    use movielake_core::sources::tmdb::lists::{ListsConfig, last_page};
    assert_eq!(last_page(41_000, 500), 500);
    assert_eq!(last_page(41_000, 900), 500);
    assert_eq!(last_page(3, 10), 3);
    assert_eq!(last_page(10, 2), 2);
    assert_eq!(last_page(0, 5), 1);

    let shipped = include_str!("../../../../tmdb_lists.toml");
    let config = ListsConfig::from_toml("tmdb_lists.toml", shipped).expect("the shipped lists load");
    let endpoints: Vec<&str> = config.lists.iter().map(|l| l.endpoint.as_str()).collect();
    for e in [
        "movie/popular",
        "movie/top_rated",
        "movie/now_playing",
        "movie/upcoming",
    ] {
        assert!(endpoints.contains(&e), "{e}");
    }
    assert!(endpoints.contains(&"trending/movie/day") && endpoints.contains(&"discover/movie"));
    let discover = config.lists.iter().find(|l| l.endpoint == "discover/movie").unwrap();
    assert!(discover.query().contains(&("sort_by".into(), "popularity.desc".into())));

    for bad in [
        "[[lists]]\nendpoint = \"../movie\"\n",
        "[[lists]]\nendpoint = \"movie/popular?x=1\"\n",
        "[[lists]]\nendpoint = \"movie/popular\"\npages = 501\n",
        "[[lists]]\nendpoint = \"discover/movie\"\nparams = { api_key = \"k\" }\n",
        "[[lists]]\nendpoint = \"movie/popular\"\nlimit = 3\n",
    ] {
        assert!(ListsConfig::from_toml("t.toml", bad).is_err(), "{bad}");
    }
}

#[test]
fn ids_repeated_across_pages_are_counted_not_written_again() {
    use movielake_core::sources::tmdb::lists::{plan_with_repeats, repeated_ids};
    let page = |n: u32, ids: &[i64]| -> Vec<u8> {
        let results: Vec<Json> = ids
            .iter()
            .map(|id| json!({"id": id, "title": format!("m{id}")}))
            .collect();
        serde_json::to_vec(&json!({"page": n, "results": results, "total_pages": 3, "total_results": 9})).unwrap()
    };
    let bodies = [page(1, &[1, 2, 3]), page(2, &[3, 4, 5]), page(3, &[1, 5, 6])];
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    assert_eq!(repeated_ids(&refs), vec![vec![], vec![3], vec![1, 5]]);

    let date = NaiveDate::from_ymd_opt(2024, 2, 1).unwrap();
    let bronze = parse_bronze_page_path(&bronze_page_path("movie/popular", date, "r1", 3)).unwrap();
    let p = plan_with_repeats(&contract(), &bronze, &bodies[2], &[1, 5]).unwrap();
    assert_eq!(
        (p.counts.records_in, p.counts.silver, p.counts.duplicates_dropped),
        (3, 1, 2)
    );
    assert!(p.counts.balanced());
}

mod movies {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use chrono::NaiveDate;
    use movielake_core::sources::tmdb::api::{bronze_page_path, parse_bronze_page_path};
    use movielake_core::sources::tmdb::lists::plan_page;
    use movielake_core::sources::tmdb::movies::{MovieRow, bucket_path, decode, merge, snapshot_at};
    use serde_json::json;

    use super::contract;

    type Updates = BTreeMap<String, Vec<MovieRow>>;

    /// A list page whose movies are `(id, title)`; `popularity` tells pages apart too.
    fn page(endpoint: &str, day: u32, run: &str, number: u32, movies: &[(i64, &str)]) -> Updates {
        let results: Vec<_> = movies
            .iter()
            .map(|(id, title)| {
                json!({"id": id, "title": title, "original_title": title, "original_language": "en",
                       "release_date": "2001-02-03", "popularity": f64::from(day), "vote_average": 7.5,
                       "vote_count": 10, "genre_ids": [18, 35], "adult": false, "video": false})
            })
            .collect();
        let body = serde_json::to_vec(&json!({"page": number, "results": results, "total_pages": 9})).unwrap();
        let date = NaiveDate::from_ymd_opt(2024, 2, day).unwrap();
        let bronze = parse_bronze_page_path(&bronze_page_path(endpoint, date, run, number)).unwrap();
        let (plan, movies) = plan_page(&contract(), &bronze, &body, &[]).unwrap();
        assert_eq!(plan.counts.silver, movies.values().map(Vec::len).sum::<usize>() as u64);
        movies
    }

    /// Applies pages in order, as successive invocations would, to an initially empty table.
    fn apply(pages: &[&Updates]) -> BTreeMap<String, Bytes> {
        let mut lake: BTreeMap<String, Bytes> = BTreeMap::new();
        for updates in pages {
            for (path, rows) in updates.iter() {
                if let Some(bytes) = merge(lake.get(path), rows).unwrap() {
                    lake.insert(path.clone(), Bytes::from(bytes));
                }
            }
        }
        lake
    }

    fn rows(lake: &BTreeMap<String, Bytes>) -> BTreeMap<i64, MovieRow> {
        let mut out = BTreeMap::new();
        for (path, bytes) in lake {
            let decoded = decode(bytes).unwrap();
            let ids: Vec<i64> = decoded.iter().map(|r| r.movie_id).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{path}: sorted, unique: {ids:?}");
            for r in decoded {
                assert_eq!(bucket_path(r.movie_id), *path);
                out.insert(r.movie_id, r);
            }
        }
        out
    }

    #[test]
    fn merging_pages_in_either_order_gives_the_same_bytes() {
        let a = page(
            "movie/popular",
            1,
            "20240201T060000Z",
            1,
            &[(1, "a1"), (2, "a2"), (17, "a17")],
        );
        let b = page(
            "movie/top_rated",
            2,
            "20240202T060000Z",
            1,
            &[(2, "b2"), (3, "b3"), (17, "b17")],
        );
        let ab = apply(&[&a, &b]);
        assert_eq!(ab, apply(&[&b, &a]));
        assert_eq!(
            ab.keys().collect::<Vec<_>>(),
            [
                "silver/tmdb/movies/bucket=01/movies.parquet",
                "silver/tmdb/movies/bucket=02/movies.parquet",
                "silver/tmdb/movies/bucket=03/movies.parquet"
            ]
        );
        let table = rows(&ab);
        let title = |id: i64| table[&id].title.as_deref().unwrap();
        assert_eq!((title(1), title(2), title(3), title(17)), ("a1", "b2", "b3", "b17"));
        let two = &table[&2];
        assert_eq!(two.list, "movie/top_rated");
        assert_eq!(two.snapshot_date, NaiveDate::from_ymd_opt(2024, 2, 2).unwrap());
        assert_eq!(two.snapshot_at.to_rfc3339(), "2024-02-02T06:00:00+00:00");
        assert_eq!((two.page, two.position), (1, 1));
        assert_eq!(two.genre_ids.as_deref(), Some(&[18, 35][..]));
        assert_eq!(two.release_date, NaiveDate::from_ymd_opt(2001, 2, 3));
        assert!(
            two.source_object
                .starts_with("bronze/tmdb/movie/top_rated/ingest_date=2024-02-02/")
        );
        assert!(two.run_id.starts_with("tmdb-20240202T060000Z-p0001-"));
    }

    #[test]
    fn the_same_page_twice_is_the_same_as_once() {
        let a = page("movie/popular", 1, "20240201T060000Z", 1, &[(1, "a1"), (2, "a2")]);
        let b = page("movie/popular", 2, "20240202T060000Z", 1, &[(2, "b2")]);
        assert_eq!(apply(&[&a, &a]), apply(&[&a]));
        assert_eq!(apply(&[&a, &b, &a, &b]), apply(&[&a, &b]));
        // A redelivery changes nothing, so nothing is written.
        let once = apply(&[&a]);
        for (path, rows) in &a {
            assert_eq!(merge(once.get(path), rows).unwrap(), None, "{path}");
        }
    }

    #[test]
    fn an_older_page_does_not_overwrite_a_newer_one() {
        let new = page("movie/popular", 2, "20240202T060000Z", 1, &[(5, "new")]);
        let old = page("movie/top_rated", 1, "20240201T230000Z", 1, &[(5, "old")]);
        let lake = apply(&[&new]);
        for (path, rows) in &old {
            assert_eq!(
                merge(lake.get(path), rows).unwrap(),
                None,
                "{path}: older, so unchanged"
            );
        }
        assert_eq!(rows(&apply(&[&new, &old]))[&5].title.as_deref(), Some("new"));
        // Same run time: the bronze path decides (page 2 over page 1), whatever the order.
        let p1 = page("movie/popular", 2, "20240202T060000Z", 1, &[(6, "p1")]);
        let p2 = page("movie/popular", 2, "20240202T060000Z", 2, &[(6, "p2")]);
        assert_eq!(apply(&[&p1, &p2]), apply(&[&p2, &p1]));
        assert_eq!(rows(&apply(&[&p2, &p1]))[&6].title.as_deref(), Some("p2"));
    }

    #[test]
    fn snapshot_time_comes_from_the_run_id_else_the_ingest_date() {
        let date = NaiveDate::from_ymd_opt(2024, 2, 1).unwrap();
        let at = |run: &str| {
            snapshot_at(&parse_bronze_page_path(&bronze_page_path("movie/popular", date, run, 1)).unwrap()).to_rfc3339()
        };
        assert_eq!(at("20240201T063015Z-ab12"), "2024-02-01T06:30:15+00:00");
        assert_eq!(at("manual-backfill"), "2024-02-01T00:00:00+00:00");
        assert_eq!(bucket_path(550), "silver/tmdb/movies/bucket=06/movies.parquet");
        assert!(matches!(
            merge(Some(&Bytes::from_static(b"not parquet")), &[]),
            Err(movielake_core::sources::tmdb::movies::MoviesError::Corrupt(_))
        ));
    }
}

/// Movie details (`GET /movie/{id}`): the real responses parse into silver with no quarantine,
/// drift gives nulls and `_rescued`, a mistyped field or a body that is not a movie goes to
/// quarantine, and a 404 is one quarantine record.
mod details {
    use super::*;
    use arrow_array::StringArray;
    use arrow_array::cast::AsArray;
    use movielake_core::host::eventgrid::{BronzeKind, classify};
    use movielake_core::sources::tmdb::api::ApiError;
    use movielake_core::sources::tmdb::details::{
        BronzeDetail, DetailsConfig, NotFound, bronze_detail_path, detail_ids, parse_bronze_detail_path, plan_detail,
        plan_not_found,
    };
    use movielake_core::sources::tmdb::lists::ListsConfig;

    const DETAILS: &str = include_str!("../../../../contracts/tmdb_movie_details.toml");

    fn contract() -> Contract {
        Contract::from_toml("contracts/tmdb_movie_details.toml", DETAILS).expect("the shipped contract loads")
    }

    fn bronze(id: i64) -> BronzeDetail {
        let date = NaiveDate::from_ymd_opt(2024, 2, 1).unwrap();
        parse_bronze_detail_path(&bronze_detail_path(date, "20240201T060000Z", id)).unwrap()
    }

    fn edited(body: &[u8], edit: impl FnOnce(&mut serde_json::Map<String, Json>)) -> Vec<u8> {
        let mut movie: Json = serde_json::from_slice(body).unwrap();
        edit(movie.as_object_mut().unwrap());
        serde_json::to_vec(&movie).unwrap()
    }

    fn one_row(plan: &Plan) -> RecordBatch {
        assert_eq!(
            (plan.counts.records_in, plan.counts.silver, plan.counts.quarantined),
            (1, 1, 0),
            "{:?}",
            quarantine_lines(plan)
        );
        let batches = silver_batches(plan);
        assert_eq!((batches.len(), batches[0].num_rows()), (1, 1));
        batches[0].clone()
    }

    fn text(batch: &RecordBatch, column: &str) -> Option<String> {
        let c = batch
            .column_by_name(column)
            .unwrap_or_else(|| panic!("no column {column}"));
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        c.is_valid(0).then(|| c.value(0).to_string())
    }

    fn int(batch: &RecordBatch, column: &str) -> Option<i64> {
        let c = batch.column_by_name(column).unwrap();
        if c.is_null(0) {
            return None;
        }
        use arrow_array::types::{Date32Type, Int32Type, Int64Type};
        c.as_primitive_opt::<Int64Type>()
            .map(|a| a.value(0))
            .or_else(|| c.as_primitive_opt::<Int32Type>().map(|a| i64::from(a.value(0))))
            .or_else(|| c.as_primitive_opt::<Date32Type>().map(|a| i64::from(a.value(0))))
    }

    #[test]
    fn the_real_details_parse_into_silver_with_no_quarantine() {
        let Some(dir) = fixtures() else { return };
        let body = fixture(&dir, "movie_details/550_fight_club_2024-02_jdrouet.json");
        let plan = plan_detail(&contract(), &bronze(550), &body).unwrap();
        let batch = one_row(&plan);
        let paths: Vec<&str> = plan.writes.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(paths.len(), 1);
        assert!(paths[0].starts_with("silver/tmdb/movie_details/snapshot_date=2024-02-01/part-"));
        assert_eq!(text(&batch, "imdb_id").as_deref(), Some("tt0137523"));
        assert_eq!(text(&batch, "title").as_deref(), Some("Fight Club"));
        assert_eq!(text(&batch, "status").as_deref(), Some("Released"));
        assert_eq!(
            (
                int(&batch, "movie_id"),
                int(&batch, "budget"),
                int(&batch, "revenue"),
                int(&batch, "runtime")
            ),
            (Some(550), Some(63_000_000), Some(100_853_753), Some(139))
        );
        assert_eq!(int(&batch, "collection_id"), None, "belongs_to_collection is null");
        let genres = batch.column_by_name("genre_names").unwrap().as_list::<i32>().value(0);
        assert_eq!(genres.as_string::<i32>().value(0), "Drama");
        let genre_ids = batch.column_by_name("genre_ids").unwrap().as_list::<i32>().value(0);
        assert_eq!(genre_ids.as_any().downcast_ref::<Int64Array>().unwrap().values(), &[18]);
        let countries = batch
            .column_by_name("production_country_codes")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        let countries = countries.as_string::<i32>();
        assert_eq!((countries.value(0), countries.value(1)), ("DE", "US"));
        assert!(
            batch.column_by_name("_rescued").unwrap().is_null(0),
            "every field of the real response is a column"
        );
        assert_eq!(text(&batch, "_source_object"), Some(bronze(550).path));
        assert_eq!(
            plan,
            plan_detail(&contract(), &bronze(550), &body).unwrap(),
            "deterministic"
        );

        // TMDB's "latest" movie: "" dates and null ids of a barely known movie are nulls.
        let latest = fixture(&dir, "movie_details/1236474_latest_2024-02_jdrouet.json");
        let batch = one_row(&plan_detail(&contract(), &bronze(1236474), &latest).unwrap());
        assert_eq!((text(&batch, "imdb_id"), int(&batch, "release_date")), (None, None));
        let genres = batch.column_by_name("genre_ids").unwrap().as_list::<i32>();
        assert!(
            genres.is_valid(0) && genres.value(0).is_empty(),
            "[] is an empty list, not null"
        );
    }

    #[test]
    fn a_removed_field_is_null_an_added_one_rescued_a_mistyped_one_quarantined() {
        let Some(dir) = fixtures() else { return };
        let body = fixture(&dir, "movie_details/550_fight_club_2024-02_jdrouet.json");
        let contract = contract();

        let removed = edited(&body, |m| {
            for field in ["budget", "imdb_id", "genres", "belongs_to_collection", "runtime"] {
                m.remove(field);
            }
        });
        let batch = one_row(&plan_detail(&contract, &bronze(550), &removed).unwrap());
        for column in [
            "budget",
            "imdb_id",
            "genre_ids",
            "genre_names",
            "collection_id",
            "runtime",
        ] {
            assert!(batch.column_by_name(column).unwrap().is_null(0), "{column}");
        }
        assert_eq!(int(&batch, "revenue"), Some(100_853_753));

        let added = edited(&body, |m| {
            m.insert("origin_country".into(), json!(["US"]));
            m.insert("imdb_rating".into(), json!(8.8));
            m.insert(
                "belongs_to_collection".into(),
                json!({"id": 10, "name": "Club", "poster_path": null}),
            );
        });
        let batch = one_row(&plan_detail(&contract, &bronze(550), &added).unwrap());
        assert_eq!(text(&batch, "_rescued").as_deref(), Some(r#"{"imdb_rating":8.8}"#));
        assert_eq!(int(&batch, "collection_id"), Some(10));
        assert_eq!(text(&batch, "collection_name").as_deref(), Some("Club"));

        for (column, edit) in [
            ("budget", json!("sixty-three million")),
            ("genre_ids", json!("Drama")),
            ("vote_average", json!(11.5)),
        ] {
            let field = if column == "genre_ids" { "genres" } else { column };
            let mistyped = edited(&body, |m| {
                m.insert(field.into(), edit.clone());
            });
            let plan = plan_detail(&contract, &bronze(550), &mistyped).unwrap();
            assert_eq!((plan.counts.silver, plan.counts.quarantined), (0, 1), "{column}");
            assert!(plan.counts.balanced());
            let q = quarantine_lines(&plan);
            assert_eq!(q[0]["reasons"][0]["column"], column, "{q:?}");
            assert_eq!(q[0]["raw"].as_str().unwrap().as_bytes(), mistyped.as_slice());
            assert_eq!(q[0]["source"]["object"], bronze(550).path.as_str());
            let paths: Vec<&str> = plan.writes.iter().map(|w| w.path.as_str()).collect();
            assert_eq!(paths.len(), 1);
            assert!(paths[0].starts_with("quarantine/tmdb/movie_details/date=2024-02-01/part-"));
        }
    }

    #[test]
    fn a_body_that_is_not_a_movie_is_one_quarantine_record() {
        let Some(dir) = fixtures() else { return };
        for body in [
            fixture(&dir, "errors/34_not_found_jdrouet.json"),
            fixture(&dir, LISTS[0].1),
            br#"{"adult": false, "title": "no id"}"#.to_vec(),
            br#"{"id": 550, "title": "Fight"#.to_vec(),
            b"[550]".to_vec(),
        ] {
            let p = plan_detail(&contract(), &bronze(550), &body).unwrap();
            assert_eq!((p.counts.records_in, p.counts.quarantined), (1, 1));
            let q = quarantine_lines(&p);
            assert_eq!(q[0]["stage"], "decode");
            assert_eq!(q[0]["reasons"][0]["rule"], "tmdb_movie");
            assert_eq!(q[0]["raw"].as_str().unwrap().as_bytes(), body.as_slice());
        }
    }

    #[test]
    fn a_404_is_one_quarantine_record_per_movie_named_by_the_run() {
        let Some(dir) = fixtures() else { return };
        let body = String::from_utf8(fixture(&dir, "errors/34_not_found_jdrouet.json")).unwrap();
        let api = parse_error(body.as_bytes()).unwrap();
        assert!(matches!(api, ApiError::Status { code: 34, .. }));
        let date = NaiveDate::from_ymd_opt(2024, 2, 1).unwrap();
        let nf = |id| NotFound {
            movie_id: id,
            body: body.clone(),
            api: api.clone(),
        };
        assert!(plan_not_found(&contract(), "20240201T060000Z", date, &[]).is_none());
        let write = plan_not_found(&contract(), "20240201T060000Z", date, &[nf(9), nf(3)]).unwrap();
        let again = plan_not_found(&contract(), "20240201T060000Z", date, &[nf(3), nf(9)]).unwrap();
        assert_eq!(write, again, "the same name and bytes in any order");
        assert_eq!((write.kind, write.rows), (OutputKind::Quarantine, Some(2)));
        assert!(
            write
                .path
                .starts_with("quarantine/tmdb/movie_details/date=2024-02-01/part-")
        );
        let lines: Vec<Json> = std::str::from_utf8(&write.bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["source"]["object"], "tmdb:movie/3");
        assert_eq!(lines[1]["source"]["object"], "tmdb:movie/9");
        assert_eq!(lines[0]["reasons"][0]["rule"], "not_found");
        assert_eq!(
            lines[0]["reasons"][0]["detail"],
            "TMDB has no details for movie 3 (HTTP 404, TMDB status_code 34: The resource you requested could not be found.)"
        );
        assert_eq!(
            (&lines[0]["dataset"], &lines[0]["contract_version"], &lines[0]["stage"]),
            (&json!("tmdb_movie_details"), &json!(1), &json!("decode"))
        );
        assert_eq!(lines[0]["time"], "2024-02-01T06:00:00.000000Z");
        assert_eq!(lines[0]["raw"], body.as_str());
        let other_run = plan_not_found(&contract(), "20240201T070000Z", date, &[nf(3)]).unwrap();
        assert_ne!(other_run.path, write.path);
    }

    #[test]
    fn ids_are_distinct_in_list_order_and_capped() {
        let page = |ids: &[i64]| -> Vec<u8> {
            let results: Vec<Json> = ids.iter().map(|id| json!({"id": id})).collect();
            serde_json::to_vec(&json!({"page": 1, "results": results, "total_pages": 1})).unwrap()
        };
        let bodies = [page(&[5, 3, 5]), b"not a page".to_vec(), page(&[3, 8, -1, 9, 1])];
        let refs = || bodies.iter().map(Vec::as_slice);
        assert_eq!(detail_ids(refs(), 100), (vec![5, 3, 8, 9, 1], 0));
        assert_eq!(detail_ids(refs(), 2), (vec![5, 3], 3));
    }

    #[test]
    fn detail_paths_round_trip_and_route_to_their_parser() {
        let date = NaiveDate::from_ymd_opt(2024, 2, 1).unwrap();
        let path = bronze_detail_path(date, "r1", 550);
        assert_eq!(path, "bronze/tmdb/movie/ingest_date=2024-02-01/run=r1/id=550.json");
        let d = parse_bronze_detail_path(&path).unwrap();
        assert_eq!((d.movie_id, d.run_id.as_str(), d.ingest_date), (550, "r1", date));
        assert_eq!(classify(&path), Ok(BronzeKind::TmdbMovieDetail));
        assert_eq!(
            classify(&bronze_page_path("movie/popular", date, "r1", 1)),
            Ok(BronzeKind::TmdbListPage)
        );
        for bad in [
            "bronze/tmdb/movie/ingest_date=2024-02-01/run=r1/id=550.meta.json",
            "bronze/tmdb/movie/ingest_date=2024-02-01/run=r1/id=0550.json",
            "bronze/tmdb/movie/ingest_date=2024-02-01/run=r1/id=-5.json",
            "bronze/tmdb/movie/ingest_date=2024-02-01/run=r1/id=.json",
            "bronze/tmdb/movie/ingest_date=2024-02-30/run=r1/id=550.json",
            "bronze/tmdb/movie/ingest_date=2024-02-01/run=/id=550.json",
            "bronze/tmdb/movie/ingest_date=2024-02-01/id=550.json",
            "bronze/tmdb/movie/popular/ingest_date=2024-02-01/run=r1/page=0001.json",
        ] {
            assert!(parse_bronze_detail_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_details_table_of_the_lists_file_is_checked() {
        let shipped = include_str!("../../../../tmdb_lists.toml");
        let config = ListsConfig::from_toml("tmdb_lists.toml", shipped).unwrap();
        assert!(config.details.enabled && config.details.max_per_run == 200);
        let without = ListsConfig::from_toml("t.toml", "[[lists]]\nendpoint = \"movie/popular\"\n").unwrap();
        assert_eq!(without.details, DetailsConfig::default(), "on by default");
        let off = ListsConfig::from_toml("t.toml", "lists = []\n[details]\nenabled = false\n").unwrap();
        assert!(!off.details.enabled);
        for bad in [
            "lists = []\n[details]\nmax_per_run = 0\n",
            "lists = []\n[details]\nmax_per_run = 5001\n",
            "lists = []\n[details]\nmax = 5\n",
        ] {
            assert!(ListsConfig::from_toml("t.toml", bad).is_err(), "{bad}");
        }
    }
}
