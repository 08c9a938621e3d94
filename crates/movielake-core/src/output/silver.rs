//! Silver Parquet: an Arrow schema derived from the contract, zstd, lineage columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::contract::Contract;
use crate::contract::value::{ColumnType, Value, days_since_epoch};
use crate::enrich::Dimension;
use crate::output::column_writer::ColumnParallelWriter;
use crate::output::enriched;
use crate::output::naming::hive_value;
use crate::routing::route::Accepted;

pub const RESCUED: &str = "_rescued";
pub const SOURCE_OBJECT: &str = "_source_object";
pub const INGESTED_AT: &str = "_ingested_at";
pub const RUN_ID: &str = "_run_id";

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoding Parquet failed: {0}")]
    Parquet(#[from] ParquetError),
    #[error("building an Arrow batch failed: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::String => DataType::Utf8,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColumnType::ListOfString => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        ColumnType::ListOfInt64 => DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
    }
}

fn timestamp_type() -> DataType {
    arrow_type(ColumnType::Timestamp)
}

/// Stored columns (contract order, partition columns excluded: they live in the path), then
/// `_rescued` and the lineage columns, then for an enriched table its enrichment columns
/// ([`super::enriched`]).
pub fn silver_schema(contract: &Contract) -> SchemaRef {
    let mut fields: Vec<Field> = contract
        .stored_columns()
        .map(|(_, c)| Field::new(&c.name, arrow_type(c.ty), !(c.required && c.derive.is_none())))
        .collect();
    fields.push(Field::new(RESCUED, DataType::Utf8, true));
    fields.push(Field::new(SOURCE_OBJECT, DataType::Utf8, false));
    fields.push(Field::new(INGESTED_AT, timestamp_type(), false));
    fields.push(Field::new(RUN_ID, DataType::Utf8, false));
    if contract.enrich_as_of.is_some() {
        fields.extend(enriched::fields());
    }
    Arc::new(Schema::new(fields))
}

/// The Delta table's schema: the stored columns of [`silver_schema`] (what a data file holds),
/// then the partition columns (what the log holds for each file), typed as the contract says.
pub fn table_schema(contract: &Contract) -> SchemaRef {
    let stored = silver_schema(contract);
    let mut fields: Vec<Field> = stored.fields().iter().map(|f| f.as_ref().clone()).collect();
    for &i in &contract.partition_by {
        if let Some(c) = contract.columns.get(i) {
            fields.push(Field::new(&c.name, arrow_type(c.ty), true));
        }
    }
    Arc::new(Schema::new(fields))
}

/// The partition column names of the contract's table, in order.
pub fn partition_columns(contract: &Contract) -> Vec<String> {
    contract
        .partition_by
        .iter()
        .filter_map(|&i| contract.columns.get(i).map(|c| c.name.clone()))
        .collect()
}

/// Lineage shared by every row of one output part, and what an enriched table's rows are
/// looked up in.
#[derive(Debug, Clone)]
pub struct Lineage<'a> {
    pub ingested_at: DateTime<Utc>,
    pub run_id: &'a str,
    /// The subscription dimension for a contract with `enrich_as_of` (`None`: not loaded, the
    /// rows are `user_unknown` until the maintenance run enriches them again).
    pub dimension: Option<&'a Dimension>,
}

/// zstd level 3: a fraction of the size of snappy output at a small CPU cost, readable everywhere.
pub fn writer_properties() -> WriterProperties {
    let level = ZstdLevel::try_new(3).unwrap_or_default();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .build()
}

/// [`writer_properties`] with the contract's column choices: no statistics where a column says
/// `statistics = false`.
pub fn contract_properties(base: WriterProperties, contract: &Contract) -> WriterProperties {
    let mut properties = base.into_builder();
    for (_, column) in contract.stored_columns().filter(|(_, c)| !c.statistics) {
        let leaf = if column.ty.is_list() {
            // Arrow lists are written as `<name>.list.item` (the three-level Parquet list).
            ColumnPath::new(vec![column.name.clone(), "list".into(), "item".into()])
        } else {
            ColumnPath::from(column.name.as_str())
        };
        properties = properties.set_column_statistics_enabled(leaf, EnabledStatistics::None);
    }
    properties.build()
}

