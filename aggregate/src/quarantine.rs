//! The quarantine: one NDJSON file of [`QuarantineEntry`]s per source.
//!
//! A run replaces the quarantine file of every source it reads (and of every original source
//! of a replayed entry) with the entries of this run, or removes it when there are none: the
//! quarantine always shows what the latest reading of each source refused. Entries are
//! spooled to local temporary files while a run goes on, and put into the lake only by
//! [`QuarantineWriter::finish`], after the events have been committed, so replaying a
//! quarantine file never loses a record that it fixed. Two writers reading the same source
//! write the same file. A long-running source (the OTLP receiver) appends instead, replacing
//! its file only from the version it read, so concurrent receivers never lose each other's
//! entries.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read as _, Seek as _, Write as _};

use agentmeter_schemas::{INLINE_LINE_MAX, QuarantineEntry, SourceUri};
use bytes::Bytes;

use crate::error::{Error, Result, io_at};
use crate::lake::Lake;
use crate::layout;
use crate::store::{Condition, Put, REQUESTS_AT_ONCE, Store, concurrently};

/// Attempts to append to a file other receivers are appending to.
const APPEND_ATTEMPTS: usize = 20;

/// Keys asked for in one page of a listing of the quarantine (S3 returns at most 1,000).
const LIST_PAGE_KEYS: usize = 1000;

enum Slot {
    /// Seen, nothing refused yet.
    Empty,
    /// Entries spooled so far.
    Spooled(BufWriter<std::fs::File>),
}

/// Writes quarantine files for one run.
pub struct QuarantineWriter {
    lake: Lake,
    slots: BTreeMap<SourceUri, Slot>,
    entries: u64,
    append: bool,
}

/// What [`QuarantineWriter::finish`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuarantineReport {
    /// Entries written.
    pub entries: u64,
    /// Files written (replacing any earlier version).
    pub files_written: u64,
    /// Earlier files removed because their source now has no refused record.
    pub files_removed: u64,
}

impl QuarantineReport {
    /// Adds another report's counts.
    pub fn add(&mut self, other: QuarantineReport) {
        self.entries += other.entries;
        self.files_written += other.files_written;
        self.files_removed += other.files_removed;
    }
}

fn spool_error(e: std::io::Error) -> Error {
    io_at(std::env::temp_dir())(e)
}

impl QuarantineWriter {
    /// A writer into the quarantine of `lake`.
    pub fn new(lake: &Lake) -> Self {
        Self { lake: lake.clone(), slots: BTreeMap::new(), entries: 0, append: false }
    }

    /// A writer for a long-running source (the OTLP receiver): entries are added to the
    /// source's file instead of replacing it, and no file is ever removed.
    pub fn appending(lake: &Lake) -> Self {
        Self { lake: lake.clone(), slots: BTreeMap::new(), entries: 0, append: true }
    }

    /// Notes that `source` is read by this run.
    pub fn touch(&mut self, source: &SourceUri) {
        self.slots.entry(source.clone()).or_insert(Slot::Empty);
    }

    /// Adds an entry to its source's file.
    ///
    /// # Errors
    ///
    /// The spool file cannot be written, or a large entry's bytes cannot be kept.
    pub fn write(&mut self, entry: &QuarantineEntry) -> Result<()> {
        let key = layout::quarantine_file(&entry.source);
        let mut line = serde_json::to_vec(entry)
            .map_err(|e| Error::Corrupt { path: key.clone().into(), detail: e.to_string() })?;
        if line.len() > INLINE_LINE_MAX {
            // Kept once, by content: the entry line stays short enough to be read back as
            // itself by every replay, whatever the record's size.
            let mut apart = entry.clone();
            if let Some(bytes) = apart.take_inline() {
                let name = apart.raw_ref.clone().unwrap_or_default();
                // Absent or already there (the same bytes): either way they are kept.
                self.lake.store().put(
                    &layout::quarantine_raw(&name),
                    Bytes::from(bytes),
                    Condition::Absent,
                )?;
                line = serde_json::to_vec(&apart).map_err(|e| Error::Corrupt {
                    path: key.clone().into(),
                    detail: e.to_string(),
                })?;
            }
        }
        line.push(b'\n');
        let slot = self.slots.entry(entry.source.clone()).or_insert(Slot::Empty);
        if let Slot::Empty = slot {
            *slot = Slot::Spooled(BufWriter::new(tempfile::tempfile().map_err(spool_error)?));
        }
        let Slot::Spooled(w) = slot else { unreachable!("spooled above") };
        w.write_all(&line).map_err(spool_error)?;
        self.entries += 1;
        Ok(())
    }

