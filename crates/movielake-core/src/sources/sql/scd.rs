//! A key's history (SCD type 2) from its change log, sans IO. The adapter hands over every
//! version of the keys a pull touched (wherever they are stored) and every delete it knows of;
//! `chain` returns the intervals, each naming the version whose values it shows.
//!
//! The rules, which the property test below holds the code to:
//! - the change log is ordered by change time, never by arrival: a version that arrives late
//!   or out of order rebuilds its key's chain, so intervals never overlap and leave no gaps;
//! - intervals are half-open, `[valid_from, valid_to)`; `valid_to` is `None` for the open one;
//! - a version whose tracked columns equal the open interval's updates that interval (its
//!   values become the latest, `valid_from` stays): only tracked columns open a new version;
//! - a delete closes the open interval at its time and is remembered: a version older than it,
//!   however late it arrives, slots in before it and cannot resurrect the key; a version newer
//!   than it (a re-insert) opens a new interval, leaving a gap for the time the key was gone;
//! - equal change times are broken deterministically: a delete goes after a version with the
//!   same time, and two versions with the same time by their position in the input (which
//!   the adapter makes deterministic; the change log holds one version per key and time).

use chrono::{DateTime, Utc};

/// One entry of a key's change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: String,
    pub at: DateTime<Utc>,
    /// A delete: a soft delete (the row says it is deleted) or a hard one (the key is gone).
    pub deleted: bool,
    /// A digest of the tracked columns: versions with equal digests are one interval.
    pub tracked: u64,
    /// The version's position in the adapter's input, handed back in [`Interval::index`].
    pub index: usize,
}

/// One interval of a key's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub key: String,
    /// The version whose values the interval shows: the latest of the versions it spans.
    pub index: usize,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
}

impl Interval {
    pub fn is_current(&self) -> bool {
        self.valid_to.is_none()
    }

    /// Whether the interval holds at `t` (half-open).
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.valid_from <= t && self.valid_to.is_none_or(|to| t < to)
    }
}

/// The history of every key in `versions`, ordered by key then `valid_from`.
pub fn chain(mut versions: Vec<Version>) -> Vec<Interval> {
    versions.sort_by(|a, b| (&a.key, a.at, a.deleted, a.index).cmp(&(&b.key, b.at, b.deleted, b.index)));
    let mut out = Vec::new();
    let mut open: Option<(Interval, u64)> = None;
    for v in versions {
        if let Some((interval, tracked)) = &mut open {
            if interval.key != v.key {
                out.push(interval.clone());
                open = None;
            } else if v.deleted {
                // A version deleted at the instant it was written never held: no empty interval.
                if interval.valid_from < v.at {
                    interval.valid_to = Some(v.at);
                    out.push(interval.clone());
                }
                open = None;
                continue;
            } else if *tracked == v.tracked || interval.valid_from == v.at {
                // Untracked columns changed (or a version at the same instant): the open
                // interval shows the latest values.
                interval.index = v.index;
                *tracked = v.tracked;
                continue;
            } else {
                interval.valid_to = Some(v.at);
                out.push(interval.clone());
                open = None;
            }
        }
        if !v.deleted {
            open = Some((
                Interval {
                    key: v.key,
                    index: v.index,
                    valid_from: v.at,
                    valid_to: None,
                },
                v.tracked,
            ));
        }
    }
    out.extend(open.map(|(interval, _)| interval));
    out
}

/// Each key's latest state: its latest version (by change time, a delete after a version at the
/// same time) and whether that is a delete. A hard delete has no values of its own: `values`
/// is then the latest version that has them, if the log holds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub key: String,
    pub values: Option<usize>,
    pub deleted: bool,
    pub at: DateTime<Utc>,
}

