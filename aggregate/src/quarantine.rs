//! The quarantine: one NDJSON file of [`QuarantineEntry`]s per source.
//!
//! A run replaces the quarantine file of every source it reads (and of every original source
//! of a replayed entry) with the entries of this run, or removes it when there are none: the
//! quarantine always shows what the latest reading of each source refused. Files are written
//! under temporary names and renamed into place only by [`QuarantineWriter::finish`], after
//! the events have been committed, so replaying a quarantine file never loses a record that
//! it fixed.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};

use agentmeter_schemas::{INLINE_LINE_MAX, QuarantineEntry, RAW_DIR, SourceUri};

use crate::error::{Result, io_at};
use crate::fsio::{ClosedTemp, TempFile, remove_if_exists, write_atomic};
use crate::layout::Layout;

enum Slot {
    /// Seen, nothing refused yet.
    Empty,
    Open(BufWriter<TempFile>),
    Closed(ClosedTemp),
}

/// Writes quarantine files for one run.
pub struct QuarantineWriter {
    layout: Layout,
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

impl QuarantineWriter {
    /// A writer into the quarantine of the lake laid out as `layout`.
    pub fn new(layout: Layout) -> Self {
        Self { layout, slots: BTreeMap::new(), entries: 0, append: false }
    }

    /// A writer for a long-running source (the OTLP receiver): entries are added to the
    /// source's file instead of replacing it, and no file is ever removed.
    pub fn appending(layout: Layout) -> Self {
        Self { layout, slots: BTreeMap::new(), entries: 0, append: true }
    }

    /// Notes that `source` is read by this run.
    pub fn touch(&mut self, source: &SourceUri) {
        self.slots.entry(source.clone()).or_insert(Slot::Empty);
    }

    /// Adds an entry to its source's file.
    ///
    /// # Errors
    ///
    /// The temporary file cannot be created or written.
    pub fn write(&mut self, entry: &QuarantineEntry) -> Result<()> {
        let slot = self.slots.entry(entry.source.clone()).or_insert(Slot::Empty);
        if !matches!(slot, Slot::Open(_)) {
            let path = self.layout.quarantine_file(&entry.source);
            let mut temp = TempFile::create(&path)?;
            if let Slot::Closed(_) = slot {
                // The source shows up again (replayed after it was read): keep what it had.
                let Slot::Closed(old) = std::mem::replace(slot, Slot::Empty) else {
                    unreachable!("matched above")
                };
                let bytes = std::fs::read(old.temp_path()).map_err(io_at(old.temp_path()))?;
                temp.write_all(&bytes).map_err(io_at(temp.temp_path()))?;
            }
            *slot = Slot::Open(BufWriter::new(temp));
        }
        let Slot::Open(w) = slot else { unreachable!("opened above") };
        let path = self.layout.quarantine_file(&entry.source);
        let mut line = serde_json::to_vec(entry).map_err(|e| io_at(&path)(e.into()))?;
        if line.len() > INLINE_LINE_MAX {
            // Kept once, by content: the entry line stays short enough to be read back as
            // itself by every replay, whatever the record's size.
            let mut apart = entry.clone();
            if let Some(bytes) = apart.take_inline() {
                let name = apart.raw_ref.clone().unwrap_or_default();
                let blob = self.layout.quarantine_dir().join(RAW_DIR).join(format!("{name}.bin"));
                if !blob.exists() {
                    write_atomic(&blob, &bytes)?;
                }
                line = serde_json::to_vec(&apart).map_err(|e| io_at(&path)(e.into()))?;
            }
        }
        line.push(b'\n');
        w.write_all(&line).map_err(io_at(&path))?;
        self.entries += 1;
        Ok(())
    }

