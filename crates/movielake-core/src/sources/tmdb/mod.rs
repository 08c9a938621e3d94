//! TMDB API v3 bodies: list pages, movie details and `silver/tmdb/movies`, each from its bronze
//! object. No HTTP here: the client that fetches them is the app's.
//!
//! `api` holds what they all share (wire types, the bronze page path) and imports none of them;
//! `lists` uses `details` (its `[details]` settings) and `movies`; nothing here imports `lists`.

pub mod api;
pub mod details;
pub mod lists;
pub mod movies;
