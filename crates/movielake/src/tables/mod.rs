//! Delta Lake tables (silver and gold) in the lake's containers, written with delta-rs: the
//! table layer the flows move onto (issue 15). Tables live where the lake's objects live: a
//! table `silver/events/watch` is the folder `<lake>/silver/events/watch` with its `_delta_log`.
//! This module decides where a table is and how to reach it, and commits through delta-rs with
//! what its commit loop lacks: jittered backoff, and the lost-race errors it does not retry.

mod azurite;
mod commit;
mod files;
mod location;
pub mod maintain;
pub mod migrate;
mod schema;
mod txns;

use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;

pub use commit::{Committed, Merged, RetryPolicy, Upsert};
pub use files::{DataFile, FileCommit, PartitionValues, Replace};
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
    /// Tables this process has committed to, as last read: the next commit reads only the log
    /// entries written since (a long-lived Function instance commits to the same few tables).
    cache: std::sync::Arc<tokio::sync::Mutex<std::collections::HashMap<String, (DeltaTable, txns::Known)>>>,
}

impl Tables {
    pub fn new(location: TableLocation) -> Self {
        Tables {
            location,
            retry: RetryPolicy::default(),
            cache: Default::default(),
        }
    }

    /// The tables of the lake behind `lake` (its `describe()`: `file://<root>` or the blob
    /// endpoint), signed in the way that lake is: Azurite's key, else the managed identity or
    /// `az login`. A lake signed with a SAS needs [`TableLocation::for_lake`] with it.
    pub fn for_lake(lake: &dyn crate::lake::Lake) -> Self {
        let described = lake.describe();
        let location = if ["file://", "https://", "http://"]
            .iter()
            .any(|s| described.starts_with(s))
        {
            TableLocation::for_lake(&described, None).unwrap_or_else(|e| TableLocation::Unavailable(e.to_string()))
        } else {
            // A lake port that does not say where it is (a test double): no guessing a folder.
            TableLocation::Unavailable(format!(
                "the lake '{described}' names no folder or blob endpoint for its tables"
            ))
        };
        Tables::new(location)
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

    /// Makes `commit.files` (already written into the table's folder) visible in one commit,
    /// with the removes of a replace and the transaction id; see [`FileCommit`].
    pub async fn commit_files(&self, name: &str, commit: &FileCommit) -> Result<Committed, TableError> {
        let (cached, mut known) = self.cached(name).await;
        let (committed, table) =
            files::commit_files(&self.location, &self.retry, cached, &mut known, name, commit).await?;
        self.cache.lock().await.insert(name.to_string(), (table, known));
        Ok(committed)
    }

    /// The table as this process last read it, and what it knows of its transactions.
    async fn cached(&self, name: &str) -> (Option<DeltaTable>, txns::Known) {
        match self.cache.lock().await.get(name).cloned() {
            Some((table, known)) => (Some(table), known),
            None => (None, txns::Known::default()),
        }
    }

    /// Whether table `name` already holds `txn` (or a later version of its app id).
    pub async fn holds(&self, name: &str, txn: &Txn) -> Result<bool, TableError> {
        let (cached, mut known) = self.cached(name).await;
        let table = files::refresh(&self.location, name, cached).await?;
        let done = known.version(name, &table, &txn.app_id).await?;
        if table.version().is_some() {
            self.cache.lock().await.insert(name.to_string(), (table, known));
        }
        Ok(done.is_some_and(|v| v >= txn.version))
    }

    /// Upserts `source` by `key` (one column or several) in one commit: new keys are
    /// inserted, known ones handled as `upsert` says; see [`Merged`].
    pub async fn merge(
        &self,
        name: &str,
        source: RecordBatch,
        key: &[&str],
        upsert: Upsert<'_>,
    ) -> Result<Merged, TableError> {
        commit::merge(&self.location, &self.retry, name, source, key, upsert).await
    }

    /// Deletes the rows matching `predicate` (SQL over the table's columns) in one commit;
    /// files holding no such row are not touched. Returns the rows deleted.
    pub async fn delete_where(&self, name: &str, predicate: &str) -> Result<u64, TableError> {
        commit::delete_where(&self.location, &self.retry, name, predicate).await
    }

    /// Replaces every row of table `name` with `batches` in one commit (creating the table, or
    /// taking their schema if it changed). Returns the version committed.
    pub async fn replace_all(
        &self,
        name: &str,
        schema: deltalake::arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<u64, TableError> {
        commit::replace_all(&self.location, &self.retry, name, schema, batches).await
    }

    /// Runs `sql` over table `name` (registered as `t`) at its latest version: what the table's
    /// log says is current, never a file a compaction removed.
    pub async fn sql(&self, name: &str, sql: &str) -> Result<Vec<RecordBatch>, TableError> {
        self.sql_with(name, &[], sql).await
    }

    /// [`Tables::sql`] with in-memory tables beside `t` (name, rows): a join with a batch of
    /// keys reads only their rows however many there are, where an `IN (…)` list would grow
    /// the statement with them.
    pub async fn sql_with(
        &self,
        name: &str,
        with: &[(&str, RecordBatch)],
        sql: &str,
    ) -> Result<Vec<RecordBatch>, TableError> {
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
        for (alias, batch) in with {
            ctx.register_batch(*alias, batch.clone()).map_err(|e| invalid(&e))?;
        }
        let frame = ctx.sql(sql).await.map_err(|e| invalid(&e))?;
        let schema: deltalake::arrow::datatypes::SchemaRef = std::sync::Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(|e| invalid(&e))?;
        plain_strings(&schema, &batches)
            .map(|(_, batches)| batches)
            .map_err(|e| invalid(&e))
    }
}

/// Batches with string views cast to plain strings. delta-rs' scan hands out views; callers
/// (tests, gold) and writers of other formats expect `Utf8`, and a Delta table stores `string`
/// either way, so a refreshed gold table keeps the same schema.
pub fn plain_strings(
    schema: &deltalake::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> Result<(deltalake::arrow::datatypes::SchemaRef, Vec<RecordBatch>), String> {
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View => f.as_ref().clone().with_data_type(DataType::Utf8),
            _ => f.as_ref().clone(),
        })
        .collect();
    let plain = std::sync::Arc::new(Schema::new(fields));
    let cast = batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(plain.fields())
                .map(|(c, f)| deltalake::arrow::compute::cast(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(plain.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((plain, cast))
}
