//! The tables a SQL table's pulls keep in silver (issue 16), all Delta:
//! - `silver/sql/<table>_changes`: the change log, one row per key and change time as the pulls
//!   read it (with `_digest`, the row's hash, to tell a repeat from a conflicting version);
//! - `silver/sql/<table>_deletes`: hard deletes found by comparing keys (key, `deleted_at`);
//! - `silver/sql/<table>_history`: SCD type 2, `valid_from`/`valid_to` (half-open, source
//!   change times) and `is_current`;
//! - `silver/sql/<table>`: SCD type 1, each key's latest state, `is_deleted` set for a
//!   deleted key (soft: `deleted_at` set; hard: a key comparison found it gone).
//!
//! History and current state are recomputed after each page of a pull for the keys it touched,
//! from all of their changes and deletes, by `movielake_core::sources::sql::scd` (its property
//! test holds the rules), and written with one MERGE each that replaces exactly those keys'
//! rows and deletes the history rows the recomputation no longer has. Every read joins the
//! table with the page's keys, so a page holds only what its keys hold; it still scans the
//! tables (the key is compared as text, which file statistics cannot prune), so a page's time
//! grows with the tables (BENCHMARKS.md).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use deltalake::arrow::compute::{concat_batches, take};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use deltalake::arrow::row::{RowConverter, SortField};
use movielake_core::Contract;
use movielake_core::output::naming::silver_table;
use movielake_core::sources::sql::scd::{Version, chain, current};

use crate::tables::{TableError, Tables, Upsert};

/// The in-memory table of keys a read joins with, and its one column.
pub const TOUCHED: &str = "touched";
/// The merge source's flag for a history row the recomputation no longer has.
const VANISHED: &str = "_vanished";
/// The change time every SQL table's contract has, and its soft-delete column where it has one.
pub const UPDATED_AT: &str = "updated_at";
pub const DELETED_AT: &str = "deleted_at";
/// The change log's hash of the row as read.
pub const DIGEST: &str = "_digest";

pub fn changes_table(contract: &Contract) -> String {
    format!("{}_changes", silver_table(contract))
}

pub fn deletes_table(contract: &Contract) -> String {
    format!("{}_deletes", silver_table(contract))
}

pub fn history_table(contract: &Contract) -> String {
    format!("{}_history", silver_table(contract))
}

pub fn current_table(contract: &Contract) -> String {
    silver_table(contract)
}

/// The business key: the contract's first key column (the second is the change time).
pub fn key_column(contract: &Contract) -> Result<String, TableError> {
    contract
        .key
        .first()
        .and_then(|&i| contract.columns.get(i))
        .map(|c| c.name.clone())
        .ok_or_else(|| TableError::Invalid {
            table: silver_table(contract),
            message: "a SQL table's contract needs its primary key first in `key`".into(),
        })
}

fn quoted(c: &str) -> String {
    format!("\"{}\"", c.replace('"', "\"\""))
}

/// `JOIN touched …`: keeps the rows of `t` whose key is one of the read's keys (compared as
/// text, the form the pull's keys take whatever the column's type).
pub fn key_join(key: &str) -> String {
    format!("JOIN {TOUCHED} ON CAST(t.{} AS VARCHAR) = {TOUCHED}.k", quoted(key))
}

/// The rows of `sql` over table `name` (and, with `keys`, the table `touched(k)` of those keys
/// to join with: [`key_join`]), as one batch; `None` when the table does not exist yet or the
/// query found nothing.
pub async fn read(
    tables: &Tables,
    name: &str,
    keys: Option<&BTreeSet<String>>,
    sql: &str,
) -> Result<Option<RecordBatch>, TableError> {
    if tables.open(name).await?.version().is_none() {
        return Ok(None);
    }
    let with = match keys {
        Some(keys) => {
            let column = Arc::new(StringArray::from_iter_values(keys.iter())) as ArrayRef;
            let batch = RecordBatch::try_from_iter([("k", column)]).map_err(|e| invalid(name, &e))?;
            vec![(TOUCHED, batch)]
        }
        None => Vec::new(),
    };
    let batches = tables.sql_with(name, &with, sql).await?;
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let batch = concat_batches(&first.schema(), &batches).map_err(|e| invalid(name, &e))?;
    Ok((batch.num_rows() > 0).then_some(batch))
}

fn invalid(table: &str, e: &dyn std::fmt::Display) -> TableError {
    TableError::Invalid {
        table: table.to_string(),
        message: e.to_string(),
    }
}

/// The Delta versions the refresh committed (`None`: nothing changed in that table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub history: Option<u64>,
    pub current: Option<u64>,
}

/// Whole refreshes (reads, recomputation, MERGEs) tried while other writers win the race.
const REFRESH_ATTEMPTS: u32 = 5;

