//! TMDB API v3 bodies: list pages, movie details and `silver/tmdb/movies`, each from its bronze
//! object. No HTTP here: the client that fetches them is the app's.

pub mod details;
pub mod lists;
pub mod movies;
