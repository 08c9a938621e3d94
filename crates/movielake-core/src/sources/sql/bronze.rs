//! Bronze for SQL pulls: each pull's rows exactly as the database rendered them, as gzipped
//! CSV with a header of the source's own column names, at
//! `bronze/sql/<table>/extract_date=…/run=<run>/part-00001.csv.gz`, beside a sidecar
//! (`_extract.json`) recording the query, its bounds and the row count. The run is named
//! after the ceiling and a hash of the rows, so a pull repeated after a crash lands at the
//! same names (create-only, already there = done) instead of writing the rows twice.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::Write;

use super::{Dialect, SqlTable};

/// The rows' file inside a run's folder.
pub const PART: &str = "part-00001.csv.gz";
/// The hard deletes a key comparison found, inside that run's folder.
pub const DELETES: &str = "deletes-00001.csv.gz";
/// The sidecar inside a run's folder.
pub const SIDECAR: &str = "_extract.json";

/// What the sidecar records about one extract: enough to rerun the same query by hand, and
/// never a connection string or a credential.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sidecar {
    pub source: String,
    pub table: String,
    pub dialect: String,
    /// `changes` (the rows changed in the window) or `keys` (a full key comparison).
    pub kind: String,
    pub query: String,
    /// The window read: inclusive lower bound, ceiling (see `Dialect::changes_sql`).
    pub from: Option<DateTime<Utc>>,
    pub to: DateTime<Utc>,
    /// A page after the first of its window: rows at `from` count after this key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_key: Option<String>,
    /// SQL Server: the row versions read, `[from, to)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_versions: Option<super::watermark::Versions>,
    pub rows: u64,
    pub columns: Vec<String>,
    /// The file's name in the run folder and its uncompressed size.
    pub file: String,
    pub csv_bytes: u64,
}

/// `bronze/sql/<table>/extract_date=<to's date>/run=<to>-<hash of the CSV>`.
pub fn run_dir(table: &str, to: DateTime<Utc>, csv: &[u8]) -> String {
    format!(
        "bronze/sql/{table}/extract_date={}/run={}-{:016x}",
        to.format("%Y-%m-%d"),
        to.format("%Y%m%dT%H%M%S%.6fZ"),
        xxhash_rust::xxh3::xxh3_64(csv)
    )
}

/// The header: the table's columns in its select order, then any other column the rows
/// carry (SQL Server's `row_version`), in the order first seen.
pub fn columns<'a>(table: &SqlTable, rows: impl IntoIterator<Item = &'a Map<String, Value>>) -> Vec<String> {
    let mut columns: Vec<String> = table.columns.iter().map(|c| c.to_string()).collect();
    for row in rows {
        for name in row.keys() {
            if !columns.iter().any(|c| c == name) {
                columns.push(name.clone());
            }
        }
    }
    columns
}

/// The rows as CSV with a header, in PostgreSQL `COPY … (FORMAT csv)`'s conventions so the
/// text reads back the same way: NULL is an empty unquoted field, an empty string is `""`,
/// a field with a comma, quote, CR or LF is quoted with quotes doubled. The `csv` crate
/// cannot tell NULL from an empty string when writing, hence the few lines here.
pub fn csv<'a>(columns: &[String], rows: impl IntoIterator<Item = &'a Map<String, Value>>) -> Vec<u8> {
    let mut out = Vec::new();
    let header: Vec<Option<String>> = columns.iter().map(|c| Some(c.clone())).collect();
    line(&mut out, &header);
    for row in rows {
        let fields: Vec<Option<String>> = columns.iter().map(|c| text(row.get(c))).collect();
        line(&mut out, &fields);
    }
    out
}

/// A JSON value in its text form: strings as they are, numbers and booleans as JSON writes
/// them, NULL (or a missing column) as no value.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn line(out: &mut Vec<u8>, fields: &[Option<String>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match field {
            None => {}
            Some(s) if s.is_empty() || s.contains([',', '"', '\r', '\n']) => {
                out.push(b'"');
                out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
                out.push(b'"');
            }
            Some(s) => out.extend_from_slice(s.as_bytes()),
        }
    }
    out.push(b'\n');
}

/// gzip with no name and no time in the header: the same rows give the same bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// The dialect's name in sidecars and messages.
pub fn dialect_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::SqlServer => "sqlserver",
        Dialect::Postgres => "postgres",
        Dialect::Sqlite => "sqlite",
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use serde_json::json;

    use super::*;
    use crate::sources::sql::USERS;

    fn row(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("an object literal"),
        }
    }

    #[test]
    fn nulls_empty_strings_quotes_and_newlines_read_back_as_written() {
        let rows = [
            row(
                json!({"user_id": "u1", "email": "a@b.c", "display_name": "Ann, \"the\" first\nline",
                       "country": "", "created_at": "2024-05-01T10:00:00+00:00", "updated_at": "2024-05-01T10:00:00+00:00",
                       "deleted_at": null}),
            ),
            row(
                json!({"user_id": "u2", "email": null, "display_name": "Bob", "country": "FR",
                       "created_at": "2024-05-01T10:00:00+00:00", "updated_at": "2024-05-01T10:00:01+00:00",
                       "deleted_at": null, "row_version": 2001}),
            ),
        ];
        let columns = columns(&USERS, &rows);
        assert_eq!(columns.last().map(String::as_str), Some("row_version"));
        let text = String::from_utf8(csv(&columns, &rows)).expect("utf-8");
        insta::assert_snapshot!(text, @r#"
        user_id,email,display_name,country,created_at,updated_at,deleted_at,row_version
        u1,a@b.c,"Ann, ""the"" first
        line","",2024-05-01T10:00:00+00:00,2024-05-01T10:00:00+00:00,,
        u2,,Bob,FR,2024-05-01T10:00:00+00:00,2024-05-01T10:00:01+00:00,,2001
        "#);
        // An independent reader sees the same fields.
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(&records[0][2], "Ann, \"the\" first\nline");
        assert_eq!(&records[1][7], "2001");
    }

    #[test]
    fn the_same_rows_give_the_same_bytes_and_name() {
        let rows = [row(json!({"user_id": "u1"}))];
        let text = csv(&columns(&USERS, &rows), &rows);
        let (a, b) = (gzip(&text), gzip(&text));
        assert_eq!(a, b);
        let mut back = String::new();
        flate2::read::GzDecoder::new(a.as_slice())
            .read_to_string(&mut back)
            .expect("gunzip");
        assert_eq!(back.as_bytes(), text.as_slice());
        let at = DateTime::parse_from_rfc3339("2024-05-01T10:00:25.5Z")
            .expect("time")
            .to_utc();
        let dir = run_dir("users", at, &text);
        assert!(
            dir.starts_with("bronze/sql/users/extract_date=2024-05-01/run=20240501T100025.500000Z-"),
            "{dir}"
        );
        assert_eq!(dir, run_dir("users", at, &text));
        assert_ne!(dir, run_dir("users", at, b"other"));
    }
}
