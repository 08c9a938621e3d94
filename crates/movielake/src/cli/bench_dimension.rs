//! `movielake bench dimension`: what loading the enrichment dimension costs an instance. A
//! scratch lake gets generated SCD2 histories (`silver/sql/users_history`,
//! `silver/sql/subscriptions_history`: each user one version, each subscription three), then
//! a fresh process (`bench dimension-load`) loads them the way `ingest_watch_events` does
//! (`pipelines::dimension::load`: two Delta scans, then the core's index) and prints its time
//! and its peak memory. A benchmark, not a test: it prints figures, it asserts nothing.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};

use crate::handler::AppState;
use crate::pipelines::dimension::{SUBSCRIPTIONS_HISTORY, USERS_HISTORY, load};
use crate::tables::{Append, Tables};

/// Rows per generated batch (one commit each).
const CHUNK: usize = 250_000;

/// Writes the histories of `users` users into the lake at `dir`, then loads them in a fresh
/// process and prints what it took.
pub async fn command(users: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    let tables = Tables::new(crate::tables::TableLocation::for_lake(
        dir.to_str()
            .ok_or_else(|| anyhow::anyhow!("scratch folder is not UTF-8"))?,
        None,
    )?);
    let started = Instant::now();
    write_histories(&tables, users).await?;
    eprintln!(
        "  wrote {users} user versions and {} subscription versions in {:.1?}",
        users * 3,
        started.elapsed()
    );
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--lake", &dir.display().to_string(), "bench", "dimension-load"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "dimension-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// Loads the dimension from the lake's histories (in this fresh process) and prints the
/// figures.
pub async fn load_command(state: &AppState) -> anyhow::Result<()> {
    let started = Instant::now();
    let (dimension, _) = load(&state.tables).await?;
    let elapsed = started.elapsed();
    println!(
        "dimension loaded from Delta: {} users, {} versions in {:.2} s; index {:.0} MiB; process peak {:.0} MiB",
        dimension.users(),
        dimension.versions(),
        elapsed.as_secs_f64(),
        dimension.heap_bytes() as f64 / (1 << 20) as f64,
        super::bench::peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}

async fn write_histories(tables: &Tables, users: usize) -> anyhow::Result<()> {
    let at = |s: &str| {
        s.parse::<DateTime<Utc>>()
            .map(|t| t.timestamp_micros())
            .unwrap_or_default()
    };
    let (created, standard, premium) = (
        at("2020-01-01T00:00:00Z"),
        at("2023-06-01T00:00:00Z"),
        at("2024-05-01T12:00:00Z"),
    );
    let times = |v: Vec<Option<i64>>| Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) as ArrayRef;
    const COUNTRIES: [&str; 8] = ["FR", "DE", "US", "GB", "ES", "IT", "NL", "BR"];
    for start in (0..users).step_by(CHUNK) {
        let ids: Vec<usize> = (start..(start + CHUNK).min(users)).collect();
        let user = |u: &usize| movielake_core::sources::sql::sample::user_id(*u);
        let n = ids.len();
        let batch = RecordBatch::try_from_iter([
            (
                "user_id",
                Arc::new(StringArray::from_iter_values(ids.iter().map(user))) as ArrayRef,
            ),
            (
                "country",
                Arc::new(StringArray::from_iter_values(ids.iter().map(|u| COUNTRIES[u % 8]))),
            ),
            ("valid_from", times(vec![Some(created); n])),
            ("valid_to", times(vec![None; n])),
            ("is_current", Arc::new(BooleanArray::from(vec![true; n]))),
        ])?;
        tables.append(USERS_HISTORY, vec![batch], &Append::default()).await?;
        // Three versions of each user's subscription: basic, standard, premium.
        let versions = [
            ("basic", created, Some(standard)),
            ("standard", standard, Some(premium)),
            ("premium", premium, None),
        ];
        let rows: Vec<(usize, &str, i64, Option<i64>)> = ids
            .iter()
            .flat_map(|&u| versions.iter().map(move |&(p, f, t)| (u, p, f, t)))
            .collect();
        let batch = RecordBatch::try_from_iter([
            (
                "subscription_id",
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| format!("sub-{:06}-1", r.0)),
                )) as ArrayRef,
            ),
            (
                "user_id",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| user(&r.0)))),
            ),
            (
                "plan",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ),
            (
                "status",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "active"))),
            ),
            ("valid_from", times(rows.iter().map(|r| Some(r.2)).collect())),
            ("valid_to", times(rows.iter().map(|r| r.3).collect())),
            (
                "is_current",
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.3.is_none())))),
            ),
        ])?;
        tables
            .append(SUBSCRIPTIONS_HISTORY, vec![batch], &Append::default())
            .await?;
    }
    Ok(())
}
