//! The de-duplication ledger: the keys a dataset accepted recently, so that a producer's
//! duplicate arriving in a later batch is recognised.
//!
//! One object per (source partition, enqueue hour): `ops/ledger/<dataset>/partition=<p>/hour=
//! YYYY-MM-DDTHH.bin`. A batch reads the buckets of its dedupe window and writes the buckets of
//! its own hours with an ETag compare-and-swap. Each entry remembers the sequence number that
//! accepted the key, so a redelivered batch recognises its own events instead of dropping them.
//! Per partition, because one partition is processed by one instance at a time (Event Hubs
//! leases), so writers do not contend; producers that retry send to the same partition key.

use chrono::{DateTime, Duration, DurationRound, Utc};

const MAGIC: &[u8; 8] = b"MLLEDG1\n";
const ENTRY_BYTES: usize = 16 + 8 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    pub body_hash: u64,
    pub sequence_number: i64,
}

/// One bucket: entries sorted by key hash, one per key. A sorted vector rather than a tree: a
/// bucket holds up to an hour of a partition's keys (millions), and is copied, merged, encoded
/// and decoded once per batch, which a flat vector does at memory speed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerBucket {
    entries: Vec<(u128, LedgerEntry)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger object is corrupt: {0}")]
pub struct LedgerCorrupt(pub String);

/// Of two entries for one key, the first acceptance (the lowest sequence number).
fn first_of(a: LedgerEntry, b: LedgerEntry) -> LedgerEntry {
    if b.sequence_number < a.sequence_number { b } else { a }
}

impl LedgerBucket {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u128, LedgerEntry)> + '_ {
        self.entries.iter().copied()
    }

    pub fn get(&self, key: u128) -> Option<&LedgerEntry> {
        let i = self.entries.binary_search_by_key(&key, |(k, _)| *k).ok()?;
        self.entries.get(i).map(|(_, e)| e)
    }

    /// Keeps the first acceptance of a key (the lowest sequence number). One at a time costs a
    /// shift of the tail: build large buckets with `collect` and combine them with [`merge`].
    ///
    /// [`merge`]: LedgerBucket::merge
    pub fn insert(&mut self, key: u128, entry: LedgerEntry) {
        match self.entries.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => self.entries[i].1 = first_of(self.entries[i].1, entry),
            Err(i) => self.entries.insert(i, (key, entry)),
        }
    }

    /// Adds `other`'s entries (the first acceptance of a key wins) in one pass over both.
    /// Returns whether anything changed.
    pub fn merge(&mut self, other: &LedgerBucket) -> bool {
        let changes = other
            .entries
            .iter()
            .any(|(key, entry)| self.get(*key).is_none_or(|e| first_of(*e, *entry) != *e));
        if !changes {
            return false;
        }
        let (ours, theirs) = (&self.entries, &other.entries);
        let mut merged = Vec::with_capacity(ours.len() + theirs.len());
        let (mut i, mut j) = (0, 0);
        while i < ours.len() && j < theirs.len() {
            let ((ka, ea), (kb, eb)) = (ours[i], theirs[j]);
            if ka == kb {
                merged.push((ka, first_of(ea, eb)));
                i += 1;
                j += 1;
            } else if ka < kb {
                merged.push(ours[i]);
                i += 1;
            } else {
                merged.push(theirs[j]);
                j += 1;
            }
        }
        merged.extend_from_slice(&ours[i..]);
        merged.extend_from_slice(&theirs[j..]);
        self.entries = merged;
        true
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 8 + self.entries.len() * ENTRY_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (key, e) in &self.entries {
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&e.body_hash.to_le_bytes());
            out.extend_from_slice(&e.sequence_number.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, LedgerCorrupt> {
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| LedgerCorrupt("does not start with the ledger header".into()))?;
        let (count, rest) = body
            .split_at_checked(8)
            .ok_or_else(|| LedgerCorrupt("truncated header".into()))?;
        let count = u64::from_le_bytes(count.try_into().map_err(|_| LedgerCorrupt("header".into()))?) as usize;
        if rest.len() != count.saturating_mul(ENTRY_BYTES) {
            return Err(LedgerCorrupt(format!(
                "{count} entries announced, {} bytes present",
                rest.len()
            )));
        }
        let mut entries = Vec::with_capacity(count);
        for chunk in rest.chunks_exact(ENTRY_BYTES) {
            let (k, tail) = chunk.split_at(16);
            let (b, s) = tail.split_at(8);
            let num = |x: &[u8]| <[u8; 8]>::try_from(x).map_err(|_| LedgerCorrupt("entry".into()));
            let key = u128::from_le_bytes(k.try_into().map_err(|_| LedgerCorrupt("entry".into()))?);
            let entry = LedgerEntry {
                body_hash: u64::from_le_bytes(num(b)?),
                sequence_number: i64::from_le_bytes(num(s)?),
            };
            entries.push((key, entry));
        }
        // Written sorted and unique; anything else is put in order rather than refused.
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            return Ok(entries.into_iter().collect());
        }
        Ok(LedgerBucket { entries })
    }
}

