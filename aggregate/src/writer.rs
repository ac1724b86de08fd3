//! Exactly-once writes of usage events: dedup against the lake, then durable Parquet files.
//!
//! Events are gathered into batches. Committing a batch groups it by day; for each day it
//! drops events whose id is already in that `usage_events` partition (or earlier in the run),
//! marks the partition's rollup stale, and writes the new events, sorted by tenant then time,
//! as files named by a digest of their ids. Files appear only complete, so a crash leaves the
//! lake with whole batches or nothing of them, and a rerun writes exactly what is missing.
//! [`EventWriter::finish`] then rebuilds `usage_hourly` for every touched or stale partition.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc;
use std::thread::JoinHandle;

use agentmeter_schemas::tables::{USAGE_EVENTS, UsageEventBatchBuilder, usage_events_schema};
use agentmeter_schemas::{EventId, UsageEvent};
use chrono::{DateTime, NaiveDate};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsio::{remove_if_exists, write_atomic};
use crate::lake::{Lake, LakeReader};
use crate::parquet_io::{properties, write_file};
use crate::rollup::rebuild_hourly_all;

/// Writer settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Events gathered before a commit (bounds memory; larger batches give larger files).
    pub batch_rows: usize,
    /// Most rows in one Parquet file.
    pub max_rows_per_file: usize,
    /// Most event ids kept in memory for dedup across partitions; the least recently used
    /// partitions are reloaded from the lake when needed again.
    pub index_budget: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self { batch_rows: 250_000, max_rows_per_file: 2_000_000, index_budget: 10_000_000 }
    }
}

/// What a writer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteStats {
    /// Events newly written.
    pub written: u64,
    /// Events dropped because their id was already written.
    pub duplicates: u64,
    /// Of the duplicates, those whose content differed from the copy kept.
    pub conflicting: u64,
    /// `usage_events` files written.
    pub files: u64,
    /// `usage_hourly` partitions rebuilt.
    pub rollups: u64,
}

