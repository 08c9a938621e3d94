//! Watermarks of the timestamp dialects: which window a pull reads and which of the rows it got
//! are new. The window starts an overlap before the last ceiling (a change committed late, with
//! an older `updated_at`, is read on the next pull) and stops at a ceiling the database gives
//! (nothing newer may be read: more rows with that time can still commit). Rows read again in
//! the overlap are recognised by key and change time and counted as duplicates, not landed.
//!
//! The promise, proven by the property test below: a change is landed exactly once as long as
//! it commits within `lag + overlap` of its `updated_at`. PostgreSQL's ceiling also stops at the
//! oldest open transaction's start, which keeps that promise for any transaction length.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// One changed row as a pull read it: its key and change time (the adapter keeps the row).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub at: DateTime<Utc>,
}

/// Where one table's pulls have got to. Stored between pulls, advanced only once the pull's
/// rows are durable in bronze.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// The highest ceiling read so far: every change at or before it that had committed when
    /// it was read is landed.
    pub through: Option<DateTime<Utc>>,
    /// The changes already landed within `overlap` before `through`: read again, they are
    /// duplicates.
    #[serde(default)]
    pub recent: BTreeSet<Change>,
    /// When the last full key comparison (which finds hard deletes) read the table's keys,
    /// by the database's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_checked_at: Option<DateTime<Utc>>,
}

/// The change times one pull reads, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// What a pull's rows come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Indexes of the rows to land, in the order read.
    pub fresh: Vec<usize>,
    /// Rows already landed by an earlier pull (or twice in this one).
    pub duplicates: usize,
    /// The watermark once the fresh rows are durable.
    pub next: Watermark,
}

impl Watermark {
    /// The window of the next pull, given the database's `ceiling`.
    pub fn window(&self, ceiling: DateTime<Utc>, overlap: Duration) -> Window {
        let from = self
            .through
            .and_then(|t| t.checked_sub_signed(overlap))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        Window {
            from,
            to: ceiling.max(from),
        }
    }

