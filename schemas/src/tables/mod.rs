//! The lake's tables: Arrow schemas, typed row builders and readers.
//!
//! Each table is defined once here; the Parquet writer, the readers and the Athena DDL
//! ([`crate::athena`]) all derive from these definitions, and a test keeps them in step.
//! Types are the ones Athena reads correctly: `Int64` (never unsigned), UTF-8 strings, and
//! UTC timestamps in milliseconds. The `dt` partition column lives in the path
//! (`dt=YYYY-MM-DD`), never in the files.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::{
    EventId, ModelId, ServiceTier, SessionId, SourceUri, TenantId, Tier, Tokens, UsageEvent, UserId,
};

mod coded;
mod flags;
mod hourly;
mod invoice_lines;
mod spans;
pub use coded::{
    AGENT_SPANS_CODED, SliceDictionary, USAGE_EVENTS_CODED, agent_spans_coded_batch,
    agent_spans_coded_schema, coded_schema, usage_events_coded_batch, usage_events_coded_schema,
};
pub use flags::{FlagRow, flags_batch, flags_schema};
pub use hourly::{
    AGENT_COLUMNS, AgentMeasures, CHAT_COLUMNS, ChatMeasures, HourlyKey, HourlyMeasures,
    PRICE_KEY_COLUMNS, hourly_batch, hourly_from_batch, usage_hourly_schema,
};
pub use invoice_lines::{
    AMOUNT_SCALE, InvoiceLineRow, UNIT_PRICE_SCALE, invoice_lines_batch, invoice_lines_schema,
};
pub use spans::{
    AGENT_INVOCATIONS, AGENT_SPANS, InvocationRow, agent_invocations_batch,
    agent_invocations_from_batch, agent_invocations_schema, agent_spans_batch,
    agent_spans_from_batch, agent_spans_schema,
};

/// Schema-level metadata key carrying the table's schema version.
pub const SCHEMA_VERSION_KEY: &str = "agentmeter.schema_version";

/// Name of the Hive partition column of the daily tables.
pub const PARTITION_COLUMN: &str = "dt";

/// How a table is partitioned: a Hive partition column holding a UTC date or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitioning {
    /// Column name (`dt=...` in the path).
    pub column: &'static str,
    /// The value's format for chrono (`%Y-%m-%d`).
    pub chrono_format: &'static str,
    /// The same format for Athena partition projection (Java `DateTimeFormatter`).
    pub java_format: &'static str,
    /// Projection interval unit (`DAYS`, `MONTHS`).
    pub unit: &'static str,
}

/// Daily partitions: `dt=YYYY-MM-DD`.
pub const DAILY: Partitioning = Partitioning {
    column: PARTITION_COLUMN,
    chrono_format: "%Y-%m-%d",
    java_format: "yyyy-MM-dd",
    unit: "DAYS",
};

/// Monthly partitions (billing periods): `period=YYYY-MM`.
pub const MONTHLY: Partitioning = Partitioning {
    column: "period",
    chrono_format: "%Y-%m",
    java_format: "yyyy-MM",
    unit: "MONTHS",
};

/// A lake table.
#[derive(Debug)]
pub struct TableDef {
    /// Table (and directory) name.
    pub name: &'static str,
    /// One-line description, used as the DDL comment.
    pub description: &'static str,
    /// Arrow schema of the files.
    pub schema: fn() -> SchemaRef,
    /// Its Hive partitioning.
    pub partitioning: Partitioning,
}

