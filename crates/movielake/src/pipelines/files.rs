//! File sources (IMDb TSV, The Movies Dataset CSV): land a file in bronze, and convert a bronze
//! file into silver and quarantine, streamed end to end.
//!
//! The same conversion runs for `movielake ingest <file>` and for a BlobCreated event on an
//! uploaded file. It reads the bronze object range by range and streams each output part into
//! the lake while encoding it, so a 1 GB file never sits in memory. Names and bytes depend only
//! on the bronze object (run id, `_ingested_at` = its ingest date), so converting it again
//! rewrites the same objects.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use movielake_core::ContractSet;
use movielake_core::output::files::{FileContext, FileError, Outputs};
use movielake_core::output::manifest::{Counts, Output, OutputKind, RunManifest};
use movielake_core::output::naming::{silver_table, stable_id};
use movielake_core::output::silver::partition_columns;
use movielake_core::routing::route::RunContext;
use movielake_core::sources::imdb::{self, ImdbFile};
use movielake_core::sources::movies_dataset::{self, MoviesFile};
use tokio::io::AsyncReadExt as _;

use super::silver_tables::{self, SilverError, TableVersions};
use crate::lake::blocking::{CHUNK, LakeReader, LakeSink, StorageFailure, lake_error};
use crate::lake::{Lake, LakeError, PutMode};
use crate::tables::{Replace, Tables};

/// What a file is, by its header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Imdb(&'static ImdbFile),
    MoviesDataset(MoviesFile),
}

impl FileKind {
    /// Recognises a file by its first line (after gzip decompression).
    pub fn of_header(line: &[u8]) -> Option<FileKind> {
        imdb::recognise(line)
            .map(FileKind::Imdb)
            .or_else(|| movies_dataset::recognise(line).map(FileKind::MoviesDataset))
    }

    /// `bronze/imdb/<file>/ingest_date=…/<name>` or `bronze/movies_dataset/ingest_date=…/<name>`.
    pub fn bronze_path(self, date: NaiveDate, name: &str) -> String {
        let date = date.format("%Y-%m-%d");
        match self {
            FileKind::Imdb(file) => format!("bronze/imdb/{}/ingest_date={date}/{name}", file.name),
            FileKind::MoviesDataset(_) => format!("bronze/movies_dataset/ingest_date={date}/{name}"),
        }
    }

