//! Exactly-once writes of records (usage events, agent spans): dedup against the lake, then
//! durable Parquet files.
//!
//! Events are gathered into batches. Committing a batch groups it by day; for each day it
//! drops events whose id is already in that `usage_events` partition (or earlier in the run),
//! and writes the new events, sorted by tenant then time, as an object named by a digest of
//! their ids, created only if absent. Objects appear only complete, so a crash leaves the
//! lake with whole batches or nothing of them, and a rerun writes exactly what is missing.
//! [`EventWriter::finish`] then rebuilds the rollups of every partition it wrote.
//!
//! Writers take no lock. Before each commit to a partition, a writer lists it and loads the
//! ids of files it has not seen (only their columns, not the `source`), so it skips what
//! other writers stored meanwhile. Two writers that store the same id at the same moment both
//! keep it: rollups, compaction and every reader count each id once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use agentmeter_schemas::UsageEvent;
use agentmeter_schemas::tables::USAGE_EVENTS;
use chrono::NaiveDate;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::parquet_io::{ENCODE_ROWS, Encoder};
use crate::record::{LakeRecord, date_of_day};
use crate::rollup::{RollupReport, RollupState, rebuild_hourly_all, rollup_state};
use crate::store::{Fetch, ObjectMeta, REQUESTS_AT_ONCE, concurrently};

mod ahead;
mod ids;
mod listing;
mod records;
mod upload;
use ahead::AheadLink;
pub use ahead::{AheadReport, RollupsAhead};
use ids::IdIndex;
use listing::{ListedAhead, ListedAt, Listing, StaleChecks};
use records::Records;
use upload::Uploads;

/// Writer settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Events gathered before a commit (bounds memory; larger batches give larger files).
    pub batch_rows: usize,
    /// Most bytes a batch holds in memory ([`LakeRecord::approx_bytes`]), whatever its row
    /// count: a span holds several times an event's bytes, so span batches are cut sooner.
    pub batch_bytes: usize,
    /// Most rows in one Parquet file.
    pub max_rows_per_file: usize,
    /// Most event ids kept in memory for dedup across partitions (24 bytes each once
    /// committed); the least recently used partitions are reloaded from the lake when needed
    /// again. The partitions of the batch being committed are always kept, whatever their size.
    pub index_budget: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            batch_rows: 250_000,
            batch_bytes: DEFAULT_BATCH_BYTES,
            max_rows_per_file: 2_000_000,
            index_budget: 2_000_000,
        }
    }
}

/// The default [`WriterOptions::batch_bytes`]: 48 MiB, about 180,000 usage events or 75,000
/// spans. Measured against 96 MiB: a 5M-event NDJSON ingest peaked at 345 MB instead of 391
/// and was no slower, for files of about 85,000 rows instead of 125,000 (BENCHMARKS.md).
pub const DEFAULT_BATCH_BYTES: usize = 48 << 20;

/// What a writer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteStats {
    /// Events newly written.
    pub written: u64,
    /// Events dropped because their id was already written.
    pub duplicates: u64,
    /// Of the duplicates, those whose content differed from the copy kept.
    pub conflicting: u64,
    /// Of those written, the model calls that reported no usage (usage unknown).
    pub usage_unknown: u64,
    /// `usage_events` files written.
    pub files: u64,
    /// `usage_hourly` partitions rebuilt.
    pub rollups: u64,
}

/// The `dt` partition of a record.
pub(crate) fn partition_of<R: LakeRecord>(e: &R) -> Result<NaiveDate> {
    e.partition().ok_or_else(|| Error::NotALake {
        root: Default::default(),
        reason: format!("a {} record has an out-of-range time {}", R::TABLE, e.time_ms()),
    })
}

/// Hashes the dedup index's keys, which are already uniformly random digests.
#[derive(Default, Clone, Copy)]
pub(crate) struct DigestHasher(u64);

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

/// A set of identity keys.
pub(crate) type DigestSet =
    std::collections::HashSet<u128, std::hash::BuildHasherDefault<DigestHasher>>;

