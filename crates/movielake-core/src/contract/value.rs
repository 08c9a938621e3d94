//! Typed values of a validated record, and their conversion from raw input.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value as Json;

pub use crate::contract::timestamp::parse_timestamp;

/// The column types a contract can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    String,
    Int32,
    Int64,
    Float64,
    Bool,
    Date,
    Timestamp,
    ListOfString,
    ListOfInt64,
}

impl ColumnType {
    pub const NAMES: &'static str = "string, int32, int64, float64, bool, date, timestamp, list<string>, list<int64>";

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim() {
            "string" => Self::String,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "float64" => Self::Float64,
            "bool" => Self::Bool,
            "date" => Self::Date,
            "timestamp" => Self::Timestamp,
            "list<string>" => Self::ListOfString,
            "list<int64>" => Self::ListOfInt64,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::Float64 => "float64",
            Self::Bool => "bool",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
            Self::ListOfString => "list<string>",
            Self::ListOfInt64 => "list<int64>",
        }
    }

    pub fn is_list(self) -> bool {
        matches!(self, Self::ListOfString | Self::ListOfInt64)
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Int32 | Self::Int64 | Self::Float64)
    }
}

/// How raw field values are read: JSON sources keep their JSON types, text sources (TSV, CSV)
/// carry every value as a string that is parsed into the column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    String(String),
    Int32(i32),
    Int64(i64),
    Float64(f64),
    Bool(bool),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
    List(Vec<String>),
    /// Integer ids as JSON sources send them (TMDB `genre_ids`).
    IntList(Vec<i64>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Numeric view used by min/max and row rules; dates and timestamps compare by their
    /// position on the time line (days, microseconds).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int32(v) => Some(f64::from(*v)),
            Value::Int64(v) => Some(*v as f64),
            Value::Float64(v) => Some(*v),
            Value::Date(d) => Some(f64::from(days_since_epoch(*d))),
            Value::Timestamp(t) => Some(t.timestamp_micros() as f64),
            _ => None,
        }
    }

    /// A short human rendering for quarantine reasons and partition paths.
    pub fn render(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::String(s) => s.clone(),
            Value::Int32(v) => v.to_string(),
            Value::Int64(v) => v.to_string(),
            Value::Float64(v) => v.to_string(),
            Value::Bool(v) => v.to_string(),
            Value::Date(d) => d.format("%Y-%m-%d").to_string(),
            Value::Timestamp(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            Value::List(items) => items.join(","),
            Value::IntList(items) => items.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
        }
    }
}

pub fn days_since_epoch(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (date - epoch).num_days() as i32
}

/// Converts one raw field into the column type. `Ok(Value::Null)` for JSON null or a missing
/// field; `Err` carries a human sentence for the quarantine reason.
pub fn convert(raw: Option<&Json>, ty: ColumnType, input: InputKind) -> Result<Value, String> {
    let raw = match raw {
        None | Some(Json::Null) => return Ok(Value::Null),
        Some(v) => v,
    };
    match (input, raw) {
        (InputKind::Text, Json::String(text)) => convert_text(text, ty),
        _ => convert_json(raw, ty),
    }
}

/// Like [`convert`], taking the value: a string column keeps the parsed string without a copy.
pub fn convert_owned(raw: Option<Json>, ty: ColumnType, input: InputKind) -> Result<Value, String> {
    match (raw, ty) {
        (Some(Json::String(s)), ColumnType::String) => Ok(Value::String(s)),
        (raw, ty) => convert(raw.as_ref(), ty, input),
    }
}

/// Whether a typed value (delivery metadata) can stand in a column of this type.
pub fn fits(value: &Value, ty: ColumnType) -> bool {
    matches!(
        (value, ty),
        (Value::Null, _)
            | (Value::String(_), ColumnType::String)
            | (Value::Int32(_), ColumnType::Int32)
            | (Value::Int64(_), ColumnType::Int64)
            | (Value::Float64(_), ColumnType::Float64)
            | (Value::Bool(_), ColumnType::Bool)
            | (Value::Date(_), ColumnType::Date)
            | (Value::Timestamp(_), ColumnType::Timestamp)
            | (Value::List(_), ColumnType::ListOfString)
            | (Value::IntList(_), ColumnType::ListOfInt64)
    )
}

fn convert_json(raw: &Json, ty: ColumnType) -> Result<Value, String> {
    let wrong = || format!("expected {}, got {}", ty.name(), json_kind(raw));
    match ty {
        ColumnType::String => raw.as_str().map(|s| Value::String(s.to_string())).ok_or_else(wrong),
        ColumnType::Int32 => {
            let v = raw.as_i64().ok_or_else(wrong)?;
            i32::try_from(v)
                .map(Value::Int32)
                .map_err(|_| format!("{v} does not fit in int32"))
        }
        ColumnType::Int64 => raw.as_i64().map(Value::Int64).ok_or_else(wrong),
        ColumnType::Float64 => raw.as_f64().map(Value::Float64).ok_or_else(wrong),
        ColumnType::Bool => raw.as_bool().map(Value::Bool).ok_or_else(wrong),
        ColumnType::Date | ColumnType::Timestamp => {
            let text = raw.as_str().ok_or_else(wrong)?;
            convert_text(text, ty)
        }
        ColumnType::ListOfString => {
            let items = raw.as_array().ok_or_else(wrong)?;
            items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Value::List)
                .ok_or_else(|| "expected a list of strings, found a non-string item".to_string())
        }
        ColumnType::ListOfInt64 => {
            let items = raw.as_array().ok_or_else(wrong)?;
            items
                .iter()
                .map(Json::as_i64)
                .collect::<Option<Vec<_>>>()
                .map(Value::IntList)
                .ok_or_else(|| "expected a list of int64, found an item that is not an integer".to_string())
        }
    }
}

