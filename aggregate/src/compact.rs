//! Compaction: a partition's small files (one per commit of a followed stream) merged into
//! Athena-sized files, without changing any row.
//!
//! A partition is compacted in three durable steps, so that a crash at any point is rolled
//! forward by the next writer ([`recover`], called by `Lake::open`):
//! 1. the merged rows are written, complete, to `_state/compact/<table>/dt=<day>/`;
//! 2. a journal `_state/compact/<table>.dt=<day>.json` names the files to add and to remove;
//! 3. the new files are moved into the partition, the old ones removed, then the journal.
//!
//! Without a journal, staged files are the leftovers of step 1 and are deleted. Readers that
//! list the partition during step 3 can see both generations for an instant: compact outside
//! query windows.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_at};
use crate::fsio::{remove_if_exists, sync_dir, write_atomic};
use crate::lake::{Lake, list_names};
use crate::layout::{Layout, parse_partition};
use crate::parquet_io::{properties, write_file};
use crate::record::LakeRecord;

/// What one partition's compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactStats {
    /// Partitions rewritten.
    pub partitions: u64,
    /// Files before, in the rewritten partitions.
    pub files_before: u64,
    /// Files after.
    pub files_after: u64,
    /// Rows rewritten.
    pub rows: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    table: String,
    dt: NaiveDate,
    /// File names moved from the staging directory into the partition.
    add: Vec<String>,
    /// File names removed from the partition.
    remove: Vec<String>,
}

fn staging(layout: &Layout, table: &str, dt: NaiveDate) -> PathBuf {
    layout.state_dir().join("compact").join(table).join(format!("dt={}", dt.format("%Y-%m-%d")))
}

fn journal_path(layout: &Layout, table: &str, dt: NaiveDate) -> PathBuf {
    layout.state_dir().join("compact").join(format!("{table}.dt={}.json", dt.format("%Y-%m-%d")))
}

/// Compacts every partition of `R`'s table in `days` (all when empty) that has more than one
/// file, into files of at most `max_rows` rows.
///
/// # Errors
///
/// The lake cannot be read or written; a partition left half-way is finished by the next
/// writer.
pub fn compact<R: LakeRecord>(
    lake: &Lake,
    days: &BTreeSet<NaiveDate>,
    max_rows: usize,
) -> Result<CompactStats> {
    let mut stats = CompactStats::default();
    for dt in lake.reader().partitions(R::TABLE)? {
        if !days.is_empty() && !days.contains(&dt) {
            continue;
        }
        let Some((journal, before, rows)) = stage::<R>(lake, dt, max_rows)? else { continue };
        apply(lake.layout(), &journal)?;
        stats.partitions += 1;
        stats.files_before += before;
        stats.files_after += journal.add.len() as u64;
        stats.rows += rows;
        tracing::info!(table = R::TABLE, %dt, before, after = journal.add.len(), rows, "Partition compacted.");
    }
    Ok(stats)
}

/// Steps 1 and 2 for one partition with more than one file: the merged files staged, then the
/// journal. Returns the journal, the number of files before and the rows.
fn stage<R: LakeRecord>(
    lake: &Lake,
    dt: NaiveDate,
    max_rows: usize,
) -> Result<Option<(Journal, u64, u64)>> {
    let files = lake.reader().files(R::TABLE, dt)?;
    if files.len() < 2 {
        return Ok(None);
    }
    // One partition in memory: partitions are days, and a day's rows fit.
    let mut rows: Vec<R> = Vec::new();
    lake.reader().for_each_batch::<R>(dt, |batch| {
        rows.extend(batch);
        Ok(())
    })?;
    rows.sort_by(R::sort_cmp);
    let layout = lake.layout();
    let stage = staging(layout, R::TABLE, dt);
    std::fs::create_dir_all(&stage).map_err(io_at(&stage))?;
    let props = properties(R::SORTED_BY, R::UNIQUE);
    let mut add = Vec::new();
    for chunk in rows.chunks(max_rows.max(1)) {
        let mut digest = blake3::Hasher::new();
        for r in chunk {
            digest.update(&r.identity());
            digest.update(b"\n");
        }
        let hex: String =
            digest.finalize().as_bytes()[..16].iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("part-{hex}.parquet");
        let path = stage.join(&name);
        let batch =
            R::batch(chunk.iter()).map_err(|source| Error::Arrow { path: path.clone(), source })?;
        write_file(&path, R::schema(), props.clone(), &[batch])?;
        add.push(name);
    }
    let remove: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !add.contains(n))
        .collect();
    let journal = Journal { table: R::TABLE.to_owned(), dt, add, remove };
    let body = serde_json::to_vec_pretty(&journal).map_err(|e| io_at(&stage)(e.into()))?;
    write_atomic(&journal_path(layout, R::TABLE, dt), &body)?;
    Ok(Some((journal, files.len() as u64, rows.len() as u64)))
}

