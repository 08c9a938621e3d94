//! `movielake status`: what ran, what it took in, where every record went, what failed and why,
//! read from the run manifests in `ops/runs/` (any lake: a folder or Azure).

use std::collections::BTreeMap;

use movielake_core::output::manifest::{Counts, Poison, RunManifest};

use crate::handler::AppState;
use crate::lake::{Lake, LakeError};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only manifests whose path contains this, e.g. `date=2024-05-01` or `watch_events`.
    #[arg(long)]
    filter: Option<String>,
}

pub(super) async fn command(state: &AppState, StatusArgs { filter }: StatusArgs) -> anyhow::Result<()> {
    let statuses = summarize(state.lake.as_ref(), filter.as_deref()).await?;
    print!("{}", render(&statuses));
    let lost = statuses.values().filter(|s| !s.unbalanced.is_empty()).count();
    anyhow::ensure!(lost == 0, "{lost} pipeline(s) have runs whose counts do not add up");
    Ok(())
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PipelineStatus {
    pub runs: usize,
    pub counts: Counts,
    /// Runs whose counts do not add up (`in != silver + quarantined + duplicates`).
    pub unbalanced: Vec<String>,
    /// Runs that landed their input whole in quarantine after it failed every attempt, with
    /// the failed attempts and the last error.
    pub poisoned: Vec<(String, Poison)>,
    pub last_finished: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{path}: not a run manifest ({message})")]
    Manifest { path: String, message: String },
}

/// Every manifest under `ops/runs/` whose path contains `filter` (e.g. `date=2024-05-01`),
/// summed per pipeline.
pub async fn summarize(lake: &dyn Lake, filter: Option<&str>) -> Result<BTreeMap<String, PipelineStatus>, StatusError> {
    let mut out: BTreeMap<String, PipelineStatus> = BTreeMap::new();
    for meta in lake.list("ops/runs/").await? {
        if !meta.path.ends_with(".json") || filter.is_some_and(|f| !meta.path.contains(f)) {
            continue;
        }
        let object = lake.get(&meta.path).await?;
        let manifest: RunManifest = serde_json::from_slice(&object.bytes).map_err(|e| StatusError::Manifest {
            path: meta.path.clone(),
            message: e.to_string(),
        })?;
        let status = out.entry(manifest.pipeline.clone()).or_default();
        status.runs += 1;
        status.counts.add(&manifest.counts);
        if !manifest.counts.balanced() {
            status.unbalanced.push(meta.path.clone());
        }
        if let Some(poison) = manifest.poison {
            status.poisoned.push((meta.path.clone(), poison));
        }
        status.last_finished = status.last_finished.max(Some(manifest.finished_at));
    }
    Ok(out)
}

/// The report a person reads: one block per pipeline.
pub fn render(statuses: &BTreeMap<String, PipelineStatus>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if statuses.is_empty() {
        s.push_str("no run manifests found under ops/runs/\n");
    }
    for (pipeline, st) in statuses {
        let c = &st.counts;
        let last = st.last_finished.map_or("-".to_string(), |t| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
        let _ = writeln!(s, "{pipeline}: {} runs, last finished {last}", st.runs);
        let _ = writeln!(
            s,
            "  in {}  silver {}  quarantined {}  duplicates {}",
            c.records_in, c.silver, c.quarantined, c.duplicates_dropped
        );
        let mut rules: Vec<(&String, &u64)> = c.quarantined_by_rule.iter().collect();
        rules.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (rule, n) in rules {
            let _ = writeln!(s, "    quarantined by {rule}: {n}");
        }
        if !st.poisoned.is_empty() {
            let _ = writeln!(
                s,
                "  POISON: {} input(s) failed every attempt and were landed whole in quarantine (stage poison):",
                st.poisoned.len()
            );
            for (path, poison) in &st.poisoned {
                let _ = writeln!(
                    s,
                    "    {path}: {} attempts, last error: {}",
                    poison.attempts, poison.error
                );
            }
        }
        if st.unbalanced.is_empty() {
            let _ = writeln!(s, "  nothing lost: in = silver + quarantined + duplicates in every run");
        } else {
            for path in &st.unbalanced {
                let _ = writeln!(s, "  COUNTS DO NOT ADD UP: {path}");
            }
        }
    }
    s
}
