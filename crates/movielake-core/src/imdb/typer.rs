//! Typing one IMDb line into Arrow builders under its contract: the hot loop of the converter.
//! Text stays in the line (cells are offsets); values are checked against the column's rules
//! before anything is appended, so a rejected line leaves no partial row.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};

use super::{BATCH_ROWS, ImdbFile, KEPT_OF_LONG_LINE, MAX_LINE, NULL, Typed, unrecognised};
use crate::contract::{Column, Contract};
use crate::expr;
use crate::files::{FileContext, FileError};
use crate::quarantine::{QuarantineRecord, SourcePointer};
use crate::silver::silver_schema;
use crate::validate::{Reason, Stage, check_length, check_str, check_value};
use crate::value::{ColumnType, Value, days_since_epoch};

/// Where a stored column's value comes from.
enum Source {
    Field(usize),
    Constant(Value),
}

/// One typed cell of the current line; text stays in the line (offsets), nothing is allocated
/// except for JSON lists.
enum Cell {
    Null,
    Text(usize, usize),
    Owned(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(i32),
    Timestamp(i64),
    CommaList(usize, usize),
    Strings(Vec<String>),
    Ints(Vec<i64>),
}

enum Builder {
    String(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Strings(ListBuilder<StringBuilder>),
    Ints(ListBuilder<Int64Builder>),
}

impl Builder {
    fn new(ty: ColumnType) -> Builder {
        match ty {
            ColumnType::String => Builder::String(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16)),
            ColumnType::Int32 => Builder::Int32(Int32Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Int64 => Builder::Int64(Int64Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Float64 => Builder::Float64(Float64Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Bool => Builder::Bool(BooleanBuilder::with_capacity(BATCH_ROWS)),
            ColumnType::Date => Builder::Date(Date32Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            ColumnType::ListOfString => Builder::Strings(ListBuilder::new(StringBuilder::new())),
            ColumnType::ListOfInt64 => Builder::Ints(ListBuilder::new(Int64Builder::new())),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::String(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Strings(b) => Arc::new(b.finish()),
            Builder::Ints(b) => Arc::new(b.finish()),
        }
    }

    /// Appends a cell already checked against the column type.
    fn append(&mut self, cell: &Cell, line: &str) {
        match (self, cell) {
            (Builder::String(b), Cell::Text(s, e)) => b.append_value(&line[*s..*e]),
            (Builder::String(b), Cell::Owned(text)) => b.append_value(text),
            (Builder::Int32(b), Cell::Int(v)) => b.append_value(*v as i32),
            (Builder::Int64(b), Cell::Int(v)) => b.append_value(*v),
            (Builder::Float64(b), Cell::Float(v)) => b.append_value(*v),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Builder::Date(b), Cell::Date(v)) => b.append_value(*v),
            (Builder::Timestamp(b), Cell::Timestamp(v)) => b.append_value(*v),
            (Builder::Strings(b), Cell::CommaList(s, e)) => {
                let text = &line[*s..*e];
                if !text.is_empty() {
                    text.split(',').for_each(|item| b.values().append_value(item));
                }
                b.append(true);
            }
            (Builder::Strings(b), Cell::Strings(items)) => {
                items.iter().for_each(|item| b.values().append_value(item));
                b.append(true);
            }
            (Builder::Ints(b), Cell::Ints(items)) => {
                b.values().append_slice(items);
                b.append(true);
            }
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::String(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Strings(b) => b.append(false),
            Builder::Ints(b) => b.append(false),
        }
    }

    fn len(&self) -> usize {
        match self {
            Builder::String(b) => b.len(),
            Builder::Int32(b) => b.len(),
            Builder::Int64(b) => b.len(),
            Builder::Float64(b) => b.len(),
            Builder::Bool(b) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::Timestamp(b) => b.len(),
            Builder::Strings(b) => b.len(),
            Builder::Ints(b) => b.len(),
        }
    }
}

/// Where typed batches and rejected lines go.
pub(super) type Emit<'a> = dyn FnMut(Typed) -> Result<(), FileError> + 'a;

/// Types lines of one file into column builders under its contract.
pub(super) struct Typer<'c> {
    contract: &'c Contract,
    /// Per contract column (stored or not): where its value comes from.
    sources: Vec<Source>,
    /// Stored columns: (contract index, builder).
    builders: Vec<(usize, Builder)>,
    pub(super) partition: Vec<Value>,
    fields_expected: usize,
    object: String,
    run_id: String,
    ingested_at: chrono::DateTime<chrono::Utc>,
    /// `_rescued`, `_source_object`, `_ingested_at`, `_run_id` for a full batch.
    lineage: Option<[ArrayRef; 4]>,
    cells: Vec<Cell>,
    fields: Vec<(usize, usize)>,
    rows: usize,
}

impl<'c> Typer<'c> {
    pub(super) fn new(contract: &'c Contract, file: &ImdbFile, ctx: &FileContext) -> Result<Self, FileError> {
        let object = ctx.object.as_str();
        let refuse = |why: String| unrecognised(object, &format!("{}: {why}", contract.file));
        if !contract.key.is_empty() {
            // A key would need every key of a ~1 GB file in memory; IMDb ids are unique per file.
            return Err(refuse(
                "`key` is not supported for streamed IMDb files; remove it".into(),
            ));
        }
        let snapshot = Value::Date(ctx.ingest_date);
        let mut sources = Vec::with_capacity(contract.columns.len());
        for column in &contract.columns {
            if column.derive.is_some() {
                return Err(refuse(format!(
                    "column '{}': derived columns are not supported for IMDb files",
                    column.name
                )));
            }
            let source = if column.from_metadata {
                match column.name.as_str() {
                    "snapshot_date" | "ingest_date" if column.ty == ColumnType::Date => {
                        Source::Constant(snapshot.clone())
                    }
                    "source_object" if column.ty == ColumnType::String => {
                        Source::Constant(Value::String(object.to_string()))
                    }
                    _ => Source::Constant(Value::Null),
                }
            } else {
                match file.header.iter().position(|h| *h == column.input_field()) {
                    Some(i) => Source::Field(i),
                    None => Source::Constant(Value::Null),
                }
            };
            sources.push(source);
        }
        for field in file.header {
            if !contract
                .columns
                .iter()
                .any(|c| !c.from_metadata && c.input_field() == *field)
            {
                return Err(refuse(format!(
                    "the {} field '{field}' has no column (add one with field = \"{field}\")",
                    file.name
                )));
            }
        }
        let mut partition = Vec::with_capacity(contract.partition_by.len());
        for &p in &contract.partition_by {
            match &sources[p] {
                Source::Constant(v) => partition.push(v.clone()),
                Source::Field(_) => {
                    return Err(refuse(format!(
                        "partition column '{}' must come from metadata (snapshot_date) for IMDb files",
                        contract.columns[p].name
                    )));
                }
            }
        }
        let builders = contract
            .stored_columns()
            .map(|(i, c)| (i, Builder::new(c.ty)))
            .collect();
        Ok(Typer {
            contract,
            sources,
            builders,
            partition,
            fields_expected: file.header.len(),
            object: object.to_string(),
            run_id: ctx.run.run_id.clone(),
            ingested_at: ctx.run.ingested_at,
            lineage: None,
            cells: Vec::with_capacity(contract.columns.len()),
            fields: Vec::with_capacity(file.header.len() + 1),
            rows: 0,
        })
    }

    /// A line cut at `MAX_LINE`: refused as a whole, its start kept.
    pub(super) fn too_long(&mut self, start: &[u8], number: u64, out: &mut Emit<'_>) -> Result<(), FileError> {
        let kept = &start[..start.len().min(KEPT_OF_LONG_LINE)];
        let detail = format!(
            "the line is longer than {} MiB (no line break); its first {} KiB are kept in raw",
            MAX_LINE >> 20,
            KEPT_OF_LONG_LINE >> 10
        );
        let reason = Reason::new("line_length", None, detail);
        self.reject(out, &String::from_utf8_lossy(kept), number, Stage::Decode, vec![reason])
    }

    pub(super) fn line(&mut self, bytes: &[u8], number: u64, out: &mut Emit<'_>) -> Result<(), FileError> {
        let line = match std::str::from_utf8(bytes) {
            Ok(line) => line,
            Err(e) => {
                let reason = Reason::new("utf8", None, format!("not valid UTF-8 at byte {}", e.valid_up_to()));
                return self.reject(
                    out,
                    &String::from_utf8_lossy(bytes),
                    number,
                    Stage::Decode,
                    vec![reason],
                );
            }
        };
        self.fields.clear();
        let mut start = 0;
        for tab in memchr::memchr_iter(b'\t', bytes) {
            self.fields.push((start, tab));
            start = tab + 1;
        }
        self.fields.push((start, bytes.len()));
        if self.fields.len() != self.fields_expected {
            let detail = format!(
                "expected {} tab-separated fields, found {}",
                self.fields_expected,
                self.fields.len()
            );
            let reason = Reason::new("field_count", None, detail);
            return self.reject(out, line, number, Stage::Decode, vec![reason]);
        }

        let mut reasons: Vec<(Stage, Reason)> = Vec::new();
        self.cells.clear();
        for (column, source) in self.contract.columns.iter().zip(&self.sources) {
            let cell = match source {
                Source::Constant(v) => constant_cell(v),
                Source::Field(i) => {
                    let (s, e) = self.fields[*i];
                    match type_cell(column, line, s, e) {
                        Ok(cell) => cell,
                        Err(detail) => {
                            reasons.push((Stage::Schema, Reason::new("type", Some(&column.name), detail)));
                            self.cells.push(Cell::Null);
                            continue;
                        }
                    }
                }
            };
            check_cell(column, &cell, line, &mut reasons);
            self.cells.push(cell);
        }
        if !self.contract.rules.is_empty() && reasons.is_empty() {
            // Rules read typed values: built only for contracts that have rules.
            let values: Vec<Value> = (self.contract.columns.iter().zip(&self.cells))
                .map(|(column, cell)| cell_value(cell, column.ty, line))
                .collect();
            for rule in &self.contract.rules {
                if expr::eval(&rule.expr, &values) == Some(false) {
                    let detail = format!("{} is false", rule.check);
                    reasons.push((Stage::Rule, Reason::new(&rule.name, None, detail)));
                }
            }
        }
        if let Some(stage) = reasons.iter().map(|(s, _)| *s).min() {
            let reasons = reasons.into_iter().map(|(_, r)| r).collect();
            return self.reject(out, line, number, stage, reasons);
        }
        for (index, builder) in &mut self.builders {
            builder.append(&self.cells[*index], line);
        }
        self.rows += 1;
        if self.rows >= BATCH_ROWS {
            self.flush(out)?;
        }
        Ok(())
    }

    fn reject(
        &mut self,
        out: &mut Emit<'_>,
        raw: &str,
        number: u64,
        stage: Stage,
        reasons: Vec<Reason>,
    ) -> Result<(), FileError> {
        let record = QuarantineRecord {
            dataset: self.contract.name.clone(),
            contract_version: self.contract.version,
            stage,
            reasons,
            source: SourcePointer::line(&self.object, number),
            run_id: self.run_id.clone(),
            time: self.ingested_at,
            raw: raw.to_string(),
        };
        out(Typed::Rejected(Box::new(record)))
    }

    /// Hands the typed rows to the encoder.
    pub(super) fn flush(&mut self, out: &mut Emit<'_>) -> Result<(), FileError> {
        if self.rows == 0 {
            return Ok(());
        }
        let rows = self.rows;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.builders.len() + 4);
        for (_, builder) in &mut self.builders {
            debug_assert_eq!(builder.len(), rows);
            arrays.push(builder.finish());
        }
        // The lineage columns are the same on every row of a file: built once, sliced per batch.
        let lineage = self.lineage.get_or_insert_with(|| {
            let full = BATCH_ROWS.max(rows);
            [
                Arc::new(StringArray::new_null(full)) as ArrayRef,
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    self.object.as_str(),
                    full,
                ))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(
                        self.ingested_at.timestamp_micros(),
                        full,
                    ))
                    .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    self.run_id.as_str(),
                    full,
                ))),
            ]
        });
        arrays.extend(lineage.iter().map(|column| column.slice(0, rows)));
        let batch = RecordBatch::try_new(silver_schema(self.contract), arrays).map_err(|e| FileError::Encode {
            path: format!("silver/{}/{}", self.contract.source, self.contract.table),
            source: e.into(),
        })?;
        self.rows = 0;
        out(Typed::Batch(batch))
    }
}

