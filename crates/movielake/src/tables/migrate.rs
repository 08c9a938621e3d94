//! `movielake migrate`: a lake written before silver and gold were Delta tables (loose Parquet
//! under Hive folders, issue 15) becomes Delta tables in place. No data file is rewritten: the
//! old files already are what a Delta table holds (silver parts keep their partition columns in
//! the path, the 16 TMDB movie buckets hold one row per movie, a gold part is a whole table), so
//! each table gets one commit of `add` actions naming them, with their row counts read from
//! their footers. The commit carries the transaction [`MIGRATE_APP_ID`] version 1: a second run
//! finds it and commits nothing.
//!
//! A table is migrated whole or not at all: a file that does not fit (another contract version,
//! not Parquet, a folder that is not a partition) leaves its whole table untouched, so nothing
//! is recorded as done that is not, and a run after the file was dealt with migrates the table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use futures::{StreamExt as _, TryStreamExt as _};
use movielake_core::output::naming::silver_table;
use movielake_core::output::silver::{partition_columns, silver_schema, table_schema};
use movielake_core::sources::tmdb::movies;
use movielake_core::{Contract, ContractSet};
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::ParquetMetaDataReader;

use super::{Committed, DataFile, FileCommit, Replace, TableError, Tables, Txn};
use crate::lake::{Lake, LakeError, ObjectMeta};
use crate::pipelines::silver_tables::data_file;

/// The application id of the migration's commits (version 1).
pub const MIGRATE_APP_ID: &str = "movielake-migrate";

/// Footers read at once: enough to hide a blob store's latency, few enough for a laptop.
const FOOTERS_AT_ONCE: usize = 16;
/// Bytes read from a file's end in the first request: a footer is rarely larger.
const FOOTER_GUESS: u64 = 64 * 1024;

/// Why the migration stopped, grouped by what the caller does next. A table that cannot be
/// migrated is not an error: it is reported ([`Outcome::NotMigrated`]) and the others go on.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Storage failed or refused: run migrate again (committed tables are recognised, the
    /// others start over; nothing half-done is visible).
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A table operation failed; [`TableError::is_transient`] says whether a re-run can help.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A `--table` that names no table: fix the command line.
    #[error("{0}: not a table name; name silver/<source>/<table> or gold/<name>")]
    Name(String),
}

/// What to migrate and whether to write.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Print what would be committed, write nothing.
    pub dry_run: bool,
    /// Only these tables (`silver/events/watch`, `gold/genre_year`); empty: every table found
    /// under `silver/` and `gold/`.
    pub only: Vec<String>,
}

/// One file that kept its table from being migrated, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub path: String,
    pub problem: String,
}

/// What happened to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its files were committed as they are, in this version.
    Migrated { version: u64, files: usize, rows: u64 },
    /// Dry run: these files would be committed.
    WouldMigrate { files: usize, rows: u64 },
    /// An earlier run migrated it (the table holds the migration's transaction).
    AlreadyMigrated { version: u64 },
    /// It already was a Delta table written by the app: left alone.
    AlreadyDelta { version: u64 },
    /// A folder without any Parquet file.
    Nothing,
    /// Nothing was committed for it; `problems` say which files and why, `hint` what to do.
    NotMigrated {
        reason: String,
        problems: Vec<FileProblem>,
        hint: &'static str,
    },
}

/// One table's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: String,
    pub outcome: Outcome,
    /// Parquet files in the table's folder that its log does not name (none expected): no
    /// reader sees them, and VACUUM deletes them once they are older than its retention.
    pub unnamed: Vec<String>,
}

/// What [`migrate`] tells its caller as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// About to read the footers of `files` Parquet files of `table`.
    Reading {
        table: &'a str,
        files: usize,
    },
    Done(&'a TableReport),
}

