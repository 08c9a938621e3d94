//! The plan of one input: every object to write (bronze, silver parts, quarantine part) with its
//! bytes, the counts and the manifest's facts. The app applies it; nothing here writes.

use chrono::NaiveDate;

use crate::contract::Contract;
use crate::enrich::Dimension;
use crate::output::manifest::{Counts, OutputKind};
use crate::output::naming::{quarantine_part, silver_part};
use crate::output::silver::{EncodeError, Lineage, encode_parquet, partition};
use crate::routing::quarantine::encode_jsonl;
use crate::routing::route::{Routed, RunContext};

/// One object to write. Bronze is written create-only; everything else has a deterministic
/// name and deterministic bytes, so overwriting it on a retry changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWrite {
    pub path: String,
    pub kind: OutputKind,
    pub rows: Option<u64>,
    pub bytes: bytes::Bytes,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub run_id: String,
    pub pipeline: String,
    /// Date of the input (not of the attempt), so a retry rewrites the same manifest.
    pub date: chrono::NaiveDate,
    pub inputs: Vec<String>,
    pub writes: Vec<PlannedWrite>,
    pub counts: Counts,
    pub contracts: std::collections::BTreeMap<String, u32>,
    /// Lines for the invocation's `Logs` (counts, what went to quarantine and why).
    pub logs: Vec<String>,
    /// De-duplication ledger entries to merge, by bucket path; written after the data.
    pub ledger_updates: std::collections::BTreeMap<String, crate::routing::ledger::LedgerBucket>,
    /// Set when the input is landed whole in quarantine after failing every attempt.
    pub poison: Option<crate::output::manifest::Poison>,
}

/// The silver parts (one per partition value) and the quarantine part of a routed input, named
/// from `part_id` (the input's identity). Shared by every pipeline; `dimension` enriches the
/// rows of a contract with `enrich_as_of`.
pub fn routed_writes(
    contract: &Contract,
    routed: &Routed,
    ctx: &RunContext,
    part_id: &str,
    quarantine_date: NaiveDate,
    dimension: Option<&Dimension>,
) -> Result<Vec<PlannedWrite>, EncodeError> {
    let lineage = Lineage {
        ingested_at: ctx.ingested_at,
        run_id: &ctx.run_id,
        dimension,
    };
    let mut writes = Vec::new();
    for (values, rows) in partition(contract, &routed.silver).into_values() {
        writes.push(PlannedWrite {
            path: silver_part(contract, &values, part_id),
            kind: OutputKind::Silver,
            rows: Some(rows.len() as u64),
            bytes: encode_parquet(contract, &rows, &lineage)?.into(),
        });
    }
    if !routed.quarantine.is_empty() {
        writes.push(PlannedWrite {
            path: quarantine_part(contract, quarantine_date, part_id),
            kind: OutputKind::Quarantine,
            rows: Some(routed.quarantine.len() as u64),
            bytes: encode_jsonl(&routed.quarantine).into(),
        });
    }
    Ok(writes)
}
