//! A commit's requests about its days where each is a round trip (S3), kept off the
//! committer, which every record goes through. The listings of a batch's days' data files are
//! sent as the batch is handed over, while the batch before is committed, and for the day after
//! the batch's last one batch ahead, so that in input in time order the committer does not wait
//! on a listing for each day it meets. A day met with nothing new has its rollups checked on a
//! thread of its own ([`StaleChecks`]).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use crate::error::Result;
use crate::lake::Lake;
use crate::record::LakeRecord;
use crate::store::{ObjectMeta, REQUESTS_AT_ONCE, concurrently};

/// The data files of each of a batch's days.
pub(super) type Listed = Result<Vec<(NaiveDate, Vec<ObjectMeta>)>>;

/// Days' data files, listed on a thread of their own. Dropped unread (a commit before it
/// failed), it waits for its thread: no listing outlives the writer, nor makes a request on a
/// runtime that is shutting down as the run stops.
pub(super) struct Listing {
    rx: mpsc::Receiver<Listed>,
    thread: Option<JoinHandle<()>>,
    /// The days listed, and when the listing was sent.
    days: Vec<NaiveDate>,
    at: Instant,
}

impl Listing {
    /// `days` listed by `list` on a thread of its own.
    pub(super) fn start(
        days: Vec<NaiveDate>,
        list: impl FnOnce() -> Listed + Send + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel(1);
        let thread = std::thread::spawn(move || {
            let _ = tx.send(list());
        });
        Self { rx, thread: Some(thread), days, at: Instant::now() }
    }

    /// The data files of `days` of `R`'s table, listed on a thread of their own.
    pub(super) fn of<R: LakeRecord>(lake: &Lake, days: Vec<NaiveDate>) -> Self {
        let lake = lake.clone();
        Self::start(days.clone(), move || list_days::<R>(&lake, days))
    }