    /// The contracts a file of this kind writes.
    fn contracts(self) -> &'static [&'static str] {
        match self {
            FileKind::Imdb(file) => std::slice::from_ref(&file.contract),
            FileKind::MoviesDataset(file) => file.contracts(),
        }
    }

    fn pipeline(self) -> &'static str {
        match self {
            FileKind::Imdb(_) => "imdb",
            FileKind::MoviesDataset(_) => "movies_dataset",
        }
    }

    fn describe(self) -> String {
        match self {
            FileKind::Imdb(file) => format!("IMDb {}", file.name),
            FileKind::MoviesDataset(file) => format!("The Movies Dataset {}.csv", file.name()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{path}: {message}")]
    Local { path: String, message: String },
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The file is not one we know, or not convertible under the loaded contracts; retrying does
    /// not help.
    #[error("{0}")]
    Unusable(String),
    #[error("conversion task failed: {0}")]
    Task(String),
    /// The conversion failed for a reason that is not the file's: retry (or fix and retry).
    #[error("{0}")]
    Failed(String),
}

impl From<FileError> for FilesError {
    fn from(e: FileError) -> Self {
        match &e {
            FileError::Read { source, .. } | FileError::Write { source, .. } => match lake_error(source) {
                Some(lake) => FilesError::Lake(lake.clone()),
                None => FilesError::Failed(e.to_string()),
            },
            // Only a file that is not what its path says is hopeless; anything else (a contract
            // not deployed yet, an encoder failure) fails so that the event is retried or
            // dead-lettered, not dropped.
            FileError::Unrecognised { .. } => FilesError::Unusable(e.to_string()),
            FileError::Encode { .. } | FileError::MissingContract(_) => FilesError::Failed(e.to_string()),
        }
    }
}

/// A file landed in bronze.
#[derive(Debug, Clone)]
pub struct Landed {
    pub path: String,
    pub kind: FileKind,
    pub bytes: u64,
    /// It was there already (a repeated ingest): the bronze object was kept as it was.
    pub already: bool,
}

/// Recognises a local file by its header and streams it, byte for byte, into bronze
/// (create-only). Landing the same file again the same day is a no-op.
pub async fn land_local_file(lake: &dyn Lake, file: &Path, date: NaiveDate) -> Result<Landed, FilesError> {
    let shown = file.display().to_string();
    let local = |message: String| FilesError::Local {
        path: shown.clone(),
        message,
    };
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| is_safe_name(n))
        .ok_or_else(|| local("the file name must be letters, digits, '.', '-' or '_'".into()))?
        .to_string();
    let kind = {
        let path = file.to_path_buf();
        tokio::task::spawn_blocking(move || header_of(std::fs::File::open(path)?))
            .await
            .map_err(|e| FilesError::Task(e.to_string()))?
            .map_err(|e| local(format!("cannot read: {e}")))?
    };
    let kind = kind.ok_or_else(|| {
        local("not an IMDb dataset file (title.basics, name.basics, ...) nor a file of The Movies Dataset (movies_metadata.csv, credits.csv, ...): its header line is none of theirs".into())
    })?;
    let path = kind.bronze_path(date, &name);
    let size = tokio::fs::metadata(file)
        .await
        .map_err(|e| local(format!("cannot read: {e}")))?
        .len();
    let reader = tokio::fs::File::open(file)
        .await
        .map_err(|e| local(format!("cannot read: {e}")))?;
    let chunks = file_chunks(reader);
    match lake.put_stream(&path, chunks, PutMode::Create).await {
        Ok(_) => Ok(Landed {
            path,
            kind,
            bytes: size,
            already: false,
        }),
        Err(LakeError::AlreadyExists { .. }) => {
            let existing = lake.list(&path).await?.into_iter().find(|m| m.path == path);
            let same = match existing {
                Some(meta) if meta.size == size => same_bytes(lake, &path, file, size).await?,
                _ => false,
            };
            match same {
                true => Ok(Landed {
                    path,
                    kind,
                    bytes: size,
                    already: true,
                }),
                false => Err(FilesError::Unusable(format!(
                    "{path} already holds another file of that name landed today; bronze is never overwritten \
                     (rename the file or ingest it with another --date)"
                ))),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the bronze object holds exactly the local file's bytes (compared range by range, so
/// a same-sized corrected file is not taken for the one already landed).
async fn same_bytes(lake: &dyn Lake, path: &str, file: &Path, size: u64) -> Result<bool, FilesError> {
    let local = |e: std::io::Error| FilesError::Local {
        path: file.display().to_string(),
        message: format!("cannot read: {e}"),
    };
    let mut reader = tokio::fs::File::open(file).await.map_err(local)?;
    let mut offset = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while offset < size {
        let want = CHUNK.min((size - offset) as usize);
        reader.read_exact(&mut buf[..want]).await.map_err(local)?;
        let stored = lake.get_range(path, offset..offset + want as u64).await?;
        if stored.as_ref() != &buf[..want] {
            return Ok(false);
        }
        offset += want as u64;
    }
    Ok(true)
}

/// A local file, chunk by chunk, as a lake write body (a read error aborts the write).
fn file_chunks(file: tokio::fs::File) -> crate::lake::Chunks {
    use futures::StreamExt as _;
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Some((Err(e), None)),
            }
        }
        buf.truncate(filled);
        (filled > 0).then(|| (Ok(Bytes::from(buf)), Some(file)))
    })
    .boxed()
}

fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The kind of a file by its first line (gzip is looked through).
fn header_of(input: impl Read) -> std::io::Result<Option<FileKind>> {
    Ok(FileKind::of_header(&first_line(input)?))
}

/// The first line of a file, gzip looked through, at most 64 KiB of it.
fn first_line(input: impl Read) -> std::io::Result<Vec<u8>> {
    let mut reader = imdb::decompressed(input)?;
    let mut line = Vec::new();
    // Sniffing a bronze object reads only its first range, which may end inside the gzip
    // stream: once the header line is out, that error does not matter.
    if let Err(e) = reader.by_ref().take(64 * 1024).read_until(b'\n', &mut line)
        && line.is_empty()
    {
        return Err(e);
    }
    Ok(line)
}

/// What a conversion did.
#[derive(Debug, Clone)]
pub struct FileConverted {
    pub manifest_path: String,
    pub kind: FileKind,
    /// Counts of the record-level table (one record per input line or CSV record).
    pub counts: Counts,
    pub outputs: Vec<Output>,
    /// Table → the version its replace committed.
    pub tables: TableVersions,
    pub logs: Vec<String>,
}

/// The ingest date of a bronze file path (`…/ingest_date=YYYY-MM-DD/…`).
pub fn ingest_date_of(path: &str) -> Option<NaiveDate> {
    path.split('/')
        .find_map(|segment| segment.strip_prefix("ingest_date="))
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}

/// Converts one bronze file into silver and quarantine, then writes the run manifest.
pub async fn convert(
    lake: Arc<dyn Lake>,
    tables: Arc<Tables>,
    contracts: Arc<ContractSet>,
    bronze: &str,
    progress: Arc<dyn Fn(&str) + Send + Sync>,
) -> Result<FileConverted, FilesError> {
    let (started_at, clock) = (Utc::now(), Instant::now());
    let date = ingest_date_of(bronze).ok_or_else(|| {
        FilesError::Unusable(format!(
            "{bronze}: bronze files must be under …/ingest_date=YYYY-MM-DD/; not converted"
        ))
    })?;
    let run_id = stable_id(bronze);
    let ctx = FileContext {
        object: bronze.to_string(),
        ingest_date: date,
        run: RunContext {
            run_id: run_id.clone(),
            ingested_at: date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
        },
        // A conversion of the same object that is still listed by the table must keep its
        // files until the replace below commits: this one writes other names.
        attempt: format!("{:x}", Utc::now().timestamp_micros()),
    };
    let handle = tokio::runtime::Handle::current();
    let path = bronze.to_string();
    let task_lake = lake.clone();
    let task_contracts = contracts.clone();
    let failure = StorageFailure::default();
    let task_failure = failure.clone();
    let converted = tokio::task::spawn_blocking(move || {
        let reader = Progress {
            inner: LakeReader::new(task_lake.clone(), &path, handle.clone(), task_failure.clone()),
            reported: 0,
            progress,
            path: path.clone(),
        };
        let mut input = BufReader::with_capacity(1 << 20, reader);
        let kind = {
            let head = input.fill_buf().map_err(|source| FileError::Read {
                object: path.clone(),
                source,
            })?;
            sniff(head).map_err(|message| FileError::Unrecognised {
                object: path.clone(),
                message,
            })?
        };
        let mut out = Outputs::new(LakeSink::new(task_lake, handle, task_failure), ctx);
        match kind {
            FileKind::Imdb(_) => {
                imdb::convert(input, &task_contracts, &mut out)?;
            }
            FileKind::MoviesDataset(file) => movies_dataset::convert(file, input, &task_contracts, &mut out)?,
        }
        let (_, outputs, counts) = out.finish()?;
        Ok::<_, FileError>((kind, outputs, counts))
    })
    .await
    .map_err(|e| FilesError::Task(e.to_string()))?;
    // A storage failure seen by the adapters is the cause, whatever the layers above made of it.
    let (kind, outputs, counts) = match (converted, failure.take()) {
        (Ok(done), _) => done,
        (Err(_), Some(storage)) => return Err(FilesError::Lake(storage)),
        (Err(e), None) => return Err(e.into()),
    };

    let committing = Instant::now();
    let versions = replace_snapshots(&tables, &contracts, kind.contracts(), date, &outputs).await?;
    // The data files were streamed during the conversion: this is the commits alone.
    let commit = committing.elapsed();

    let mut record_counts = Counts::default();
    let mut logs = vec![format!("{}: {}", bronze, kind.describe())];
    for (contract, c) in &counts {
        if c.records_in > 0 {
            record_counts.add(c);
        }
        logs.push(format!("{contract}: {}", c.summary()));
    }
    let manifest = RunManifest {
        run_id: run_id.clone(),
        pipeline: kind.pipeline().to_string(),
        binary_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        finished_at: Utc::now(),
        duration_ms: clock.elapsed().as_millis() as u64,
        commit_ms: Some(commit.as_millis() as u64),
        inputs: vec![bronze.to_string()],
        outputs,
        counts: record_counts,
        contracts: counts
            .keys()
            .filter_map(|name| contracts.get(name).map(|c| (name.clone(), c.version)))
            .collect(),
        poison: None,
        tables: versions,
    };
    let manifest_path = super::put_manifest(lake.as_ref(), &manifest, date).await?;
    let parts = manifest.outputs.iter().filter(|o| o.kind == OutputKind::Silver).count();
    logs.push(format!(
        "{parts} silver part(s) in {} table(s), each snapshot replaced in one commit; manifest {manifest_path}",
        manifest.tables.len()
    ));
    Ok(FileConverted {
        manifest_path,
        kind,
        counts: manifest.counts,
        outputs: manifest.outputs,
        tables: manifest.tables,
        logs,
    })
}

/// Commits each table's new parts, replacing its snapshot partition (`snapshot_date` = the
/// file's ingest date) in the same commit: a reader sees the earlier conversion's rows or this
/// one's, never both; converting the same file again gives the same rows. A table this file
/// feeds but that got no row (all quarantined) has its snapshot emptied the same way.
async fn replace_snapshots(
    tables: &Tables,
    contracts: &ContractSet,
    names: &[&str],
    date: NaiveDate,
    outputs: &[Output],
) -> Result<TableVersions, FilesError> {
    let mut versions = TableVersions::new();
    for contract in names.iter().filter_map(|name| contracts.get(name)) {
        let table = silver_table(contract);
        let columns = partition_columns(contract);
        if columns != ["snapshot_date"] {
            return Err(FilesError::Unusable(format!(
                "{}: a file's table is partitioned by snapshot_date alone (it is replaced per snapshot); it has {columns:?}",
                contract.name
            )));
        }
        let partition = vec![("snapshot_date".to_string(), Some(date.format("%Y-%m-%d").to_string()))];
        let prefix = format!("{table}/");
        let files = outputs
            .iter()
            .filter(|o| o.kind == OutputKind::Silver && o.path.starts_with(&prefix))
            .map(|o| silver_tables::data_file(&o.path, o.bytes, o.rows.unwrap_or(0)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(silver_error)?;
        let version = silver_tables::commit(
            tables,
            &[contract],
            &table,
            files,
            Replace::Partitions(vec![partition]),
            None,
        )
        .await
        .map_err(silver_error)?;
        versions.insert(table, version);
    }
    Ok(versions)
}

fn silver_error(e: SilverError) -> FilesError {
    match e {
        SilverError::Lake(e) => FilesError::Lake(e),
        SilverError::Table(e) if e.is_transient() => FilesError::Failed(e.to_string()),
        other => FilesError::Failed(other.to_string()),
    }
}

/// The kind of a bronze object from its first bytes (gzip looked through for IMDb).
fn sniff(head: &[u8]) -> Result<FileKind, String> {
    let line = first_line(head).unwrap_or_default();
    FileKind::of_header(&line).ok_or_else(|| {
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        format!("header {shown:?} is not that of an IMDb file or a file of The Movies Dataset; not converted")
    })
}

/// Reports progress every 64 MiB read.
struct Progress {
    inner: LakeReader,
    reported: u64,
    progress: Arc<dyn Fn(&str) + Send + Sync>,
    path: String,
}

impl Read for Progress {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.inner.read >= self.reported + (64 << 20) {
            self.reported = self.inner.read;
            (self.progress)(&format!("{}: {} MiB read", self.path, self.reported >> 20));
        }
        Ok(n)
    }
}