/// Orders `rows` (indices into `records`) by [`LakeRecord::sort_cmp`].
pub(crate) fn sort_rows<R: LakeRecord>(records: &[R], rows: &mut [usize]) {
    let mut tenants: rustc_hash::FxHashMap<&str, u32> = rustc_hash::FxHashMap::default();
    for &i in rows.iter() {
        tenants.entry(records[i].sort_prefix().0).or_insert(0);
    }
    let mut names: Vec<&str> = tenants.keys().copied().collect();
    names.sort_unstable();
    for (rank, name) in names.iter().enumerate() {
        tenants.insert(name, rank as u32);
    }
    order_rows(
        rows,
        names.len(),
        |i| {
            let (tenant, time) = records[i].sort_prefix();
            (tenants[tenant], time)
        },
        |a, b| R::sort_cmp(&records[a], &records[b]),
    );
}

/// Orders `rows` by their `prefix` (a tenant's rank among `tenants`, then a time), then by
/// `cmp` where prefixes are equal. Integers are compared rather than strings, and only equal
/// prefixes fall back to `cmp`. The rows are first grouped by tenant with a counting sort,
/// which keeps their order within a tenant: logs come in about time order, so each tenant's
/// rows are then nearly sorted already, and the stable sort after (which finds sorted runs)
/// does little more than check them. (`sort_cmp` is a total order on rows with distinct ids,
/// so any sort gives this order.)
pub(crate) fn order_rows(
    rows: &mut [usize],
    tenants: usize,
    prefix: impl Fn(usize) -> (u32, i64),
    cmp: impl Fn(usize, usize) -> std::cmp::Ordering,
) {
    let prefixes: Vec<(u32, i64)> = rows.iter().map(|&i| prefix(i)).collect();
    // Where each tenant's rows start.
    let mut next = vec![0usize; tenants + 1];
    for &(rank, _) in &prefixes {
        next[rank as usize + 1] += 1;
    }
    for r in 1..next.len() {
        next[r] += next[r - 1];
    }
    let mut keyed: Vec<(u32, i64, usize)> = vec![(0, 0, 0); rows.len()];
    for (&i, &(rank, time)) in rows.iter().zip(&prefixes) {
        let at = &mut next[rank as usize];
        keyed[*at] = (rank, time, i);
        *at += 1;
    }
    keyed.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| cmp(a.2, b.2)));
    for (slot, (.., i)) in rows.iter_mut().zip(keyed) {
        *slot = i;
    }
}

struct Partition {
    /// id key → content fingerprint.
    ids: IdIndex,
    /// Names of the partition's files whose ids are in `ids`.
    files: std::collections::HashSet<String>,
    last_used: u64,
}

/// The ids already in the lake, per partition, loaded on first use and topped up with the
/// files other writers added before each commit.
struct DedupIndex {
    parts: HashMap<NaiveDate, Partition>,
    /// Days whose ids were dropped to stay within the budget.
    evicted: std::collections::HashSet<NaiveDate>,
    clock: u64,
    entries: usize,
    budget: usize,
}

impl DedupIndex {
    fn new(budget: usize) -> Self {
        Self { parts: HashMap::new(), evicted: Default::default(), clock: 0, entries: 0, budget }
    }