impl FromIterator<(u128, LedgerEntry)> for LedgerBucket {
    /// Sorts once; of repeated keys the first acceptance is kept.
    fn from_iter<I: IntoIterator<Item = (u128, LedgerEntry)>>(iter: I) -> Self {
        let mut entries: Vec<(u128, LedgerEntry)> = iter.into_iter().collect();
        // Stable: of two entries with the same key and sequence number, the first one read wins,
        // as with `insert`.
        entries.sort_by_key(|(k, e)| (*k, e.sequence_number));
        entries.dedup_by_key(|(k, _)| *k);
        LedgerBucket { entries }
    }
}

pub fn key_hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

pub fn body_hash(raw: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(raw.as_bytes())
}

pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

pub fn partition_prefix(dataset: &str, partition: &str) -> String {
    format!("ops/ledger/{dataset}/partition={partition}/")
}

pub fn bucket_path(dataset: &str, partition: &str, hour: DateTime<Utc>) -> String {
    format!(
        "{}hour={}.bin",
        partition_prefix(dataset, partition),
        hour_of(hour).format("%Y-%m-%dT%H")
    )
}

/// The hours whose buckets a batch enqueued between `first` and `last` must consult.
pub fn window_hours(first: DateTime<Utc>, last: DateTime<Utc>, window: Duration) -> Vec<DateTime<Utc>> {
    let mut hour = hour_of(first - window);
    let end = hour_of(last);
    let mut out = Vec::new();
    while hour <= end && out.len() < 24 * 366 {
        out.push(hour);
        hour += Duration::hours(1);
    }
    out
}

/// What the ledger says of a key this batch wants to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    New,
    /// Accepted before by this very event (the batch is being redelivered).
    Itself,
    /// Accepted before with the same body: an exact duplicate.
    Duplicate {
        first_sequence_number: i64,
    },
    /// Accepted before with another body.
    Conflict {
        first_sequence_number: i64,
    },
}

