//! One folder per source: its bronze paths, the parser from its bytes to records, its sample
//! generator and the pure plan of one bronze object. No IO, and no knowledge of the host's payloads.

pub mod events;
pub mod imdb;
pub mod movies_dataset;
pub mod sql;
pub mod tmdb;
