//! Run manifests (`ops/runs/...`): lineage and counts of one run, for on-call and audits.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::routing::route::Routed;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub records_in: u64,
    pub silver: u64,
    pub quarantined: u64,
    pub duplicates_dropped: u64,
    /// Quarantined records per failing rule (a record failing two rules counts under both).
    pub quarantined_by_rule: BTreeMap<String, u64>,
}

impl Counts {
    pub fn of(routed: &Routed) -> Self {
        let mut by_rule = BTreeMap::new();
        for q in &routed.quarantine {
            let mut rules: Vec<&str> = q.reasons.iter().map(|r| r.rule.as_str()).collect();
            rules.sort_unstable();
            rules.dedup();
            for rule in rules {
                *by_rule.entry(rule.to_string()).or_insert(0) += 1;
            }
        }
        Counts {
            records_in: routed.records_in(),
            silver: routed.silver.len() as u64,
            quarantined: routed.quarantine.len() as u64,
            duplicates_dropped: routed.duplicates_dropped,
            quarantined_by_rule: by_rule,
        }
    }

    pub fn add(&mut self, other: &Counts) {
        self.records_in += other.records_in;
        self.silver += other.silver;
        self.quarantined += other.quarantined;
        self.duplicates_dropped += other.duplicates_dropped;
        for (rule, n) in &other.quarantined_by_rule {
            *self.quarantined_by_rule.entry(rule.clone()).or_insert(0) += n;
        }
    }

    /// `records in = silver + quarantine + exact duplicates dropped`.
    pub fn balanced(&self) -> bool {
        self.records_in == self.silver + self.quarantined + self.duplicates_dropped
    }

    /// One line for logs: `in=10 silver=7 quarantined=2 duplicates=1 (min=1, json=1)`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "in={} silver={} quarantined={} duplicates={}",
            self.records_in, self.silver, self.quarantined, self.duplicates_dropped
        );
        if !self.quarantined_by_rule.is_empty() {
            let rules: Vec<String> = self
                .quarantined_by_rule
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect();
            s.push_str(&format!(" ({})", rules.join(", ")));
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Bronze,
    Silver,
    Quarantine,
    Gold,
    Ops,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub path: String,
    pub kind: OutputKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub run_id: String,
    pub pipeline: String,
    pub binary_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Of `duration_ms`, the time spent committing the run's silver rows to their Delta tables,
    /// lost races and retries included (event and TMDB runs: writing their data files too; a
    /// file's conversion streams its files earlier). What the table format costs a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_ms: Option<u64>,
    pub inputs: Vec<String>,
    pub outputs: Vec<Output>,
    pub counts: Counts,
    /// Contract name -> version used.
    pub contracts: BTreeMap<String, u32>,
    /// Set when the input was landed whole in quarantine after failing every attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poison: Option<Poison>,
    /// Delta table -> the version this run's commit made; `null` when the table already held
    /// the run's transaction (an earlier attempt committed it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, Option<u64>>,
}

/// Why an input was landed whole in quarantine (stage `poison`) instead of processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poison {
    /// Attempts that failed, this one included.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub error: String,
}
