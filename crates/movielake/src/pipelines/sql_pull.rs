//! One incremental pull of a SQL table (issue 16): read past the table's watermark, land the
//! new rows in bronze (create-only gzipped CSV and a sidecar, the rows as the database rendered
//! them: `movielake_core::sources::sql::bronze`), check
//! them against the table's contract (`sql_<table>`) into silver (one row per version: a MERGE
//! that inserts the versions the table does not hold yet) and quarantine, write the run
//! manifest, then advance the watermark with a compare-and-swap. The watermark moves only
//! after all that is durable: a pull that dies in between is read again by the next one, and
//! silver recognises the versions it already holds by key and change time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use deltalake::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use movielake_core::ContractSet;
use movielake_core::contract::validate::{Reason, Rejection, Stage};
use movielake_core::contract::value::Value;
use movielake_core::output::manifest::{Counts, Output, OutputKind, RunManifest};
use movielake_core::output::naming::{quarantine_part, stable_id};
use movielake_core::output::silver::{EncodeError, Lineage, SOURCE_OBJECT, accepted_batch};
use movielake_core::routing::quarantine::{SourcePointer, encode_jsonl};
use movielake_core::routing::route::{Accepted, RunContext, SourceRecord, quarantine, route};
use movielake_core::sources::sql::watermark::Watermark;
use movielake_core::sources::sql::{Dialect, SqlTable, bronze};

use super::sql_scd;
use crate::clients::sql::{PAGE_ROWS, Page, SqlError, SqlSource, pull_page};
use crate::lake::{ETag, Lake, LakeError, PutMode};
use crate::tables::{TableError, Tables, Upsert};

pub const PIPELINE: &str = "sql_pull";

/// How far behind the database's clock a pull stays, how much it reads again, and how many
/// rows it holds at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PullSettings {
    pub lag: Duration,
    pub overlap: Duration,
    /// How often a pull also compares every key with silver's to find hard deletes (a
    /// deleted row leaves nothing to read changes from). `None`: never; zero: every pull.
    pub key_check: Option<Duration>,
    /// Rows per page: each page is landed (bronze, silver, manifest) and the watermark moved
    /// past it before the next is read, so memory stays bounded whatever the table's size
    /// and a pull cut short resumes where it stopped.
    pub page_rows: usize,
}

impl Default for PullSettings {
    fn default() -> Self {
        // The lag covers writers' clocks and short transactions; the overlap, transactions the
        // ceiling cannot see (a login without pg_read_all_stats).
        PullSettings {
            lag: Duration::seconds(5),
            overlap: Duration::minutes(15),
            key_check: Some(Duration::hours(24)),
            page_rows: PAGE_ROWS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Source(#[from] SqlError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Table(#[from] TableError),
    /// The contract `sql_<table>` is not in the contract set.
    #[error("no contract {0} (contracts/{0}.toml): the pull's rows cannot be checked")]
    NoContract(String),
    #[error("{0}: cannot encode the silver rows: {1}")]
    Encode(String, String),
    /// Another pull of the same table advanced the watermark first: this pull's rows are in
    /// bronze, and the next pull starts from the other one's watermark.
    #[error("{0}: another pull of this table moved the watermark first; run again")]
    Raced(String),
    #[error(
        "{path}: unreadable watermark ({message}); fix or delete it (the next pull then reads the table from the start)"
    )]
    Watermark { path: String, message: String },
}

/// What one pull did.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    pub table: String,
    pub rows: usize,
    pub duplicates: usize,
    /// The bronze objects of the rows, one per page that had new rows.
    pub bronze: Vec<String>,
    pub through: Option<DateTime<Utc>>,
    /// Where the pull's rows went, over all its pages.
    pub counts: Counts,
    /// One run manifest per page that had new rows.
    pub manifests: Vec<String>,
    /// Pages read (the last one short, possibly empty).
    pub pages: usize,
    /// Keys a full key comparison found deleted (`None`: no comparison this pull).
    pub deleted: Option<usize>,
}

/// Where a pull writes: the lake, its tables, and the contracts the rows are checked against.
pub struct Sink<'a> {
    pub lake: &'a dyn Lake,
    pub tables: &'a Tables,
    pub contracts: &'a ContractSet,
}

