//! Re-enrichment (issue 17), run by the maintenance run: events that landed before their
//! user's dimension did (`user_unknown`, `no_subscription`), or that were enriched with a
//! version a late or corrected change has since replaced, get the dimension as it stands now.
//!
//! Per partition of the last `days` days: the partition's files at one table version are read,
//! every row looked up again, and if any row's enrichment differs the files are rewritten into
//! one file with the same rows, the same values in every other column, and the new enrichment,
//! in one commit that removes exactly the files read ([`Replace::Files`]). Events appended to
//! the partition meanwhile are in other files and stay; a file removed meanwhile (a compaction)
//! fails that partition's commit, which the next run does again. A partition whose rows all
//! agree with the dimension is not touched.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, new_null_array};
use deltalake::arrow::compute::kernels::cmp::distinct;
use deltalake::arrow::compute::{cast, concat_batches, or};
use deltalake::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use movielake_core::Contract;
use movielake_core::enrich::Dimension;
use movielake_core::output::enriched;
use movielake_core::output::naming::silver_table;
use movielake_core::output::silver::{
    contract_properties, partition_columns, silver_schema, table_schema, writer_properties,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::silver_tables::{SilverError, data_file};
use crate::lake::{Lake, LakeError, PutMode};
use crate::tables::{FileCommit, Replace, TableError, Tables};

/// How far back the maintenance run looks, unless `MOVIELAKE_REENRICH_DAYS` says otherwise.
pub const DEFAULT_DAYS: u32 = 7;

#[derive(Debug, thiserror::Error)]
pub enum ReenrichError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Silver(#[from] SilverError),
    /// A data file that is not what the contract says (not Parquet, a column of another type).
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

/// What a re-enrichment did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reenriched {
    /// Partitions within the window, and those rewritten (one commit each).
    pub partitions: usize,
    pub rewritten: usize,
    /// Rows read, and rows whose enrichment changed.
    pub rows: u64,
    pub changed: u64,
    /// The table version whose files were read.
    pub version: Option<u64>,
    /// Partitions that could not be done (their error); the next run does them again.
    pub failed: Vec<String>,
}

/// Re-enriches the partitions of `contract`'s table (it must have `enrich_as_of`) dated on or
/// after `since` with `dimension`; with `added_after`, only the files added since that table
/// version (the rest were compared with this dimension already).
pub async fn reenrich(
    lake: &dyn Lake,
    tables: &Tables,
    contract: &Contract,
    dimension: &Dimension,
    since: NaiveDate,
    added_after: Option<u64>,
) -> Result<Reenriched, ReenrichError> {
    let mut done = Reenriched::default();
    let Some((user, at)) = contract.enrich_as_of else {
        return Ok(done);
    };
    let (user, at) = (contract.columns[user].name.clone(), contract.columns[at].name.clone());
    let name = silver_table(contract);
    let table = tables.open(&name).await?;
    if table.version().is_none() {
        return Ok(done);
    }
    done.version = table.version();
    // The files the earlier version had (none to skip when its log is gone).
    let mut seen = std::collections::HashSet::new();
    if let Some(v) = added_after
        && let Ok(old) = tables.open_at(&name, v).await
        && let Ok(snapshot) = old.snapshot()
    {
        seen.extend(snapshot.log_data().iter().map(|f| f.path().to_string()));
    }
    // The partitions' files at this version; the date column bounds the window.
    let date_column = contract
        .partition_by
        .iter()
        .map(|&i| &contract.columns[i])
        .find(|c| c.ty == movielake_core::contract::value::ColumnType::Date)
        .map(|c| c.name.clone());
    let mut partitions: BTreeMap<Vec<(String, Option<String>)>, Vec<String>> = BTreeMap::new();
    let snapshot = table.snapshot().map_err(|e| TableError::Invalid {
        table: name.clone(),
        message: e.to_string(),
    })?;
    for file in snapshot.log_data().iter() {
        let values: BTreeMap<String, Option<String>> = file.partition_values_map().into_iter().collect();
        let in_window = match &date_column {
            Some(c) => values
                .get(c)
                .cloned()
                .flatten()
                .and_then(|d| d.parse::<NaiveDate>().ok())
                .is_some_and(|d| d >= since),
            None => true,
        };
        if in_window && !seen.contains(file.path().as_ref()) {
            partitions
                .entry(values.into_iter().collect())
                .or_default()
                .push(file.path().to_string());
        }
    }
    done.partitions = partitions.len();
    for (_, files) in partitions {
        match partition(
            lake,
            tables,
            contract,
            dimension,
            (user.as_str(), at.as_str()),
            &name,
            &files,
        )
        .await
        {
            Ok((rows, changed)) => {
                done.rows += rows;
                if changed > 0 {
                    done.rewritten += 1;
                    done.changed += changed;
                }
            }
            Err(e) => {
                tracing::warn!(table = %name, error = %e, "a partition was not re-enriched; the next run tries again");
                done.failed.push(e.to_string());
            }
        }
    }
    Ok(done)
}

/// One partition's `files`: read, compared, rewritten when a row's enrichment differs. Returns
/// the rows read and the rows changed.
async fn partition(
    lake: &dyn Lake,
    tables: &Tables,
    contract: &Contract,
    dimension: &Dimension,
    key: (&str, &str),
    name: &str,
    files: &[String],
) -> Result<(u64, u64), ReenrichError> {
    let (user, at) = key;
    let mut batches = Vec::new();
    for file in files {
        batches.extend(read_parquet(lake, &format!("{name}/{file}")).await?);
    }
    let schema = silver_schema(contract);
    let enrichment = enriched::fields();
    let bad = |message: String| ReenrichError::File {
        path: format!("{name}/{}", files[0]),
        message,
    };
    // Each file in the contract's columns, by name: files written before the table was
    // enriched lack the enrichment columns, and a concatenation matches columns by position.
    let conformed = batches
        .iter()
        .map(|b| conform(b, &schema))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let rows = concat_batches(&schema, &conformed).map_err(|e| bad(e.to_string()))?;
    let users = cast(column(&rows, user).map_err(bad)?.as_ref(), &DataType::Utf8).map_err(|e| bad(e.to_string()))?;
    let times = cast(
        column(&rows, at).map_err(bad)?.as_ref(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )
    .map_err(|e| bad(e.to_string()))?;
    let (users, times) = (
        users.as_string::<i32>(),
        times.as_primitive::<TimestampMicrosecondType>(),
    );
    let keys = (0..rows.num_rows()).map(|i| {
        (
            (!users.is_null(i)).then(|| users.value(i)),
            (!times.is_null(i)).then(|| times.value(i)),
        )
    });
    let fresh = enriched::arrays(Some(dimension), keys);
    // Which rows differ from what the file says (a missing column: every row).
    let mut differs = BooleanArray::from(vec![false; rows.num_rows()]);
    for (field, new) in enrichment.iter().zip(&fresh) {
        let changed = match rows.column_by_name(field.name()) {
            Some(old) => {
                let old = cast(old.as_ref(), field.data_type()).map_err(|e| bad(e.to_string()))?;
                distinct(&old, new).map_err(|e| bad(e.to_string()))?
            }
            None => BooleanArray::from(vec![true; rows.num_rows()]),
        };
        differs = or(&differs, &changed).map_err(|e| bad(e.to_string()))?;
    }
    let changed = differs.true_count() as u64;
    if changed == 0 {
        return Ok((rows.num_rows() as u64, 0));
    }
    // The same rows in the contract's column order, the enrichment replaced.
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match enrichment.iter().position(|f| f.name() == field.name()) {
            Some(i) => fresh[i].clone(),
            None => match rows.column_by_name(field.name()) {
                Some(c) => cast(c.as_ref(), field.data_type()).map_err(|e| bad(e.to_string()))?,
                None => new_null_array(field.data_type(), rows.num_rows()),
            },
        };
        columns.push(column);
    }
    let rewritten = RecordBatch::try_new(schema.clone(), columns).map_err(|e| bad(e.to_string()))?;
    let bytes = encode(contract, &rewritten).map_err(bad)?;
    let folder = files[0].rsplit_once('/').map_or("", |(dir, _)| dir);
    let path = format!(
        "{name}/{folder}{}part-enriched-{:016x}.parquet",
        if folder.is_empty() { "" } else { "/" },
        xxhash_rust::xxh3::xxh3_64(&bytes)
    );
    let size = bytes.len() as u64;
    lake.put(&path, bytes, PutMode::Overwrite).await?;
    let commit = FileCommit {
        schema: table_schema(contract),
        partition_by: partition_columns(contract),
        files: vec![data_file(&path, size, rewritten.num_rows() as u64)?],
        replace: Replace::Files(files.to_vec()),
        txn: None,
    };
    tables.commit_files(name, &commit).await?;
    Ok((rows.num_rows() as u64, changed))
}

/// `batch`'s columns in `schema`'s order, by name, cast to its types; a column the file lacks
/// is null.
fn conform(batch: &RecordBatch, schema: &deltalake::arrow::datatypes::SchemaRef) -> Result<RecordBatch, String> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        columns.push(match batch.column_by_name(field.name()) {
            Some(c) => cast(c.as_ref(), field.data_type()).map_err(|e| e.to_string())?,
            None => new_null_array(field.data_type(), batch.num_rows()),
        });
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

fn column(batch: &RecordBatch, name: &str) -> Result<Arc<dyn Array>, String> {
    batch
        .column_by_name(name)
        .cloned()
        .ok_or_else(|| format!("no column {name}"))
}

async fn read_parquet(lake: &dyn Lake, path: &str) -> Result<Vec<RecordBatch>, ReenrichError> {
    let bytes: Bytes = lake.get(path).await?.bytes;
    let bad = |e: &dyn std::fmt::Display| ReenrichError::File {
        path: path.to_string(),
        message: e.to_string(),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| bad(&e))?
        .build()
        .map_err(|e| bad(&e))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| bad(&e))
}

