//! One column of a block of IMDb lines: typed, checked and appended to its Arrow builder.
//!
//! [`type_column`] has a loop per common type (strings, integers, comma lists) so the per-value
//! work is a parse, a bounds check and an append; rarer types and row rules go through a typed
//! [`Cell`], which keeps text as offsets into the block.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    PrimitiveBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ArrowPrimitiveType};

use super::{BATCH_ROWS, NULL};
use crate::contract::Column;
use crate::contract::validate::{Reason, Stage, check_length, check_str, check_value};
use crate::contract::value::{ColumnType, Value, days_since_epoch};

/// A reason against one line of the current block.
pub(super) struct Reject {
    pub(super) row: usize,
    pub(super) stage: Stage,
    pub(super) reason: Reason,
}

/// One typed cell of the current line; text stays in the line (offsets), nothing is allocated
/// except for JSON lists.
pub(super) enum Cell {
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

pub(super) enum Builder {
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
    pub(super) fn new(ty: ColumnType) -> Builder {
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

    pub(super) fn finish(&mut self) -> ArrayRef {
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
    pub(super) fn append(&mut self, cell: &Cell, line: &str) {
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

    pub(super) fn append_null(&mut self) {
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

    pub(super) fn len(&self) -> usize {
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

/// A constant column's value `rows` times.
pub(super) fn repeat(value: &Value, ty: ColumnType, rows: usize) -> ArrayRef {
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
pub(super) fn type_column(
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
                    null_cell(column, row, &mut refuse);
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
            let int32 = |v: i64| i32::try_from(v).ok();
            integers(
                column,
                text,
                cells,
                b,
                int32,
                Value::Int32,
                "an int32",
                &out_of_bounds,
                &mut refuse,
            );
        }
        Builder::Int64(b) => {
            integers(
                column,
                text,
                cells,
                b,
                Some,
                Value::Int64,
                "an int64",
                &out_of_bounds,
                &mut refuse,
            );
        }
        Builder::Strings(b) if !column.list_json => {
            for (row, (s, e)) in cells {
                let value = &text[s..e];
                if value.as_bytes() == NULL {
                    null_cell(column, row, &mut refuse);
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

/// The loop of an integer column: `narrow` fits the parsed number to the column's type (or
/// refuses it), `typed` makes the value that bound reasons show.
#[allow(clippy::too_many_arguments)]
fn integers<T: ArrowPrimitiveType>(
    column: &Column,
    text: &str,
    cells: impl Iterator<Item = (usize, (usize, usize))>,
    b: &mut PrimitiveBuilder<T>,
    narrow: impl Fn(i64) -> Option<T::Native>,
    typed: impl Fn(T::Native) -> Value,
    what: &str,
    out_of_bounds: impl Fn(f64) -> bool,
    refuse: &mut impl FnMut(usize, Stage, &mut Vec<Reason>),
) {
    let mut failed = Vec::new();
    for (row, (s, e)) in cells {
        let value = &text[s..e];
        if value.as_bytes() == NULL {
            null_cell(column, row, refuse);
            b.append_null();
            continue;
        }
        match parse_int(value).and_then(|v| Some((v, narrow(v)?))) {
            Some((wide, v)) => {
                if out_of_bounds(wide as f64) {
                    check_value(column, &typed(v), &mut failed);
                    refuse(row, Stage::Rule, &mut failed);
                }
                b.append_value(v);
            }
            None => {
                failed.push(not_a(column, value, what));
                refuse(row, Stage::Schema, &mut failed);
                b.append_null();
            }
        }
    }
}

/// A `\N` cell: refused when the column is required (the caller appends the null).
fn null_cell(column: &Column, row: usize, refuse: &mut impl FnMut(usize, Stage, &mut Vec<Reason>)) {
    if column.required {
        let mut required = vec![Reason::new("required", Some(&column.name), "missing or null")];
        refuse(row, Stage::Schema, &mut required);
    }
}

fn not_a(column: &Column, value: &str, what: &str) -> Reason {
    let detail = format!("{:?} is not {what}", crate::contract::value::shorten(value, 60));
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

pub(super) fn constant_cell(value: &Value) -> Cell {
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
pub(super) fn type_cell(column: &Column, line: &str, s: usize, e: usize) -> Result<Cell, String> {
    let text = &line[s..e];
    if text.as_bytes() == NULL {
        return Ok(Cell::Null);
    }
    let shown = || crate::contract::value::shorten(text, 60);
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
            match crate::contract::value::convert(Some(&json), column.ty, crate::contract::value::InputKind::Text)? {
                Value::Date(d) => Cell::Date(days_since_epoch(d)),
                Value::Timestamp(t) => Cell::Timestamp(t.timestamp_micros()),
                Value::IntList(items) => Cell::Ints(items),
                _ => Cell::Null,
            }
        }
    })
}

/// The column's value rules on a typed cell (required, min/max, one_of, regex, max_length).
pub(super) fn check_cell(column: &Column, cell: &Cell, line: &str, reasons: &mut Vec<(Stage, Reason)>) {
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
pub(super) fn cell_value(cell: &Cell, ty: ColumnType, line: &str) -> Value {
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
