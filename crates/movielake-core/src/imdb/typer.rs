//! Typing IMDb lines into Arrow builders under their contract: the hot loop of the converter.
//!
//! A block of whole lines is typed column by column: one pass finds every tab and line end, then
//! each column's values are parsed, checked and appended in a tight loop of one type (no per-cell
//! dispatch, no per-cell allocation). A line that fails anywhere is still appended, remembered,
//! and filtered out of the batch before it leaves (rare), so a rejected line never reaches silver.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};

use super::split::Delimiters;
use super::{BATCH_ROWS, ImdbFile, KEPT_OF_LONG_LINE, MAX_LINE, NULL, Typed, trim_line_end, unrecognised};
use crate::contract::{Column, Contract};
use crate::expr;
use crate::files::{FileContext, FileError};
use crate::quarantine::{QuarantineRecord, SourcePointer};
use crate::silver::silver_schema;
use crate::validate::{Reason, Stage, check_length, check_str, check_value};
use crate::value::{ColumnType, Value, days_since_epoch};

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

/// Per contract column: typed from a field of the line, or the same value on every line.
enum ColumnState {
    Field {
        field: usize,
        builder: Builder,
        /// `min`/`max` as floats, so an in-range number skips building a `Value`.
        bounds: (Option<f64>, Option<f64>),
    },
    Constant {
        value: Value,
        /// The value repeated for a whole batch, built once and sliced.
        repeated: Option<ArrayRef>,
    },
}

/// A reason against one line of the current block.
struct Reject {
    row: usize,
    stage: Stage,
    reason: Reason,
}

/// A line of the current block that has the right number of fields.
struct Row {
    start: u32,
    end: u32,
    number: u64,
}