/// Step 3: moves the staged files in, removes the old ones, then the journal. Idempotent.
fn apply(layout: &Layout, j: &Journal) -> Result<()> {
    let table = crate::layout::known_table(&j.table).ok_or_else(|| Error::Corrupt {
        path: journal_path(layout, &j.table, j.dt),
        detail: format!("unknown table {:?}", j.table),
    })?;
    let stage = staging(layout, table, j.dt);
    let dir = layout.partition(table, j.dt);
    let safe = |n: &String| n.starts_with("part-") && n.ends_with(".parquet") && !n.contains('/');
    for name in j.add.iter().filter(|n| safe(n)) {
        let from = stage.join(name);
        if from.exists() {
            std::fs::rename(&from, dir.join(name)).map_err(io_at(&from))?;
        }
    }
    sync_dir(&dir)?;
    for name in j.remove.iter().filter(|n| safe(n)) {
        remove_if_exists(&dir.join(name))?;
    }
    sync_dir(&dir)?;
    remove_if_exists(&journal_path(layout, table, j.dt))?;
    let _ = std::fs::remove_dir_all(&stage);
    Ok(())
}

/// Finishes the compactions a crash interrupted (journal present) and deletes the staged files
/// of those it interrupted before their journal. Returns how many were finished.
///
/// # Errors
///
/// A journal cannot be read or applied.
pub(crate) fn recover(layout: &Layout) -> Result<usize> {
    let root = layout.state_dir().join("compact");
    let mut finished = 0;
    for name in list_names(&root)? {
        let path = root.join(&name);
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io_at(&path))?;
        let j: Journal = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: path.clone(),
            detail: format!("not a compaction journal: {e}"),
        })?;
        apply(layout, &j)?;
        finished += 1;
    }
    // Staged without a journal: the old files are still in place, these go.
    for table in list_names(&root)? {
        let dir = root.join(&table);
        if dir.is_dir() {
            for part in list_names(&dir)? {
                if parse_partition(&part).is_some() {
                    let p = dir.join(part);
                    std::fs::remove_dir_all(&p).map_err(io_at(&p))?;
                }
            }
        }
    }
    if finished > 0 {
        tracing::info!(partitions = finished, "Finished interrupted compactions.");
    }
    Ok(finished)
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
        let lake = Lake::open(dir).unwrap();
        let mut w: EventWriter<'_> = EventWriter::new(&lake, WriterOptions::default());
        for c in 0..commits {
            for i in 0..10 {
                w.push(ev(c * 10 + i)).unwrap();
            }
            w.commit().unwrap();
        }
        w.finish().unwrap();
        lake
    }

    #[test]
    fn small_files_merge_into_sorted_files_with_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let lake = small_files(dir.path(), 7);
        let dt = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        let before = sorted(lake.reader().events(dt).unwrap());
        assert_eq!(lake.reader().files("usage_events", dt).unwrap().len(), 7);
        let stats = compact::<UsageEvent>(&lake, &BTreeSet::new(), 30).unwrap();
        assert_eq!(
            stats,
            CompactStats { partitions: 1, files_before: 7, files_after: 3, rows: 70 }
        );
        let files = lake.reader().files("usage_events", dt).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(sorted(lake.reader().events(dt).unwrap()), before);
        assert!(!staging(lake.layout(), "usage_events", dt).exists());
        // A larger target merges the three.
        let stats = compact::<UsageEvent>(&lake, &BTreeSet::new(), 1000).unwrap();
        assert_eq!((stats.files_before, stats.files_after), (3, 1));
        assert_eq!(sorted(lake.reader().events(dt).unwrap()), before);
        // New events after compaction still deduplicate against the compacted file.
        let mut w: EventWriter<'_> = EventWriter::new(&lake, WriterOptions::default());
        w.push(ev(3)).unwrap();
        assert_eq!(w.finish().unwrap().duplicates, 1);
    }

    #[test]
    fn a_compaction_interrupted_after_its_journal_is_finished_by_the_next_writer() {
        let dir = tempfile::tempdir().unwrap();
        let dt = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        let before = {
            let lake = small_files(dir.path(), 4);
            let before = sorted(lake.reader().events(dt).unwrap());
            // Steps 1 and 2, then the crash.
            stage::<UsageEvent>(&lake, dt, 15).unwrap().unwrap();
            assert_eq!(lake.reader().files("usage_events", dt).unwrap().len(), 4);
            before
        };
        let lake = Lake::open(dir.path()).unwrap();
        assert_eq!(lake.reader().files("usage_events", dt).unwrap().len(), 3, "rolled forward");
        assert_eq!(sorted(lake.reader().events(dt).unwrap()), before);
        assert!(
            list_names(&dir.path().join("_state/compact"))
                .unwrap()
                .iter()
                .all(|n| !n.ends_with(".json"))
        );
    }

    #[test]
    fn files_staged_before_the_journal_are_dropped_and_the_old_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dt = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        let before = {
            let lake = small_files(dir.path(), 4);
            let before = sorted(lake.reader().events(dt).unwrap());
            stage::<UsageEvent>(&lake, dt, 15).unwrap().unwrap();
            // The crash came between the staged files and the journal.
            std::fs::remove_file(journal_path(lake.layout(), "usage_events", dt)).unwrap();
            before
        };
        let lake = Lake::open(dir.path()).unwrap();
        assert_eq!(lake.reader().files("usage_events", dt).unwrap().len(), 4);
        assert_eq!(sorted(lake.reader().events(dt).unwrap()), before);
        assert!(!staging(lake.layout(), "usage_events", dt).exists());
    }
}