fn encode(contract: &Contract, batch: &RecordBatch) -> Result<Bytes, String> {
    let properties = contract_properties(writer_properties(), contract);
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties)).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.into_inner().map(Bytes::from).map_err(|e| e.to_string())
}

/// Where the last complete re-enrichment of a table records the dimension it used.
fn state_path(table: &str) -> String {
    format!("ops/reenrich/{}.json", table.replace('/', "_"))
}

/// One table's outcome in [`reenrich_all`]: `None` when neither the dimension nor the table
/// has moved since the last complete run (nothing read).
pub type TableOutcome = (String, Option<Reenriched>);

/// The maintenance run's step: every contract with `enrich_as_of` whose table exists is
/// re-enriched over the `days` days up to `today`, with the dimension as it stands. When the
/// dimension's two history tables are at the versions the table's last complete run used, only
/// the files added to the table since that run are read (the others were compared with this
/// dimension already); nothing at all when the table has not moved either.
pub async fn reenrich_all(
    lake: &dyn Lake,
    tables: &Tables,
    contracts: &movielake_core::ContractSet,
    days: u32,
    today: NaiveDate,
) -> Result<Vec<TableOutcome>, ReenrichError> {
    let enriched: Vec<&Contract> = contracts.iter().filter(|c| c.enrich_as_of.is_some()).collect();
    let mut out = Vec::new();
    if enriched.is_empty() {
        return Ok(out);
    }
    let (dimension, versions) = super::dimension::load(tables).await?;
    let since = today - chrono::Duration::days(i64::from(days));
    let stamp = serde_json::json!({"users_history": versions.0, "subscriptions_history": versions.1});
    for contract in enriched {
        let name = silver_table(contract);
        let path = state_path(&name);
        let last = match lake.get(&path).await {
            Ok(o) => serde_json::from_slice::<serde_json::Value>(&o.bytes).ok(),
            Err(LakeError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        // The dimension unchanged since the last complete run: only the files added since
        // (events enriched while the dimension could not be read, or by an instance holding
        // an older one) are compared.
        let same = last.as_ref().and_then(|l| l.get("dimension")) == Some(&stamp);
        let table_version = last
            .as_ref()
            .and_then(|l| l.get("table_version"))
            .and_then(|v| v.as_u64());
        let current = tables.open(&name).await?.version();
        if same && table_version.is_some() && table_version == current {
            out.push((name, None));
            continue;
        }
        let added_after = if same { table_version } else { None };
        let done = reenrich(lake, tables, contract, &dimension, since, added_after).await?;
        if done.failed.is_empty() {
            let record = serde_json::json!({"dimension": stamp, "table_version": done.version,
                "since": since.to_string(), "done": {"partitions": done.partitions,
                "rewritten": done.rewritten, "rows": done.rows, "changed": done.changed}});
            lake.put(&path, Bytes::from(record.to_string()), PutMode::Overwrite)
                .await?;
        }
        out.push((name, Some(done)));
    }
    Ok(out)
}