fn constant_cell(value: &Value) -> Cell {
    match value {
        Value::Date(d) => Cell::Date(days_since_epoch(*d)),
        Value::Int32(v) => Cell::Int(i64::from(*v)),
        Value::Int64(v) => Cell::Int(*v),
        Value::Bool(v) => Cell::Bool(*v),
        Value::Float64(v) => Cell::Float(*v),
        Value::Timestamp(t) => Cell::Timestamp(t.timestamp_micros()),
        Value::String(s) => Cell::Owned(s.clone()),
        _ => Cell::Null,
    }
}

/// Types one field; the error is the reason's detail.
fn type_cell(column: &Column, line: &str, s: usize, e: usize) -> Result<Cell, String> {
    let text = &line[s..e];
    if text.as_bytes() == NULL {
        return Ok(Cell::Null);
    }
    let shown = || crate::value::shorten(text, 60);
    Ok(match column.ty {
        ColumnType::String => Cell::Text(s, e),
        ColumnType::Int32 => match text.parse::<i32>() {
            Ok(v) => Cell::Int(i64::from(v)),
            Err(_) => return Err(format!("{:?} is not an int32", shown())),
        },
        ColumnType::Int64 => match text.parse::<i64>() {
            Ok(v) => Cell::Int(v),
            Err(_) => return Err(format!("{:?} is not an int64", shown())),
        },
        ColumnType::Float64 => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Cell::Float(v),
            _ => return Err(format!("{:?} is not a finite float64", shown())),
        },
        ColumnType::Bool => match text {
            "0" | "false" | "False" | "FALSE" => Cell::Bool(false),
            "1" | "true" | "True" | "TRUE" => Cell::Bool(true),
            _ => return Err(format!("{:?} is not a bool (0 or 1)", shown())),
        },
        ColumnType::ListOfString if column.list_json => match serde_json::from_str::<Vec<String>>(text) {
            Ok(items) => Cell::Strings(items),
            Err(e) => return Err(format!("{:?} is not a JSON array of strings: {e}", shown())),
        },
        ColumnType::ListOfString => Cell::CommaList(s, e),
        ColumnType::Date | ColumnType::Timestamp | ColumnType::ListOfInt64 => {
            // Rare in IMDb files: the shared text conversion, then into a cell.
            let json = serde_json::Value::String(text.to_string());
            match crate::value::convert(Some(&json), column.ty, crate::value::InputKind::Text)? {
                Value::Date(d) => Cell::Date(days_since_epoch(d)),
                Value::Timestamp(t) => Cell::Timestamp(t.timestamp_micros()),
                Value::IntList(items) => Cell::Ints(items),
                _ => Cell::Null,
            }
        }
    })
}

