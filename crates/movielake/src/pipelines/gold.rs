//! SQL over the lake: gold models (`gold/*.sql`) and `movielake query`, run by DataFusion.
//!
//! Every silver table is registered under its contract's name (`movies_dataset_movies`,
//! `imdb_title_basics`, `watch_events`, ...) with its Hive partition columns typed as the
//! contract declares them; every gold table under its model's name. Analysts change SQL files,
//! not Rust: a model is one `SELECT`, its file name is the gold table's name, and models run in
//! file-name order so a later model may read an earlier one.
//!
//! Every table is a Delta table read through its log (delta-rs' DataFusion provider), on a
//! folder or on Azure alike: a query sees one committed version of each table, and never a
//! file that a compaction replaced but VACUUM has not removed yet. Nothing globs Parquet.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use movielake_core::ContractSet;
use movielake_core::output::naming::silver_table;

use crate::lake::{Lake, LakeError, PutMode};
use crate::tables::{TableError, Tables};

include!(concat!(env!("OUT_DIR"), "/embedded_gold.rs"));

#[derive(Debug, thiserror::Error)]
pub enum GoldError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{0}")]
    Sql(String),
    #[error("{file}: {message}")]
    Model { file: String, message: String },
    #[error("{path}: {message}")]
    Local { path: String, message: String },
}

/// One gold model: a `SELECT` whose result is the gold table `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub name: String,
    pub file: String,
    pub sql: String,
}

/// The models folder used when none is named: `./gold` if there is one (a deployment may ship
/// its own), else none (the models built into the binary).
pub fn default_models_dir() -> Option<std::path::PathBuf> {
    Some(std::path::PathBuf::from("gold")).filter(|d| d.is_dir())
}

/// Models from `dir` (every `*.sql`), else the ones built into the binary.
pub fn load_models(dir: Option<&Path>) -> Result<Vec<Model>, GoldError> {
    let files: Vec<(String, String)> = match dir {
        None => EMBEDDED_GOLD_MODELS
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect(),
        Some(dir) => {
            let local = |e: std::io::Error| GoldError::Local {
                path: dir.display().to_string(),
                message: e.to_string(),
            };
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(local)? {
                let path = entry.map_err(local)?.path();
                if path.extension().is_some_and(|x| x == "sql") {
                    let text = std::fs::read_to_string(&path).map_err(local)?;
                    files.push((path.display().to_string(), text));
                }
            }
            files
        }
    };
    let mut models: Vec<Model> = files
        .into_iter()
        .map(|(file, sql)| {
            let name = Path::new(&file)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if valid {
                Ok(Model { name, file, sql })
            } else {
                Err(GoldError::Model {
                    file,
                    message: "a model's file name is its table name: lowercase letters, digits and '_'".into(),
                })
            }
        })
        .collect::<Result<_, _>>()?;
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// A DataFusion session over the lake's silver and gold Delta tables.
pub struct SqlLake {
    ctx: SessionContext,
    /// Table name -> the Delta table it reads (`silver/events/watch`, `gold/genre_year`).
    pub tables: BTreeMap<String, String>,
    /// Table name -> the version of it this session reads.
    versions: BTreeMap<String, u64>,
}

/// Plain `Utf8` strings rather than DataFusion's default string views: gold is read by
/// Synapse, Spark and older readers that do not know the view types.
fn session_config() -> SessionConfig {
    SessionConfig::new()
        .set_bool("datafusion.execution.parquet.schema_force_view_types", false)
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
}

impl SqlLake {
    /// Registers every silver table (by contract) and gold table that exists, each at its
    /// current version: the files its log lists, never a file a compaction replaced. `only`
    /// limits which tables are opened: those whose name appears in these SQL texts (all of
    /// them when empty).
    pub async fn open(
        lake: &dyn Lake,
        tables: &Tables,
        contracts: &ContractSet,
        only: &[&str],
    ) -> Result<Self, GoldError> {
        let wanted = |name: &str| only.is_empty() || only.iter().any(|sql| mentions(sql, name));
        let mut sql = SqlLake {
            ctx: SessionContext::new_with_config(session_config()),
            tables: BTreeMap::new(),
            versions: BTreeMap::new(),
        };
        for contract in contracts.iter() {
            let table = silver_table(contract);
            if wanted(&contract.name) && has_log(lake, &table).await? {
                sql.register(tables, &contract.name, &table).await?;
            }
        }
        for name in gold_tables(lake).await? {
            if wanted(&name) && !sql.tables.contains_key(&name) {
                sql.register(tables, &name, &format!("gold/{name}")).await?;
            }
        }
        Ok(sql)
    }

    async fn register(&mut self, tables: &Tables, name: &str, table: &str) -> Result<(), GoldError> {
        let delta = tables.open(table).await?;
        let Some(version) = delta.version() else {
            return Ok(());
        };
        let failed = |e: &dyn std::fmt::Display| GoldError::Sql(format!("cannot register {name} ({table}): {e}"));
        delta
            .update_datafusion_session(&self.ctx.state())
            .map_err(|e| failed(&e))?;
        let provider = delta.table_provider().await.map_err(|e| failed(&e))?;
        self.ctx.register_table(name, provider).map_err(|e| failed(&e))?;
        self.tables.insert(name.to_string(), table.to_string());
        self.versions.insert(name.to_string(), version);
        Ok(())
    }

    /// The Delta tables `sql` reads and the version of each this session sees.
    fn inputs(&self, sql: &str) -> BTreeMap<String, u64> {
        self.tables
            .iter()
            .filter(|(name, _)| mentions(sql, name))
            .filter_map(|(name, table)| Some((table.clone(), *self.versions.get(name)?)))
            .collect()
    }

    /// Runs one statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, GoldError> {
        Ok(self.query_with_schema(sql).await?.1)
    }

    /// Like [`SqlLake::query`], with the result's schema (known even when no row comes back).
    pub async fn query_with_schema(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), GoldError> {
        let frame = self
            .ctx
            .sql(sql)
            .await
            .map_err(|e| GoldError::Sql(explain(e, &self.tables)))?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(|e| GoldError::Sql(e.to_string()))?;
        Ok((schema, batches))
    }

    fn replace_table(
        &mut self,
        name: &str,
        version: u64,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<(), GoldError> {
        let table = MemTable::try_new(schema, vec![batches]).map_err(|e| GoldError::Sql(e.to_string()))?;
        let _ = self.ctx.deregister_table(name);
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| GoldError::Sql(e.to_string()))?;
        self.tables.insert(name.to_string(), format!("gold/{name}"));
        self.versions.insert(name.to_string(), version);
        Ok(())
    }
}

