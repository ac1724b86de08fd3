//! Rollups built while the run is still writing: a day is rolled up as soon as the input has moved
//! past it, on one background thread, instead of every day at the end of the run.
//!
//! A file ingest keeps both cores about 85 % busy while it writes (its stages wait on one another),
//! and used to roll every day up only after its last batch. Rolling up a day once no batch in
//! flight holds it, and the last batch each writer handed over does not either, fills that idle
//! time. The guess can be wrong (a later batch writes the day again): the day is then rolled up
//! again at the end, like any day written late, so the result never depends on it; and when more
//! than a quarter of the days had to be redone (input not in time order), rolling ahead stops for
//! the run. Input that comes in groups (the files of one directory and format, one group after
//! another: a month's NDJSON, then the same month's CloudWatch exports) would have every day of a
//! group rolled up and redone by the next: there a group's days wait until the next group starts
//! after them, and a group that goes back to earlier days stops rolling ahead before any of them
//! was rolled up in vain. Only days whose data files total at most [`AHEAD_MAX_DAY_BYTES`] are
//! rolled up ahead: a rollup holds state in proportion to its day (its ids, request seconds and
//! session lines), and while the run writes, that state comes on top of the writers' batches;
//! larger days wait for the end, when the batches are freed, so that memory stays flat however
//! large a day is.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use chrono::NaiveDate;

use crate::lake::Lake;
use crate::rollup::rebuild_hourly_within;

/// What a writer tells the rollups ahead.
#[derive(Debug)]
pub(crate) enum Note {
    /// Batch `seq` of writer `writer`, holding records of `days`, is on its way to the lake.
    Handed {
        writer: usize,
        seq: u64,
        days: BTreeSet<NaiveDate>,
    },
    /// Batch `seq` of writer `writer` is durable; it wrote new records to `days` (or found
    /// their rollups stale).
    Committed {
        writer: usize,
        seq: u64,
        days: BTreeSet<NaiveDate>,
    },
    /// No batch is handed over after those already noted.
    Ended,
    /// The input comes in groups, one after another: a day waits until the next group starts
    /// after it ([`Note::NextGroup`]), or until the input ends.
    Grouped,
    /// The first record of the next group is of day `first`; `latest` is the latest day of the
    /// records before it (none: no record yet); `last`: no group follows.
    NextGroup {
        latest: Option<NaiveDate>,
        first: NaiveDate,
        last: bool,
    },
    /// Reply once no day may be rolled up (tests: a deterministic point to look at).
    #[cfg(test)]
    Settled(mpsc::SyncSender<()>),
    Stop,
}

/// A writer's line to the rollups ahead.
#[derive(Debug, Clone)]
pub(crate) struct AheadLink {
    tx: mpsc::Sender<Note>,
    writer: usize,
}

impl AheadLink {
    pub(crate) fn handed(&self, seq: u64, days: BTreeSet<NaiveDate>) {
        // The thread stops only when told, after the writers; a send cannot fail before.
        let _ = self.tx.send(Note::Handed { writer: self.writer, seq, days });
    }

    pub(crate) fn committed(&self, seq: u64, days: BTreeSet<NaiveDate>) {
        let _ = self.tx.send(Note::Committed { writer: self.writer, seq, days });
    }
}

/// Which days may be rolled up now. Pure: the thread feeds it notes and asks.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Days written since their last rollup here.
    pending: BTreeSet<NaiveDate>,
    /// Batches handed over and not yet committed, by (writer, seq).
    in_flight: HashMap<(usize, u64), BTreeSet<NaiveDate>>,
    /// The days of each writer's last batch handed over.
    latest: HashMap<usize, BTreeSet<NaiveDate>>,
    ended: bool,
    /// Days rolled up here and not written since.
    current: BTreeSet<NaiveDate>,
    /// Rollups done here.
    rolled: usize,
    /// Days written again after their rollup here.
    redone: usize,
    /// Input in groups: the latest day a later group has started after, so that it and the
    /// days before it may be rolled up (`Some(None)`: none yet). `None`: no day waits for this.
    released: Option<Option<NaiveDate>>,
    /// A group of the input went back to days before it: the groups cover the same days.
    revisited: bool,
}

