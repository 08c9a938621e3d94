//! Deterministic object names: derived only from the identity of the input, so a retried
//! invocation writes the same names (and, with the same input, the same bytes).

use std::fmt::Write;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use crate::contract::Contract;
use crate::contract::value::Value;

/// A short, stable id for an input identity (a bronze path, an Event Hub range, ...).
pub fn stable_id(identity: &str) -> String {
    let digest = Sha256::digest(identity.as_bytes());
    digest.iter().take(8).fold(String::with_capacity(16), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `silver/<source>/<table>/<col>=<value>/.../part-<id>.parquet`
pub fn silver_part(contract: &Contract, partition: &[Value], part_id: &str) -> String {
    let mut path = format!("silver/{}/{}/", contract.source, contract.table);
    for (&column, value) in contract.partition_by.iter().zip(partition) {
        let name = contract.columns.get(column).map_or("unknown", |c| c.name.as_str());
        let _ = write!(path, "{name}={}/", hive_value(value));
    }
    let _ = write!(path, "part-{part_id}.parquet");
    path
}

/// `quarantine/<source>/<table>/date=YYYY-MM-DD/part-<id>.jsonl`
pub fn quarantine_part(contract: &Contract, date: NaiveDate, part_id: &str) -> String {
    format!(
        "quarantine/{}/{}/date={}/part-{part_id}.jsonl",
        contract.source,
        contract.table,
        date.format("%Y-%m-%d")
    )
}

/// `ops/runs/<pipeline>/date=YYYY-MM-DD/<run_id>.json`
pub fn run_manifest(pipeline: &str, date: NaiveDate, run_id: &str) -> String {
    format!("ops/runs/{pipeline}/date={}/{run_id}.json", date.format("%Y-%m-%d"))
}

/// Hive partition value: readers (Spark, DuckDB, pyarrow) percent-decode, so escape what would
/// break a path segment.
pub fn hive_value(value: &Value) -> String {
    if value.is_null() {
        return "__HIVE_DEFAULT_PARTITION__".into();
    }
    let text = value.render();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ') || !c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    if out == "." || out == ".." {
        return out.replace('.', "%2E");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(stable_id("bronze/a"), stable_id("bronze/a"));
        assert_ne!(stable_id("bronze/a"), stable_id("bronze/b"));
        assert_eq!(stable_id("x").len(), 16);
    }

    #[test]
    fn hive_values_cannot_escape_their_segment() {
        assert_eq!(hive_value(&Value::String("a/b=c".into())), "a%2Fb%3Dc");
        assert_eq!(hive_value(&Value::String("..".into())), "%2E%2E");
        assert_eq!(hive_value(&Value::Null), "__HIVE_DEFAULT_PARTITION__");
        assert_eq!(hive_value(&Value::Int32(7)), "7");
    }
}
