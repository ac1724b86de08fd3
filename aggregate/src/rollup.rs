//! `usage_hourly`, `tenant_hourly` and `agent_invocations`: rebuilt whole for a partition from
//! that partition's `usage_events` and `agent_spans`, so they are always consistent with them,
//! late data included, however often they are rebuilt. `tenant_hourly` keeps each tenant's peak
//! requests in one second of each hour, so rate-limit checks never rescan the events. Each
//! event id and each span counts once, however many writers stored it (until compaction
//! removes the extra copies, an id may be in two files).
//!
//! Each rollup file records in its footer which data files it was computed from
//! ([`COVERS_KEY`]). A rollup is current when that record equals the partition's data files
//! now; anything else (a writer that stopped before rolling up, a rollup that failed, files
//! added by another writer, a compaction) makes it stale, which [`rollup_state`] tells from
//! a listing and three footers, without reading any data. No marker has to be written before
//! data, so no crash can leave a stale rollup looking current.
//!
//! Rebuilds race safely: a rebuild reads the rollups' versions first, then lists the data
//! files, and replaces each rollup only if it is still the version it read. Whatever a version
//! it read covers, its own listing (made later) holds too, so it never replaces a rollup that
//! covered more; and a rollup written after its read makes its write fail. A rebuild that
//! loses checks again, and is done if the rollups are now current, else starts over.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use agentmeter_schemas::tables::{
    AGENT_INVOCATIONS, AGENT_SPANS, HourlyKey, HourlyMeasures, InvocationRow, TENANT_HOURLY,
    TenantHour, USAGE_EVENTS, USAGE_HOURLY, agent_invocations_batch, agent_invocations_schema,
    hour_start_ms, hourly_batch, tenant_hourly_batch, tenant_hourly_schema, usage_hourly_schema,
};
use agentmeter_schemas::{ModelId, ServiceTier, TenantId, Tier, Tokens, UserId, prompt_band};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use chrono::NaiveDate;
use parquet::file::metadata::KeyValue;

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::layout;
use crate::parquet_io::{encode, properties};
use crate::record::Identity;
use crate::store::{Condition, Fetch, ObjectMeta, Put, concurrently};

/// The one file of a rollup partition: a fixed name, so a rebuild replaces it.
pub const HOURLY_FILE: &str = layout::PARTITION_FILE;

/// The footer key of a rollup file naming the data files it covers.
pub const COVERS_KEY: &str = "agentmeter.covers";

/// The rollup tables, each one file per partition.
pub const ROLLUP_TABLES: [&str; 3] = [USAGE_HOURLY, TENANT_HOURLY, AGENT_INVOCATIONS];

/// The version of what a rebuild computes. A rollup that records another version (or none)
/// is stale: raising it when the rollups gain columns or change meaning makes every reader
/// rebuild what an older version wrote instead of reading it. Version 2 added unknown usage
/// and the chat spans' calls and tokens; version 3 counts lifetime series as increments;
/// version 4 keys rows by service tier and prompt band and sums 1-hour cache writes.
pub const ROLLUP_VERSION: u32 = 4;

/// How many times a rebuild starts over after losing a race (a file compacted away while it
/// was read, a rollup replaced by another rebuild that was not current either).
const ATTEMPTS: usize = 5;

/// The `usage_events` columns a rollup reads (not the sources, the bulk of the data). Files
/// written before `session_id` existed lack it: their lines name no session; files written
/// before version 3 lack the last two: standard tier, no 1-hour cache writes.
const INPUT: [&str; 14] = [
    "event_time",
    "event_id",
    "tier",
    "tenant_id",
    "user_id",
    "model_id",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "session_id",
    "cache_write_1h_tokens",
    "service_tier",
];

/// The `usage_events` columns a rollup groups by, in the order of its interners: read as
/// dictionaries, each distinct value of a column chunk is looked up once, not once a row.
pub(crate) const GROUPED: [&str; 4] = ["tier", "tenant_id", "user_id", "model_id"];

/// The code of a null where a column may hold nulls (no interned value has it).
pub(crate) const NULL_CODE: u32 = u32::MAX;

/// A string column of a batch as the day's codes, row by row. Read as a dictionary, each
/// distinct value of a column chunk is looked up once; the codes only name values (every
/// rollup row is ordered by the values themselves), so their order does not matter.
#[derive(Default)]
pub(crate) struct ColumnCodes {
    /// The dictionary last seen (a column chunk's batches share one) and its values' codes,
    /// [`NULL_CODE`] for a value no row has named yet.
    dictionary: Option<(ArrayRef, Vec<u32>)>,
    /// The batch's codes.
    rows: Vec<u32>,
}