/// Where a source's table keeps its watermark.
pub fn watermark_path(source: &str, table: &SqlTable) -> String {
    format!("ops/watermarks/sql/{source}/{}.json", table.name)
}

async fn load(lake: &dyn Lake, path: &str) -> Result<(Watermark, Option<ETag>), PullError> {
    match lake.get(path).await {
        Ok(object) => serde_json::from_slice(&object.bytes)
            .map(|w| (w, Some(object.etag)))
            .map_err(|e| PullError::Watermark {
                path: path.to_string(),
                message: e.to_string(),
            }),
        Err(LakeError::NotFound { .. }) => Ok((Watermark::default(), None)),
        Err(e) => Err(e.into()),
    }
}

/// Pulls `table` of the database named `source` in the lake once, page by page.
pub async fn pull_table(
    sink: &Sink<'_>,
    db: &dyn SqlSource,
    source: &str,
    table: &SqlTable,
    settings: PullSettings,
) -> Result<Pulled, PullError> {
    let lake = sink.lake;
    let contract_name = format!("sql_{}", table.name);
    let contract = sink
        .contracts
        .get(&contract_name)
        .ok_or_else(|| PullError::NoContract(contract_name.clone()))?;
    let path = watermark_path(source, table);
    let (watermark, mut etag) = load(lake, &path).await?;
    let ceiling = db.ceiling(settings.lag).await?;
    let mut pulled = Pulled {
        table: table.name.to_string(),
        rows: 0,
        duplicates: 0,
        bronze: Vec::new(),
        through: None,
        counts: Counts::default(),
        manifests: Vec::new(),
        pages: 0,
        deleted: None,
    };
    let mut state = watermark.clone();
    let mut window = Some(watermark.window(ceiling, settings.overlap));
    while let Some(w) = window.take() {
        let page = pull_page(db, table, &state, &w, settings.page_rows, settings.overlap).await?;
        pulled.pages += 1;
        pulled.rows += page.rows.len();
        pulled.duplicates += page.duplicates;
        if !page.rows.is_empty() {
            let landed = land_page(sink, db, source, table, contract, &page, settings.page_rows).await?;
            add(&mut pulled.counts, &landed.counts);
            pulled.bronze.push(landed.bronze);
            pulled.manifests.push(landed.manifest);
        }
        state = page.next;
        window = page.rest;
        if window.is_some() {
            // Past this page for good: a pull cut short resumes here.
            etag = Some(save(lake, &path, &state, etag).await?);
            tracing::info!(
                table = table.name,
                pages = pulled.pages,
                rows = pulled.rows,
                "page landed"
            );
        }
    }
    pulled.through = state.through;
    let due = settings
        .key_check
        .is_some_and(|every| watermark.keys_checked_at.is_none_or(|last| ceiling.at - last >= every));
    if due {
        let (checked_at, gone) = check_keys(sink, db, source, table, contract).await?;
        state.keys_checked_at = Some(checked_at);
        pulled.deleted = Some(gone);
    }
    save(lake, &path, &state, etag).await?;
    Ok(pulled)
}

