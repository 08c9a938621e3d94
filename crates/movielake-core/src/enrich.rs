//! Enrichment of watch events with the slowly changing dimension (issue 17), sans IO: the
//! subscription and country a user had *at the event's time*, from the SCD2 histories of the
//! SQL source (`silver/sql/subscriptions_history`, `silver/sql/users_history`).
//!
//! The dimension is a compact in-memory index: each user's versions sorted by `valid_from` in
//! flat vectors, strings interned once (plans, statuses and countries are a handful of values;
//! subscription ids are stored once in one buffer), so a lookup is a hash probe and a binary
//! search with no allocation.
//!
//! As-of rules (half-open intervals `[valid_from, valid_to)`, `valid_to` open = current):
//! - the user is known at `t` when one of its `users_history` versions contains `t`; otherwise
//!   (not created yet, deleted since, or its rows not pulled yet) the event is `user_unknown`;
//! - the subscription is the version of one of the user's subscriptions that contains `t`; a
//!   user with several at once (an old one still open beside a new one) gets the one whose
//!   version started last (ties: the greater subscription id); none is `no_subscription`.

use std::collections::HashMap;

/// What the lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DimensionStatus {
    Matched,
    NoSubscription,
    UserUnknown,
}

impl DimensionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DimensionStatus::Matched => "matched",
            DimensionStatus::NoSubscription => "no_subscription",
            DimensionStatus::UserUnknown => "user_unknown",
        }
    }
}

/// One event's enrichment. `valid_from` is the subscription version used (the user version's
/// when there is no subscription).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrichment<'a> {
    pub status: DimensionStatus,
    pub subscription_id: Option<&'a str>,
    pub plan: Option<&'a str>,
    pub subscription_status: Option<&'a str>,
    pub country: Option<&'a str>,
    pub valid_from: Option<i64>,
}

impl Enrichment<'_> {
    pub const UNKNOWN: Enrichment<'static> = Enrichment {
        status: DimensionStatus::UserUnknown,
        subscription_id: None,
        plan: None,
        subscription_status: None,
        country: None,
        valid_from: None,
    };
}

/// An open interval's end.
const OPEN: i64 = i64::MAX;
/// No value (an interned string's index).
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct UserVersion {
    from: i64,
    to: i64,
    country: u32,
}

#[derive(Debug, Clone, Copy)]
struct SubVersion {
    from: i64,
    to: i64,
    /// Index of the subscription id in `ids`.
    id: u32,
    plan: u32,
    status: u32,
}

/// The index: per user, a range of `users` and of `subs`, each sorted by `from`.
#[derive(Debug, Default)]
pub struct Dimension {
    by_user: HashMap<Box<str>, (u32, u32, u32, u32)>,
    users: Vec<UserVersion>,
    subs: Vec<SubVersion>,
    /// Subscription ids, one after another; `id_ends[i]` ends the i-th.
    ids: String,
    id_ends: Vec<u32>,
    /// Plans, statuses, countries: few distinct values.
    words: Vec<Box<str>>,
    /// The longest subscription version per user, for the binary search's lower bound.
    longest: Vec<i64>,
}

/// Collects versions in any order; `build` sorts and indexes them.
#[derive(Debug, Default)]
pub struct DimensionBuilder {
    users: Vec<(Box<str>, UserVersion)>,
    subs: Vec<(Box<str>, SubVersion)>,
    ids: String,
    id_ends: Vec<u32>,
    id_index: HashMap<Box<str>, u32>,
    words: Vec<Box<str>>,
    word_index: HashMap<Box<str>, u32>,
}

impl DimensionBuilder {
    fn word(&mut self, w: Option<&str>) -> u32 {
        let Some(w) = w else { return NONE };
        if let Some(&i) = self.word_index.get(w) {
            return i;
        }
        let i = self.words.len() as u32;
        self.words.push(w.into());
        self.word_index.insert(w.into(), i);
        i
    }

    fn id(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.id_index.get(id) {
            return i;
        }
        self.ids.push_str(id);
        let i = self.id_ends.len() as u32;
        self.id_ends.push(self.ids.len() as u32);
        self.id_index.insert(id.into(), i);
        i
    }

