//! A write-ahead log for records acknowledged before they reach the lake (the OTLP receiver
//! answers 200 only once a request's spans are here, synced).
//!
//! Segments are NDJSON files `<dir>/<seq>.ndjson` on the receiver's local disk (never in an
//! object store: a log is appended to and synced many times a second), appended and synced; a closed
//! segment is handed to the lake writer and removed once its records are durable there. On
//! start, any segment left by a crash is replayed first: dedup makes a replay harmless.
//!
//! Each append is one batch (the requests of one group commit) followed by a commit line, and
//! a reader keeps only records a commit line follows: a batch lands whole or not at all. A
//! failed append is cut off again (or, if that fails too, its segment is closed with the
//! batch after its last commit line), so a request answered with an error never lands in
//! part. Segments start with a header line; those of earlier versions, without one, are read
//! line by line as they were written.

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

/// The framing lines of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Frame {
    /// The first line: the segment's format version.
    Wal(u32),
    /// The end of a batch of this many records.
    Commit(u64),
}

const SEGMENT_VERSION: u32 = 2;

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

/// Reads a segment: the records of every committed batch. An uncommitted tail (a torn line,
/// or a batch whose append failed or was cut short by a crash) is dropped.
///
/// # Errors
///
/// The file cannot be read, or a committed line is not a record.
pub fn read_segment(path: &Path) -> Result<Vec<WalRecord>> {
    let file = File::open(path).map_err(io_at(path))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut framed = None;
    let mut line = Vec::new();
    let bad = |e: serde_json::Error| Error::NotALake {
        root: path.to_owned(),
        reason: format!("write-ahead log line is not a record: {e}"),
    };
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
        let frame = serde_json::from_slice::<Frame>(&line).ok();
        match (framed, frame) {
            (None, Some(Frame::Wal(_))) => framed = Some(true),
            (None, _) => {
                // A segment of an earlier version: every complete line is a record.
                framed = Some(false);
                out.push(serde_json::from_slice(&line).map_err(bad)?);
            }
            (Some(true), Some(Frame::Commit(_))) => {
                for l in pending.drain(..) {
                    out.push(serde_json::from_slice(&l).map_err(bad)?);
                }
            }
            (Some(true), _) => pending.push(line.clone()),
            (Some(false), _) => out.push(serde_json::from_slice(&line).map_err(bad)?),
        }
    }
    if !pending.is_empty() {
        tracing::warn!(segment = %path.display(), records = pending.len(), "Dropped an uncommitted batch at the end of the write-ahead log (never acknowledged).");
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
    ///
    /// On an error nothing of `records` will be read back: the append is cut off again, or,
    /// when even that fails, the segment is closed (call [`Wal::rotate`]) with the batch after
    /// its last commit line, where readers drop it.
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
        let encode = |buf: &mut Vec<u8>, v: &dyn erased::Encode| -> Result<()> {
            v.encode(buf).map_err(|e| io_at(&path)(e.into()))?;
            buf.push(b'\n');
            Ok(())
        };
        if self.bytes == 0 {
            encode(&mut buf, &Frame::Wal(SEGMENT_VERSION))?;
        }
        for r in records {
            encode(&mut buf, r)?;
        }
        encode(&mut buf, &Frame::Commit(records.len() as u64))?;
        let file = self.file.as_mut().expect("opened above");
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Cut the failed batch off, so that the request answered with an error never
            // lands; if that fails too, the caller closes the segment.
            let cut = file.set_len(self.bytes).and_then(|()| file.sync_data());
            if cut.is_err() {
                tracing::error!(segment = %path.display(), "Could not cut a failed append off the write-ahead log; its segment is closed, the batch stays uncommitted.");
            }
            return Err(io_at(&path)(e));
        }
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Checks that the log's directory takes a synced write (after a failure, before taking
    /// requests again).
    ///
    /// # Errors
    ///
    /// The probe file cannot be written, synced or removed.
    pub fn probe(&self) -> Result<()> {
        let path = self.dir.join(".probe");
        let result = (|| {
            let mut f = File::create(&path)?;
            f.write_all(&[0u8; 4096])?;
            f.sync_data()
        })();
        let removed = fs::remove_file(&path);
        result.map_err(io_at(&path))?;
        removed.map_err(io_at(&path))
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

/// Encoding of the two kinds of line a segment holds.
mod erased {
    pub(super) trait Encode {
        fn encode(&self, buf: &mut Vec<u8>) -> serde_json::Result<()>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self, buf: &mut Vec<u8>) -> serde_json::Result<()> {
            serde_json::to_writer(buf, self)
        }
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

    #[test]
    fn a_batch_lands_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path()).unwrap();
        w.append(&[reject(1), reject(2)]).unwrap();
        let path = w.rotate().unwrap();
        // A crash (or a failed append whose cut failed) after two records of a batch of three:
        // complete lines, no commit line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        for r in [reject(3), reject(4)] {
            f.write_all(&serde_json::to_vec(&r).unwrap()).unwrap();
            f.write_all(b"\n").unwrap();
        }
        assert_eq!(read_segment(&path).unwrap(), vec![reject(1), reject(2)]);
        // Segments of an earlier version (no header, no commit lines) are read whole.
        let legacy = dir.path().join("00000000000000000099.ndjson");
        let mut body = Vec::new();
        for r in [reject(7), reject(8)] {
            body.extend(serde_json::to_vec(&r).unwrap());
            body.push(b'\n');
        }
        std::fs::write(&legacy, body).unwrap();
        assert_eq!(read_segment(&legacy).unwrap(), vec![reject(7), reject(8)]);
    }

    #[test]
    fn a_failed_append_is_cut_off_and_never_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path()).unwrap();
        w.append(&[reject(1)]).unwrap();
        let good = w.current_bytes();
        // The segment's descriptor turns read-only, as a failing disk would make writes fail.
        let path = dir.path().join(segment_name(w.seq));
        w.file = Some(File::open(&path).unwrap());
        assert!(w.append(&[reject(2), reject(3)]).is_err());
        assert_eq!(w.current_bytes(), good);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        w.file = Some(OpenOptions::new().append(true).open(&path).unwrap());
        w.append(&[reject(4)]).unwrap();
        let closed = w.rotate().unwrap();
        assert_eq!(read_segment(&closed).unwrap(), vec![reject(1), reject(4)]);
        w.probe().unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![closed], "the probe leaves nothing");
    }
}
