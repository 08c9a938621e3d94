//! Routing a batch: every record ends in silver or quarantine, or is a counted exact duplicate.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use crate::contract::Contract;
use crate::contract::validate::{Reason, Rejection, Row, Stage, Verdict};
use crate::contract::value::Value;
use crate::routing::quarantine::{QuarantineRecord, SourcePointer};

/// One input record: its exact text, and optionally its fields already split (text sources).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub raw: String,
    pub fields: Option<Map<String, Json>>,
    /// Typed delivery metadata for `from = "metadata"` columns (enqueue time, sequence number).
    pub metadata: Vec<(&'static str, Value)>,
    pub pointer: SourcePointer,
}

impl SourceRecord {
    pub fn json(raw: impl Into<String>, pointer: SourcePointer) -> Self {
        SourceRecord {
            raw: raw.into(),
            fields: None,
            metadata: Vec::new(),
            pointer,
        }
    }
}

/// What a run knows about itself; the same for every retry of the same input.
#[derive(Debug, Clone, PartialEq)]
pub struct RunContext {
    pub run_id: String,
    /// When the input entered the platform (Event Hub enqueue time, bronze landing time).
    pub ingested_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub row: Row,
    pub pointer: SourcePointer,
    /// Hash of the raw text, to tell an exact repeat from a different record with the same key.
    pub body_hash: u64,
    /// Hash of the contract key ([`key_text`]), `None` without a key.
    pub key_hash: Option<u128>,
}

/// For maps keyed by hashes that are already well mixed (xxh3): no second hashing.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrehashedKey(u64);

impl std::hash::Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
    fn write_u128(&mut self, n: u128) {
        self.0 ^= (n as u64) ^ ((n >> 64) as u64);
    }
    fn write_i64(&mut self, n: i64) {
        // Sequence numbers are small and dense: spread them (Fibonacci hashing).
        self.0 ^= (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type PrehashedMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<PrehashedKey>>;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Routed {
    pub silver: Vec<Accepted>,
    pub quarantine: Vec<QuarantineRecord>,
    pub duplicates_dropped: u64,
}

impl Routed {
    pub fn records_in(&self) -> u64 {
        self.silver.len() as u64 + self.quarantine.len() as u64 + self.duplicates_dropped
    }
}

/// Validates and de-duplicates a batch by the contract key. An exact repeat of a record already
/// accepted is dropped and counted; the same key with a different body is quarantined (`dedupe`).
pub fn route(contract: &Contract, records: impl IntoIterator<Item = SourceRecord>, ctx: &RunContext) -> Routed {
    let records = records.into_iter();
    let mut routed = Routed {
        silver: Vec::with_capacity(records.size_hint().0),
        ..Routed::default()
    };
    // key -> index in routed.silver. An exact duplicate is byte for byte the same record (what a
    // retrying producer sends); the ledger across batches uses the same definition.
    let mut seen: PrehashedMap<u128, usize> =
        PrehashedMap::with_capacity_and_hasher(routed.silver.capacity(), Default::default());

    for mut record in records {
        let verdict = match record.fields.take() {
            Some(fields) => contract.check_record(fields, &record.metadata),
            None => contract.check_json_with(&record.raw, &record.metadata),
        };
        let row = match verdict {
            Verdict::Valid(row) => row,
            Verdict::Rejected(rejection) => {
                routed.quarantine.push(quarantine(contract, ctx, record, rejection));
                continue;
            }
        };
        let body_hash = crate::routing::ledger::body_hash(&record.raw);
        let key_hash = record_key_hash(contract, &row.values);
        if let Some(key) = key_hash {
            if let Some(&first) = seen.get(&key) {
                let first = &routed.silver[first];
                if first.body_hash == body_hash {
                    routed.duplicates_dropped += 1;
                } else {
                    let detail = format!("same key as {} but a different body", first.pointer);
                    let rejection = Rejection {
                        stage: Stage::Dedupe,
                        reasons: vec![Reason::new("duplicate_key", None, detail)],
                    };
                    routed.quarantine.push(quarantine(contract, ctx, record, rejection));
                }
                continue;
            }
            seen.insert(key, routed.silver.len());
        }
        routed.silver.push(Accepted {
            row,
            pointer: record.pointer,
            body_hash,
            key_hash,
        });
    }
    routed
}

/// Builds a quarantine record for a record refused outside the contract check (for instance a
/// batch whose metadata cannot be matched to its events).
pub fn quarantine(
    contract: &Contract,
    ctx: &RunContext,
    record: SourceRecord,
    rejection: Rejection,
) -> QuarantineRecord {
    QuarantineRecord {
        dataset: contract.name.clone(),
        contract_version: contract.version,
        stage: rejection.stage,
        reasons: rejection.reasons,
        source: record.pointer,
        run_id: ctx.run_id.clone(),
        time: ctx.ingested_at,
        raw: record.raw,
    }
}

/// The ledger's hash of the record's key ([`key_text`]), without building the text for the
/// usual single text key.
pub(crate) fn record_key_hash(contract: &Contract, values: &[Value]) -> Option<u128> {
    if let [i] = contract.key.as_slice()
        && let Some(Value::String(s)) = values.get(*i)
    {
        return Some(crate::routing::ledger::key_hash(s));
    }
    key_text(contract, values).map(|k| crate::routing::ledger::key_hash(&k))
}

/// The record's key as one string (for the ledger); `None` when the contract has no key or a
/// key column is null.
pub fn key_text(contract: &Contract, values: &[Value]) -> Option<String> {
    if contract.key.is_empty() {
        return None;
    }
    let parts: Option<Vec<String>> = contract
        .key
        .iter()
        .map(|&i| values.get(i).filter(|v| !v.is_null()).map(Value::render))
        .collect();
    parts.map(|p| p.join("\u{1f}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(key: &str) -> Contract {
        let text = format!(
            "name = \"k\"\nversion = 1\nsource = \"s\"\ntable = \"t\"\nkey = [{key}]\n\
             [[columns]]\nname = \"a\"\ntype = \"string\"\n[[columns]]\nname = \"b\"\ntype = \"int64\"\n"
        );
        Contract::from_toml("k.toml", &text).expect("contract")
    }

    /// Ledger objects written by earlier versions hold hashes of the key text: the shortcut for
    /// one text key must give exactly those.
    #[test]
    fn the_key_hash_is_the_hash_of_the_key_text() {
        let rows = [
            vec![Value::String("e-1".into()), Value::Int64(7)],
            vec![Value::String(String::new()), Value::Int64(-1)],
            vec![Value::Null, Value::Int64(3)],
            vec![Value::String("x\u{1f}y".into()), Value::Null],
        ];
        for key in ["\"a\"", "\"b\"", "\"a\", \"b\""] {
            let contract = contract(key);
            for values in &rows {
                let expected = key_text(&contract, values).map(|k| crate::routing::ledger::key_hash(&k));
                assert_eq!(record_key_hash(&contract, values), expected, "key {key}, {values:?}");
            }
        }
        let single = contract("\"a\"");
        assert_eq!(
            record_key_hash(&single, &rows[0]),
            Some(crate::routing::ledger::key_hash("e-1"))
        );
    }
}
