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

use crate::lake::{Lake, LakeError};
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
        if delta.version().is_none() {
            return Ok(());
        }
        let failed = |e: &dyn std::fmt::Display| GoldError::Sql(format!("cannot register {name} ({table}): {e}"));
        delta
            .update_datafusion_session(&self.ctx.state())
            .map_err(|e| failed(&e))?;
        let provider = delta.table_provider().await.map_err(|e| failed(&e))?;
        self.ctx.register_table(name, provider).map_err(|e| failed(&e))?;
        self.tables.insert(name.to_string(), table.to_string());
        Ok(())
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

    fn replace_table(&mut self, name: &str, schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<(), GoldError> {
        let table = MemTable::try_new(schema, vec![batches]).map_err(|e| GoldError::Sql(e.to_string()))?;
        let _ = self.ctx.deregister_table(name);
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| GoldError::Sql(e.to_string()))?;
        self.tables.insert(name.to_string(), format!("gold/{name}"));
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

/// Runs every model and replaces its gold table `gold/<name>` with the result in one commit (a
/// reader sees the previous result or this one). A model whose tables have no data yet is
/// reported, not fatal: gold is rebuilt on the next run.
pub async fn build(
    lake: &dyn Lake,
    tables: &Tables,
    contracts: &ContractSet,
    models: &[Model],
) -> Result<(Vec<Built>, Vec<String>), GoldError> {
    let texts: Vec<&str> = models.iter().map(|m| m.sql.as_str()).collect();
    let mut session = SqlLake::open(lake, tables, contracts, &texts).await?;
    let (mut built, mut skipped) = (Vec::new(), Vec::new());
    for model in models {
        let (schema, batches) = match session.query_with_schema(&model.sql).await {
            Ok(result) => result,
            Err(GoldError::Sql(message)) if message.contains("not found") => {
                skipped.push(format!(
                    "{}: skipped, its input has no data yet ({message})",
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
        session.replace_table(&model.name, written.0, written.1)?;
        built.push(Built {
            name: model.name.clone(),
            path,
            rows: rows as u64,
            version,
        });
    }
    Ok((built, skipped))
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
