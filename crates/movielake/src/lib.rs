//! movielake: the Azure Functions custom handler and the operator CLI, around the sans-IO core.
//! The handler and the CLI drive the pipelines, which apply the core's plans through the lake
//! port and call outside services through the clients.

pub mod cli;
pub mod clients;
pub mod config;
pub mod handler;
pub mod lake;
pub mod pipelines;
pub mod tables;
