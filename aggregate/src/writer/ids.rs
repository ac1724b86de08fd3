//! The ids of one partition a writer has seen, with each id's content fingerprint.
//!
//! A writer keeps these for every day it writes (up to its index budget), so their size is
//! most of a long run's memory. A hash map of 16-byte keys and 8-byte values costs about 50
//! bytes an id (32-byte buckets, load factor, growth by doubling); here the ids are kept as a
//! sorted run of two exactly sized arrays, 24 bytes an id. Ids come in sets (a batch's of one
//! day, the new files' of a day when it is loaded), each sorted and merged into the run at
//! once; an id is never looked up alone.

#[derive(Default)]
pub(super) struct IdIndex {
    /// Sorted, distinct.
    keys: Vec<u128>,
    /// `fps[i]` is the fingerprint of `keys[i]`.
    fps: Vec<u64>,
}

impl IdIndex {
    /// Ids held.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The fingerprint of `key`, if held.
    #[cfg(test)]
    fn get(&self, key: u128) -> Option<u64> {
        self.keys.binary_search(&key).ok().map(|i| self.fps[i])
    }

    /// Adds each of `items` (a key and its fingerprint, in input order) unless it is held or
    /// earlier in `items`; for each item, the fingerprint held before it, if any
    /// (the first copy's). One sort and one merge into the run.
    pub(super) fn add_all(&mut self, items: &[(u128, u64)]) -> Vec<Option<u64>> {
        if items.is_empty() {
            // Nothing to merge: the run is not copied.
            return Vec::new();
        }
        let sorted = sorted_by_key(items);
        let mut held = vec![None; items.len()];
        let n = self.keys.len() + items.len();
        let (mut keys, mut fps) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (old_keys, old_fps) = (std::mem::take(&mut self.keys), std::mem::take(&mut self.fps));
        let mut old = old_keys.into_iter().zip(old_fps).peekable();
        // The key met last and the fingerprint it holds.
        let mut last: Option<(u128, u64)> = None;
        for (key, at) in sorted {
            let at = at as usize;
            if let Some((_, fp)) = last.filter(|&(k, _)| k == key) {
                held[at] = Some(fp);
                continue;
            }
            while let Some((ok, ofp)) = old.next_if(|&(ok, _)| ok < key) {
                keys.push(ok);
                fps.push(ofp);
            }
            match old.peek() {
                Some(&(ok, ofp)) if ok == key => {
                    held[at] = Some(ofp);
                    last = Some((key, ofp));
                }
                _ => {
                    let fp = items[at].1;
                    keys.push(key);
                    fps.push(fp);
                    last = Some((key, fp));
                }
            }
        }
        for (ok, ofp) in old {
            keys.push(ok);
            fps.push(ofp);
        }
        // Room for the batch's duplicates is left unused rather than the run copied again.
        self.keys = keys;
        self.fps = fps;
        held
    }
}