/// Every table of the lake, in the order the DDL prints them.
pub const TABLES: &[TableDef] = &[
    TableDef {
        name: USAGE_EVENTS,
        description: "One row per distinct valid inference_usage event.",
        schema: usage_events_schema,
        partitioning: DAILY,
    },
    TableDef {
        name: USAGE_HOURLY,
        description: "Usage per hour, tier, tenant, user and model, derived from usage_events.",
        schema: usage_hourly_schema,
        partitioning: DAILY,
    },
    TableDef {
        name: AGENT_SPANS,
        description: "One row per distinct span of an agent runtime (no span events), by start day.",
        schema: agent_spans_schema,
        partitioning: DAILY,
    },
    TableDef {
        name: AGENT_INVOCATIONS,
        description: "One row per agent invocation (invoke_agent span) with its tool and model calls.",
        schema: agent_invocations_schema,
        partitioning: DAILY,
    },
    TableDef {
        name: TENANT_HOURLY,
        description: "Requests, tokens, users and the peak requests in one second per hour, tier and tenant.",
        schema: tenant_hourly_schema,
        partitioning: DAILY,
    },
    TableDef {
        name: FLAGS,
        description: "Flags active at the end of each evaluated day (dt), one row per flag.",
        schema: flags_schema,
        partitioning: DAILY,
    },
    TableDef {
        name: INVOICE_LINES,
        description: "One row per invoice line, per tenant and billing period.",
        schema: invoice_lines_schema,
        partitioning: MONTHLY,
    },
];

/// Name of the raw events table.
pub const USAGE_EVENTS: &str = "usage_events";
/// Name of the hourly rollup table.
pub const USAGE_HOURLY: &str = "usage_hourly";
/// Name of the per-tenant hourly rollup table.
pub const TENANT_HOURLY: &str = "tenant_hourly";
/// Name of the flags table.
pub const FLAGS: &str = "flags";
/// Name of the invoice lines table.
pub const INVOICE_LINES: &str = "invoice_lines";

pub(crate) fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

pub(crate) fn with_version(fields: Vec<Field>, version: &str) -> SchemaRef {
    let meta = HashMap::from([(SCHEMA_VERSION_KEY.to_owned(), version.to_owned())]);
    Arc::new(Schema::new_with_metadata(fields, meta))
}

/// The token columns, in [`Tokens`] order. `cache_write_1h_tokens` (part of
/// `cache_write_tokens`) came with `usage_events` version 3: older files read as 0.
pub(crate) const TOKEN_COLUMNS: [&str; 6] = [
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
];

/// The token column that files written before it existed lack (read as 0).
pub(crate) const LATE_TOKEN_COLUMN: &str = "cache_write_1h_tokens";

/// The token columns of `batch`: `None` for a late column the file lacks.
pub(crate) fn token_columns(
    batch: &RecordBatch,
) -> Result<Vec<Option<&arrow_array::PrimitiveArray<Int64Type>>>, ArrowError> {
    TOKEN_COLUMNS
        .iter()
        .map(|n| {
            if *n == LATE_TOKEN_COLUMN && batch.column_by_name(n).is_none() {
                Ok(None)
            } else {
                ints(batch, n).map(Some)
            }
        })
        .collect()
}

/// Row `i` of the token columns read by [`token_columns`].
pub(crate) fn tokens_at(t: &[Option<&arrow_array::PrimitiveArray<Int64Type>>], i: usize) -> Tokens {
    let v = |k: usize| t[k].map_or(0, |a| a.value(i));
    Tokens {
        input: v(0),
        output: v(1),
        total: v(2),
        cache_read: v(3),
        cache_write: v(4),
        cache_write_1h: v(5),
    }
}

static USAGE_EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("event_time", utc_millis(), false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("tier", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("model_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
    ];
    fields.extend(TOKEN_COLUMNS.iter().map(|c| Field::new(*c, DataType::Int64, false)));
    // Version 2: null when the line names no session; files of version 1 read as null.
    fields.push(Field::new("session_id", DataType::Utf8, true));
    // Version 3 (with cache_write_1h_tokens): files of older versions read as standard.
    fields.push(Field::new("service_tier", DataType::Utf8, false));
    with_version(fields, "3")
});

static TENANT_HOURLY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("hour", utc_millis(), false),
        Field::new("tier", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("invocations", DataType::Int64, false),
    ];
    fields.extend(TOKEN_COLUMNS.iter().map(|c| Field::new(*c, DataType::Int64, false)));
    fields.push(Field::new("users", DataType::Int64, false));
    fields.push(Field::new("peak_requests_per_second", DataType::Int64, false));
    with_version(fields, "1")
});

/// Schema of `tenant_hourly`.
pub fn tenant_hourly_schema() -> SchemaRef {
    TENANT_HOURLY_SCHEMA.clone()
}

