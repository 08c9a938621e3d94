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

/// One changed row as a pull read it: its key and change time (the adapter keeps the row),
/// and a hash of the row's content. A row read again in the overlap with the same content is
/// a re-read; with other content (written twice without moving `updated_at`) it is new, and
/// silver's conflict check sees it instead of the watermark dropping it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub at: DateTime<Utc>,
    /// Watermarks written before the hash was kept read as 0: their re-reads land again once
    /// and silver counts them as duplicates.
    #[serde(default)]
    pub digest: u64,
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
    /// SQL Server: the `MIN_ACTIVE_ROWVERSION()` read up to. Every row version below it was
    /// committed when read and is landed; the next pull starts there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_version: Option<i64>,
}

/// What a pull may read up to, as the database says: its clock less the lag (timestamp
/// dialects stop there), and on SQL Server also `MIN_ACTIVE_ROWVERSION()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceiling {
    pub at: DateTime<Utc>,
    pub row_version: Option<i64>,
}

impl Ceiling {
    /// A timestamp dialect's ceiling.
    pub fn at(at: DateTime<Utc>) -> Ceiling {
        Ceiling { at, row_version: None }
    }
}

/// SQL Server row versions, half-open: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Versions {
    pub from: i64,
    pub to: i64,
}

/// What one pull (or one page of it) reads. Timestamp dialects: change times in `[from, to]`,
/// and when `after_key` is set, at `from` only the keys after it (the next page of a window
/// read in `(updated_at, key)` order). SQL Server: the row versions in `versions`; the times
/// only date the extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub after_key: Option<String>,
    pub versions: Option<Versions>,
}

impl Window {
    /// The rest of the window once a page ended at `last` (row version `version` on SQL
    /// Server): the next page starts just past it.
    pub fn after(&self, last: &Change, version: Option<i64>) -> Window {
        match (self.versions, version) {
            (Some(v), Some(last_version)) => Window {
                versions: Some(Versions {
                    from: last_version.saturating_add(1).min(v.to),
                    to: v.to,
                }),
                ..self.clone()
            },
            _ => Window {
                from: last.at.max(self.from),
                after_key: Some(last.key.clone()),
                ..self.clone()
            },
        }
    }

    /// What a page that ended at `last` has read of the window: everything up to and
    /// including it. The watermark may move there while later pages are still to come.
    pub fn through(&self, last: &Change, version: Option<i64>) -> Window {
        match (self.versions, version) {
            (Some(v), Some(last_version)) => Window {
                versions: Some(Versions {
                    from: v.from,
                    to: last_version.saturating_add(1).min(v.to),
                }),
                ..self.clone()
            },
            _ => Window {
                to: last.at.clamp(self.from, self.to),
                ..self.clone()
            },
        }
    }
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
    /// The window of the next pull, given the database's `ceiling`. With row versions the
    /// range is exact (below the ceiling everything is committed): no overlap.
    pub fn window(&self, ceiling: Ceiling, overlap: Duration) -> Window {
        if let Some(top) = ceiling.row_version {
            let from = self.row_version.unwrap_or(0);
            return Window {
                from: self.through.unwrap_or(DateTime::<Utc>::MIN_UTC).min(ceiling.at),
                to: ceiling.at,
                after_key: None,
                versions: Some(Versions {
                    from,
                    to: top.max(from),
                }),
            };
        }
        let from = self
            .through
            .and_then(|t| t.checked_sub_signed(overlap))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        Window {
            from,
            to: ceiling.at.max(from),
            after_key: None,
            versions: None,
        }
    }

