//! What the exactly-once writer needs to know about a kind of record: its table, partition,
//! identity, sort order and Arrow encoding. Usage events and agent spans are the two kinds.

use std::cmp::Ordering;
use std::fmt;

use agentmeter_schemas::tables::{
    AGENT_SPANS, USAGE_EVENTS, UsageEventBatchBuilder, agent_spans_batch, agent_spans_from_batch,
    agent_spans_schema, usage_events_from_batch, usage_events_schema,
};
use agentmeter_schemas::{AgentSpan, InlineText, SourceUri, UsageEvent};
use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use chrono::NaiveDate;

use crate::parquet_io::ColumnPlan;

/// A record's identity bytes (an event id; a trace id, `:` and a span id), as the parts the
/// record holds: hashed and digested part by part, not joined into a buffer made per record.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    head: &'a [u8],
    tail: Option<&'a [u8]>,
}

impl<'a> Identity<'a> {
    /// The identity `id`.
    pub fn of(id: &'a str) -> Self {
        Self { head: id.as_bytes(), tail: None }
    }

    /// The identity `head:tail`.
    pub fn joined(head: &'a str, tail: &'a str) -> Self {
        Self { head: head.as_bytes(), tail: Some(tail.as_bytes()) }
    }

    /// The bytes, in parts.
    pub fn parts(self) -> impl Iterator<Item = &'a [u8]> {
        [Some(self.head), self.tail.map(|_| &b":"[..]), self.tail].into_iter().flatten()
    }

    /// What the ids of a file whose first id this is are like.
    pub(crate) fn shape(self) -> crate::parquet_io::IdShape {
        match self.tail {
            Some(_) => crate::parquet_io::IdShape::Random,
            None => crate::parquet_io::IdShape::of(self.head),
        }
    }

    /// The in-memory dedup key: the keyed hash of the bytes, as of them joined.
    pub fn key(self) -> u128 {
        use agentmeter_schemas::keyed::{key128, key128_of_parts};
        // An event's id is one part: hashed in one write, without the chain of parts (about
        // a sixth of the key's instructions on a 36-byte id).
        match self.tail {
            None => key128(self.head),
            Some(_) => key128_of_parts(self.parts()),
        }
    }
}

impl fmt::Display for Identity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.parts() {
            f.write_str(&String::from_utf8_lossy(p))?;
        }
        Ok(())
    }
}

/// The writer settings of a file of `R` whose first record is `first` (its ids' shape
/// chooses how [`ColumnPlan::LogEventId`] columns are stored).
pub(crate) fn file_properties<R: LakeRecord>(
    first: Option<&R>,
) -> parquet::file::properties::WriterProperties {
    let ids = first.map_or(crate::parquet_io::IdShape::Random, |r| r.identity().shape());
    crate::parquet_io::properties_for(R::SORTED_BY, R::COLUMNS, ids)
}

/// A record the [`EventWriter`](crate::EventWriter) writes exactly once.
pub trait LakeRecord: Send + 'static {
    /// The table.
    const TABLE: &'static str;
    /// Column indices the files are sorted by (declared in the Parquet footer).
    const SORTED_BY: &'static [usize];
    /// The columns written otherwise than the writer's defaults, and how: ids and times have
    /// about as many distinct values as rows, a dictionary of them would fill up and be
    /// dropped for every page (6 % smaller `usage_events` files, 17 % smaller `agent_spans`
    /// without); sorted times and counts are smaller and cheaper as deltas (BENCHMARKS.md,
    /// "Levers").
    const COLUMNS: &'static [(&'static str, ColumnPlan)];

    /// The record's time, milliseconds; its UTC date is the `dt` partition.
    fn time_ms(&self) -> i64;
    /// The identity bytes (event id; trace and span id).
    fn identity(&self) -> Identity<'_>;
    /// A digest of the content, to tell a conflicting duplicate.
    fn fingerprint(&self) -> u64;
    /// The sort order within a file.
    fn sort_cmp(a: &Self, b: &Self) -> Ordering;
    /// The leading fields of [`LakeRecord::sort_cmp`]: the tenant, then the time. Equal
    /// prefixes are ordered by `sort_cmp`.
    fn sort_prefix(&self) -> (&str, i64);
    /// The source, for warnings.
    fn source(&self) -> &SourceUri;
    /// The table's schema.
    fn schema() -> SchemaRef;
    /// Encodes records.
    ///
    /// # Errors
    ///
    /// Only on a bug in the encoding.
    fn batch<'a>(
        records: impl ExactSizeIterator<Item = &'a Self> + Clone,
    ) -> Result<RecordBatch, ArrowError>
    where
        Self: 'a;
    /// The string columns with few distinct values (ids held once, static codes, a span's
    /// name): the writer encodes them from [`Self::coded_batch`]'s codes.
    const CODED: &'static [&'static str] = &[];
    /// [`Self::batch`], the columns of [`Self::CODED`] as dictionaries.
    ///
    /// # Errors
    ///
    /// As [`Self::batch`].
    fn coded_batch<'a>(
        records: impl ExactSizeIterator<Item = &'a Self> + Clone,
    ) -> Result<RecordBatch, ArrowError>
    where
        Self: 'a,
    {
        Self::batch(records)
    }
    /// Decodes records.
    ///
    /// # Errors
    ///
    /// A file that does not match the table.
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ArrowError>
    where
        Self: Sized;

    /// About how many bytes the record holds in memory: itself and the strings it owns
    /// alone (shared ids are not counted), each allocation with its allocator overhead. Bounds
    /// a batch by memory as well as by rows.
    fn approx_bytes(&self) -> usize;

    /// True when the record is a model call that reported no usage (see
    /// [`UsageEvent::usage_unknown`], [`AgentSpan::usage_unknown`]).
    fn usage_unknown(&self) -> bool;

    /// The columns a writer reads to deduplicate against the lake: all but `source` (per
    /// record, often as long as the id, and needed neither for identity nor content).
    fn index_columns() -> Vec<String> {
        Self::schema().fields().iter().map(|f| f.name().clone()).filter(|n| n != "source").collect()
    }

    /// The `dt` partition.
    fn partition(&self) -> Option<NaiveDate> {
        partition_of_ms(self.time_ms())
    }

    /// The UTC day of the record's time, counted from the Unix epoch: a division, where the
    /// date itself ([`LakeRecord::partition`]) is a calendar conversion that a writer makes
    /// once per run of records on one day rather than once a record.
    fn day_number(&self) -> i64 {
        self.time_ms().div_euclid(DAY_MS)
    }
}