/// The latest state of every key in `versions`; `has_values` says which inputs carry a row.
pub fn current(mut versions: Vec<Version>, has_values: impl Fn(usize) -> bool) -> Vec<Current> {
    versions.sort_by(|a, b| (&a.key, a.at, a.deleted, a.index).cmp(&(&b.key, b.at, b.deleted, b.index)));
    let mut out: Vec<Current> = Vec::new();
    for v in versions {
        let values = has_values(v.index).then_some(v.index);
        match out.last_mut() {
            Some(c) if c.key == v.key => {
                c.values = values.or(c.values);
                c.deleted = v.deleted;
                c.at = v.at;
            }
            _ => out.push(Current {
                key: v.key,
                values,
                deleted: v.deleted,
                at: v.at,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_714_557_600 + s, 0).expect("time")
    }

    fn v(key: &str, at: i64, tracked: u64, index: usize) -> Version {
        Version {
            key: key.into(),
            at: t(at),
            deleted: tracked == DELETE,
            tracked,
            index,
        }
    }

    const DELETE: u64 = u64::MAX;

    fn spans(intervals: &[Interval]) -> Vec<(usize, i64, Option<i64>)> {
        let s = |d: DateTime<Utc>| d.timestamp() - 1_714_557_600;
        intervals
            .iter()
            .map(|i| (i.index, s(i.valid_from), i.valid_to.map(s)))
            .collect()
    }

    #[test]
    fn a_late_version_splits_the_interval_it_falls_in() {
        let log = vec![v("s1", 10, 1, 0), v("s1", 30, 2, 1), v("s1", 20, 3, 2)];
        assert_eq!(
            spans(&chain(log)),
            [(0, 10, Some(20)), (2, 20, Some(30)), (1, 30, None)]
        );
    }

    #[test]
    fn an_untracked_change_updates_the_open_interval_and_keeps_its_start() {
        let log = vec![v("s1", 10, 1, 0), v("s1", 20, 1, 1), v("s1", 30, 2, 2)];
        assert_eq!(spans(&chain(log)), [(1, 10, Some(30)), (2, 30, None)]);
    }

    #[test]
    fn a_delete_closes_the_interval_and_a_late_older_update_does_not_resurrect_the_key() {
        let log = vec![v("s1", 10, 1, 0), v("s1", 40, DELETE, 1), v("s1", 30, 2, 2)];
        assert_eq!(spans(&chain(log)), [(0, 10, Some(30)), (2, 30, Some(40))]);
        let current = current(
            vec![v("s1", 10, 1, 0), v("s1", 40, DELETE, 1), v("s1", 30, 2, 2)],
            |i| i != 1,
        );
        assert_eq!(current.len(), 1);
        assert_eq!((current[0].values, current[0].deleted), (Some(2), true));
    }

    #[test]
    fn a_reinserted_key_opens_a_new_interval_after_the_gap() {
        let log = vec![v("s1", 10, 1, 0), v("s1", 20, DELETE, 1), v("s1", 50, 1, 2)];
        assert_eq!(spans(&chain(log)), [(0, 10, Some(20)), (2, 50, None)]);
    }

    #[test]
    fn a_delete_at_the_same_time_as_a_version_comes_after_it() {
        let log = vec![v("s1", 20, DELETE, 0), v("s1", 20, 1, 1), v("s1", 10, 2, 2)];
        assert_eq!(spans(&chain(log)), [(2, 10, Some(20))]);
    }

    /// One key's ordered change log: (seconds, tracked value or DELETE), seconds increasing.
    fn change_log() -> impl Strategy<Value = Vec<(i64, u64)>> {
        prop::collection::vec((1i64..5, prop_oneof![4 => 0u64..3, 1 => Just(DELETE)]), 1..12).prop_map(|steps| {
            let mut at = 0;
            steps
                .into_iter()
                .map(|(gap, tracked)| {
                    at += gap;
                    (at, tracked)
                })
                .collect()
        })
    }

    proptest! {
        /// For any change logs of a few keys, delivered in any order and split into any pulls,
        /// rebuilding the touched keys after each pull ends in a history that (1) answers
        /// "what were the tracked values at t" exactly as replaying the ordered log does, for
        /// every t, (2) tiles each key's time without overlap, with gaps only where the key was
        /// deleted, and (3) equals the history built from the whole log at once.
        #[test]
        fn any_delivery_of_any_change_log_builds_the_ordered_logs_history(
            logs in prop::collection::vec(change_log(), 1..4),
            order in any::<prop::sample::Index>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mut all: Vec<Version> = Vec::new();
            for (k, log) in logs.iter().enumerate() {
                for &(at, tracked) in log {
                    let index = all.len();
                    all.push(v(&format!("k{k}"), at, tracked, index));
                }
            }
            // Any order: rotate then interleave by a seed-derived permutation.
            let mut delivered = all.clone();
            let n = delivered.len();
            delivered.rotate_left(order.index(n));
            for i in 0..n {
                let j = (i * 7 + order.index(n)) % n;
                delivered.swap(i, j);
            }
            // The adapter's index is the arrival position, not the change order.
            for (i, version) in delivered.iter_mut().enumerate() {
                version.index = i;
            }
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(n + 1)).collect();
            bounds.extend([0, n]);
            bounds.sort_unstable();
            bounds.dedup();

            // The lake: the change log so far and the history, rebuilt per pull for the keys
            // the pull touched only.
            let mut landed: Vec<Version> = Vec::new();
            let mut history: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
            for pull in bounds.windows(2) {
                let batch = &delivered[pull[0]..pull[1]];
                landed.extend(batch.iter().cloned());
                let touched: std::collections::BTreeSet<&str> = batch.iter().map(|v| v.key.as_str()).collect();
                for key in touched {
                    let of_key: Vec<Version> = landed.iter().filter(|v| v.key == key).cloned().collect();
                    history.insert(key.to_string(), chain(of_key));
                }
            }

            let whole = chain(delivered.clone());
            let rebuilt: Vec<Interval> = history.values().flatten().cloned().collect();
            prop_assert_eq!(&rebuilt, &whole);

            for (k, log) in logs.iter().enumerate() {
                let key = format!("k{k}");
                let intervals: Vec<&Interval> = rebuilt.iter().filter(|i| i.key == key).collect();
                // (1) as of every instant (every change time and the half second after it).
                for probe in log.iter().flat_map(|&(at, _)| [at * 2 - 1, at * 2, at * 2 + 1]) {
                    let at = t(0) + chrono::Duration::milliseconds(probe * 500);
                    let replayed = log.iter().rev().find(|(s, _)| t(*s) <= at).map(|&(_, tracked)| tracked);
                    let live = replayed.filter(|&tr| tr != DELETE);
                    let holding: Vec<&&Interval> = intervals.iter().filter(|i| i.contains(at)).collect();
                    prop_assert!(holding.len() <= 1, "{key} overlaps at {at}");
                    prop_assert_eq!(holding.first().map(|i| delivered[i.index].tracked), live, "{} at {}", key, at);
                }
                // (2) consecutive intervals touch unless a delete lies between them.
                for pair in intervals.windows(2) {
                    let to = pair[0].valid_to.expect("only the last interval is open");
                    prop_assert!(to <= pair[1].valid_from);
                    if to < pair[1].valid_from {
                        let deleted = log.iter().any(|&(s, tr)| tr == DELETE && t(s) == to);
                        prop_assert!(deleted, "{key}: a gap at {to} without a delete");
                    }
                }
            }
        }
    }
}