/// Migrates every table of the old layout found in the lake (or `options.only`), one commit
/// per table, calling `progress` as it goes. Returns every table's report, in name order.
pub async fn migrate(
    lake: &dyn Lake,
    tables: &Tables,
    contracts: &ContractSet,
    options: &Options,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Vec<TableReport>, MigrateError> {
    let mut reports = Vec::new();
    for (table, objects) in discover(lake, &options.only).await? {
        let report = migrate_table(lake, tables, contracts, &table, objects, options.dry_run, &mut progress).await?;
        progress(Progress::Done(&report));
        reports.push(report);
    }
    Ok(reports)
}

/// The tables to look at and the objects in each folder.
async fn discover(lake: &dyn Lake, only: &[String]) -> Result<BTreeMap<String, Vec<ObjectMeta>>, MigrateError> {
    let mut out: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    if only.is_empty() {
        for container in ["silver/", "gold/"] {
            for object in lake.list(container).await? {
                // An object above table depth (`gold/x.parquet`) is its own "table", reported
                // as being outside any table's folder.
                let name = table_of(&object.path).unwrap_or_else(|| object.path.clone());
                out.entry(name).or_default().push(object);
            }
        }
        return Ok(out);
    }
    for name in only {
        let name = name.trim_matches('/');
        if table_of(&format!("{name}/x")).as_deref() != Some(name)
            || name.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(MigrateError::Name(name.to_string()));
        }
        out.insert(name.to_string(), lake.list(&format!("{name}/")).await?);
    }
    Ok(out)
}

/// `silver/<source>/<table>` or `gold/<name>` of an object inside a table's folder.
fn table_of(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let depth = match segments.first() {
        Some(&"silver") => 3,
        Some(&"gold") => 2,
        _ => return None,
    };
    (segments.len() > depth).then(|| segments[..depth].join("/"))
}

/// What kind of table a folder holds, and so how its files are checked.
enum Kind<'a> {
    Silver(&'a Contract),
    Movies,
    Gold,
}

/// A file checked and ready to be committed.
struct Checked {
    file: DataFile,
    schema: Schema,
}

