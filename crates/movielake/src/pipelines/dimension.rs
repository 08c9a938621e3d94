//! The enrichment dimension (issue 17) loaded from the SQL source's SCD2 histories in silver
//! (`silver/sql/users_history`, `silver/sql/subscriptions_history`) into the core's compact
//! index, and kept per instance: reloaded only when one of the two tables has a new Delta
//! version, and that checked at most every `refresh` (a storage round trip per check, none per
//! lookup).

use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use movielake_core::enrich::Dimension;
use tokio::sync::Mutex;

use super::sql_scd;
use crate::tables::{TableError, Tables};

pub const USERS_HISTORY: &str = "silver/sql/users_history";
pub const SUBSCRIPTIONS_HISTORY: &str = "silver/sql/subscriptions_history";

/// The two tables' Delta versions a dimension was loaded from (`None`: no such table yet).
pub type Versions = (Option<u64>, Option<u64>);

/// Reads both histories into an index, with the versions read.
pub async fn load(tables: &Tables) -> Result<(Dimension, Versions), TableError> {
    let versions = versions(tables).await?;
    let mut b = Dimension::builder();
    if let Some(batch) = sql_scd::read(
        tables,
        USERS_HISTORY,
        None,
        "SELECT CAST(user_id AS VARCHAR), CAST(valid_from AS BIGINT), CAST(valid_to AS BIGINT), \
         CAST(country AS VARCHAR) FROM t",
    )
    .await?
    {
        let (user, from, to, country) = columns4(&batch, USERS_HISTORY)?;
        for i in 0..batch.num_rows() {
            if user.is_null(i) || from.is_null(i) {
                continue;
            }
            b.user(
                user.value(i),
                from.value(i),
                (!to.is_null(i)).then(|| to.value(i)),
                (!country.is_null(i)).then(|| country.value(i)),
            );
        }
    }
    if let Some(batch) = sql_scd::read(
        tables,
        SUBSCRIPTIONS_HISTORY,
        None,
        "SELECT CAST(user_id AS VARCHAR), CAST(valid_from AS BIGINT), CAST(valid_to AS BIGINT), \
         CAST(subscription_id AS VARCHAR), CAST(plan AS VARCHAR), CAST(status AS VARCHAR) FROM t",
    )
    .await?
    {
        let (user, from, to, id) = columns4(&batch, SUBSCRIPTIONS_HISTORY)?;
        let text = |c: usize| batch.column(c).as_string_opt::<i32>();
        let (Some(plan), Some(status)) = (text(4), text(5)) else {
            return Err(invalid(SUBSCRIPTIONS_HISTORY, "plan and status are not text"));
        };
        for i in 0..batch.num_rows() {
            if user.is_null(i) || from.is_null(i) || id.is_null(i) {
                continue;
            }
            b.subscription(
                user.value(i),
                id.value(i),
                from.value(i),
                (!to.is_null(i)).then(|| to.value(i)),
                (!plan.is_null(i)).then(|| plan.value(i)),
                (!status.is_null(i)).then(|| status.value(i)),
            );
        }
    }
    Ok((b.build(), versions))
}

type Columns<'a> = (
    &'a deltalake::arrow::array::StringArray,
    &'a deltalake::arrow::array::Int64Array,
    &'a deltalake::arrow::array::Int64Array,
    &'a deltalake::arrow::array::StringArray,
);

fn columns4<'a>(batch: &'a RecordBatch, table: &str) -> Result<Columns<'a>, TableError> {
    match (
        batch.column(0).as_string_opt::<i32>(),
        batch.column(1).as_primitive_opt::<Int64Type>(),
        batch.column(2).as_primitive_opt::<Int64Type>(),
        batch.column(3).as_string_opt::<i32>(),
    ) {
        (Some(a), Some(b), Some(c), Some(d)) => Ok((a, b, c, d)),
        _ => Err(invalid(table, &format!("unexpected columns {:?}", batch.schema()))),
    }
}

fn invalid(table: &str, message: &str) -> TableError {
    TableError::Invalid {
        table: table.to_string(),
        message: message.to_string(),
    }
}

async fn versions(tables: &Tables) -> Result<Versions, TableError> {
    Ok((
        tables.open(USERS_HISTORY).await?.version(),
        tables.open(SUBSCRIPTIONS_HISTORY).await?.version(),
    ))
}

/// One instance's dimension: loaded on first use, reloaded when a history table moved, the
/// tables' versions checked at most every `refresh`.
pub struct DimensionCache {
    refresh: Duration,
    state: Mutex<Option<Loaded>>,
}

impl std::fmt::Debug for DimensionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DimensionCache")
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

struct Loaded {
    dimension: Arc<Dimension>,
    versions: Versions,
    checked: Instant,
}

impl DimensionCache {
    pub fn new(refresh: Duration) -> DimensionCache {
        DimensionCache {
            refresh,
            state: Mutex::new(None),
        }
    }

    /// A cache holding `dimension` as if loaded from tables at `versions` (benchmarks: a
    /// generated dimension of any size without writing its tables; kept while the tables stay
    /// at those versions).
    pub fn preloaded(refresh: Duration, dimension: Arc<Dimension>, versions: Versions) -> DimensionCache {
        DimensionCache {
            refresh,
            state: Mutex::new(Some(Loaded {
                dimension,
                versions,
                checked: Instant::now(),
            })),
        }
    }

    /// The dimension as of at most `refresh` ago.
    pub async fn get(&self, tables: &Tables) -> Result<Arc<Dimension>, TableError> {
        let mut state = self.state.lock().await;
        if let Some(loaded) = state.as_mut() {
            if loaded.checked.elapsed() < self.refresh {
                return Ok(loaded.dimension.clone());
            }
            // A failed check keeps the dimension held: better a minute stale than none.
            let now = match versions(tables).await {
                Ok(now) => now,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the enrichment dimension's tables; keeping the one held");
                    loaded.checked = Instant::now();
                    return Ok(loaded.dimension.clone());
                }
            };
            loaded.checked = Instant::now();
            if now == loaded.versions {
                return Ok(loaded.dimension.clone());
            }
        }
        let started = Instant::now();
        let (dimension, versions) = load(tables).await?;
        tracing::info!(
            users = dimension.users(),
            versions = dimension.versions(),
            bytes = dimension.heap_bytes(),
            ms = started.elapsed().as_millis() as u64,
            "enrichment dimension loaded"
        );
        let dimension = Arc::new(dimension);
        *state = Some(Loaded {
            dimension: dimension.clone(),
            versions,
            checked: Instant::now(),
        });
        Ok(dimension)
    }
}