pub(crate) fn convert_text(text: &str, ty: ColumnType) -> Result<Value, String> {
    let shown = shorten(text, 60);
    let wrong = |what: &str| format!("{shown:?} is not {what}");
    match ty {
        ColumnType::String => Ok(Value::String(text.to_string())),
        ColumnType::Int32 => text.trim().parse().map(Value::Int32).map_err(|_| wrong("an int32")),
        ColumnType::Int64 => text.trim().parse().map(Value::Int64).map_err(|_| wrong("an int64")),
        ColumnType::Float64 => match text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Value::Float64(v)),
            _ => Err(wrong("a finite float64")),
        },
        ColumnType::Bool => match text.trim() {
            "true" | "True" | "TRUE" | "1" => Ok(Value::Bool(true)),
            "false" | "False" | "FALSE" | "0" => Ok(Value::Bool(false)),
            _ => Err(wrong("a bool")),
        },
        ColumnType::Date => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map(Value::Date)
            .map_err(|_| wrong("a date (YYYY-MM-DD)")),
        ColumnType::Timestamp => parse_timestamp(text.trim())
            .map(Value::Timestamp)
            .ok_or_else(|| wrong("an RFC 3339 timestamp")),
        ColumnType::ListOfString if text.is_empty() => Ok(Value::List(Vec::new())),
        ColumnType::ListOfString => Ok(Value::List(text.split(',').map(str::to_string).collect())),
        ColumnType::ListOfInt64 if text.trim().is_empty() => Ok(Value::IntList(Vec::new())),
        ColumnType::ListOfInt64 => text
            .split(',')
            .map(|item| item.trim().parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map(Value::IntList)
            .map_err(|_| wrong("a comma-separated list of int64")),
    }
}

/// RFC 3339 with an offset; a timestamp without offset (as the Functions host writes
/// `EnqueuedTimeUtc`) is read as UTC.
pub fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

pub fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_keep_their_types() {
        let c = |v: Json, ty| convert(Some(&v), ty, InputKind::Json);
        assert_eq!(c(json!(7), ColumnType::Int64), Ok(Value::Int64(7)));
        assert!(c(json!("7"), ColumnType::Int64).is_err());
        assert!(c(json!(3_000_000_000i64), ColumnType::Int32).is_err());
        assert_eq!(
            c(json!(["a", "b"]), ColumnType::ListOfString),
            Ok(Value::List(vec!["a".into(), "b".into()]))
        );
        assert!(c(json!(["a", 1]), ColumnType::ListOfString).is_err());
        assert_eq!(
            c(json!([35, 10751]), ColumnType::ListOfInt64),
            Ok(Value::IntList(vec![35, 10751]))
        );
        assert_eq!(c(json!([]), ColumnType::ListOfInt64), Ok(Value::IntList(vec![])));
        assert!(c(json!([35, "14"]), ColumnType::ListOfInt64).is_err());
        assert!(c(json!([1.5]), ColumnType::ListOfInt64).is_err());
        assert!(c(json!("35"), ColumnType::ListOfInt64).is_err());
        assert_eq!(convert(None, ColumnType::Int64, InputKind::Json), Ok(Value::Null));
    }

    #[test]
    fn text_values_are_parsed() {
        let c = |v: &str, ty| convert(Some(&Json::String(v.into())), ty, InputKind::Text);
        assert_eq!(c("12", ColumnType::Int32), Ok(Value::Int32(12)));
        assert_eq!(c("True", ColumnType::Bool), Ok(Value::Bool(true)));
        assert_eq!(
            c("Drama,Comedy", ColumnType::ListOfString),
            Ok(Value::List(vec!["Drama".into(), "Comedy".into()]))
        );
        assert_eq!(c("1,22", ColumnType::ListOfInt64), Ok(Value::IntList(vec![1, 22])));
        assert!(c("1,x", ColumnType::ListOfInt64).is_err());
        assert!(c("NaN", ColumnType::Float64).is_err());
        assert!(c("1995-13-40", ColumnType::Date).is_err());
    }

    #[test]
    fn timestamps_without_offset_are_utc() {
        let t = parse_timestamp("2024-05-01T10:00:00.123").map(|t| t.timestamp_millis());
        assert_eq!(t, Some(1_714_557_600_123));
        let z = parse_timestamp("2024-05-01T12:00:00.123+02:00").map(|t| t.timestamp_millis());
        assert_eq!(z, t);
    }
}
