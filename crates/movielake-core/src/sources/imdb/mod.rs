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

mod cells;
pub mod sample;
mod split;
mod typer;

use std::io::{BufRead, BufReader, Read};

use arrow_array::RecordBatch;
use flate2::read::MultiGzDecoder;

use crate::contract::ContractSet;
use crate::output::files::{FileError, Outputs, PartSink};
use crate::routing::quarantine::QuarantineRecord;
use typer::Typer;

/// Rows typed before a batch goes to the encoder.
const BATCH_ROWS: usize = 64 * 1024;
/// Read buffer; a longer line grows it (IMDb lines are well under 1 KiB).
const READ_BUFFER: usize = 1 << 20;
/// Buffer of the reader that looks for the gzip magic: reads larger than it bypass it.
const SNIFF_BUFFER: usize = 64 << 10;
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

/// Like [`decompressed`], for [`Blocks`]: no second buffer over plain input (its large reads go
/// straight into the block buffer).
fn decoded<'a, R: Read + 'a>(input: R) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(SNIFF_BUFFER, input);
    let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(MultiGzDecoder::new(reader))
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
    let mut blocks = Blocks::new(decoded(input).map_err(read_error)?);
    let first = match blocks.next_block().map_err(read_error)? {
        Some(Block::Lines(first)) => first,
        Some(Block::TooLong(start)) => start,
        None => {
            return Err(unrecognised(
                &object,
                "the file is empty (an IMDb file starts with a header line)",
            ));
        }
    };
    let (header, rest) = match memchr::memchr(b'\n', first) {
        Some(i) => (&first[..i], &first[i + 1..]),
        None => (first, &[][..]),
    };
    let file = recognise(header).ok_or_else(|| {
        let shown = String::from_utf8_lossy(&header[..header.len().min(200)]).into_owned();
        unrecognised(
            &object,
            &format!("header {shown:?} is not the header of an IMDb dataset file (title.basics, name.basics, ...)"),
        )
    })?;
    // The lines after the header in the first block; copied once so the reader can go on.
    let rest = rest.to_vec();
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
            // Line 1 is the header.
            let mut lines = typer.block(&rest, 2, &mut emit)?;
            while let Some(block) = blocks.next_block().map_err(read_error)? {
                match block {
                    Block::Lines(text) => lines += typer.block(text, lines + 2, &mut emit)?,
                    Block::TooLong(start) => {
                        lines += 1;
                        typer.too_long(start, lines + 1, &mut emit)?;
                    }
                }
            }
            typer.flush(&mut emit)?;
            Ok(lines)
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

/// What [`Blocks`] hands out.
enum Block<'a> {
    /// Whole lines, each ending in `\n` except a last line of the file without one.
    Lines(&'a [u8]),
    /// The first [`MAX_LINE`] bytes of a line of [`MAX_LINE`] bytes or more (its end not
    /// counted); the rest of that line is skipped.
    TooLong(&'a [u8]),
}

/// Blocks of whole lines out of a reader, about [`READ_BUFFER`] bytes each: typing works on many
/// lines at once (column by column), and a line is never copied except when it crosses a fill.
struct Blocks<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Inside a line cut at [`MAX_LINE`]: skip to its end.
    skipping: bool,
}

impl<R: Read> Blocks<R> {
    fn new(reader: R) -> Self {
        Blocks {
            reader,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            eof: false,
            skipping: false,
        }
    }

    fn next_block(&mut self) -> std::io::Result<Option<Block<'_>>> {
        loop {
            if self.skipping {
                match memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                    Some(i) => {
                        self.start += i + 1;
                        self.skipping = false;
                    }
                    None => {
                        self.start = self.end;
                        if self.eof {
                            return Ok(None);
                        }
                        self.fill()?;
                        continue;
                    }
                }
            }
            let available = self.end - self.start;
            if let Some(last) = memchr::memrchr(b'\n', &self.buf[self.start..self.end]) {
                let block = self.start..self.start + last + 1;
                self.start = block.end;
                return Ok(Some(Block::Lines(&self.buf[block])));
            }
            if self.eof {
                let block = self.start..self.end;
                self.start = self.end;
                return Ok((available > 0).then(|| Block::Lines(&self.buf[block])));
            }
            if available >= MAX_LINE {
                let block = self.start..self.start + MAX_LINE;
                self.start = self.end;
                self.skipping = true;
                return Ok(Some(Block::TooLong(&self.buf[block])));
            }
            self.fill()?;
        }
    }

    /// Moves the unread tail to the front, grows the buffer when one line fills it (up to
    /// [`MAX_LINE`]), shrinks it back after such a line, and reads once.
    fn fill(&mut self) -> std::io::Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end < READ_BUFFER && self.buf.len() > READ_BUFFER {
            self.buf.truncate(READ_BUFFER);
            self.buf.shrink_to_fit();
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).min(MAX_LINE);
            self.buf.resize(grown.max(self.end + 1), 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            return Ok(());
        }
    }
}
