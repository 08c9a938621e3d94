//! The current state (SCD1) and the history (SCD2) of a SQL table, kept from its version table
//! (`silver/sql/<table>`: one row per key and `updated_at`) after each pull:
//! - `silver/sql/<table>_history`: every version with `valid_from` (its `updated_at`) and
//!   `valid_to` (the next version's `updated_at`; null for the current one), the half-open
//!   interval `[valid_from, valid_to)` an event at time T is matched against;
//! - `silver/sql/<table>_current`: each key's latest version.
//!
//! Both are recomputed for the keys a pull touched, from all of their versions, so a version
//! that arrives late (older than one already landed) is slotted in where it belongs and its
//! neighbour's `valid_to` corrected. Each is one MERGE commit.

use std::collections::BTreeSet;

use deltalake::arrow::compute::concat_batches;
use deltalake::arrow::record_batch::RecordBatch;
use movielake_core::Contract;
use movielake_core::output::naming::silver_table;

use crate::tables::{TableError, Tables};

/// Above this many touched keys a refresh recomputes every key (one scan, no giant IN list).
const KEY_LIST_LIMIT: usize = 10_000;

/// The history and current tables of a version table.
pub fn history_table(contract: &Contract) -> String {
    format!("{}_history", silver_table(contract))
}

pub fn current_table(contract: &Contract) -> String {
    format!("{}_current", silver_table(contract))
}

/// The Delta versions the refresh committed (`None`: nothing changed in that table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub history: Option<u64>,
    pub current: Option<u64>,
}

/// Recomputes history and current state for `keys` (values of the contract's first key
/// column, the business key).
pub async fn refresh(tables: &Tables, contract: &Contract, keys: &BTreeSet<String>) -> Result<Refreshed, TableError> {
    let versions = silver_table(contract);
    let invalid = |message: String| TableError::Invalid {
        table: versions.clone(),
        message,
    };
    let key = contract
        .key
        .first()
        .and_then(|&i| contract.columns.get(i))
        .map(|c| c.name.clone())
        .ok_or_else(|| invalid("a SQL table's contract needs its primary key first in `key`".into()))?;
    if keys.is_empty() {
        return Ok(Refreshed::default());
    }
    let quoted = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let filter = if keys.len() > KEY_LIST_LIMIT {
        String::new()
    } else {
        let list: Vec<String> = keys.iter().map(|k| format!("'{}'", k.replace('\'', "''"))).collect();
        format!("WHERE {} IN ({})", quoted(&key), list.join(", "))
    };
    let history_sql = format!(
        "SELECT *, updated_at AS valid_from, \
         LEAD(updated_at) OVER (PARTITION BY {k} ORDER BY updated_at) AS valid_to FROM t {filter}",
        k = quoted(&key)
    );
    let history = one_batch(tables.sql(&versions, &history_sql).await?).map_err(invalid)?;
    let current_sql = format!("SELECT * EXCLUDE (valid_from, valid_to) FROM ({history_sql}) WHERE valid_to IS NULL");
    let current = one_batch(tables.sql(&versions, &current_sql).await?).map_err(invalid)?;
    let mut refreshed = Refreshed::default();
    if let Some(batch) = history {
        refreshed.history = tables
            .merge(
                &history_table(contract),
                batch,
                &[&key, "valid_from"],
                "t.valid_to IS DISTINCT FROM s.valid_to",
            )
            .await?
            .version;
    }
    if let Some(batch) = current {
        refreshed.current = tables
            .merge(&current_table(contract), batch, &[&key], "s.updated_at > t.updated_at")
            .await?
            .version;
    }
    Ok(refreshed)
}

/// The query's batches as one (`None` when it found no row).
fn one_batch(batches: Vec<RecordBatch>) -> Result<Option<RecordBatch>, String> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let batch = concat_batches(&first.schema(), &batches).map_err(|e| e.to_string())?;
    Ok((batch.num_rows() > 0).then_some(batch))
}