/// Milliseconds in a UTC day.
const DAY_MS: i64 = 86_400_000;

/// The `dt` partition of a record of time `ms` (milliseconds since the epoch, UTC); none
/// outside the calendar's range.
pub fn partition_of_ms(ms: i64) -> Option<NaiveDate> {
    date_of_day(ms.div_euclid(DAY_MS))
}

/// The date of a [`LakeRecord::day_number`]; none outside the calendar's range.
pub(crate) fn date_of_day(day: i64) -> Option<NaiveDate> {
    // Day 0 is 1970-01-01, the 719,163rd day of the common era.
    let from_ce = day.checked_add(719_163)?;
    NaiveDate::from_num_days_from_ce_opt(i32::try_from(from_ce).ok()?)
}

impl LakeRecord for UsageEvent {
    const TABLE: &'static str = USAGE_EVENTS;
    // tenant_id (3), then event_time (0).
    const SORTED_BY: &'static [usize] = &[3, 0];
    const COLUMNS: &'static [(&'static str, ColumnPlan)] = &[
        ("event_time", ColumnPlan::Delta),
        ("event_id", ColumnPlan::LogEventId),
        ("input_tokens", ColumnPlan::Delta),
        ("output_tokens", ColumnPlan::Delta),
        ("total_tokens", ColumnPlan::Delta),
        ("cache_read_tokens", ColumnPlan::NoDictionary),
        ("cache_write_tokens", ColumnPlan::NoDictionary),
        ("cache_write_1h_tokens", ColumnPlan::NoDictionary),
        ("session_id", ColumnPlan::RandomId),
    ];

    fn time_ms(&self) -> i64 {
        self.event_time_ms
    }

    fn identity(&self) -> Identity<'_> {
        Identity::of(self.event_id.as_str())
    }

    fn fingerprint(&self) -> u64 {
        self.content_fingerprint()
    }

    fn sort_cmp(a: &Self, b: &Self) -> Ordering {
        (a.tenant_id.as_str(), a.event_time_ms, a.event_id.as_str()).cmp(&(
            b.tenant_id.as_str(),
            b.event_time_ms,
            b.event_id.as_str(),
        ))
    }

    fn sort_prefix(&self) -> (&str, i64) {
        (self.tenant_id.as_str(), self.event_time_ms)
    }

    fn source(&self) -> &SourceUri {
        &self.source
    }

    fn usage_unknown(&self) -> bool {
        UsageEvent::usage_unknown(self)
    }

    fn approx_bytes(&self) -> usize {
        let session = self.session_id.as_ref().map_or(0, |s| owned(s.as_str()));
        let id = if self.event_id.is_held_apart() { owned(self.event_id.as_str()) } else { 0 };
        std::mem::size_of::<Self>() + id + session
    }

    fn schema() -> SchemaRef {
        usage_events_schema()
    }

    fn batch<'a>(
        records: impl ExactSizeIterator<Item = &'a Self> + Clone,
    ) -> Result<RecordBatch, ArrowError> {
        let mut b = UsageEventBatchBuilder::for_rows(records.clone());
        b.extend(records);
        b.finish()
    }

    const CODED: &'static [&'static str] = &agentmeter_schemas::tables::USAGE_EVENTS_CODED;

    fn coded_batch<'a>(
        records: impl ExactSizeIterator<Item = &'a Self> + Clone,
    ) -> Result<RecordBatch, ArrowError> {
        agentmeter_schemas::tables::usage_events_coded_batch(records)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ArrowError> {
        usage_events_from_batch(batch)
    }
}

