//! Compaction: a partition's small files (one per commit of a followed stream, one per Lambda
//! batch) merged into Athena-sized files, each record once.
//!
//! No lock and no journal: a compaction reads the partition's files, writes the merged files
//! (created only if absent, named by a digest of their ids like any data file), and only then
//! removes the files it read. Whatever happens in between (a crash, another compaction, a
//! writer adding a file), no row is ever missing: a file is removed only once a merged file
//! holding all its rows is stored. At worst a record is in two files for a while, which every
//! reader of the lake counts once and the next compaction merges. A file added after the
//! listing is left alone.
//!
//! A record stored twice (by two writers at once) keeps the copy of the first file by name,
//! the same copy the rollups count.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::layout;
use crate::parquet_io::encode;
use crate::record::LakeRecord;
use crate::store::{Condition, Fetch, concurrently};

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactStats {
    /// Partitions rewritten.
    pub partitions: u64,
    /// Files before, in the rewritten partitions.
    pub files_before: u64,
    /// Files after.
    pub files_after: u64,
    /// Rows kept.
    pub rows: u64,
    /// Extra copies of records removed (stored by two writers at once).
    pub duplicates: u64,
    /// The days rewritten (their rollups are stale until rebuilt).
    #[serde(skip)]
    pub days: BTreeSet<NaiveDate>,
}

/// Compacts every partition of `R`'s table in `days` (all when empty) that has more than one
/// file, into files of at most `max_rows` rows (on S3 a day a core at once).
///
/// # Errors
///
/// The lake cannot be read or written; a partition left half-way holds every row, and the
/// next compaction finishes it.
pub fn compact<R: LakeRecord>(
    lake: &Lake,
    days: &BTreeSet<NaiveDate>,
    max_rows: usize,
) -> Result<CompactStats> {
    // Where each request is a round trip (S3), a day a core at once: a day mostly waits on
    // its listing, reads, put and deletes. A local lake, a day at a time. Either way each day
    // in flight holds its rows in memory.
    let at_once = if lake.store().round_trips() {
        std::thread::available_parallelism().map_or(2, usize::from)
    } else {
        1
    };
    compact_days::<R>(lake, days, max_rows, at_once)
}