/// One row of `tenant_hourly`: a tenant's hour in one tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantHour {
    /// Start of the hour, milliseconds since the epoch, UTC.
    pub hour_ms: i64,
    /// Tier.
    pub tier: Tier,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Requests (inference calls).
    pub invocations: i64,
    /// Token sums.
    pub tokens: Tokens,
    /// Distinct users.
    pub users: i64,
    /// The most requests the tenant made in any one second of the hour.
    pub peak_requests_per_second: i64,
}

/// Builds a `tenant_hourly` record batch.
///
/// # Errors
///
/// Only if the columns disagree with the schema, which would be a bug here.
pub fn tenant_hourly_batch(rows: &[TenantHour]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut hour = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut tier = StringBuilder::with_capacity(n, n * 8);
    let mut tenant = StringBuilder::with_capacity(n, n * 16);
    let mut invocations = Int64Builder::with_capacity(n);
    let mut tokens = TokenBuilders::with_capacity(n);
    let mut users = Int64Builder::with_capacity(n);
    let mut peak = Int64Builder::with_capacity(n);
    for r in rows {
        hour.append_value(r.hour_ms);
        tier.append_value(r.tier.as_str());
        tenant.append_value(r.tenant_id.as_str());
        invocations.append_value(r.invocations);
        tokens.append(&r.tokens);
        users.append_value(r.users);
        peak.append_value(r.peak_requests_per_second);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(hour.finish()),
        Arc::new(tier.finish()),
        Arc::new(tenant.finish()),
        Arc::new(invocations.finish()),
    ];
    tokens.finish(&mut columns);
    columns.push(Arc::new(users.finish()));
    columns.push(Arc::new(peak.finish()));
    RecordBatch::try_new(tenant_hourly_schema(), columns)
}

/// Reads `tenant_hourly` rows back, validating identifiers.
///
/// # Errors
///
/// A missing or mistyped column, or an identifier that fails validation.
pub fn tenant_hourly_from_batch(batch: &RecordBatch) -> Result<Vec<TenantHour>, ArrowError> {
    let hour = column(batch, "hour")?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| ArrowError::SchemaError("column hour is not timestamp(ms)".into()))?;
    let tier = strings(batch, "tier")?;
    let tenant = strings(batch, "tenant_id")?;
    let inv = ints(batch, "invocations")?;
    let t = token_columns(batch)?;
    let users = ints(batch, "users")?;
    let peak = ints(batch, "peak_requests_per_second")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(TenantHour {
                hour_ms: hour.value(i),
                tier: Tier::new(tier.value(i)).map_err(|e| invalid("tier", i, e))?,
                tenant_id: TenantId::new(tenant.value(i))
                    .map_err(|e| invalid("tenant_id", i, e))?,
                invocations: inv.value(i),
                tokens: tokens_at(&t, i),
                users: users.value(i),
                peak_requests_per_second: peak.value(i),
            })
        })
        .collect()
}

/// Schema of `usage_events`.
pub fn usage_events_schema() -> SchemaRef {
    USAGE_EVENTS_SCHEMA.clone()
}

/// A row's six token counts in the order of the token columns.
fn token_values(t: &Tokens) -> [i64; 6] {
    [t.input, t.output, t.total, t.cache_read, t.cache_write, t.cache_write_1h]
}

pub(crate) struct TokenBuilders([Int64Builder; 6]);

impl TokenBuilders {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(std::array::from_fn(|_| Int64Builder::with_capacity(n)))
    }

    pub(crate) fn append(&mut self, t: &Tokens) {
        for (b, v) in self.0.iter_mut().zip(token_values(t)) {
            b.append_value(v);
        }
    }

    pub(crate) fn finish(&mut self, columns: &mut Vec<ArrayRef>) {
        for b in &mut self.0 {
            columns.push(Arc::new(b.finish()));
        }
    }
}

/// Builds `usage_events` record batches from [`UsageEvent`]s.
pub struct UsageEventBatchBuilder {
    // Columns without nulls are plain vectors: a builder's per-value bookkeeping (its null
    // buffer, its growth checks) costs more than the value.
    event_time: Vec<i64>,
    strings: [StringBuilder; 6],
    tokens: [Vec<i64>; 6],
    session: StringBuilder,
    service_tier: StringBuilder,
}

