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

/// `silver/<source>/<table>`: the Delta table a contract's silver rows live in.
pub fn silver_table(contract: &Contract) -> String {
    format!("silver/{}/{}", contract.source, contract.table)
}

/// A silver part named by [`silver_part`], read back: its table, its path inside the table and
/// its partition values as Delta's log records them (the text of the value, not its path form;
/// `None` for null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePart {
    pub table: String,
    pub file: String,
    pub partition_values: Vec<(String, Option<String>)>,
}

/// The inverse of [`silver_part`]; `None` for a path that is not a silver part.
pub fn table_part(path: &str) -> Option<TablePart> {
    let mut segments = path.split('/');
    let (container, source, table) = (segments.next()?, segments.next()?, segments.next()?);
    if container != "silver" || source.is_empty() || table.is_empty() {
        return None;
    }
    let rest: Vec<&str> = segments.collect();
    let (name, folders) = rest.split_last()?;
    if !name.ends_with(".parquet") {
        return None;
    }
    let partition_values = folders
        .iter()
        .map(|folder| {
            let (column, value) = folder.split_once('=')?;
            let value = (value != "__HIVE_DEFAULT_PARTITION__").then(|| percent_decode(value));
            Some((column.to_string(), value))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(TablePart {
        table: format!("silver/{source}/{table}"),
        file: rest.join("/"),
        partition_values,
    })
}

/// Undoes [`hive_value`]'s escaping (`%XX`); anything else is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn a_silver_part_reads_back_as_its_table_file_and_partition_values() {
        let contract = Contract::from_toml(
            "p.toml",
            "name = \"p\"\nversion = 1\nsource = \"s\"\ntable = \"t\"\npartition_by = [\"d\", \"k\", \"n\"]\n\
             [[columns]]\nname = \"d\"\ntype = \"date\"\n[[columns]]\nname = \"k\"\ntype = \"string\"\n\
             [[columns]]\nname = \"n\"\ntype = \"int32\"\n",
        )
        .expect("contract");
        let date = chrono::NaiveDate::from_ymd_opt(2026, 12, 4).expect("date");
        let values = [Value::Date(date), Value::String("a/b=c%".into()), Value::Null];
        let path = silver_part(&contract, &values, "0123");
        let part = table_part(&path).expect("a silver part");
        assert_eq!(part.table, silver_table(&contract));
        assert_eq!(format!("{}/{}", part.table, part.file), path);
        assert_eq!(
            part.partition_values,
            vec![
                ("d".to_string(), Some("2026-12-04".to_string())),
                ("k".to_string(), Some("a/b=c%".to_string())),
                ("n".to_string(), None),
            ]
        );
        assert_eq!(table_part("quarantine/s/t/date=2026-12-04/part-1.jsonl"), None);
        assert_eq!(table_part("silver/s/t/notapartition/part-1.parquet"), None);
    }

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
