//! movielake's sans-IO core: contracts, the rule engine, routing to silver or quarantine,
//! Parquet encoding to bytes, deterministic names, run manifests and the Functions host's
//! payload format. No tokio, no network, no clock, no environment: every input is an argument.

pub mod column_writer;
pub mod contract;
pub mod eventgrid;
pub mod expr;
mod fast_json;
pub mod files;
pub mod host;
pub mod imdb;
pub mod ledger;
pub mod manifest;
pub mod movies_dataset;
pub mod naming;
pub mod pipelines;
pub mod pylit;
pub mod quarantine;
pub mod route;
pub mod sample;
pub mod sample_files;
pub mod silver;
pub mod timestamp;
pub mod tmdb;
pub mod tmdb_details;
pub mod tmdb_movies;
pub mod validate;
pub mod value;

pub use contract::{Contract, ContractError, ContractSet};
pub use route::{RunContext, SourceRecord, route};
pub use validate::{Reason, Stage, Verdict};
pub use value::{ColumnType, Value};