impl UsageEventBatchBuilder {
    /// A builder with room for `capacity` rows.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_room(capacity, [capacity * 16; 6], capacity * 8)
    }

    /// A builder with room for exactly `rows` (the string columns' bytes counted first: a
    /// column grown by doubling is copied each time).
    pub fn for_rows<'a>(rows: impl ExactSizeIterator<Item = &'a UsageEvent> + Clone) -> Self {
        let (mut bytes, mut session) = ([0; 6], 0);
        for e in rows.clone() {
            for (n, v) in bytes.iter_mut().zip(Self::strings_of(e)) {
                *n += v.len();
            }
            session += e.session_id.as_ref().map_or(0, |s| s.as_str().len());
        }
        Self::with_room(rows.len(), bytes, session)
    }

    fn with_room(capacity: usize, bytes: [usize; 6], session: usize) -> Self {
        Self {
            event_time: Vec::with_capacity(capacity),
            strings: bytes.map(|n| StringBuilder::with_capacity(capacity, n)),
            tokens: std::array::from_fn(|_| Vec::with_capacity(capacity)),
            session: StringBuilder::with_capacity(capacity, session),
            // Service tier codes are a few bytes; grown from nothing, the column was copied a
            // dozen times in a batch.
            service_tier: StringBuilder::with_capacity(capacity, capacity * 8),
        }
    }

    fn strings_of(e: &UsageEvent) -> [&str; 6] {
        [
            e.event_id.as_str(),
            e.tier.as_str(),
            e.tenant_id.as_str(),
            e.user_id.as_str(),
            e.model_id.as_str(),
            e.source.as_str(),
        ]
    }

    /// Appends one row.
    pub fn append(&mut self, e: &UsageEvent) {
        self.event_time.push(e.event_time_ms);
        for (b, v) in self.strings.iter_mut().zip(Self::strings_of(e)) {
            b.append_value(v);
        }
        for (column, v) in self.tokens.iter_mut().zip(token_values(&e.tokens)) {
            column.push(v);
        }
        self.session.append_option(e.session_id.as_ref().map(|s| s.as_str()));
        self.service_tier.append_value(e.service_tier.code());
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.event_time.len()
    }

    /// True when no row was appended.
    pub fn is_empty(&self) -> bool {
        self.event_time.is_empty()
    }

    /// Finishes the batch and resets the builder.
    ///
    /// # Errors
    ///
    /// Only if the columns disagree with the schema, which would be a bug here.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let time = TimestampMillisecondArray::from(std::mem::take(&mut self.event_time));
        let mut columns: Vec<ArrayRef> = vec![Arc::new(time.with_timezone("UTC"))];
        for b in &mut self.strings {
            columns.push(Arc::new(b.finish()));
        }
        for column in &mut self.tokens {
            columns.push(Arc::new(Int64Array::from(std::mem::take(column))));
        }
        columns.push(Arc::new(self.session.finish()));
        columns.push(Arc::new(self.service_tier.finish()));
        RecordBatch::try_new(usage_events_schema(), columns)
    }
}

impl<'a> Extend<&'a UsageEvent> for UsageEventBatchBuilder {
    fn extend<I: IntoIterator<Item = &'a UsageEvent>>(&mut self, iter: I) {
        for e in iter {
            self.append(e);
        }
    }
}

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the UTC hour containing `ms` (hours are half-open, `[start, start + 1h)`).
pub fn hour_start_ms(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

pub(crate) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, ArrowError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} is missing")))
}

pub(crate) fn strings<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow_array::StringArray, ArrowError> {
    column(batch, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} is not utf8")))
}

pub(crate) fn ints<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow_array::PrimitiveArray<Int64Type>, ArrowError> {
    column(batch, name)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} is not int64")))
}

pub(crate) fn invalid(name: &str, row: usize, e: impl std::fmt::Display) -> ArrowError {
    ArrowError::InvalidArgumentError(format!("row {row}, column {name}: {e}"))
}