async fn migrate_table(
    lake: &dyn Lake,
    tables: &Tables,
    contracts: &ContractSet,
    table: &str,
    objects: Vec<ObjectMeta>,
    dry_run: bool,
    progress: &mut impl FnMut(Progress<'_>),
) -> Result<TableReport, MigrateError> {
    let report = |outcome, unnamed| TableReport {
        table: table.to_string(),
        outcome,
        unnamed,
    };
    let log_prefix = format!("{table}/_delta_log/");
    let has_log = objects.iter().any(|o| o.path.starts_with(&log_prefix));
    let parquet: Vec<ObjectMeta> = objects
        .into_iter()
        .filter(|o| o.path.ends_with(".parquet") && !o.path.starts_with(&log_prefix))
        .collect();
    if parquet.iter().any(|o| o.path == table) {
        // An object above table depth, named by its own path (see `discover`).
        let problems = vec![problem(table, "not inside a table's folder")];
        return Ok(report(not_migrated("outside any table", problems, HINT_MOVE), vec![]));
    }
    let kind = if table.starts_with("gold/") {
        Kind::Gold
    } else if table == movies::TABLE {
        Kind::Movies
    } else if let Some(contract) = contracts.iter().find(|c| silver_table(c) == table) {
        Kind::Silver(contract)
    } else if parquet.is_empty() && !has_log {
        return Ok(report(Outcome::Nothing, vec![]));
    } else {
        return Ok(report(
            not_migrated("no loaded contract describes this silver table", vec![], HINT_CONTRACTS),
            vec![],
        ));
    };
    let txn = Txn {
        app_id: MIGRATE_APP_ID.into(),
        version: 1,
    };
    let mut existing = None;
    if has_log {
        let delta = tables.open(table).await?;
        let version = delta.version().unwrap_or_default();
        let named = named_files(table, &delta)?;
        let unnamed = unnamed(&parquet, &named);
        if tables.holds(table, &txn).await? {
            return Ok(report(Outcome::AlreadyMigrated { version }, unnamed));
        }
        if !named.is_empty() {
            return Ok(report(Outcome::AlreadyDelta { version }, unnamed));
        }
        // An empty table without the migration's transaction: a run that died between
        // creating the table and committing its files (or an app that created it and wrote
        // nothing). Its old files go in if they fit its schema; see below.
        existing = Some(
            delta
                .snapshot()
                .map_err(|e| TableError::Invalid {
                    table: table.to_string(),
                    message: e.to_string(),
                })?
                .schema(),
        );
    }
    if parquet.is_empty() {
        return Ok(report(Outcome::Nothing, vec![]));
    }
    progress(Progress::Reading {
        table,
        files: parquet.len(),
    });
    let checked: Vec<Result<Checked, FileProblem>> = futures::stream::iter(parquet.iter())
        .map(|object| check(lake, table, &kind, object))
        .buffered(FOOTERS_AT_ONCE)
        .try_collect()
        .await?;
    let (good, problems): (Vec<_>, Vec<_>) = checked.into_iter().partition(Result::is_ok);
    let problems: Vec<FileProblem> = problems.into_iter().filter_map(Result::err).collect();
    let good: Vec<Checked> = good.into_iter().filter_map(Result::ok).collect();
    if !problems.is_empty() {
        let reason = format!("{} of {} files do not fit the table", problems.len(), parquet.len());
        let hint = if matches!(kind, Kind::Gold) {
            HINT_GOLD
        } else {
            HINT_MOVE
        };
        return Ok(report(not_migrated(&reason, problems, hint), vec![]));
    }
    let (schema, partition_by) = match &kind {
        Kind::Silver(contract) => (table_schema(contract), partition_columns(contract)),
        Kind::Movies => (movies::schema(), vec![]),
        Kind::Gold => match gold_schema(&good) {
            Ok(schema) => (schema, vec![]),
            Err(problems) => {
                return Ok(report(
                    not_migrated("its files do not share one schema", problems, HINT_GOLD),
                    vec![],
                ));
            }
        },
    };
    if let Some(existing) = existing
        && !same_columns(&schema, &existing)
    {
        return Ok(report(
            not_migrated(
                "an empty Delta table with other columns is already there",
                vec![],
                HINT_EXISTING,
            ),
            vec![],
        ));
    }
    let files: Vec<DataFile> = good.into_iter().map(|c| c.file).collect();
    let (count, rows) = (files.len(), files.iter().map(|f| f.rows).sum());
    if dry_run {
        return Ok(report(Outcome::WouldMigrate { files: count, rows }, vec![]));
    }
    let commit = FileCommit {
        schema,
        partition_by,
        files,
        replace: Replace::Nothing,
        txn: Some(txn),
    };
    let committed = tables.commit_files(table, &commit).await?;
    let delta = tables.open(table).await?;
    let after = lake.list(&format!("{table}/")).await?;
    let unnamed = unnamed(
        &after
            .into_iter()
            .filter(|o| o.path.ends_with(".parquet") && !o.path.starts_with(&log_prefix))
            .collect::<Vec<_>>(),
        &named_files(table, &delta)?,
    );
    let outcome = match committed {
        Committed::Version { version, .. } => Outcome::Migrated {
            version,
            files: count,
            rows,
        },
        // Another run committed it between our look and our commit.
        Committed::AlreadyCommitted { .. } => Outcome::AlreadyMigrated {
            version: delta.version().unwrap_or_default(),
        },
    };
    Ok(report(outcome, unnamed))
}

const HINT_MOVE: &str = "move each file listed out of the table's folder (keep it: its rows are in no table \
     until they are rebuilt from bronze) and run `movielake migrate` again; the table is migrated then, \
     without those files";
const HINT_CONTRACTS: &str = "pass the contracts that wrote it with --contracts (or MOVIELAKE_CONTRACTS) and run \
     `movielake migrate` again";
const HINT_GOLD: &str = "gold is derived from silver: delete the listed files and run `movielake gold` to \
     rebuild the table once silver is migrated";
const HINT_EXISTING: &str = "the table's folder holds a Delta log with other columns than its old files: look at \
     which is right; delete the `_delta_log` folder if the table is meant to hold the old files";

fn not_migrated(reason: &str, problems: Vec<FileProblem>, hint: &'static str) -> Outcome {
    Outcome::NotMigrated {
        reason: reason.to_string(),
        problems,
        hint,
    }
}

fn problem(path: &str, text: impl Into<String>) -> FileProblem {
    FileProblem {
        path: path.to_string(),
        problem: text.into(),
    }
}

/// The lake paths of the files the table's current version names.
fn named_files(table: &str, delta: &deltalake::DeltaTable) -> Result<BTreeSet<String>, TableError> {
    if delta.version().is_none() {
        return Ok(BTreeSet::new());
    }
    let snapshot = delta.snapshot().map_err(|e| TableError::Invalid {
        table: table.to_string(),
        message: e.to_string(),
    })?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|f| format!("{table}/{}", f.path()))
        .collect())
}

