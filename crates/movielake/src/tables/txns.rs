//! Which application transactions a table holds, known incrementally.
//!
//! delta-rs answers "the latest version of app id X" through delta-kernel, which replays the
//! log since the last checkpoint from storage on every call: one read per commit, so with
//! ingest writers committing many times a minute between hourly checkpoints every check costs
//! thousands of reads. Here the answer is kept per app id with the table version it is valid
//! through; a later check reads only the commits since (usually a handful, and delta-rs has
//! just read them to update the table) and looks for that app id's `txn` action in them.

use std::collections::HashMap;

use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};

use super::TableError;
use super::location::classify;

/// Past this many unread commits a fresh lookup through delta-kernel is cheaper.
const MAX_SCAN: u64 = 2_000;

/// What this process knows about the transactions of one table.
#[derive(Debug, Clone, Default)]
pub(super) struct Known {
    /// App id → (the table version this is valid through, the app id's latest version).
    by_app: HashMap<String, (u64, Option<i64>)>,
}

impl Known {
    /// The latest version of `app_id` that `table` (at its loaded version) holds.
    pub(super) async fn version(
        &mut self,
        name: &str,
        table: &DeltaTable,
        app_id: &str,
    ) -> Result<Option<i64>, TableError> {
        let Some(current) = table.version() else {
            return Ok(None);
        };
        let answer = match self.by_app.get(app_id).copied() {
            Some((through, latest)) if through == current => latest,
            Some((through, latest)) if through < current && current - through <= MAX_SCAN => {
                match scan(table, through + 1..=current, app_id).await {
                    Ok(found) => found.max(latest),
                    Err(_) => lookup(name, table, app_id).await?,
                }
            }
            _ => lookup(name, table, app_id).await?,
        };
        self.by_app.insert(app_id.to_string(), (current, answer));
        Ok(answer)
    }

    /// This process committed `txn_version` of `app_id` as table version `committed`, on top
    /// of the version it last read (no retry inside delta-rs: `committed` is that plus one).
    pub(super) fn committed(&mut self, app_id: &str, committed: u64, txn_version: i64) {
        match self.by_app.get_mut(app_id) {
            Some((through, latest)) if *through + 1 == committed => {
                *through = committed;
                *latest = Some(latest.map_or(txn_version, |l| l.max(txn_version)));
            }
            _ => {
                self.by_app.remove(app_id);
            }
        }
    }
}

async fn lookup(name: &str, table: &DeltaTable, app_id: &str) -> Result<Option<i64>, TableError> {
    let snapshot = table.snapshot().map_err(|e| classify(name, e))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| classify(name, e))
}

/// The greatest version of `app_id` in the `txn` actions of the commits `versions`; an error
/// if a commit cannot be read (a cleaned-up log: the caller looks it up in full).
async fn scan(
    table: &DeltaTable,
    versions: std::ops::RangeInclusive<u64>,
    app_id: &str,
) -> Result<Option<i64>, String> {
    let store = table.log_store();
    let found: Vec<Option<i64>> = futures::stream::iter(versions)
        .map(|v| {
            let store = store.clone();
            async move {
                let bytes = store
                    .read_commit_entry(v)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("commit {v} is not there"))?;
                Ok::<_, String>(txn_in(&bytes, app_id))
            }
        })
        .buffered(16)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().max())
}

/// The version of `app_id`'s `txn` action in one commit file (newline-delimited actions).
fn txn_in(commit: &[u8], app_id: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Line {
        txn: Option<Txn>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Txn {
        app_id: String,
        version: i64,
    }
    commit
        .split(|&b| b == b'\n')
        .filter(|line| line.windows(6).any(|w| w == b"\"txn\":"))
        .filter_map(|line| serde_json::from_slice::<Line>(line).ok()?.txn)
        .filter(|t| t.app_id == app_id)
        .map(|t| t.version)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_app_ids_transaction_in_a_commit() {
        let commit = br#"{"commitInfo":{"timestamp":1,"operation":"WRITE"}}
{"add":{"path":"a.parquet","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true}}
{"txn":{"appId":"eventhub/h/$Default/0","version":249,"lastUpdated":1}}
{"txn":{"appId":"eventhub/h/$Default/1","version":7}}"#;
        assert_eq!(txn_in(commit, "eventhub/h/$Default/0"), Some(249));
        assert_eq!(txn_in(commit, "eventhub/h/$Default/1"), Some(7));
        assert_eq!(txn_in(commit, "eventhub/h/$Default/2"), None);
        assert_eq!(txn_in(b"not json\n{\"txn\": broken", "x"), None);
    }

    #[test]
    fn an_own_commit_extends_what_is_known_only_when_it_follows_it() {
        let mut known = Known::default();
        known.by_app.insert("a".into(), (4, Some(10)));
        known.committed("a", 5, 11);
        assert_eq!(known.by_app["a"], (5, Some(11)));
        known.committed("a", 9, 12);
        assert!(!known.by_app.contains_key("a"), "a gap: known no more");
    }
}
