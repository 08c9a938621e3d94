//! SQL over the lake: gold models (`gold/*.sql`) and `movielake query`, run by DataFusion.
//!
//! Every silver table is registered under its contract's name (`movies_dataset_movies`,
//! `imdb_title_basics`, `watch_events`, ...) with its Hive partition columns typed as the
//! contract declares them; every gold table under its model's name. Analysts change SQL files,
//! not Rust: a model is one `SELECT`, its file name is the gold table's name, and models run in
//! file-name order so a later model may read an earlier one.
//!
//! A folder lake is read in place. Any other lake (Azure) is read through the lake port: the
//! Parquet objects of the tables a statement names are copied to a scratch folder first, so
//! DataFusion reads local files either way and gold is written back through the port.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use movielake_core::ContractSet;
use movielake_core::output::silver::{arrow_type, writer_properties};
use parquet::arrow::ArrowWriter;

use crate::lake::{Lake, LakeError, PutMode};

include!(concat!(env!("OUT_DIR"), "/embedded_gold.rs"));

#[derive(Debug, thiserror::Error)]
pub enum GoldError {
    #[error(transparent)]
    Lake(#[from] LakeError),
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

/// A DataFusion session over the lake's silver and gold tables.
pub struct SqlLake {
    ctx: SessionContext,
    /// The scratch copy of a non-folder lake, removed on drop.
    scratch: Option<PathBuf>,
    /// Table name -> lake prefix, for what was registered.
    pub tables: BTreeMap<String, String>,
}

impl Drop for SqlLake {
    fn drop(&mut self) {
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Plain `Utf8` strings rather than DataFusion's default string views: gold Parquet is read by
/// Synapse, Spark and older readers that do not know the view types.
fn session_config() -> SessionConfig {
    SessionConfig::new()
        .set_bool("datafusion.execution.parquet.schema_force_view_types", false)
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
}

/// The folder of a folder lake (its `describe()` is `file://<root>`).
fn local_root(lake: &dyn Lake) -> Option<PathBuf> {
    lake.describe().strip_prefix("file://").map(PathBuf::from)
}

impl SqlLake {
    /// Registers every silver table (by contract) and gold table that has data. `only` limits
    /// which tables are copied from a non-folder lake: those whose name appears in these SQL
    /// texts (all of them when empty).
    pub async fn open(lake: &dyn Lake, contracts: &ContractSet, only: &[&str]) -> Result<Self, GoldError> {
        let wanted = |name: &str| only.is_empty() || only.iter().any(|sql| mentions(sql, name));
        let (root, scratch) = match local_root(lake) {
            Some(root) => (root, None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "movielake-sql-{}-{}",
                    std::process::id(),
                    chrono::Utc::now().timestamp_micros()
                ));
                (dir.clone(), Some(dir))
            }
        };
        let mut sql = SqlLake {
            ctx: SessionContext::new_with_config(session_config()),
            scratch,
            tables: BTreeMap::new(),
        };
        for contract in contracts.iter() {
            if !wanted(&contract.name) {
                continue;
            }
            let prefix = format!("silver/{}/{}/", contract.source, contract.table);
            let partitions: Vec<(String, DataType)> = contract
                .partition_by
                .iter()
                .map(|&i| (contract.columns[i].name.clone(), arrow_type(contract.columns[i].ty)))
                .collect();
            sql.register(lake, &root, &contract.name, &prefix, partitions).await?;
        }
        for name in gold_tables(lake).await? {
            if wanted(&name) && !sql.tables.contains_key(&name) {
                let prefix = format!("gold/{name}/");
                sql.register(lake, &root, &name, &prefix, Vec::new()).await?;
            }
        }
        Ok(sql)
    }

    async fn register(
        &mut self,
        lake: &dyn Lake,
        root: &Path,
        name: &str,
        prefix: &str,
        partitions: Vec<(String, DataType)>,
    ) -> Result<(), GoldError> {
        let objects: Vec<String> = lake
            .list(prefix)
            .await?
            .into_iter()
            .map(|m| m.path)
            .filter(|p| p.ends_with(".parquet"))
            .collect();
        if objects.is_empty() {
            return Ok(());
        }
        if self.scratch.is_some() {
            for path in &objects {
                let bytes = lake.get(path).await?.bytes;
                let file = root.join(path);
                let local = |e: std::io::Error| GoldError::Local {
                    path: file.display().to_string(),
                    message: e.to_string(),
                };
                if let Some(parent) = file.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(local)?;
                }
                tokio::fs::write(&file, &bytes).await.map_err(local)?;
            }
        }
        let parquet = self.ctx.state().table_options().parquet.clone();
        let options = ListingOptions::new(Arc::new(ParquetFormat::default().with_options(parquet)))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partitions);
        let dir = format!("{}/", root.join(prefix.trim_end_matches('/')).display());
        self.ctx
            .register_listing_table(name, &dir, options, None, None)
            .await
            .map_err(|e| GoldError::Sql(format!("cannot register {name} ({prefix}): {e}")))?;
        self.tables.insert(name.to_string(), prefix.to_string());
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
        self.tables.insert(name.to_string(), format!("gold/{name}/"));
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

/// The gold tables in the lake (`gold/<name>/...`).
async fn gold_tables(lake: &dyn Lake) -> Result<Vec<String>, GoldError> {
    let mut names: Vec<String> = lake
        .list("gold/")
        .await?
        .into_iter()
        .filter_map(|m| m.path.split('/').nth(1).map(str::to_string))
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
    pub path: String,
    pub rows: u64,
}

/// Runs every model and writes its result to `gold/<name>/part-00000.parquet` (overwrite: the
/// same silver gives the same gold). A model whose tables have no data yet is reported, not
/// fatal: gold is rebuilt on the next run.
pub async fn build(
    lake: &dyn Lake,
    contracts: &ContractSet,
    models: &[Model],
) -> Result<(Vec<Built>, Vec<String>), GoldError> {
    let texts: Vec<&str> = models.iter().map(|m| m.sql.as_str()).collect();
    let mut session = SqlLake::open(lake, contracts, &texts).await?;
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
        let path = format!("gold/{}/part-00000.parquet", model.name);
        let bytes = encode(schema.clone(), &batches).map_err(|message| GoldError::Model {
            file: model.file.clone(),
            message,
        })?;
        lake.put(&path, bytes, PutMode::Overwrite).await?;
        session.replace_table(&model.name, schema, batches)?;
        built.push(Built {
            name: model.name.clone(),
            path,
            rows: rows as u64,
        });
    }
    Ok((built, skipped))
}

fn encode(schema: SchemaRef, batches: &[RecordBatch]) -> Result<Bytes, String> {
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties())).map_err(|e| e.to_string())?;
    for batch in batches {
        writer.write(batch).map_err(|e| e.to_string())?;
    }
    writer.into_inner().map(Bytes::from).map_err(|e| e.to_string())
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