pub fn lookup<'a>(buckets: impl IntoIterator<Item = &'a LedgerBucket>, key: u128, body: u64, seq: i64) -> Seen {
    let first = buckets
        .into_iter()
        .filter_map(|b| b.get(key))
        .min_by_key(|e| e.sequence_number);
    match first {
        None => Seen::New,
        Some(e) if e.sequence_number >= seq => Seen::Itself,
        Some(e) if e.body_hash == body => Seen::Duplicate {
            first_sequence_number: e.sequence_number,
        },
        Some(e) => Seen::Conflict {
            first_sequence_number: e.sequence_number,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let mut b = LedgerBucket::default();
        b.insert(
            key_hash("a"),
            LedgerEntry {
                body_hash: 1,
                sequence_number: 9,
            },
        );
        b.insert(
            key_hash("a"),
            LedgerEntry {
                body_hash: 2,
                sequence_number: 4,
            },
        );
        b.insert(
            key_hash("b"),
            LedgerEntry {
                body_hash: 3,
                sequence_number: 5,
            },
        );
        let bytes = b.encode();
        assert_eq!(LedgerBucket::decode(&bytes), Ok(b.clone()));
        assert_eq!(
            b.get(key_hash("a")).map(|e| e.sequence_number),
            Some(4),
            "first acceptance kept"
        );
        assert!(LedgerBucket::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(LedgerBucket::decode(b"nonsense").is_err());
    }

    #[test]
    fn redelivery_is_itself_and_later_copies_are_duplicates() {
        let mut b = LedgerBucket::default();
        b.insert(
            key_hash("e1"),
            LedgerEntry {
                body_hash: 7,
                sequence_number: 10,
            },
        );
        assert_eq!(lookup([&b], key_hash("e1"), 7, 10), Seen::Itself);
        assert_eq!(
            lookup([&b], key_hash("e1"), 7, 55),
            Seen::Duplicate {
                first_sequence_number: 10
            }
        );
        assert_eq!(
            lookup([&b], key_hash("e1"), 8, 55),
            Seen::Conflict {
                first_sequence_number: 10
            }
        );
        assert_eq!(lookup([&b], key_hash("e2"), 7, 55), Seen::New);
    }

    fn entry(seq: i64) -> LedgerEntry {
        LedgerEntry {
            body_hash: seq as u64 * 7,
            sequence_number: seq,
        }
    }

    proptest::proptest! {
        /// `collect` and `merge` agree with inserting one entry at a time into a map that keeps
        /// the lowest sequence number per key, and `merge` says whether anything changed.
        #[test]
        fn merge_and_collect_keep_the_first_acceptance(
            old in proptest::collection::vec((0u128..40, 0i64..100), 0..60),
            new in proptest::collection::vec((0u128..40, 0i64..100), 0..60),
        ) {
            let mut model = std::collections::BTreeMap::new();
            for (k, s) in old.iter().chain(&new) {
                let e = model.entry(*k).or_insert(*s);
                *e = (*e).min(*s);
            }
            let mut bucket: LedgerBucket = old.iter().map(|(k, s)| (*k, entry(*s))).collect();
            let before = bucket.clone();
            let additions: LedgerBucket = new.iter().map(|(k, s)| (*k, entry(*s))).collect();
            let changed = bucket.merge(&additions);
            let got: Vec<(u128, i64)> = bucket.iter().map(|(k, e)| (k, e.sequence_number)).collect();
            let want: Vec<(u128, i64)> = model.into_iter().collect();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(changed, bucket != before);
            proptest::prop_assert_eq!(LedgerBucket::decode(&bucket.encode()), Ok(bucket));
        }
    }

    #[test]
    fn an_unsorted_object_is_read_in_order() {
        let sorted: LedgerBucket = [(3, entry(1)), (1, entry(2)), (2, entry(3))].into_iter().collect();
        let mut bytes = sorted.encode();
        // Swap the first two entries in place: still a valid object, out of order.
        let start = MAGIC.len() + 8;
        let (a, b) = bytes[start..start + 2 * ENTRY_BYTES].split_at_mut(ENTRY_BYTES);
        a.swap_with_slice(b);
        let read = LedgerBucket::decode(&bytes).expect("decodes");
        assert_eq!(read, sorted);
        assert_eq!(read.get(1).map(|e| e.sequence_number), Some(2));
    }

    #[test]
    fn window_covers_every_hour() {
        let t = |h, m| Utc.with_ymd_and_hms(2024, 5, 2, h, m, 0).unwrap();
        let hours = window_hours(t(10, 30), t(11, 5), Duration::hours(24));
        assert_eq!(hours.len(), 26);
        assert_eq!(hours[0], Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap());
        assert_eq!(
            bucket_path("w", "3", t(11, 5)),
            "ops/ledger/w/partition=3/hour=2024-05-02T11.bin"
        );
    }
}
