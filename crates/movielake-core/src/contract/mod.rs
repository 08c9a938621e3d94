//! The contract: declared columns, types and rules (`contracts/<name>.toml`), typed values, and
//! the check of one record against them. Knows no source, no routing, no output format.
//!
//! Contracts are checked once at start-up.
//! Every problem is reported as `file:line:column: message`, so a data engineer who mistyped a
//! rule sees exactly where, before any record is read.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

pub mod expr;
mod fast_json;
pub mod timestamp;
pub mod validate;
pub mod value;

use expr::{Columns, Expr};
use value::{ColumnType, InputKind, Value, convert};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

impl std::error::Error for ContractError {}

/// What happens to input fields the contract does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// Keep them as a JSON object in the `_rescued` column.
    #[default]
    Rescue,
    /// Send the record to quarantine.
    Quarantine,
}

/// A column computed from another one (used for event-time partitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derive {
    Date(usize),
    Hour(usize),
    Year(usize),
    Month(usize),
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub required: bool,
    pub min: Option<Value>,
    pub max: Option<Value>,
    pub one_of: Option<Vec<String>>,
    pub regex: Option<Regex>,
    /// `regex` is `^<literal>[0-9]+$` (the shape of ids like `tt0000001`): checked with a byte
    /// loop, which is several times cheaper per value than the regex engine.
    pub regex_prefix_digits: Option<String>,
    pub max_length: Option<usize>,
    pub derive: Option<Derive>,
    /// Read from the record's delivery metadata (enqueue time, sequence number), not its body.
    pub from_metadata: bool,
    /// Name of the input field when it differs from the column name (IMDb's `primaryTitle`).
    pub field: Option<String>,
    /// A list column whose text is a JSON array (IMDb `characters`) rather than comma-separated.
    pub list_json: bool,
    /// Min/max (and null count) statistics in the silver Parquet. They cost a comparison per
    /// value when written and only help readers that filter by range; free text, lists and small
    /// enums spread over every row group gain nothing from them.
    pub statistics: bool,
    pub description: Option<String>,
}

impl Column {
    /// The input field this column reads.
    pub fn input_field(&self) -> &str {
        self.field.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone)]
pub struct RowRule {
    pub name: String,
    pub check: String,
    pub expr: Expr,
}

#[derive(Debug, Clone)]
pub struct Contract {
    pub name: String,
    pub version: u32,
    /// `silver/<source>/<table>/`, `quarantine/<source>/<table>/`.
    pub source: String,
    pub table: String,
    pub input: InputKind,
    pub columns: Vec<Column>,
    pub key: Vec<usize>,
    pub partition_by: Vec<usize>,
    pub unknown_fields: UnknownFields,
    pub rules: Vec<RowRule>,
    /// For tables kept with history (SCD type 2): the columns whose change opens a new
    /// version; a change to any other column updates the open one. Empty: every column.
    pub track_history: Vec<usize>,
    /// For an event table enriched with the subscription dimension (issue 17): its user
    /// column (string) and the time column (timestamp) the lookup is as of.
    pub enrich_as_of: Option<(usize, usize)>,
    /// Where it was loaded from, for messages.
    pub file: String,
}