impl LakeRecord for AgentSpan {
    const TABLE: &'static str = AGENT_SPANS;
    // tenant_id (9), then start_time (0).
    const SORTED_BY: &'static [usize] = &[9, 0];
    const COLUMNS: &'static [(&'static str, ColumnPlan)] = &[
        // Spans' times jump between the traces of a tenant: deltas made them larger.
        ("start_time", ColumnPlan::NoDictionary),
        ("end_time", ColumnPlan::NoDictionary),
        ("duration_ms", ColumnPlan::Delta),
        ("trace_id", ColumnPlan::RandomId),
        ("span_id", ColumnPlan::RandomId),
        ("parent_span_id", ColumnPlan::RandomId),
        ("input_tokens", ColumnPlan::Delta),
        ("output_tokens", ColumnPlan::Delta),
        ("total_tokens", ColumnPlan::Delta),
        ("cache_read_tokens", ColumnPlan::NoDictionary),
        ("cache_write_tokens", ColumnPlan::NoDictionary),
    ];

    fn time_ms(&self) -> i64 {
        self.start_ms
    }

    fn identity(&self) -> Identity<'_> {
        // `AgentSpan::key`'s bytes, without building them.
        Identity::joined(&self.trace_id, &self.span_id)
    }

    fn fingerprint(&self) -> u64 {
        self.content_fingerprint()
    }

    fn sort_cmp(a: &Self, b: &Self) -> Ordering {
        (a.tenant_id.as_str(), a.start_ms, &a.trace_id, &a.span_id).cmp(&(
            b.tenant_id.as_str(),
            b.start_ms,
            &b.trace_id,
            &b.span_id,
        ))
    }

    fn sort_prefix(&self) -> (&str, i64) {
        (self.tenant_id.as_str(), self.start_ms)
    }

    fn source(&self) -> &SourceUri {
        &self.source
    }

    fn usage_unknown(&self) -> bool {
        AgentSpan::usage_unknown(self)
    }

    fn approx_bytes(&self) -> usize {
        // Text is held in the span up to `InlineText::INLINE` bytes; only longer text has heap.
        let held = |s: &InlineText| if s.is_held_apart() { owned(s) } else { 0 };
        let opt = |s: &Option<InlineText>| s.as_ref().map_or(0, held);
        std::mem::size_of::<Self>()
            + held(&self.trace_id)
            + held(&self.span_id)
            + held(&self.name)
            + held(&self.scope)
            + opt(&self.parent_span_id)
            + opt(&self.operation)
            + opt(&self.tool_name)
            + opt(&self.service)
    }

    fn schema() -> SchemaRef {
        agent_spans_schema()
    }

    fn batch<'a>(
        records: impl ExactSizeIterator<Item = &'a Self> + Clone,
    ) -> Result<RecordBatch, ArrowError> {
        agent_spans_batch(records)
    }

    const CODED: &'static [&'static str] = &agentmeter_schemas::tables::AGENT_SPANS_CODED;

    fn coded_batch<'a>(
        records: impl ExactSizeIterator<Item = &'a Self> + Clone,
    ) -> Result<RecordBatch, ArrowError> {
        agentmeter_schemas::tables::agent_spans_coded_batch(records)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ArrowError> {
        agent_spans_from_batch(batch)
    }
}

/// The heap bytes of one owned string: its length rounded up as an allocator does, plus the
/// allocator's own bookkeeping.
fn owned(s: &str) -> usize {
    s.len().next_multiple_of(16) + 16
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use proptest::prelude::*;

    use super::*;

    /// The calendar's conversion, which the day number replaces.
    fn chrono_date(ms: i64) -> Option<NaiveDate> {
        DateTime::from_timestamp_millis(ms).map(|t| t.date_naive())
    }

    #[test]
    fn days_start_at_midnight_utc_and_end_with_the_calendar() {
        let date = |ms: i64| date_of_day(ms.div_euclid(DAY_MS));
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd);
        assert_eq!(date(0), d(1970, 1, 1));
        assert_eq!(date(-1), d(1969, 12, 31));
        assert_eq!(date(1_764_979_199_999), d(2025, 12, 5));
        assert_eq!(date(1_764_979_200_000), d(2025, 12, 6));
        // The calendar's first and last milliseconds, and one past each.
        let last = NaiveDate::MAX.and_hms_milli_opt(23, 59, 59, 999).unwrap();
        let last = last.and_utc().timestamp_millis();
        let first = NaiveDate::MIN.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
        assert_eq!(date(last), Some(NaiveDate::MAX));
        assert_eq!(date(first), Some(NaiveDate::MIN));
        for ms in [i64::MIN, i64::MAX, first - 1, first, last, last + 1] {
            assert_eq!(date(ms), chrono_date(ms), "{ms}");
        }
        assert_eq!(date_of_day(i64::MAX), None);
        assert_eq!(date_of_day(i64::MIN), None);
    }

    proptest! {
        #[test]
        fn a_day_number_names_the_date_chrono_gives(ms in any::<i64>(), near in -10i64.pow(13)..10i64.pow(13)) {
            for ms in [ms, near, ms / 1_000_000] {
                prop_assert_eq!(date_of_day(ms.div_euclid(DAY_MS)), chrono_date(ms), "{}", ms);
            }
        }
    }
}
