//! Which rollup files exist over a range of days, from one listing of each rollup table.
//!
//! A rebuild reads each rollup's footer to learn its version and what it covers; where each
//! read is a round trip (S3), a day whose rollups were never written pays three of them to
//! learn that there is nothing (a `GetObject` answered 404 each). Before rebuilding many days,
//! each rollup table is listed once over their range (a request per 1,000 days): a day whose
//! rollup the listing did not find has no footer to read.
//!
//! Taken before any day's rebuild lists its data files, the listing is as early as the footers
//! read in its place, so the order that makes rebuilds race safely (versions, then the data
//! files: the module documentation above) holds. A rollup that another writer creates after the
//! listing makes the rebuild's first put conflict (it puts only where no rollup is), and the
//! rebuild starts again from the footers, as after any race it loses.
//!
//! A day none of whose rollups the listing found is put only where no rollup is, so when its
//! data files are listed does not matter to the race: they are listed here too, and each day's
//! rebuild starts from its sums rather than from a round trip. Each data table is listed over
//! the range beside the rollup tables, a page each: where the page holds the whole range (a
//! first ingest's month of Lambda-sized files: 116), those days need no listing of their own;
//! else they are listed a day at a time, many days side by side.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;

use agentmeter_schemas::tables::{AGENT_SPANS, USAGE_EVENTS};

