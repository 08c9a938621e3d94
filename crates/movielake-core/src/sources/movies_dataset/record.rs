//! One CSV record of The Movies Dataset into candidate rows: the record's own row and its child
//! rows (genres, cast, keywords, ...) parsed out of the Python-literal columns, with the reasons
//! found on the way. The contract check comes after, in the caller.

use chrono::DateTime;
use serde_json::{Map, Value as Json};

use super::MoviesFile;
use crate::contract::validate::{Reason, Stage};
use crate::sources::movies_dataset::pylit;

/// One row for a contract, before its check.
pub(super) struct Candidate {
    pub(super) table: usize,
    pub(super) fields: Map<String, Json>,
    /// For a child row: the source column and the item's index (reasons name them).
    pub(super) label: Option<(&'static str, usize)>,
}

#[derive(Default)]
pub(super) struct Parsed {
    pub(super) rows: Vec<Candidate>,
    pub(super) reasons: Vec<(Stage, Reason)>,
    /// The id that de-duplicates records (`None`: not de-duplicated).
    pub(super) key: Option<i64>,
}

impl Parsed {
    /// The record's own row: first, so its reasons come before those of its children.
    fn row(&mut self, fields: Map<String, Json>) {
        let row = Candidate {
            table: 0,
            fields,
            label: None,
        };
        self.rows.insert(0, row);
    }

    fn refuse(&mut self, stage: Stage, rule: &str, column: Option<&str>, detail: impl Into<String>) {
        self.reasons.push((stage, Reason::new(rule, column, detail)));
    }
}

pub(super) fn relabel(reason: Reason, label: &Option<(&'static str, usize)>) -> Reason {
    match label {
        None => reason,
        Some((column, index)) => {
            let field = reason.column.as_deref().unwrap_or("row");
            let detail = format!("{column}[{index}].{field}: {}", reason.detail);
            Reason::new(&reason.rule, Some(column), detail)
        }
    }
}

pub(super) fn parse_record(kind: MoviesFile, record: &csv::ByteRecord) -> Parsed {
    let mut parsed = Parsed::default();
    let expected = kind.header().len();
    if record.len() != expected {
        let detail = format!(
            "expected {expected} fields, found {} (a broken quote or a stray separator shifts the fields)",
            record.len()
        );
        parsed.refuse(Stage::Decode, "field_count", None, detail);
        return parsed;
    }
    let mut fields = Vec::with_capacity(expected);
    for (i, bytes) in record.iter().enumerate() {
        match std::str::from_utf8(bytes) {
            Ok(text) => fields.push(text),
            Err(e) => {
                let column = kind.header().get(i).copied();
                parsed.refuse(Stage::Decode, "utf8", column, format!("not UTF-8: {e}"));
                return parsed;
            }
        }
    }
    let record = Fields {
        header: kind.header(),
        values: fields,
    };
    match kind {
        MoviesFile::MoviesMetadata => movie(&record, &mut parsed),
        MoviesFile::Credits => {
            let id = positive_id(record.get("id"));
            parsed.key = id;
            let mut fields = record.text(&[("id", "movie_id")]);
            let cast = children(&record, "cast", 1, id, CAST, &mut parsed);
            let crew = children(&record, "crew", 2, id, &[("id", "person_id")], &mut parsed);
            fields.insert("cast_count".into(), cast.map_or(Json::Null, Json::from));
            fields.insert("crew_count".into(), crew.map_or(Json::Null, Json::from));
            parsed.row(fields);
        }
        MoviesFile::Keywords => {
            let id = positive_id(record.get("id"));
            parsed.key = id;
            let mut fields = record.text(&[("id", "movie_id")]);
            let keywords = children(&record, "keywords", 1, id, KEYWORD, &mut parsed);
            fields.insert("keyword_count".into(), keywords.map_or(Json::Null, Json::from));
            parsed.row(fields);
        }
        MoviesFile::Links => {
            parsed.key = positive_id(record.get("movieId"));
            let imdb = record.get("imdbId").trim();
            // links.csv writes the IMDb number without its `tt`; movies.imdb_id has it.
            let imdb = if !imdb.is_empty() && imdb.bytes().all(|b| b.is_ascii_digit()) {
                format!("tt{imdb}")
            } else {
                imdb.to_string()
            };
            let mut fields = record.text(&[("movieId", "movie_id"), ("tmdbId", "tmdb_id")]);
            if !imdb.is_empty() {
                fields.insert("imdb_id".into(), Json::String(imdb));
            }
            parsed.row(fields);
        }
        MoviesFile::Ratings => {
            let mut fields = record.text(&[("userId", "user_id"), ("movieId", "movie_id"), ("rating", "rating")]);
            let stamp = record.get("timestamp").trim();
            // Unix seconds; anything else is passed on as text for the contract to refuse.
            let rated_at = stamp
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .map_or_else(|| stamp.to_string(), |t| t.to_rfc3339());
            if !rated_at.is_empty() {
                fields.insert("rated_at".into(), Json::String(rated_at));
            }
            parsed.row(fields);
        }
    }
    parsed
}

/// Renames of the keys of a Python dict item to the child table's columns; other keys are kept
/// and end in `_rescued`.
type Renames = &'static [(&'static str, &'static str)];

const CAST: Renames = &[("id", "person_id"), ("order", "cast_order")];

const GENRE: Renames = &[("id", "genre_id"), ("name", "genre_name")];
const COMPANY: Renames = &[("id", "company_id"), ("name", "company_name")];
const KEYWORD: Renames = &[("id", "keyword_id"), ("name", "keyword_name")];

struct Fields<'a> {
    header: &'static [&'static str],
    values: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> &'a str {
        self.header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| self.values.get(i).copied())
            .unwrap_or_default()
    }

    /// Non-empty text fields under their silver names (an empty field is a missing value).
    fn text(&self, names: &[(&str, &str)]) -> Map<String, Json> {
        let mut map = Map::new();
        for (from, to) in names {
            let value = self.get(from);
            if !value.is_empty() {
                map.insert(to.to_string(), Json::String(value.to_string()));
            }
        }
        map
    }

    /// The Python literal of a column (`None` for an empty field); a malformed one is a reason.
    fn literal(&self, column: &'static str, parsed: &mut Parsed) -> Option<Json> {
        let text = self.get(column);
        if text.trim().is_empty() {
            return None;
        }
        match pylit::parse(text) {
            Ok(value) => Some(value),
            Err(e) => {
                let detail = format!("malformed Python literal: {e}");
                parsed.refuse(Stage::Decode, "python_literal", Some(column), detail);
                None
            }
        }
    }
}