    /// The listing. A thread that ended without one panicked: its panic goes on in the caller
    /// (the committer, whose panic the writer raises), since reading no listing as "no files"
    /// would commit the batch without the day's ids stored before it.
    pub(super) fn recv(mut self) -> Listed {
        match self.rx.recv() {
            Ok(listed) => listed,
            Err(_) => {
                let panic = self.thread.take().and_then(|t| t.join().err());
                std::panic::resume_unwind(
                    panic.unwrap_or_else(|| Box::new("a day listing ended without an answer")),
                )
            }
        }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How long a day's listing stays good for the commits after it where each listing is a
/// round trip (S3): a writer committing a day batch after batch lists it at most about once
/// [`LISTING_FRESH`], not once a batch (a LIST per 10,000-event Lambda batch otherwise). A file
/// another writer puts for the day meanwhile is seen at the next listing; the ids it shares
/// with the batches before are stored again, and every reader counts them once, as when two
/// writers store one id at the same moment.
pub(super) const LISTING_FRESH: Duration = Duration::from_secs(1);

/// When each day's data files were last listed for a commit, where listings are reused
/// ([`LISTING_FRESH`]): by the writer as it hands a batch over, or by the committer.
#[derive(Default)]
pub(super) struct ListedAt(Mutex<HashMap<NaiveDate, Instant>>);

impl ListedAt {
    /// Of `days`, those to list now, recorded as listed now: each not listed in the last
    /// [`LISTING_FRESH`], or whose ids are not `held` (an evicted day is read again).
    pub(super) fn due(
        &self,
        days: impl IntoIterator<Item = NaiveDate>,
        held: impl Fn(NaiveDate) -> bool,
    ) -> Vec<NaiveDate> {
        let now = Instant::now();
        let mut at = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let fresh =
            |dt| at.get(&dt).is_some_and(|&t| now.saturating_duration_since(t) <= LISTING_FRESH);
        let due: Vec<NaiveDate> = days.into_iter().filter(|&dt| !(held(dt) && fresh(dt))).collect();
        at.extend(due.iter().map(|&dt| (dt, now)));
        due
    }
}

/// The data files of each of `days`, listed side by side: on S3 each listing is a round trip,
/// and the days are independent.
pub(super) fn list_days<R: LakeRecord>(lake: &Lake, days: Vec<NaiveDate>) -> Listed {
    let listed = concurrently(days.clone(), REQUESTS_AT_ONCE, |dt| lake.files(R::TABLE, dt))?;
    Ok(days.into_iter().zip(listed).collect())
}

/// The day after `days`' last, if the writer should list it ahead (see [`ListedAhead`]); it
/// counts as listed from now.
pub(super) fn day_after(days: &BTreeSet<NaiveDate>, listed_at: &ListedAt) -> Vec<NaiveDate> {
    let next = days.last().and_then(|d| d.succ_opt());
    listed_at.due(next, |_| true)
}

/// Listings sent a batch ahead, for days the batch did not hold: in input in time order, the
/// next batch's first new day, whose listing the committer would otherwise wait for (about a
/// round trip per day, more than a Lambda-sized batch takes to commit). Each is used only
/// within [`LISTING_FRESH`] of being sent, as a listing reused from an earlier commit is.
#[derive(Default)]
pub(super) struct ListedAhead {
    /// Not read yet, oldest first.
    pending: VecDeque<Listing>,
    /// Read, not yet used: each day's files, and when its listing was sent.
    files: HashMap<NaiveDate, (Instant, Vec<ObjectMeta>)>,
}

impl ListedAhead {
    /// Keeps `listing` for the commits after this one.
    pub(super) fn keep(&mut self, listing: Listing) {
        self.pending.push_back(listing);
    }

    /// Adds to `out` the files of each of `days` it lacks that a listing sent ahead holds,
    /// sent at most [`LISTING_FRESH`] ago (reading that listing, waiting for it if need be);
    /// forgets what is older.
    pub(super) fn take(
        &mut self,
        days: &BTreeSet<NaiveDate>,
        out: &mut HashMap<NaiveDate, Vec<ObjectMeta>>,
    ) -> Result<()> {
        let now = Instant::now();
        let fresh = |at: Instant| now.saturating_duration_since(at) <= LISTING_FRESH;
        // Too old to be used: dropped unread (each drop waits for its thread, which has had
        // a second to answer).
        while self.pending.front().is_some_and(|l| !fresh(l.at)) {
            self.pending.pop_front();
        }
        for dt in days {
            if out.contains_key(dt) {
                continue;
            }
            while let Some(i) = self.pending.iter().position(|l| l.days.contains(dt)) {
                let listing = self.pending.remove(i).expect("found at i");
                let at = listing.at;
                self.files.extend(listing.recv()?.into_iter().map(|(d, f)| (d, (at, f))));
            }
            if let Some((at, files)) = self.files.remove(dt)
                && fresh(at)
            {
                out.insert(*dt, files);
            }
        }
        self.files.retain(|_, (at, _)| fresh(*at));
        Ok(())
    }
}

/// Checks, each on a thread of its own, of whether the rollups of a day met with nothing new
/// are stale (a run killed before its rollups, run again): two round trips a day that the
/// committer need not wait for. Settled before the days written are taken; dropped, it waits
/// for its threads (none makes a request on a runtime that is shutting down).
#[derive(Default)]
pub(super) struct StaleChecks(Vec<(NaiveDate, JoinHandle<bool>)>);

/// Checks in flight at most; beyond, the oldest is settled first.
const CHECKS_AT_ONCE: usize = 16;

impl StaleChecks {
    /// Starts the check of `dt`, settling the oldest into `stale` if too many are in flight.
    pub(super) fn start(&mut self, lake: &Lake, dt: NaiveDate, stale: &mut BTreeSet<NaiveDate>) {
        if self.0.len() >= CHECKS_AT_ONCE {
            let (day, check) = self.0.remove(0);
            settle(day, check, stale);
        }
        let lake = lake.clone();
        self.0.push((dt, std::thread::spawn(move || is_stale(&lake, dt))));
    }

    /// Waits for every check, adding the stale days to `stale`.
    pub(super) fn settle(&mut self, stale: &mut BTreeSet<NaiveDate>) {
        for (day, check) in self.0.drain(..) {
            settle(day, check, stale);
        }
    }
}

impl Drop for StaleChecks {
    fn drop(&mut self) {
        self.settle(&mut BTreeSet::new());
    }
}

fn settle(day: NaiveDate, check: JoinHandle<bool>, stale: &mut BTreeSet<NaiveDate>) {
    // A check that failed (or panicked) counts as stale: the day is rolled up again.
    if check.join().unwrap_or(true) {
        stale.insert(day);
    }
}

/// Whether `dt`'s rollups are not current (or cannot be read).
pub(super) fn is_stale(lake: &Lake, dt: NaiveDate) -> bool {
    crate::rollup::rollup_state(lake, dt)
        .map_or(true, |s| matches!(s, crate::rollup::RollupState::Stale { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 10, d).unwrap()
    }

    fn file(key: &str) -> ObjectMeta {
        ObjectMeta { key: key.into(), size: 1, etag: String::new() }
    }

    /// A listing of `days`, each holding one file named after it, sent `age` ago.
    fn listing(days: &[u32], age: Duration) -> Listing {
        let listed: Vec<_> = days.iter().map(|&d| (day(d), vec![file(&format!("d{d}"))])).collect();
        let mut l = Listing::start(listed.iter().map(|d| d.0).collect(), move || Ok(listed));
        l.at = Instant::now().checked_sub(age).unwrap();
        l
    }

    #[test]
    fn a_listing_sent_ahead_serves_the_days_it_holds_only_while_fresh() {
        let mut ahead = ListedAhead::default();
        ahead.keep(listing(&[1], LISTING_FRESH * 2));
        ahead.keep(listing(&[2, 3], Duration::ZERO));
        let mut out = HashMap::from([(day(3), vec![file("listed with the batch")])]);
        ahead.take(&BTreeSet::from([day(1), day(2), day(3), day(4)]), &mut out).unwrap();
        let keys = |out: &HashMap<NaiveDate, Vec<ObjectMeta>>, d| {
            out.get(&day(d)).map(|f| f[0].key.clone())
        };
        // Day 1's listing is too old; day 3 was listed with the batch; day 4 was never listed.
        assert_eq!(keys(&out, 1), None);
        assert_eq!(keys(&out, 2).as_deref(), Some("d2"));
        assert_eq!(keys(&out, 3).as_deref(), Some("listed with the batch"));
        assert_eq!(keys(&out, 4), None);
        assert!(ahead.pending.is_empty());
        // Day 3's files from the listing ahead are kept for a batch after, while fresh.
        let mut later = HashMap::new();
        ahead.take(&BTreeSet::from([day(2), day(3)]), &mut later).unwrap();
        assert_eq!(keys(&later, 3).as_deref(), Some("d3"));
        assert_eq!(keys(&later, 2), None, "a day's files listed ahead are used once");
    }
}