/// Recomputes the history and the current state of `keys` from their changes and deletes.
/// A MERGE that loses a race to another writer of the same table is not replayed with what was
/// read before it: the whole refresh reads and recomputes again (a rival refresh may have
/// written rows this one did not see, which it must then delete or close).
pub async fn refresh(tables: &Tables, contract: &Contract, keys: &BTreeSet<String>) -> Result<Refreshed, TableError> {
    let mut attempt = 1;
    loop {
        match refresh_once(tables, contract, keys).await {
            Err(TableError::Contended { .. }) if attempt < REFRESH_ATTEMPTS => {
                let pause = 50u64 << attempt.min(6);
                let jitter = u64::from(std::process::id() % 50);
                tokio::time::sleep(std::time::Duration::from_millis(pause + jitter)).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

async fn refresh_once(tables: &Tables, contract: &Contract, keys: &BTreeSet<String>) -> Result<Refreshed, TableError> {
    if keys.is_empty() {
        return Ok(Refreshed::default());
    }
    let key = key_column(contract)?;
    let changes_name = changes_table(contract);
    let join = key_join(&key);
    let Some(changes) = read(
        tables,
        &changes_name,
        Some(keys),
        &format!("SELECT t.* FROM t {join} ORDER BY t.{}, t.{UPDATED_AT}", quoted(&key)),
    )
    .await?
    else {
        return Ok(Refreshed::default());
    };
    let deletes = read(
        tables,
        &deletes_table(contract),
        Some(keys),
        &format!("SELECT t.{k}, t.{DELETED_AT} FROM t {join}", k = quoted(&key)),
    )
    .await?;
    let history_name = history_table(contract);
    let held = read(tables, &history_name, Some(keys), &format!("SELECT t.* FROM t {join}")).await?;
    let bad = |e: &dyn std::fmt::Display| invalid(&changes_name, e);

    let versions = versions(contract, &key, &changes, deletes.as_ref()).map_err(|e| bad(&e))?;
    let n = changes.num_rows();
    let intervals = chain(versions.clone());
    let latest = current(versions, |i| i < n);

    // History: the rows the intervals show, with their bounds.
    let rows = UInt32Array::from_iter_values(intervals.iter().map(|i| i.index as u32));
    let micros = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros();
    let history = with_columns(
        &changes,
        &rows,
        vec![
            (
                "valid_from",
                timestamps(intervals.iter().map(|i| Some(micros(i.valid_from)))),
            ),
            ("valid_to", timestamps(intervals.iter().map(|i| i.valid_to.map(micros)))),
            (
                "is_current",
                Arc::new(BooleanArray::from_iter(intervals.iter().map(|i| Some(i.is_current())))),
            ),
        ],
    )
    .map_err(|e| bad(&e))?;
    let history = with_vanished(&history, &key, held.as_ref()).map_err(|e| invalid(&history_name, &e))?;
    // Current: each key's latest values, flagged when the key is deleted.
    let latest: Vec<_> = latest.into_iter().filter(|c| c.values.is_some()).collect();
    let rows = UInt32Array::from_iter_values(latest.iter().filter_map(|c| c.values.map(|i| i as u32)));
    let current_batch = with_columns(
        &changes,
        &rows,
        vec![
            (
                "is_deleted",
                Arc::new(BooleanArray::from_iter(latest.iter().map(|c| Some(c.deleted)))),
            ),
            ("changed_at", timestamps(latest.iter().map(|c| Some(micros(c.at))))),
        ],
    )
    .map_err(|e| bad(&e))?;

    let history = tables
        .merge(
            &history_name,
            history,
            &[&key, "valid_from"],
            Upsert::Sync {
                deleted: Some(VANISHED),
            },
        )
        .await?
        .version;
    // A key never leaves the current state (its change log only grows): nothing to delete.
    let current = tables
        .merge(
            &current_table(contract),
            current_batch,
            &[&key],
            Upsert::Sync { deleted: None },
        )
        .await?
        .version;
    Ok(Refreshed { history, current })
}

/// `history` (flagged not vanished) followed by the rows of `held` (the table's rows for the
/// same keys) whose `(key, valid_from)` it no longer has, flagged vanished: the merge deletes
/// those. A version that turns out to continue an earlier one (a late change with the same
/// tracked values, written before it) is such a row.
fn with_vanished(history: &RecordBatch, key: &str, held: Option<&RecordBatch>) -> Result<RecordBatch, String> {
    let flag = |n: usize, value: bool| Arc::new(BooleanArray::from(vec![value; n])) as ArrayRef;
    let mut fields: Vec<Field> = history.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(VANISHED, DataType::Boolean, false));
    let schema = Arc::new(Schema::new(fields));
    let mut columns = history.columns().to_vec();
    columns.push(flag(history.num_rows(), false));
    let fresh = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    let Some(held) = held else {
        return Ok(fresh);
    };
    let id = |keys: Vec<Option<String>>, from: Vec<Option<chrono::DateTime<chrono::Utc>>>| {
        keys.into_iter()
            .zip(from)
            .map(|(k, f)| k.zip(f.map(|f| f.timestamp_micros())))
            .collect::<Vec<_>>()
    };
    let mut kept: HashSet<(String, i64)> = id(strings(history, key)?, times(history, "valid_from")?)
        .into_iter()
        .flatten()
        .collect();
    // Each vanished (key, valid_from) once: two source rows matching one target row would be
    // refused by the MERGE, and a duplicate in the table is deleted by either.
    let vanished = UInt32Array::from_iter_values(
        id(strings(held, key)?, times(held, "valid_from")?)
            .into_iter()
            .enumerate()
            .filter_map(|(i, id)| id.filter(|id| kept.insert(id.clone())).map(|_| i as u32)),
    );
    if vanished.is_empty() {
        return Ok(fresh);
    }
    // The held rows in the fresh rows' column order and types (the table may store strings
    // differently from how a read hands them out).
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in history.schema().fields() {
        let column = held
            .column_by_name(field.name())
            .ok_or(format!("the history table has no column {}", field.name()))?;
        let column = take(column.as_ref(), &vanished, None).map_err(|e| e.to_string())?;
        columns.push(deltalake::arrow::compute::cast(&column, field.data_type()).map_err(|e| e.to_string())?);
    }
    columns.push(flag(vanished.len(), true));
    let gone = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    concat_batches(&schema, [&fresh, &gone]).map_err(|e| e.to_string())
}

/// The change log's rows (index = row) and the deletes (index = rows + i) as versions.
fn versions(
    contract: &Contract,
    key: &str,
    changes: &RecordBatch,
    deletes: Option<&RecordBatch>,
) -> Result<Vec<Version>, String> {
    let keys = strings(changes, key)?;
    let at = times(changes, UPDATED_AT)?;
    let soft = match changes.schema().index_of(DELETED_AT) {
        Ok(_) => Some(times(changes, DELETED_AT)?),
        Err(_) => None,
    };
    // Tracked columns: those the contract names, else every column but the key and change time.
    let tracked: Vec<&str> = if contract.track_history.is_empty() {
        contract
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !contract.key.contains(i))
            .map(|(_, c)| c.name.as_str())
            .collect()
    } else {
        contract
            .track_history
            .iter()
            .filter_map(|&i| contract.columns.get(i).map(|c| c.name.as_str()))
            .collect()
    };
    let arrays: Vec<ArrayRef> = tracked
        .iter()
        .filter_map(|c| changes.column_by_name(c).cloned())
        .collect();
    let converter = RowConverter::new(arrays.iter().map(|a| SortField::new(a.data_type().clone())).collect())
        .map_err(|e| e.to_string())?;
    let encoded = converter.convert_columns(&arrays).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(changes.num_rows());
    for i in 0..changes.num_rows() {
        let (Some(k), Some(at)) = (keys.get(i).cloned().flatten(), at.get(i).copied().flatten()) else {
            return Err(format!("row {i}: no {key} or {UPDATED_AT}"));
        };
        out.push(Version {
            key: k,
            at,
            deleted: soft.as_ref().is_some_and(|s| s.get(i).copied().flatten().is_some()),
            tracked: xxhash_rust::xxh3::xxh3_64(encoded.row(i).as_ref()),
            index: i,
        });
    }
    if let Some(deletes) = deletes {
        let (keys, at) = (strings(deletes, key)?, times(deletes, DELETED_AT)?);
        for (i, (k, at)) in keys.into_iter().zip(at).enumerate() {
            if let (Some(key), Some(at)) = (k, at) {
                out.push(Version {
                    key,
                    at,
                    deleted: true,
                    tracked: 0,
                    index: changes.num_rows() + i,
                });
            }
        }
    }
    Ok(out)
}

fn strings(batch: &RecordBatch, column: &str) -> Result<Vec<Option<String>>, String> {
    let array = batch.column_by_name(column).ok_or(format!("no column {column}"))?;
    let text = deltalake::arrow::compute::cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
    let text = text.as_string::<i32>();
    Ok((0..text.len())
        .map(|i| (!text.is_null(i)).then(|| text.value(i).to_string()))
        .collect())
}

fn times(batch: &RecordBatch, column: &str) -> Result<Vec<Option<chrono::DateTime<chrono::Utc>>>, String> {
    let array = batch.column_by_name(column).ok_or(format!("no column {column}"))?;
    let micros = deltalake::arrow::compute::cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))
        .map_err(|e| e.to_string())?;
    let micros = micros.as_primitive::<TimestampMicrosecondType>();
    Ok((0..micros.len())
        .map(|i| {
            (!micros.is_null(i))
                .then(|| chrono::DateTime::from_timestamp_micros(micros.value(i)))
                .flatten()
        })
        .collect())
}

fn timestamps(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

/// `rows` of `batch`, with `extra` columns appended.
fn with_columns(
    batch: &RecordBatch,
    rows: &UInt32Array,
    extra: Vec<(&str, ArrayRef)>,
) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), rows, None))
        .collect::<Result<_, _>>()?;
    for (name, array) in extra {
        fields.push(Field::new(name, array.data_type().clone(), true));
        columns.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