    /// The ids of day `dt`: those held, and those of any file in `listed` (the day's data files
    /// now) not read yet.
    fn load<R: LakeRecord>(
        &mut self,
        lake: &Lake,
        dt: NaiveDate,
        listed: Vec<ObjectMeta>,
    ) -> Result<&mut Partition> {
        self.clock += 1;
        let clock = self.clock;
        self.evicted.remove(&dt);
        let part = self.parts.entry(dt).or_insert_with(|| Partition {
            ids: IdIndex::default(),
            files: std::collections::HashSet::new(),
            last_used: clock,
        });
        part.last_used = clock;
        let columns = R::index_columns();
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        // The new files' ids gathered in file order and merged into the index at once (the
        // first copy of an id kept), and the files marked read only then: a file that fails
        // to read leaves the day as it was.
        let (mut items, mut read) = (Vec::new(), Vec::new());
        let new: Vec<ObjectMeta> =
            listed.into_iter().filter(|f| !part.files.contains(f.name())).collect();
        let ids = |file| lake.read(file, Some(&columns), &[], Fetch::Ranged);
        lake.read_ahead(&new, ids, |file, batches| {
            let batches = match batches {
                Ok(b) => b,
                // Compacted away since the listing: its rows are in the merged file.
                Err(Error::Vanished { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            for batch in batches {
                let batch = batch?;
                let records = R::from_batch(&batch)
                    .map_err(|source| Error::Arrow { path: file.key.clone().into(), source })?;
                items.extend(records.iter().map(|r| (r.identity().key(), r.fingerprint())));
            }
            read.push(file.name().to_owned());
            Ok(())
        })?;
        let before = part.ids.len();
        part.ids.add_all(&items);
        self.entries += part.ids.len() - before;
        part.files.extend(read);
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
                Some(dt) => {
                    self.forget(dt);
                    self.evicted.insert(dt);
                }
                None => break,
            }
        }
    }
}

/// The part of the writer that touches the lake: runs on its own thread, so that decoding
/// goes on while a batch is sorted, encoded and stored.
struct Committer<R> {
    _kind: std::marker::PhantomData<fn() -> R>,
    lake: Lake,
    opts: WriterOptions,
    index: DedupIndex,
    touched: BTreeSet<NaiveDate>,
    /// Days met with nothing new to write whose rollups were checked.
    checked: BTreeSet<NaiveDate>,
    stats: WriteStats,
    /// Puts the files encoded here, and then tells the rollups ahead their batch is durable.
    uploads: Uploads,
    /// Where listings are round trips: when each day was last listed for a commit.
    listed_at: Option<Arc<ListedAt>>,
    /// Listings the batches before sent ahead.
    listed_ahead: ListedAhead,
    /// Where requests are round trips and no rollups ahead are told of the days written: the
    /// rollup checks of days met with nothing new, in flight.
    checks: Option<StaleChecks>,
}

/// Records on their way to the committer, each with its identity's key and content
/// fingerprint, computed as they are pushed (off the committer's thread, which every record
/// goes through).
struct Batch<R> {
    records: Records<R>,
    /// The records' memory: the room their chunks hold (filled or not), what each holds apart
    /// ([`LakeRecord::approx_bytes`] beyond its own size) and [`Records::OVERHEAD`].
    bytes: usize,
    /// Its place among the writer's batches, from 1 (for the rollups ahead).
    seq: u64,
    /// Its days' listings, started when it was handed over (where requests are slow).
    listed: Option<Listing>,
    /// The listing of the day after its last, for the batches after it (where requests are
    /// slow: [`ListedAhead`]).
    ahead: Option<Listing>,
}

impl<R: LakeRecord> Batch<R> {
    fn with_capacity(n: usize) -> Self {
        Self { records: Records::with_capacity(n), bytes: 0, seq: 0, listed: None, ahead: None }
    }

    /// The days its records fall on.
    fn days(&self) -> BTreeSet<NaiveDate> {
        self.records.day_numbers().into_iter().filter_map(date_of_day).collect()
    }

    fn push(&mut self, r: R) {
        let key = (r.identity().key(), r.fingerprint());
        self.bytes += r.approx_bytes().saturating_sub(std::mem::size_of::<R>());
        self.bytes += Records::<R>::OVERHEAD + self.records.push(r, key);
    }

    fn full(&self, opts: &WriterOptions) -> bool {
        self.records.len() >= opts.batch_rows || self.bytes >= opts.batch_bytes
    }
}

impl<R: LakeRecord> Committer<R> {
    fn commit(&mut self, mut batch: Batch<R>) -> Result<()> {
        let seq = batch.seq;
        // Each day's records in the order they came, so the first delivery of an id is the
        // one kept.
        let runs: Vec<Vec<usize>> = batch.records.by_day().into_iter().map(|d| d.1).collect();
        // Every day's date before any is written: a record out of the calendar fails the batch.
        let dates: Vec<NaiveDate> =
            runs.iter().map(|run| partition_of(&batch.records[run[0]])).collect::<Result<_>>()?;
        let days: BTreeSet<NaiveDate> = dates.iter().copied().collect();
        let mut listings = self.listings(&days, batch.listed.take(), batch.ahead.take())?;
        let mut written = BTreeSet::new();
        for (run, dt) in runs.into_iter().zip(dates) {
            let listed = listings.remove(&dt).unwrap_or_default();
            match self.commit_day(dt, &batch, &run, listed) {
                Ok(true) => {
                    written.insert(dt);
                }
                Ok(false) => {}
                Err(e) => {
                    // The in-memory ids may be ahead of the files; reload them if asked again.
                    self.index.forget(dt);
                    return Err(e);
                }
            }
        }
        self.index.trim(&days);
        // The batch's records are freed here; its last file may still be going up.
        drop(batch);
        self.uploads.committed(seq, written)
    }