fn unnamed(parquet: &[ObjectMeta], named: &BTreeSet<String>) -> Vec<String> {
    parquet
        .iter()
        .filter(|o| !named.contains(&o.path))
        .map(|o| o.path.clone())
        .collect()
}

/// Reads one file's footer and checks it against what its table needs. A storage failure
/// stops the run; anything wrong with the file itself is that file's problem.
async fn check(
    lake: &dyn Lake,
    table: &str,
    kind: &Kind<'_>,
    object: &ObjectMeta,
) -> Result<Result<Checked, FileProblem>, MigrateError> {
    let path = object.path.as_str();
    let (rows, schema) = match footer(lake, path, object.size).await? {
        Ok(footer) => footer,
        Err(why) => return Ok(Err(problem(path, why))),
    };
    let inner = path
        .strip_prefix(table)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or(path);
    let unpartitioned = |expected: Option<&Schema>| -> Result<DataFile, String> {
        if let Some(expected) = expected {
            compatible(expected, &schema)?;
        }
        Ok(DataFile {
            path: inner.to_string(),
            size: object.size,
            rows,
            partition_values: vec![],
        })
    };
    let file = match kind {
        Kind::Silver(contract) => silver_file(contract, path, object.size, rows, &schema),
        Kind::Movies => match inner.split_once('/') {
            // The old buckets: `movie_id % 16` puts each movie in one bucket, and each bucket
            // holds one row per movie, so together they are the table MERGE keeps.
            Some((bucket, "movies.parquet"))
                if bucket.strip_prefix("bucket=").is_some_and(|n| n.parse::<u8>().is_ok()) =>
            {
                unpartitioned(Some(&movies::schema()))
            }
            _ => Err("not one of the old buckets (bucket=NN/movies.parquet)".to_string()),
        },
        Kind::Gold if inner.contains('/') => Err("in a subfolder; a gold table's parts were in its folder".into()),
        Kind::Gold => portable(&schema).and_then(|()| unpartitioned(None)),
    };
    Ok(file
        .map(|file| Checked { file, schema })
        .map_err(|why| problem(path, why)))
}

/// A silver part: its partition folders must be the contract's partition columns with values
/// of their types, and its columns the contract's stored columns.
fn silver_file(contract: &Contract, path: &str, size: u64, rows: u64, schema: &Schema) -> Result<DataFile, String> {
    let file = data_file(path, size, rows).map_err(|_| "its folders are not col=value partitions".to_string())?;
    let names: Vec<&str> = file.partition_values.iter().map(|(c, _)| c.as_str()).collect();
    let expected = partition_columns(contract);
    if names != expected.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(format!(
            "partition folders {names:?}, the contract partitions by {expected:?}"
        ));
    }
    let types = table_schema(contract);
    for (column, value) in &file.partition_values {
        if let (Some(value), Ok(field)) = (value, types.field_with_name(column))
            && !parses_as(value, field.data_type())
        {
            return Err(format!(
                "partition value {column}={value} is not a {}",
                field.data_type()
            ));
        }
    }
    compatible(&silver_schema(contract), schema)?;
    Ok(file)
}

/// Whether a partition folder's value reads back as the column's type (Delta readers parse it).
fn parses_as(value: &str, ty: &DataType) -> bool {
    match ty {
        DataType::Date32 => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok(),
        DataType::Int32 => value.parse::<i32>().is_ok(),
        DataType::Int64 => value.parse::<i64>().is_ok(),
        DataType::Float64 => value.parse::<f64>().is_ok(),
        DataType::Boolean => matches!(value, "true" | "false"),
        _ => true,
    }
}

