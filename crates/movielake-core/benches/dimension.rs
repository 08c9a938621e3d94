//! `cargo bench -p movielake-core --bench dimension`: the enrichment dimension (issue 17) at
//! the size an instance must hold, USERS users (default 1,000,000) with three subscription
//! versions each (plan changes, a cancellation) and one user version: build time, the index's
//! heap bytes and the process's peak RSS (Linux `VmHWM`), and lookups per second for events at
//! random times. Beside it, the floor of a lookup: one probe of a plain `HashMap<String, u32>`
//! of the same users.

use std::collections::HashMap;
use std::time::Instant;

use movielake_core::enrich::{Dimension, DimensionStatus};

const H: i64 = 3_600_000_000;

/// xorshift: a fixed, dependency-free sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let users: usize = std::env::var("USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let lookups: usize = std::env::var("LOOKUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let before = peak_rss_mib().unwrap_or(0.0);
    let plans = ["basic", "standard", "premium"];
    let countries = ["FR", "DE", "US", "GB", "ES", "IT", "NL", "BR", "JP", "IN"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let start = Instant::now();
    let mut b = Dimension::builder();
    for u in 0..users {
        let user = format!("user-{u:08}");
        let t0 = (rng.next() % 1000) as i64 * H;
        b.user(&user, t0, None, Some(countries[u % countries.len()]));
        let sub = format!("sub-{u:09}");
        let (t1, t2) = (
            t0 + (rng.next() % 500) as i64 * H,
            t0 + (500 + rng.next() % 500) as i64 * H,
        );
        b.subscription(&user, &sub, t0, Some(t1), Some(plans[u % 3]), Some("trial"));
        b.subscription(&user, &sub, t1, Some(t2), Some(plans[(u + 1) % 3]), Some("active"));
        b.subscription(&user, &sub, t2, None, Some(plans[(u + 1) % 3]), Some("cancelled"));
    }
    let d = b.build();
    let built = start.elapsed();
    let after = peak_rss_mib().unwrap_or(0.0);
    println!(
        "dimension: {} users, {} versions built in {:.2} s; index {:.0} MiB; peak RSS {:.0} MiB (before {:.0} MiB)",
        d.users(),
        d.versions(),
        built.as_secs_f64(),
        d.heap_bytes() as f64 / 1_048_576.0,
        after,
        before
    );
    let keys: Vec<String> = (0..lookups)
        .map(|_| format!("user-{:08}", rng.next() % users as u64))
        .collect();
    let times: Vec<i64> = (0..lookups).map(|_| (rng.next() % 2200) as i64 * H).collect();
    let start = Instant::now();
    let mut matched = 0usize;
    for (k, &t) in keys.iter().zip(&times) {
        if d.lookup(k, t).status == DimensionStatus::Matched {
            matched += 1;
        }
    }
    let took = start.elapsed();
    println!(
        "lookup: {:.0} ns each ({} lookups, {} matched)",
        took.as_nanos() as f64 / lookups as f64,
        lookups,
        matched
    );
    let floor: HashMap<String, u32> = (0..users).map(|u| (format!("user-{u:08}"), u as u32)).collect();
    let start = Instant::now();
    let mut hits = 0u64;
    for k in &keys {
        hits += u64::from(floor.get(k).copied().unwrap_or(0) & 1);
    }
    let took = start.elapsed();
    println!(
        "floor (one HashMap<String, u32> probe): {:.0} ns each ({hits})",
        took.as_nanos() as f64 / lookups as f64
    );
}