impl ColumnCodes {
    /// Codes `batch`'s column `name` (a dictionary of strings, or strings). A null is
    /// [`NULL_CODE`] if `nullable`, else the error `"{table} has nulls"`.
    pub(crate) fn read(
        &mut self,
        batch: &RecordBatch,
        name: &str,
        (table, nullable): (&str, bool),
        strings: &mut Interner,
    ) -> std::result::Result<&[u32], String> {
        let column =
            batch.column_by_name(name).ok_or_else(|| format!("column {name} is missing"))?;
        self.rows.clear();
        if !nullable && column.null_count() > 0 {
            return Err(format!("{table} has nulls"));
        }
        let not_utf8 = || format!("{name} is not utf8");
        let Some(dict) = column.as_dictionary_opt::<Int32Type>() else {
            let values = column.as_string_opt::<i32>().ok_or_else(not_utf8)?;
            self.rows.extend((0..values.len()).map(|i| {
                if values.is_valid(i) { strings.code(values.value(i)) } else { NULL_CODE }
            }));
            return Ok(&self.rows);
        };
        let values = dict.values().as_string_opt::<i32>().ok_or_else(not_utf8)?;
        let (shared, mut codes) = self
            .dictionary
            .take()
            .filter(|(v, _)| Arc::ptr_eq(v, dict.values()))
            .unwrap_or_else(|| (dict.values().clone(), vec![NULL_CODE; values.len()]));
        let out_of_range = || format!("{name}: dictionary key out of range");
        for (i, &k) in dict.keys().values().iter().enumerate() {
            if dict.is_null(i) {
                self.rows.push(NULL_CODE);
                continue;
            }
            let k = usize::try_from(k).map_err(|_| out_of_range())?;
            let code = codes.get_mut(k).ok_or_else(out_of_range)?;
            if *code == NULL_CODE {
                *code = strings.code(values.value(k));
            }
            self.rows.push(*code);
        }
        self.dictionary = Some((shared, codes));
        Ok(&self.rows)
    }
}

/// The 128-bit keys of the ids counted so far.
type IdSet = crate::writer::DigestSet;

/// The data files of one partition that its rollups are computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// `usage_events` files.
    pub events: Vec<ObjectMeta>,
    /// `agent_spans` files.
    pub spans: Vec<ObjectMeta>,
}

impl Coverage {
    /// The data files of partition `dt` now.
    ///
    /// # Errors
    ///
    /// A partition cannot be listed.
    pub fn of(lake: &Lake, dt: NaiveDate) -> Result<Self> {
        // Both listings side by side: on S3 each is a round trip.
        let [events, spans]: [Vec<ObjectMeta>; 2] =
            concurrently(vec![USAGE_EVENTS, AGENT_SPANS], 2, |table| lake.files(table, dt))?
                .try_into()
                .unwrap_or_else(|_| unreachable!("two tables listed"));
        Ok(Self { events, spans })
    }

    /// True when the partition has no data file.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.spans.is_empty()
    }

    /// `events=N;spans=M;blake3=<32 hex>;rollup=V`: the counts, a digest of the file names
    /// and the version of the rollup computation (`ROLLUP_VERSION`).
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (tag, files) in [("e", &self.events), ("s", &self.spans)] {
            for f in files {
                h.update(tag.as_bytes());
                h.update(f.name().as_bytes());
                h.update(b"\n");
            }
        }
        let hex = h.finalize().to_hex();
        format!(
            "events={};spans={};blake3={};rollup={ROLLUP_VERSION}",
            self.events.len(),
            self.spans.len(),
            &hex[..32]
        )
    }
}

/// Whether a partition's rollups can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollupState {
    /// Every rollup file covers exactly the partition's data files (or there are neither).
    Current,
    /// A rollup is missing or was computed from other data files than the partition holds.
    Stale {
        /// Which table and why.
        reason: String,
    },
}

/// Each rollup file's version and the data files it says it covers (`None`: no file).
type Versions = [Option<(String, String)>; 3];

