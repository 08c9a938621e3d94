//! Pure pipelines: each turns its input into a [`Plan`] of writes plus counts. The app applies
//! the plan through the lake port (bronze first, manifest last).

pub mod watch_events;

use crate::manifest::{Counts, OutputKind};

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
    pub ledger_updates: std::collections::BTreeMap<String, crate::ledger::LedgerBucket>,
}