/// Reads `usage_events` rows back into [`UsageEvent`]s, validating every identifier again
/// (a lake written by another tool is untrusted too). Without a `source` column (a read of
/// the other columns only), sources are empty.
///
/// # Errors
///
/// A missing or mistyped column, a null, or an identifier that fails validation.
pub fn usage_events_from_batch(batch: &RecordBatch) -> Result<Vec<UsageEvent>, ArrowError> {
    let time = column(batch, "event_time")?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| ArrowError::SchemaError("column event_time is not timestamp(ms)".into()))?;
    let names = ["event_id", "tier", "tenant_id", "user_id", "model_id"];
    let s: Vec<_> = names.iter().map(|n| strings(batch, n)).collect::<Result<_, _>>()?;
    let source = batch.column_by_name("source").map(|_| strings(batch, "source")).transpose()?;
    let t = token_columns(batch)?;
    let session =
        batch.column_by_name("session_id").map(|_| strings(batch, "session_id")).transpose()?;
    let service_tier =
        batch.column_by_name("service_tier").map(|_| strings(batch, "service_tier")).transpose()?;
    let all: Vec<&dyn Array> = std::iter::once(time as &dyn Array)
        .chain(s.iter().map(|a| *a as &dyn Array))
        .chain(source.iter().map(|a| *a as &dyn Array))
        .chain(t.iter().flatten().map(|a| *a as &dyn Array))
        .chain(service_tier.iter().map(|a| *a as &dyn Array))
        .collect();
    if all.iter().any(|a| a.null_count() > 0) {
        return Err(ArrowError::InvalidArgumentError("usage_events has nulls".into()));
    }
    (0..batch.num_rows())
        .map(|i| {
            Ok(UsageEvent {
                event_time_ms: time.value(i),
                event_id: EventId::new(s[0].value(i)).map_err(|e| invalid(names[0], i, e))?,
                tier: Tier::new(s[1].value(i)).map_err(|e| invalid(names[1], i, e))?,
                tenant_id: TenantId::new(s[2].value(i)).map_err(|e| invalid(names[2], i, e))?,
                user_id: UserId::new(s[3].value(i)).map_err(|e| invalid(names[3], i, e))?,
                model_id: ModelId::new(s[4].value(i)).map_err(|e| invalid(names[4], i, e))?,
                source: SourceUri::new(source.map_or("", |a| a.value(i))),
                tokens: tokens_at(&t, i),
                session_id: session
                    .filter(|a| a.is_valid(i))
                    .map(|a| SessionId::new(a.value(i)).map_err(|e| invalid("session_id", i, e)))
                    .transpose()?,
                service_tier: match service_tier {
                    None => ServiceTier::Standard,
                    Some(a) => ServiceTier::from_code(a.value(i)).ok_or_else(|| {
                        invalid("service_tier", i, format!("unknown tier {:?}", a.value(i)))
                    })?,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: i64) -> UsageEvent {
        UsageEvent {
            event_time_ms: 1_760_000_000_000 + i,
            event_id: EventId::new(format!("e{i}")).unwrap(),
            tier: Tier::new("basic").unwrap(),
            tenant_id: TenantId::new("clinic-a").unwrap(),
            user_id: UserId::new("dr.lee@clinic-a.example").unwrap(),
            model_id: ModelId::new("mistral.ministral-3-8b-instruct").unwrap(),
            source: SourceUri::new("file:///tmp/in.ndjson"),
            tokens: Tokens {
                input: 812,
                output: 97,
                total: 909,
                cache_read: i,
                ..Tokens::default()
            },
            session_id: None,
            service_tier: ServiceTier::Standard,
        }
    }

    #[test]
    fn usage_events_round_trip() {
        let mut events: Vec<_> = (0..3).map(event).collect();
        events[1].session_id = Some(SessionId::new("agent-7").unwrap());
        events[2].service_tier = ServiceTier::Priority;
        events[2].tokens.cache_write = 40;
        events[2].tokens.cache_write_1h = 30;
        events[2].tokens.total += 40;
        let mut b = UsageEventBatchBuilder::with_capacity(3);
        b.extend(&events);
        assert_eq!(b.len(), 3);
        let batch = b.finish().unwrap();
        assert!(b.is_empty());
        assert_eq!(usage_events_from_batch(&batch).unwrap(), events);
        assert_eq!(batch.schema().metadata()[SCHEMA_VERSION_KEY], "3");
        // A file of version 2 has neither the tier nor the 1-hour writes: standard, and 0.
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| {
                let name = batch.schema().field(i).name().clone();
                name != "service_tier" && name != "cache_write_1h_tokens"
            })
            .collect();
        let v2 = batch.project(&keep).unwrap();
        events[2].service_tier = ServiceTier::Standard;
        events[2].tokens.cache_write_1h = 0;
        assert_eq!(usage_events_from_batch(&v2).unwrap(), events);
        // A file of version 1 has no session column either: its lines name no session.
        let v1 = v2.project(&(0..v2.num_columns() - 1).collect::<Vec<_>>()).unwrap();
        events[1].session_id = None;
        assert_eq!(usage_events_from_batch(&v1).unwrap(), events);
    }

    #[test]
    fn tenant_hourly_round_trip() {
        let row = TenantHour {
            hour_ms: HOUR_MS * 5,
            tier: Tier::new("basic").unwrap(),
            tenant_id: TenantId::new("clinic-a").unwrap(),
            invocations: 7,
            tokens: Tokens {
                input: 1,
                output: 2,
                total: 5,
                cache_write: 2,
                cache_write_1h: 1,
                ..Tokens::default()
            },
            users: 2,
            peak_requests_per_second: 3,
        };
        let batch = tenant_hourly_batch(std::slice::from_ref(&row)).unwrap();
        assert_eq!(tenant_hourly_from_batch(&batch).unwrap(), vec![row]);
    }

    #[test]
    fn hour_start_handles_negative_times() {
        assert_eq!(hour_start_ms(HOUR_MS + 5), HOUR_MS);
        assert_eq!(hour_start_ms(-1), -HOUR_MS);
    }

    #[test]
    fn invoice_lines_keep_exact_decimals() {
        use std::str::FromStr;
        let row = InvoiceLineRow {
            invoice_number: "AM-202610-clinic-a".into(),
            tenant_id: TenantId::new("clinic-a").unwrap(),
            tier: Tier::new("basic").unwrap(),
            line: 1,
            component: "input_tokens".into(),
            model_id: Some(ModelId::new("m").unwrap()),
            quantity: 1_234_567,
            unit: "tokens".into(),
            unit_price: rust_decimal::Decimal::from_str("0.1875").unwrap(),
            amount: rust_decimal::Decimal::from_str("0.23").unwrap(),
            currency: "USD".into(),
            price_effective_from_ms: Some(0),
            price_effective_to_ms: None,
            price_book_version: "v".into(),
            provisional: false,
            service_tier: Some("standard".into()),
            long_context: Some(false),
            adjusts_period: None,
            status: "draft".into(),
        };
        let batch = invoice_lines_batch(std::slice::from_ref(&row)).unwrap();
        let prices = batch.column(8).as_primitive::<arrow_array::types::Decimal128Type>();
        assert_eq!(prices.value(0), 187_500_000_000);
        let mut bad = row;
        bad.amount = rust_decimal::Decimal::from_str("0.234").unwrap();
        let err = invoice_lines_batch(&[bad]).unwrap_err();
        assert!(err.to_string().contains("amount 0.234 does not fit 2 decimal places"), "{err}");
    }

    #[test]
    fn schemas_use_only_athena_safe_types() {
        for t in TABLES {
            for f in (t.schema)().fields() {
                assert!(
                    matches!(
                        f.data_type(),
                        DataType::Int64
                            | DataType::Utf8
                            | DataType::Boolean
                            | DataType::Float64
                            | DataType::Decimal128(38, _)
                            | DataType::Timestamp(TimeUnit::Millisecond, Some(_))
                    ),
                    "{}.{} is {:?}",
                    t.name,
                    f.name(),
                    f.data_type()
                );
            }
        }
    }
}
