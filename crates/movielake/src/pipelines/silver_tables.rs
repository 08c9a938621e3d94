//! Silver parts into Delta tables: a plan's parts are written into their table's folder under
//! names that carry a hash of their bytes, then each table gets one commit naming them. A
//! retry of the same input writes the same names with the same bytes; an attempt that planned
//! other rows (the ledger moved under it) writes other names, so a file a commit already named
//! is never overwritten with different bytes.

use std::collections::BTreeMap;

use movielake_core::Contract;
use movielake_core::output::manifest::OutputKind;
use movielake_core::output::naming::{TablePart, silver_table, table_part};
use movielake_core::output::plan::Plan;
use movielake_core::output::silver::{partition_columns, table_schema};

use crate::lake::{Lake, LakeError, PutMode};
use crate::tables::{Committed, DataFile, FileCommit, PartitionValues, Replace, TableError, Tables, Txn};

#[derive(Debug, thiserror::Error)]
pub enum SilverError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Table(#[from] TableError),
    /// A part whose table no loaded contract describes: a deployment mismatch.
    #[error("{0}: no loaded contract describes this silver table")]
    NoContract(String),
}

/// What each table's commit did: table → the version committed, or `None` when the table
/// already held the input's transaction (a retry after an earlier attempt committed).
pub type TableVersions = BTreeMap<String, Option<u64>>;

/// Writes the plan's silver parts and commits them, one commit per table, carrying `txn`.
/// The plan's silver paths are renamed to the names written, for the manifest. A table whose
/// commit already happened (the transaction is in it) gets no files written at all.
pub async fn commit_plan(
    lake: &dyn Lake,
    tables: &Tables,
    contracts: &[&Contract],
    plan: &mut Plan,
    txn: Option<&Txn>,
) -> Result<TableVersions, SilverError> {
    let mut by_table: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, w) in plan.writes.iter().enumerate() {
        if w.kind == OutputKind::Silver {
            let part = table_part(&w.path).ok_or_else(|| SilverError::NoContract(w.path.clone()))?;
            by_table.entry(part.table).or_default().push(i);
        }
    }
    let mut versions = TableVersions::new();
    for (table, indexes) in by_table {
        if let Some(txn) = txn
            && tables.holds(&table, txn).await?
        {
            versions.insert(table, None);
            continue;
        }
        let mut files = Vec::with_capacity(indexes.len());
        for &i in &indexes {
            let write = &mut plan.writes[i];
            write.path = content_named(&write.path, &write.bytes);
            lake.put(&write.path, write.bytes.clone(), PutMode::Overwrite).await?;
            files.push(data_file(
                &write.path,
                write.bytes.len() as u64,
                write.rows.unwrap_or(0),
            )?);
        }
        let committed = commit(tables, contracts, &table, files, Replace::Nothing, txn).await?;
        versions.insert(table, committed);
    }
    Ok(versions)
}

/// Commits files already written into `table`'s folder (`paths` are lake paths with their
/// rows and sizes), replacing what `replace` names.
pub async fn commit(
    tables: &Tables,
    contracts: &[&Contract],
    table: &str,
    files: Vec<DataFile>,
    replace: Replace,
    txn: Option<&Txn>,
) -> Result<Option<u64>, SilverError> {
    let contract = contracts
        .iter()
        .find(|c| silver_table(c) == table)
        .ok_or_else(|| SilverError::NoContract(table.to_string()))?;
    let commit = FileCommit {
        schema: table_schema(contract),
        partition_by: partition_columns(contract),
        files,
        replace,
        txn: txn.cloned(),
    };
    Ok(match tables.commit_files(table, &commit).await? {
        Committed::Version { version, .. } => Some(version),
        Committed::AlreadyCommitted { .. } => None,
    })
}

/// A silver part's lake path as a data file of its table.
pub fn data_file(path: &str, size: u64, rows: u64) -> Result<DataFile, SilverError> {
    let TablePart {
        file, partition_values, ..
    } = table_part(path).ok_or_else(|| SilverError::NoContract(path.to_string()))?;
    Ok(DataFile {
        path: file,
        size,
        rows,
        partition_values,
    })
}

/// The partition values of a silver part's path (for a replace of the partition).
pub fn partition_of(path: &str) -> Option<PartitionValues> {
    table_part(path).map(|p| p.partition_values)
}

/// `…/part-<id>.parquet` → `…/part-<id>-<hash of bytes>.parquet`.
fn content_named(path: &str, bytes: &[u8]) -> String {
    let hash = xxhash_rust::xxh3::xxh3_64(bytes);
    match path.strip_suffix(".parquet") {
        Some(stem) => format!("{stem}-{hash:016x}.parquet"),
        None => format!("{path}-{hash:016x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_bytes() {
        let a = content_named("silver/e/w/d=1/part-ab.parquet", b"one");
        assert_eq!(a, content_named("silver/e/w/d=1/part-ab.parquet", b"one"));
        assert_ne!(a, content_named("silver/e/w/d=1/part-ab.parquet", b"two"));
        assert!(a.starts_with("silver/e/w/d=1/part-ab-") && a.ends_with(".parquet"));
    }
}