use super::{Coverage, ROLLUP_TABLES};
use crate::error::Result;
use crate::lake::{Lake, is_data_file};
use crate::layout;
use crate::store::{ObjectMeta, REQUESTS_AT_ONCE, concurrently};

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
    /// Each rollup table listed from the first of `days` to the last, and the data files of
    /// the days with none of their rollups; `None` for no days.
    ///
    /// # Errors
    ///
    /// A listing fails.
    pub(crate) fn of(lake: &Lake, days: &[NaiveDate]) -> Result<Option<Self>> {
        Self::within(lake, days, PAGE_KEYS, LISTED_FILES)
    }

    /// [`ListedRollups::of`] with pages of `page_keys` keys, listing the data files of days
    /// with no rollup a day at a time (where a page does not hold the range) until more than
    /// `max_files` are listed.
    fn within(
        lake: &Lake,
        days: &[NaiveDate],
        page_keys: usize,
        max_files: usize,
    ) -> Result<Option<Self>> {
        let (Some(&from), Some(&to)) = (days.iter().min(), days.iter().max()) else {
            return Ok(None);
        };
        // The rollup tables whole over the range, the data tables a page each; side by side.
        let tables = [ROLLUP_TABLES.as_slice(), &[USAGE_EVENTS, AGENT_SPANS]].concat();
        let at_once = tables.len();
        let lists = concurrently(tables, at_once, |table| {
            let pages = if ROLLUP_TABLES.contains(&table) { usize::MAX } else { 1 };
            range(lake, table, (from, to), page_keys, pages)
        })?;
        let mut lists = lists.into_iter();
        let mut listed = Self { from, to, keys: HashSet::new(), coverage: HashMap::new() };
        for (objects, _) in lists.by_ref().take(ROLLUP_TABLES.len()) {
            listed.keys.extend(objects.into_iter().map(|o| o.key));
        }
        let bare: Vec<NaiveDate> = days
            .iter()
            .copied()
            .filter(|&dt| ROLLUP_TABLES.iter().all(|t| listed.has(t, dt) == Some(false)))
            .collect();
        let (Some((events, true)), Some((spans, true))) = (lists.next(), lists.next()) else {
            listed.list_each(lake, &bare, max_files)?;
            return Ok(Some(listed));
        };
        let (mut events, mut spans) = (by_day(USAGE_EVENTS, events), by_day(AGENT_SPANS, spans));
        for dt in bare {
            let events = events.remove(&dt).unwrap_or_default();
            let spans = spans.remove(&dt).unwrap_or_default();
            listed.coverage.insert(dt, Coverage { events, spans });
        }
        Ok(Some(listed))
    }

    /// Lists the data files of `days`, many side by side, until more than `max_files`.
    fn list_each(&mut self, lake: &Lake, days: &[NaiveDate], max_files: usize) -> Result<()> {
        // Two listings a day: as many requests side by side as elsewhere.
        let mut files = 0;
        for chunk in days.chunks(REQUESTS_AT_ONCE / 2) {
            if files > max_files {
                break;
            }
            let coverage = concurrently(chunk.to_vec(), chunk.len(), |dt| Coverage::of(lake, dt))?;
            files += coverage.iter().map(|c| c.events.len() + c.spans.len()).sum::<usize>();
            self.coverage.extend(chunk.iter().copied().zip(coverage));
        }
        Ok(())
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

/// The objects of `table` from day `from` to day `to`, in key order, reading at most `pages`
/// pages of `page_keys`; and whether they are all of them.
fn range(
    lake: &Lake,
    table: &str,
    (from, to): (NaiveDate, NaiveDate),
    page_keys: usize,
    pages: usize,
) -> Result<(Vec<ObjectMeta>, bool)> {
    let prefix = format!("{table}/");
    // Past every key of the last day's partition, before the next day's.
    let last = format!("{}\u{10ffff}", layout::partition(table, to));
    // Every key of the first day's partition sorts after the partition itself.
    let mut after = layout::partition(table, from);
    let mut objects = Vec::new();
    for _ in 0..pages {
        let (page, more) = lake.store().list_after(&prefix, &after, page_keys)?;
        let Some(end) = page.last().map(|o| o.key.clone()) else { return Ok((objects, true)) };
        objects.extend(page.into_iter().filter(|o| o.key <= last));
        if !more || end > last {
            return Ok((objects, true));
        }
        after = end;
    }
    Ok((objects, false))
}

/// A data table's listed objects by day: its data files directly under each `dt=` partition.
fn by_day(table: &str, objects: Vec<ObjectMeta>) -> HashMap<NaiveDate, Vec<ObjectMeta>> {
    let mut days: HashMap<NaiveDate, Vec<ObjectMeta>> = HashMap::new();
    for o in objects.into_iter().filter(is_data_file) {
        let in_table = o.key.strip_prefix(table).and_then(|k| k.strip_prefix('/'));
        let Some((partition, name)) = in_table.and_then(|k| k.split_once('/')) else { continue };
        if name.contains('/') {
            continue;
        }
        if let Some(dt) = layout::parse_partition(partition) {
            days.entry(dt).or_default().push(o);
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::tests::{DAY0, day, ev};
    use agentmeter_schemas::tables::USAGE_HOURLY;

    /// Ten days of one event file each, the third's rollups written; the ten days.
    fn ten_days(root: &std::path::Path) -> Vec<NaiveDate> {
        let lake = Lake::open_dir(root).unwrap();
        let mut w = crate::writer::EventWriter::new(&lake, Default::default());
        for d in 0..10 {
            w.push(ev(&format!("e{d}"), "t1", DAY0 + d * 86_400_000, 1)).unwrap();
        }
        w.finish_without_rollups().unwrap();
        super::super::rebuild_hourly(&lake, day(3)).unwrap();
        (1..=10).map(day).collect()
    }

    #[test]
    fn a_page_that_holds_the_range_gives_the_files_of_every_day_without_rollups() {
        let dir = tempfile::tempdir().unwrap();
        let days = ten_days(dir.path());
        let lake = Lake::open_dir(dir.path()).unwrap();
        let listed = ListedRollups::within(&lake, &days[1..], PAGE_KEYS, 0).unwrap().unwrap();
        for &dt in &days[1..] {
            let bare = dt != day(3);
            assert_eq!(listed.has(USAGE_HOURLY, dt), Some(!bare), "{dt}");
            let files = listed.coverage(dt).map(|c| (c.events, c.spans.len()));
            assert_eq!(files, bare.then(|| (lake.files(USAGE_EVENTS, dt).unwrap(), 0)), "{dt}");
        }
        assert_eq!(listed.has(USAGE_HOURLY, day(1)), None, "before the days listed");
        assert_eq!(listed.has(USAGE_HOURLY, day(11)), None, "after them");
        assert_eq!(listed.coverage(day(1)), None);
    }

    #[test]
    fn past_a_page_days_without_rollups_are_listed_side_by_side_within_the_bound() {
        use crate::store::tests::{Op, lake_where_meet};
        let dir = tempfile::tempdir().unwrap();
        let days = ten_days(dir.path());
        // Pages of four keys: the data tables' first page does not hold the ten days.
        let events = |op: Op<'_>| matches!(op, Op::List(p) if p.starts_with("usage_events/"));
        let (lake, listings) = lake_where_meet(dir.path(), 8, events);
        let listed = ListedRollups::within(&lake, &days, 4, usize::MAX).unwrap().unwrap();
        assert_eq!(listings.timed_out(), 0, "eight days listed side by side");
        let ahead: Vec<u32> = (1..=10).filter(|&d| listed.coverage(day(d)).is_some()).collect();
        assert_eq!(ahead, [1, 2, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(
            listed.coverage(day(5)).unwrap().events,
            lake.files(USAGE_EVENTS, day(5)).unwrap()
        );
        // Past the bound, the next days' files are left to their own rebuilds.
        let listed = ListedRollups::within(&lake, &days, 4, 0).unwrap().unwrap();
        let ahead: Vec<u32> = (1..=10).filter(|&d| listed.coverage(day(d)).is_some()).collect();
        assert_eq!(ahead, [1, 2, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn a_range_lists_only_its_days_data_files() {
        let meta = |key: &str| ObjectMeta { key: key.to_owned(), size: 1, etag: "e".into() };
        let days = by_day(
            USAGE_EVENTS,
            vec![
                meta("usage_events/dt=2026-10-01/part-a.parquet"),
                meta("usage_events/dt=2026-10-01/.part-b.parquet"),
                meta("usage_events/dt=2026-10-01/_tmp.parquet"),
                meta("usage_events/dt=2026-10-01/deeper/part-c.parquet"),
                meta("usage_events/dt=2026-10-02/part-d.json"),
                meta("usage_events/other=1/part-e.parquet"),
                meta("usage_events/dt=2026-10-02/part-f.parquet"),
            ],
        );
        let names = |d| days[&day(d)].iter().map(|o| o.name().to_owned()).collect::<Vec<_>>();
        assert_eq!(
            (names(1), names(2), days.len()),
            (vec!["part-a.parquet".to_owned()], vec!["part-f.parquet".to_owned()], 2)
        );
    }
}
