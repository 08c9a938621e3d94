//! movielake: the Azure Functions custom handler and the operator CLI, around the sans-IO core.

pub mod config;
pub mod handler;
pub mod lake;
pub mod pipelines;
pub mod run;