/// [`compact`], `at_once` days at a time.
fn compact_days<R: LakeRecord>(
    lake: &Lake,
    days: &BTreeSet<NaiveDate>,
    max_rows: usize,
    at_once: usize,
) -> Result<CompactStats> {
    let todo: Vec<NaiveDate> = lake
        .partitions(R::TABLE)?
        .into_iter()
        .filter(|dt| days.is_empty() || days.contains(dt))
        .collect();
    let done = concurrently(todo, at_once, |dt| {
        match compact_partition::<R>(lake, dt, max_rows) {
            Ok(Some((before, after, rows, duplicates))) => {
                tracing::info!(table = R::TABLE, %dt, before, after, rows, duplicates, "Partition compacted.");
                Ok(Some((dt, (before, after, rows, duplicates))))
            }
            Ok(None) => Ok(None),
            // Another compaction took some of the files first: its result stands.
            Err(Error::Vanished { uri }) => {
                tracing::info!(table = R::TABLE, %dt, %uri, "Partition compacted by another process meanwhile; skipped.");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    })?;
    let mut stats = CompactStats::default();
    for (dt, (before, after, rows, duplicates)) in done.into_iter().flatten() {
        stats.partitions += 1;
        stats.files_before += before;
        stats.files_after += after;
        stats.rows += rows;
        stats.duplicates += duplicates;
        stats.days.insert(dt);
    }
    Ok(stats)
}

/// Merges one partition with more than one file. Returns the files before and after, the
/// rows kept and the extra copies dropped.
fn compact_partition<R: LakeRecord>(
    lake: &Lake,
    dt: NaiveDate,
    max_rows: usize,
) -> Result<Option<(u64, u64, u64, u64)>> {
    let files = lake.files(R::TABLE, dt)?;
    if files.len() < 2 {
        return Ok(None);
    }
    // One partition in memory: partitions are days, and a day's rows fit.
    let mut rows: Vec<R> = Vec::new();
    let mut seen = crate::writer::DigestSet::default();
    let mut duplicates = 0u64;
    let read = |file| lake.read(file, None, &[], Fetch::Whole);
    lake.read_ahead(&files, read, |file, batches| {
        for batch in batches? {
            let batch = batch?;
            let records = R::from_batch(&batch)
                .map_err(|source| Error::Arrow { path: file.key.clone().into(), source })?;
            for r in records {
                if seen.insert(r.identity().key()) {
                    rows.push(r);
                } else {
                    duplicates += 1;
                }
            }
        }
        Ok(())
    })?;
    drop(seen);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    crate::writer::sort_rows(&rows, &mut order);
    let mut written = BTreeSet::new();
    for chunk in order.chunks(max_rows.max(1)) {
        let chunk: Vec<&R> = chunk.iter().map(|&i| &rows[i]).collect();
        let props = crate::record::file_properties(chunk.first().copied());
        let hex = layout::data_file_hex(chunk.iter().map(|r| r.identity()));
        let key = layout::data_file(R::TABLE, dt, &hex);
        let batch = R::batch(chunk.iter().copied())
            .map_err(|source| Error::Arrow { path: key.clone().into(), source })?;
        let bytes = encode(&key, R::schema(), props, &[batch])?;
        // A name already taken holds exactly these ids (an earlier run of this compaction).
        lake.store().put(&key, bytes, Condition::Absent)?;
        written.insert(key);
    }
    // Only now that every row is in a merged file: the files read go, side by side where
    // each delete is a round trip (S3).
    let gone: Vec<&str> =
        files.iter().filter(|f| !written.contains(&f.key)).map(|f| f.key.as_str()).collect();
    concurrently(gone, lake.requests_at_once(), |key| lake.store().delete(key))?;
    Ok(Some((files.len() as u64, written.len() as u64, rows.len() as u64, duplicates)))
}

#[cfg(test)]
mod tests {
    use agentmeter_schemas::UsageEvent;

    use super::*;
    use crate::writer::{EventWriter, WriterOptions};

    fn ev(i: usize) -> UsageEvent {
        crate::writer::tests::ev(
            &format!("e-{i}"),
            ["clinic-a", "clinic-b"][i % 2],
            1_790_841_600_000 + i as i64,
            10 + i as i64,
        )
    }

    fn sorted(mut v: Vec<UsageEvent>) -> Vec<UsageEvent> {
        v.sort_by(|a, b| a.event_id.as_str().cmp(b.event_id.as_str()));
        v
    }

    /// A lake whose one partition holds `commits` files of 10 events each.
    fn small_files(dir: &std::path::Path, commits: usize) -> Lake {
        let lake = Lake::open_dir(dir).unwrap();
        let mut w: EventWriter = EventWriter::new(&lake, WriterOptions::default());
        for c in 0..commits {
            for i in 0..10 {
                w.push(ev(c * 10 + i)).unwrap();
            }
            w.commit().unwrap();
        }
        w.finish().unwrap();
        lake
    }

    fn dt() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
    }

    #[test]
    fn small_files_merge_into_sorted_files_with_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let lake = small_files(dir.path(), 7);
        let before = sorted(lake.events(dt()).unwrap());
        assert_eq!(lake.files("usage_events", dt()).unwrap().len(), 7);
        let stats = compact::<UsageEvent>(&lake, &BTreeSet::new(), 30).unwrap();
        assert_eq!(
            (stats.partitions, stats.files_before, stats.files_after, stats.rows, stats.duplicates),
            (1, 7, 3, 70, 0)
        );
        assert_eq!(lake.files("usage_events", dt()).unwrap().len(), 3);
        assert_eq!(sorted(lake.events(dt()).unwrap()), before);
        // A larger target merges the three.
        let stats = compact::<UsageEvent>(&lake, &BTreeSet::new(), 1000).unwrap();
        assert_eq!((stats.files_before, stats.files_after), (3, 1));
        assert_eq!(sorted(lake.events(dt()).unwrap()), before);
        // New events after compaction still deduplicate against the compacted file.
        let mut w: EventWriter = EventWriter::new(&lake, WriterOptions::default());
        w.push(ev(3)).unwrap();
        assert_eq!(w.finish().unwrap().duplicates, 1);
    }

    /// Where requests are round trips, the files merged away are deleted side by side, and
    /// read ahead of the one being merged.
    #[test]
    fn where_requests_are_round_trips_the_merged_files_are_read_and_deleted_side_by_side() {
        use crate::store::tests::{Hooked, Op, Together};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let before = sorted(small_files(dir.path(), 7).events(dt()).unwrap());
        let (reads, deletes) = (Arc::new(Together::new(5)), Arc::new(Together::new(7)));
        let (r, d) = (reads.clone(), deletes.clone());
        let store = Hooked::new(crate::store::LocalStore::new(dir.path()), move |op| {
            match op {
                Op::Read(k) if k.starts_with("usage_events/") => r.arrive(),
                Op::Delete(k) if k.starts_with("usage_events/") => d.arrive(),
                _ => {}
            }
            Ok(())
        });
        let lake = Lake::open(Arc::new(store)).unwrap();
        let stats = compact::<UsageEvent>(&lake, &BTreeSet::new(), 1000).unwrap();
        assert_eq!((stats.files_before, stats.files_after, stats.rows), (7, 1, 70));
        assert_eq!((reads.timed_out(), deletes.timed_out()), (0, 0));
        assert_eq!(sorted(lake.events(dt()).unwrap()), before);
    }

    /// Days compacted side by side: both days' listings in flight together.
    #[test]
    fn days_are_compacted_side_by_side() {
        use crate::store::tests::Op;
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open_dir(dir.path()).unwrap();
        let mut w: EventWriter = EventWriter::new(&lake, WriterOptions::default());
        for c in 0..3 {
            for d in 0..2 {
                w.push(crate::writer::tests::ev(
                    &format!("e{c}{d}"),
                    "t1",
                    1_790_841_600_000 + d * 86_400_000,
                    1,
                ))
                .unwrap();
            }
            w.commit().unwrap();
        }
        w.finish().unwrap();
        let (lake, lists) = crate::store::tests::lake_where_meet(
            dir.path(),
            2,
            |op| matches!(op, Op::List(p) if p.starts_with("usage_events/dt=")),
        );
        let stats = compact_days::<UsageEvent>(&lake, &BTreeSet::new(), 1000, 2).unwrap();
        assert_eq!(
            (stats.partitions, stats.files_before, stats.files_after, stats.rows),
            (2, 6, 2, 6)
        );
        assert_eq!(lists.timed_out(), 0);
        assert_eq!(stats.days.len(), 2);
    }

    #[test]
    fn copies_stored_by_two_writers_are_counted_once_and_merged_into_one() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open_dir(dir.path()).unwrap();
        let mut a: EventWriter = EventWriter::new(&lake, WriterOptions::default());
        for i in 0..4 {
            a.push(ev(i)).unwrap();
        }
        a.finish().unwrap();
        // Another writer that listed the partition before a's file appeared stored e-1 too.
        let other = tempfile::tempdir().unwrap();
        let b_lake = Lake::open_dir(other.path()).unwrap();
        let mut b: EventWriter = EventWriter::new(&b_lake, WriterOptions::default());
        b.push(ev(1)).unwrap();
        b.push(ev(5)).unwrap();
        b.finish().unwrap();
        for f in b_lake.files("usage_events", dt()).unwrap() {
            let bytes = b_lake.store().get(&f.key).unwrap().unwrap().bytes;
            lake.store().put(&f.key, bytes, Condition::Absent).unwrap();
        }
        assert_eq!(lake.files("usage_events", dt()).unwrap().len(), 2);
        assert_eq!(lake.events(dt()).unwrap().len(), 5, "each id once");
        lake.ensure_rollups(dt(), dt().succ_opt().unwrap()).unwrap();
        let calls: i64 = lake.hourly(dt()).unwrap().iter().map(|(_, m)| m.invocations).sum();
        assert_eq!(calls, 5, "the rollup counts each id once");
        let stats = compact::<UsageEvent>(&lake, &BTreeSet::new(), 1000).unwrap();
        assert_eq!((stats.rows, stats.duplicates, stats.files_after), (5, 1, 1));
        assert_eq!(lake.events(dt()).unwrap().len(), 5);
    }

    #[test]
    fn a_compaction_stopped_after_its_merged_files_loses_nothing_and_the_next_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let lake = small_files(dir.path(), 4);
        let before = sorted(lake.events(dt()).unwrap());
        let inputs = lake.files("usage_events", dt()).unwrap();
        compact::<UsageEvent>(&lake, &BTreeSet::new(), 1000).unwrap();
        // As if it had stopped before removing its inputs: put them back.
        let merged = lake.files("usage_events", dt()).unwrap();
        assert_eq!(merged.len(), 1);
        let dir2 = tempfile::tempdir().unwrap();
        let again = small_files(dir2.path(), 4);
        for f in &inputs {
            let bytes = again.store().get(&f.key).unwrap().unwrap().bytes;
            lake.store().put(&f.key, bytes, Condition::Absent).unwrap();
        }
        assert_eq!(lake.files("usage_events", dt()).unwrap().len(), 5);
        // Every reader counts each event once meanwhile.
        assert_eq!(sorted(lake.events(dt()).unwrap()), before);
        lake.ensure_rollups(dt(), dt().succ_opt().unwrap()).unwrap();
        assert_eq!(lake.hourly(dt()).unwrap().iter().map(|(_, m)| m.invocations).sum::<i64>(), 40);
        let stats = compact::<UsageEvent>(&lake, &BTreeSet::new(), 1000).unwrap();
        assert_eq!((stats.files_before, stats.files_after, stats.duplicates), (5, 1, 40));
        assert_eq!(sorted(lake.events(dt()).unwrap()), before);
    }
}
