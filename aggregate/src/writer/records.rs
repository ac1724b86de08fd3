//! A batch's records, laid out by day and tenant as they are pushed.
//!
//! The committer writes a day's records sorted by tenant, then time. Kept in the order they
//! came (tenants interleaved), every record of that pass was a cache and TLB miss: a batch is
//! tens of MB, and consecutive rows of a file lay a tenant's worth of records apart. Here each
//! (day, tenant) fills chunks of its own, so the rows of a file are read chunk after chunk,
//! and the sort itself reads no record, only the tenant codes and times kept beside them.
//! The chunks are slots of one vector, made with room for the batch before it: a vector per
//! chunk (hundreds of allocations a batch, of every size as they grew) left a month with spans
//! peaking about 45 MB higher.

use rustc_hash::FxHashMap;

use crate::record::LakeRecord;

/// Records in a chunk. A record's index is its chunk's number × `CHUNK` plus its place in
/// the chunk; a chunk not yet full leaves the slots after its last record empty.
pub(super) const CHUNK: usize = 32;

pub(super) struct Records<R> {
    /// The records by index, each chunk's filled from its start.
    slots: Vec<Option<R>>,
    /// Each chunk's day number and tenant code, and how many records it holds.
    groups: Vec<(i64, u32)>,
    filled: Vec<u32>,
    /// The chunk each (day, tenant) is filling.
    open: FxHashMap<(i64, u32), usize>,
    /// Each tenant's code, in order of its first record.
    codes: FxHashMap<Box<str>, u32>,
    /// Indices in the order the records were pushed (the first delivery of an id is kept).
    arrival: Vec<usize>,
    /// By index: the identity's key and the content fingerprint; the time.
    keys: Vec<(u128, u64)>,
    times: Vec<i64>,
}

impl<R: LakeRecord> Records<R> {
    /// Bytes a record costs here beyond [`LakeRecord::approx_bytes`].
    pub(super) const OVERHEAD: usize = std::mem::size_of::<(u128, u64)>()
        + std::mem::size_of::<i64>()
        + std::mem::size_of::<usize>();

    /// Room for `n` records without growing (a batch is sized after the one before it).
    pub(super) fn with_capacity(n: usize) -> Self {
        // A partly filled chunk a (day, tenant): room for about as many empty slots. More
        // grow the slots by doubling (a copy of the records; small batches of many tenants).
        let indices = n + n / 4;
        Self {
            slots: Vec::with_capacity(indices),
            groups: Vec::with_capacity(indices / CHUNK + 1),
            filled: Vec::with_capacity(indices / CHUNK + 1),
            open: FxHashMap::default(),
            codes: FxHashMap::default(),
            arrival: Vec::with_capacity(n),
            keys: Vec::with_capacity(indices),
            times: Vec::with_capacity(indices),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.arrival.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.arrival.is_empty()
    }

    /// Room for records without growing.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.arrival.capacity()
    }

    /// Adds `r`, with its identity's key and fingerprint; returns the bytes of the slots made
    /// for it (a chunk's, when it starts one: the batch counts its memory, filled or not).
    pub(super) fn push(&mut self, r: R, key: (u128, u64)) -> usize {
        let (tenant, time) = r.sort_prefix();
        let code = match self.codes.get(tenant) {
            Some(&code) => code,
            None => {
                let code = self.codes.len() as u32;
                self.codes.insert(tenant.into(), code);
                code
            }
        };
        let group = (r.day_number(), code);
        let mut made = 0;
        let chunk = match self.open.get(&group) {
            Some(&c) if (self.filled[c] as usize) < CHUNK => c,
            _ => {
                let c = self.groups.len();
                self.groups.push(group);
                self.filled.push(0);
                let slots = (c + 1) * CHUNK;
                self.slots.resize_with(slots, || None);
                self.keys.resize(slots, (0, 0));
                self.times.resize(slots, 0);
                self.open.insert(group, c);
                made = CHUNK * std::mem::size_of::<Option<R>>();
                c
            }
        };
        let at = chunk * CHUNK + self.filled[chunk] as usize;
        self.filled[chunk] += 1;
        self.slots[at] = Some(r);
        self.keys[at] = key;
        self.times[at] = time;
        self.arrival.push(at);
        made
    }

    /// The record at `index`.
    pub(super) fn get(&self, index: usize) -> &R {
        self.slots[index].as_ref().expect("an index given out holds a record")
    }

    /// The identity's key and content fingerprint of the record at `index`.
    pub(super) fn key(&self, index: usize) -> (u128, u64) {
        self.keys[index]
    }

    /// The day numbers of the records, each once, in order.
    pub(super) fn day_numbers(&self) -> std::collections::BTreeSet<i64> {
        self.groups.iter().map(|g| g.0).collect()
    }

    /// The indices of each day's records, days in order, each day's in the order pushed.
    pub(super) fn by_day(&self) -> Vec<(i64, Vec<usize>)> {
        let mut days: Vec<(i64, Vec<usize>)> = Vec::new();
        // Records come in about time order: the day of the record before is the likely one.
        let mut last = 0;
        for &i in &self.arrival {
            let day = self.groups[i / CHUNK].0;
            if days.get(last).is_none_or(|d| d.0 != day) {
                last = match days.iter().position(|d| d.0 == day) {
                    Some(at) => at,
                    None => {
                        days.push((day, Vec::new()));
                        days.len() - 1
                    }
                };
            }
            days[last].1.push(i);
        }
        days.sort_unstable_by_key(|d| d.0);
        days
    }

