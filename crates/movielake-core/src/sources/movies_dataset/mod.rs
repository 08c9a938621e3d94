//! The Movies Dataset (Kaggle, `rounakbanik/the-movies-dataset`) CSV files into silver tables.
//!
//! Files are recognised by their header and streamed record by record (RFC 4180, quoted
//! multi-line fields) from any `io::Read`: accepted rows go to [`Outputs`] in batches of
//! [`BATCH_ROWS`], so memory stays bounded even for the 26M rows of `ratings.csv`.
//!
//! Every CSV record ends in silver, in quarantine (stage `decode` for a wrong field count, bad
//! UTF-8 or a malformed Python literal; `schema`/`rule` from the contracts; `dedupe` for an id
//! seen before with a different body) or is an exact repeat (byte-identical record) that is
//! dropped and counted in `duplicates_dropped`. Each file has a record-level table, one row per
//! CSV record (the first of [`MoviesFile::contracts`]: movies, credits, keywords, links,
//! ratings), whose counts balance: records in = silver + quarantined + duplicates. A record's
//! child rows (genres, cast, keywords, ...) are written only when the whole record is accepted,
//! and count as silver of their own table (with no records in).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use crate::contract::validate::{Reason, Rejection, Stage, Verdict};
use crate::contract::value::Value;
use crate::contract::{Contract, ContractSet};
use crate::output::files::{FileError, Outputs, PartSink};
use crate::routing::ledger::body_hash;
use crate::routing::quarantine::SourcePointer;
use crate::routing::route::{Accepted, SourceRecord, quarantine, record_key_hash};

pub mod pylit;
mod record;
pub mod sample;

use record::{parse_record, relabel};

/// Accepted rows buffered per table before they are handed to [`Outputs`].
pub const BATCH_ROWS: usize = 64 * 1024;

/// The files of The Movies Dataset this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoviesFile {
    MoviesMetadata,
    Credits,
    Keywords,
    /// `links.csv` and `links_small.csv`.
    Links,
    /// `ratings.csv` and `ratings_small.csv`.
    Ratings,
}

#[rustfmt::skip]
const MOVIES_HEADER: &[&str] = &[
    "adult", "belongs_to_collection", "budget", "genres", "homepage", "id", "imdb_id", "original_language",
    "original_title", "overview", "popularity", "poster_path", "production_companies", "production_countries",
    "release_date", "revenue", "runtime", "spoken_languages", "status", "tagline", "title", "video",
    "vote_average", "vote_count",
];

impl MoviesFile {
    pub const ALL: [MoviesFile; 5] = [
        MoviesFile::MoviesMetadata,
        MoviesFile::Credits,
        MoviesFile::Keywords,
        MoviesFile::Links,
        MoviesFile::Ratings,
    ];

    /// The file's name in the Kaggle download, without `.csv`.
    pub fn name(self) -> &'static str {
        match self {
            MoviesFile::MoviesMetadata => "movies_metadata",
            MoviesFile::Credits => "credits",
            MoviesFile::Keywords => "keywords",
            MoviesFile::Links => "links",
            MoviesFile::Ratings => "ratings",
        }
    }

    /// The column names of the file's header line, in order.
    pub fn header(self) -> &'static [&'static str] {
        match self {
            MoviesFile::MoviesMetadata => MOVIES_HEADER,
            MoviesFile::Credits => &["cast", "crew", "id"],
            MoviesFile::Keywords => &["id", "keywords"],
            MoviesFile::Links => &["movieId", "imdbId", "tmdbId"],
            MoviesFile::Ratings => &["userId", "movieId", "rating", "timestamp"],
        }
    }

    /// The contracts the file writes; the first one is record-level (quarantine and counts).
    pub fn contracts(self) -> &'static [&'static str] {
        match self {
            MoviesFile::MoviesMetadata => &[
                "movies_dataset_movies",
                "movies_dataset_movie_genres",
                "movies_dataset_movie_production_companies",
                "movies_dataset_movie_production_countries",
                "movies_dataset_movie_spoken_languages",
                "movies_dataset_collections",
            ],
            MoviesFile::Credits => &[
                "movies_dataset_credits",
                "movies_dataset_movie_cast",
                "movies_dataset_movie_crew",
            ],
            MoviesFile::Keywords => &["movies_dataset_keywords", "movies_dataset_movie_keywords"],
            MoviesFile::Links => &["movies_dataset_links"],
            MoviesFile::Ratings => &["movies_dataset_ratings"],
        }
    }
}