    /// The source was read to its end: close its file to free the descriptor.
    ///
    /// # Errors
    ///
    /// The file cannot be flushed or synced.
    pub fn close(&mut self, source: &SourceUri) -> Result<()> {
        if let Some(slot) = self.slots.get_mut(source)
            && let Slot::Open(_) = slot
        {
            let Slot::Open(w) = std::mem::replace(slot, Slot::Empty) else {
                unreachable!("matched above")
            };
            let path = self.layout.quarantine_file(source);
            let temp = w.into_inner().map_err(|e| io_at(&path)(e.into_error()))?;
            *slot = Slot::Closed(temp.close()?);
        }
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
    pub fn finish(mut self) -> Result<QuarantineReport> {
        let sources: Vec<SourceUri> = self.slots.keys().cloned().collect();
        for s in &sources {
            self.close(s)?;
        }
        let mut report = QuarantineReport { entries: self.entries, ..Default::default() };
        for (source, slot) in std::mem::take(&mut self.slots) {
            match slot {
                Slot::Closed(temp) if self.append => {
                    let path = self.layout.quarantine_file(&source);
                    let mut all = match std::fs::read(&path) {
                        Ok(b) => b,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                        Err(e) => return Err(io_at(&path)(e)),
                    };
                    all.extend(std::fs::read(temp.temp_path()).map_err(io_at(temp.temp_path()))?);
                    crate::fsio::write_atomic(&path, &all)?;
                    report.files_written += 1;
                }
                Slot::Closed(temp) => {
                    temp.commit()?;
                    report.files_written += 1;
                }
                Slot::Empty if self.append => {}
                Slot::Empty => {
                    if remove_if_exists(&self.layout.quarantine_file(&source))? {
                        report.files_removed += 1;
                    }
                }
                Slot::Open(_) => unreachable!("closed above"),
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use agentmeter_schemas::{Position, RawFormat, Reason};

    use super::*;
    use crate::lake::LakeReader;

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
        let layout = Layout::new(dir.path());
        let reader = LakeReader::new(dir.path());
        let a = SourceUri::new("file:///in/a.ndjson");
        let b = SourceUri::new("file:///in/b.ndjson");

        let mut q = QuarantineWriter::new(layout.clone());
        q.touch(&a);
        q.touch(&b);
        q.write(&entry(&a, 1)).unwrap();
        q.write(&entry(&a, 2)).unwrap();
        q.close(&a).unwrap();
        q.write(&entry(&b, 5)).unwrap();
        assert!(reader.quarantine_files().unwrap().is_empty(), "nothing visible before finish");
        let r = q.finish().unwrap();
        assert_eq!((r.entries, r.files_written, r.files_removed), (3, 2, 0));
        assert_eq!(reader.quarantine_entries().unwrap().len(), 3);

        // Next run: a is read again and now clean; b's entry is replayed and still bad, and
        // a replayed source shows up again after it was closed.
        let mut q = QuarantineWriter::new(layout.clone());
        q.touch(&a);
        q.touch(&b);
        q.write(&entry(&b, 5)).unwrap();
        q.close(&b).unwrap();
        q.write(&entry(&b, 6)).unwrap();
        let r = q.finish().unwrap();
        assert_eq!((r.files_written, r.files_removed), (1, 1));
        let lines: Vec<_> =
            reader.quarantine_entries().unwrap().iter().map(|e| e.position.line).collect();
        assert_eq!(lines, [Some(5), Some(6)]);
        let leftovers = std::fs::read_dir(layout.quarantine_dir()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left");
    }

    #[test]
    fn dropping_the_writer_leaves_earlier_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let a = SourceUri::new("file:///in/a.ndjson");
        let mut q = QuarantineWriter::new(layout.clone());
        q.write(&entry(&a, 1)).unwrap();
        q.finish().unwrap();
        let mut q = QuarantineWriter::new(layout.clone());
        q.touch(&a);
        q.write(&entry(&a, 9)).unwrap();
        drop(q); // the run failed before finish
        let got = LakeReader::new(dir.path()).quarantine_entries().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].position.line, Some(1));
        assert_eq!(std::fs::read_dir(layout.quarantine_dir()).unwrap().count(), 1);
    }
}