/// The id that children carry and records are de-duplicated by; anything else is refused by
/// the record's contract, and its children are not built (they would only repeat the reason).
fn positive_id(text: &str) -> Option<i64> {
    text.trim().parse().ok().filter(|id| *id > 0)
}

/// One child row per dict of a list column, with the movie id (none without a valid id: the
/// record is refused for its id anyway). Returns how many items the list has.
fn children(
    record: &Fields<'_>,
    column: &'static str,
    table: usize,
    movie_id: Option<i64>,
    renames: Renames,
    parsed: &mut Parsed,
) -> Option<usize> {
    let value = record.literal(column, parsed)?;
    let Json::Array(items) = value else {
        let detail = "expected a list of dicts".to_string();
        parsed.refuse(Stage::Schema, "shape", Some(column), detail);
        return None;
    };
    let count = items.len();
    for (index, item) in items.into_iter().enumerate() {
        let Json::Object(dict) = item else {
            let detail = format!("{column}[{index}] is not a dict");
            parsed.refuse(Stage::Schema, "shape", Some(column), detail);
            continue;
        };
        if let Some(id) = movie_id {
            parsed.rows.push(Candidate {
                table,
                fields: child_fields(dict, id, renames),
                label: Some((column, index)),
            });
        }
    }
    Some(count)
}

fn child_fields(mut dict: Map<String, Json>, movie_id: i64, renames: Renames) -> Map<String, Json> {
    let mut fields = Map::new();
    for (from, to) in renames {
        if let Some(v) = dict.remove(*from) {
            fields.insert(to.to_string(), v);
        }
    }
    fields.append(&mut dict);
    fields.insert("movie_id".into(), Json::from(movie_id));
    fields
}

/// Zero means unknown in this file: null in silver, with the `_unknown` flag set.
fn money(text: &str) -> (Option<Json>, bool) {
    let t = text.trim();
    if t.is_empty() || t.parse::<f64>().is_ok_and(|v| v == 0.0) {
        (None, true)
    } else {
        (Some(Json::String(t.to_string())), false)
    }
}

/// Text columns of movies_metadata.csv under their silver names. `homepage`, `poster_path` and
/// `tagline` are not silver columns: they end in `_rescued`, not dropped.
#[rustfmt::skip]
const MOVIE_TEXT: &[(&str, &str)] = &[
    ("id", "id"), ("imdb_id", "imdb_id"), ("title", "title"), ("original_title", "original_title"),
    ("original_language", "original_language"), ("overview", "overview"), ("release_date", "release_date"),
    ("runtime", "runtime"), ("popularity", "popularity"), ("vote_average", "vote_average"),
    ("vote_count", "vote_count"), ("status", "status"), ("adult", "adult"), ("video", "video"),
    ("homepage", "homepage"), ("poster_path", "poster_path"), ("tagline", "tagline"),
];

fn movie(record: &Fields<'_>, parsed: &mut Parsed) {
    let mut fields = record.text(MOVIE_TEXT);
    for (column, flag) in [("budget", "budget_unknown"), ("revenue", "revenue_unknown")] {
        let (value, unknown) = money(record.get(column));
        if let Some(v) = value {
            fields.insert(column.into(), v);
        }
        fields.insert(flag.into(), Json::Bool(unknown));
    }
    let id = positive_id(record.get("id"));
    parsed.key = id;
    match record.literal("belongs_to_collection", parsed) {
        None | Some(Json::Null) => {}
        Some(Json::Object(dict)) => {
            if let Some(cid) = dict.get("id") {
                fields.insert("collection_id".into(), cid.clone());
            }
            let mut row = child_fields(dict, 0, &[("id", "collection_id"), ("name", "collection_name")]);
            row.remove("movie_id");
            parsed.rows.push(Candidate {
                table: 5,
                fields: row,
                label: Some(("belongs_to_collection", 0)),
            });
        }
        Some(_) => parsed.refuse(
            Stage::Schema,
            "shape",
            Some("belongs_to_collection"),
            "expected a dict or None",
        ),
    }
    parsed.row(fields);
    children(record, "genres", 1, id, GENRE, parsed);
    children(record, "production_companies", 2, id, COMPANY, parsed);
    let countries: Renames = &[("name", "country_name")];
    children(record, "production_countries", 3, id, countries, parsed);
    let languages: Renames = &[("name", "language_name")];
    children(record, "spoken_languages", 4, id, languages, parsed);
}