/// The rollups' versions and what they cover, read from their footers; none read for a
/// rollup that `listed` did not find.
fn versions(lake: &Lake, dt: NaiveDate, listed: Option<&ListedRollups>) -> Result<Versions> {
    let unlisted = |table| listed.and_then(|l: &ListedRollups| l.has(table, dt)) == Some(false);
    // The footers side by side: on S3 each is a round trip.
    let reads = ROLLUP_TABLES.iter().filter(|t| !unlisted(t)).count();
    let footers = concurrently(ROLLUP_TABLES.to_vec(), reads, |table| {
        if unlisted(table) {
            return Ok(None);
        }
        let key = layout::partition_file(table, dt);
        Ok(lake.store().parquet_footer(&key)?.map(|(meta, etag)| {
            let covers = meta
                .file_metadata()
                .key_value_metadata()
                .and_then(|kv| kv.iter().find(|k| k.key == COVERS_KEY))
                .and_then(|k| k.value.clone())
                // A rollup of an older version records nothing: it covers nothing known.
                .unwrap_or_default();
            (etag, covers)
        }))
    })?;
    Ok(footers.try_into().unwrap_or_else(|_| unreachable!("three footers read")))
}

/// Whether the rollups as read (`versions`) cover `coverage`.
fn state_of(versions: &Versions, coverage: &Coverage) -> RollupState {
    let want = coverage.digest();
    let want_version = format!(";rollup={ROLLUP_VERSION}");
    let counts = |d: &str| -> String { d.split(';').take(2).collect::<Vec<_>>().join(" ") };
    for (table, version) in ROLLUP_TABLES.iter().zip(versions) {
        let reason = match version {
            None if coverage.is_empty() => continue,
            None => format!("{table} is missing"),
            Some(_) if coverage.is_empty() => format!("{table} has no data files"),
            Some((_, got)) if *got == want => continue,
            Some((_, got)) if got.is_empty() || !got.ends_with(&want_version) => {
                format!("{table} was written by an older version")
            }
            Some((_, got)) if counts(got) == counts(&want) => {
                format!("{table} was rolled up from other data files ({})", counts(got))
            }
            Some((_, got)) => format!(
                "{table} was rolled up from {}, the partition holds {}",
                counts(got),
                counts(&want)
            ),
        };
        return RollupState::Stale { reason };
    }
    RollupState::Current
}

/// Whether partition `dt`'s rollups are current: a listing and three footers, no data read.
///
/// # Errors
///
/// The partition cannot be listed or a rollup footer cannot be read.
pub fn rollup_state(lake: &Lake, dt: NaiveDate) -> Result<RollupState> {
    let v = versions(lake, dt, None)?;
    Ok(state_of(&v, &Coverage::of(lake, dt)?))
}

/// (hour, tier, tenant, user, model codes, service tier, prompt band).
type Group = (i64, u32, u32, u32, u32, ServiceTier, i64);

mod all;
mod gate;
mod listed;
mod series;
mod strings;
pub use all::{RollupReport, rebuild_hourly_all};
pub(crate) use gate::DayGate;
#[cfg(test)]
use gate::EXTRA_DAY_BYTES;
pub(crate) use listed::ListedRollups;
use series::{SessionLine, Sessions};
pub(crate) use strings::Interner;
use strings::string_ranks;

/// One tenant-hour being summed: measures, distinct user codes, peak requests in a second.
type TenantAcc = (HourlyMeasures, std::collections::BTreeSet<u32>, i64);

/// (second since the epoch, tier code, tenant code) of every request: sorted and counted once
/// the day is read (16 bytes a request, against about 40 for a map of counts, whose entries are
/// as many as the requests when traffic is spread thin).
type Seconds = Vec<(i64, u32, u32)>;

/// The busiest second of each (hour, tier code, tenant code).
fn peak_seconds(mut seconds: Seconds) -> HashMap<(i64, u32, u32), i64> {
    // By tenant code, then second: a data file's rows come by tenant, then time, and tenants
    // are coded as first met, so a day is mostly a few sorted runs (one per file), which a
    // stable sort merges rather than sorting from scratch.
    seconds.sort_by_key(|&(second, tier, tenant)| (tenant, second, tier));
    let mut peaks: HashMap<(i64, u32, u32), i64> = HashMap::default();
    for run in seconds.chunk_by(|a, b| a == b) {
        let (second, t, n) = run[0];
        let peak = peaks.entry((hour_start_ms(second * 1000), t, n)).or_default();
        *peak = (*peak).max(run.len() as i64);
    }
    peaks
}