    /// Adds the days whose rollup checks found them stale to the days written.
    fn settle_checks(&mut self) {
        if let Some(checks) = &mut self.checks {
            checks.settle(&mut self.touched);
        }
    }

    /// The data files of each of `days` now, or as `listed` when the batch was handed over,
    /// or as listed ahead by a batch before; none for a day listed at most
    /// [`listing::LISTING_FRESH`] ago where listings are reused (its files since are this
    /// writer's own, already in the index). A day whose ids were evicted from the index is
    /// listed again once every file handed to the uploads is put: its files still going up
    /// were in no earlier listing, and their ids are no longer held. `ahead` is kept for the
    /// batches after.
    fn listings(
        &mut self,
        days: &BTreeSet<NaiveDate>,
        listed: Option<Listing>,
        ahead: Option<Listing>,
    ) -> Result<HashMap<NaiveDate, Vec<ObjectMeta>>> {
        let mut out: HashMap<NaiveDate, Vec<ObjectMeta>> = match listed {
            Some(listed) => listed.recv()?.into_iter().collect(),
            None => HashMap::new(),
        };
        self.listed_ahead.take(days, &mut out)?;
        if let Some(ahead) = ahead {
            self.listed_ahead.keep(ahead);
        }
        let evicted: Vec<NaiveDate> =
            days.iter().copied().filter(|dt| self.index.evicted.contains(dt)).collect();
        if !evicted.is_empty() {
            self.uploads.flush()?;
            for dt in &evicted {
                out.remove(dt);
            }
        }
        let unlisted = days.iter().copied().filter(|dt| !out.contains_key(dt));
        let missing: Vec<NaiveDate> = match &self.listed_at {
            Some(listed_at) => listed_at.due(unlisted, |dt| self.index.parts.contains_key(&dt)),
            None => unlisted.collect(),
        };
        out.extend(listing::list_days::<R>(&self.lake, missing)?);
        Ok(out)
    }