    /// A `users_history` version: `[from, to)` in µs since the epoch, `to` `None` when open.
    pub fn user(&mut self, user: &str, from: i64, to: Option<i64>, country: Option<&str>) {
        let country = self.word(country);
        self.users.push((
            user.into(),
            UserVersion {
                from,
                to: to.unwrap_or(OPEN),
                country,
            },
        ));
    }

    /// A `subscriptions_history` version.
    pub fn subscription(
        &mut self,
        user: &str,
        subscription_id: &str,
        from: i64,
        to: Option<i64>,
        plan: Option<&str>,
        status: Option<&str>,
    ) {
        let (id, plan, status) = (self.id(subscription_id), self.word(plan), self.word(status));
        self.subs.push((
            user.into(),
            SubVersion {
                from,
                to: to.unwrap_or(OPEN),
                id,
                plan,
                status,
            },
        ));
    }

    pub fn build(mut self) -> Dimension {
        let (ids, ends) = (&self.ids, &self.id_ends);
        let id = |i: u32| id_at(ids, ends, i).unwrap_or("");
        self.users.sort_by(|a, b| (&a.0, a.1.from).cmp(&(&b.0, b.1.from)));
        self.subs
            .sort_by(|a, b| (&a.0, a.1.from, id(a.1.id)).cmp(&(&b.0, b.1.from, id(b.1.id))));
        let mut by_user: HashMap<Box<str>, (u32, u32, u32, u32)> = HashMap::new();
        for (i, (user, _)) in self.users.iter().enumerate() {
            let e = by_user.entry(user.clone()).or_insert((i as u32, i as u32, 0, 0));
            e.1 = i as u32 + 1;
        }
        let mut longest = Vec::with_capacity(self.subs.len());
        for (i, (user, v)) in self.subs.iter().enumerate() {
            let first = i == 0 || self.subs[i - 1].0 != *user;
            if first {
                let e = by_user.entry(user.clone()).or_insert((0, 0, 0, 0));
                e.2 = i as u32;
            }
            if let Some(e) = by_user.get_mut(user) {
                e.3 = i as u32 + 1;
            }
            // The longest version so far of this user's: walking back from `t`, a version
            // starting longer than that before `t` cannot contain it, nor any before it.
            let so_far = if first { 0 } else { longest.last().copied().unwrap_or(0) };
            longest.push(v.to.saturating_sub(v.from).max(so_far));
        }
        Dimension {
            by_user,
            users: self.users.into_iter().map(|(_, v)| v).collect(),
            subs: self.subs.into_iter().map(|(_, v)| v).collect(),
            ids: self.ids,
            id_ends: self.id_ends,
            words: self.words,
            longest,
        }
    }
}

/// The `i`-th of ids written one after another, `ends[i]` ending it.
fn id_at<'a>(ids: &'a str, ends: &[u32], i: u32) -> Option<&'a str> {
    let end = *ends.get(i as usize)? as usize;
    let start = if i == 0 { 0 } else { ends[i as usize - 1] as usize };
    ids.get(start..end)
}

impl Dimension {
    pub fn builder() -> DimensionBuilder {
        DimensionBuilder::default()
    }

    fn word(&self, i: u32) -> Option<&str> {
        self.words.get(i as usize).map(|w| &**w)
    }

    fn id(&self, i: u32) -> Option<&str> {
        id_at(&self.ids, &self.id_ends, i)
    }