impl Plan {
    pub(crate) fn note(&mut self, note: Note) {
        match note {
            Note::Handed { writer, seq, days } => {
                self.latest.insert(writer, days.clone());
                self.in_flight.insert((writer, seq), days);
            }
            Note::Committed { writer, seq, days } => {
                self.in_flight.remove(&(writer, seq));
                for dt in days {
                    if self.current.remove(&dt) {
                        self.redone += 1;
                    }
                    self.pending.insert(dt);
                }
            }
            Note::Ended => self.ended = true,
            Note::Grouped => self.released = Some(None),
            Note::NextGroup { latest, first, last } => match latest {
                Some(latest) if first < latest => self.revisited = true,
                _ if last => self.released = None,
                latest => self.released = self.released.map(|r| latest.max(r)),
            },
            #[cfg(test)]
            Note::Settled(_) => {}
            Note::Stop => {}
        }
    }

    /// Rolling ahead has cost more than it saves, or would: input out of time order.
    fn given_up(&self) -> bool {
        self.revisited || (self.redone > 2 && self.redone * 4 > self.rolled)
    }

    /// The earliest day that no batch in flight holds and, until the input has ended, that
    /// no writer's last batch holds either, nor, where the input comes in groups, the group
    /// being read.
    pub(crate) fn next(&self) -> Option<NaiveDate> {
        if self.given_up() {
            return None;
        }
        self.pending.iter().copied().find(|dt| {
            !self.in_flight.values().any(|days| days.contains(dt))
                && (self.ended
                    || (!self.latest.values().any(|days| days.contains(dt))
                        && self.released.is_none_or(|r| r.is_some_and(|r| *dt <= r))))
        })
    }

    /// `dt`, taken by [`Plan::next`], is left for the end (too large to roll up ahead).
    pub(crate) fn skip(&mut self, dt: NaiveDate) {
        self.pending.remove(&dt);
    }

    /// `dt`, taken by [`Plan::next`], was rolled up (`ok`) or failed (left for the end).
    pub(crate) fn done(&mut self, dt: NaiveDate, ok: bool) {
        self.pending.remove(&dt);
        self.rolled += 1;
        if ok {
            self.current.insert(dt);
        }
    }
}

/// What the rollups ahead did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AheadReport {
    /// Days rolled up ahead and not written since: their rollups are current.
    pub current: BTreeSet<NaiveDate>,
    /// Rollups built ahead, those later redone included.
    pub rolled: usize,
    /// Days written again after their rollup ahead (rolled up again at the end).
    pub redone: usize,
    /// A group of the input went back to the days of the groups before it, so nothing more
    /// was rolled up ahead ([`RollupsAhead::next_group`]).
    pub revisited: bool,
}

/// Rolls up the days of a run's writers as the input moves past them (see the module
/// documentation). Give its `link` to each writer
/// ([`crate::EventWriter::with_rollups_ahead`]), call [`RollupsAhead::input_ended`] once
/// every writer has handed over its last batch, and [`RollupsAhead::finish`] once they are
/// done: the days it returns as current need no rollup at the end.
pub struct RollupsAhead {
    tx: mpsc::Sender<Note>,
    writers: AtomicUsize,
    worker: Option<JoinHandle<Plan>>,
}

impl RollupsAhead {
    /// Starts the background thread rolling up days of `lake`.
    pub fn new(lake: &Lake) -> Self {
        Self::with_max_day_bytes(lake, AHEAD_MAX_DAY_BYTES)
    }

    /// As [`RollupsAhead::new`], rolling up ahead only days of at most `max_day_bytes`.
    pub(crate) fn with_max_day_bytes(lake: &Lake, max_day_bytes: u64) -> Self {
        let (tx, rx) = mpsc::channel::<Note>();
        let lake = lake.clone();
        let worker = std::thread::Builder::new()
            .name("rollups-ahead".into())
            .spawn(move || run(&lake, &rx, max_day_bytes))
            .ok();
        Self { tx, writers: AtomicUsize::new(0), worker }
    }