    /// The source was read to its end. (Kept for the readers' protocol: spools hold no
    /// descriptor worth closing early.)
    ///
    /// # Errors
    ///
    /// Never.
    pub fn close(&mut self, _source: &SourceUri) -> Result<()> {
        Ok(())
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Puts every file in place (or removes it if its source had nothing refused). Call only
    /// after the run's events are committed.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    pub fn finish(self) -> Result<QuarantineReport> {
        let (lake, appending) = (&self.lake, self.append);
        let mut jobs = Vec::with_capacity(self.slots.len());
        let mut clean = Vec::new();
        for (source, slot) in self.slots {
            match slot {
                Slot::Spooled(w) => jobs.push(Job::Put(layout::quarantine_file(&source), w)),
                // A long-running source never removes a file: others append to it.
                Slot::Empty if appending => {}
                Slot::Empty => clean.push(layout::quarantine_file(&source)),
            }
        }
        clean.sort_unstable();
        clean.dedup();
        jobs.extend(
            existing(lake.store().as_ref(), clean, LIST_PAGE_KEYS)?.into_iter().map(Job::Remove),
        );
        // One file per source read, each independent of the others: put side by side (a run
        // over a month of files would otherwise wait one round trip per file).
        let done = concurrently(jobs, REQUESTS_AT_ONCE, |job| {
            let store = lake.store();
            match job {
                Job::Put(key, w) => {
                    let mut file = w.into_inner().map_err(|e| spool_error(e.into_error()))?;
                    file.rewind().map_err(spool_error)?;
                    let mut body = Vec::new();
                    file.read_to_end(&mut body).map_err(spool_error)?;
                    if appending {
                        append(lake, &key, &body)?;
                    } else {
                        store.put(&key, Bytes::from(body), Condition::Always)?;
                    }
                    Ok(Done::Written)
                }
                Job::Remove(key) => {
                    store.delete(&key)?;
                    Ok(Done::Removed)
                }
            }
        })?;
        let count = |d| done.iter().filter(|x| **x == d).count() as u64;
        Ok(QuarantineReport {
            entries: self.entries,
            files_written: count(Done::Written),
            files_removed: count(Done::Removed),
        })
    }
}

/// What [`QuarantineWriter::finish`] does for one source.
enum Job {
    /// Put the source's spooled entries under this key.
    Put(String, BufWriter<std::fs::File>),
    /// Remove the earlier file at this key: the source had nothing refused this time.
    Remove(String),
}

/// Which of `keys` (sorted, quarantine files) exist. On a store with round trips, a run over
/// many sources lists the quarantine from the first of them instead of asking for each: a
/// page of up to 1,000 keys per round trip against 16 `HEAD`s. The listing stops after half
/// as many pages as the `HEAD`s would take rounds (a quarantine full of other sources' files
/// between them), and the keys it did not reach get their `HEAD`s.
fn existing(store: &dyn Store, keys: Vec<String>, page_keys: usize) -> Result<Vec<String>> {
    let rounds = keys.len().div_ceil(REQUESTS_AT_ONCE);
    let mut found = Vec::new();
    let mut rest: &[String] = &keys;
    if store.round_trips() && rounds > 1 {
        // A proper prefix of the first key sorts just before it.
        let mut after = keys[0].clone();
        after.pop();
        let prefix = layout::quarantine();
        for _ in 0..rounds / 2 {
            let (page, more) = store.list_after(&prefix, &after, page_keys)?;
            let listed: std::collections::HashSet<&str> =
                page.iter().map(|o| o.key.as_str()).collect();
            // The keys this page answers for: all that are left when it is the last page,
            // else those up to its last key.
            let reached = match (more, page.last()) {
                (false, _) => rest.len(),
                (true, Some(last)) => rest.partition_point(|k| *k <= last.key),
                (true, None) => 0,
            };
            found.extend(rest[..reached].iter().filter(|k| listed.contains(k.as_str())).cloned());
            rest = &rest[reached..];
            match page.last() {
                Some(last) if more && !rest.is_empty() => after.clone_from(&last.key),
                _ => break,
            }
        }
    }
    let headed =
        concurrently(rest.to_vec(), REQUESTS_AT_ONCE, |key| Ok(store.head(&key)?.map(|_| key)))?;
    found.extend(headed.into_iter().flatten());
    Ok(found)
}

/// What [`QuarantineWriter::finish`] did with a source's file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Done {
    Written,
    Removed,
}