impl Contract {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Columns stored in silver files (partition columns live in the Hive path instead).
    pub fn stored_columns(&self) -> impl Iterator<Item = (usize, &Column)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.partition_by.contains(i))
    }

    /// Parses and checks a contract. `file` names it in errors (`contracts/watch_events.toml`).
    pub fn from_toml(file: &str, text: &str) -> Result<Contract, ContractError> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = line_col(text, span.map_or(0, |s| s.start));
            ContractError {
                file: file.to_string(),
                line,
                column,
                message,
            }
        };
        let raw: RawContract = toml::from_str(text).map_err(|e| at(e.span(), e.message().trim().to_string()))?;
        let stem = file.rsplit('/').next().unwrap_or(file).trim_end_matches(".toml");
        if raw.name.get_ref() != stem {
            return Err(at(
                Some(raw.name.span()),
                format!("name '{}' must match the file name '{stem}.toml'", raw.name.get_ref()),
            ));
        }
        for (field, value) in [("name", &raw.name), ("source", &raw.source), ("table", &raw.table)] {
            if !is_identifier(value.get_ref()) {
                let msg = format!("{field} must be lowercase letters, digits and '_'");
                return Err(at(Some(value.span()), msg));
            }
        }

        let mut columns: Vec<Column> = Vec::with_capacity(raw.columns.len());
        let mut seen = HashSet::new();
        for rc in &raw.columns {
            let name = rc.name.get_ref();
            if !is_identifier(name) || name.starts_with('_') {
                let msg = format!(
                    "column name '{name}' must be lowercase letters, digits and '_' (a leading '_' is reserved)"
                );
                return Err(at(Some(rc.name.span()), msg));
            }
            if !seen.insert(name.clone()) {
                return Err(at(Some(rc.name.span()), format!("column '{name}' is declared twice")));
            }
            columns.push(check_column(rc, &columns).map_err(|(span, msg)| at(Some(span), msg))?);
        }
        if columns.is_empty() {
            return Err(at(None, "a contract needs at least one [[columns]] entry".into()));
        }

        let resolve = |names: &Spanned<Vec<String>>, what: &str| -> Result<Vec<usize>, ContractError> {
            names
                .get_ref()
                .iter()
                .map(|n| {
                    columns
                        .iter()
                        .position(|c| &c.name == n)
                        .ok_or_else(|| at(Some(names.span()), format!("{what} names unknown column '{n}'")))
                })
                .collect()
        };
        let key = resolve(&raw.key, "key")?;
        let partition_by = resolve(&raw.partition_by, "partition_by")?;
        let track_history = resolve(&raw.track_history, "track_history")?;
        let enrich_as_of = match resolve(&raw.enrich_as_of, "enrich_as_of")?[..] {
            [] => None,
            [user, at] if columns[user].ty == ColumnType::String && columns[at].ty == ColumnType::Timestamp => {
                Some((user, at))
            }
            _ => {
                return Err(at(
                    Some(raw.enrich_as_of.span()),
                    "enrich_as_of names two columns: the user (string) and the event time (timestamp)".into(),
                ));
            }
        };
        for &p in &partition_by {
            if columns[p].ty.is_list() {
                return Err(at(
                    Some(raw.partition_by.span()),
                    "cannot partition by a list column".into(),
                ));
            }
        }

        let lookup = ColumnLookup(&columns);
        let mut rules = Vec::with_capacity(raw.rules.len());
        let mut rule_names = HashSet::new();
        for rr in &raw.rules {
            if !rule_names.insert(rr.name.get_ref().clone()) {
                return Err(at(
                    Some(rr.name.span()),
                    format!("rule '{}' is declared twice", rr.name.get_ref()),
                ));
            }
            let expr = expr::compile(rr.check.get_ref(), &lookup)
                .map_err(|e| at(Some(rr.check.span()), format!("rule '{}': {e}", rr.name.get_ref())))?;
            rules.push(RowRule {
                name: rr.name.get_ref().clone(),
                check: rr.check.get_ref().clone(),
                expr,
            });
        }

        Ok(Contract {
            name: raw.name.into_inner(),
            version: raw.version,
            source: raw.source.into_inner(),
            table: raw.table.into_inner(),
            input: raw.input,
            columns,
            key,
            partition_by,
            unknown_fields: raw.unknown_fields,
            rules,
            track_history,
            enrich_as_of,
            file: file.to_string(),
        })
    }
}

/// Contracts by name, loaded together so one malformed file stops start-up.
#[derive(Debug, Clone, Default)]
pub struct ContractSet {
    contracts: BTreeMap<String, Contract>,
}

impl ContractSet {
    /// `files` are `(path for messages, text)`.
    pub fn load<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, ContractError> {
        let mut contracts = BTreeMap::new();
        for (file, text) in files {
            let c = Contract::from_toml(file, text)?;
            contracts.insert(c.name.clone(), c);
        }
        Ok(ContractSet { contracts })
    }

