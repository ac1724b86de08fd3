//! A write-ahead log for records acknowledged before they reach the lake (the OTLP receiver
//! answers 200 only once a request's spans are here, synced).
//!
//! Segments are NDJSON files `LAKE/_wal/<name>/<seq>.ndjson`, appended and synced; a closed
//! segment is handed to the lake writer and removed once its records are durable there. On
//! start, any segment left by a crash is replayed first: dedup makes a replay harmless. A torn
//! last line (the process died inside a write that was never acknowledged) is dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use agentmeter_schemas::{AgentSpan, QuarantineEntry};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_at};
use crate::fsio::sync_dir;

/// One logged record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalRecord {
    /// A valid span.
    Span(Box<AgentSpan>),
    /// A refused record, bound for the quarantine.
    Reject(Box<QuarantineEntry>),
}

/// The open log.
pub struct Wal {
    dir: PathBuf,
    seq: u64,
    file: Option<File>,
    bytes: u64,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.ndjson")
}

/// Closed or leftover segments of `dir`, oldest first.
///
/// # Errors
///
/// The directory cannot be listed.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<(u64, PathBuf)> = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(dir)(e)),
    };
    for e in entries {
        let e = e.map_err(io_at(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(seq) = name.strip_suffix(".ndjson").and_then(|n| n.parse::<u64>().ok()) {
            out.push((seq, e.path()));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// Reads a segment; a torn last line is dropped.
///
/// # Errors
///
/// The file cannot be read, or a complete line is not a record.
pub fn read_segment(path: &Path) -> Result<Vec<WalRecord>> {
    let file = File::open(path).map_err(io_at(path))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            tracing::warn!(segment = %path.display(), "Dropped a torn last line of the write-ahead log.");
            break;
        }
        let record = serde_json::from_slice(&line).map_err(|e| Error::NotALake {
            root: path.to_owned(),
            reason: format!("write-ahead log line is not a record: {e}"),
        })?;
        out.push(record);
    }
    Ok(out)
}

impl Wal {
    /// Opens the log in `dir`; new records go to a segment after every existing one.
    ///
    /// # Errors
    ///
    /// The directory cannot be created or listed.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let last = segments(dir)?
            .last()
            .and_then(|p| {
                p.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok())
            })
            .unwrap_or(0);
        Ok(Self { dir: dir.to_owned(), seq: last + 1, file: None, bytes: 0 })
    }

    /// Bytes in the current segment.
    pub fn current_bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends records and syncs them: when this returns, they survive a crash.
    ///
    /// # Errors
    ///
    /// The segment cannot be written or synced.
    pub fn append(&mut self, records: &[WalRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(segment_name(self.seq));
        if self.file.is_none() {
            let f =
                OpenOptions::new().create(true).append(true).open(&path).map_err(io_at(&path))?;
            sync_dir(&path)?;
            self.file = Some(f);
        }
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(|e| io_at(&path)(e.into()))?;
            buf.push(b'\n');
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(&buf).map_err(io_at(&path))?;
        file.sync_data().map_err(io_at(&path))?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Closes the current segment (if it has records) and starts the next; returns the closed
    /// segment's path.
    pub fn rotate(&mut self) -> Option<PathBuf> {
        self.file.take()?;
        let closed = self.dir.join(segment_name(self.seq));
        self.seq += 1;
        self.bytes = 0;
        Some(closed)
    }
}

#[cfg(test)]
mod tests {
    use agentmeter_schemas::{Position, RawFormat, Reason, SourceUri};

    use super::*;

    fn reject(n: u64) -> WalRecord {
        WalRecord::Reject(Box::new(QuarantineEntry::new(
            Reason::MissingField,
            "tier is missing",
            SourceUri::new("otlp-http://127.0.0.1:4318"),
            Position { event: Some(n), ..Default::default() },
            RawFormat::OtlpJson,
            b"{}",
            100,
        )))
    }

    #[test]
    fn append_rotate_read_and_resume_after_the_last_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path()).unwrap();
        assert!(w.rotate().is_none(), "nothing to close");
        w.append(&[reject(1), reject(2)]).unwrap();
        w.append(&[reject(3)]).unwrap();
        let closed = w.rotate().unwrap();
        assert_eq!(read_segment(&closed).unwrap(), vec![reject(1), reject(2), reject(3)]);
        w.append(&[reject(4)]).unwrap();
        drop(w);
        // A crash left two segments; a new log continues after them.
        let mut again = Wal::open(dir.path()).unwrap();
        again.append(&[reject(5)]).unwrap();
        let all = segments(dir.path()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(read_segment(&all[2]).unwrap(), vec![reject(5)]);
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path()).unwrap();
        w.append(&[reject(1)]).unwrap();
        let path = w.rotate().unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"reject":{"agentmeter_quar"#).unwrap();
        assert_eq!(read_segment(&path).unwrap(), vec![reject(1)]);
        std::fs::write(&path, b"not json\n").unwrap();
        assert!(read_segment(&path).is_err());
    }
}

/// What flushing segments did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Segments written to the lake and removed.
    pub segments: u64,
    /// Spans newly written.
    pub spans_written: u64,
    /// Spans already in the lake.
    pub span_duplicates: u64,
    /// Records quarantined.
    pub quarantined: u64,
}

/// Flushes the segments a stopped or crashed OTLP receiver left in the lake: they were
/// acknowledged, so every writer of the lake moves them in before its own work.
///
/// # Errors
///
/// The log cannot be read or the lake cannot be written (the segments stay).
pub fn recover_otlp(lake: &crate::Lake, opts: crate::WriterOptions) -> Result<FlushStats> {
    let leftovers = segments(&lake.layout().otlp_wal_dir())?;
    flush_segments(lake, &leftovers, opts)
}

/// Writes the records of `segments` (closed, oldest first) into the lake, rebuilds the rollups
/// of the days they touch, then removes them. A crash at any point leaves the segments to be
/// flushed again, which writes nothing twice.
///
/// # Errors
///
/// The lake cannot be written (the segments stay).
pub fn flush_segments(
    lake: &crate::Lake,
    segments: &[PathBuf],
    opts: crate::WriterOptions,
) -> Result<FlushStats> {
    let mut stats = FlushStats::default();
    if segments.is_empty() {
        return Ok(stats);
    }
    let mut writer: crate::EventWriter<'_, AgentSpan> = crate::EventWriter::new(lake, opts);
    let mut quarantine = crate::QuarantineWriter::appending(lake.layout().clone());
    for path in segments {
        for record in read_segment(path)? {
            match record {
                WalRecord::Span(s) => writer.push(*s)?,
                WalRecord::Reject(q) => {
                    quarantine.write(&q)?;
                    stats.quarantined += 1;
                }
            }
        }
    }
    let (written, days) = writer.finish_without_rollups()?;
    lake.rebuild_rollups(&days)?;
    quarantine.finish()?;
    for path in segments {
        crate::fsio::remove_if_exists(path)?;
        stats.segments += 1;
    }
    stats.spans_written = written.written;
    stats.span_duplicates = written.duplicates;
    Ok(stats)
}