/// Appends `body` to the file `key`, replacing it only from the version read.
fn append(lake: &Lake, key: &str, body: &[u8]) -> Result<()> {
    for _ in 0..APPEND_ATTEMPTS {
        let current = lake.store().get(key)?;
        let mut all = current.as_ref().map(|o| o.bytes.to_vec()).unwrap_or_default();
        all.extend_from_slice(body);
        let cond = Condition::replacing(current.as_ref().map(|o| o.etag.as_str()));
        if let Put::Written { .. } = lake.store().put(key, Bytes::from(all), cond)? {
            return Ok(());
        }
    }
    Err(Error::Corrupt {
        path: lake.store().uri_of(key).into(),
        detail: format!("other writers kept replacing it through {APPEND_ATTEMPTS} attempts"),
    })
}

#[cfg(test)]
mod tests {
    use agentmeter_schemas::{Position, RawFormat, Reason};

    use super::*;

    fn entry(source: &SourceUri, line: u64) -> QuarantineEntry {
        QuarantineEntry::new(
            Reason::InvalidJson,
            "x",
            source.clone(),
            Position { line: Some(line), ..Default::default() },
            RawFormat::NdjsonLine,
            b"{",
            100,
        )
    }

    #[test]
    fn files_appear_at_finish_and_are_replaced_or_cleared_by_later_runs() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open_dir(dir.path()).unwrap();
        let a = SourceUri::new("file:///in/a.ndjson");
        let b = SourceUri::new("file:///in/b.ndjson");

        let mut q = QuarantineWriter::new(&lake);
        q.touch(&a);
        q.touch(&b);
        q.write(&entry(&a, 1)).unwrap();
        q.write(&entry(&a, 2)).unwrap();
        q.close(&a).unwrap();
        q.write(&entry(&b, 5)).unwrap();
        assert!(lake.quarantine_files().unwrap().is_empty(), "nothing visible before finish");
        let r = q.finish().unwrap();
        assert_eq!((r.entries, r.files_written, r.files_removed), (3, 2, 0));
        assert_eq!(lake.quarantine_entries().unwrap().len(), 3);

