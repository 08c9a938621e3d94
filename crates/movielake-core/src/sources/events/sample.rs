//! Seeded generator of realistic watch events, for `movielake run`, demos and load tests.
//! The same seed gives the same events, byte for byte.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

/// SplitMix64: tiny, fast, and good enough to make demo data look varied.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `p` (0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

/// Real TMDB ids with their runtimes in seconds.
const MOVIES: &[(i64, i64)] = &[
    (550, 8340),
    (13, 8520),
    (680, 9240),
    (155, 9120),
    (27205, 8880),
    (157336, 10140),
    (603, 8160),
    (238, 10500),
    (424, 11700),
    (122, 12060),
    (278, 8520),
    (769, 8700),
];
const DEVICES: &[&str] = &["tv", "mobile", "tablet", "web", "console"];
const COUNTRIES: &[&str] = &["FR", "US", "DE", "GB", "ES", "IT", "BR", "JP", "IN", "CA"];

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedEvent {
    pub body: String,
    pub occurred_at: DateTime<Utc>,
    /// The producer's partition key (the user): a user's events, and a producer's retries of
    /// them, go to one partition.
    pub partition_key: String,
    /// What the generator meant it to be, so tests and demos can check the routing.
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Valid,
    Bad,
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct SampleOptions {
    pub seed: u64,
    pub count: usize,
    pub start: DateTime<Utc>,
    /// Share of events broken on purpose (0..=1).
    pub bad_share: f64,
    /// Share of events that repeat an earlier one exactly (a producer retry).
    pub duplicate_share: f64,
    /// How many viewing sessions start per second of event time (each gives two events).
    pub sessions_per_second: f64,
    /// Viewers are `sql::sample::user_id(0..users)`: the users of the sample SQL database, so
    /// the events of `movielake run` find their subscriptions (issue 17).
    pub users: u64,
}

/// Viewers of generated events unless told otherwise.
pub const DEFAULT_USERS: u64 = 5_000;

/// Sessions of start/finish pairs spread over time; some broken, some repeated.
pub fn watch_events(opts: &SampleOptions) -> Vec<GeneratedEvent> {
    let mut rng = Rng::new(opts.seed);
    let mut out: Vec<GeneratedEvent> = Vec::with_capacity(opts.count);
    let mut clock = opts.start;
    while out.len() < opts.count {
        if !out.is_empty() && rng.chance(opts.duplicate_share) {
            let earlier = out[out.len() - 1 - rng.below(out.len().min(20) as u64) as usize].clone();
            out.push(GeneratedEvent {
                kind: EventKind::Duplicate,
                ..earlier
            });
            continue;
        }
        // Uniform gaps averaging 1/rate: enough variety for demo data, cheap to draw.
        let mean_gap_ms = (1000.0 / opts.sessions_per_second.max(1e-6)).min(86_400_000.0) as u64;
        clock += Duration::milliseconds(rng.below(2 * mean_gap_ms + 1) as i64);
        let (movie_id, duration) = *rng.pick(MOVIES);
        let user = crate::sources::sql::sample::user_id(rng.below(opts.users.max(1)) as usize);
        let session = format!("s-{}", &rng.uuid()[..13]);
        let device = *rng.pick(DEVICES);
        let country = *rng.pick(COUNTRIES);
        let started = json!({
            "event_id": rng.uuid(), "event_type": "watch_started", "user_id": user, "session_id": session,
            "movie_id": movie_id, "occurred_at": clock.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "device": device, "country": country, "position_seconds": 0, "duration_seconds": duration,
        });
        let watched = rng.below(duration as u64 + 1) as i64;
        let finished_at = clock + Duration::seconds(watched.min(600));
        let finished = json!({
            "event_id": rng.uuid(), "event_type": "watch_finished", "user_id": user, "session_id": session,
            "movie_id": movie_id, "occurred_at": finished_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "device": device, "country": country, "position_seconds": watched, "duration_seconds": duration,
        });
        for (mut event, at) in [(started, clock), (finished, finished_at)] {
            if out.len() >= opts.count {
                break;
            }
            let (body, kind) = if rng.chance(opts.bad_share) {
                (break_event(&mut rng, &mut event), EventKind::Bad)
            } else {
                (event.to_string(), EventKind::Valid)
            };
            out.push(GeneratedEvent {
                body,
                occurred_at: at,
                partition_key: user.clone(),
                kind,
            });
        }
    }
    out
}

/// One realistic defect per bad event.
fn break_event(rng: &mut Rng, event: &mut serde_json::Value) -> String {
    match rng.below(8) {
        0 => event["position_seconds"] = json!(-(rng.below(100) as i64) - 1),
        1 => event["event_type"] = json!("watch_paused"),
        2 => event["country"] = json!("France"),
        3 => event["movie_id"] = json!(0),
        4 => event["occurred_at"] = json!("yesterday"),
        5 => event["position_seconds"] = json!(999_999),
        6 => {
            if let Some(o) = event.as_object_mut() {
                o.remove("event_id");
            }
        }
        _ => return format!("{{\"event_id\": \"{}\", truncated", rng.uuid()),
    }
    event.to_string()
}

/// The partition a key goes to, stable across runs and machines (like Event Hubs' own hashing,
/// though not the same function).
pub fn partition_for(key: &str, partitions: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % partitions.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(seed: u64) -> SampleOptions {
        SampleOptions {
            seed,
            count: 500,
            start: DateTime::UNIX_EPOCH,
            bad_share: 0.1,
            duplicate_share: 0.05,
            sessions_per_second: 0.5,
            users: DEFAULT_USERS,
        }
    }

    #[test]
    fn same_seed_same_events() {
        assert_eq!(watch_events(&opts(7)), watch_events(&opts(7)));
        assert_ne!(watch_events(&opts(7)), watch_events(&opts(8)));
        assert_eq!(watch_events(&opts(7)).len(), 500);
    }

    #[test]
    fn shares_are_roughly_respected() {
        let events = watch_events(&opts(1));
        let bad = events.iter().filter(|e| e.kind == EventKind::Bad).count();
        let dup = events.iter().filter(|e| e.kind == EventKind::Duplicate).count();
        assert!((20..=90).contains(&bad), "bad {bad}");
        assert!((5..=50).contains(&dup), "dup {dup}");
    }
}
