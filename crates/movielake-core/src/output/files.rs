//! The output side of file sources (IMDb TSV, The Movies Dataset CSV): silver Parquet parts and
//! quarantine JSON lines, written as the input streams through, never the whole file at once.
//!
//! A converter reads its input (any `io::Read`) and hands accepted rows or Arrow batches and
//! quarantine records to [`Outputs`]. `Outputs` encodes row group by row group into parts of at
//! most `rows_per_part` rows and streams the bytes into a [`PartSink`] (a file, a blob upload in
//! blocks): memory is bounded by one row group per open table, whatever the input size.
//!
//! Names are deterministic (`part-<id of the bronze object>-<n>`), so converting the same bronze
//! object again writes the same names with the same bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};

use arrow_array::RecordBatch;
use chrono::NaiveDate;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::contract::Contract;
use crate::contract::value::Value;
use crate::output::column_writer::ColumnParallelWriter;
use crate::output::manifest::{Counts, Output, OutputKind};
use crate::output::naming::{quarantine_part, silver_part, stable_id};
use crate::output::silver::{
    EncodeError, Lineage, RUN_ID, SOURCE_OBJECT, accepted_batch, contract_properties, partition, silver_schema,
    writer_properties,
};
use crate::routing::quarantine::QuarantineRecord;
use crate::routing::route::{Accepted, RunContext};

/// Rows per row group. Larger groups let the dictionary of a high-cardinality column give up
/// early (cheaper than re-interning from scratch every group); the encoded pages are small, so
/// memory stays well under 100 MB (measured in BENCHMARKS.md).
pub const ROWS_PER_ROW_GROUP: usize = 512 * 1024;
/// Rows per part: large outputs split into parts that readers fetch in parallel.
pub const ROWS_PER_PART: u64 = 2 * 1024 * 1024;
/// Threads encoding a part's columns by default: the Function plans and the development machines
/// have two cores, and encoding is most of a large file's CPU.
pub const ENCODING_THREADS: usize = 2;

/// Where the bytes of output objects go. `open` starts an object, bytes are written to the part
/// as they are produced, `commit` makes it visible (a rename, a block-list commit).
pub trait PartSink {
    type Part: Write + Send;
    fn open(&mut self, path: &str) -> io::Result<Self::Part>;
    fn commit(&mut self, path: &str, part: Self::Part) -> io::Result<()>;
}

/// A [`PartSink`] that keeps every object in memory (tests, small inputs).
#[derive(Debug, Default)]
pub struct MemorySink {
    pub objects: BTreeMap<String, Vec<u8>>,
}

impl PartSink for MemorySink {
    type Part = Vec<u8>;
    fn open(&mut self, _path: &str) -> io::Result<Vec<u8>> {
        Ok(Vec::new())
    }
    fn commit(&mut self, path: &str, part: Vec<u8>) -> io::Result<()> {
        self.objects.insert(path.to_string(), part);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The input cannot be read as this kind of file at all (no header, unknown header): nothing
    /// was written; the bronze object stays for a person to look at.
    #[error("{object}: {message}")]
    Unrecognised { object: String, message: String },
    /// Reading the input failed (storage, decompression): retry.
    #[error("{object}: reading failed: {source}")]
    Read { object: String, source: io::Error },
    /// Writing an output failed (storage): retry; names are deterministic.
    #[error("{path}: writing failed: {source}")]
    Write { path: String, source: io::Error },
    #[error("{path}: {source}")]
    Encode { path: String, source: EncodeError },
    #[error("contract '{0}' is not loaded; add contracts/{0}.toml")]
    MissingContract(String),
}

/// What the conversion of one file knows about itself.
#[derive(Debug, Clone)]
pub struct FileContext {
    /// The bronze object being converted (lineage, quarantine pointers, part names).
    pub object: String,
    /// The bronze object's ingest date: quarantine date and snapshot partition.
    pub ingest_date: NaiveDate,
    pub run: RunContext,
    /// Names this conversion's parts apart from an earlier conversion of the same object, whose
    /// parts a table may still list until the replace commits (empty: names from the object
    /// alone).
    pub attempt: String,
}

impl FileContext {
    fn part_id(&self, n: u32) -> String {
        if self.attempt.is_empty() {
            format!("{}-{n:05}", stable_id(&self.object))
        } else {
            format!("{}-{}-{n:05}", stable_id(&self.object), self.attempt)
        }
    }
}

struct OpenPart<W: Write + Send> {
    path: String,
    rows: u64,
    writer: ColumnParallelWriter<CountingWriter<W>>,
}

struct TableParts<W: Write + Send> {
    open: Option<OpenPart<W>>,
    next_part: u32,
}

struct QuarantineParts<W: Write + Send> {
    open: Option<(String, u64, CountingWriter<W>)>,
    next_part: u32,
}

/// What [`Outputs::finish`] gives back: the sink, the outputs committed (in order) and the
/// counts per contract name.
pub type Finished<S> = (S, Vec<Output>, BTreeMap<String, Counts>);

/// Streams silver and quarantine outputs of one file conversion into a [`PartSink`].
pub struct Outputs<S: PartSink> {
    sink: S,
    ctx: FileContext,
    rows_per_part: u64,
    properties: WriterProperties,
    /// Threads encoding the columns of a part.
    threads: usize,
    /// By silver directory (table + partition values).
    tables: BTreeMap<String, TableParts<S::Part>>,
    quarantine: BTreeMap<String, QuarantineParts<S::Part>>,
    written: Vec<Output>,
    /// Per contract name.
    counts: BTreeMap<String, Counts>,
}

impl<S: PartSink> Outputs<S> {
    pub fn new(sink: S, ctx: FileContext) -> Self {
        Self::with_part_size(sink, ctx, ROWS_PER_PART)
    }