/// What a day's rollup gathers from its `usage_events` batches.
struct Day<'a> {
    seen: &'a mut IdSet,
    strings: &'a mut [Interner; 4],
    columns: &'a mut [ColumnCodes; 4],
    groups: &'a mut HashMap<Group, HourlyMeasures>,
    seconds: &'a mut Seconds,
    sessions: &'a mut Sessions,
}

/// Where a batch's identity keys come from.
#[derive(Clone, Copy)]
enum RowIds<'a> {
    /// Kept by this process's writer, one a row.
    Kept(&'a [u128]),
    /// Hashed from the batch's `event_id`.
    Read(&'a arrow_array::StringArray),
}

/// Adds a batch of `usage_events` rows to the day; `known` holds the rows' identity keys, one
/// a row, when this process kept them (the batch then has no `event_id`).
fn add_batch(
    batch: &RecordBatch,
    known: Option<&[u128]>,
    day: Day<'_>,
) -> std::result::Result<(), String> {
    let Day { seen, strings, columns, groups, seconds, sessions } = day;
    let col = |name: &str| batch.column_by_name(name).ok_or(format!("column {name} is missing"));
    let time = col("event_time")?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or("event_time is not timestamp(ms)")?;
    let [tiers, tenants, users, models] = columns;
    let [s0, s1, s2, s3] = strings;
    let table = (USAGE_EVENTS, false);
    let tiers = tiers.read(batch, GROUPED[0], table, s0)?;
    let tenants = tenants.read(batch, GROUPED[1], table, s1)?;
    let users = users.read(batch, GROUPED[2], table, s2)?;
    let models = models.read(batch, GROUPED[3], table, s3)?;
    let mut ints = Vec::with_capacity(5);
    for name in &INPUT[6..11] {
        ints.push(
            col(name)?.as_primitive_opt::<Int64Type>().ok_or(format!("{name} is not int64"))?,
        );
    }
    let ids = match known {
        Some(keys) => {
            debug_assert_eq!(keys.len(), batch.num_rows(), "one kept key a row");
            RowIds::Kept(keys)
        }
        None => RowIds::Read(col("event_id")?.as_string_opt().ok_or("event_id is not utf8")?),
    };
    let session = match batch.column_by_name("session_id") {
        Some(c) => Some(c.as_string_opt::<i32>().ok_or("session_id is not utf8")?),
        None => None,
    };
    let one_hour = match batch.column_by_name("cache_write_1h_tokens") {
        Some(c) => {
            Some(c.as_primitive_opt::<Int64Type>().ok_or("cache_write_1h_tokens is not int64")?)
        }
        None => None,
    };
    let service_tier = match batch.column_by_name("service_tier") {
        Some(c) => Some(c.as_string_opt::<i32>().ok_or("service_tier is not utf8")?),
        None => None,
    };
    if time.null_count() > 0
        || matches!(ids, RowIds::Read(a) if a.null_count() > 0)
        || ints.iter().any(|a| a.null_count() > 0)
        || one_hour.is_some_and(|a| a.null_count() > 0)
        || service_tier.is_some_and(|a| a.null_count() > 0)
    {
        return Err("usage_events has nulls".into());
    }
    for row in 0..batch.num_rows() {
        // An id two writers stored counts once: its copy in the first file by name.
        let id = match ids {
            RowIds::Kept(keys) => keys[row],
            RowIds::Read(ids) => Identity::of(ids.value(row)).key(),
        };
        if !seen.insert(id) {
            continue;
        }
        let t = Tokens {
            input: ints[0].value(row),
            output: ints[1].value(row),
            total: ints[2].value(row),
            cache_read: ints[3].value(row),
            cache_write: ints[4].value(row),
            cache_write_1h: one_hour.map_or(0, |a| a.value(row)),
        };
        let tier = match service_tier {
            None => ServiceTier::Standard,
            Some(a) => ServiceTier::from_code(a.value(row))
                .ok_or_else(|| format!("service_tier {:?} is not a known tier", a.value(row)))?,
        };
        let key = (
            hour_start_ms(time.value(row)),
            tiers[row],
            tenants[row],
            users[row],
            models[row],
            tier,
            prompt_band(&t),
        );
        seconds.push((time.value(row).div_euclid(1000), key.1, key.2));
        let m = groups.entry(key).or_default();
        m.invocations = m.invocations.checked_add(1).ok_or("invocations overflow")?;
        // A call that reported no usage: counted apart, so that no one bills it as free.
        if t.input == 0 && t.total == 0 {
            m.usage_unknown += 1;
        }
        m.tokens = m.tokens.checked_add(&t).ok_or("token sums overflow")?;
        if let Some(s) = session.filter(|s| s.is_valid(row)) {
            sessions.lines.push(SessionLine {
                // Keyed per process, as identities are: no input collides with another.
                session: agentmeter_schemas::keyed::key128(s.value(row).as_bytes()),
                id,
                time_ms: time.value(row),
                tokens: t,
                codes: [key.1, key.2, key.3, key.4],
                service_tier: tier,
            });
        }
    }
    Ok(())
}

/// Rebuilds the rollups of partition `dt` from the data files it holds now, recording them
/// in each rollup's footer, unless they are current already. Returns the `usage_hourly` row
/// count (0 when nothing was rebuilt).
///
/// # Errors
///
/// The lake cannot be read or written, holds an invalid identifier, a sum overflows `i64`, or
/// other writers kept changing the partition through every attempt.
pub fn rebuild_hourly(lake: &Lake, dt: NaiveDate) -> Result<usize> {
    rebuild_hourly_within(lake, dt, u64::MAX, None, None).map(Option::unwrap_or_default)
}

/// As [`rebuild_hourly`], unless the rollups are stale and the data files of `dt` total more
/// than `max_bytes`: then nothing is read or written, and `None`. A rollup that `listed`
/// did not find is not read on the first attempt.
///
/// # Errors
///
/// As [`rebuild_hourly`].
pub(crate) fn rebuild_hourly_within(
    lake: &Lake,
    dt: NaiveDate,
    max_bytes: u64,
    gate: Option<&DayGate>,
    listed: Option<&ListedRollups>,
) -> Result<Option<usize>> {
    Ok(rebuild_day(lake, dt, max_bytes, gate, listed, false)?.map(|(n, _)| n))
}

/// [`rebuild_hourly_within`], whose rollups, where puts are round trips and `defer` says so,
/// are returned to be put rather than put: the caller puts them with [`put_held`], and starts
/// the day again if another writer replaced one first.
pub(crate) fn rebuild_day(
    lake: &Lake,
    dt: NaiveDate,
    max_bytes: u64,
    gate: Option<&DayGate>,
    mut listed: Option<&ListedRollups>,
    defer: bool,
) -> Result<Option<(usize, HeldPuts)>> {
    for _ in 0..ATTEMPTS {
        // Versions first, then the listing: whatever a current rollup covers, the listing has.
        // After a lost race, every footer is read again, and the data files listed again.
        let listed = listed.take();
        let versions = versions(lake, dt, listed)?;
        let coverage = match listed.and_then(|l| l.coverage(dt)) {
            Some(coverage) => coverage,
            None => Coverage::of(lake, dt)?,
        };
        if state_of(&versions, &coverage) == RollupState::Current {
            return Ok(Some((0, HeldPuts::new())));
        }
        let bytes: u64 = coverage.events.iter().chain(&coverage.spans).map(|f| f.size).sum();
        if bytes > max_bytes {
            return Ok(None);
        }
        let _pass = gate.map(|g| g.enter(bytes));
        match rebuild_from(lake, dt, &versions, &coverage) {
            Ok(Some((n, held))) if defer => return Ok(Some((n, held))),
            Ok(Some((n, held))) => {
                if put_held(lake, held)? {
                    return Ok(Some((n, HeldPuts::new())));
                }
            }
            // Lost a race (a file compacted away, a rollup replaced): look again.
            Ok(None) | Err(Error::Vanished { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Corrupt {
        path: layout::partition(USAGE_HOURLY, dt).into(),
        detail: format!("the partition kept changing through {ATTEMPTS} rebuilds; try again"),
    })
}

/// One rebuild from `coverage`: its rows, and the rollups it holds to put where puts are round
/// trips; `None` when another writer replaced a rollup first.
fn rebuild_from(
    lake: &Lake,
    dt: NaiveDate,
    versions: &Versions,
    coverage: &Coverage,
) -> Result<Option<(usize, HeldPuts)>> {
    let keys = ROLLUP_TABLES.map(|t| layout::partition_file(t, dt));
    if coverage.is_empty() {
        for k in &keys {
            lake.store().delete(k)?;
        }
        return Ok(Some((0, HeldPuts::new())));
    }
    let [key, tenant_key, inv_key] = keys;
    let overflow = |table| Error::Overflow { table, dt: dt.to_string() };
    // The rows this process wrote are known before a file is read: the id set and the
    // requests' seconds are made that size at once (a day's worth, hundreds of thousands).
    let rows = lake.row_keys().rows(coverage.events.iter().map(|f| f.key.as_str()));
    let mut seen = IdSet::with_capacity_and_hasher(rows, Default::default());
    let mut strings: [Interner; 4] = Default::default();
    let mut columns: [ColumnCodes; 4] = Default::default();
    let mut groups: HashMap<Group, HourlyMeasures> = HashMap::default();
    let mut seconds = Seconds::with_capacity(rows);
    let mut sessions = Sessions::default();
    // The next files are read while one is summed (on S3, where each read is a round trip).
    let read = |file: &ObjectMeta| {
        // Rows this process wrote come with their keys: `event_id` is neither read nor hashed.
        let known = lake.row_keys().take(&file.key);
        let wanted: Vec<&str> =
            INPUT.into_iter().filter(|c| known.is_none() || *c != "event_id").collect();
        (known, lake.read(file, Some(&wanted), &GROUPED, Fetch::Whole))
    };
    lake.read_ahead(&coverage.events, read, |file, (known, batches)| {
        let mut at = 0;
        for batch in batches? {
            let batch = batch?;
            let rows = batch.num_rows();
            let keys = match &known {
                Some(k) => match k.get(at..at + rows) {
                    Some(keys) => Some(keys),
                    // More rows than keys: counted, and refused below with the totals.
                    None => {
                        at += rows;
                        continue;
                    }
                },
                None => None,
            };
            at += rows;
            let day = Day {
                seen: &mut seen,
                strings: &mut strings,
                columns: &mut columns,
                groups: &mut groups,
                seconds: &mut seconds,
                sessions: &mut sessions,
            };
            add_batch(&batch, keys, day).map_err(|e| {
                if e.contains("overflow") {
                    overflow(USAGE_HOURLY)
                } else {
                    Error::Arrow {
                        path: file.key.clone().into(),
                        source: arrow_schema::ArrowError::SchemaError(e),
                    }
                }
            })?;
        }
        if let Some(k) = known.filter(|k| k.len() != at) {
            let why = format!("{at} rows, {} keys kept for them", k.len());
            let source = arrow_schema::ArrowError::SchemaError(why);
            return Err(Error::Arrow { path: file.key.clone().into(), source });
        }
        Ok(())
    })?;
    drop(seen);
    // Reduced to a peak per tenant-hour before the spans are read.
    let peaks = peak_seconds(seconds);
    sessions.apply(&mut groups).map_err(|_| overflow(USAGE_HOURLY))?;
    // What the spans of the day add, each span once.
    let mut spans = crate::span_rollup::Spans::default();
    let read = |file| lake.read(file, Some(&crate::span_rollup::COLUMNS), &GROUPED, Fetch::Whole);
    lake.read_ahead(&coverage.spans, read, |file, batches| {
        for batch in batches? {
            spans.add_batch(&batch?, &mut strings).map_err(|e| Error::Arrow {
                path: file.key.clone().into(),
                source: arrow_schema::ArrowError::SchemaError(e),
            })?;
        }
        Ok(())
    })?;
    let (agent_rows, mut invocations) =
        spans.rollup(&mut strings).ok_or_else(|| overflow(USAGE_HOURLY))?;
    let span_ids = spans.into_ids();
    for r in agent_rows {
        let key =
            (r.hour_ms, r.tier, r.tenant, r.user, r.model, ServiceTier::Standard, r.prompt_band);
        let m = groups.entry(key).or_default();
        m.agent = m.agent.checked_add(&r.measures).ok_or_else(|| overflow(USAGE_HOURLY))?;
        m.chat = m.chat.checked_add(&r.chat).ok_or_else(|| overflow(USAGE_HOURLY))?;
    }
    let invalid = |e: agentmeter_schemas::IdError| Error::Arrow {
        path: key.clone().into(),
        source: arrow_schema::ArrowError::InvalidArgumentError(e.to_string()),
    };
    // Identifiers are validated once per distinct value, not per row.
    let [tiers, tenants, users, models] = strings;
    let tiers: Vec<Tier> =
        tiers.values.into_iter().map(Tier::new).collect::<Result<_, _>>().map_err(invalid)?;
    let tenants: Vec<TenantId> =
        tenants.values.into_iter().map(TenantId::new).collect::<Result<_, _>>().map_err(invalid)?;
    let users: Vec<UserId> =
        users.values.into_iter().map(UserId::new).collect::<Result<_, _>>().map_err(invalid)?;
    let models: Vec<ModelId> =
        models.values.into_iter().map(ModelId::new).collect::<Result<_, _>>().map_err(invalid)?;
    invocations.sort_unstable_by(|a, b| {
        let order = |i: &crate::span_rollup::Invocation| {
            let (t, s) = &span_ids[i.ids as usize];
            (tenants[i.tenant as usize].as_str(), i.start_ms, &**t, &**s)
        };
        order(a).cmp(&order(b))
    });
    let invocations: Vec<InvocationRow> = invocations
        .into_iter()
        .map(|i| {
            let (trace_id, span_id) = &span_ids[i.ids as usize];
            InvocationRow {
                start_ms: i.start_ms,
                trace_id: trace_id.to_string(),
                span_id: span_id.to_string(),
                tier: tiers[i.tier as usize].clone(),
                tenant_id: tenants[i.tenant as usize].clone(),
                user_id: i.user.map(|u| users[u as usize].clone()),
                model_id: i.model.map(|m| models[m as usize].clone()),
                duration_ms: i.duration_ms,
                tool_calls: i.tool_calls,
                tool_errors: i.tool_errors,
                model_calls: i.model_calls,
                status: i.status,
            }
        })
        .collect();
    drop(span_ids);
    // Every rollup file is written, empty ones too: its footer records what it covers.
    let covers = vec![KeyValue::new(COVERS_KEY.to_owned(), coverage.digest())];
    // Counts and sums without a dictionary: a day's rows are distinct groups whose sums
    // repeat little, and a column of zeros is one run for zstd. Interning every value cost more
    // than the plain pages and made larger files (BENCHMARKS.md, "Levers": 23 % smaller).
    let encode_rollup = |key: &str, schema: arrow_schema::SchemaRef, sorted: &[usize], batch| {
        let ints: Vec<_> = schema
            .fields()
            .iter()
            .filter(|f| f.data_type() == &arrow_schema::DataType::Int64)
            .map(|f| (f.name().as_str(), crate::ColumnPlan::NoDictionary))
            .collect();
        let props = properties(sorted, &ints)
            .into_builder()
            .set_key_value_metadata(Some(covers.clone()))
            .build();
        encode(key, schema, props, &[batch])
    };
    // Where each put is a round trip (S3), the three are held, for the caller to put side by
    // side; else each is put as soon as it is encoded, holding none while the next is built.
    // Each replaces only the version read: a put that lost a race leaves the rollup stale,
    // and the rebuild starts again from the versions.
    let mut held = HeldPuts::new();
    let mut put_or_hold = |key: &str, version: &Option<(String, String)>, bytes| -> Result<bool> {
        let cond = Condition::replacing(version.as_ref().map(|(etag, _)| etag.as_str()));
        if !lake.store().round_trips() {
            return put(lake, key, bytes, cond);
        }
        held.push((key.to_owned(), cond, bytes));
        Ok(true)
    };
    let batch = agent_invocations_batch(&invocations)
        .map_err(|source| Error::Arrow { path: inv_key.clone().into(), source })?;
    // Sorted by tenant_id (column 4) then start_time (column 0).
    let bytes = encode_rollup(&inv_key, agent_invocations_schema(), &[4, 0], batch)?;
    if !put_or_hold(&inv_key, &versions[2], bytes)? {
        return Ok(None);
    }
    // Per tenant and hour: sums over users and models, distinct users, peak second.
    let mut tenant_hours: HashMap<(i64, u32, u32), TenantAcc> = HashMap::default();
    for (&(hour, t, n, u, ..), m) in groups.iter().filter(|(_, m)| m.invocations > 0) {
        let slot = tenant_hours.entry((hour, t, n)).or_default();
        slot.0.invocations =
            slot.0.invocations.checked_add(m.invocations).ok_or_else(|| overflow(TENANT_HOURLY))?;
        slot.0.tokens =
            slot.0.tokens.checked_add(&m.tokens).ok_or_else(|| overflow(TENANT_HOURLY))?;
        slot.1.insert(u);
    }
    for (key, &peak) in &peaks {
        if let Some(slot) = tenant_hours.get_mut(key) {
            slot.2 = slot.2.max(peak);
        }
    }
    // The files' order (tenant, then hour, then the rest of the key) compares strings: each
    // string is ranked once, and the rows are sorted by their ranks' integers.
    let [tier_rank, tenant_rank, user_rank, model_rank] =
        [string_ranks(&tiers), string_ranks(&tenants), string_ranks(&users), string_ranks(&models)];
    let mut tenant_hours: Vec<_> = tenant_hours.into_iter().collect();
    tenant_hours.sort_unstable_by_key(|&((hour, t, n), _)| {
        (tenant_rank[n as usize], hour, tier_rank[t as usize])
    });
    let tenant_rows: Vec<TenantHour> = tenant_hours
        .into_iter()
        .map(|((hour_ms, t, n), (m, users, peak))| TenantHour {
            hour_ms,
            tier: tiers[t as usize].clone(),
            tenant_id: tenants[n as usize].clone(),
            invocations: m.invocations,
            tokens: m.tokens,
            users: users.len() as i64,
            peak_requests_per_second: peak,
        })
        .collect();
    let tenant_batch = tenant_hourly_batch(&tenant_rows)
        .map_err(|source| Error::Arrow { path: tenant_key.clone().into(), source })?;
    // Sorted by tenant_id (column 2) then hour (column 0).
    let bytes = encode_rollup(&tenant_key, tenant_hourly_schema(), &[2, 0], tenant_batch)?;
    if !put_or_hold(&tenant_key, &versions[1], bytes)? {
        return Ok(None);
    }
    let groups: Vec<(Group, HourlyMeasures)> = groups.into_iter().collect();
    // Each row's sort key made once, sorted with the row's index (not its 200-odd bytes).
    let mut order: Vec<_> = groups
        .iter()
        .enumerate()
        .map(|(i, &((hour, t, n, u, m, service_tier, band), _))| {
            let rank = |ranks: &[u32], code: u32| ranks[code as usize];
            let (t, n, u, m) = (
                rank(&tier_rank, t),
                rank(&tenant_rank, n),
                rank(&user_rank, u),
                rank(&model_rank, m),
            );
            ((n, hour, t, u, m, service_tier, band), i as u32)
        })
        .collect();
    order.sort_unstable();
    let rows: Vec<(HourlyKey, HourlyMeasures)> = order
        .into_iter()
        .map(|(_, i)| groups[i as usize])
        .map(|((hour_ms, t, n, u, m, service_tier, prompt_band), measures)| {
            let key = HourlyKey {
                hour_ms,
                tier: tiers[t as usize].clone(),
                tenant_id: tenants[n as usize].clone(),
                user_id: users[u as usize].clone(),
                model_id: models[m as usize].clone(),
                service_tier,
                prompt_band,
            };
            (key, measures)
        })
        .collect();
    let n = rows.len();
    let batch = hourly_batch(rows.iter().map(|(k, m)| (k, m)))
        .map_err(|source| Error::Arrow { path: key.clone().into(), source })?;
    // Sorted by tenant_id (column 2) then hour (column 0).
    let bytes = encode_rollup(&key, usage_hourly_schema(), &[2, 0], batch)?;
    if !put_or_hold(&key, &versions[0], bytes)? {
        return Ok(None);
    }
    Ok(Some((n, held)))
}

/// Rollup files encoded and not yet put: each key, the condition of its put, and its bytes.
pub(crate) type HeldPuts = Vec<(String, Condition, bytes::Bytes)>;

/// Puts `held` side by side; whether every put was written (else another writer replaced a
/// rollup first, and the day's rebuild must start again).
///
/// # Errors
///
/// A put fails.
pub(crate) fn put_held(lake: &Lake, held: HeldPuts) -> Result<bool> {
    let at_once = held.len();
    let written = concurrently(held, at_once, |(key, cond, bytes)| put(lake, &key, bytes, cond))?;
    Ok(written.iter().all(|w| *w))
}

/// Puts one rollup under `cond`; whether it was written.
fn put(lake: &Lake, key: &str, bytes: bytes::Bytes, cond: Condition) -> Result<bool> {
    Ok(matches!(lake.store().put(key, bytes, cond)?, Put::Written { .. }))
}

#[cfg(test)]
mod tests;
