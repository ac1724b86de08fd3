//! Rebuilding the rollups of many days at once.

use std::thread::ScopedJoinHandle;

use chrono::NaiveDate;

use super::{DayGate, ListedRollups, put_held, rebuild_day, rebuild_hourly_within};
use crate::error::{Error, Result};
use crate::lake::Lake;

/// What rebuilding the rollups of several partitions did: each partition on its own, so one
/// that fails never keeps the others from being rebuilt.
#[derive(Debug, Default)]
pub struct RollupReport {
    /// Partitions rebuilt.
    pub rebuilt: Vec<NaiveDate>,
    /// Partitions whose rebuild failed, with why; their rollups stay stale.
    pub failed: Vec<(NaiveDate, Error)>,
}

impl RollupReport {
    /// Adds another report's partitions.
    pub fn extend(&mut self, other: RollupReport) {
        self.rebuilt.extend(other.rebuilt);
        self.failed.extend(other.failed);
    }

    /// `Ok` with the partitions rebuilt, or [`Error::RollupsFailed`] naming every failed one.
    ///
    /// # Errors
    ///
    /// Some partition failed.
    pub fn into_result(self) -> Result<Vec<NaiveDate>> {
        if self.failed.is_empty() {
            return Ok(self.rebuilt);
        }
        Err(Error::RollupsFailed {
            days: self.failed.into_iter().map(|(d, e)| (d, e.to_string())).collect(),
        })
    }
}

/// Rebuilds several partitions, `threads` at once (twice as many where requests are round
/// trips, within `DayGate`'s bound, each day's rollups put while the thread sums its next
/// day); a partition that fails is reported and the others are still rebuilt.
pub fn rebuild_hourly_all(lake: &Lake, days: &[NaiveDate], threads: usize) -> RollupReport {
    // Where requests are round trips (S3), a day mostly waits: twice as many days at once,
    // those beyond one a core within a memory bound.
    let gate = DayGate::new(threads);
    let round_trips = lake.store().round_trips();
    let threads = if round_trips { threads * 2 } else { threads };
    // Where reading a footer is a round trip and the days are more than go at once, the
    // rollup tables listed first spare the reads of rollups never written (every day of a
    // first ingest), a round trip for each day after the first ones, and the data files of
    // such days are listed then, many side by side, another. Days that all go at once
    // read their footers in one round trip side by side, which the listing would only put off
    // (a Lambda invocation's day or two, whose rollups are there). Without the listing, every
    // footer is read.
    let list = round_trips && days.len() > threads;
    let listed = match list.then(|| ListedRollups::of(lake, days)) {
        Some(Ok(listed)) => listed,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "Listing the rollups failed; reading every footer.");
            None
        }
        None => None,
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(days.len()));
    let record = |dt: NaiveDate, r: Result<usize>| {
        if let Err(e) = &r {
            tracing::error!(dt = %dt, error = %e, "Rollup failed; the partition stays stale.");
        }
        results.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((dt, r));
    };
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, days.len().max(1)) {
            s.spawn(|| {
                // Where puts are round trips, a day's rollups are put while the next day is
                // summed: a thread has one day's puts in flight at most, and waits for them
                // before handing over the next day's.
                let mut putting: Option<(NaiveDate, usize, ScopedJoinHandle<'_, Result<bool>>)> =
                    None;
                let finish = |(dt, n, put): (NaiveDate, usize, ScopedJoinHandle<'_, _>)| {
                    let r = match put.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) {
                        Ok(true) => Ok(n),
                        // Another writer replaced a rollup first: the day again, from its
                        // versions, its puts awaited.
                        Ok(false) => rebuild_hourly_within(lake, dt, u64::MAX, Some(&gate), None)
                            .map(Option::unwrap_or_default),
                        Err(e) => Err(e),
                    };
                    record(dt, r);
                };
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&dt) = days.get(i) else { break };
                    let r =
                        rebuild_day(lake, dt, u64::MAX, Some(&gate), listed.as_ref(), round_trips);
                    if let Some(before) = putting.take() {
                        finish(before);
                    }
                    match r {
                        Ok(Some((n, held))) if !held.is_empty() => {
                            putting = Some((dt, n, s.spawn(move || put_held(lake, held))));
                        }
                        r => record(dt, r.map(|d| d.map_or(0, |(n, _)| n))),
                    }
                }
                if let Some(last) = putting.take() {
                    finish(last);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|(d, _)| *d);
    let mut report = RollupReport::default();
    for (dt, r) in results {
        match r {
            Ok(_) => report.rebuilt.push(dt),
            Err(e) => report.failed.push((dt, e)),
        }
    }
    report
}