/// Which file a header line is (the first line of the file; bytes after it are ignored).
/// Column names may be quoted; a UTF-8 byte-order mark and `\r\n` are accepted.
pub fn recognise(header: &[u8]) -> Option<MoviesFile> {
    let line = header.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let names: Vec<&[u8]> = line
        .split(|&b| b == b',')
        .map(|n| n.strip_prefix(b"\"").and_then(|n| n.strip_suffix(b"\"")).unwrap_or(n))
        .collect();
    MoviesFile::ALL.into_iter().find(|kind| {
        kind.header().len() == names.len() && kind.header().iter().zip(&names).all(|(h, n)| h.as_bytes() == *n)
    })
}

/// Converts one file of `kind` into silver and quarantine parts of `out`. Fails only when the
/// input cannot be read, is not this file (its header differs: nothing is written), a contract
/// is missing, or an output cannot be written; bad records never fail the file.
pub fn convert<R: Read, S: PartSink>(
    kind: MoviesFile,
    input: R,
    contracts: &ContractSet,
    out: &mut Outputs<S>,
) -> Result<(), FileError> {
    let object = out.context().object.clone();
    let mut tables = Vec::new();
    for name in kind.contracts() {
        let contract = contracts
            .get(name)
            .ok_or_else(|| FileError::MissingContract(name.to_string()))?;
        // A child table with a key (collections) keeps one row per key within the file.
        let unique = (!tables.is_empty() && !contract.key.is_empty()).then(HashSet::new);
        tables.push(Table {
            contract,
            rows: Vec::new(),
            unique,
        });
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(64 * 1024)
        .from_reader(Tee::new(input));
    let read_error = |e: csv::Error| FileError::Read {
        object: object.clone(),
        source: match e.into_kind() {
            csv::ErrorKind::Io(e) => e,
            other => io::Error::other(format!("{other:?}")),
        },
    };

    let mut record = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut record).map_err(read_error)? {
        return Err(unrecognised(&object, kind, "the file is empty (no header line)".into()));
    }
    // A byte-order mark is not part of the first name.
    let found: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim_start_matches('\u{feff}').to_string())
        .collect();
    if found != kind.header() {
        return Err(unrecognised(
            &object,
            kind,
            format!("the header is {}", found.join(",")),
        ));
    }

    let metadata = [("snapshot_date", Value::Date(out.context().ingest_date))];
    let record_contract = tables[0].contract;
    let key_column = record_contract
        .key
        .first()
        .and_then(|&i| record_contract.columns.get(i))
        .map(|c| c.name.as_str());
    let mut seen: HashMap<i64, (u64, SourcePointer)> = HashMap::new();
    loop {
        // Where the reader stands: the end of the previous record, the start of this one.
        let start = reader.position().byte();
        if !reader.read_byte_record(&mut record).map_err(read_error)? {
            break;
        }
        let end = reader.position().byte();
        let position = record.position().cloned().unwrap_or_else(csv::Position::new);
        let (raw, leading_lines) = raw_text(reader.get_ref().slice(start, end));
        reader.get_mut().forget_before(end);
        let pointer = SourcePointer {
            line: Some(position.line() + leading_lines),
            row: Some(position.record()),
            ..SourcePointer::line(&object, 0)
        };
        out.counts_mut(record_contract).records_in += 1;

        let parsed = parse_record(kind, &record);
        let mut reasons = parsed.reasons;
        let mut rows = Vec::with_capacity(parsed.rows.len());
        for candidate in parsed.rows {
            match tables[candidate.table]
                .contract
                .check_record(candidate.fields, &metadata)
            {
                Verdict::Valid(row) => rows.push((candidate.table, row)),
                Verdict::Rejected(r) => reasons.extend(
                    r.reasons
                        .into_iter()
                        .map(|reason| (r.stage, relabel(reason, &candidate.label))),
                ),
            }
        }
        let hash = body_hash(&raw);
        let refuse = |reasons: Vec<(Stage, Reason)>, out: &mut Outputs<S>| {
            let stage = reasons.iter().map(|(s, _)| *s).min().unwrap_or(Stage::Decode);
            let rejection = Rejection {
                stage,
                reasons: reasons.into_iter().map(|(_, r)| r).collect(),
            };
            let source = SourceRecord {
                raw: raw.clone(),
                fields: None,
                metadata: Vec::new(),
                pointer: pointer.clone(),
            };
            out.quarantine(
                record_contract,
                &quarantine(record_contract, &out.context().run, source, rejection),
            )
        };
        if !reasons.is_empty() {
            refuse(reasons, out)?;
            continue;
        }
        if let Some(id) = parsed.key {
            if let Some((first_hash, first)) = seen.get(&id) {
                if *first_hash == hash {
                    out.counts_mut(record_contract).duplicates_dropped += 1;
                } else {
                    let detail = format!("same id {id} as {first} but a different body");
                    refuse(
                        vec![(Stage::Dedupe, Reason::new("duplicate_key", key_column, detail))],
                        out,
                    )?;
                }
                continue;
            }
            seen.insert(id, (hash, pointer.clone()));
        }
        for (t, row) in rows {
            let table = &mut tables[t];
            let key = record_key_hash(table.contract, &row.values);
            if let (Some(unique), Some(key)) = (table.unique.as_mut(), key)
                && !unique.insert(key)
            {
                continue;
            }
            table.rows.push(Accepted {
                row,
                pointer: pointer.clone(),
                body_hash: hash,
                key_hash: key,
            });
            if table.rows.len() >= BATCH_ROWS {
                out.accepted(table.contract, &table.rows)?;
                table.rows.clear();
            }
        }
    }
    for table in &mut tables {
        out.accepted(table.contract, &table.rows)?;
        table.rows.clear();
    }
    Ok(())
}