/// Types lines of one file into column builders under its contract.
pub(super) struct Typer<'c> {
    contract: &'c Contract,
    columns: Vec<ColumnState>,
    /// Contract indexes of the stored columns, in silver order.
    stored: Vec<usize>,
    /// Reasons every line gets from constant columns (a constant that breaks its own rules).
    constant_reasons: Vec<(Stage, Reason)>,
    pub(super) partition: Vec<Value>,
    fields_expected: usize,
    object: String,
    run_id: String,
    ingested_at: chrono::DateTime<chrono::Utc>,
    /// `_rescued`, `_source_object`, `_ingested_at`, `_run_id`, long enough for a batch.
    lineage: Option<[ArrayRef; 4]>,
    /// Field spans of the current block's rows, `fields_expected` per row.
    spans: Vec<(u32, u32)>,
    block_rows: Vec<Row>,
    rejects: Vec<Reject>,
    /// Rows appended to the builders since the last flush, rejected ones included.
    rows: usize,
    /// Rows of the current batch to leave out (rejected after being appended), ascending.
    dropped: Vec<usize>,
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
        let mut columns = Vec::with_capacity(contract.columns.len());
        let mut constant_reasons = Vec::new();
        for column in &contract.columns {
            if column.derive.is_some() {
                return Err(refuse(format!(
                    "column '{}': derived columns are not supported for IMDb files",
                    column.name
                )));
            }
            let field = if column.from_metadata {
                None
            } else {
                file.header.iter().position(|h| *h == column.input_field())
            };
            let state = match field {
                Some(field) => ColumnState::Field {
                    field,
                    builder: Builder::new(column.ty),
                    bounds: (
                        column.min.as_ref().and_then(Value::as_f64),
                        column.max.as_ref().and_then(Value::as_f64),
                    ),
                },
                None => {
                    let value = match column.name.as_str() {
                        "snapshot_date" | "ingest_date" if column.from_metadata && column.ty == ColumnType::Date => {
                            snapshot.clone()
                        }
                        "source_object" if column.from_metadata && column.ty == ColumnType::String => {
                            Value::String(object.to_string())
                        }
                        _ => Value::Null,
                    };
                    check_cell(column, &constant_cell(&value), "", &mut constant_reasons);
                    ColumnState::Constant { value, repeated: None }
                }
            };
            columns.push(state);
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
            match &columns[p] {
                ColumnState::Constant { value, .. } => partition.push(value.clone()),
                ColumnState::Field { .. } => {
                    return Err(refuse(format!(
                        "partition column '{}' must come from metadata (snapshot_date) for IMDb files",
                        contract.columns[p].name
                    )));
                }
            }
        }
        Ok(Typer {
            contract,
            columns,
            stored: contract.stored_columns().map(|(i, _)| i).collect(),
            constant_reasons,
            partition,
            fields_expected: file.header.len(),
            object: object.to_string(),
            run_id: ctx.run.run_id.clone(),
            ingested_at: ctx.run.ingested_at,
            lineage: None,
            spans: Vec::new(),
            block_rows: Vec::new(),
            rejects: Vec::new(),
            rows: 0,
            dropped: Vec::new(),
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
        let record = self.record(&String::from_utf8_lossy(kept), number, Stage::Decode, vec![reason]);
        out(Typed::Rejected(Box::new(record)))
    }

    /// Types a block of whole lines, the first of which is line `first` of the file. Returns
    /// how many lines the block had. Rejected lines go out in line order.
    pub(super) fn block(&mut self, block: &[u8], first: u64, out: &mut Emit<'_>) -> Result<u64, FileError> {
        let mut records = Vec::new();
        let lines = match std::str::from_utf8(block) {
            Ok(text) => self.lines(text, first, None, &mut records),
            Err(_) => {
                // Rare: the valid lines are typed from a copy, the others refused here.
                let mut valid = String::with_capacity(block.len());
                let mut numbers = Vec::new();
                let mut lines = 0;
                for raw in block.split_inclusive(|&b| b == b'\n') {
                    let number = first + lines;
                    lines += 1;
                    match std::str::from_utf8(raw) {
                        Ok(line) => {
                            valid.push_str(line);
                            numbers.push(number);
                        }
                        Err(e) => {
                            let detail = format!("not valid UTF-8 at byte {}", e.valid_up_to());
                            let reason = Reason::new("utf8", None, detail);
                            let raw = String::from_utf8_lossy(trim_line_end(raw));
                            records.push((number, self.record(&raw, number, Stage::Decode, vec![reason])));
                        }
                    }
                }
                self.lines(&valid, first, Some(&numbers), &mut records);
                lines
            }
        };
        records.sort_by_key(|(number, _)| *number);
        for (_, record) in records {
            out(Typed::Rejected(Box::new(record)))?;
        }
        if self.rows >= BATCH_ROWS {
            self.flush(out)?;
        }
        Ok(lines)
    }

    /// Splits, types and checks valid UTF-8 lines; line `k` of `text` is line `numbers[k]` of
    /// the file, or `first + k` without `numbers`.
    fn lines(
        &mut self,
        text: &str,
        first: u64,
        numbers: Option<&[u64]>,
        records: &mut Vec<(u64, QuarantineRecord)>,
    ) -> u64 {
        self.spans.clear();
        self.block_rows.clear();
        self.rejects.clear();
        let bytes = text.as_bytes();
        let mut lines = 0u64;
        let mut line_start = 0;
        let mut field_start = 0;
        // One pass over the block finds every field and line end.
        for (at, line_feed) in Delimiters::new(bytes) {
            if !line_feed {
                self.spans.push((field_start as u32, at as u32));
            } else {
                let number = numbers.map_or(first + lines, |n| n[lines as usize]);
                self.end_line(text, line_start, at, field_start, number, records);
                lines += 1;
                line_start = at + 1;
            }
            field_start = at + 1;
        }
        if line_start < bytes.len() {
            let number = numbers.map_or(first + lines, |n| n[lines as usize]);
            self.end_line(text, line_start, bytes.len(), field_start, number, records);
            lines += 1;
        }

        let rows = self.block_rows.len();
        if !self.constant_reasons.is_empty() {
            for row in 0..rows {
                for (stage, reason) in &self.constant_reasons {
                    self.rejects.push(Reject {
                        row,
                        stage: *stage,
                        reason: reason.clone(),
                    });
                }
            }
        }
        let stride = self.fields_expected;
        for (column, state) in self.contract.columns.iter().zip(&mut self.columns) {
            if let ColumnState::Field { field, builder, bounds } = state {
                let cells = self
                    .spans
                    .get(*field..)
                    .unwrap_or_default()
                    .iter()
                    .step_by(stride)
                    .copied();
                type_column(column, builder, *bounds, text, cells, &mut self.rejects);
            }
        }
        if !self.contract.rules.is_empty() {
            self.check_rules(text);
        }
        if !self.rejects.is_empty() {
            self.reject_rows(text, records);
        }
        self.rows += rows;
        lines
    }

    /// The end of one line: its fields are in `spans` if there are as many as the file has.
    fn end_line(
        &mut self,
        text: &str,
        start: usize,
        end: usize,
        last_field: usize,
        number: u64,
        records: &mut Vec<(u64, QuarantineRecord)>,
    ) {
        let end = if end > start && text.as_bytes()[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        let row_base = self.block_rows.len() * self.fields_expected;
        self.spans.push((last_field.min(end) as u32, end as u32));
        let found = self.spans.len() - row_base;
        if found != self.fields_expected {
            self.spans.truncate(row_base);
            let detail = format!("expected {} tab-separated fields, found {found}", self.fields_expected);
            let reason = Reason::new("field_count", None, detail);
            records.push((
                number,
                self.record(&text[start..end], number, Stage::Decode, vec![reason]),
            ));
            return;
        }
        self.block_rows.push(Row {
            start: start as u32,
            end: end as u32,
            number,
        });
    }

    /// Row rules, on the rows of the block no column refused: typed values are built for them
    /// (only contracts with rules pay for it).
    fn check_rules(&mut self, text: &str) {
        let mut refused = vec![!self.constant_reasons.is_empty(); self.block_rows.len()];
        for reject in &self.rejects {
            refused[reject.row] = true;
        }
        let stride = self.fields_expected;
        for (row, _) in refused.iter().enumerate().filter(|(_, refused)| !**refused) {
            let values: Vec<Value> = (self.contract.columns.iter().zip(&self.columns))
                .map(|(column, state)| match state {
                    ColumnState::Constant { value, .. } => value.clone(),
                    ColumnState::Field { field, .. } => {
                        let (s, e) = self.spans[row * stride + field];
                        type_cell(column, text, s as usize, e as usize)
                            .map_or(Value::Null, |cell| cell_value(&cell, column.ty, text))
                    }
                })
                .collect();
            for rule in &self.contract.rules {
                if expr::eval(&rule.expr, &values) == Some(false) {
                    let detail = format!("{} is false", rule.check);
                    self.rejects.push(Reject {
                        row,
                        stage: Stage::Rule,
                        reason: Reason::new(&rule.name, None, detail),
                    });
                }
            }
        }
    }

    /// Turns the block's reasons into one quarantine record per line and drops those rows from
    /// the batch.
    fn reject_rows(&mut self, text: &str, records: &mut Vec<(u64, QuarantineRecord)>) {
        // Stable: a line's reasons keep their column order, rules last.
        self.rejects.sort_by_key(|r| r.row);
        let rejects = std::mem::take(&mut self.rejects);
        let mut rejects = rejects.into_iter().peekable();
        while let Some(first) = rejects.next() {
            let row = first.row;
            let mut stage = first.stage;
            let mut reasons = vec![first.reason];
            while let Some(next) = rejects.next_if(|r| r.row == row) {
                stage = stage.min(next.stage);
                reasons.push(next.reason);
            }
            let line = &self.block_rows[row];
            let raw = &text[line.start as usize..line.end as usize];
            records.push((line.number, self.record(raw, line.number, stage, reasons)));
            self.dropped.push(self.rows + row);
        }
    }

    fn record(&self, raw: &str, number: u64, stage: Stage, reasons: Vec<Reason>) -> QuarantineRecord {
        QuarantineRecord {
            dataset: self.contract.name.clone(),
            contract_version: self.contract.version,
            stage,
            reasons,
            source: SourcePointer::line(&self.object, number),
            run_id: self.run_id.clone(),
            time: self.ingested_at,
            raw: raw.to_string(),
        }
    }

    /// Hands the typed rows to the encoder, without the rejected ones.
    pub(super) fn flush(&mut self, out: &mut Emit<'_>) -> Result<(), FileError> {
        if self.rows == 0 {
            return Ok(());
        }
        let rows = self.rows;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.stored.len() + 4);
        for &index in &self.stored {
            let column = &self.contract.columns[index];
            match &mut self.columns[index] {
                ColumnState::Field { builder, .. } => {
                    debug_assert_eq!(builder.len(), rows);
                    arrays.push(builder.finish());
                }
                ColumnState::Constant { value, repeated } => {
                    let array = match repeated {
                        Some(array) if array.len() >= rows => array,
                        _ => repeated.insert(repeat(value, column.ty, rows.max(BATCH_ROWS))),
                    };
                    arrays.push(array.slice(0, rows));
                }
            }
        }
        // Builders of columns that are checked but not stored start over too.
        for state in &mut self.columns {
            if let ColumnState::Field { builder, .. } = state
                && builder.len() > 0
            {
                builder.finish();
            }
        }
        // The lineage columns are the same on every row of a file: built once, sliced per batch.
        let lineage = match &mut self.lineage {
            Some(lineage) if lineage[0].len() >= rows => lineage,
            slot => slot.insert(self::lineage(
                &self.object,
                self.ingested_at,
                &self.run_id,
                rows.max(BATCH_ROWS),
            )),
        };
        arrays.extend(lineage.iter().map(|column| column.slice(0, rows)));
        let encode_error = |e: arrow_schema::ArrowError| FileError::Encode {
            path: format!("silver/{}/{}", self.contract.source, self.contract.table),
            source: e.into(),
        };
        if !self.dropped.is_empty() {
            // Before the batch is built: a rejected row may hold a null in a required column.
            let mut keep = vec![true; rows];
            for &row in &self.dropped {
                keep[row] = false;
            }
            let keep = BooleanArray::from(keep);
            arrays = (arrays.iter())
                .map(|array| arrow_select::filter::filter(array, &keep))
                .collect::<Result<_, _>>()
                .map_err(encode_error)?;
            self.dropped.clear();
        }
        let batch = RecordBatch::try_new(silver_schema(self.contract), arrays).map_err(encode_error)?;
        self.rows = 0;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        out(Typed::Batch(batch))
    }
}