/// Whether a file with columns `found` can be a data file of a table with columns `expected`
/// without a rewrite: each of its columns is the table's, of the same type, and not nullable
/// where the table requires a value; a table column it lacks is nullable (every Delta reader
/// reads a column missing from a file as nulls: the file of a contract before that column was
/// added). Anything else (a column the table does not have, another type) is refused: a reader
/// would fail or, worse, read something else.
pub fn compatible(expected: &Schema, found: &Schema) -> Result<(), String> {
    let mut differences = Vec::new();
    for field in found.fields() {
        match expected.field_with_name(field.name()) {
            Err(_) => differences.push(format!("column {} is not in the table", field.name())),
            Ok(want) if !want.data_type().equals_datatype(field.data_type()) => differences.push(format!(
                "column {} is {}, the table has {}",
                field.name(),
                field.data_type(),
                want.data_type()
            )),
            Ok(want) if field.is_nullable() && !want.is_nullable() => differences.push(format!(
                "column {} may hold nulls, the table requires a value",
                field.name()
            )),
            Ok(_) => {}
        }
    }
    for want in expected.fields() {
        if !want.is_nullable() && found.field_with_name(want.name()).is_err() {
            differences.push(format!("required column {} is missing", want.name()));
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(differences.join("; "))
    }
}

/// Whether a gold file's columns are plain Delta types, so that the table stays readable by
/// protocol reader 1 / writer 2 (Synapse serverless, Fabric): a timestamp without a time zone
/// (`timestamp_ntz`) needs reader 3 / writer 7; unsigned integers and other units have no
/// Delta type a reader maps back.
fn portable(schema: &Schema) -> Result<(), String> {
    fn plain(ty: &DataType) -> bool {
        match ty {
            DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::Date32
            | DataType::Decimal128(..) => true,
            DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => true,
            DataType::List(f) | DataType::LargeList(f) => plain(f.data_type()),
            DataType::Struct(fields) => fields.iter().all(|f| plain(f.data_type())),
            DataType::Map(f, _) => plain(f.data_type()),
            _ => false,
        }
    }
    let bad: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| !plain(f.data_type()))
        .map(|f| format!("column {} is {}, not a plain Delta type", f.name(), f.data_type()))
        .collect();
    if bad.is_empty() { Ok(()) } else { Err(bad.join("; ")) }
}

/// A gold table's schema: its files' (a gold table was one file; several must agree).
fn gold_schema(files: &[Checked]) -> Result<SchemaRef, Vec<FileProblem>> {
    let plain = |s: &Schema| -> Schema {
        Schema::new(
            s.fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), f.is_nullable()))
                .collect::<Vec<_>>(),
        )
    };
    let Some(first) = files.first() else {
        return Err(vec![]);
    };
    let schema = plain(&first.schema);
    let differ: Vec<FileProblem> = files
        .iter()
        .filter(|c| plain(&c.schema) != schema)
        .map(|c| problem(&c.file.path, "its columns differ from the other files'"))
        .collect();
    if differ.is_empty() {
        Ok(Arc::new(schema))
    } else {
        Err(differ)
    }
}

/// Whether `schema` has the columns (names and types) of an existing table's schema.
fn same_columns(schema: &Schema, existing: &StructType) -> bool {
    let Ok(ours) = TryIntoKernel::<StructType>::try_into_kernel(schema) else {
        return false;
    };
    let columns = |s: &StructType| -> Vec<(String, deltalake::kernel::DataType)> {
        s.fields().map(|f| (f.name().clone(), f.data_type().clone())).collect()
    };
    columns(&ours) == columns(existing)
}

