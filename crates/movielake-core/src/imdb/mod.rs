//! IMDb dataset files (`title.basics.tsv[.gz]` and the six others) → typed silver, streamed.
//!
//! The format (DESIGN.md): UTF-8, tab-separated, a header line, `\N` for null, no quoting at all
//! (a title may begin with `"`, and `NA`, `None` or `null` are titles, not nulls), the last line
//! may lack its newline. Files are up to ~1 GB, so lines are read from a fixed buffer and typed
//! straight into Arrow builders: no per-field allocation, no row objects, memory bounded by one
//! batch plus one row group per output part.
//!
//! The contract (`contracts/imdb_<table>.toml`) decides column names, types and rules; the file is
//! recognised by its header, and each header field maps to the column whose `field` (or name) it
//! is. A line that does not fit (wrong number of fields, a value of the wrong type, a rule) goes to
//! quarantine with its line number and every reason; the rest of the file goes on.

mod typer;

use std::io::{BufRead, BufReader, Read};

use arrow_array::RecordBatch;
use flate2::read::MultiGzDecoder;

use crate::contract::ContractSet;
use crate::files::{FileError, Outputs, PartSink};
use crate::quarantine::QuarantineRecord;
use typer::Typer;

/// Rows typed before a batch goes to the encoder.
const BATCH_ROWS: usize = 64 * 1024;
/// Read buffer; a longer line grows it (IMDb lines are well under 1 KiB).
const READ_BUFFER: usize = 1 << 20;
const NULL: &[u8] = b"\\N";
/// Longest line read whole (IMDb lines are under 1 KiB): a file that is not line-structured any
/// more (a corrupt tail, CR-only endings) cannot make one line take the memory.
const MAX_LINE: usize = 16 << 20;
/// Of a line cut at [`MAX_LINE`], what the quarantine record keeps.
const KEPT_OF_LONG_LINE: usize = 64 << 10;

/// One of the seven IMDb files: its name in IMDb's dump and the contract that types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImdbFile {
    pub name: &'static str,
    pub contract: &'static str,
    pub header: &'static [&'static str],
}

pub const FILES: [ImdbFile; 7] = [
    ImdbFile {
        name: "title.basics",
        contract: "imdb_title_basics",
        header: &[
            "tconst",
            "titleType",
            "primaryTitle",
            "originalTitle",
            "isAdult",
            "startYear",
            "endYear",
            "runtimeMinutes",
            "genres",
        ],
    },
    ImdbFile {
        name: "title.akas",
        contract: "imdb_title_akas",
        header: &[
            "titleId",
            "ordering",
            "title",
            "region",
            "language",
            "types",
            "attributes",
            "isOriginalTitle",
        ],
    },
    ImdbFile {
        name: "title.crew",
        contract: "imdb_title_crew",
        header: &["tconst", "directors", "writers"],
    },
    ImdbFile {
        name: "title.episode",
        contract: "imdb_title_episode",
        header: &["tconst", "parentTconst", "seasonNumber", "episodeNumber"],
    },
    ImdbFile {
        name: "title.principals",
        contract: "imdb_title_principals",
        header: &["tconst", "ordering", "nconst", "category", "job", "characters"],
    },
    ImdbFile {
        name: "title.ratings",
        contract: "imdb_title_ratings",
        header: &["tconst", "averageRating", "numVotes"],
    },
    ImdbFile {
        name: "name.basics",
        contract: "imdb_name_basics",
        header: &[
            "nconst",
            "primaryName",
            "birthYear",
            "deathYear",
            "primaryProfession",
            "knownForTitles",
        ],
    },
];

/// The IMDb file a header line belongs to (with or without its line ending).
pub fn recognise(header_line: &[u8]) -> Option<&'static ImdbFile> {
    let line = trim_line_end(header_line);
    FILES.iter().find(|f| {
        let mut fields = line.split(|&b| b == b'\t');
        f.header.iter().all(|h| fields.next() == Some(h.as_bytes())) && fields.next().is_none()
    })
}

/// Wraps the input in a gzip decoder when it starts with the gzip magic (the official files are
/// `.tsv.gz`); plain text passes through. Decided by content, not by name.
pub fn decompressed<'a, R: Read + 'a>(input: R) -> std::io::Result<Box<dyn BufRead + 'a>> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, input);
    let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(READ_BUFFER, MultiGzDecoder::new(reader)))
    } else {
        Box::new(reader)
    })
}

/// What a conversion saw, for logs and the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub file: &'static ImdbFile,
    pub lines: u64,
}