    pub(crate) fn link(&self) -> AheadLink {
        AheadLink { tx: self.tx.clone(), writer: self.writers.fetch_add(1, Ordering::Relaxed) }
    }

    /// Every writer has handed over its last batch: the days no batch in flight holds may be
    /// rolled up now.
    pub fn input_ended(&self) {
        let _ = self.tx.send(Note::Ended);
    }

    /// The input comes in groups read one after another (the files of one directory and
    /// format): from now on a day waits until the next group starts after it
    /// ([`RollupsAhead::next_group`]) or the input ends. Call before the first record.
    pub fn expect_groups(&self) {
        let _ = self.tx.send(Note::Grouped);
    }

    /// The first record of the next group (after [`RollupsAhead::expect_groups`]) is of day
    /// `first`, and the latest day of the records before it `latest` (`None`: no record yet);
    /// `last` when no group follows. A group that goes back before `latest` stops rolling
    /// ahead for the run: its days are those of the groups before it, written again.
    pub fn next_group(&self, latest: Option<NaiveDate>, first: NaiveDate, last: bool) {
        let _ = self.tx.send(Note::NextGroup { latest, first, last });
    }

    /// Waits until no day may be rolled up ahead (all eligible ones are done).
    #[cfg(test)]
    pub(crate) fn settle(&self) {
        let (reply, done) = mpsc::sync_channel(1);
        let _ = self.tx.send(Note::Settled(reply));
        let _ = done.recv();
    }

    /// Stops after the rollup in progress; what was rolled up and is still current.
    pub fn finish(mut self) -> AheadReport {
        self.stop().map_or_else(AheadReport::default, |plan| AheadReport {
            current: plan.current,
            rolled: plan.rolled,
            redone: plan.redone,
            revisited: plan.revisited,
        })
    }

