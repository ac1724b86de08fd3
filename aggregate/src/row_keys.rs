//! The identity keys of the rows of the `usage_events` files this process put, in each file's
//! row order, kept for the rollups that follow in the same process: a rollup reads a data file
//! whole but needs its ids only to count an id two files hold once, and `event_id` is most of a
//! data file's bytes (62 % in the 5M file's) and each id a keyed hash to compute. A file's keys
//! are taken by the first rollup that reads it; a file they were not kept for is read as any.
//!
//! Only files this process's put created are kept: a name another writer took first holds the
//! same ids, but conflicting copies of one id may sort its rows in another order. Off until a
//! run that rolls up what it writes asks for it ([`crate::Lake::keep_row_keys`]), and bounded.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use agentmeter_schemas::tables::USAGE_EVENTS;
use chrono::NaiveDate;

/// Bytes a kept key takes.
const KEY_BYTES: usize = std::mem::size_of::<u128>();

#[derive(Default)]
pub(crate) struct RowKeys(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    /// Object key of a data file → its rows' identity keys, in row order.
    files: HashMap<String, Vec<u128>>,
    bytes: usize,
    budget: usize,
    /// Days whose rollup waits for the end of the run: their keys would be held until then.
    refused: HashSet<NaiveDate>,
}

impl RowKeys {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps up to `bytes` of keys from now on (0: none).
    pub(crate) fn set_budget(&self, bytes: usize) {
        self.lock().budget = bytes;
    }

    /// Whether the keys of a file of `rows` rows in day `dt` would be kept now: lets the
    /// committer skip gathering them.
    pub(crate) fn room_for(&self, dt: NaiveDate, rows: usize) -> bool {
        let kept = self.lock();
        kept.bytes + rows * KEY_BYTES <= kept.budget && !kept.refused.contains(&dt)
    }

    /// Forgets the keys of day `dt` and keeps none of it from now on: its rollup is left for
    /// the end of the run, and its keys would take memory until then.
    pub(crate) fn refuse_day(&self, dt: NaiveDate) {
        let mut kept = self.lock();
        kept.refused.insert(dt);
        let prefix = crate::layout::partition(USAGE_EVENTS, dt);
        let Kept { files, bytes, .. } = &mut *kept;
        files.retain(|key, keys| {
            let drop = key.starts_with(&prefix);
            if drop {
                *bytes -= keys.len() * KEY_BYTES;
            }
            !drop
        });
    }

    /// Forgets every key and keeps none from now on: the rollups are left for the end of the
    /// run.
    pub(crate) fn stop(&self) {
        let mut kept = self.lock();
        kept.budget = 0;
        kept.bytes = 0;
        kept.files = HashMap::new();
    }

    /// Keeps `keys` as the rows of data file `key`, if there is room.
    pub(crate) fn keep(&self, key: &str, keys: Vec<u128>) {
        let mut kept = self.lock();
        let bytes = keys.len() * KEY_BYTES;
        if kept.bytes + bytes > kept.budget {
            return;
        }
        kept.bytes += bytes;
        if let Some(old) = kept.files.insert(key.to_owned(), keys) {
            kept.bytes -= old.len() * KEY_BYTES;
        }
    }

    /// Rows kept for the files among `keys`: what a rollup of them will read at least, so
    /// that its sets are made that size once rather than grown (each growth rehashes or
    /// copies everything before it, into fresh pages).
    pub(crate) fn rows<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> usize {
        let kept = self.lock();
        keys.into_iter().filter_map(|k| kept.files.get(k)).map(Vec::len).sum()
    }

    /// The keys of data file `key`'s rows, if kept; they are forgotten.
    pub(crate) fn take(&self, key: &str) -> Option<Vec<u128>> {
        let mut kept = self.lock();
        let keys = kept.files.remove(key)?;
        kept.bytes -= keys.len() * KEY_BYTES;
        Some(keys)
    }
}

impl std::fmt::Debug for RowKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.lock();
        f.debug_struct("RowKeys")
            .field("files", &kept.files.len())
            .field("bytes", &kept.bytes)
            .field("budget", &kept.budget)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kept_within_the_budget_and_taken_once() {
        let keys = RowKeys::default();
        let dt = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        keys.keep("a", vec![1, 2]);
        assert_eq!(keys.take("a"), None, "no budget: nothing kept");
        keys.set_budget(3 * KEY_BYTES);
        assert!(keys.room_for(dt, 3) && !keys.room_for(dt, 4));
        keys.keep("a", vec![1, 2]);
        assert!(keys.room_for(dt, 1) && !keys.room_for(dt, 2));
        keys.keep("b", vec![3, 4]);
        assert_eq!(keys.take("b"), None, "past the budget: not kept");
        assert_eq!(keys.rows(["a", "b", "c"]), 2, "only a's were kept");
        assert_eq!(keys.take("a"), Some(vec![1, 2]));
        assert_eq!(keys.rows(["a"]), 0, "taken");
        assert_eq!(keys.take("a"), None, "taken once");
        assert!(keys.room_for(dt, 3), "the taken keys' room is free again");
    }

    #[test]
    fn a_day_left_for_the_end_and_a_stopped_run_hold_no_keys() {
        let keys = RowKeys::default();
        keys.set_budget(1 << 20);
        let (d1, d2) = (
            NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 10, 2).unwrap(),
        );
        let (k1, k2) = (
            "usage_events/dt=2026-10-01/part-a.parquet",
            "usage_events/dt=2026-10-02/part-b.parquet",
        );
        keys.keep(k1, vec![1]);
        keys.keep(k2, vec![2, 3]);
        keys.refuse_day(d1);
        assert!(!keys.room_for(d1, 1) && keys.room_for(d2, 1));
        assert_eq!(keys.take(k1), None);
        assert_eq!(format!("{keys:?}"), "RowKeys { files: 1, bytes: 32, budget: 1048576 }");
        keys.stop();
        assert!(!keys.room_for(d2, 1));
        assert_eq!(keys.take(k2), None);
        assert_eq!(format!("{keys:?}"), "RowKeys { files: 0, bytes: 0, budget: 0 }");
    }
}