/// A Parquet file's row count and Arrow schema, from its footer, read through the lake port
/// (a range or two from its end, on a folder or a blob store alike). `Ok(Err(why))`: the
/// object is not a readable Parquet file.
async fn footer(lake: &dyn Lake, path: &str, size: u64) -> Result<Result<(u64, Schema), String>, LakeError> {
    // 4 bytes of magic at each end, the footer's length and its magic at the end.
    if size < 12 {
        return Ok(Err(format!("{size} bytes: too small to be Parquet")));
    }
    let tail = lake.get_range(path, size.saturating_sub(FOOTER_GUESS)..size).await?;
    let n = tail.len();
    let Some(&[l0, l1, l2, l3, m0, m1, m2, m3]) = n.checked_sub(8).and_then(|start| tail.get(start..)) else {
        return Ok(Err("shorter than its listed size".into()));
    };
    match &[m0, m1, m2, m3] {
        b"PAR1" => {}
        b"PARE" => return Ok(Err("an encrypted Parquet file".into())),
        _ => return Ok(Err("not a Parquet file (no PAR1 at its end)".into())),
    }
    let length = u64::from(u32::from_le_bytes([l0, l1, l2, l3]));
    if length + 12 > size {
        return Ok(Err(format!("its footer claims {length} bytes of a {size}-byte file")));
    }
    let metadata: Bytes = match usize::try_from(length + 8) {
        Ok(needed) if needed <= n => tail.slice(n - needed..n - 8),
        _ => lake.get_range(path, size - 8 - length..size - 8).await?,
    };
    let decoded = ParquetMetaDataReader::decode_metadata(&metadata)
        .map_err(|e| format!("unreadable footer: {e}"))
        .and_then(|m| {
            let file = m.file_metadata();
            let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
                .map_err(|e| format!("no Arrow schema for its columns: {e}"))?;
            let rows = u64::try_from(file.num_rows()).map_err(|_| format!("{} rows", file.num_rows()))?;
            Ok((rows, schema))
        });
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[(&str, DataType, bool)]) -> Schema {
        Schema::new(
            fields
                .iter()
                .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn a_file_fits_when_it_lacks_only_nullable_columns() {
        let table = schema(&[("id", DataType::Utf8, false), ("n", DataType::Int64, true)]);
        assert_eq!(compatible(&table, &table), Ok(()));
        assert_eq!(
            compatible(&table, &schema(&[("id", DataType::Utf8, false)])),
            Ok(()),
            "an older contract without the nullable column"
        );
        let missing = compatible(&table, &schema(&[("n", DataType::Int64, true)]));
        assert!(missing.is_err_and(|e| e.contains("required column id is missing")));
    }

    #[test]
    fn a_file_with_another_column_or_type_does_not_fit() {
        let table = schema(&[("id", DataType::Utf8, false), ("n", DataType::Int64, true)]);
        let extra = schema(&[
            ("id", DataType::Utf8, false),
            ("n", DataType::Int64, true),
            ("x", DataType::Utf8, true),
        ]);
        assert!(compatible(&table, &extra).is_err_and(|e| e.contains("column x is not in the table")));
        let retyped = schema(&[("id", DataType::Utf8, false), ("n", DataType::Int32, true)]);
        assert!(compatible(&table, &retyped).is_err_and(|e| e.contains("column n is Int32")));
        let nullable = schema(&[("id", DataType::Utf8, true)]);
        assert!(compatible(&table, &nullable).is_err_and(|e| e.contains("may hold nulls")));
    }

    #[test]
    fn objects_belong_to_the_table_folder_they_are_in() {
        assert_eq!(
            table_of("silver/events/watch/event_date=2024-05-01/hour=1/part-a.parquet").as_deref(),
            Some("silver/events/watch")
        );
        assert_eq!(
            table_of("gold/genre_year/part-00000.parquet").as_deref(),
            Some("gold/genre_year")
        );
        assert_eq!(table_of("gold/stray.parquet"), None);
        assert_eq!(table_of("silver/events/watch"), None);
        assert_eq!(table_of("ops/runs/x.json"), None);
    }

    #[test]
    fn gold_keeps_to_types_every_reader_reads() {
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            portable(&schema(&[("t", utc, true), ("g", DataType::Utf8, true)])),
            Ok(())
        );
        let ntz = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert!(portable(&schema(&[("t", ntz, true)])).is_err());
        assert!(portable(&schema(&[("u", DataType::UInt64, true)])).is_err());
    }

    #[test]
    fn partition_values_are_checked_against_their_types() {
        assert!(parses_as("2024-05-01", &DataType::Date32));
        assert!(!parses_as("2024-13-01", &DataType::Date32));
        assert!(parses_as("10", &DataType::Int32));
        assert!(!parses_as("ten", &DataType::Int32));
        assert!(parses_as("anything", &DataType::Utf8));
    }
}
