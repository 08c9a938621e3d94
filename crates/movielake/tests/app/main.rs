//! Integration tests of the app crate (one test binary): the lake conformance suite against
//! every adapter, and the custom handler driven over real HTTP as the Functions host does.

mod crash;
mod faults;
mod files;
mod gold_refresh;
mod handler;
mod host_output;
mod lake_conformance;
mod maintain;
mod migrate;
mod poison;
mod sql_lifecycle;
mod sql_postgres;
mod sql_sqlite;
mod sql_sqlserver;
mod support;
mod tables;
mod tmdb;
mod tmdb_announce;
mod tmdb_client;
mod tmdb_details;
mod watch_events;