    /// The user's dimension at `at` (µs since the epoch).
    pub fn lookup(&self, user: &str, at: i64) -> Enrichment<'_> {
        let Some(&(u0, u1, s0, s1)) = self.by_user.get(user) else {
            return Enrichment::UNKNOWN;
        };
        let users = &self.users[u0 as usize..u1 as usize];
        // The last version starting at or before `at`: the only one that can contain it.
        let n = users.partition_point(|v| v.from <= at);
        let Some(version) = n.checked_sub(1).map(|i| users[i]).filter(|v| at < v.to) else {
            return Enrichment::UNKNOWN;
        };
        let country = self.word(version.country);
        let subs = &self.subs[s0 as usize..s1 as usize];
        let longest = &self.longest[s0 as usize..s1 as usize];
        let end = subs.partition_point(|v| v.from <= at);
        // Walk back from the last version starting at or before `at`, while one could still
        // reach `at`; the first containing it started last (ties: sorted by id, greater last).
        let mut found = None;
        for i in (0..end).rev() {
            if at.saturating_sub(subs[i].from) >= longest[i] {
                break;
            }
            if at < subs[i].to {
                found = Some(subs[i]);
                break;
            }
        }
        match found {
            Some(s) => Enrichment {
                status: DimensionStatus::Matched,
                subscription_id: self.id(s.id),
                plan: self.word(s.plan),
                subscription_status: self.word(s.status),
                country,
                valid_from: Some(s.from),
            },
            None => Enrichment {
                status: DimensionStatus::NoSubscription,
                subscription_id: None,
                plan: None,
                subscription_status: None,
                country,
                valid_from: Some(version.from),
            },
        }
    }

    pub fn users(&self) -> usize {
        self.by_user.len()
    }

    pub fn versions(&self) -> usize {
        self.users.len() + self.subs.len()
    }

    /// Bytes the index holds (its vectors, strings and map; allocator overhead aside).
    pub fn heap_bytes(&self) -> usize {
        let map = self.by_user.capacity() * (std::mem::size_of::<(Box<str>, (u32, u32, u32, u32))>() + 1)
            + self.by_user.keys().map(|k| k.len()).sum::<usize>();
        map + self.users.capacity() * std::mem::size_of::<UserVersion>()
            + self.subs.capacity() * std::mem::size_of::<SubVersion>()
            + self.longest.capacity() * 8
            + self.ids.capacity()
            + self.id_ends.capacity() * 4
            + self.words.iter().map(|w| w.len() + 16).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const H: i64 = 3_600_000_000;

    fn sample() -> Dimension {
        let mut b = Dimension::builder();
        b.user("u1", 0, None, Some("FR"));
        b.subscription("u1", "s1", 10 * H, Some(20 * H), Some("basic"), Some("active"));
        b.subscription("u1", "s1", 20 * H, None, Some("premium"), Some("active"));
        b.user("u2", 0, Some(50 * H), Some("DE"));
        b.subscription("u2", "s2", 0, Some(50 * H), Some("standard"), Some("trial"));
        b.user("u3", 0, None, None);
        b.subscription("u3", "s3", 0, Some(30 * H), Some("basic"), Some("cancelled"));
        b.build()
    }

    #[test]
    fn boundaries_take_the_version_that_starts_there() {
        let d = sample();
        assert_eq!(
            d.lookup("u1", 20 * H).plan,
            Some("premium"),
            "exactly at valid_from: the new one"
        );
        assert_eq!(
            d.lookup("u1", 20 * H - 1).plan,
            Some("basic"),
            "just before: the old one"
        );
        assert_eq!(d.lookup("u1", 20 * H).valid_from, Some(20 * H));
        let before = d.lookup("u1", 10 * H - 1);
        assert_eq!(
            (before.status, before.country),
            (DimensionStatus::NoSubscription, Some("FR"))
        );
        assert_eq!(d.lookup("u1", 10 * H).subscription_id, Some("s1"));
        // Exactly at the valid_to of a subscription deleted outright: none any more.
        assert_eq!(d.lookup("u3", 30 * H - 1).status, DimensionStatus::Matched);
        assert_eq!(d.lookup("u3", 30 * H).status, DimensionStatus::NoSubscription);
    }

    #[test]
    fn a_deleted_users_later_events_and_strangers_are_unknown() {
        let d = sample();
        assert_eq!(d.lookup("u2", 50 * H - 1).status, DimensionStatus::Matched);
        assert_eq!(d.lookup("u2", 50 * H).status, DimensionStatus::UserUnknown);
        assert_eq!(d.lookup("u9", 0), Enrichment::UNKNOWN);
        assert_eq!(
            d.lookup("u1", -1).status,
            DimensionStatus::UserUnknown,
            "before the user existed"
        );
    }

    #[test]
    fn a_plan_upgrade_between_two_events_of_one_session() {
        let d = sample();
        let session = [19 * H + 50 * 60_000_000, 20 * H + 5 * 60_000_000];
        let plans: Vec<_> = session.iter().map(|&t| d.lookup("u1", t).plan).collect();
        assert_eq!(plans, [Some("basic"), Some("premium")]);
    }

    /// The lookup by brute force: every version scanned.
    fn brute<'a>(
        users: &'a [(u8, i64, Option<i64>, u8)],
        subs: &'a [(u8, u8, i64, Option<i64>, u8)],
        user: u8,
        at: i64,
    ) -> (DimensionStatus, Option<String>, Option<i64>, Option<String>) {
        let within = |from: i64, to: Option<i64>| from <= at && to.is_none_or(|t| at < t);
        let Some(u) = users
            .iter()
            .filter(|u| u.0 == user && within(u.1, u.2))
            .max_by_key(|u| u.1)
        else {
            return (DimensionStatus::UserUnknown, None, None, None);
        };
        let country = Some(format!("C{}", u.3));
        match subs
            .iter()
            .filter(|s| s.0 == user && within(s.2, s.3))
            .max_by_key(|s| (s.2, format!("s{}", s.1)))
        {
            Some(s) => (DimensionStatus::Matched, Some(format!("s{}", s.1)), Some(s.2), country),
            None => (DimensionStatus::NoSubscription, None, Some(u.1), country),
        }
    }

    /// Intervals that tile time per key, as the SCD2 history keeps them: from sorted starts,
    /// each version ends where the next starts; the last is open or closed (a delete).
    fn tiles(starts: Vec<i64>, closed: Option<i64>) -> Vec<(i64, Option<i64>)> {
        let mut starts = starts;
        starts.sort();
        starts.dedup();
        let n = starts.len();
        (0..n)
            .map(|i| {
                let to = if i + 1 < n {
                    Some(starts[i + 1])
                } else {
                    closed.map(|c| starts[i] + 1 + c)
                };
                (starts[i], to)
            })
            .collect()
    }

    proptest! {
        /// For random histories and events, the index answers as a scan of every version.
        #[test]
        fn the_index_equals_a_brute_force_as_of_lookup(
            raw_users in prop::collection::vec((0u8..5, prop::collection::vec(0i64..100, 1..4), prop::option::of(0i64..30), 0u8..4), 0..6),
            raw_subs in prop::collection::vec((0u8..5, 0u8..6, prop::collection::vec(0i64..100, 1..4), prop::option::of(0i64..40), 0u8..3), 0..10),
            events in prop::collection::vec((0u8..6, -5i64..140), 1..40),
        ) {
            let mut users = Vec::new();
            for (user, starts, closed, country) in raw_users {
                if users.iter().any(|u: &(u8, i64, Option<i64>, u8)| u.0 == user) {
                    continue; // one history per user
                }
                users.extend(tiles(starts, closed).into_iter().map(|(f, t)| (user, f, t, country)));
            }
            let mut subs = Vec::new();
            for (user, id, starts, closed, plan) in raw_subs {
                if subs.iter().any(|s: &(u8, u8, i64, Option<i64>, u8)| s.1 == id) {
                    continue; // one history per subscription, one owner
                }
                subs.extend(tiles(starts, closed).into_iter().map(|(f, t)| (user, id, f, t, plan)));
            }
            let mut b = Dimension::builder();
            for &(u, f, t, c) in &users {
                b.user(&format!("u{u}"), f, t, Some(&format!("C{c}")));
            }
            for &(u, id, f, t, p) in &subs {
                b.subscription(&format!("u{u}"), &format!("s{id}"), f, t, Some(&format!("p{p}")), Some("active"));
            }
            let d = b.build();
            for (user, at) in events {
                let got = d.lookup(&format!("u{user}"), at);
                let want = brute(&users, &subs, user, at);
                prop_assert_eq!(
                    (got.status, got.subscription_id.map(str::to_string), got.valid_from, got.country.map(str::to_string)),
                    want,
                    "user u{} at {}", user, at
                );
            }
        }
    }
}