    /// Writes the events `batch[i]` for `i` in `day` (all of day `dt`, in input order), the
    /// day's data files being `listed`; whether the day's rollups need building (new records,
    /// or found stale).
    fn commit_day(
        &mut self,
        dt: NaiveDate,
        batch: &Batch<R>,
        day: &[usize],
        listed: Vec<ObjectMeta>,
    ) -> Result<bool> {
        let part = self.index.load::<R>(&self.lake, dt, listed)?;
        let mut fresh: Vec<usize> = Vec::with_capacity(day.len());
        let items: Vec<(u128, u64)> = day.iter().map(|&i| batch.records.key(i)).collect();
        let held = part.ids.add_all(&items);
        for ((&i, &(_, fp)), held) in day.iter().zip(&items).zip(held) {
            match held {
                Some(held) => {
                    self.stats.duplicates += 1;
                    if held != fp {
                        let e = &batch.records[i];
                        self.stats.conflicting += 1;
                        tracing::warn!(
                            table = R::TABLE,
                            id = %e.identity(),
                            source = %e.source(),
                            "Duplicate id with different content; the first copy is kept."
                        );
                    }
                }
                None => fresh.push(i),
            }
        }
        self.index.entries += fresh.len();
        if fresh.is_empty() {
            // Nothing new, as when a run killed before its rollups is run again: the records
            // are in the lake, and their day is rolled up now if that run never did.
            if self.checked.insert(dt) {
                if let Some(checks) = &mut self.checks {
                    checks.start(&self.lake, dt, &mut self.touched);
                } else if listing::is_stale(&self.lake, dt) {
                    self.touched.insert(dt);
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        let batch = &batch.records;
        let mut order = fresh;
        batch.sort(&mut order);
        for chunk in order.chunks(self.opts.max_rows_per_file.max(1)) {
            let props = crate::record::file_properties(chunk.first().map(|&i| &batch[i]));
            // The file is named from its ids as it is encoded, a slice at a time: the slice's
            // records (a chunk of its tenant's after another: `Records`) are fetched once for
            // the name (and the calls of unknown usage) and found in the cache for the Arrow
            // arrays. The name is known once the last slice is encoded.
            let mut usage_unknown = 0;
            let mut name = crate::layout::DataFileName::default();
            let encoding = crate::layout::data_file(R::TABLE, dt, "(being encoded)");
            // Built and encoded a slice at a time: never the whole file as Arrow arrays.
            let mut file = Encoder::coded(&encoding, R::schema(), props, R::CODED)?;
            // The rows' keys in file order, for this process's rollup of the file.
            let remember =
                R::TABLE == USAGE_EVENTS && self.lake.row_keys().room_for(dt, chunk.len());
            let mut row_keys = Vec::with_capacity(if remember { chunk.len() } else { 0 });
            for rows in chunk.chunks(ENCODE_ROWS) {
                for &i in rows {
                    usage_unknown += u64::from(batch[i].usage_unknown());
                    name.push(batch[i].identity());
                    if remember {
                        row_keys.push(batch.key(i).0);
                    }
                }
                let records = R::coded_batch(rows.iter().map(|&i| &batch[i]))
                    .map_err(|source| Error::Arrow { path: encoding.clone().into(), source })?;
                file.write(&records)?;
            }
            let key = crate::layout::data_file(R::TABLE, dt, &name.hex());
            let bytes = file.finish()?;
            // Known before it is put, so that a listing meanwhile (which may or may not show
            // it) never reads its ids back.
            let name = key.rsplit('/').next().unwrap_or_default().to_owned();
            if let Some(part) = self.index.parts.get_mut(&dt) {
                part.files.insert(name);
            }
            // Created only if absent, on the upload thread while the next is encoded.
            let row_keys = remember.then_some(row_keys);
            self.uploads.put(upload::File { key, bytes, row_keys })?;
            self.stats.files += 1;
            self.stats.written += chunk.len() as u64;
            self.stats.usage_unknown += usage_unknown;
        }
        self.touched.insert(dt);
        Ok(true)
    }
}

enum Msg<R> {
    Batch(Box<Batch<R>>),
    /// Reply once every batch sent before is committed.
    Sync(mpsc::SyncSender<()>),
    /// Reply with the days written since the last such message.
    TakeTouched(mpsc::SyncSender<BTreeSet<NaiveDate>>),
}

/// Writes records (usage events by default, or agent spans) to a lake exactly once.
///
/// Batches are committed on a background thread, one at a time and in order, their files put
/// from another while the next is encoded; at most one batch waits while another is written,
/// and one encoded file while another goes up, so memory stays bounded by two batches and two
/// files.
pub struct EventWriter<R: LakeRecord = UsageEvent> {
    lake: Lake,
    opts: WriterOptions,
    batch: Batch<R>,
    tx: Option<mpsc::SyncSender<Msg<R>>>,
    worker: Option<JoinHandle<(Committer<R>, Option<Error>)>>,
    ahead: Option<AheadLink>,
    /// Batches handed to the committer.
    handed: u64,
    /// Where listings are round trips: when each day was last listed for a commit.
    listed_at: Option<Arc<ListedAt>>,
}

impl<R: LakeRecord> EventWriter<R> {
    /// A writer into `lake`.
    pub fn new(lake: &Lake, opts: WriterOptions) -> Self {
        Self::build(lake, opts, None)
    }

    /// A writer into `lake` whose days are rolled up by `ahead` as the input moves past them.
    pub fn with_rollups_ahead(lake: &Lake, opts: WriterOptions, ahead: &RollupsAhead) -> Self {
        Self::build(lake, opts, Some(ahead.link()))
    }

    fn build(lake: &Lake, opts: WriterOptions, ahead: Option<AheadLink>) -> Self {
        let listed_at = lake.store().round_trips().then(|| Arc::new(ListedAt::default()));
        let mut committer = Committer {
            _kind: std::marker::PhantomData,
            lake: lake.clone(),
            opts,
            index: DedupIndex::new(opts.index_budget),
            touched: BTreeSet::new(),
            checked: BTreeSet::new(),
            stats: WriteStats::default(),
            uploads: Uploads::new(lake.store().clone(), ahead.clone(), lake.row_keys().clone()),
            listed_at: listed_at.clone(),
            listed_ahead: ListedAhead::default(),
            checks: (listed_at.is_some() && ahead.is_none()).then(StaleChecks::default),
        };
        let (tx, rx) = mpsc::sync_channel::<Msg<R>>(0);
        let worker = std::thread::spawn(move || {
            for msg in rx {
                match msg {
                    Msg::Batch(batch) => {
                        if let Err(e) = committer.commit(*batch) {
                            return (committer, Some(e));
                        }
                    }
                    Msg::Sync(reply) => {
                        if let Err(e) = committer.uploads.flush() {
                            return (committer, Some(e));
                        }
                        let _ = reply.send(());
                    }
                    Msg::TakeTouched(reply) => {
                        committer.settle_checks();
                        let _ = reply.send(std::mem::take(&mut committer.touched));
                    }
                }
            }
            committer.settle_checks();
            (committer, None)
        });
        Self {
            lake: lake.clone(),
            opts,
            batch: Batch::with_capacity(opts.batch_rows.min(1 << 20)),
            tx: Some(tx),
            worker: Some(worker),
            ahead,
            handed: 0,
            listed_at,
        }
    }

    /// The committer's error, once it has stopped.
    fn failure(&mut self) -> Error {
        self.tx = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok((_, Some(e)))) => e,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => Error::NotALake {
                root: self.lake.uri().into(),
                reason: "the lake writer stopped".into(),
            },
        }
    }

    fn send(&mut self, msg: Msg<R>) -> Result<()> {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(msg).is_ok());
        if sent { Ok(()) } else { Err(self.failure()) }
    }

