//! Exactly-once writes of usage events: dedup against the lake, then durable Parquet files.
//!
//! Events are gathered into batches. Committing a batch groups it by day; for each day it
//! drops events whose id is already in that `usage_events` partition (or earlier in the run),
//! marks the partition's rollup stale, and writes the new events, sorted by tenant then time,
//! as files named by a digest of their ids. Files appear only complete, so a crash leaves the
//! lake with whole batches or nothing of them, and a rerun writes exactly what is missing.
//! [`EventWriter::finish`] then rebuilds `usage_hourly` for every touched or stale partition.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use agentmeter_schemas::tables::{USAGE_EVENTS, UsageEventBatchBuilder, usage_events_schema};
use agentmeter_schemas::{EventId, UsageEvent};
use chrono::{DateTime, NaiveDate};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsio::{remove_if_exists, write_atomic};
use crate::lake::Lake;
use crate::parquet_io::{properties, write_file};
use crate::rollup::rebuild_hourly;

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
        Self { batch_rows: 500_000, max_rows_per_file: 2_000_000, index_budget: 40_000_000 }
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

struct Partition {
    /// id key → content fingerprint.
    ids: HashMap<u128, u64>,
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

    fn load(&mut self, lake: &Lake, dt: NaiveDate) -> Result<&mut Partition> {
        self.clock += 1;
        let clock = self.clock;
        if let Entry::Vacant(v) = self.parts.entry(dt) {
            let mut ids = HashMap::new();
            lake.reader().for_each_event_batch(dt, |events| {
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

/// Writes usage events to a lake exactly once.
pub struct EventWriter<'l> {
    lake: &'l Lake,
    opts: WriterOptions,
    batch: Vec<UsageEvent>,
    index: DedupIndex,
    touched: BTreeSet<NaiveDate>,
    marked: BTreeSet<NaiveDate>,
    stats: WriteStats,
}

impl<'l> EventWriter<'l> {
    /// A writer into `lake`.
    pub fn new(lake: &'l Lake, opts: WriterOptions) -> Self {
        Self {
            lake,
            opts,
            batch: Vec::with_capacity(opts.batch_rows.min(1 << 16)),
            index: DedupIndex::new(opts.index_budget),
            touched: BTreeSet::new(),
            marked: BTreeSet::new(),
            stats: WriteStats::default(),
        }
    }

    /// Adds an event; commits when the batch is full.
    ///
    /// # Errors
    ///
    /// A commit failed (see [`EventWriter::commit`]).
    pub fn push(&mut self, e: UsageEvent) -> Result<()> {
        self.batch.push(e);
        if self.batch.len() >= self.opts.batch_rows {
            self.commit()?;
        }
        Ok(())
    }

    /// Counts so far (committed batches only).
    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    /// Writes the gathered events.
    ///
    /// # Errors
    ///
    /// The lake cannot be read or written. Files written before the error are complete and
    /// counted; a rerun of the same input writes the rest.
    pub fn commit(&mut self) -> Result<()> {
        let mut by_day: BTreeMap<NaiveDate, Vec<UsageEvent>> = BTreeMap::new();
        for e in std::mem::take(&mut self.batch) {
            by_day.entry(partition_of(&e)?).or_default().push(e);
        }
        let days: BTreeSet<NaiveDate> = by_day.keys().copied().collect();
        for (dt, events) in by_day {
            if let Err(e) = self.commit_day(dt, events) {
                // The in-memory ids may be ahead of the files; reload them if asked again.
                self.index.forget(dt);
                return Err(e);
            }
        }
        self.index.trim(&days);
        Ok(())
    }

    fn commit_day(&mut self, dt: NaiveDate, events: Vec<UsageEvent>) -> Result<()> {
        let part = self.index.load(self.lake, dt)?;
        let mut fresh = Vec::with_capacity(events.len());
        for e in events {
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
                    fresh.push(e);
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
        fresh.sort_unstable_by(|a, b| {
            (a.tenant_id.as_str(), a.event_time_ms, a.event_id.as_str()).cmp(&(
                b.tenant_id.as_str(),
                b.event_time_ms,
                b.event_id.as_str(),
            ))
        });
        let dir = self.lake.layout().partition(USAGE_EVENTS, dt);
        // Sorted by tenant_id (column 3) then event_time (column 0).
        let props = properties(&[3, 0]);
        for chunk in fresh.chunks(self.opts.max_rows_per_file.max(1)) {
            let mut digest = blake3::Hasher::new();
            for e in chunk {
                digest.update(e.event_id.as_str().as_bytes());
                digest.update(b"\n");
            }
            let hex: String =
                digest.finalize().as_bytes()[..16].iter().map(|b| format!("{b:02x}")).collect();
            let path = dir.join(format!("part-{hex}.parquet"));
            let mut builder = UsageEventBatchBuilder::with_capacity(chunk.len());
            builder.extend(chunk);
            let batch =
                builder.finish().map_err(|source| Error::Arrow { path: path.clone(), source })?;
            write_file(&path, usage_events_schema(), props.clone(), &[batch])?;
            self.stats.files += 1;
            self.stats.written += chunk.len() as u64;
        }
        self.touched.insert(dt);
        Ok(())
    }

    /// Commits the last batch and rebuilds `usage_hourly` for every partition this writer
    /// touched or a crashed writer left stale.
    ///
    /// # Errors
    ///
    /// The lake cannot be read or written.
    pub fn finish(mut self) -> Result<WriteStats> {
        self.commit()?;
        let mut days = self.touched.clone();
        days.extend(self.lake.pending_rollups()?);
        for dt in days {
            rebuild_hourly(self.lake, dt)?;
            remove_if_exists(&self.lake.layout().rollup_pending(dt))?;
            self.stats.rollups += 1;
        }
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests;