    fn stop(&mut self) -> Option<Plan> {
        let _ = self.tx.send(Note::Stop);
        match self.worker.take()?.join() {
            Ok(plan) => Some(plan),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for RollupsAhead {
    fn drop(&mut self) {
        // A run that stopped on an error: let the rollup in progress end before the lake is
        // left (the writers' files stay; the days are stale, which readers see and rebuild).
        if self.worker.is_some() && !std::thread::panicking() {
            let _ = self.stop();
        }
    }
}

/// The largest day (bytes of its `usage_events` and `agent_spans` files) rolled up ahead:
/// about 250,000 usage events. Measured on ingests of generated months: the days of the
/// 5M-event one (5 MB of files each) rolled up ahead added 30–40 MB to the peak; with no limit,
/// the 20M-event one's (21 MB each) added 100–120 MB, and with a 16 MiB limit its 9 smaller
/// days still added as much (a thread's allocator arena keeps its largest rollup).
pub(crate) const AHEAD_MAX_DAY_BYTES: u64 = 8 << 20;

/// How much lower than the run's other threads the rollups ahead run: measured, nice 10
/// (about a tenth of a core's share against one busy thread) already leaves the writer's
/// threads their speed, while a day's rollup still ends when every core is busy.
const AHEAD_NICE: i32 = 10;

fn run(lake: &Lake, rx: &mpsc::Receiver<Note>, max_day_bytes: u64) -> Plan {
    crate::priority::lower_this_thread(AHEAD_NICE);
    let mut plan = Plan::default();
    // The row keys the writers keep are for the rollups done here; a day left for the end
    // would hold its keys until then.
    let mut keeping = true;
    #[cfg(test)]
    let mut waiting: Vec<mpsc::SyncSender<()>> = Vec::new();
    loop {
        #[cfg(test)]
        if plan.next().is_none() {
            for w in waiting.drain(..) {
                let _ = w.send(());
            }
        }
        // Every note already sent first, so a day written meanwhile is not rolled up early.
        let note = if plan.next().is_some() {
            match rx.try_recv() {
                Ok(n) => Some(n),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => return plan,
            }
        } else {
            match rx.recv() {
                Ok(n) => Some(n),
                Err(_) => return plan,
            }
        };
        match note {
            Some(Note::Stop) => return plan,
            #[cfg(test)]
            Some(Note::Settled(reply)) => waiting.push(reply),
            Some(n) => {
                plan.note(n);
                if keeping && plan.given_up() {
                    keeping = false;
                    lake.row_keys().stop();
                }
            }
            None => {
                let Some(dt) = plan.next() else { continue };
                match rebuild_hourly_within(lake, dt, max_day_bytes, None, None) {
                    Ok(Some(_)) => plan.done(dt, true),
                    Ok(None) => {
                        lake.row_keys().refuse_day(dt);
                        plan.skip(dt);
                    }
                    Err(e) => {
                        tracing::debug!(dt = %dt, error = %e, "Rollup ahead failed; the day is rolled up at the end.");
                        plan.done(dt, false);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 10, n).unwrap()
    }

    fn days(ns: &[u32]) -> BTreeSet<NaiveDate> {
        ns.iter().map(|&n| d(n)).collect()
    }

    fn handed(plan: &mut Plan, writer: usize, seq: u64, ns: &[u32]) {
        plan.note(Note::Handed { writer, seq, days: days(ns) });
    }

    fn committed(plan: &mut Plan, writer: usize, seq: u64, ns: &[u32]) {
        plan.note(Note::Committed { writer, seq, days: days(ns) });
    }

    /// Writer 0's batch `seq` of days `ns`, handed over and committed.
    fn written(plan: &mut Plan, seq: u64, ns: &[u32]) {
        handed(plan, 0, seq, ns);
        committed(plan, 0, seq, ns);
    }

    #[test]
    fn a_day_waits_until_no_batch_in_flight_or_last_handed_holds_it() {
        let mut p = Plan::default();
        handed(&mut p, 0, 1, &[1, 2]);
        committed(&mut p, 0, 1, &[1, 2]);
        // The last batch handed over holds both days: the input may not be past them.
        assert_eq!(p.next(), None);
        handed(&mut p, 0, 2, &[2, 3]);
        assert_eq!(p.next(), Some(d(1)));
        p.done(d(1), true);
        // Day 2 is in batch 2, in flight.
        assert_eq!(p.next(), None);
        committed(&mut p, 0, 2, &[2, 3]);
        assert_eq!(p.next(), None, "batch 2 is still the last handed over");
        // Another writer's batch does not hold day 2 back; writer 0's last batch does.
        handed(&mut p, 1, 1, &[9]);
        assert_eq!(p.next(), None);
        p.note(Note::Ended);
        assert_eq!(p.next(), Some(d(2)), "input ended: only batches in flight hold days");
        p.done(d(2), true);
        assert_eq!(p.next(), Some(d(3)));
        p.done(d(3), false);
        assert_eq!(p.next(), None);
        assert_eq!(p.current, days(&[1, 2]), "a failed rollup is left for the end");
    }

    #[test]
    fn a_day_written_after_its_rollup_is_no_longer_current_and_is_rolled_again() {
        let mut p = Plan::default();
        handed(&mut p, 0, 1, &[1]);
        committed(&mut p, 0, 1, &[1]);
        handed(&mut p, 0, 2, &[2]);
        p.done(p.next().unwrap(), true);
        assert_eq!(p.current, days(&[1]));
        committed(&mut p, 0, 2, &[2]);
        handed(&mut p, 0, 3, &[1]);
        committed(&mut p, 0, 3, &[1]);
        assert!(p.current.is_empty());
        assert_eq!((p.rolled, p.redone), (1, 1));
        assert_eq!(p.next(), Some(d(2)), "day 1 is in the last batch again");
    }

    /// Two groups of input, the second after the first (a month, then the next): the first
    /// group's days wait for the second to start, then go; the last group's as usual.
    #[test]
    fn a_group_s_days_wait_until_the_next_group_starts_after_them() {
        let mut p = Plan::default();
        p.note(Note::Grouped);
        for (seq, n) in (1..=3).enumerate() {
            written(&mut p, seq as u64, &[n]);
        }
        handed(&mut p, 0, 3, &[4]);
        assert_eq!(p.next(), None, "days 1 to 3 wait: the next group may write them again");
        p.note(Note::NextGroup { latest: Some(d(4)), first: d(5), last: true });
        handed(&mut p, 0, 4, &[5]);
        assert_eq!(p.next(), Some(d(1)));
        p.done(d(1), true);
        committed(&mut p, 0, 3, &[4]);
        committed(&mut p, 0, 4, &[5]);
        handed(&mut p, 0, 5, &[6]);
        for n in [2, 3, 4, 5] {
            assert_eq!(p.next(), Some(d(n)), "the last group's days go as the input passes");
            p.done(d(n), true);
        }
        assert_eq!(p.next(), None);
        assert!(!p.given_up());
    }

    /// A middle group releases only the days before it; its own wait for the group after it.
    #[test]
    fn a_middle_group_releases_the_days_before_it_only() {
        let mut p = Plan::default();
        p.note(Note::Grouped);
        written(&mut p, 1, &[1]);
        p.note(Note::NextGroup { latest: Some(d(1)), first: d(2), last: false });
        written(&mut p, 2, &[2]);
        handed(&mut p, 0, 3, &[3]);
        assert_eq!(p.next(), Some(d(1)));
        p.done(d(1), true);
        assert_eq!(p.next(), None, "day 2 is the middle group's: the last group may go back");
        p.note(Note::Ended);
        assert_eq!(p.next(), Some(d(2)), "the input ended: nothing is held back");
    }

    /// Groups that cover the same days (a month's NDJSON, then its CloudWatch exports): the
    /// second goes back, and nothing was or is rolled up ahead, where rolling every day of
    /// the first group up had it all redone.
    #[test]
    fn a_group_that_goes_back_stops_rolling_ahead_before_any_day_was_rolled_in_vain() {
        let mut p = Plan::default();
        p.note(Note::Grouped);
        for (seq, n) in (1..=31).enumerate() {
            handed(&mut p, 0, seq as u64, &[n]);
            assert_eq!(p.next(), None);
            committed(&mut p, 0, seq as u64, &[n]);
        }
        p.note(Note::NextGroup { latest: Some(d(31)), first: d(1), last: true });
        handed(&mut p, 0, 31, &[1]);
        assert_eq!(p.next(), None);
        assert!(p.given_up());
        assert_eq!((p.rolled, p.redone), (0, 0));
        assert_eq!(p.pending.len(), 31, "every day is rolled up at the end, once");
    }

    /// A group that starts on the day the one before ended goes on from it: that day is
    /// written by both, which no rollup ahead has taken.
    #[test]
    fn a_group_that_starts_on_the_last_day_of_the_one_before_goes_on() {
        let mut p = Plan::default();
        p.note(Note::Grouped);
        written(&mut p, 1, &[1, 2]);
        p.note(Note::NextGroup { latest: Some(d(2)), first: d(2), last: true });
        handed(&mut p, 0, 2, &[2, 3]);
        assert_eq!(p.next(), Some(d(1)));
        p.done(d(1), true);
        assert_eq!(p.next(), None, "day 2 is in the last batch");
        assert!(!p.given_up());
    }

    #[test]
    fn rolling_ahead_stops_once_more_than_a_quarter_of_the_days_are_redone() {
        let mut p = Plan::default();
        // Input out of order: each batch goes back to day 1.
        let mut seq = 0;
        for n in 2..=6 {
            seq += 1;
            handed(&mut p, 0, seq, &[n]);
            committed(&mut p, 0, seq, &[n]);
            seq += 1;
            handed(&mut p, 0, seq, &[1]);
            if let Some(dt) = p.next() {
                p.done(dt, true);
            }
            committed(&mut p, 0, seq, &[1]);
            seq += 1;
            handed(&mut p, 0, seq, &[n + 10]);
            if let Some(dt) = p.next() {
                p.done(dt, true);
            }
            committed(&mut p, 0, seq, &[n + 10]);
        }
        assert!(p.redone > 2 && p.redone * 4 > p.rolled, "{} of {}", p.redone, p.rolled);
        assert_eq!(p.next(), None);
        assert!(!p.pending.is_empty(), "what is left is rolled up at the end");
    }
}
