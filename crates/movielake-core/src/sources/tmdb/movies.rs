//! `silver/tmdb/movies`: the latest attributes of every movie seen on a TMDB list page, one row
//! per movie, in [`BUCKETS`] objects `silver/tmdb/movies/bucket=NN/movies.parquet`
//! (`NN = movie_id % 16`: few objects, and little contention between concurrent writers).
//!
//! "Latest" is an order on observations, not on processing: the row with the greatest
//! (`snapshot_at`, `_source_object`, `page`, `position`) wins. So pages merged in any order, or
//! more than once, give the same table, and the same bytes (rows sorted by `movie_id`). The app
//! reads a bucket with its ETag, calls [`merge`], and writes the result back with a
//! compare-and-swap; nothing here does IO.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::contract::Contract;
use crate::contract::value::{ColumnType, Value, days_since_epoch};
use crate::output::silver::{EncodeError, INGESTED_AT, RESCUED, RUN_ID, SOURCE_OBJECT, arrow_type, writer_properties};
use crate::routing::route::Accepted;
use crate::sources::tmdb::api::BronzePage;

/// Movies are spread over this many bucket objects by `movie_id % BUCKETS`.
pub const BUCKETS: i64 = 16;
pub const TABLE_PREFIX: &str = "silver/tmdb/movies/";

/// One movie as last seen on a list page.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieRow {
    pub movie_id: i64,
    pub title: Option<String>,
    pub original_title: Option<String>,
    pub original_language: Option<String>,
    pub release_date: Option<NaiveDate>,
    pub popularity: Option<f64>,
    pub vote_average: Option<f64>,
    pub vote_count: Option<i64>,
    pub genre_ids: Option<Vec<i64>>,
    pub adult: Option<bool>,
    pub video: Option<bool>,
    /// The list it was last seen on (`movie/popular`, ...), with the page and position there.
    pub list: String,
    pub page: i32,
    pub position: i32,
    /// `ingest_date` of the bronze page.
    pub snapshot_date: NaiveDate,
    /// When the list was read: the pull run's start (its run id), else `snapshot_date` 00:00 UTC.
    pub snapshot_at: DateTime<Utc>,
    pub rescued: Option<String>,
    pub source_object: String,
    pub ingested_at: DateTime<Utc>,
    pub run_id: String,
}

