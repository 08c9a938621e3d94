//! The IMDb converter on its own, for `scripts/bench_imdb.py` (and for trying it on a real dump):
//!
//!   imdb_convert generate <rows> <out.tsv>    a synthetic title.basics of <rows> rows
//!   imdb_convert convert <in.tsv[.gz]> <dir>  silver parts and quarantine under <dir>
//!   imdb_convert convert-all-statistics ...   the same, with min/max statistics on every column
//!                                             (the contract's `statistics = false` ignored), as
//!                                             the other tools of the benchmark write them
//!
//! `convert` reads and writes plain files (no lake), so it measures the converter and the
//! Parquet encoder, as the other tools in the benchmark are measured.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{NaiveDate, Utc};
use movielake_core::ContractSet;
use movielake_core::output::files::{FileContext, Outputs, PartSink};
use movielake_core::routing::route::RunContext;

const CONTRACT: (&str, &str) = (
    "contracts/imdb_title_basics.toml",
    include_str!("../../../contracts/imdb_title_basics.toml"),
);

struct FolderSink(PathBuf);

impl PartSink for FolderSink {
    type Part = BufWriter<File>;
    fn open(&mut self, path: &str) -> io::Result<Self::Part> {
        let file = self.0.join(path);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent)?;
        }
        Ok(BufWriter::with_capacity(1 << 20, File::create(file)?))
    }
    fn commit(&mut self, _path: &str, part: Self::Part) -> io::Result<()> {
        part.into_inner().map_err(|e| e.into_error())?.sync_all()
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["generate", rows, out] => generate(rows, out),
        ["convert", input, dir] => convert(input, dir, false),
        ["convert-all-statistics", input, dir] => convert(input, dir, true),
        _ => Err("usage: imdb_convert generate <rows> <out.tsv> | convert[-all-statistics] <in.tsv[.gz]> <dir>".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(rows: &str, out: &str) -> Result<(), String> {
    let rows: u64 = rows.parse().map_err(|_| format!("{rows:?} is not a row count"))?;
    let mut file = BufWriter::with_capacity(1 << 20, File::create(out).map_err(|e| format!("{out}: {e}"))?);
    movielake_core::sources::imdb::sample::title_basics_tsv(rows, 7, &mut file).map_err(|e| format!("{out}: {e}"))?;
    file.into_inner().map_err(|e| format!("{out}: {e}"))?;
    Ok(())
}

fn convert(input: &str, dir: &str, all_statistics: bool) -> Result<(), String> {
    let text = if all_statistics {
        CONTRACT.1.replace("statistics = false", "")
    } else {
        CONTRACT.1.to_string()
    };
    let contracts = ContractSet::load([(CONTRACT.0, text.as_str())]).map_err(|e| e.to_string())?;
    let file = File::open(input).map_err(|e| format!("{input}: {e}"))?;
    let ctx = FileContext {
        object: format!("bronze/imdb/title.basics/ingest_date=2026-11-23/{input}"),
        ingest_date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap_or_default(),
        run: RunContext {
            run_id: "bench".into(),
            ingested_at: Utc::now(),
        },
        attempt: String::new(),
    };
    let mut out = Outputs::new(FolderSink(PathBuf::from(dir)), ctx);
    let converted = movielake_core::sources::imdb::convert(file, &contracts, &mut out).map_err(|e| e.to_string())?;
    let (_, outputs, counts) = out.finish().map_err(|e| e.to_string())?;
    let c = counts.get(converted.file.contract).cloned().unwrap_or_default();
    println!(
        "{} lines, {} silver, {} quarantined, {} parts",
        converted.lines,
        c.silver,
        c.quarantined,
        outputs.len()
    );
    Ok(())
}
