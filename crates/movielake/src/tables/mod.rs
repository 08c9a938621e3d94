//! Delta Lake tables (silver and gold) in the lake's containers, written with delta-rs: the
//! table layer the flows move onto (issue 15). Tables live where the lake's objects live: a
//! table `silver/events/watch` is the folder `<lake>/silver/events/watch` with its `_delta_log`.
//! This module decides where a table is and how to reach it, and commits through delta-rs with
//! what its commit loop lacks: jittered backoff, and the lost-race errors it does not retry.

mod commit;
mod files;
mod location;
pub mod maintain;

use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;

pub use commit::{Committed, RetryPolicy};
pub use location::TableLocation;

/// Why a table operation did not happen, grouped by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Other writers kept winning the commit race after every retry: try the whole invocation
    /// again later (the host's retry policy does).
    #[error("{table}: commit kept conflicting with other writers after {attempts} attempts: {last}")]
    Contended { table: String, attempts: u32, last: String },
    /// Storage unreachable or refusing: retry later.
    #[error("{table}: storage: {message}")]
    Storage { table: String, message: String },
    /// The table or the data is not what the operation needs (schema, protocol, a bad name): a
    /// person has to look.
    #[error("{table}: {message}")]
    Invalid { table: String, message: String },
}

impl TableError {
    /// Whether the host's retry can help (500 to the host either way; this is for logs).
    pub fn is_transient(&self) -> bool {
        !matches!(self, TableError::Invalid { .. })
    }
}

/// An application transaction: `(app_id, version)` recorded in the same commit as the data, so
/// a replay of the same input is recognised by the table itself and never committed twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub app_id: String,
    pub version: i64,
}

/// How an append is written.
#[derive(Debug, Clone, Default)]
pub struct Append {
    /// Partition columns of the table (Hive-style folders), used when the table is created.
    pub partition_by: Vec<String>,
    /// When set, the append is skipped if the table already holds this transaction (or a later
    /// version of the same app id).
    pub txn: Option<Txn>,
}

/// The lake's tables: opens, appends and reads them back.
#[derive(Debug, Clone)]
pub struct Tables {
    location: TableLocation,
    retry: RetryPolicy,
}

impl Tables {
    pub fn new(location: TableLocation) -> Self {
        Tables {
            location,
            retry: RetryPolicy::default(),
        }
    }

    /// The tables of the lake behind `lake` (its `describe()`: `file://<root>` or the blob
    /// endpoint), signed in the way that lake is: Azurite's key, else the managed identity or
    /// `az login`. A lake signed with a SAS needs [`TableLocation::for_lake`] with it.
    pub fn for_lake(lake: &dyn crate::lake::Lake) -> Self {
        let described = lake.describe();
        Tables::new(TableLocation::for_lake(&described, None).unwrap_or_else(|e| TableLocation::Unavailable(e.to_string())))
    }

    pub fn location(&self) -> &TableLocation {
        &self.location
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The table at `name` (`silver/events/watch`, `gold/genre_year`), at its latest version;
    /// a table that does not exist yet is returned empty (no version), ready to be created.
    pub async fn open(&self, name: &str) -> Result<DeltaTable, TableError> {
        self.location.open(name, None).await
    }

    /// The table as it was at `version` (time travel).
    pub async fn open_at(&self, name: &str, version: u64) -> Result<DeltaTable, TableError> {
        self.location.open(name, Some(version)).await
    }

    /// Appends `batches` in one commit (creating the table with their schema if it does not
    /// exist), retried with jittered backoff while other writers win the race.
    pub async fn append(
        &self,
        name: &str,
        batches: Vec<RecordBatch>,
        append: &Append,
    ) -> Result<Committed, TableError> {
        commit::append(&self.location, &self.retry, name, batches, append).await
    }

    /// Runs `sql` over table `name` (registered as `t`) at its latest version: what the table's
    /// log says is current, never a file a compaction removed.
    pub async fn sql(&self, name: &str, sql: &str) -> Result<Vec<RecordBatch>, TableError> {
        use deltalake::datafusion::prelude::SessionContext;
        let table = self.open(name).await?;
        let invalid = |e: &dyn std::fmt::Display| TableError::Invalid {
            table: name.to_string(),
            message: e.to_string(),
        };
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).map_err(|e| invalid(&e))?;
        let provider = table.table_provider().await.map_err(|e| invalid(&e))?;
        ctx.register_table("t", provider).map_err(|e| invalid(&e))?;
        let frame = ctx.sql(sql).await.map_err(|e| invalid(&e))?;
        frame.collect().await.map_err(|e| invalid(&e))
    }
}