/// The 128-bit key of an event id in the dedup index.
fn id_key(id: &EventId) -> u128 {
    let h = blake3::hash(id.as_str().as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    u128::from_le_bytes(b)
}

/// The `dt` partition of an event.
pub(crate) fn partition_of(e: &UsageEvent) -> Result<NaiveDate> {
    DateTime::from_timestamp_millis(e.event_time_ms).map(|t| t.date_naive()).ok_or_else(|| {
        Error::NotALake {
            root: Default::default(),
            reason: format!("event {} has an out-of-range time {}", e.event_id, e.event_time_ms),
        }
    })
}

/// Hashes the dedup index's keys, which are already uniformly random digests.
#[derive(Default, Clone, Copy)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

type DigestMap<V> = HashMap<u128, V, std::hash::BuildHasherDefault<DigestHasher>>;

struct Partition {
    /// id key → content fingerprint.
    ids: DigestMap<u64>,
    last_used: u64,
}

/// The ids already in the lake, per partition, loaded on first use.
struct DedupIndex {
    parts: HashMap<NaiveDate, Partition>,
    clock: u64,
    entries: usize,
    budget: usize,
}

impl DedupIndex {
    fn new(budget: usize) -> Self {
        Self { parts: HashMap::new(), clock: 0, entries: 0, budget }
    }

    fn load(&mut self, lake: &LakeReader, dt: NaiveDate) -> Result<&mut Partition> {
        self.clock += 1;
        let clock = self.clock;
        if let Entry::Vacant(v) = self.parts.entry(dt) {
            let mut ids = DigestMap::default();
            lake.for_each_event_batch(dt, |events| {
                for e in events {
                    ids.insert(id_key(&e.event_id), e.content_fingerprint());
                }
                Ok(())
            })?;
            self.entries += ids.len();
            v.insert(Partition { ids, last_used: clock });
        }
        let part = self.parts.get_mut(&dt).expect("inserted above");
        part.last_used = clock;
        Ok(part)
    }

    fn forget(&mut self, dt: NaiveDate) {
        if let Some(p) = self.parts.remove(&dt) {
            self.entries -= p.ids.len();
        }
    }

    /// Evicts least recently used partitions (never those in `keep`) while over budget.
    fn trim(&mut self, keep: &BTreeSet<NaiveDate>) {
        while self.entries > self.budget {
            let victim = self
                .parts
                .iter()
                .filter(|(dt, _)| !keep.contains(dt))
                .min_by_key(|(_, p)| p.last_used)
                .map(|(dt, _)| *dt);
            match victim {
                Some(dt) => self.forget(dt),
                None => break,
            }
        }
    }
}

/// The part of the writer that touches the lake: runs on its own thread, so that decoding
/// goes on while a batch is sorted, encoded and synced.
struct Committer {
    lake: LakeReader,
    opts: WriterOptions,
    index: DedupIndex,
    touched: BTreeSet<NaiveDate>,
    marked: BTreeSet<NaiveDate>,
    stats: WriteStats,
}

impl Committer {
    fn commit(&mut self, batch: Vec<UsageEvent>) -> Result<()> {
        // Group by day through a permutation: a stable sort keeps input order within a day,
        // so the first delivery of an id is the one kept, and no event is moved.
        let days_of: Vec<NaiveDate> = batch.iter().map(partition_of).collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| days_of[i]);
        let days: BTreeSet<NaiveDate> = days_of.iter().copied().collect();
        for run in order.chunk_by(|&a, &b| days_of[a] == days_of[b]) {
            let dt = days_of[run[0]];
            if let Err(e) = self.commit_day(dt, &batch, run) {
                // The in-memory ids may be ahead of the files; reload them if asked again.
                self.index.forget(dt);
                return Err(e);
            }
        }
        self.index.trim(&days);
        Ok(())
    }

    /// Writes the events `batch[i]` for `i` in `day` (all of day `dt`, in input order).
    fn commit_day(&mut self, dt: NaiveDate, batch: &[UsageEvent], day: &[usize]) -> Result<()> {
        let part = self.index.load(&self.lake, dt)?;
        let mut fresh: Vec<usize> = Vec::with_capacity(day.len());
        for &i in day {
            let e = &batch[i];
            let fp = e.content_fingerprint();
            match part.ids.entry(id_key(&e.event_id)) {
                Entry::Occupied(o) => {
                    self.stats.duplicates += 1;
                    if *o.get() != fp {
                        self.stats.conflicting += 1;
                        tracing::warn!(
                            event_id = %e.event_id,
                            source = %e.source,
                            "Duplicate event id with different content; the first copy is kept."
                        );
                    }
                }
                Entry::Vacant(v) => {
                    v.insert(fp);
                    fresh.push(i);
                }
            }
        }
        self.index.entries += fresh.len();
        if fresh.is_empty() {
            return Ok(());
        }
        if self.marked.insert(dt) {
            write_atomic(&self.lake.layout().rollup_pending(dt), b"")?;
        }
        let mut order = fresh;
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (&batch[a], &batch[b]);
            (a.tenant_id.as_str(), a.event_time_ms, a.event_id.as_str()).cmp(&(
                b.tenant_id.as_str(),
                b.event_time_ms,
                b.event_id.as_str(),
            ))
        });
        let dir = self.lake.layout().partition(USAGE_EVENTS, dt);
        // Sorted by tenant_id (column 3) then event_time (column 0).
        let props = properties(&[3, 0], &["event_id"]);
        for chunk in order.chunks(self.opts.max_rows_per_file.max(1)) {
            let mut digest = blake3::Hasher::new();
            for &i in chunk {
                digest.update(batch[i].event_id.as_str().as_bytes());
                digest.update(b"\n");
            }
            let hex: String =
                digest.finalize().as_bytes()[..16].iter().map(|b| format!("{b:02x}")).collect();
            let path = dir.join(format!("part-{hex}.parquet"));
            let mut builder = UsageEventBatchBuilder::with_capacity(chunk.len());
            builder.extend(chunk.iter().map(|&i| &batch[i]));
            let batch =
                builder.finish().map_err(|source| Error::Arrow { path: path.clone(), source })?;
            write_file(&path, usage_events_schema(), props.clone(), &[batch])?;
            self.stats.files += 1;
            self.stats.written += chunk.len() as u64;
        }
        self.touched.insert(dt);
        Ok(())
    }
}

enum Msg {
    Batch(Vec<UsageEvent>),
    /// Reply once every batch sent before is committed.
    Sync(mpsc::SyncSender<()>),
}