    pub fn get(&self, name: &str) -> Option<&Contract> {
        self.contracts.get(name)
    }

    /// The set with `contract` in place of the one of the same name.
    pub fn with(mut self, contract: Contract) -> Self {
        self.contracts.insert(contract.name.clone(), contract);
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &Contract> {
        self.contracts.values()
    }

    pub fn len(&self) -> usize {
        self.contracts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contracts.is_empty()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    name: Spanned<String>,
    version: u32,
    source: Spanned<String>,
    table: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    input: InputKind,
    #[serde(default = "empty_list")]
    key: Spanned<Vec<String>>,
    #[serde(default = "empty_list")]
    partition_by: Spanned<Vec<String>>,
    #[serde(default = "empty_list")]
    track_history: Spanned<Vec<String>>,
    #[serde(default = "empty_list")]
    enrich_as_of: Spanned<Vec<String>>,
    #[serde(default)]
    unknown_fields: UnknownFields,
    #[serde(default)]
    columns: Vec<RawColumn>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

fn empty_list() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    #[serde(default)]
    required: bool,
    min: Option<Spanned<toml::Value>>,
    max: Option<Spanned<toml::Value>>,
    one_of: Option<Spanned<Vec<String>>>,
    regex: Option<Spanned<String>>,
    max_length: Option<Spanned<usize>>,
    derive: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    field: Option<Spanned<String>>,
    list_format: Option<Spanned<String>>,
    #[serde(default = "yes")]
    statistics: bool,
    description: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    check: Spanned<String>,
}

type Span = std::ops::Range<usize>;

fn check_column(rc: &RawColumn, earlier: &[Column]) -> Result<Column, (Span, String)> {
    let name = rc.name.get_ref();
    let ty = ColumnType::parse(rc.ty.get_ref()).ok_or_else(|| {
        let msg = format!(
            "column '{name}': unknown type '{}' (one of: {})",
            rc.ty.get_ref(),
            ColumnType::NAMES
        );
        (rc.ty.span(), msg)
    })?;
    let bound = |b: &Option<Spanned<toml::Value>>, which: &str| -> Result<Option<Value>, (Span, String)> {
        let Some(b) = b else { return Ok(None) };
        let err = |why: String| (b.span(), format!("column '{name}': {which} {why}"));
        if !(ty.is_numeric() || matches!(ty, ColumnType::Date | ColumnType::Timestamp)) {
            return Err(err(format!("does not apply to type {}", ty.name())));
        }
        let json = match b.get_ref() {
            toml::Value::Integer(i) => serde_json::Value::from(*i),
            toml::Value::Float(f) => serde_json::Value::from(*f),
            toml::Value::String(s) => serde_json::Value::String(s.clone()),
            toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
            other => return Err(err(format!("must be a number or a date, not {}", other.type_str()))),
        };
        let kind = if json.is_string() {
            InputKind::Text
        } else {
            InputKind::Json
        };
        let target = if ty.is_numeric() { ColumnType::Float64 } else { ty };
        convert(Some(&json), target, kind).map(Some).map_err(err)
    };
    let regex = match &rc.regex {
        None => None,
        Some(r) if ty != ColumnType::String => {
            return Err((
                r.span(),
                format!("column '{name}': regex applies to string columns only"),
            ));
        }
        Some(r) => Some(Regex::new(r.get_ref()).map_err(|e| {
            (
                r.span(),
                format!(
                    "column '{name}': invalid regex: {}",
                    e.to_string().lines().last().unwrap_or("")
                ),
            )
        })?),
    };
    if let Some(one_of) = &rc.one_of
        && ty != ColumnType::String
    {
        return Err((
            one_of.span(),
            format!("column '{name}': one_of applies to string columns only"),
        ));
    }
    if let Some(ml) = &rc.max_length
        && !(ty == ColumnType::String || ty.is_list())
    {
        return Err((
            ml.span(),
            format!("column '{name}': max_length applies to strings and lists only"),
        ));
    }
    let derive = match &rc.derive {
        None => None,
        Some(d) => {
            Some(parse_derive(d.get_ref(), ty, earlier).map_err(|e| (d.span(), format!("column '{name}': {e}")))?)
        }
    };
    let from_metadata = match &rc.from {
        None => false,
        Some(f) if f.get_ref() == "body" => false,
        Some(f) if f.get_ref() == "metadata" => true,
        Some(f) => {
            return Err((
                f.span(),
                format!("column '{name}': from must be \"body\" or \"metadata\""),
            ));
        }
    };
    if from_metadata && derive.is_some() {
        return Err((
            rc.name.span(),
            format!("column '{name}': a derived column cannot also come from metadata"),
        ));
    }
    let list_json = match &rc.list_format {
        None => false,
        Some(f) if !ty.is_list() => {
            return Err((
                f.span(),
                format!("column '{name}': list_format applies to list columns only"),
            ));
        }
        Some(f) if f.get_ref() == "comma" => false,
        Some(f) if f.get_ref() == "json" => true,
        Some(f) => {
            return Err((
                f.span(),
                format!("column '{name}': list_format must be \"comma\" or \"json\""),
            ));
        }
    };
    if let Some(f) = &rc.field
        && (f.get_ref().is_empty() || from_metadata || derive.is_some())
    {
        return Err((
            f.span(),
            format!("column '{name}': field names a non-empty input field, for columns read from the body"),
        ));
    }
    Ok(Column {
        name: name.clone(),
        from_metadata,
        field: rc.field.as_ref().map(|f| f.get_ref().clone()),
        list_json,
        statistics: rc.statistics,
        ty,
        required: rc.required,
        min: bound(&rc.min, "min")?,
        max: bound(&rc.max, "max")?,
        one_of: rc.one_of.as_ref().map(|o| o.get_ref().clone()),
        regex_prefix_digits: rc.regex.as_ref().and_then(|r| prefix_digits(r.get_ref())),
        regex,
        max_length: rc.max_length.as_ref().map(|m| *m.get_ref()),
        derive,
        description: rc.description.clone(),
    })
}

/// The literal of a `^<literal>[0-9]+$` pattern (letters, digits, '-' and '_' only).
fn prefix_digits(pattern: &str) -> Option<String> {
    let literal = pattern.strip_prefix('^')?.strip_suffix("[0-9]+$")?;
    literal
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        .then(|| literal.to_string())
}

/// `date(col)`, `hour(col)`, `year(col)`, `month(col)` of a date/timestamp column declared above.
fn parse_derive(text: &str, ty: ColumnType, earlier: &[Column]) -> Result<Derive, String> {
    let usage =
        "derive must be date(<col>), hour(<col>), year(<col>) or month(<col>) of an earlier timestamp or date column";
    let (func, rest) = text.trim().split_once('(').ok_or(usage)?;
    let arg = rest.strip_suffix(')').ok_or(usage)?.trim();
    let (index, source) = earlier
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == arg)
        .ok_or_else(|| format!("derive refers to '{arg}', which is not a column declared above it"))?;
    let (derive, wants) = match func.trim() {
        "date" => (Derive::Date(index), ColumnType::Date),
        "hour" => (Derive::Hour(index), ColumnType::Int32),
        "year" => (Derive::Year(index), ColumnType::Int32),
        "month" => (Derive::Month(index), ColumnType::Int32),
        _ => return Err(usage.into()),
    };
    if !matches!(source.ty, ColumnType::Date | ColumnType::Timestamp)
        || (func.trim() == "hour" && source.ty != ColumnType::Timestamp)
    {
        return Err(format!(
            "cannot derive {}() from '{arg}' of type {}",
            func.trim(),
            source.ty.name()
        ));
    }
    if ty != wants {
        return Err(format!(
            "{}() gives {}, but the column is declared {}",
            func.trim(),
            wants.name(),
            ty.name()
        ));
    }
    Ok(derive)
}

struct ColumnLookup<'a>(&'a [Column]);

impl Columns for ColumnLookup<'_> {
    fn lookup(&self, name: &str) -> Option<(usize, ColumnType)> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
            .map(|(i, c)| (i, c.ty))
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