/// Converts one IMDb file (plain or gzipped) into silver parts and quarantine lines.
///
/// Two threads: this one reads and types lines into Arrow batches, a second one encodes them
/// into Parquet and writes the parts, so reading and encoding overlap (the two halves cost about
/// the same). A bounded channel between them keeps memory at a few batches.
pub fn convert<R: Read, S: PartSink + Send>(
    input: R,
    contracts: &ContractSet,
    out: &mut Outputs<S>,
) -> Result<Converted, FileError> {
    let ctx = out.context().clone();
    let object = ctx.object.clone();
    let read_error = |source| FileError::Read {
        object: object.clone(),
        source,
    };
    let mut lines = Lines::new(decompressed(input).map_err(read_error)?);
    let Some((header, _)) = lines.next_line().map_err(read_error)? else {
        return Err(unrecognised(
            &object,
            "the file is empty (an IMDb file starts with a header line)",
        ));
    };
    let file = recognise(header).ok_or_else(|| {
        let shown = String::from_utf8_lossy(&header[..header.len().min(200)]).into_owned();
        unrecognised(
            &object,
            &format!("header {shown:?} is not the header of an IMDb dataset file (title.basics, name.basics, ...)"),
        )
    })?;
    let contract = contracts
        .get(file.contract)
        .ok_or_else(|| FileError::MissingContract(file.contract.to_string()))?;
    let mut typer = Typer::new(contract, file, &ctx)?;
    let partition = typer.partition.clone();

    let lines_read = std::thread::scope(|scope| -> Result<u64, FileError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Typed>(4);
        let encoder_out = &mut *out;
        let encoder = scope.spawn(move || -> Result<(), FileError> {
            for typed in receiver {
                match typed {
                    Typed::Batch(batch) => encoder_out.batch(contract, &partition, &batch)?,
                    Typed::Rejected(record) => encoder_out.quarantine(contract, &record)?,
                }
            }
            Ok(())
        });
        let mut emit = |typed: Typed| {
            sender.send(typed).map_err(|_| FileError::Write {
                path: format!("silver/{}/{}", contract.source, contract.table),
                source: std::io::Error::other("the encoder stopped"),
            })
        };
        let parsed = (|| {
            let mut number = 1u64;
            while let Some((line, truncated)) = lines.next_line().map_err(read_error)? {
                number += 1;
                if truncated {
                    typer.too_long(line, number, &mut emit)?;
                } else {
                    typer.line(line, number, &mut emit)?;
                }
            }
            typer.flush(&mut emit)?;
            Ok(number - 1)
        })();
        drop(sender);
        // The encoder's own error explains a failed send, so it comes first.
        match encoder.join() {
            Ok(Ok(())) => parsed,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(FileError::Write {
                path: format!("silver/{}/{}", contract.source, contract.table),
                source: std::io::Error::other("the encoder thread panicked"),
            }),
        }
    })?;
    out.counts_mut(contract).records_in += lines_read;
    Ok(Converted {
        file,
        lines: lines_read,
    })
}

/// What the typing thread hands to the encoding thread.
enum Typed {
    Batch(RecordBatch),
    Rejected(Box<QuarantineRecord>),
}

fn unrecognised(object: &str, message: &str) -> FileError {
    FileError::Unrecognised {
        object: object.to_string(),
        message: message.to_string(),
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Lines out of a buffered reader, without copying when a line lies inside the buffer (the
/// common case); a line across two buffer fills is put together in `carry`.
struct Lines<R> {
    reader: R,
    /// Bytes of the buffer handed out by the previous call, consumed on the next one.
    pending: usize,
    carry: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            pending: 0,
            carry: Vec::new(),
        }
    }

    /// The next line without its ending, and whether it was cut at [`MAX_LINE`] bytes (the rest
    /// of it is skipped); `None` at the end. A last line without `\n` counts.
    fn next_line(&mut self) -> std::io::Result<Option<(&[u8], bool)>> {
        self.reader.consume(std::mem::take(&mut self.pending));
        self.carry.clear();
        let mut truncated = false;
        loop {
            let (newline, available) = {
                let buf = self.reader.fill_buf()?;
                (memchr::memchr(b'\n', buf), buf.len())
            };
            if available == 0 {
                return Ok((!self.carry.is_empty()).then(|| (trim_line_end(&self.carry), truncated)));
            }
            let room = MAX_LINE.saturating_sub(self.carry.len());
            match newline {
                Some(i) if self.carry.is_empty() && i < MAX_LINE => {
                    self.pending = i + 1;
                    // A second fill_buf on a non-empty buffer returns it again without reading.
                    let buf = self.reader.fill_buf()?;
                    return Ok(Some((trim_line_end(&buf[..=i]), false)));
                }
                Some(i) => {
                    let take = (i + 1).min(room);
                    self.carry.extend_from_slice(&self.reader.fill_buf()?[..take]);
                    self.reader.consume(i + 1);
                    return Ok(Some((trim_line_end(&self.carry), truncated || take < i + 1)));
                }
                None => {
                    let take = available.min(room);
                    self.carry.extend_from_slice(&self.reader.fill_buf()?[..take]);
                    truncated |= take < available;
                    self.reader.consume(available);
                }
            }
        }
    }
}
