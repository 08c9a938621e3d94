//! movielake: the Azure Functions custom handler and the operator CLI, around the sans-IO core.

pub mod bench;
pub mod config;
pub mod eventgrid;
#[cfg(feature = "eventhubs")]
pub mod eventhubs;
pub mod gold;
pub mod handler;
pub mod lake;
pub mod logging;
pub mod pipelines;
pub mod run;
pub mod send;
pub mod status;
pub mod tmdb;
pub mod tmdb_local;
