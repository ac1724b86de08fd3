//! Which rollup files exist over a range of days, from one listing of each rollup table.
//!
//! A rebuild reads each rollup's footer to learn its version and what it covers; where each
//! read is a round trip (S3), a day whose rollups were never written pays three of them to
//! learn that there is nothing (a `GetObject` answered 404 each). Before rebuilding many days,
//! each rollup table is listed once over their range (a request per 1,000 days): a day whose
//! rollup the listing did not find has no footer to read.
//!
//! Taken before any day's data files are listed, the listing is as early as the footers read
//! in its place, so the order that makes rebuilds race safely (versions, then the data files:
//! the module documentation above) holds. A rollup that another writer creates after the
//! listing makes the rebuild's first put conflict (it puts only where no rollup is), and the
//! rebuild starts again from the footers, as after any race it loses.
//!
//! A day none of whose rollups the listing found is put only where no rollup is, so when its
//! data files are listed does not matter to the race: they are listed here too, many days side
//! by side, and each day's rebuild starts from its sums rather than from a round trip.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;

use super::{Coverage, ROLLUP_TABLES};
use crate::error::Result;
use crate::lake::Lake;
use crate::layout;
use crate::store::{REQUESTS_AT_ONCE, concurrently};

/// Keys a page of a listing holds at most (S3's limit).
const PAGE_KEYS: usize = 1000;

/// Data files listed ahead at most, over all days (about 200 bytes each held): a backfill of
/// years of days with thousands of files each lists the rest in each day's own rebuild.
const LISTED_FILES: usize = 100_000;

/// The rollup files the listings found between two days, both included.
#[derive(Debug)]
pub(crate) struct ListedRollups {
    from: NaiveDate,
    to: NaiveDate,
    keys: HashSet<String>,
    /// The data files of each day with none of its rollups, listed after the rollups.
    coverage: HashMap<NaiveDate, Coverage>,
}

impl ListedRollups {
    /// Each rollup table listed from the first of `days` to the last, the three side by side;
    /// `None` for no days.
    ///
    /// # Errors
    ///
    /// A listing fails.
    pub(crate) fn of(lake: &Lake, days: &[NaiveDate]) -> Result<Option<Self>> {
        Self::within(lake, days, LISTED_FILES)
    }

    /// [`ListedRollups::of`], listing ahead the data files of days with no rollup until more
    /// than `max_files` are listed.
    fn within(lake: &Lake, days: &[NaiveDate], max_files: usize) -> Result<Option<Self>> {
        let (Some(&from), Some(&to)) = (days.iter().min(), days.iter().max()) else {
            return Ok(None);
        };
        let lists = concurrently(ROLLUP_TABLES.to_vec(), ROLLUP_TABLES.len(), |table| {
            let prefix = format!("{table}/");
            let last = layout::partition_file(table, to);
            // Every key of the first day's partition sorts after the partition itself.
            let mut after = layout::partition(table, from);
            let mut keys = Vec::new();
            loop {
                let (page, more) = lake.store().list_after(&prefix, &after, PAGE_KEYS)?;
                let Some(end) = page.last().map(|o| o.key.clone()) else { break };
                keys.extend(page.into_iter().map(|o| o.key).filter(|k| *k <= last));
                if !more || end > last {
                    break;
                }
                after = end;
            }
            Ok(keys)
        })?;
        let mut listed = Self {
            from,
            to,
            keys: lists.into_iter().flatten().collect(),
            coverage: HashMap::new(),
        };
        let bare: Vec<NaiveDate> = days
            .iter()
            .copied()
            .filter(|&dt| ROLLUP_TABLES.iter().all(|t| listed.has(t, dt) == Some(false)))
            .collect();
        // Two listings a day: as many requests side by side as elsewhere.
        let mut files = 0;
        for chunk in bare.chunks(REQUESTS_AT_ONCE / 2) {
            if files > max_files {
                break;
            }
            let coverage = concurrently(chunk.to_vec(), chunk.len(), |dt| Coverage::of(lake, dt))?;
            files += coverage.iter().map(|c| c.events.len() + c.spans.len()).sum::<usize>();
            listed.coverage.extend(chunk.iter().copied().zip(coverage));
        }
        Ok(Some(listed))
    }

    /// The data files of `dt` as listed after the rollups, if none of its rollups was found.
    pub(crate) fn coverage(&self, dt: NaiveDate) -> Option<Coverage> {
        self.coverage.get(&dt).cloned()
    }

    /// Whether the listing found `table`'s rollup of `dt`; `None` for a day outside it.
    pub(crate) fn has(&self, table: &str, dt: NaiveDate) -> Option<bool> {
        (self.from..=self.to)
            .contains(&dt)
            .then(|| self.keys.contains(&layout::partition_file(table, dt)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::tests::{DAY0, day, ev};
    use agentmeter_schemas::tables::USAGE_HOURLY;

    #[test]
    fn days_without_rollups_have_their_files_listed_ahead_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open_dir(dir.path()).unwrap();
        let mut w = crate::writer::EventWriter::new(&lake, Default::default());
        // Ten days of one file each; the third's rollups written.
        for d in 0..10 {
            w.push(ev(&format!("e{d}"), "t1", DAY0 + d * 86_400_000, 1)).unwrap();
        }
        w.finish_without_rollups().unwrap();
        super::super::rebuild_hourly(&lake, day(3)).unwrap();
        let days: Vec<NaiveDate> = (1..=10).map(day).collect();
        let listed = ListedRollups::within(&lake, &days, usize::MAX).unwrap().unwrap();
        for &dt in &days {
            let bare = dt != day(3);
            assert_eq!(listed.has(USAGE_HOURLY, dt), Some(!bare), "{dt}");
            assert_eq!(listed.coverage(dt).map(|c| c.events.len()), bare.then_some(1), "{dt}");
        }
        assert_eq!(listed.has(USAGE_HOURLY, day(11)), None, "outside the days listed");
        // Past the bound, the next days' files are left to their own rebuilds: eight days
        // side by side, then no more.
        let listed = ListedRollups::within(&lake, &days, 0).unwrap().unwrap();
        let ahead: Vec<u32> = (1..=10).filter(|&d| listed.coverage(day(d)).is_some()).collect();
        assert_eq!(ahead, [1, 2, 4, 5, 6, 7, 8, 9]);
    }
}
