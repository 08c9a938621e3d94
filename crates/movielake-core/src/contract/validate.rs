//! Checking one record against its contract: a verdict, never an error.

use chrono::{Datelike, Timelike};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::contract::expr;
use crate::contract::value::{InputKind, Value, convert_owned, fits, json_kind, shorten};
use crate::contract::{Column, Contract, Derive, UnknownFields};

/// Where in the pipeline a record was refused; ordered, so a record's stage is its earliest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Decode,
    Schema,
    Rule,
    Dedupe,
    /// The whole batch, after it failed every attempt to process it (not a verdict on the data).
    Poison,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub detail: String,
}

impl Reason {
    pub fn new(rule: &str, column: Option<&str>, detail: impl Into<String>) -> Self {
        Reason {
            rule: rule.to_string(),
            column: column.map(str::to_string),
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// One value per contract column, in contract order (derived columns included).
    pub values: Vec<Value>,
    /// Input fields the contract does not name, as a JSON object (`None` when there were none).
    pub rescued: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub stage: Stage,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Valid(Row),
    Rejected(Rejection),
}

impl Contract {
    /// Checks one JSON text (an event body, a JSON line).
    pub fn check_json(&self, raw: &str) -> Verdict {
        match serde_json::from_str::<Json>(raw) {
            Ok(Json::Object(fields)) => self.check_fields(fields),
            Ok(other) => reject(
                Stage::Decode,
                "json_object",
                format!("expected a JSON object, got {}", json_kind(&other)),
            ),
            Err(e) => reject(Stage::Decode, "json", format!("not valid JSON: {e}")),
        }
    }

    /// Checks one record given as named fields; reports every failing rule, not the first.
    pub fn check_fields(&self, fields: Map<String, Json>) -> Verdict {
        self.check_record(fields, &[])
    }

    /// Like [`Contract::check_fields`], with the typed delivery metadata that
    /// `from = "metadata"` columns read (a name absent from `metadata` reads as null). Takes the
    /// fields by value: values move into the row, and what is left is the rescued remainder.
    pub fn check_record(&self, mut fields: Map<String, Json>, metadata: &[(&str, Value)]) -> Verdict {
        let body = (self.columns.iter())
            .map(|column| {
                if column.derive.is_some() || column.from_metadata {
                    return Ok(Value::Null);
                }
                match fields.remove(column.input_field()) {
                    Some(Json::String(text)) if column.list_json && self.input == InputKind::Text => {
                        serde_json::from_str::<Json>(&text)
                            .map_err(|e| format!("not a JSON array: {e}"))
                            .and_then(|json| convert_owned(Some(json), column.ty, InputKind::Json))
                    }
                    raw => convert_owned(raw, column.ty, self.input),
                }
            })
            .collect();
        self.check_typed(body, metadata, fields)
    }

    /// Like [`Contract::check_json`] for the common case, without building a JSON tree: the
    /// body's fields are typed straight into values by the contract (`fast_json`). Anything
    /// unusual (not an object, a value of another JSON type than its column's, a date that does
    /// not parse) goes through `check_json`, so the verdict and its reasons are the same either
    /// way (a property test holds them equal).
    pub fn check_json_with(&self, raw: &str, metadata: &[(&str, Value)]) -> Verdict {
        if self.input == InputKind::Json
            && let Some((body, unknown)) = crate::contract::fast_json::typed_fields(self, raw)
        {
            return self.check_typed(body, metadata, unknown);
        }
        match serde_json::from_str::<Json>(raw) {
            Ok(Json::Object(map)) => self.check_record(map, metadata),
            _ => self.check_json(raw),
        }
    }

    /// The rest of a check, once the body's columns are typed (`body`: one result per column,
    /// ignored for derived and metadata columns) and `unknown` holds the fields no column took.
    fn check_typed(
        &self,
        body: Vec<Result<Value, String>>,
        metadata: &[(&str, Value)],
        unknown: Map<String, Json>,
    ) -> Verdict {
        let mut reasons: Vec<(Stage, Reason)> = Vec::new();
        let mut values = Vec::with_capacity(self.columns.len());
        let mut typed = vec![true; self.columns.len()];

        for ((i, column), from_body) in self.columns.iter().enumerate().zip(body) {
            if column.derive.is_some() {
                values.push(Value::Null);
                continue;
            }
            let converted = if column.from_metadata {
                match metadata.iter().find(|(name, _)| *name == column.name) {
                    None => Ok(Value::Null),
                    Some((_, v)) if fits(v, column.ty) => Ok(v.clone()),
                    Some((_, v)) => Err(format!("metadata value {} is not {}", v.render(), column.ty.name())),
                }
            } else {
                from_body
            };
            match converted {
                Ok(v) => values.push(v),
                Err(detail) => {
                    reasons.push((Stage::Schema, Reason::new("type", Some(&column.name), detail)));
                    values.push(Value::Null);
                    typed[i] = false;
                }
            }
        }
        for (i, column) in self.columns.iter().enumerate() {
            if let Some(derive) = column.derive {
                values[i] = derive_value(derive, &values);
            }
        }

        for (i, column) in self.columns.iter().enumerate() {
            if !typed[i] {
                continue;
            }
            let v = &values[i];
            let name = Some(column.name.as_str());
            if v.is_null() {
                if column.required {
                    reasons.push((Stage::Schema, Reason::new("required", name, "missing or null")));
                }
                continue;
            }
            let mut failed = Vec::new();
            check_value(column, v, &mut failed);
            reasons.extend(failed.into_iter().map(|r| (Stage::Rule, r)));
        }

        for rule in &self.rules {
            // A rule over a column that could not be typed says nothing new: the type reason does.
            if expr::eval(&rule.expr, &values) == Some(false) {
                let detail = format!("{} is false", rule.check);
                reasons.push((Stage::Rule, Reason::new(&rule.name, None, detail)));
            }
        }

        // What the columns did not take is unknown to the contract.
        if !unknown.is_empty() && self.unknown_fields == UnknownFields::Quarantine {
            for field in unknown.keys() {
                reasons.push((
                    Stage::Schema,
                    Reason::new("unknown_field", Some(field), "field is not in the contract"),
                ));
            }
        }

        if let Some(stage) = reasons.iter().map(|(s, _)| *s).min() {
            return Verdict::Rejected(Rejection {
                stage,
                reasons: reasons.into_iter().map(|(_, r)| r).collect(),
            });
        }
        let rescued = (!unknown.is_empty()).then(|| Json::Object(unknown).to_string());
        Verdict::Valid(Row { values, rescued })
    }
}

/// The column's value rules (min, max, one_of, regex, max_length) on a typed, non-null value.
pub(crate) fn check_value(column: &Column, v: &Value, out: &mut Vec<Reason>) {
    let name = Some(column.name.as_str());
    if let (Some(min), Some(x)) = (&column.min, v.as_f64())
        && min.as_f64().is_some_and(|m| x < m)
    {
        out.push(Reason::new(
            "min",
            name,
            format!("{} is below the minimum {}", v.render(), min.render()),
        ));
    }
    if let (Some(max), Some(x)) = (&column.max, v.as_f64())
        && max.as_f64().is_some_and(|m| x > m)
    {
        out.push(Reason::new(
            "max",
            name,
            format!("{} is above the maximum {}", v.render(), max.render()),
        ));
    }
    match v {
        Value::String(s) => check_str(column, s, out),
        Value::List(items) => check_length(column, items.len(), out),
        Value::IntList(items) => check_length(column, items.len(), out),
        _ => {}
    }
}

/// The string rules of a column, on borrowed text (the text fast path calls it without building
/// a `Value`).
pub(crate) fn check_str(column: &Column, s: &str, out: &mut Vec<Reason>) {
    let name = Some(column.name.as_str());
    if let Some(allowed) = &column.one_of
        && !allowed.iter().any(|a| a == s)
    {
        let detail = format!("{:?} is not one of {}", shorten(s, 60), allowed.join(", "));
        out.push(Reason::new("one_of", name, detail));
    }
    let matches = |re: &regex::Regex| match &column.regex_prefix_digits {
        Some(prefix) => s
            .strip_prefix(prefix.as_str())
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())),
        None => re.is_match(s),
    };
    if let Some(re) = &column.regex
        && !matches(re)
    {
        let detail = format!("{:?} does not match /{}/", shorten(s, 60), re.as_str());
        out.push(Reason::new("regex", name, detail));
    }
    if column.max_length.is_some() {
        check_length(column, s.chars().count(), out);
    }
}