    /// Sorts a pull's `rows` (read in `window`) into new ones and re-reads, and the watermark
    /// after it. Rows outside the window are not the pull's and are left out (row-version
    /// windows are exact: the database filtered them).
    pub fn accept(&self, window: &Window, rows: &[Change], overlap: Duration) -> Accepted {
        let mut seen: BTreeSet<&Change> = BTreeSet::new();
        let mut fresh = Vec::new();
        let mut duplicates = 0;
        for (i, row) in rows.iter().enumerate() {
            // A page's `after_key` bound is the database's to apply: its collation orders
            // the keys, not Rust's byte order.
            let outside = row.at < window.from || row.at > window.to;
            if window.versions.is_none() && outside {
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
        if let Some(versions) = window.versions {
            return Accepted {
                fresh,
                duplicates,
                next: Watermark {
                    through: Some(through),
                    recent: BTreeSet::new(),
                    keys_checked_at: self.keys_checked_at,
                    row_version: Some(self.row_version.map_or(versions.to, |v| v.max(versions.to))),
                },
            };
        }
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
                row_version: self.row_version,
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
            digest: 0,
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
            .filter(|c| {
                window
                    .after_key
                    .as_ref()
                    .is_none_or(|k| c.at > window.from || c.key > *k)
            })
            .collect();
        rows.sort_by(|a, b| (a.at, &a.key).cmp(&(b.at, &b.key)));
        rows
    }

    /// Pulls at `pulls` (seconds), then one after everything committed, each read in pages
    /// of `page` rows; every landed change.
    fn pull_all(writes: &[Write], pulls: &[i64], lag: i64, overlap: i64, page: usize) -> Vec<Change> {
        let mut watermark = Watermark::default();
        let mut landed = Vec::new();
        let end = writes.iter().map(|w| w.at + w.delay).max().unwrap_or(0) + lag + 1;
        let overlap = Duration::seconds(overlap);
        for &now in pulls.iter().chain([end].iter()) {
            let mut window = watermark.window(Ceiling::at(t(now - lag)), overlap);
            loop {
                let mut rows = read(writes, now, &window);
                rows.truncate(page);
                let last = (rows.len() == page).then(|| rows[page - 1].clone());
                let read = last.as_ref().map_or(window.clone(), |l| window.through(l, None));
                let accepted = watermark.accept(&read, &rows, overlap);
                landed.extend(accepted.fresh.iter().map(|&i| rows[i].clone()));
                watermark = accepted.next;
                match last {
                    Some(l) => window = window.after(&l, None),
                    None => break,
                }
            }
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
        let landed = pull_all(&writes, &[10, 20, 30], 0, 5, 1);
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
        let short = pull_all(&writes, &pulls, 2, 30, 100);
        assert!(
            !short.contains(&change(1, 10)),
            "the limit the PostgreSQL ceiling lifts: {short:?}"
        );
        let long = pull_all(&writes, &pulls, 2, 90, 100);
        assert_eq!(long.iter().filter(|c| **c == change(1, 10)).count(), 1, "{long:?}");
    }

    #[test]
    fn the_watermark_never_goes_back_and_forgets_what_left_the_overlap() {
        let mut w = Watermark::default();
        let overlap = Duration::seconds(10);
        let window = w.window(Ceiling::at(t(100)), overlap);
        let accepted = w.accept(&window, &[change(1, 50), change(2, 95)], overlap);
        assert_eq!(accepted.fresh, vec![0, 1]);
        w = accepted.next;
        assert_eq!(w.through, Some(t(100)));
        assert_eq!(w.recent.iter().cloned().collect::<Vec<_>>(), vec![change(2, 95)]);
        // A lower ceiling (an old transaction is open): nothing moves back.
        let window = w.window(Ceiling::at(t(80)), overlap);
        assert_eq!((window.from, window.to), (t(90), t(90)));
        let accepted = w.accept(&window, &[], overlap);
        assert_eq!(accepted.next.through, Some(t(100)));
        // A re-read in the overlap is a duplicate.
        let window = w.window(Ceiling::at(t(120)), overlap);
        let accepted = w.accept(&window, &[change(2, 95), change(3, 110)], overlap);
        assert_eq!((accepted.fresh.clone(), accepted.duplicates), (vec![1], 1));
        let json = serde_json::to_string(&accepted.next).expect("json");
        assert_eq!(serde_json::from_str::<Watermark>(&json).expect("back"), accepted.next);
    }

    #[test]
    fn a_row_read_again_with_other_content_is_not_taken_for_a_re_read() {
        let overlap = Duration::seconds(60);
        let w = Watermark::default();
        let window = w.window(Ceiling::at(t(100)), overlap);
        let first = w.accept(&window, &[change(1, 90)], overlap);
        let window = first.next.window(Ceiling::at(t(120)), overlap);
        let rewritten = Change {
            digest: 7,
            ..change(1, 90)
        };
        let again = first.next.accept(&window, &[change(1, 90), rewritten], overlap);
        assert_eq!((again.fresh, again.duplicates), (vec![1], 1));
        // Watermarks from before the hash was kept still read.
        let old: Watermark = serde_json::from_str(
            r#"{"through":"2024-05-01T10:00:00Z","recent":[{"key":"k1","at":"2024-05-01T09:59:00Z"}]}"#,
        )
        .expect("old watermark");
        assert_eq!(old.recent.iter().next().map(|c| c.digest), Some(0));
    }

    #[test]
    fn row_versions_read_exact_half_open_ranges_page_by_page_with_no_overlap() {
        let at = t(0);
        let c = |k: &str| Change {
            key: k.into(),
            at,
            digest: 0,
        };
        let w = Watermark::default();
        let ceiling = Ceiling {
            at: t(60),
            row_version: Some(110),
        };
        let window = w.window(ceiling, Duration::minutes(15));
        assert_eq!(window.versions, Some(Versions { from: 0, to: 110 }));
        // A page of two ended at version 101: the watermark may stand at 102.
        let page = window.through(&c("b"), Some(101));
        let first = w.accept(&page, &[c("a"), c("b")], Duration::minutes(15));
        assert_eq!((first.fresh.len(), first.next.row_version), (2, Some(102)));
        assert!(first.next.recent.is_empty(), "no overlap, nothing to remember");
        let rest = window.after(&c("b"), Some(101));
        assert_eq!(rest.versions, Some(Versions { from: 102, to: 110 }));
        let last = first.next.accept(&rest, &[c("c")], Duration::minutes(15));
        assert_eq!(last.next.row_version, Some(110));
        // The next pull starts at the ceiling read, exclusive of nothing below it.
        let next = last.next.window(
            Ceiling {
                at: t(120),
                row_version: Some(130),
            },
            Duration::minutes(15),
        );
        assert_eq!(next.versions, Some(Versions { from: 110, to: 130 }));
    }

    proptest! {
        /// Whatever the pull times, ties and updates, every key's last row is landed and no
        /// change is landed twice, when transactions commit within lag + overlap.
        #[test]
        fn nothing_is_lost_or_landed_twice_within_lag_plus_overlap(
            raw in prop::collection::vec((0u32..8, 0i64..60, 0i64..20), 1..40),
            mut pulls in prop::collection::vec(0i64..100, 0..12),
            lag in 0i64..10,
            page in 1usize..6,
        ) {
            let overlap = 20 - lag.min(20) + 1;
            let writes: Vec<Write> = raw
                .into_iter()
                .map(|(key, at, delay)| Write { key, at, delay: delay.min(lag + overlap) })
                .collect();
            pulls.sort();
            let landed = pull_all(&writes, &pulls, lag, overlap, page);
            let unique: BTreeSet<Change> = landed.iter().cloned().collect();
            prop_assert_eq!(unique.len(), landed.len(), "landed twice: {:?}", landed);
            for row in final_rows(&writes) {
                prop_assert!(unique.contains(&row), "lost {:?}; landed {:?}", row, landed);
            }
        }
    }
}