        // Next run: a is read again and now clean; b's entry is replayed and still bad, and
        // a replayed source shows up again after it was closed.
        let mut q = QuarantineWriter::new(&lake);
        q.touch(&a);
        q.touch(&b);
        q.write(&entry(&b, 5)).unwrap();
        q.close(&b).unwrap();
        q.write(&entry(&b, 6)).unwrap();
        let r = q.finish().unwrap();
        assert_eq!((r.files_written, r.files_removed), (1, 1));
        let lines: Vec<_> =
            lake.quarantine_entries().unwrap().iter().map(|e| e.position.line).collect();
        assert_eq!(lines, [Some(5), Some(6)]);
        assert_eq!(lake.quarantine_files().unwrap().len(), 1);
    }

    #[test]
    fn dropping_the_writer_leaves_earlier_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open_dir(dir.path()).unwrap();
        let a = SourceUri::new("file:///in/a.ndjson");
        let mut q = QuarantineWriter::new(&lake);
        q.write(&entry(&a, 1)).unwrap();
        q.finish().unwrap();
        let mut q = QuarantineWriter::new(&lake);
        q.touch(&a);
        q.write(&entry(&a, 9)).unwrap();
        drop(q); // the run failed before finish
        let got = lake.quarantine_entries().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].position.line, Some(1));
    }

    #[test]
    fn the_files_of_a_runs_sources_are_checked_side_by_side() {
        use crate::store::tests::Op;
        let dir = tempfile::tempdir().unwrap();
        let sources: Vec<_> =
            (0..6).map(|i| SourceUri::new(format!("file:///in/{i}.ndjson"))).collect();
        let mut q = QuarantineWriter::new(&Lake::open_dir(dir.path()).unwrap());
        for (i, s) in sources.iter().enumerate() {
            q.write(&entry(s, i as u64)).unwrap();
        }
        q.finish().unwrap();
        // The next run finds four of them clean and one still refusing a record (the sixth
        // is not read); the four files to check for go out together.
        let (lake, heads) = crate::store::tests::lake_where_meet(
            dir.path(),
            4,
            |op| matches!(op, Op::Head(k) if k.starts_with("_quarantine/")),
        );
        let mut q = QuarantineWriter::new(&lake);
        for s in &sources[..5] {
            q.touch(s);
        }
        q.write(&entry(&sources[4], 9)).unwrap();
        let r = q.finish().unwrap();
        assert_eq!((r.entries, r.files_written, r.files_removed), (1, 1, 4));
        assert_eq!(heads.timed_out(), 0);
        let lines: Vec<_> =
            lake.quarantine_entries().unwrap().iter().map(|e| e.position.line).collect();
        assert_eq!(lines, [Some(9), Some(5)]);
    }

    /// A lake over `dir` as S3 (each request a round trip) that counts the quarantine's
    /// `HEAD`s and listing pages.
    fn counted(
        dir: &std::path::Path,
    ) -> (Lake, std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]>) {
        use crate::store::tests::{Hooked, Op};
        let counts = std::sync::Arc::new([0, 0].map(std::sync::atomic::AtomicUsize::new));
        let seen = counts.clone();
        let store = Hooked::new(crate::store::LocalStore::new(dir), move |op| {
            let i = match op {
                Op::Head(k) if k.starts_with("_quarantine/") => 0,
                Op::ListAfter("_quarantine/") => 1,
                _ => return Ok(()),
            };
            seen[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        });
        (Lake::open(std::sync::Arc::new(store)).unwrap(), counts)
    }

    fn loads(counts: &[std::sync::atomic::AtomicUsize; 2]) -> [usize; 2] {
        counts.each_ref().map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    #[test]
    fn a_run_over_many_sources_lists_the_quarantine_instead_of_asking_for_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let ours: Vec<_> =
            (0..40).map(|i| SourceUri::new(format!("s3://in/logs/{i:02}.ndjson"))).collect();
        let others: Vec<_> =
            (0..5).map(|i| SourceUri::new(format!("s3://in/other/{i}.ndjson"))).collect();
        let mut q = QuarantineWriter::new(&Lake::open_dir(dir.path()).unwrap());
        for (i, s) in ours.iter().chain(&others).enumerate() {
            q.write(&entry(s, i as u64 + 1)).unwrap();
        }
        q.finish().unwrap();
        // The next run reads our 40 again: 5 still refuse a record, 35 are clean. 35 HEADs
        // would take 3 rounds of 16; one page of the listing answers for all of them.
        let (lake, counts) = counted(dir.path());
        let mut q = QuarantineWriter::new(&lake);
        for s in &ours {
            q.touch(s);
        }
        for s in &ours[..5] {
            q.write(&entry(s, 99)).unwrap();
        }
        let r = q.finish().unwrap();
        assert_eq!((r.entries, r.files_written, r.files_removed), (5, 5, 35));
        assert_eq!(loads(&counts), [0, 1], "no HEAD, one page");
        let mut left: Vec<_> =
            lake.quarantine_entries().unwrap().iter().map(|e| e.source.to_string()).collect();
        left.sort();
        let mut want: Vec<_> = ours[..5].iter().chain(&others).map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn keys_a_listing_does_not_reach_in_its_pages_are_asked_for_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let (lake, counts) = counted(dir.path());
        let keys: Vec<String> = (0..40).map(|i| format!("_quarantine/k{i:02}.jsonl")).collect();
        // Every third key exists, and files of other sources sit between ours.
        for (i, k) in keys.iter().enumerate() {
            let store = lake.store();
            if i % 3 == 0 {
                store.put(k, Bytes::from_static(b"{}"), Condition::Always).unwrap();
            }
            let other = format!("{}-other.jsonl", k.trim_end_matches(".jsonl"));
            store.put(&other, Bytes::from_static(b"{}"), Condition::Always).unwrap();
        }
        // 40 keys: 3 rounds of HEADs, so at most one page, here of 4 keys (k00, then the
        // neighbours of k01 to k03): it answers for k00 to k02, HEADs for the 37 others.
        let found = existing(lake.store().as_ref(), keys.clone(), 4).unwrap();
        let mut found = found;
        found.sort();
        let want: Vec<_> = keys.iter().step_by(3).cloned().collect();
        assert_eq!(found, want);
        assert_eq!(loads(&counts), [37, 1]);
        // Pages large enough: no HEAD at all.
        let (lake, counts) = counted(dir.path());
        let mut found = existing(lake.store().as_ref(), keys.clone(), 1000).unwrap();
        found.sort();
        assert_eq!(found, want);
        assert_eq!(loads(&counts), [0, 1]);
        // A local lake (no round trips) asks for each: a HEAD there is a `stat`.
        let local = Lake::open_dir(dir.path()).unwrap();
        let mut found = existing(local.store().as_ref(), keys.clone(), 4).unwrap();
        found.sort();
        assert_eq!(found, want);
    }

    #[test]
    fn appending_writers_keep_each_others_entries() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open_dir(dir.path()).unwrap();
        let src = SourceUri::new("otlp-http://0.0.0.0:4318");
        for line in 1..=3 {
            let mut q = QuarantineWriter::appending(&lake);
            q.write(&entry(&src, line)).unwrap();
            q.finish().unwrap();
        }
        let lines: Vec<_> =
            lake.quarantine_entries().unwrap().iter().map(|e| e.position.line).collect();
        assert_eq!(lines, [Some(1), Some(2), Some(3)]);
    }
}