/// The Arrow batch of accepted rows under the contract's silver schema (see [`silver_schema`]).
pub fn accepted_batch(
    contract: &Contract,
    rows: &[&Accepted],
    lineage: &Lineage<'_>,
) -> Result<RecordBatch, EncodeError> {
    let columns: Vec<(usize, ColumnType)> = contract.stored_columns().map(|(i, c)| (i, c.ty)).collect();
    let schema = silver_schema(contract);
    let Some((user, at)) = contract.enrich_as_of else {
        return silver_batch(&schema, &columns, rows, lineage);
    };
    // The plain columns first (stored, `_rescued`, three of lineage), then the enrichment.
    let plain: Vec<usize> = (0..columns.len() + 4).collect();
    let batch = silver_batch(&Arc::new(schema.project(&plain)?), &columns, rows, lineage)?;
    let keys = rows.iter().map(|a| {
        let user = match a.row.values.get(user) {
            Some(Value::String(u)) => Some(u.as_str()),
            _ => None,
        };
        let at = match a.row.values.get(at) {
            Some(Value::Timestamp(t)) => Some(t.timestamp_micros()),
            _ => None,
        };
        (user, at)
    });
    let mut columns = batch.columns().to_vec();
    columns.extend(enriched::arrays(lineage.dimension, keys));
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn silver_batch(
    schema: &SchemaRef,
    columns: &[(usize, ColumnType)],
    rows: &[&Accepted],
    lineage: &Lineage<'_>,
) -> Result<RecordBatch, EncodeError> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for &(index, ty) in columns {
        arrays.push(build_column(
            ty,
            rows.len(),
            rows.iter().map(|a| a.row.values.get(index).unwrap_or(&Value::Null)),
        ));
    }
    let n = rows.len();
    let mut rescued = StringBuilder::with_capacity(n, 0);
    let object_len = rows.first().map_or(0, |a| a.pointer.object.len());
    let mut source = StringBuilder::with_capacity(n, n * object_len);
    let mut ingested = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut run = StringBuilder::with_capacity(n, n * lineage.run_id.len());
    for a in rows {
        rescued.append_option(a.row.rescued.as_deref());
        source.append_value(&a.pointer.object);
        ingested.append_value(lineage.ingested_at.timestamp_micros());
        run.append_value(lineage.run_id);
    }
    arrays.push(Arc::new(rescued.finish()));
    arrays.push(Arc::new(source.finish()));
    arrays.push(Arc::new(ingested.finish()));
    arrays.push(Arc::new(run.finish()));
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

/// Encodes one silver part in memory, on the calling thread (a Function instance serves one
/// batch at a time on one core). The column writer leaves mostly distinct strings (event ids)
/// without a dictionary and encodes the lineage columns, one value per part, once.
pub fn encode_parquet(contract: &Contract, rows: &[&Accepted], lineage: &Lineage<'_>) -> Result<Vec<u8>, EncodeError> {
    let batch = accepted_batch(contract, rows, lineage)?;
    let properties = contract_properties(writer_properties(), contract);
    let mut writer = ColumnParallelWriter::try_new(Vec::new(), batch.schema(), properties, &batch, 1)?;
    writer.write(&batch)?;
    Ok(writer.into_inner()?)
}

/// Groups rows by their partition values, in a stable order (by Hive path).
pub fn partition<'a>(
    contract: &Contract,
    rows: &'a [Accepted],
) -> BTreeMap<Vec<String>, (Vec<Value>, Vec<&'a Accepted>)> {
    let mut groups: BTreeMap<Vec<String>, (Vec<Value>, Vec<&Accepted>)> = BTreeMap::new();
    let of = |row: &'a Accepted| {
        contract
            .partition_by
            .iter()
            .map(move |&i| row.row.values.get(i).unwrap_or(&Value::Null))
    };
    // Neighbouring rows mostly share a partition: only a change of values costs a path.
    let mut last: Option<(&Accepted, Vec<String>)> = None;
    for row in rows {
        if !matches!(&last, Some((previous, _)) if of(previous).zip(of(row)).all(|(a, b)| same_path(a, b))) {
            let values: Vec<Value> = of(row).cloned().collect();
            let key: Vec<String> = values.iter().map(hive_value).collect();
            groups.entry(key.clone()).or_insert_with(|| (values, Vec::new()));
            last = Some((row, key));
        }
        if let Some((_, key)) = &last
            && let Some((_, members)) = groups.get_mut(key)
        {
            members.push(row);
        }
    }
    groups
}