pub(crate) fn check_length(column: &Column, len: usize, out: &mut Vec<Reason>) {
    if let Some(max_len) = column.max_length
        && len > max_len
    {
        let detail = format!("length {len} is above the maximum {max_len}");
        out.push(Reason::new("max_length", Some(column.name.as_str()), detail));
    }
}

fn reject(stage: Stage, rule: &str, detail: String) -> Verdict {
    Verdict::Rejected(Rejection {
        stage,
        reasons: vec![Reason::new(rule, None, detail)],
    })
}

fn derive_value(derive: Derive, values: &[Value]) -> Value {
    let (Derive::Date(i) | Derive::Hour(i) | Derive::Year(i) | Derive::Month(i)) = derive;
    let date = match values.get(i) {
        Some(Value::Timestamp(t)) => t.date_naive(),
        Some(Value::Date(d)) => *d,
        _ => return Value::Null,
    };
    match (derive, values.get(i)) {
        (Derive::Date(_), _) => Value::Date(date),
        (Derive::Hour(_), Some(Value::Timestamp(t))) => Value::Int32(t.hour() as i32),
        (Derive::Hour(_), _) => Value::Null,
        (Derive::Year(_), _) => Value::Int32(date.year()),
        (Derive::Month(_), _) => Value::Int32(date.month() as i32),
    }
}