    /// Hands `batch` to the committer (waiting while it commits the one before).
    fn hand(&mut self, mut batch: Batch<R>) -> Result<()> {
        self.handed += 1;
        batch.seq = self.handed;
        let slow = self.listed_at.is_some();
        let days = if slow || self.ahead.is_some() { batch.days() } else { BTreeSet::new() };
        if let Some(listed_at) = &self.listed_at {
            // Listed while the committer finishes the batch before: on S3 a listing is a round
            // trip the committer, which every record goes through, would otherwise wait for.
            // A file another writer adds after the listing is a race the readers resolve
            // anyway (two writers storing one id at the same moment). Days listed for a
            // commit less than `LISTING_FRESH` ago are not listed again (whether their ids are
            // still held, the committer checks).
            let stale = listed_at.due(days.iter().copied(), |_| true);
            if !stale.is_empty() {
                batch.listed = Some(Listing::of::<R>(&self.lake, stale));
            }
            let next = listing::day_after(&days, listed_at);
            if !next.is_empty() {
                batch.ahead = Some(Listing::of::<R>(&self.lake, next));
            }
        }
        if let Some(ahead) = &self.ahead {
            ahead.handed(batch.seq, days);
        }
        self.send(Msg::Batch(Box::new(batch)))
    }

    /// Adds an event; hands the batch to the committer when it is full.
    ///
    /// # Errors
    ///
    /// An earlier batch failed to commit (see [`EventWriter::commit`]).
    pub fn push(&mut self, e: R) -> Result<()> {
        self.batch.push(e);
        if self.batch.full(&self.opts) {
            // The next batch is made with room for as many records as this one and an eighth:
            // grown by doubling instead, a batch's vectors (tens of MB) were copied twice on
            // their way to its size. Room not filled is address space, not memory.
            let rows = self.batch.records.len();
            let next = (rows + rows / 8).min(self.opts.batch_rows);
            let batch = std::mem::replace(&mut self.batch, Batch::with_capacity(next));
            self.hand(batch)?;
        }
        Ok(())
    }

    /// Hands the events pushed so far to the committer without waiting for them to be
    /// durable (a run's last batch, so that another writer's can be handed over meanwhile).
    ///
    /// # Errors
    ///
    /// An earlier batch failed to commit.
    pub fn hand_over(&mut self) -> Result<()> {
        let batch = std::mem::replace(&mut self.batch, Batch::with_capacity(0));
        if batch.records.is_empty() { Ok(()) } else { self.hand(batch) }
    }

    /// Writes every event pushed so far and waits until they are durable.
    ///
    /// # Errors
    ///
    /// The lake cannot be read or written. Files written before the error are complete; a
    /// rerun of the same input writes the rest.
    pub fn commit(&mut self) -> Result<()> {
        self.hand_over()?;
        let (reply, done) = mpsc::sync_channel(1);
        self.send(Msg::Sync(reply))?;
        match done.recv() {
            Ok(()) => Ok(()),
            Err(_) => Err(self.failure()),
        }
    }

    /// Commits the last batch and rebuilds the rollups of every partition this writer touched.
    ///
    /// # Errors
    ///
    /// The lake cannot be written, or a touched partition's rollup failed (the others are
    /// rebuilt; see [`Error::RollupsFailed`]).
    pub fn finish(self) -> Result<WriteStats> {
        let lake = self.lake.clone();
        let (mut stats, touched) = self.finish_without_rollups()?;
        stats.rollups = lake.rebuild_rollups(&touched).into_result()?.len() as u64;
        Ok(stats)
    }