/// Whether `sql` names `table` as a whole word.
fn mentions(sql: &str, table: &str) -> bool {
    sql.match_indices(table).any(|(i, _)| {
        let before = sql[..i].chars().next_back();
        let after = sql[i + table.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

/// Whether `table` has a Delta log (asked through the lake port, so that reading a table that
/// was never written does not create its folder).
async fn has_log(lake: &dyn Lake, table: &str) -> Result<bool, GoldError> {
    Ok(!lake.list(&format!("{table}/_delta_log/")).await?.is_empty())
}

/// The gold tables in the lake: `gold/<name>/` folders with a Delta log.
async fn gold_tables(lake: &dyn Lake) -> Result<Vec<String>, GoldError> {
    let mut names: Vec<String> = lake
        .list("gold/")
        .await?
        .into_iter()
        .filter_map(|m| {
            let mut segments = m.path.split('/').skip(1);
            let name = segments.next()?;
            (segments.next() == Some("_delta_log")).then(|| name.to_string())
        })
        .collect();
    names.dedup();
    Ok(names)
}

/// DataFusion's "table not found" with the tables there are.
fn explain(e: datafusion::error::DataFusionError, tables: &BTreeMap<String, String>) -> String {
    let message = e.to_string();
    if message.contains("not found") {
        let known: Vec<&str> = tables.keys().map(String::as_str).collect();
        format!("{message}; tables with data: {}", known.join(", "))
    } else {
        message
    }
}

/// A gold table written by a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub name: String,
    /// The gold table (`gold/<name>`).
    pub path: String,
    pub rows: u64,
    /// The table version the result was committed as.
    pub version: u64,
}

/// Which models [`build`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Every model (`movielake gold`, `movielake run`).
    All,
    /// Only models whose SQL or input tables changed since their last build, or whose gold
    /// table does not exist (the `maintain_tables` timer): an hourly run over an idle lake
    /// reads no data.
    Changed,
}

/// What one [`build`] did.
#[derive(Debug, Default)]
pub struct GoldRun {
    pub built: Vec<Built>,
    /// Models left alone ([`Refresh::Changed`]): same SQL, same input versions as last time.
    pub unchanged: Vec<String>,
    /// Models whose input has no data yet, with the reason: built on a later run.
    pub skipped: Vec<String>,
}

/// What a gold table was last built from, kept in `ops/gold/<model>.json`: the model's SQL (as
/// a hash) and the version of each table it read. Written after the gold commit, so a build
/// that failed in between is simply done again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct BuiltFrom {
    sql: String,
    inputs: BTreeMap<String, u64>,
}

fn built_from_path(model: &str) -> String {
    format!("ops/gold/{model}.json")
}

async fn last_built_from(lake: &dyn Lake, model: &str) -> Result<Option<BuiltFrom>, GoldError> {
    match lake.get(&built_from_path(model)).await {
        // Unreadable (written by another release, damaged): build again, and rewrite it.
        Ok(object) => Ok(serde_json::from_slice(&object.bytes).ok()),
        Err(LakeError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Runs the models (every one, or those with changes: see [`Refresh`]) and replaces each one's
/// gold table `gold/<name>` with its result in one commit (a reader sees the previous result
/// or this one). A model whose tables have no data yet is reported, not fatal: gold is rebuilt
/// on the next run.
pub async fn build(
    lake: &dyn Lake,
    tables: &Tables,
    contracts: &ContractSet,
    models: &[Model],
    refresh: Refresh,
) -> Result<GoldRun, GoldError> {
    let texts: Vec<&str> = models.iter().map(|m| m.sql.as_str()).collect();
    let mut session = SqlLake::open(lake, tables, contracts, &texts).await?;
    let mut run = GoldRun::default();
    for model in models {
        let from = BuiltFrom {
            sql: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(model.sql.as_bytes())),
            inputs: session.inputs(&model.sql),
        };
        if refresh == Refresh::Changed
            && last_built_from(lake, &model.name).await?.as_ref() == Some(&from)
            && has_log(lake, &format!("gold/{}", model.name)).await?
        {
            run.unchanged.push(model.name.clone());
            continue;
        }
        let (schema, batches) = match session.query_with_schema(&model.sql).await {
            Ok(result) => result,
            Err(GoldError::Sql(message)) if message.contains("not found") => {
                run.skipped.push(format!(
                    "{}: skipped, its input has no data yet ({message})",
                    model.name
                ));
                continue;
            }
            // On the timer, an input without a column the model reads is waited for, not
            // failed on: a table written before its contract gained the column (the watch
            // events before enrichment) has it from its next commit. Run by hand, it is an
            // error, so that a typo is seen.
            Err(GoldError::Sql(message)) if refresh == Refresh::Changed && message.contains("No field named") => {
                run.skipped.push(format!(
                    "{}: skipped, its input lacks a column it reads, until a commit brings it ({message})",
                    model.name
                ));
                continue;
            }
            Err(GoldError::Sql(message)) => {
                return Err(GoldError::Model {
                    file: model.file.clone(),
                    message,
                });
            }
            Err(other) => return Err(other),
        };
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let path = format!("gold/{}", model.name);
        let written = crate::tables::plain_strings(&schema, &batches).map_err(|message| GoldError::Model {
            file: model.file.clone(),
            message,
        })?;
        let version = tables.replace_all(&path, written.0.clone(), written.1.clone()).await?;
        let record = serde_json::to_vec_pretty(&from).map_err(|e| GoldError::Sql(e.to_string()))?;
        lake.put(&built_from_path(&model.name), record.into(), PutMode::Overwrite)
            .await?;
        session.replace_table(&model.name, version, written.0, written.1)?;
        run.built.push(Built {
            name: model.name.clone(),
            path,
            rows: rows as u64,
            version,
        });
    }
    Ok(run)
}

/// Batches as a text table, at most `max_rows` rows.
pub fn render(batches: &[RecordBatch], max_rows: usize) -> Result<String, GoldError> {
    let mut kept = Vec::new();
    let mut left = max_rows;
    for batch in batches {
        if left == 0 {
            break;
        }
        let take = left.min(batch.num_rows());
        kept.push(batch.slice(0, take));
        left -= take;
    }
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let table = datafusion::arrow::util::pretty::pretty_format_batches(&kept)
        .map_err(|e| GoldError::Sql(e.to_string()))?
        .to_string();
    Ok(if total > max_rows {
        format!("{table}\n({total} rows, first {max_rows} shown)")
    } else {
        format!("{table}\n({total} rows)")
    })
}
