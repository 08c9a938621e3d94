//! Clients of outside services (TMDB, Event Grid, Event Hubs, the platform's SQL database) and the local TMDB stand-in of
//! `movielake run`. They talk to the service only: no lake writes, no pipelines.

pub mod eventgrid;
#[cfg(feature = "eventhubs")]
pub mod eventhubs;
pub mod sql;
pub mod tmdb;
pub mod tmdb_local;