    /// Commits the last batch; returns the counts and the days written, leaving their rollups
    /// to [`Lake::rebuild_rollups`] (when several writers share a run, the rollups are rebuilt
    /// once for all of them). Until then the days' rollups are stale, which readers see.
    ///
    /// # Errors
    ///
    /// The lake cannot be written.
    pub fn finish_without_rollups(mut self) -> Result<(WriteStats, BTreeSet<NaiveDate>)> {
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
        Ok((committer.stats, committer.touched))
    }

    /// The days written since the last call (for a long-running writer that rolls up on a
    /// schedule). Waits until everything pushed so far is committed.
    ///
    /// # Errors
    ///
    /// An earlier batch failed to commit.
    pub fn take_touched(&mut self) -> Result<BTreeSet<NaiveDate>> {
        self.commit()?;
        let (reply, done) = mpsc::sync_channel(1);
        self.send(Msg::TakeTouched(reply))?;
        done.recv().map_err(|_| self.failure())
    }
}

impl Lake {
    /// Rebuilds the rollups of `days`, each on its own: a partition that fails is reported in
    /// the result and leaves the others alone.
    pub fn rebuild_rollups(&self, days: &BTreeSet<NaiveDate>) -> RollupReport {
        let days: Vec<NaiveDate> = days.iter().copied().collect();
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        rebuild_hourly_all(self, &days, threads)
    }

    /// Makes the rollups of every partition with data in `[from, to)` current: those that are
    /// stale (a writer stopped before rolling up, a rollup failed, another writer added files)
    /// are rebuilt. Commands that read rollups call this first, so they never read a
    /// partition's rollup without its committed data.
    ///
    /// # Errors
    ///
    /// A partition cannot be listed, or [`Error::RollupsFailed`] naming each partition whose
    /// rebuild failed (the others are rebuilt).
    pub fn ensure_rollups(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<NaiveDate>> {
        let stale: BTreeSet<NaiveDate> =
            self.stale_rollups(from, to)?.into_iter().map(|(d, _)| d).collect();
        if !stale.is_empty() {
            tracing::info!(days = stale.len(), "Rebuilding rollups that are not up to date.");
        }
        self.rebuild_rollups(&stale).into_result()
    }

    /// The partitions in `[from, to)` that hold data or rollups.
    ///
    /// # Errors
    ///
    /// A table cannot be listed.
    pub fn rollup_days(&self, from: NaiveDate, to: NaiveDate) -> Result<BTreeSet<NaiveDate>> {
        let tables: Vec<&str> = [UsageEvent::TABLE, agentmeter_schemas::AgentSpan::TABLE]
            .into_iter()
            .chain(crate::rollup::ROLLUP_TABLES)
            .collect();
        let listed = concurrently(tables, self.requests_at_once(), |t| self.partitions(t))?;
        Ok(listed.into_iter().flatten().filter(|d| *d >= from && *d < to).collect())
    }

    /// The partitions in `[from, to)` whose rollups are not current, with why.
    ///
    /// # Errors
    ///
    /// A partition cannot be listed or a rollup footer cannot be read.
    pub fn stale_rollups(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String)>> {
        let days: Vec<NaiveDate> = self.rollup_days(from, to)?.into_iter().collect();
        // Each day's state is its own footers and listings (each day's sent side by side).
        let at_once = self.requests_at_once() / crate::rollup::ROLLUP_TABLES.len();
        let states = concurrently(days.clone(), at_once, |dt| rollup_state(self, dt))?;
        Ok(days
            .into_iter()
            .zip(states)
            .filter_map(|(dt, s)| match s {
                RollupState::Stale { reason } => Some((dt, reason)),
                RollupState::Current => None,
            })
            .collect())
    }

    /// Independent requests worth sending side by side: where each is a round trip (S3),
    /// [`REQUESTS_AT_ONCE`]; a local directory answers at once, so one at a time there.
    pub(crate) fn requests_at_once(&self) -> usize {
        if self.store().round_trips() { REQUESTS_AT_ONCE } else { 1 }
    }
}

impl<R: LakeRecord> Drop for EventWriter<R> {
    fn drop(&mut self) {
        // Uncommitted events are dropped (as on a crash); committed ones are whole files.
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