    /// Sorts a pull's `rows` (read in `window`) into new ones and re-reads, and the watermark
    /// after it. Rows outside the window are not the pull's and are left out.
    pub fn accept(&self, window: &Window, rows: &[Change], overlap: Duration) -> Accepted {
        let mut seen: BTreeSet<&Change> = BTreeSet::new();
        let mut fresh = Vec::new();
        let mut duplicates = 0;
        for (i, row) in rows.iter().enumerate() {
            if row.at < window.from || row.at > window.to {
                continue;
            }
            if self.recent.contains(row) || !seen.insert(row) {
                duplicates += 1;
            } else {
                fresh.push(i);
            }
        }
        // A ceiling lower than the last one (an old transaction opened since) never moves the
        // watermark back: what was read up to the old one is landed.
        let through = self.through.map_or(window.to, |t| t.max(window.to));
        let keep_from = through.checked_sub_signed(overlap).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let recent = self
            .recent
            .iter()
            .chain(fresh.iter().map(|&i| &rows[i]))
            .filter(|c| c.at >= keep_from)
            .cloned()
            .collect();
        Accepted {
            fresh,
            duplicates,
            next: Watermark {
                through: Some(through),
                recent,
                keys_checked_at: self.keys_checked_at,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_714_557_600 + seconds, 0).expect("time")
    }

    fn change(key: u32, at: i64) -> Change {
        Change {
            key: format!("k{key}"),
            at: t(at),
        }
    }

    /// A table that keeps each key's latest row, written by transactions that stamp
    /// `updated_at` and commit `delay` seconds later (a long transaction).
    #[derive(Debug, Clone)]
    struct Write {
        key: u32,
        at: i64,
        delay: i64,
    }

    /// What a pull at `now` reads: the committed rows in the window, in change then key order.
    fn read(writes: &[Write], now: i64, window: &Window) -> Vec<Change> {
        let mut committed: Vec<&Write> = writes.iter().filter(|w| w.at + w.delay <= now).collect();
        committed.sort_by_key(|w| w.at + w.delay);
        let mut table: BTreeMap<u32, i64> = BTreeMap::new();
        for w in committed {
            table.insert(w.key, w.at);
        }
        let mut rows: Vec<Change> = table
            .into_iter()
            .map(|(k, at)| change(k, at))
            .filter(|c| c.at >= window.from && c.at <= window.to)
            .collect();
        rows.sort_by(|a, b| (a.at, &a.key).cmp(&(b.at, &b.key)));
        rows
    }

    /// Pulls at `pulls` (seconds), then one after everything committed; every landed change.
    fn pull_all(writes: &[Write], pulls: &[i64], lag: i64, overlap: i64) -> Vec<Change> {
        let mut watermark = Watermark::default();
        let mut landed = Vec::new();
        let end = writes.iter().map(|w| w.at + w.delay).max().unwrap_or(0) + lag + 1;
        for &now in pulls.iter().chain([end].iter()) {
            let window = watermark.window(t(now - lag), Duration::seconds(overlap));
            let rows = read(writes, now, &window);
            let accepted = watermark.accept(&window, &rows, Duration::seconds(overlap));
            landed.extend(accepted.fresh.iter().map(|&i| rows[i].clone()));
            watermark = accepted.next;
        }
        landed
    }

    /// Each key's last committed row.
    fn final_rows(writes: &[Write]) -> BTreeSet<Change> {
        let mut by_commit: Vec<&Write> = writes.iter().collect();
        by_commit.sort_by_key(|w| w.at + w.delay);
        let mut table = BTreeMap::new();
        for w in by_commit {
            table.insert(w.key, w.at);
        }
        table.into_iter().map(|(k, at)| change(k, at)).collect()
    }

    #[test]
    fn two_rows_with_one_time_on_either_side_of_a_pull_are_both_landed_once() {
        // k1 commits at 10 s, the pull runs at 10 s with no lag, k2 commits with the same
        // updated_at just after it.
        let writes = [
            Write {
                key: 1,
                at: 10,
                delay: 0,
            },
            Write {
                key: 2,
                at: 10,
                delay: 1,
            },
        ];
        let landed = pull_all(&writes, &[10, 20, 30], 0, 5);
        assert_eq!(landed, vec![change(1, 10), change(2, 10)]);
    }

    #[test]
    fn a_long_transaction_is_lost_when_it_outlasts_lag_and_overlap_and_kept_when_not() {
        // Stamped at 10 s, committed at 100 s: pulls every 10 s have passed it long before.
        let writes = [
            Write {
                key: 1,
                at: 10,
                delay: 90,
            },
            Write {
                key: 2,
                at: 50,
                delay: 0,
            },
        ];
        let pulls: Vec<i64> = (1..=12).map(|n| n * 10).collect();
        let short = pull_all(&writes, &pulls, 2, 30);
        assert!(
            !short.contains(&change(1, 10)),
            "the limit the PostgreSQL ceiling lifts: {short:?}"
        );
        let long = pull_all(&writes, &pulls, 2, 90);
        assert_eq!(long.iter().filter(|c| **c == change(1, 10)).count(), 1, "{long:?}");
    }

    #[test]
    fn the_watermark_never_goes_back_and_forgets_what_left_the_overlap() {
        let mut w = Watermark::default();
        let overlap = Duration::seconds(10);
        let window = w.window(t(100), overlap);
        let accepted = w.accept(&window, &[change(1, 50), change(2, 95)], overlap);
        assert_eq!(accepted.fresh, vec![0, 1]);
        w = accepted.next;
        assert_eq!(w.through, Some(t(100)));
        assert_eq!(w.recent.iter().cloned().collect::<Vec<_>>(), vec![change(2, 95)]);
        // A lower ceiling (an old transaction is open): nothing moves back.
        let window = w.window(t(80), overlap);
        assert_eq!((window.from, window.to), (t(90), t(90)));
        let accepted = w.accept(&window, &[], overlap);
        assert_eq!(accepted.next.through, Some(t(100)));
        // A re-read in the overlap is a duplicate.
        let window = w.window(t(120), overlap);
        let accepted = w.accept(&window, &[change(2, 95), change(3, 110)], overlap);
        assert_eq!((accepted.fresh.clone(), accepted.duplicates), (vec![1], 1));
        let json = serde_json::to_string(&accepted.next).expect("json");
        assert_eq!(serde_json::from_str::<Watermark>(&json).expect("back"), accepted.next);
    }

    proptest! {
        /// Whatever the pull times, ties and updates, every key's last row is landed and no
        /// change is landed twice, when transactions commit within lag + overlap.
        #[test]
        fn nothing_is_lost_or_landed_twice_within_lag_plus_overlap(
            raw in prop::collection::vec((0u32..8, 0i64..60, 0i64..20), 1..40),
            mut pulls in prop::collection::vec(0i64..100, 0..12),
            lag in 0i64..10,
        ) {
            let overlap = 20 - lag.min(20) + 1;
            let writes: Vec<Write> = raw
                .into_iter()
                .map(|(key, at, delay)| Write { key, at, delay: delay.min(lag + overlap) })
                .collect();
            pulls.sort();
            let landed = pull_all(&writes, &pulls, lag, overlap);
            let unique: BTreeSet<Change> = landed.iter().cloned().collect();
            prop_assert_eq!(unique.len(), landed.len(), "landed twice: {:?}", landed);
            for row in final_rows(&writes) {
                prop_assert!(unique.contains(&row), "lost {:?}; landed {:?}", row, landed);
            }
        }
    }
}