/// `items`' keys with their positions, by key, and within a key by position (the first copy
/// first). The keys are uniformly spread, so a counting sort by their leading bits leaves a
/// few keys a bucket, each bucket in position order and then sorted stably: linear where a
/// comparison sort of the pairs cost more than the hash map it replaces.
fn sorted_by_key(items: &[(u128, u64)]) -> Vec<(u128, u32)> {
    assert!(u32::try_from(items.len()).is_ok(), "a batch of {} ids", items.len());
    let bits = (items.len() / 4).max(1).ilog2();
    let bucket = |key: u128| if bits == 0 { 0 } else { (key >> (128 - bits)) as usize };
    // `next[b]`: where bucket `b`'s next key goes (counted into `next[b + 1]` first).
    let mut next = vec![0usize; (1 << bits) + 1];
    for &(key, _) in items {
        next[bucket(key) + 1] += 1;
    }
    for b in 1..next.len() {
        next[b] += next[b - 1];
    }
    let mut sorted = vec![(0u128, 0u32); items.len()];
    for (&(key, _), at) in items.iter().zip(0u32..) {
        let at_next = &mut next[bucket(key)];
        sorted[*at_next] = (key, at);
        *at_next += 1;
    }
    // `next[b]` is now where bucket `b` ends, and so where `b + 1` starts.
    let mut start = 0;
    for &stop in &next[..next.len() - 1] {
        sorted[start..stop].sort_by_key(|&(key, _)| key);
        start = stop;
    }
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reproducible spread of keys (splitmix64 pairs), like the keyed hashes of ids.
    fn keys(seed: u64, n: usize) -> Vec<u128> {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (0..n).map(|_| (u128::from(next()) << 64) | u128::from(next())).collect()
    }

    #[test]
    fn every_id_added_is_found_with_its_fingerprint_across_merges() {
        let all = keys(7, 50_000);
        let mut ix = IdIndex::default();
        assert_eq!(ix.get(all[0]), None);
        assert_eq!(ix.add_all(&[]), Vec::new());
        // Added in uneven rounds, as commits do.
        let mut added = 0;
        for (round, size) in [1, 2, 997, 10_000, 39_000].into_iter().enumerate() {
            let items: Vec<(u128, u64)> =
                all[added..added + size].iter().zip(added as u64..).map(|(&k, i)| (k, i)).collect();
            assert!(ix.add_all(&items).iter().all(Option::is_none), "round {round}");
            added += size;
            assert_eq!(ix.len(), added);
            assert!(ix.keys.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
            for (i, &k) in all[..added].iter().enumerate() {
                assert_eq!(ix.get(k), Some(i as u64));
            }
        }
        // Ids never added are not found, and a repeat keeps the first fingerprint.
        for &k in &keys(8, 5_000) {
            assert_eq!(ix.get(k), None);
        }
        assert_eq!(ix.add_all(&[(all[123], 999)]), vec![Some(123)]);
        assert_eq!(ix.len(), 50_000);
    }

    proptest::proptest! {
        // A failure prints its input; no regression file is written (README, "Property tests").
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// Ids added at once (after others added one by one) answer as a map
        /// that keeps each id's first fingerprint, and leave the run that map's ids in order.
        #[test]
        fn adding_a_batch_at_once_keeps_each_ids_first_copy(
            before in proptest::collection::vec((0u8..40, 0u64..3), 0..60),
            batch in proptest::collection::vec((0u8..40, 0u64..3), 0..60),
            spread in proptest::bool::ANY,
        ) {
            // Small keys collide often; spread ones exercise the directory.
            let key = |k: u8| if spread { keys(u64::from(k), 1)[0] } else { u128::from(k) };
            let mut model = std::collections::BTreeMap::new();
            let mut ix = IdIndex::default();
            for &(k, fp) in &before {
                let held = model.get(&key(k)).copied();
                model.entry(key(k)).or_insert(fp);
                proptest::prop_assert_eq!(ix.add_all(&[(key(k), fp)]), vec![held]);
            }
            let mut expected = Vec::new();
            for &(k, fp) in &batch {
                expected.push(model.get(&key(k)).copied());
                model.entry(key(k)).or_insert(fp);
            }
            let items: Vec<(u128, u64)> = batch.iter().map(|&(k, fp)| (key(k), fp)).collect();
            proptest::prop_assert_eq!(ix.add_all(&items), expected);
            proptest::prop_assert_eq!(&ix.keys, &model.keys().copied().collect::<Vec<_>>());
            proptest::prop_assert_eq!(&ix.fps, &model.values().copied().collect::<Vec<_>>());
            for (&k, &fp) in &model {
                proptest::prop_assert_eq!(ix.get(k), Some(fp));
            }
        }
    }

    #[test]
    fn keys_sort_with_their_first_copy_first_as_a_stable_sort_does() {
        let mut items: Vec<(u128, u64)> = keys(11, 20_000).into_iter().map(|k| (k, 0)).collect();
        // Copies of earlier keys further on, and the extremes.
        for i in 0..3_000 {
            items.push((items[i * 5].0, 1));
        }
        items.extend([(0, 2), (u128::MAX, 2), (0, 3)]);
        let mut expected: Vec<(u128, u32)> =
            items.iter().zip(0u32..).map(|(i, at)| (i.0, at)).collect();
        expected.sort_by_key(|&(key, _)| key);
        assert_eq!(sorted_by_key(&items), expected);
        assert_eq!(sorted_by_key(&[]), Vec::new());
    }

    #[test]
    fn extreme_keys_are_held_like_any() {
        let mut ix = IdIndex::default();
        let mut ks = keys(9, 100);
        ks.extend([0, 1, u128::MAX, u128::MAX - 1]);
        let items: Vec<(u128, u64)> = ks.iter().map(|&k| (k, 1)).collect();
        assert!(ix.add_all(&items).iter().all(Option::is_none));
        for &k in &ks {
            assert_eq!(ix.get(k), Some(1), "{k:x}");
        }
        assert_eq!(ix.get(2), None);
        assert_eq!(ix.get(u128::MAX - 2), None);
    }

    #[test]
    fn held_ids_cost_24_bytes_each() {
        let mut ix = IdIndex::default();
        let items: Vec<(u128, u64)> = keys(10, 100_000).into_iter().map(|k| (k, 0)).collect();
        for chunk in items.chunks(30_000) {
            ix.add_all(chunk);
        }
        assert_eq!(ix.len(), 100_000);
        let bytes = ix.keys.capacity() * 16 + ix.fps.capacity() * 8;
        assert_eq!(bytes, 100_000 * 24);
    }
}
