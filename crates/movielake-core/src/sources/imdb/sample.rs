//! A generated IMDb `title.basics.tsv` for demos and benchmarks, in the exact shape of the real
//! one (titles with `"`, and titles that are literally `NA`, `None` or `null`). Seeded: the same
//! seed gives the same bytes.

use std::io::{self, Write};

use crate::sources::events::sample::Rng;

/// Writes a `title.basics.tsv` of `rows` rows to `out`: the real file's columns and value
/// shapes, 1 title in 50 starting with `"`, and the titles `NA`, `None`, `null` spread through.
pub fn title_basics_tsv(rows: u64, seed: u64, out: &mut impl Write) -> io::Result<()> {
    const TYPES: &[&str] = &["movie", "short", "tvEpisode", "tvSeries", "video", "tvMovie"];
    const WORDS: &[&str] = &[
        "The", "Last", "Night", "of", "Love", "City", "Blue", "Dead", "Man", "Story",
    ];
    const GENRE_LISTS: &[&str] = &[
        "Drama",
        "Comedy",
        "Documentary,Short",
        "Action,Crime,Drama",
        "\\N",
        "Animation,Comedy,Family",
    ];
    let mut rng = Rng::new(seed);
    let mut line = String::with_capacity(128);
    out.write_all(
        b"tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres\n",
    )?;
    for i in 0..rows {
        line.clear();
        let title: String = match i % 997 {
            0 => "NA".into(),
            1 => "None".into(),
            2 => "null".into(),
            _ => {
                let mut t = String::new();
                if rng.chance(0.02) {
                    t.push('"');
                }
                for w in 0..1 + rng.below(4) {
                    if w > 0 {
                        t.push(' ');
                    }
                    t.push_str(*rng.pick(WORDS) as &str);
                }
                t
            }
        };
        let kind = rng.pick(TYPES);
        let start = 1890 + rng.below(135);
        let end = if *kind == "tvSeries" && rng.chance(0.5) {
            (start + rng.below(10)).to_string()
        } else {
            "\\N".into()
        };
        let runtime = if rng.chance(0.3) {
            "\\N".to_string()
        } else {
            (1 + rng.below(180)).to_string()
        };
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "tt{:08}\t{kind}\t{title}\t{title}\t{}\t{start}\t{end}\t{runtime}\t{}",
            i + 1,
            u8::from(rng.chance(0.02)),
            rng.pick(GENRE_LISTS)
        );
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}
