//! Typing IMDb lines into Arrow builders under their contract: the hot loop of the converter.
//!
//! A block of whole lines is typed column by column: one pass finds every tab and line end, then
//! each column's values are parsed, checked and appended in a tight loop of one type (no per-cell
//! dispatch, no per-cell allocation). A line that fails anywhere is still appended, remembered,
//! and filtered out of the batch before it leaves (rare), so a rejected line never reaches silver.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};

use super::cells::{Builder, Reject, cell_value, check_cell, constant_cell, repeat, type_cell, type_column};
use super::split::Delimiters;
use super::{BATCH_ROWS, ImdbFile, KEPT_OF_LONG_LINE, MAX_LINE, Typed, trim_line_end, unrecognised};
use crate::contract::Contract;
use crate::contract::expr;
use crate::contract::validate::{Reason, Stage};
use crate::contract::value::{ColumnType, Value};
use crate::output::files::{FileContext, FileError};
use crate::output::silver::silver_schema;
use crate::routing::quarantine::{QuarantineRecord, SourcePointer};

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
    /// Lines of the file since the last flush, whatever became of them.
    lines_in_batch: usize,
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
            lines_in_batch: 0,
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
        out(Typed::Rejected(Box::new(record)))?;
        self.count_lines(1, out)
    }

    /// Batches end every [`BATCH_ROWS`] lines of the file, wherever the reads happened to cut it:
    /// batch edges decide Parquet page edges and each part's first batch, so this is what makes
    /// the output bytes a function of the input alone.
    fn count_lines(&mut self, lines: u64, out: &mut Emit<'_>) -> Result<(), FileError> {
        self.lines_in_batch += lines as usize;
        if self.lines_in_batch >= BATCH_ROWS {
            self.flush(out)?;
        }
        Ok(())
    }

    /// Types a block of whole lines, the first of which is line `first` of the file. Returns
    /// how many lines the block had. Rejected lines go out in line order.
    pub(super) fn block(&mut self, block: &[u8], first: u64, out: &mut Emit<'_>) -> Result<u64, FileError> {
        let (mut rest, mut lines) = (block, 0);
        while !rest.is_empty() {
            // Up to the line that completes the batch.
            let room = (BATCH_ROWS - self.lines_in_batch.min(BATCH_ROWS - 1)) as u64;
            let (typed, consumed) = self.typed_block(rest, first + lines, room, out)?;
            lines += typed;
            self.count_lines(typed, out)?;
            rest = &rest[consumed..];
        }
        Ok(lines)
    }

    /// Types at most `limit` lines from the start of `block`: (lines, bytes consumed).
    fn typed_block(
        &mut self,
        block: &[u8],
        first: u64,
        limit: u64,
        out: &mut Emit<'_>,
    ) -> Result<(u64, usize), FileError> {
        let mut records = Vec::new();
        let done = match std::str::from_utf8(block) {
            Ok(text) => self.lines(text, first, None, limit, &mut records),
            Err(_) => {
                // Rare: the valid lines are typed from a copy, the others refused here.
                let cut = memchr::memchr_iter(b'\n', block)
                    .nth(limit as usize - 1)
                    .map_or(block.len(), |i| i + 1);
                let mut valid = String::with_capacity(cut);
                let mut numbers = Vec::new();
                let mut lines = 0;
                for raw in block[..cut].split_inclusive(|&b| b == b'\n') {
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
                self.lines(&valid, first, Some(&numbers), u64::MAX, &mut records);
                (lines, cut)
            }
        };
        records.sort_by_key(|(number, _)| *number);
        for (_, record) in records {
            out(Typed::Rejected(Box::new(record)))?;
        }
        Ok(done)
    }

    /// Splits, types and checks valid UTF-8 lines, at most `limit` of them; line `k` of `text`
    /// is line `numbers[k]` of the file, or `first + k` without `numbers`. Returns the lines
    /// typed and the bytes they took.
    fn lines(
        &mut self,
        text: &str,
        first: u64,
        numbers: Option<&[u64]>,
        limit: u64,
        records: &mut Vec<(u64, QuarantineRecord)>,
    ) -> (u64, usize) {
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
                if lines == limit {
                    break;
                }
            }
            field_start = at + 1;
        }
        let mut consumed = line_start;
        if line_start < bytes.len() && lines < limit {
            let number = numbers.map_or(first + lines, |n| n[lines as usize]);
            self.end_line(text, line_start, bytes.len(), field_start, number, records);
            lines += 1;
            consumed = bytes.len();
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
        (lines, consumed)
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
        self.lines_in_batch = 0;
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