/// The column's value rules on a typed cell (required, min/max, one_of, regex, max_length).
fn check_cell(column: &Column, cell: &Cell, line: &str, reasons: &mut Vec<(Stage, Reason)>) {
    let mut failed = Vec::new();
    match cell {
        Cell::Null => {
            if column.required {
                reasons.push((
                    Stage::Schema,
                    Reason::new("required", Some(&column.name), "missing or null"),
                ));
            }
            return;
        }
        Cell::Owned(text) => check_str(column, text, &mut failed),
        Cell::Text(s, e) if column.one_of.is_some() || column.regex.is_some() || column.max_length.is_some() => {
            check_str(column, &line[*s..*e], &mut failed);
        }
        Cell::CommaList(s, e) if column.max_length.is_some() => {
            let text = &line[*s..*e];
            let len = if text.is_empty() { 0 } else { text.split(',').count() };
            check_length(column, len, &mut failed);
        }
        Cell::Strings(items) => check_length(column, items.len(), &mut failed),
        Cell::Ints(items) => check_length(column, items.len(), &mut failed),
        Cell::Int(_) | Cell::Float(_) if column.min.is_some() || column.max.is_some() => {
            check_value(column, &cell_value(cell, column.ty, line), &mut failed);
        }
        _ => {}
    }
    // Most cells pass: skip the extend (it is per cell, tens of millions of times per file).
    if !failed.is_empty() {
        reasons.extend(failed.into_iter().map(|r| (Stage::Rule, r)));
    }
}

/// A cell as a typed value, for rules and bounds.
fn cell_value(cell: &Cell, ty: ColumnType, line: &str) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(s, e) => Value::String(line[*s..*e].to_string()),
        Cell::Owned(text) => Value::String(text.clone()),
        Cell::Int(v) if ty == ColumnType::Int32 => i32::try_from(*v).map_or(Value::Null, Value::Int32),
        Cell::Int(v) => Value::Int64(*v),
        Cell::Float(v) => Value::Float64(*v),
        Cell::Bool(v) => Value::Bool(*v),
        Cell::Date(d) => chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163).map_or(Value::Null, Value::Date),
        Cell::Timestamp(t) => chrono::DateTime::from_timestamp_micros(*t).map_or(Value::Null, Value::Timestamp),
        Cell::CommaList(s, e) => {
            let text = &line[*s..*e];
            Value::List(if text.is_empty() {
                Vec::new()
            } else {
                text.split(',').map(str::to_string).collect()
            })
        }
        Cell::Strings(items) => Value::List(items.clone()),
        Cell::Ints(items) => Value::IntList(items.clone()),
    }
}