impl MovieRow {
    /// The order of observations: a greater key is a later sighting. Only the bronze object
    /// says when, so the result does not depend on when (or how often) pages are processed.
    fn recency(&self) -> (DateTime<Utc>, &str, i32, i32) {
        (self.snapshot_at, &self.source_object, self.page, self.position)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MoviesError {
    #[error("not a movies table: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// `silver/tmdb/movies/bucket=NN/movies.parquet` of a movie.
pub fn bucket_path(movie_id: i64) -> String {
    format!(
        "{TABLE_PREFIX}bucket={:02}/movies.parquet",
        movie_id.rem_euclid(BUCKETS)
    )
}

/// When a page was read: its run id starts with the run's start time (`20240201T060000Z-…`,
/// as `pull_tmdb_lists` names runs); otherwise the start of its ingest date.
pub fn snapshot_at(bronze: &BronzePage) -> DateTime<Utc> {
    bronze
        .run_id
        .get(..16)
        .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
        .map_or_else(
            || bronze.ingest_date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
            |t| t.and_utc(),
        )
}

/// The movie rows of a page's accepted list entries (contract `tmdb_list_entries`), grouped by
/// bucket path.
pub fn updates(
    contract: &Contract,
    bronze: &BronzePage,
    accepted: &[Accepted],
    run_id: &str,
    ingested_at: DateTime<Utc>,
) -> BTreeMap<String, Vec<MovieRow>> {
    let index = |name: &str| contract.column_index(name);
    let columns = [
        "movie_id",
        "title",
        "original_title",
        "original_language",
        "release_date",
        "popularity",
        "vote_average",
        "vote_count",
        "genre_ids",
        "adult",
        "video",
        "position",
    ]
    .map(index);
    let seen_at = snapshot_at(bronze);
    let mut out: BTreeMap<String, Vec<MovieRow>> = BTreeMap::new();
    for a in accepted {
        let v = |i: usize| columns[i].and_then(|c| a.row.values.get(c)).unwrap_or(&Value::Null);
        let string = |i| match v(i) {
            Value::String(s) => Some(s.clone()),
            _ => None,
        };
        let float = |i| match v(i) {
            Value::Float64(x) => Some(*x),
            _ => None,
        };
        let boolean = |i| match v(i) {
            Value::Bool(x) => Some(*x),
            _ => None,
        };
        let Value::Int64(movie_id) = *v(0) else { continue };
        let position = match v(11) {
            Value::Int32(p) => *p,
            _ => a.pointer.row.map_or(0, |r| i32::try_from(r).unwrap_or(i32::MAX)),
        };
        let row = MovieRow {
            movie_id,
            title: string(1),
            original_title: string(2),
            original_language: string(3),
            release_date: match v(4) {
                Value::Date(d) => Some(*d),
                _ => None,
            },
            popularity: float(5),
            vote_average: float(6),
            vote_count: match v(7) {
                Value::Int64(x) => Some(*x),
                _ => None,
            },
            genre_ids: match v(8) {
                Value::IntList(ids) => Some(ids.clone()),
                _ => None,
            },
            adult: boolean(9),
            video: boolean(10),
            list: bronze.endpoint.clone(),
            page: i32::try_from(bronze.page).unwrap_or(i32::MAX),
            position,
            snapshot_date: bronze.ingest_date,
            snapshot_at: seen_at,
            rescued: a.row.rescued.clone(),
            source_object: a.pointer.object.clone(),
            ingested_at,
            run_id: run_id.to_string(),
        };
        out.entry(bucket_path(movie_id)).or_default().push(row);
    }
    out
}

/// Merges rows into a table: a movie's row is replaced only by a later observation. Returns
/// whether anything changed.
pub fn merge_rows(table: &mut BTreeMap<i64, MovieRow>, incoming: &[MovieRow]) -> bool {
    let mut changed = false;
    for row in incoming {
        match table.get(&row.movie_id) {
            Some(kept) if kept.recency() >= row.recency() => {}
            _ => {
                table.insert(row.movie_id, row.clone());
                changed = true;
            }
        }
    }
    changed
}

/// Merges a page's rows into a bucket's current Parquet bytes (`None`: the bucket does not
/// exist yet). Returns the new bytes, or `None` when the bucket would not change (a redelivered
/// or older page), so that nothing is written.
pub fn merge(current: Option<&bytes::Bytes>, incoming: &[MovieRow]) -> Result<Option<Vec<u8>>, MoviesError> {
    let mut table = match current {
        Some(bytes) => decode(bytes)?
            .into_iter()
            .map(|r| (r.movie_id, r))
            .collect::<BTreeMap<_, _>>(),
        None => BTreeMap::new(),
    };
    if !merge_rows(&mut table, incoming) {
        return Ok(None);
    }
    let rows: Vec<&MovieRow> = table.values().collect();
    Ok(Some(encode(&rows)?))
}

pub fn schema() -> SchemaRef {
    let utf8 = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let timestamp = arrow_type(ColumnType::Timestamp);
    Arc::new(Schema::new(vec![
        Field::new("movie_id", DataType::Int64, false),
        utf8("title", true),
        utf8("original_title", true),
        utf8("original_language", true),
        Field::new("release_date", DataType::Date32, true),
        Field::new("popularity", DataType::Float64, true),
        Field::new("vote_average", DataType::Float64, true),
        Field::new("vote_count", DataType::Int64, true),
        Field::new("genre_ids", arrow_type(ColumnType::ListOfInt64), true),
        Field::new("adult", DataType::Boolean, true),
        Field::new("video", DataType::Boolean, true),
        utf8("list", false),
        Field::new("page", DataType::Int32, false),
        Field::new("position", DataType::Int32, false),
        Field::new("snapshot_date", DataType::Date32, false),
        Field::new("snapshot_at", timestamp.clone(), false),
        utf8(RESCUED, true),
        utf8(SOURCE_OBJECT, false),
        Field::new(INGESTED_AT, timestamp, false),
        utf8(RUN_ID, false),
    ]))
}

/// The rows as one Arrow batch under [`schema`], in the order given.
pub fn batch(rows: &[&MovieRow]) -> Result<RecordBatch, EncodeError> {
    fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
        let mut b = StringBuilder::new();
        values.for_each(|v| b.append_option(v));
        Arc::new(b.finish())
    }
    fn timestamps(values: impl Iterator<Item = DateTime<Utc>>) -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        values.for_each(|t| b.append_value(t.timestamp_micros()));
        Arc::new(b.finish())
    }
    let mut movie_id = Int64Builder::new();
    let (mut release_date, mut snapshot_date) = (Date32Builder::new(), Date32Builder::new());
    let (mut popularity, mut vote_average) = (Float64Builder::new(), Float64Builder::new());
    let mut vote_count = Int64Builder::new();
    let mut genre_ids = ListBuilder::new(Int64Builder::new());
    let (mut adult, mut video) = (BooleanBuilder::new(), BooleanBuilder::new());
    let (mut page, mut position) = (Int32Builder::new(), Int32Builder::new());
    for r in rows {
        movie_id.append_value(r.movie_id);
        release_date.append_option(r.release_date.map(days_since_epoch));
        popularity.append_option(r.popularity);
        vote_average.append_option(r.vote_average);
        vote_count.append_option(r.vote_count);
        match &r.genre_ids {
            Some(ids) => {
                genre_ids.values().append_slice(ids);
                genre_ids.append(true);
            }
            None => genre_ids.append(false),
        }
        adult.append_option(r.adult);
        video.append_option(r.video);
        page.append_value(r.page);
        position.append_value(r.position);
        snapshot_date.append_value(days_since_epoch(r.snapshot_date));
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(movie_id.finish()),
        strings(rows.iter().map(|r| r.title.as_deref())),
        strings(rows.iter().map(|r| r.original_title.as_deref())),
        strings(rows.iter().map(|r| r.original_language.as_deref())),
        Arc::new(release_date.finish()),
        Arc::new(popularity.finish()),
        Arc::new(vote_average.finish()),
        Arc::new(vote_count.finish()),
        Arc::new(genre_ids.finish()),
        Arc::new(adult.finish()),
        Arc::new(video.finish()),
        strings(rows.iter().map(|r| Some(r.list.as_str()))),
        Arc::new(page.finish()),
        Arc::new(position.finish()),
        Arc::new(snapshot_date.finish()),
        timestamps(rows.iter().map(|r| r.snapshot_at)),
        strings(rows.iter().map(|r| r.rescued.as_deref())),
        strings(rows.iter().map(|r| Some(r.source_object.as_str()))),
        timestamps(rows.iter().map(|r| r.ingested_at)),
        strings(rows.iter().map(|r| Some(r.run_id.as_str()))),
    ];
    Ok(RecordBatch::try_new(schema(), arrays)?)
}

/// `silver/tmdb/movies` as a Delta table: the app MERGEs a page's rows (the latest per movie,
/// see [`latest`]) by `movie_id`, replacing a row only when the incoming one is a later
/// sighting. This is [`MovieRow::recency`] written in SQL over the source `s` and target `t`.
pub const TABLE: &str = "silver/tmdb/movies";
pub const NEWER: &str = "s.snapshot_at > t.snapshot_at \
    OR (s.snapshot_at = t.snapshot_at AND (s._source_object > t._source_object \
    OR (s._source_object = t._source_object AND (s.page > t.page \
    OR (s.page = t.page AND s.position > t.position)))))";

/// The latest sighting of each movie among `rows`, by `movie_id` (a MERGE source must name each
/// key once).
pub fn latest<'a>(rows: impl IntoIterator<Item = &'a MovieRow>) -> Vec<MovieRow> {
    let mut table = BTreeMap::new();
    let rows: Vec<MovieRow> = rows.into_iter().cloned().collect();
    merge_rows(&mut table, &rows);
    table.into_values().collect()
}

