//! The quarantine record: one JSON-lines format for every source.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::contract::validate::{Reason, Stage};

/// Where a record came from: the object, and the line/row or the Event Hub position in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SourcePointer {
    pub object: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<i64>,
}

impl SourcePointer {
    pub fn line(object: &str, line: u64) -> Self {
        SourcePointer {
            object: object.to_string(),
            line: Some(line),
            ..Default::default()
        }
    }

    pub fn event(object: &str, partition: &str, sequence_number: i64) -> Self {
        SourcePointer {
            object: object.to_string(),
            partition: Some(partition.to_string()),
            sequence_number: Some(sequence_number),
            ..Default::default()
        }
    }
}

impl std::fmt::Display for SourcePointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.object)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(row) = self.row {
            write!(f, " row {row}")?;
        }
        if let (Some(p), Some(s)) = (&self.partition, self.sequence_number) {
            write!(f, " partition {p} sequence {s}")?;
        }
        Ok(())
    }
}

/// One rejected record. Field order is the on-disk order: what failed first, the raw record last.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineRecord {
    pub dataset: String,
    pub contract_version: u32,
    pub stage: Stage,
    pub reasons: Vec<Reason>,
    pub source: SourcePointer,
    pub run_id: String,
    #[serde(serialize_with = "rfc3339")]
    pub time: DateTime<Utc>,
    /// The record exactly as received (text, not re-encoded JSON).
    pub raw: String,
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// Encodes records as JSON lines (one per record, `\n`-terminated).
pub fn encode_jsonl(records: &[QuarantineRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 256);
    for record in records {
        // Serializing plain strings and numbers cannot fail; an error here would be a bug.
        if let Ok(line) = serde_json::to_vec(record) {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
    }
    out
}