/// `_rescued` (null), `_source_object`, `_ingested_at`, `_run_id` for `rows` rows.
fn lineage(object: &str, ingested_at: chrono::DateTime<chrono::Utc>, run_id: &str, rows: usize) -> [ArrayRef; 4] {
    [
        Arc::new(StringArray::new_null(rows)) as ArrayRef,
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(object, rows))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(ingested_at.timestamp_micros(), rows))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(run_id, rows))),
    ]
}

/// A constant column's value `rows` times.
fn repeat(value: &Value, ty: ColumnType, rows: usize) -> ArrayRef {
    let mut builder = Builder::new(ty);
    let cell = constant_cell(value);
    for _ in 0..rows {
        builder.append(&cell, "");
    }
    builder.finish()
}

/// Types, checks and appends one column of a block. `cells` are the column's field spans in
/// `text`, one per row. The common types have their own loop; the rare ones go through
/// [`type_cell`].
fn type_column(
    column: &Column,
    builder: &mut Builder,
    bounds: (Option<f64>, Option<f64>),
    text: &str,
    cells: impl Iterator<Item = (u32, u32)>,
    rejects: &mut Vec<Reject>,
) {
    let mut failed = Vec::new();
    // Called for every checked cell; almost all pass, and an extend of nothing is not free.
    let mut refuse = |row: usize, stage: Stage, failed: &mut Vec<Reason>| {
        if !failed.is_empty() {
            rejects.extend(failed.drain(..).map(|reason| Reject { row, stage, reason }));
        }
    };
    let out_of_bounds = |v: f64| bounds.0.is_some_and(|min| v < min) || bounds.1.is_some_and(|max| v > max);
    let cells = cells.map(|(s, e)| (s as usize, e as usize)).enumerate();
    match builder {
        Builder::String(b) => {
            let checked = column.one_of.is_some() || column.regex.is_some() || column.max_length.is_some();
            for (row, (s, e)) in cells {
                let value = &text[s..e];
                if value.as_bytes() == NULL {
                    refuse_null(column, row, &mut failed);
                    refuse(row, Stage::Schema, &mut failed);
                    b.append_null();
                    continue;
                }
                if checked {
                    check_str(column, value, &mut failed);
                    refuse(row, Stage::Rule, &mut failed);
                }
                b.append_value(value);
            }
        }
        Builder::Int32(b) => {
            for (row, (s, e)) in cells {
                let value = &text[s..e];
                if value.as_bytes() == NULL {
                    refuse_null(column, row, &mut failed);
                    refuse(row, Stage::Schema, &mut failed);
                    b.append_null();
                    continue;
                }
                match parse_int(value).and_then(|v| i32::try_from(v).ok()) {
                    Some(v) => {
                        if out_of_bounds(f64::from(v)) {
                            check_value(column, &Value::Int32(v), &mut failed);
                            refuse(row, Stage::Rule, &mut failed);
                        }
                        b.append_value(v);
                    }
                    None => {
                        failed.push(not_a(column, value, "an int32"));
                        refuse(row, Stage::Schema, &mut failed);
                        b.append_null();
                    }
                }
            }
        }
        Builder::Int64(b) => {
            for (row, (s, e)) in cells {
                let value = &text[s..e];
                if value.as_bytes() == NULL {
                    refuse_null(column, row, &mut failed);
                    refuse(row, Stage::Schema, &mut failed);
                    b.append_null();
                    continue;
                }
                match parse_int(value) {
                    Some(v) => {
                        if out_of_bounds(v as f64) {
                            check_value(column, &Value::Int64(v), &mut failed);
                            refuse(row, Stage::Rule, &mut failed);
                        }
                        b.append_value(v);
                    }
                    None => {
                        failed.push(not_a(column, value, "an int64"));
                        refuse(row, Stage::Schema, &mut failed);
                        b.append_null();
                    }
                }
            }
        }
        Builder::Strings(b) if !column.list_json => {
            for (row, (s, e)) in cells {
                let value = &text[s..e];
                if value.as_bytes() == NULL {
                    refuse_null(column, row, &mut failed);
                    refuse(row, Stage::Schema, &mut failed);
                    b.append(false);
                    continue;
                }
                let mut items = 0;
                if !value.is_empty() {
                    let mut from = 0;
                    for comma in memchr::memchr_iter(b',', value.as_bytes()) {
                        b.values().append_value(&value[from..comma]);
                        from = comma + 1;
                        items += 1;
                    }
                    b.values().append_value(&value[from..]);
                    items += 1;
                }
                b.append(true);
                if column.max_length.is_some() {
                    check_length(column, items, &mut failed);
                    refuse(row, Stage::Rule, &mut failed);
                }
            }
        }
        builder => {
            let mut reasons = Vec::new();
            for (row, (s, e)) in cells {
                match type_cell(column, text, s, e) {
                    Ok(cell) => {
                        check_cell(column, &cell, text, &mut reasons);
                        builder.append(&cell, text);
                    }
                    Err(detail) => {
                        reasons.push((Stage::Schema, Reason::new("type", Some(&column.name), detail)));
                        builder.append_null();
                    }
                }
                if !reasons.is_empty() {
                    rejects.extend(reasons.drain(..).map(|(stage, reason)| Reject { row, stage, reason }));
                }
            }
        }
    }
}

fn refuse_null(column: &Column, _row: usize, failed: &mut Vec<Reason>) {
    if column.required {
        failed.push(Reason::new("required", Some(&column.name), "missing or null"));
    }
}

fn not_a(column: &Column, value: &str, what: &str) -> Reason {
    let detail = format!("{:?} is not {what}", crate::value::shorten(value, 60));
    Reason::new("type", Some(&column.name), detail)
}

/// Plain digits (almost every IMDb number) without the general parser; anything else (a sign,
/// too many digits, garbage) goes through it.
fn parse_int(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if !bytes.is_empty() && bytes.len() <= 18 && bytes.iter().all(u8::is_ascii_digit) {
        Some(bytes.iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0')))
    } else {
        text.parse().ok()
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