    pub fn with_part_size(sink: S, ctx: FileContext, rows_per_part: u64) -> Self {
        let mut properties =
            WriterProperties::into_builder(writer_properties()).set_max_row_group_row_count(Some(ROWS_PER_ROW_GROUP));
        // Lineage strings are the same on every row of a file: min/max statistics on them cost a
        // comparison per row and can never prune anything the path does not already.
        for column in [SOURCE_OBJECT, RUN_ID] {
            properties = properties.set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
        }
        let properties = properties.build();
        Outputs {
            sink,
            ctx,
            rows_per_part: rows_per_part.max(1),
            properties,
            threads: ENCODING_THREADS,
            tables: BTreeMap::new(),
            quarantine: BTreeMap::new(),
            written: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Threads that encode the columns of a part (default [`ENCODING_THREADS`]; 1 encodes on the
    /// calling thread only).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    pub fn context(&self) -> &FileContext {
        &self.ctx
    }

    /// Counts of one contract, for converters that count what `Outputs` does not see (input
    /// records, exact duplicates dropped).
    pub fn counts_mut(&mut self, contract: &Contract) -> &mut Counts {
        self.counts.entry(contract.name.clone()).or_default()
    }

    /// Accepted rows (from [`Contract::check_record`]), grouped by the contract's partitions.
    /// Counts them as silver; the caller counts `records_in`.
    pub fn accepted(&mut self, contract: &Contract, rows: &[Accepted]) -> Result<(), FileError> {
        let lineage = Lineage {
            ingested_at: self.ctx.run.ingested_at,
            run_id: &self.ctx.run.run_id,
            dimension: None,
        };
        let mut batches = Vec::new();
        for (values, group) in partition(contract, rows).into_values() {
            let batch = accepted_batch(contract, &group, &lineage).map_err(|source| FileError::Encode {
                path: format!("silver/{}/{}", contract.source, contract.table),
                source,
            })?;
            batches.push((values, batch));
        }
        for (values, batch) in batches {
            self.batch(contract, &values, &batch)?;
        }
        Ok(())
    }

    /// A batch already in the contract's silver schema ([`silver_schema`]) for one partition.
    pub fn batch(&mut self, contract: &Contract, partition: &[Value], batch: &RecordBatch) -> Result<(), FileError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.counts_mut(contract).silver += batch.num_rows() as u64;
        let directory = silver_part(contract, partition, "");
        let mut offset = 0;
        while offset < batch.num_rows() {
            let parts = self.tables.entry(directory.clone()).or_insert(TableParts {
                open: None,
                next_part: 0,
            });
            if parts.open.is_none() {
                let path = silver_part(contract, partition, &self.ctx.part_id(parts.next_part));
                parts.next_part += 1;
                let part = self.sink.open(&path).map_err(|source| FileError::Write {
                    path: path.clone(),
                    source,
                })?;
                let room = (self.rows_per_part as usize).min(batch.num_rows() - offset);
                let writer = ColumnParallelWriter::try_new(
                    CountingWriter::new(part),
                    silver_schema(contract),
                    contract_properties(self.properties.clone(), contract),
                    &batch.slice(offset, room),
                    self.threads,
                )
                .map_err(|e| FileError::Encode {
                    path: path.clone(),
                    source: e.into(),
                })?;
                parts.open = Some(OpenPart { path, rows: 0, writer });
            }
            let Some(open) = parts.open.as_mut() else { continue };
            let room = (self.rows_per_part - open.rows) as usize;
            let take = room.min(batch.num_rows() - offset);
            open.writer
                .write(&batch.slice(offset, take))
                .map_err(|e| FileError::Encode {
                    path: open.path.clone(),
                    source: e.into(),
                })?;
            open.rows += take as u64;
            offset += take;
            if open.rows >= self.rows_per_part
                && let Some(full) = parts.open.take()
            {
                close_parquet(&mut self.sink, &mut self.written, full)?;
            }
        }
        Ok(())
    }

    /// One quarantine record (counted, with its rules).
    pub fn quarantine(&mut self, contract: &Contract, record: &QuarantineRecord) -> Result<(), FileError> {
        let counts = self.counts_mut(contract);
        counts.quarantined += 1;
        let mut rules: Vec<&str> = record.reasons.iter().map(|r| r.rule.as_str()).collect();
        rules.sort_unstable();
        rules.dedup();
        for rule in rules {
            *counts.quarantined_by_rule.entry(rule.to_string()).or_insert(0) += 1;
        }
        let directory = quarantine_part(contract, self.ctx.ingest_date, "");
        let parts = self.quarantine.entry(directory).or_insert(QuarantineParts {
            open: None,
            next_part: 0,
        });
        if parts.open.is_none() {
            let path = quarantine_part(contract, self.ctx.ingest_date, &self.ctx.part_id(parts.next_part));
            parts.next_part += 1;
            let part = self.sink.open(&path).map_err(|source| FileError::Write {
                path: path.clone(),
                source,
            })?;
            parts.open = Some((path, 0, CountingWriter::new(part)));
        }
        if let Some((path, rows, writer)) = parts.open.as_mut() {
            let mut line = serde_json::to_vec(record).map_err(|e| FileError::Write {
                path: path.clone(),
                source: e.into(),
            })?;
            line.push(b'\n');
            writer.write_all(&line).map_err(|source| FileError::Write {
                path: path.clone(),
                source,
            })?;
            *rows += 1;
            if *rows >= self.rows_per_part
                && let Some((path, rows, writer)) = parts.open.take()
            {
                close_lines(&mut self.sink, &mut self.written, path, rows, writer)?;
            }
        }
        Ok(())
    }

    /// Closes every open part and commits it. Returns the sink, the outputs written (in the order
    /// they were committed) and the counts per contract name.
    pub fn finish(mut self) -> Result<Finished<S>, FileError> {
        for (_, parts) in std::mem::take(&mut self.tables) {
            if let Some(open) = parts.open {
                close_parquet(&mut self.sink, &mut self.written, open)?;
            }
        }
        for (_, parts) in std::mem::take(&mut self.quarantine) {
            if let Some((path, rows, writer)) = parts.open {
                close_lines(&mut self.sink, &mut self.written, path, rows, writer)?;
            }
        }
        Ok((self.sink, self.written, self.counts))
    }
}

fn close_parquet<S: PartSink>(
    sink: &mut S,
    written: &mut Vec<Output>,
    open: OpenPart<S::Part>,
) -> Result<(), FileError> {
    let OpenPart { path, rows, writer } = open;
    let counting = writer.into_inner().map_err(|e| FileError::Encode {
        path: path.clone(),
        source: e.into(),
    })?;
    let bytes = counting.written;
    sink.commit(&path, counting.inner).map_err(|source| FileError::Write {
        path: path.clone(),
        source,
    })?;
    written.push(Output {
        path,
        kind: OutputKind::Silver,
        rows: Some(rows),
        bytes,
    });
    Ok(())
}

fn close_lines<S: PartSink>(
    sink: &mut S,
    written: &mut Vec<Output>,
    path: String,
    rows: u64,
    mut writer: CountingWriter<S::Part>,
) -> Result<(), FileError> {
    writer.flush().map_err(|source| FileError::Write {
        path: path.clone(),
        source,
    })?;
    let bytes = writer.written;
    sink.commit(&path, writer.inner).map_err(|source| FileError::Write {
        path: path.clone(),
        source,
    })?;
    written.push(Output {
        path,
        kind: OutputKind::Quarantine,
        rows: Some(rows),
        bytes,
    });
    Ok(())
}

/// Counts the bytes of a part for the manifest.
struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W> CountingWriter<W> {
    fn new(inner: W) -> Self {
        CountingWriter { inner, written: 0 }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