/// `rows`: how many values come, to size the builders once.
/// Values that certainly have the same Hive path (floats by their bits: `0.0 == -0.0`, yet their
/// paths are `0` and `-0`).
fn same_path(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn build_column<'a>(ty: ColumnType, rows: usize, values: impl Iterator<Item = &'a Value>) -> ArrayRef {
    fn finish(mut b: impl ArrayBuilder) -> ArrayRef {
        b.finish()
    }
    // A value of another variant cannot reach here (rows come from the contract check); it
    // would be written as null rather than fail the run.
    match ty {
        ColumnType::String => {
            // Ids and names are short: a guess that saves most regrowing.
            let mut b = StringBuilder::with_capacity(rows, rows * 16);
            values.for_each(|v| b.append_option(if let Value::String(s) = v { Some(s) } else { None }));
            finish(b)
        }
        ColumnType::Int32 => {
            let mut b = Int32Builder::with_capacity(rows);
            values.for_each(|v| b.append_option(if let Value::Int32(x) = v { Some(*x) } else { None }));
            finish(b)
        }
        ColumnType::Int64 => {
            let mut b = Int64Builder::with_capacity(rows);
            values.for_each(|v| b.append_option(if let Value::Int64(x) = v { Some(*x) } else { None }));
            finish(b)
        }
        ColumnType::Float64 => {
            let mut b = Float64Builder::with_capacity(rows);
            values.for_each(|v| b.append_option(if let Value::Float64(x) = v { Some(*x) } else { None }));
            finish(b)
        }
        ColumnType::Bool => {
            let mut b = BooleanBuilder::with_capacity(rows);
            values.for_each(|v| b.append_option(if let Value::Bool(x) = v { Some(*x) } else { None }));
            finish(b)
        }
        ColumnType::Date => {
            let mut b = Date32Builder::with_capacity(rows);
            values.for_each(|v| {
                b.append_option(if let Value::Date(d) = v {
                    Some(days_since_epoch(*d))
                } else {
                    None
                })
            });
            finish(b)
        }
        ColumnType::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
            values.for_each(|v| {
                b.append_option(if let Value::Timestamp(t) = v {
                    Some(t.timestamp_micros())
                } else {
                    None
                })
            });
            finish(b)
        }
        ColumnType::ListOfString => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for v in values {
                if let Value::List(items) = v {
                    items.iter().for_each(|s| b.values().append_value(s));
                    b.append(true);
                } else {
                    b.append(false);
                }
            }
            finish(b)
        }
        ColumnType::ListOfInt64 => {
            let mut b = ListBuilder::new(Int64Builder::new());
            for v in values {
                if let Value::IntList(items) = v {
                    b.values().append_slice(items);
                    b.append(true);
                } else {
                    b.append(false);
                }
            }
            finish(b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::validate::Row;
    use crate::routing::quarantine::SourcePointer;

    #[test]
    fn rows_go_to_the_part_of_their_path_in_their_order() {
        let contract = Contract::from_toml(
            "p.toml",
            "name = \"p\"\nversion = 1\nsource = \"s\"\ntable = \"t\"\npartition_by = [\"f\"]\n\
             [[columns]]\nname = \"f\"\ntype = \"float64\"\n[[columns]]\nname = \"n\"\ntype = \"int64\"\n",
        )
        .expect("contract");
        let rows: Vec<Accepted> = [(0.0, 1), (-0.0, 2), (0.0, 3), (1.5, 4), (-0.0, 5), (1.5, 6)]
            .into_iter()
            .map(|(f, n)| Accepted {
                row: Row {
                    values: vec![Value::Float64(f), Value::Int64(n)],
                    rescued: None,
                },
                pointer: SourcePointer::line("x", n as u64),
                body_hash: 0,
                key_hash: None,
            })
            .collect();
        let parts: Vec<(Vec<String>, Vec<i64>)> = partition(&contract, &rows)
            .into_iter()
            .map(|(path, (_, members))| {
                let ns = members.iter().filter_map(|a| match a.row.values[1] {
                    Value::Int64(n) => Some(n),
                    _ => None,
                });
                (path, ns.collect())
            })
            .collect();
        let part = |p: &str, ns: &[i64]| (vec![p.to_string()], ns.to_vec());
        assert_eq!(parts, [part("-0", &[2, 5]), part("0", &[1, 3]), part("1.5", &[4, 6])]);
    }
}
