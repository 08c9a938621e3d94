//! A generated The Movies Dataset `movies_metadata.csv` for demos and benchmarks, in the exact
//! shape of the real one (Python-literal columns, quoted multi-line text, a few dirty rows).
//! Seeded: the same seed gives the same bytes.

use crate::sources::events::sample::Rng;

const GENRES: &[(i64, &str)] = &[
    (28, "Action"),
    (12, "Adventure"),
    (16, "Animation"),
    (35, "Comedy"),
    (80, "Crime"),
    (18, "Drama"),
    (10751, "Family"),
    (14, "Fantasy"),
    (27, "Horror"),
    (878, "Science Fiction"),
    (53, "Thriller"),
];
const COMPANIES: &[(i64, &str)] = &[
    (2, "Walt Disney Pictures"),
    (4, "Paramount Pictures"),
    (5, "Columbia Pictures"),
    (33, "Universal Pictures"),
    (174, "Warner Bros."),
    (25, "20th Century Fox"),
    (7505, "Marvel Entertainment"),
    (3, "Pixar Animation Studios"),
];
const HEADER: &str = "adult,belongs_to_collection,budget,genres,homepage,id,imdb_id,original_language,original_title,overview,popularity,poster_path,production_companies,production_countries,release_date,revenue,runtime,spoken_languages,status,tagline,title,video,vote_average,vote_count";

/// A `movies_metadata.csv` of `movies` rows. About 1 in 25 has an unknown (0) budget, and with
/// `dirty` a shifted row and an exact repeat are added, as in the real file.
pub fn movies_metadata_csv(movies: usize, seed: u64, dirty: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(movies + 2);
    for i in 0..movies {
        let id = 1000 + i as i64;
        let genres: Vec<String> = (0..1 + rng.below(3))
            .map(|_| {
                let (gid, name) = rng.pick(GENRES);
                format!("{{'id': {gid}, 'name': '{name}'}}")
            })
            .collect();
        let companies: Vec<String> = (0..1 + rng.below(2))
            .map(|_| {
                let (cid, name) = rng.pick(COMPANIES);
                format!("{{'name': '{name}', 'id': {cid}}}")
            })
            .collect();
        let budget = if rng.chance(0.04) {
            0
        } else {
            1_000_000 * (1 + rng.below(200))
        };
        let revenue = if rng.chance(0.1) {
            0
        } else {
            500_000 * (1 + rng.below(1000))
        };
        let year = 1980 + rng.below(45);
        let collection = if rng.chance(0.1) {
            format!(
                "{{'id': {}, 'name': 'Saga {} Collection', 'poster_path': None, 'backdrop_path': None}}",
                500 + i,
                i
            )
        } else {
            String::new()
        };
        let overview = if rng.chance(0.2) {
            format!("A \"quoted\" story, told\nover two lines (movie {i}).")
        } else {
            format!("The story of movie {i}.")
        };
        rows.push(vec![
            "False".into(),
            collection,
            budget.to_string(),
            format!("[{}]", genres.join(", ")),
            String::new(),
            id.to_string(),
            format!("tt{:07}", 100_000 + i),
            "en".into(),
            format!("Movie {i}"),
            overview,
            format!("{:.6}", rng.below(40_000) as f64 / 1000.0),
            format!("/p{i}.jpg"),
            format!("[{}]", companies.join(", ")),
            "[{'iso_3166_1': 'US', 'name': 'United States of America'}]".into(),
            format!("{year}-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28)),
            revenue.to_string(),
            format!("{}.0", 80 + rng.below(80)),
            "[{'iso_639_1': 'en', 'name': 'English'}]".into(),
            "Released".into(),
            String::new(),
            format!("Movie {i}"),
            "False".into(),
            format!("{:.1}", rng.below(100) as f64 / 10.0),
            rng.below(10_000).to_string(),
        ]);
    }
    if dirty && movies > 1 {
        rows.push(rows[1].clone());
        let mut shifted = rows[0].clone();
        shifted.remove(1);
        shifted.push(String::new());
        shifted[5] = "1997-08-20".into();
        rows.push(shifted);
    }
    let mut bytes = Vec::new();
    bytes.extend_from_slice(HEADER.as_bytes());
    bytes.push(b'\n');
    for row in &rows {
        // Writing strings into a Vec cannot fail.
        let _ = out.write_record(row);
    }
    bytes.extend_from_slice(&out.into_inner().unwrap_or_default());
    bytes
}