/// Stores the watermark with a compare-and-swap on the one read (`None`: there was none).
async fn save(lake: &dyn Lake, path: &str, watermark: &Watermark, etag: Option<ETag>) -> Result<ETag, PullError> {
    let bytes = serde_json::to_vec_pretty(watermark).map_err(|e| PullError::Watermark {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    let mode = etag.map_or(PutMode::Create, PutMode::IfMatch);
    match lake.put(path, bytes.into(), mode).await {
        Ok(etag) => Ok(etag),
        Err(LakeError::AlreadyExists { .. } | LakeError::PreconditionFailed { .. }) => {
            Err(PullError::Raced(path.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

fn add(total: &mut Counts, c: &Counts) {
    total.records_in += c.records_in;
    total.silver += c.silver;
    total.quarantined += c.quarantined;
    total.duplicates_dropped += c.duplicates_dropped;
    for (rule, n) in &c.quarantined_by_rule {
        *total.quarantined_by_rule.entry(rule.clone()).or_default() += n;
    }
}

/// Where one page's rows went.
struct Landed {
    bronze: String,
    manifest: String,
    counts: Counts,
}

/// Lands one page's new rows: bronze (CSV and sidecar), silver and quarantine, the manifest.
/// `limit` is the page size the query ran with: the sidecar records that query.
async fn land_page(
    sink: &Sink<'_>,
    db: &dyn SqlSource,
    source: &str,
    table: &SqlTable,
    contract: &movielake_core::Contract,
    page: &Page,
    limit: usize,
) -> Result<Landed, PullError> {
    let (lake, started_at, clock) = (sink.lake, Utc::now(), Instant::now());
    let through = page.next.through;
    let rows = || page.rows.iter().map(|r| &r.row);
    let columns = bronze::columns(table, rows());
    let csv = bronze::csv(&columns, rows());
    let to = through.unwrap_or(page.window.to);
    let query = match page.window.versions {
        Some(v) => Dialect::sqlserver_changes(table, limit.max(1), v.from, v.to),
        None => db.dialect().changes_sql(table, limit.max(1)),
    };
    let sidecar = bronze::Sidecar {
        source: source.to_string(),
        table: table.name.to_string(),
        dialect: bronze::dialect_name(db.dialect()).to_string(),
        kind: "changes".into(),
        query,
        from: Some(page.window.from),
        to: page.window.to,
        after_key: page.window.after_key.clone(),
        row_versions: page.window.versions,
        rows: page.rows.len() as u64,
        columns,
        file: bronze::PART.into(),
        csv_bytes: csv.len() as u64,
    };
    let (object, size) = land_extract(lake, to, &csv, &sidecar).await?;
    // The contract reads each row as the JSON object the adapter decoded: the same values as
    // the CSV line, with their JSON types.
    let mut body = Vec::new();
    for row in rows() {
        // A map of JSON values always serialises.
        serde_json::to_writer(&mut body, row).map_err(|e| PullError::Encode(object.clone(), e.to_string()))?;
        body.push(b'\n');
    }
    let at = through.unwrap_or(started_at);
    let mut outputs = vec![Output {
        path: object.clone(),
        kind: OutputKind::Bronze,
        rows: Some(page.rows.len() as u64),
        bytes: size,
    }];
    let committing = Instant::now();
    let (counts, versions) = to_silver(sink, contract, &object, &body, at, &mut outputs).await?;
    let run = RunManifest {
        run_id: stable_id(&object),
        pipeline: PIPELINE.to_string(),
        binary_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        finished_at: Utc::now(),
        duration_ms: clock.elapsed().as_millis() as u64,
        commit_ms: Some(committing.elapsed().as_millis() as u64),
        inputs: vec![format!("{source}/{}", table.name)],
        outputs,
        counts: counts.clone(),
        contracts: [(contract.name.clone(), contract.version)].into(),
        poison: None,
        tables: versions,
    };
    let manifest = super::put_manifest(lake, &run, at.date_naive()).await?;
    Ok(Landed {
        bronze: object,
        manifest,
        counts,
    })
}

/// Compares every key the database holds with the keys silver's current state has alive: a
/// key silver has and the database no longer has was deleted outright. Each is landed in
/// bronze (the comparison's finding, with the database's time), recorded in the table's
/// deletes table, and its history closed. Returns the comparison's time and the keys found.
async fn check_keys(
    sink: &Sink<'_>,
    db: &dyn SqlSource,
    source: &str,
    table: &SqlTable,
    contract: &movielake_core::Contract,
) -> Result<(DateTime<Utc>, usize), PullError> {
    // The database's clock before the keys are read: a key gone from the read was gone then
    // or soon after, and every version of it already pulled is older.
    let checked_at = db.ceiling(Duration::zero()).await?.at;
    let present: std::collections::HashSet<String> = db.keys(table).await?.into_iter().collect();
    let key = sql_scd::key_column(contract)?;
    let current = sql_scd::current_table(contract);
    let alive = sql_scd::read(
        sink.tables,
        &current,
        None,
        &format!("SELECT CAST(\"{key}\" AS VARCHAR) FROM t WHERE NOT is_deleted"),
    )
    .await?;
    let mut gone = BTreeSet::new();
    if let Some(batch) = alive {
        let keys = batch
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| PullError::Encode(current.clone(), "keys are not text".into()))?;
        gone.extend(
            (0..keys.len())
                .filter(|&i| !keys.is_null(i) && !present.contains(keys.value(i)))
                .map(|i| keys.value(i).to_string()),
        );
    }
    if gone.is_empty() {
        return Ok((checked_at, 0));
    }
    // The finding lands in bronze like a pull's rows: the keys, the time, and how.
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = gone
        .iter()
        .map(|k| {
            let mut row = serde_json::Map::new();
            row.insert(table.key.to_string(), k.as_str().into());
            row.insert(sql_scd::DELETED_AT.to_string(), checked_at.to_rfc3339().into());
            row
        })
        .collect();
    let columns = vec![table.key.to_string(), sql_scd::DELETED_AT.to_string()];
    let csv = bronze::csv(&columns, &rows);
    let sidecar = bronze::Sidecar {
        source: source.to_string(),
        table: table.name.to_string(),
        dialect: bronze::dialect_name(db.dialect()).to_string(),
        kind: "keys".into(),
        query: db.dialect().keys_sql(table),
        from: None,
        to: checked_at,
        after_key: None,
        row_versions: None,
        rows: rows.len() as u64,
        columns,
        file: bronze::DELETES.into(),
        csv_bytes: csv.len() as u64,
    };
    let (object, _) = land_extract(sink.lake, checked_at, &csv, &sidecar).await?;
    let micros = checked_at.timestamp_micros();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new(&key, DataType::Utf8, false),
            Field::new(
                sql_scd::DELETED_AT,
                DataType::Timestamp(deltalake::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new(SOURCE_OBJECT, DataType::Utf8, false),
        ])),
        vec![
            Arc::new(deltalake::arrow::array::StringArray::from_iter_values(gone.iter())),
            Arc::new(
                deltalake::arrow::array::TimestampMicrosecondArray::from_iter_values(gone.iter().map(|_| micros))
                    .with_timezone("UTC"),
            ),
            Arc::new(deltalake::arrow::array::StringArray::from_iter_values(
                gone.iter().map(|_| object.as_str()),
            )),
        ],
    )
    .map_err(|e| PullError::Encode(sql_scd::deletes_table(contract), e.to_string()))?;
    sink.tables
        .merge(
            &sql_scd::deletes_table(contract),
            batch,
            &[&key, sql_scd::DELETED_AT],
            Upsert::InsertNew,
        )
        .await?;
    sql_scd::refresh(sink.tables, contract, &gone).await?;
    Ok((checked_at, gone.len()))
}

/// Checks the bronze object's rows against `contract`: the valid versions go into the change
/// log unless it holds them already (an exact repeat is counted as a duplicate; a different row
/// with the same key and change time is a conflict, quarantined at stage `dedupe`), the others
/// to quarantine with every reason; then the history and current state of the touched keys
/// are recomputed. Returns the counts and the table versions committed.
async fn to_silver(
    sink: &Sink<'_>,
    contract: &movielake_core::Contract,
    object: &str,
    body: &[u8],
    at: DateTime<Utc>,
    outputs: &mut Vec<Output>,
) -> Result<(Counts, BTreeMap<String, Option<u64>>), PullError> {
    let ctx = RunContext {
        run_id: stable_id(object),
        ingested_at: at,
    };
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').filter(|line| !line.is_empty()).collect();
    let record = |i: usize| {
        SourceRecord::json(
            String::from_utf8_lossy(lines.get(i).copied().unwrap_or_default()),
            SourcePointer {
                object: object.to_string(),
                // The CSV's line: its header is line 1.
                line: Some(i as u64 + 2),
                ..Default::default()
            },
        )
    };
    let mut routed = route(contract, (0..lines.len()).map(record), &ctx);
    let mut counts = Counts::of(&routed);
    let changes = sql_scd::changes_table(contract);
    let mut versions = BTreeMap::new();
    if !routed.silver.is_empty() {
        let key = sql_scd::key_column(contract)?;
        let identity = |a: &Accepted| -> Option<(String, i64)> {
            let k = match contract.key.first().and_then(|&i| a.row.values.get(i)) {
                Some(Value::String(k)) => k.clone(),
                Some(Value::Int64(k)) => k.to_string(),
                _ => return None,
            };
            match contract.key.get(1).and_then(|&i| a.row.values.get(i)) {
                Some(Value::Timestamp(t)) => Some((k, t.timestamp_micros())),
                _ => None,
            }
        };
        let touched: BTreeSet<String> = routed
            .silver
            .iter()
            .filter_map(|a| identity(a).map(|(k, _)| k))
            .collect();
        // What the change log holds for these keys: (key, change time) -> digest.
        let held: HashMap<(String, i64), i64> = match sql_scd::read(
            sink.tables,
            &changes,
            Some(&touched),
            &format!(
                "SELECT CAST(t.\"{key}\" AS VARCHAR) AS held_key, CAST(t.updated_at AS BIGINT) AS at, t.{d} AS d \
                 FROM t {join}",
                d = sql_scd::DIGEST,
                join = sql_scd::key_join(&key)
            ),
        )
        .await?
        {
            Some(batch) => held_digests(&batch).map_err(|e| PullError::Encode(changes.clone(), e))?,
            None => HashMap::new(),
        };
        let mut fresh = Vec::new();
        for accepted in std::mem::take(&mut routed.silver) {
            let digest = accepted.body_hash as i64;
            match identity(&accepted).and_then(|id| held.get(&id).copied()) {
                None => fresh.push(accepted),
                Some(d) if d == digest => counts.duplicates_dropped += 1,
                Some(_) => {
                    let line = accepted.pointer.line.unwrap_or(2).saturating_sub(2) as usize;
                    let rejection = Rejection {
                        stage: Stage::Dedupe,
                        reasons: vec![Reason::new(
                            "conflicting_version",
                            None,
                            "the change log already holds a different row with this key and change time \
                             (two writes in one instant?): the first one landed is kept"
                                .to_string(),
                        )],
                    };
                    routed
                        .quarantine
                        .push(quarantine(contract, &ctx, record(line), rejection));
                }
            }
        }
        counts.silver = fresh.len() as u64;
        let conflicts = routed.quarantine.len() as u64 - counts.quarantined;
        counts.quarantined += conflicts;
        if conflicts > 0 {
            *counts
                .quarantined_by_rule
                .entry("conflicting_version".into())
                .or_default() += conflicts;
        }
        if !fresh.is_empty() {
            let rows: Vec<_> = fresh.iter().collect();
            let lineage = Lineage {
                ingested_at: at,
                run_id: &ctx.run_id,
                dimension: None,
            };
            let batch = accepted_batch(contract, &rows, &lineage)
                .and_then(|b| with_digest(b, fresh.iter().map(|a| a.body_hash as i64)))
                .map_err(|e| PullError::Encode(changes.clone(), e.to_string()))?;
            let key_columns: Vec<&str> = contract
                .key
                .iter()
                .filter_map(|&i| contract.columns.get(i).map(|c| c.name.as_str()))
                .collect();
            let merged = sink
                .tables
                .merge(&changes, batch, &key_columns, Upsert::InsertNew)
                .await?;
            // A rival pull committed some of them in between: they are repeats.
            counts.duplicates_dropped += counts.silver.saturating_sub(merged.inserted as u64);
            counts.silver = merged.inserted as u64;
            versions.insert(changes.clone(), merged.version);
            let keys = fresh.iter().filter_map(|a| identity(a).map(|(k, _)| k)).collect();
            let refreshed = sql_scd::refresh(sink.tables, contract, &keys).await?;
            versions.insert(sql_scd::history_table(contract), refreshed.history);
            versions.insert(sql_scd::current_table(contract), refreshed.current);
        }
    }
    if !routed.quarantine.is_empty() {
        let path = quarantine_part(contract, at.date_naive(), &ctx.run_id);
        let bytes = encode_jsonl(&routed.quarantine);
        outputs.push(Output {
            path: path.clone(),
            kind: OutputKind::Quarantine,
            rows: Some(routed.quarantine.len() as u64),
            bytes: bytes.len() as u64,
        });
        sink.lake.put(&path, bytes.into(), PutMode::Overwrite).await?;
    }
    Ok((counts, versions))
}

/// `(key, change time in µs) -> digest` from the change log's rows.
fn held_digests(batch: &RecordBatch) -> Result<HashMap<(String, i64), i64>, String> {
    let (Some(k), Some(at), Some(d)) = (
        batch.column(0).as_string_opt::<i32>(),
        batch.column(1).as_primitive_opt::<Int64Type>(),
        batch.column(2).as_primitive_opt::<Int64Type>(),
    ) else {
        return Err(format!("unexpected change log columns: {:?}", batch.schema()));
    };
    Ok((0..batch.num_rows())
        .filter(|&i| !k.is_null(i) && !at.is_null(i))
        .map(|i| ((k.value(i).to_string(), at.value(i)), d.value(i)))
        .collect())
}

/// The batch with the rows' digests appended as `_digest`.
fn with_digest(batch: RecordBatch, digests: impl Iterator<Item = i64>) -> Result<RecordBatch, EncodeError> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(sql_scd::DIGEST, DataType::Int64, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from_iter_values(digests)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(EncodeError::from)
}

/// Writes a bronze object create-only: already there means an earlier try of the same pull
/// wrote the same bytes (the name holds their hash). Returns its size.
async fn land(lake: &dyn Lake, object: &str, bytes: Vec<u8>) -> Result<u64, PullError> {
    let size = bytes.len() as u64;
    match lake.put(object, bytes.into(), PutMode::Create).await {
        Ok(_) | Err(LakeError::AlreadyExists { .. }) => Ok(size),
        Err(e) => Err(e.into()),
    }
}

/// Lands one extract in bronze: its gzipped CSV (`sidecar.file`), then the sidecar, in the run
/// folder named after `at` and the CSV's hash. Returns the CSV object and its size.
async fn land_extract(
    lake: &dyn Lake,
    at: DateTime<Utc>,
    csv: &[u8],
    sidecar: &bronze::Sidecar,
) -> Result<(String, u64), PullError> {
    let dir = bronze::run_dir(&sidecar.table, at, csv);
    let object = format!("{dir}/{}", sidecar.file);
    let size = land(lake, &object, bronze::gzip(csv)).await?;
    // Strings, numbers and times only: serialising cannot fail.
    let bytes = serde_json::to_vec_pretty(sidecar).unwrap_or_default();
    land(lake, &format!("{dir}/{}", bronze::SIDECAR), bytes).await?;
    Ok((object, size))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use movielake_core::sources::sql::USERS;
    use movielake_core::sources::sql::watermark::{Ceiling, Change, Window};
    use serde_json::json;

    use super::*;
    use crate::clients::sql::PulledRow;
    use crate::lake::LocalLake;
    use crate::tables::TableLocation;

    /// The sink of a folder lake `$lake` (a `LocalLake` named so), with its tables and the
    /// built-in contracts.
    macro_rules! sink {
        ($lake:ident) => {
            Sink {
                lake: &$lake,
                tables: &Tables::new(TableLocation::for_lake(&$lake.describe(), None).expect("tables")),
                contracts: &crate::config::load_contracts(None).expect("contracts"),
            }
        };
    }

    /// A table in memory: rows (key, seconds) and a clock; reads what is in the window.
    struct Memory {
        rows: Mutex<Vec<(String, i64)>>,
        now: Mutex<i64>,
        /// Another puller: while this one reads, it rewrites the watermark in this folder lake.
        rival: Option<std::path::PathBuf>,
    }

    impl Memory {
        fn new(rows: &[(&str, i64)], now: i64) -> Memory {
            Memory {
                rows: Mutex::new(rows.iter().map(|(k, s)| (k.to_string(), *s)).collect()),
                now: Mutex::new(now),
                rival: None,
            }
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_714_557_600 + seconds, 0).expect("time")
    }

    #[async_trait]
    impl SqlSource for Memory {
        fn dialect(&self) -> Dialect {
            Dialect::Postgres
        }
        async fn ceiling(&self, lag: Duration) -> Result<Ceiling, SqlError> {
            Ok(Ceiling::at(at(*self.now.lock().expect("lock")) - lag))
        }
        async fn changes(&self, _: &SqlTable, window: &Window, limit: usize) -> Result<Vec<PulledRow>, SqlError> {
            if let Some(dir) = &self.rival {
                let other = Watermark::default();
                LocalLake::new(dir)
                    .put(
                        &watermark_path("platform", &USERS),
                        serde_json::to_vec(&other).expect("json").into(),
                        PutMode::Overwrite,
                    )
                    .await
                    .expect("rival");
            }
            let mut rows: Vec<PulledRow> = self
                .rows
                .lock()
                .expect("lock")
                .iter()
                .filter(|(_, s)| at(*s) >= window.from && at(*s) <= window.to)
                .filter(|(k, s)| {
                    window
                        .after_key
                        .as_ref()
                        .is_none_or(|after| at(*s) > window.from || k > after)
                })
                .map(|(k, s)| PulledRow {
                    change: Change {
                        key: k.clone(),
                        at: at(*s),
                        digest: 0,
                    },
                    row_version: None,
                    row: json!({
                        "user_id": k,
                        "email": format!("{k}@example.com"),
                        "display_name": format!("as of {s}"),
                        "created_at": at(0).to_rfc3339(),
                        "updated_at": at(*s).to_rfc3339(),
                    })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                })
                .collect();
            rows.sort_by(|a, b| (a.change.at, &a.change.key).cmp(&(b.change.at, &b.change.key)));
            rows.truncate(limit);
            Ok(rows)
        }
        async fn keys(&self, _: &SqlTable) -> Result<Vec<String>, SqlError> {
            Ok(self.rows.lock().expect("lock").iter().map(|(k, _)| k.clone()).collect())
        }
    }

    #[tokio::test]
    async fn rows_land_in_bronze_before_the_watermark_moves_and_a_repeat_lands_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let lake = LocalLake::new(dir.path());
        let db = Memory::new(&[("u1", 10), ("u2", 20)], 30);
        let settings = PullSettings {
            lag: Duration::seconds(5),
            overlap: Duration::seconds(60),
            key_check: None,
            page_rows: 1000,
        };
        let first = pull_table(&sink!(lake), &db, "platform", &USERS, settings)
            .await
            .expect("pull");
        assert_eq!((first.rows, first.duplicates, first.through), (2, 0, Some(at(25))));
        assert_eq!((first.counts.records_in, first.counts.silver), (2, 2));
        assert_eq!(first.manifests.len(), 1);
        let bronze = first.bronze[0].clone();
        assert!(
            bronze.starts_with("bronze/sql/users/extract_date=2024-05-01/run=20240501T100025")
                && bronze.ends_with("/part-00001.csv.gz"),
            "{bronze}"
        );
        let gz = lake.get(&bronze).await.expect("bronze").bytes;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).expect("gzip");
        assert_eq!(text.lines().count(), 3, "a header and two rows: {text}");
        assert!(text.starts_with("user_id,email,"), "{text}");
        let sidecar = bronze.replace("part-00001.csv.gz", "_extract.json");
        let sidecar: serde_json::Value =
            serde_json::from_slice(&lake.get(&sidecar).await.expect("sidecar").bytes).expect("json");
        assert_eq!(sidecar["rows"], 2);
        assert_eq!(sidecar["to"], "2024-05-01T10:00:25Z");
        assert!(
            sidecar["query"]
                .as_str()
                .is_some_and(|q| q.starts_with("SELECT user_id")),
            "{sidecar}"
        );

        let again = pull_table(&sink!(lake), &db, "platform", &USERS, settings)
            .await
            .expect("pull");
        assert_eq!((again.rows, again.duplicates, again.bronze.len()), (0, 2, 0));

        db.rows.lock().expect("lock").push(("u3".into(), 12)); // committed late, stamped early
        *db.now.lock().expect("lock") = 40;
        let late = pull_table(&sink!(lake), &db, "platform", &USERS, settings)
            .await
            .expect("pull");
        assert_eq!((late.rows, late.duplicates), (1, 2));
        let stored: Watermark =
            serde_json::from_slice(&lake.get(&watermark_path("platform", &USERS)).await.expect("wm").bytes)
                .expect("json");
        assert_eq!(stored.through, Some(at(35)));
    }

    /// (valid_from, valid_to) seconds of each history row, in order.
    async fn history(tables: &Tables) -> Vec<(i64, Option<i64>)> {
        use deltalake::arrow::array::{Array, AsArray};
        use deltalake::arrow::datatypes::TimestampMicrosecondType;
        let out = tables
            .sql(
                "silver/sql/users_history",
                "SELECT valid_from, valid_to FROM t ORDER BY valid_from",
            )
            .await
            .expect("history");
        let seconds = |micros: i64| micros / 1_000_000 - 1_714_557_600;
        out.iter()
            .flat_map(|b| {
                let (from, to) = (
                    b.column(0).as_primitive::<TimestampMicrosecondType>().clone(),
                    b.column(1).as_primitive::<TimestampMicrosecondType>().clone(),
                );
                (0..b.num_rows()).map(move |i| (seconds(from.value(i)), (!to.is_null(i)).then(|| seconds(to.value(i)))))
            })
            .collect()
    }

    #[tokio::test]
    async fn a_late_version_is_slotted_into_the_history_where_it_belongs() {
        let dir = tempfile::tempdir().expect("dir");
        let lake = LocalLake::new(dir.path());
        let tables = Tables::new(TableLocation::for_lake(&lake.describe(), None).expect("tables"));
        let contracts = crate::config::load_contracts(None).expect("contracts");
        let sink = Sink {
            lake: &lake,
            tables: &tables,
            contracts: &contracts,
        };
        let settings = PullSettings {
            lag: Duration::zero(),
            overlap: Duration::seconds(60),
            key_check: None,
            page_rows: 1000,
        };
        let db = Memory::new(&[("u1", 10), ("u1", 30)], 40);
        pull_table(&sink, &db, "platform", &USERS, settings)
            .await
            .expect("pull");
        assert_eq!(history(&tables).await, [(10, Some(30)), (30, None)]);
        db.rows.lock().expect("lock").push(("u1".into(), 20));
        *db.now.lock().expect("lock") = 50;
        let late = pull_table(&sink, &db, "platform", &USERS, settings)
            .await
            .expect("pull");
        assert_eq!((late.rows, late.counts.silver), (1, 1));
        assert_eq!(history(&tables).await, [(10, Some(20)), (20, Some(30)), (30, None)]);
        let current = tables
            .sql(
                "silver/sql/users",
                "SELECT count(*) AS n, count(*) FILTER (WHERE updated_at = to_timestamp_seconds(1714557630)) AS latest FROM t",
            )
            .await
            .expect("current");
        let n = |c: usize| {
            current[0]
                .column(c)
                .as_any()
                .downcast_ref::<deltalake::arrow::array::Int64Array>()
                .map(|a| a.value(0))
        };
        assert_eq!((n(0), n(1)), (Some(1), Some(1)), "one current row: the version of 30 s");
    }

    #[tokio::test]
    async fn a_watermark_moved_by_another_pull_is_a_race_not_an_overwrite() {
        let dir = tempfile::tempdir().expect("dir");
        let lake = LocalLake::new(dir.path());
        let settings = PullSettings::default();
        pull_table(
            &sink!(lake),
            &Memory::new(&[("u1", 10)], 30),
            "platform",
            &USERS,
            settings,
        )
        .await
        .expect("first pull");
        let mut racing = Memory::new(&[("u1", 10), ("u2", 20)], 40);
        racing.rival = Some(dir.path().to_path_buf());
        let e = pull_table(&sink!(lake), &racing, "platform", &USERS, settings)
            .await
            .expect_err("the rival moved it");
        assert!(matches!(e, PullError::Raced(_)), "{e}");
        let stored: Watermark =
            serde_json::from_slice(&lake.get(&watermark_path("platform", &USERS)).await.expect("wm").bytes)
                .expect("json");
        assert_eq!(stored, Watermark::default(), "the rival's watermark stands");

        lake.put(
            &watermark_path("platform", &USERS),
            b"not json".to_vec().into(),
            PutMode::Overwrite,
        )
        .await
        .expect("corrupt");
        let e = pull_table(&sink!(lake), &Memory::new(&[], 50), "platform", &USERS, settings)
            .await
            .expect_err("unreadable");
        assert!(e.to_string().contains("fix or delete it"), "{e}");
    }
}