/// Writes usage events to a lake exactly once.
///
/// Batches are committed on a background thread, one at a time and in order; at most one
/// batch waits while another is written, so memory stays bounded by two batches.
pub struct EventWriter<'l> {
    lake: &'l Lake,
    opts: WriterOptions,
    batch: Vec<UsageEvent>,
    tx: Option<mpsc::SyncSender<Msg>>,
    worker: Option<JoinHandle<(Committer, Option<Error>)>>,
}

impl<'l> EventWriter<'l> {
    /// A writer into `lake`.
    pub fn new(lake: &'l Lake, opts: WriterOptions) -> Self {
        let mut committer = Committer {
            lake: lake.reader().clone(),
            opts,
            index: DedupIndex::new(opts.index_budget),
            touched: BTreeSet::new(),
            marked: BTreeSet::new(),
            stats: WriteStats::default(),
        };
        let (tx, rx) = mpsc::sync_channel::<Msg>(1);
        let worker = std::thread::spawn(move || {
            for msg in rx {
                match msg {
                    Msg::Batch(batch) => {
                        if let Err(e) = committer.commit(batch) {
                            return (committer, Some(e));
                        }
                    }
                    Msg::Sync(reply) => {
                        let _ = reply.send(());
                    }
                }
            }
            (committer, None)
        });
        Self {
            lake,
            opts,
            batch: Vec::with_capacity(opts.batch_rows.min(1 << 20)),
            tx: Some(tx),
            worker: Some(worker),
        }
    }

    /// The committer's error, once it has stopped.
    fn failure(&mut self) -> Error {
        self.tx = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok((_, Some(e)))) => e,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => Error::NotALake {
                root: self.lake.layout().root().to_owned(),
                reason: "the lake writer stopped".into(),
            },
        }
    }

    fn send(&mut self, msg: Msg) -> Result<()> {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(msg).is_ok());
        if sent { Ok(()) } else { Err(self.failure()) }
    }

    /// Adds an event; hands the batch to the committer when it is full.
    ///
    /// # Errors
    ///
    /// An earlier batch failed to commit (see [`EventWriter::commit`]).
    pub fn push(&mut self, e: UsageEvent) -> Result<()> {
        self.batch.push(e);
        if self.batch.len() >= self.opts.batch_rows {
            let batch = std::mem::replace(
                &mut self.batch,
                Vec::with_capacity(self.opts.batch_rows.min(1 << 16)),
            );
            self.send(Msg::Batch(batch))?;
        }
        Ok(())
    }

    /// Writes every event pushed so far and waits until they are durable.
    ///
    /// # Errors
    ///
    /// The lake cannot be read or written. Files written before the error are complete; a
    /// rerun of the same input writes the rest.
    pub fn commit(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        if !batch.is_empty() {
            self.send(Msg::Batch(batch))?;
        }
        let (reply, done) = mpsc::sync_channel(1);
        self.send(Msg::Sync(reply))?;
        match done.recv() {
            Ok(()) => Ok(()),
            Err(_) => Err(self.failure()),
        }
    }

    /// Commits the last batch and rebuilds `usage_hourly` for every partition this writer
    /// touched or a crashed writer left stale.
    ///
    /// # Errors
    ///
    /// The lake cannot be read or written.
    pub fn finish(mut self) -> Result<WriteStats> {
        self.commit()?;
        self.tx = None;
        let (committer, error) = match self.worker.take().map(JoinHandle::join) {
            Some(Ok(done)) => done,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => return Err(self.failure()),
        };
        if let Some(e) = error {
            return Err(e);
        }
        let mut stats = committer.stats;
        let mut days = committer.touched;
        days.extend(self.lake.pending_rollups()?);
        let days: Vec<NaiveDate> = days.into_iter().collect();
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        rebuild_hourly_all(self.lake.reader(), &days, threads)?;
        for dt in &days {
            remove_if_exists(&self.lake.layout().rollup_pending(*dt))?;
        }
        stats.rollups = days.len() as u64;
        Ok(stats)
    }
}

impl Drop for EventWriter<'_> {
    fn drop(&mut self) {
        // Uncommitted events are dropped (as on a crash); committed ones are whole files.
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests;