fn unrecognised(object: &str, kind: MoviesFile, found: String) -> FileError {
    FileError::Unrecognised {
        object: object.to_string(),
        message: format!(
            "not The Movies Dataset {}.csv: expected the header {}, but {found}",
            kind.name(),
            kind.header().join(",")
        ),
    }
}

struct Table<'c> {
    contract: &'c Contract,
    rows: Vec<Accepted>,
    unique: Option<HashSet<u128>>,
}

/// The record's text without the line break that ended the previous record or this one, and
/// how many line breaks were skipped before it (blank lines, the `\n` of a `\r\n`).
fn raw_text(bytes: &[u8]) -> (String, u64) {
    let body_start = bytes
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .unwrap_or(bytes.len());
    let leading = bytes[..body_start].iter().filter(|&&b| b == b'\n').count() as u64;
    let mut body = &bytes[body_start..];
    while let [rest @ .., b'\n' | b'\r'] = body {
        body = rest;
    }
    (String::from_utf8_lossy(body).into_owned(), leading)
}

/// Hands bytes through to the CSV reader and keeps those not yet claimed by a record, so a
/// quarantined record keeps its exact text. Holds at most the reader's buffer plus one record.
struct Tee<R> {
    inner: R,
    kept: Vec<u8>,
    /// Stream offset of `kept[0]`.
    base: u64,
    /// Bytes at the front of `kept` that are no longer needed.
    dead: usize,
}

impl<R> Tee<R> {
    fn new(inner: R) -> Self {
        Tee {
            inner,
            kept: Vec::new(),
            base: 0,
            dead: 0,
        }
    }

    fn slice(&self, start: u64, end: u64) -> &[u8] {
        let from = start.saturating_sub(self.base) as usize;
        let to = end.saturating_sub(self.base) as usize;
        self.kept.get(from..to).unwrap_or_default()
    }

    fn forget_before(&mut self, offset: u64) {
        self.dead = (offset.saturating_sub(self.base) as usize).min(self.kept.len());
        // Compact only now and then: draining after every record would move the buffer's bytes
        // once per record.
        if self.dead >= 256 * 1024 || self.dead == self.kept.len() {
            self.kept.drain(..self.dead);
            self.base += self.dead as u64;
            self.dead = 0;
        }
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.kept.extend_from_slice(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}