/// One row group, rows in the order given (callers pass them sorted by `movie_id`).
pub fn encode(rows: &[&MovieRow]) -> Result<Vec<u8>, EncodeError> {
    let batch = batch(rows)?;
    let schema = batch.schema();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties()))?;
    writer.write(&batch)?;
    Ok(writer.into_inner()?)
}

/// Reads a bucket back. Columns are found by name; an optional column that is absent reads as
/// null (a table written before that column existed).
pub fn decode(bytes: &bytes::Bytes) -> Result<Vec<MovieRow>, MoviesError> {
    let corrupt = |e: &dyn std::fmt::Display| MoviesError::Corrupt(e.to_string());
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .and_then(|b| b.build())
        .map_err(|e| corrupt(&e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(&e))?;
        rows.extend(decode_batch(&batch)?);
    }
    Ok(rows)
}

fn decode_batch(batch: &RecordBatch) -> Result<Vec<MovieRow>, MoviesError> {
    let wrong = |name: &str| MoviesError::Corrupt(format!("column {name} is missing or of another type"));
    let column = |name: &str| batch.column_by_name(name);
    let string = |name: &'static str| -> Result<Option<&arrow_array::StringArray>, MoviesError> {
        column(name)
            .map(|c| c.as_string_opt::<i32>().ok_or_else(|| wrong(name)))
            .transpose()
    };
    let required = |name: &'static str| string(name)?.ok_or_else(|| wrong(name));
    macro_rules! primitive {
        ($name:expr, $ty:ty) => {
            column($name)
                .map(|c| c.as_primitive_opt::<$ty>().ok_or_else(|| wrong($name)))
                .transpose()?
        };
    }
    let boolean = |name: &'static str| {
        column(name)
            .map(|c| c.as_boolean_opt().ok_or_else(|| wrong(name)))
            .transpose()
    };
    let movie_id = primitive!("movie_id", Int64Type).ok_or_else(|| wrong("movie_id"))?;
    let (title, original_title, original_language) = (
        string("title")?,
        string("original_title")?,
        string("original_language")?,
    );
    let release_date = primitive!("release_date", Date32Type);
    let popularity = primitive!("popularity", Float64Type);
    let vote_average = primitive!("vote_average", Float64Type);
    let vote_count = primitive!("vote_count", Int64Type);
    let genre_ids = column("genre_ids")
        .map(|c| c.as_list_opt::<i32>().ok_or_else(|| wrong("genre_ids")))
        .transpose()?;
    let (adult, video) = (boolean("adult")?, boolean("video")?);
    let list = required("list")?;
    let page = primitive!("page", Int32Type).ok_or_else(|| wrong("page"))?;
    let position = primitive!("position", Int32Type).ok_or_else(|| wrong("position"))?;
    let snapshot_date = primitive!("snapshot_date", Date32Type).ok_or_else(|| wrong("snapshot_date"))?;
    let snapshot_at = primitive!("snapshot_at", TimestampMicrosecondType).ok_or_else(|| wrong("snapshot_at"))?;
    let rescued = string(RESCUED)?;
    let source_object = required(SOURCE_OBJECT)?;
    let ingested_at = primitive!(INGESTED_AT, TimestampMicrosecondType).ok_or_else(|| wrong(INGESTED_AT))?;
    let run_id = required(RUN_ID)?;

    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let date = |days: i32| epoch + chrono::Duration::days(i64::from(days));
    let time = |micros: i64| {
        DateTime::from_timestamp_micros(micros).ok_or_else(|| MoviesError::Corrupt(format!("timestamp {micros}")))
    };
    let opt_str =
        |a: Option<&arrow_array::StringArray>, i: usize| a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let needed = [
            movie_id.is_valid(i),
            list.is_valid(i),
            page.is_valid(i),
            position.is_valid(i),
            snapshot_date.is_valid(i),
            snapshot_at.is_valid(i),
            source_object.is_valid(i),
            ingested_at.is_valid(i),
            run_id.is_valid(i),
        ];
        if needed.contains(&false) {
            return Err(MoviesError::Corrupt(format!("row {i}: a required value is null")));
        }
        let genres = genre_ids.filter(|g| g.is_valid(i)).map(|g| {
            let ids = g.value(i);
            ids.as_primitive_opt::<Int64Type>()
                .map(|ids| ids.iter().flatten().collect())
                .unwrap_or_default()
        });
        rows.push(MovieRow {
            movie_id: movie_id.value(i),
            title: opt_str(title, i),
            original_title: opt_str(original_title, i),
            original_language: opt_str(original_language, i),
            release_date: release_date.filter(|a| a.is_valid(i)).map(|a| date(a.value(i))),
            popularity: popularity.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
            vote_average: vote_average.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
            vote_count: vote_count.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
            genre_ids: genres,
            adult: adult.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
            video: video.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
            list: list.value(i).to_string(),
            page: page.value(i),
            position: position.value(i),
            snapshot_date: date(snapshot_date.value(i)),
            snapshot_at: time(snapshot_at.value(i))?,
            rescued: opt_str(rescued, i),
            source_object: source_object.value(i).to_string(),
            ingested_at: time(ingested_at.value(i))?,
            run_id: run_id.value(i).to_string(),
        });
    }
    Ok(rows)
}