    /// Orders `rows` (indices, as [`Records::by_day`] gives them) by [`LakeRecord::sort_cmp`]
    /// reading only the tenant codes and times, but where two rows share both.
    pub(super) fn sort(&self, rows: &mut [usize]) {
        let mut by_name: Vec<(&str, u32)> = self.codes.iter().map(|(t, &c)| (&**t, c)).collect();
        by_name.sort_unstable();
        let mut rank = vec![0u32; by_name.len()];
        for (r, &(_, code)) in by_name.iter().enumerate() {
            rank[code as usize] = r as u32;
        }
        super::order_rows(
            rows,
            rank.len(),
            |i| (rank[self.groups[i / CHUNK].1 as usize], self.times[i]),
            |a, b| R::sort_cmp(self.get(a), self.get(b)),
        );
    }
}

impl<R: LakeRecord> std::ops::Index<usize> for Records<R> {
    type Output = R;

    fn index(&self, index: usize) -> &R {
        self.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmeter_schemas::UsageEvent;

    const DAY: i64 = 86_400_000;

    fn ev(id: &str, tenant: &str, ms: i64) -> UsageEvent {
        crate::writer::tests::ev(id, tenant, crate::writer::tests::DAY0 + ms, 1)
    }

    /// Pushes `events`, each with its place as its key.
    fn records(events: &[UsageEvent]) -> Records<UsageEvent> {
        let mut r = Records::with_capacity(events.len());
        for (n, e) in events.iter().enumerate() {
            r.push(e.clone(), (n as u128, n as u64));
        }
        r
    }

    #[test]
    fn each_day_gives_its_records_in_the_order_pushed_across_tenants_and_chunks() {
        // Three tenants interleaved, in runs of seven records a day, the days coming back
        // (2, 1, 0, 2, ...): enough for several chunks a (day, tenant).
        let day_of = |n: usize| 2 - ((n / 7) % 3) as i64;
        let events: Vec<UsageEvent> = (0..1000)
            .map(|n| ev(&format!("e{n}"), ["b", "a", "c"][n % 3], day_of(n) * DAY + n as i64))
            .collect();
        let r = records(&events);
        assert_eq!(r.len(), 1000);
        let d0 = crate::writer::tests::DAY0 / DAY;
        assert_eq!(r.day_numbers().into_iter().collect::<Vec<_>>(), vec![d0, d0 + 1, d0 + 2]);
        let days = r.by_day();
        assert_eq!(days.iter().map(|d| d.0).collect::<Vec<_>>(), vec![d0, d0 + 1, d0 + 2]);
        for (day, rows) in &days {
            let pushed: Vec<u64> = rows.iter().map(|&i| r.key(i).1).collect();
            let want: Vec<u64> = (0..1000).filter(|&n| day_of(n as usize) == day - d0).collect();
            assert_eq!(pushed, want, "day {day}");
            for &i in rows {
                let n = r.key(i).1 as usize;
                assert_eq!(r[i].event_id, events[n].event_id);
            }
        }
    }

    #[test]
    fn a_tenant_with_a_chunk_full_goes_on_in_a_chunk_of_its_own() {
        let mut r = Records::with_capacity(0);
        let mut made = 0;
        for n in 0..CHUNK as i64 + 3 {
            made += r.push(ev(&format!("e{n}"), "t", n), (n as u128, n as u64));
        }
        made += r.push(ev("other", "u", 0), (999, 999));
        assert_eq!(r.groups.len(), 3);
        assert_eq!(r.filled, vec![CHUNK as u32, 3, 1]);
        assert_eq!(r.groups[1].1, r.groups[0].1);
        assert_ne!(r.groups[2].1, r.groups[0].1);
        // Three chunks' slots, counted once each; those after a chunk's records are empty.
        assert_eq!(made, 3 * CHUNK * std::mem::size_of::<UsageEvent>());
        assert_eq!(r.slots.len(), 3 * CHUNK);
        assert!(r.slots[CHUNK + 3..2 * CHUNK].iter().all(Option::is_none));
        assert_eq!(r.by_day()[0].1.last().copied(), Some(2 * CHUNK));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// A day's rows come out in exactly `sort_cmp`'s order: tenants sharing prefixes,
        /// equal times (ordered by id), interleaved tenants spanning chunks.
        #[test]
        fn a_days_rows_sort_as_sort_cmp_orders_them(
            rows in proptest::collection::vec((0u8..6, 0i64..40, 0u16..400), 0..400),
        ) {
            let tenants = ["a", "a-1", "a-10", "b", "B", "a.1"];
            let mut seen = std::collections::HashSet::new();
            let events: Vec<UsageEvent> = rows
                .iter()
                .filter(|r| seen.insert(r.2))
                .map(|&(t, ms, id)| ev(&format!("id-{id}"), tenants[t as usize], ms))
                .collect();
            let r = records(&events);
            let mut fast = r.by_day().pop().map(|d| d.1).unwrap_or_default();
            r.sort(&mut fast);
            let fast: Vec<usize> = fast.iter().map(|&i| r.key(i).1 as usize).collect();
            let mut slow: Vec<usize> = (0..events.len()).collect();
            slow.sort_by(|&a, &b| UsageEvent::sort_cmp(&events[a], &events[b]));
            proptest::prop_assert_eq!(fast, slow);
        }
    }
}
