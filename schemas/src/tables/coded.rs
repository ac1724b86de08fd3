//! Batches for the lake's writer whose repeated string columns come as Arrow dictionaries,
//! coded by the address of the shared text a record holds (an `Arc<str>` id, a static code),
//! or by the text itself where each record holds its own (a span's name): the writer
//! dictionary-encodes them from the codes instead of copying and hashing every row's text
//! (`agentmeter_aggregate`'s coded columns).

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{ArrayBuilder, StringBuilder, UInt32Builder};
use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use rustc_hash::FxHashMap;

use super::{agent_spans_schema, token_values, usage_events_schema};
use crate::{AgentSpan, ModelId, UsageEvent, UserId};

/// The `usage_events` columns a coded batch holds as dictionaries.
pub const USAGE_EVENTS_CODED: [&str; 6] =
    ["tier", "tenant_id", "user_id", "model_id", "source", "service_tier"];

static USAGE_EVENTS_CODED_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| coded_schema(&usage_events_schema(), &USAGE_EVENTS_CODED));

/// The `agent_spans` columns a coded batch holds as dictionaries: every string column but the
/// ids.
pub const AGENT_SPANS_CODED: [&str; 11] = [
    "name",
    "operation",
    "tier",
    "tenant_id",
    "user_id",
    "model_id",
    "tool_name",
    "status",
    "scope",
    "service",
    "source",
];

static AGENT_SPANS_CODED_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| coded_schema(&agent_spans_schema(), &AGENT_SPANS_CODED));

/// `schema` with the columns named in `coded` as `Dictionary(UInt32, Utf8)`.
pub fn coded_schema(schema: &Schema, coded: &[&str]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if coded.contains(&f.name().as_str()) {
                let dict =
                    DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8));
                Field::new(f.name(), dict, f.is_nullable())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// One column of a batch as a dictionary coded by the address of each row's text, or by the
/// text ([`SliceDictionary::of_text`]).
pub struct SliceDictionary<'a> {
    codes: Codes<'a>,
    /// The row before's text and code: rows sorted by tenant and time repeat most values.
    last: Option<(&'a str, u32)>,
    values: StringBuilder,
    keys: UInt32Builder,
}

/// The codes given so far, by what a row's value is known by.
enum Codes<'a> {
    /// By the address (and length) of the text.
    At(FxHashMap<(usize, usize), u32>),
    /// By the text.
    Text(FxHashMap<&'a str, u32>),
}

impl<'a> SliceDictionary<'a> {
    /// Room for `rows` rows of shared text, coded by address: equal texts at different
    /// addresses get different codes here (the writer merges them); text held once and
    /// shared is looked up by address alone.
    pub fn with_capacity(rows: usize) -> Self {
        Self::coded_by(Codes::At(FxHashMap::default()), rows)
    }

    /// Room for `rows` rows of text each record holds on its own, coded by text.
    pub fn of_text(rows: usize) -> Self {
        Self::coded_by(Codes::Text(FxHashMap::default()), rows)
    }

    fn coded_by(codes: Codes<'a>, rows: usize) -> Self {
        Self {
            codes,
            last: None,
            values: StringBuilder::new(),
            keys: UInt32Builder::with_capacity(rows),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, value: &'a str) {
        let code = match self.last {
            Some((last, code)) if self.same(last, value) => code,
            _ => {
                // A value a code: the next code is the number of values so far.
                let next = self.values.len() as u32;
                let code = match &mut self.codes {
                    Codes::At(codes) => {
                        *codes.entry((value.as_ptr() as usize, value.len())).or_insert(next)
                    }
                    Codes::Text(codes) => *codes.entry(value).or_insert(next),
                };
                if code == next {
                    self.values.append_value(value);
                }
                self.last = Some((value, code));
                code
            }
        };
        self.keys.append_value(code);
    }

    /// Appends a row that may be null.
    pub fn push_opt(&mut self, value: Option<&'a str>) {
        match value {
            Some(v) => self.push(v),
            None => self.keys.append_null(),
        }
    }

    /// Whether `value` is coded as `last` was.
    fn same(&self, last: &str, value: &str) -> bool {
        match self.codes {
            Codes::At(_) => std::ptr::eq(last, value),
            Codes::Text(_) => last == value,
        }
    }

    /// The column, as `Dictionary(UInt32, Utf8)`.
    ///
    /// # Errors
    ///
    /// None in practice: every key was made for a value.
    pub fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let values = self.values.finish();
        let keys = self.keys.finish();
        Ok(Arc::new(DictionaryArray::try_new(keys, Arc::new(values))?))
    }
}

/// `usage_events` rows as a batch of [`usage_events_coded_schema`]: the columns of
/// [`USAGE_EVENTS_CODED`] as dictionaries, the others as [`super::UsageEventBatchBuilder`]
/// makes them.
///
/// # Errors
///
/// Only if the columns disagree with the schema, which would be a bug here.
pub fn usage_events_coded_batch<'a>(
    rows: impl ExactSizeIterator<Item = &'a UsageEvent> + Clone,
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let (mut id_bytes, mut session_bytes) = (0, 0);
    for e in rows.clone() {
        id_bytes += e.event_id.as_str().len();
        session_bytes += e.session_id.as_ref().map_or(0, |s| s.as_str().len());
    }
    let mut time = Vec::with_capacity(n);
    let mut ids = StringBuilder::with_capacity(n, id_bytes);
    let mut coded: [SliceDictionary; 6] =
        std::array::from_fn(|_| SliceDictionary::with_capacity(n));
    let mut tokens: [Vec<i64>; 6] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut session = StringBuilder::with_capacity(n, session_bytes);
    for e in rows {
        time.push(e.event_time_ms);
        ids.append_value(e.event_id.as_str());
        let [tier, tenant, user, model, source, service_tier] = &mut coded;
        tier.push(e.tier.as_str());
        tenant.push(e.tenant_id.as_str());
        user.push(e.user_id.as_str());
        model.push(e.model_id.as_str());
        source.push(e.source.as_str());
        service_tier.push(e.service_tier.code());
        for (column, v) in tokens.iter_mut().zip(token_values(&e.tokens)) {
            column.push(v);
        }
        session.append_option(e.session_id.as_ref().map(|s| s.as_str()));
    }
    let time = arrow_array::TimestampMillisecondArray::from(time).with_timezone("UTC");
    let [tier, tenant, user, model, source, service_tier] = coded;
    let mut columns: Vec<ArrayRef> = vec![Arc::new(time), Arc::new(ids.finish())];
    for c in [tier, tenant, user, model, source] {
        columns.push(c.finish()?);
    }
    columns.extend(tokens.map(|t| Arc::new(Int64Array::from(t)) as ArrayRef));
    columns.push(Arc::new(session.finish()));
    columns.push(service_tier.finish()?);
    RecordBatch::try_new(usage_events_coded_schema(), columns)
}

/// The schema of [`usage_events_coded_batch`].
pub fn usage_events_coded_schema() -> SchemaRef {
    USAGE_EVENTS_CODED_SCHEMA.clone()
}

/// `agent_spans` rows as a batch of [`agent_spans_coded_schema`]: the columns of
/// [`AGENT_SPANS_CODED`] as dictionaries (the shared ids and codes by address, the span's own
/// texts by text), the others as [`super::agent_spans_batch`] makes them.
///
/// # Errors
///
/// Only if the columns disagree with the schema, which would be a bug here.
pub fn agent_spans_coded_batch<'a>(
    spans: impl ExactSizeIterator<Item = &'a AgentSpan>,
) -> Result<RecordBatch, ArrowError> {
    let n = spans.len();
    let ms = || Vec::with_capacity(n);
    let (mut start, mut end, mut duration) = (ms(), ms(), ms());
    let ids = || StringBuilder::with_capacity(n, n * 32);
    let (mut trace, mut span, mut parent) = (ids(), ids(), ids());
    let text = || SliceDictionary::of_text(n);
    let shared = || SliceDictionary::with_capacity(n);
    let (mut name, mut operation, mut tool, mut scope, mut service) =
        (text(), text(), text(), text(), text());
    let (mut tier, mut tenant, mut user, mut model, mut status, mut source) =
        (shared(), shared(), shared(), shared(), shared(), shared());
    let mut tokens: [Vec<Option<i64>>; 5] = std::array::from_fn(|_| Vec::with_capacity(n));
    for sp in spans {
        start.push(sp.start_ms);
        end.push(sp.end_ms);
        duration.push(sp.duration_ms());
        trace.append_value(&sp.trace_id);
        span.append_value(&sp.span_id);
        parent.append_option(sp.parent_span_id.as_deref());
        name.push(&sp.name);
        operation.push_opt(sp.operation.as_deref());
        tier.push(sp.tier.as_str());
        tenant.push(sp.tenant_id.as_str());
        user.push_opt(sp.user_id.as_ref().map(UserId::as_str));
        model.push_opt(sp.model_id.as_ref().map(ModelId::as_str));
        tool.push_opt(sp.tool_name.as_deref());
        status.push(sp.status.code());
        let t = &sp.tokens;
        for (c, v) in
            tokens.iter_mut().zip([t.input, t.output, t.total, t.cache_read, t.cache_write])
        {
            c.push(v);
        }
        scope.push(&sp.scope);
        service.push_opt(sp.service.as_deref());
        source.push(sp.source.as_str());
    }
    let time = |ms: Vec<i64>| {
        Arc::new(arrow_array::TimestampMillisecondArray::from(ms).with_timezone("UTC")) as ArrayRef
    };
    let mut columns: Vec<ArrayRef> =
        vec![time(start), time(end), Arc::new(Int64Array::from(duration))];
    for ids in [trace, span, parent].iter_mut() {
        columns.push(Arc::new(ids.finish()));
    }
    for c in [name, operation, tier, tenant, user, model, tool, status] {
        columns.push(c.finish()?);
    }
    columns.extend(tokens.map(|t| Arc::new(Int64Array::from(t)) as ArrayRef));
    for c in [scope, service, source] {
        columns.push(c.finish()?);
    }
    RecordBatch::try_new(agent_spans_coded_schema(), columns)
}

/// The schema of [`agent_spans_coded_batch`].
pub fn agent_spans_coded_schema() -> SchemaRef {
    AGENT_SPANS_CODED_SCHEMA.clone()
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt32Type;
    use arrow_array::{Array, StringArray};

    use super::*;
    use crate::tables::UsageEventBatchBuilder;
    use crate::{EventId, ModelId, ServiceTier, SessionId, SourceUri, TenantId, Tier, UserId};

    /// A coded batch holds the rows of the plain one, its shared texts coded once by address
    /// (the text repeated at another address coded apart), the others as they are.
    #[test]
    fn a_coded_batch_holds_the_rows_of_the_plain_batch() {
        let first = UsageEvent {
            event_time_ms: 1_760_000_000_000,
            event_id: EventId::new("e0").unwrap(),
            tier: Tier::new("basic").unwrap(),
            tenant_id: TenantId::new("clinic-a").unwrap(),
            user_id: UserId::new("dr.lee@clinic-a.example").unwrap(),
            model_id: ModelId::new("mistral.ministral-3-8b-instruct").unwrap(),
            source: SourceUri::new("file:///tmp/in.ndjson"),
            tokens: crate::Tokens { input: 812, output: 97, total: 909, ..Default::default() },
            session_id: None,
            service_tier: ServiceTier::Standard,
        };
        let mut events = Vec::new();
        for i in 0..40 {
            // Clones share their ids' text, as a decoder's cached ids do.
            let mut e = first.clone();
            e.event_id = EventId::new(format!("e{i}")).unwrap();
            e.tokens.input = i;
            if i % 3 == 0 {
                e.user_id = UserId::new(format!("user-{}", i % 4)).unwrap();
                e.session_id = Some(SessionId::new(format!("s{i}")).unwrap());
            }
            if i % 5 == 0 {
                e.service_tier = ServiceTier::Priority;
            }
            events.push(e);
        }
        // The same tenant's text made again: equal, at another address.
        events[7].tenant_id = TenantId::new("clinic-a").unwrap();
        let coded = usage_events_coded_batch(events.iter()).unwrap();
        let mut plain = UsageEventBatchBuilder::with_capacity(events.len());
        plain.extend(&events);
        let plain = plain.finish().unwrap();
        assert_eq!(coded.schema(), usage_events_coded_schema());
        same_rows(&coded, &plain, &USAGE_EVENTS_CODED, |name| match name {
            // Two addresses of "clinic-a".
            "tenant_id" => 2,
            // The shared user and the 14 made one a row.
            "user_id" => 15,
            "service_tier" => 2,
            _ => 1,
        });
    }

    /// `coded` holds `plain`'s rows: the columns named in `coded_names` as dictionaries of
    /// `distinct(name)` values, the others as they are.
    fn same_rows(
        coded: &RecordBatch,
        plain: &RecordBatch,
        coded_names: &[&str],
        distinct: impl Fn(&str) -> usize,
    ) {
        assert_eq!(coded.num_columns(), plain.num_columns());
        for (i, field) in plain.schema().fields().iter().enumerate() {
            let (ours, theirs, name) = (coded.column(i), plain.column(i), field.name().as_str());
            if !coded_names.contains(&name) {
                assert_eq!(ours, theirs, "{name}");
                continue;
            }
            let (rows, values) = dictionary_rows(ours);
            let want: Vec<Option<&str>> = theirs.as_string::<i32>().iter().collect();
            assert_eq!(rows, want, "{name}");
            assert_eq!(values, distinct(name), "{name}");
        }
    }

    /// A dictionary column's rows, nulls as `None`.
    fn dictionary_rows(column: &ArrayRef) -> (Vec<Option<&str>>, usize) {
        let dict = column.as_dictionary::<UInt32Type>();
        let values: &StringArray = dict.values().as_string();
        let rows = dict.keys().iter().map(|k| k.map(|k| values.value(k as usize))).collect();
        (rows, values.len())
    }

    /// A coded span batch holds the rows of the plain one, nulls included: the shared ids
    /// and codes coded by address, a span's own texts by text (equal texts held apart share
    /// a code).
    #[test]
    fn a_coded_span_batch_holds_the_rows_of_the_plain_batch() {
        use crate::tables::agent_spans_batch;
        use crate::{AgentSpan, InlineText, SpanStatus, SpanTokens};
        let tenant = TenantId::new("hospital-a").unwrap();
        let user = UserId::new("dr.lee@hospital-a.example").unwrap();
        let (tier, source) =
            (Tier::new("premium").unwrap(), SourceUri::new("otlp://127.0.0.1:4318"));
        let spans: Vec<AgentSpan> = (0..30)
            .map(|i| AgentSpan {
                trace_id: format!("{i:032x}").as_str().into(),
                span_id: format!("{i:016x}").as_str().into(),
                parent_span_id: (i % 2 == 0).then(|| InlineText::from("b7ad6b7169203330")),
                name: ["chat", "execute_tool search", "invoke_agent triage"][i % 3].into(),
                operation: (i % 4 != 0).then(|| InlineText::from("execute_tool")),
                start_ms: 1_790_812_800_000 + i as i64,
                end_ms: 1_790_812_800_250 + i as i64,
                tier: tier.clone(),
                // One span's tenant made again: equal text at another address.
                tenant_id: if i == 7 {
                    TenantId::new("hospital-a").unwrap()
                } else {
                    tenant.clone()
                },
                user_id: (i % 3 == 1).then(|| user.clone()),
                model_id: None,
                tool_name: (i % 5 == 0)
                    .then(|| InlineText::from(format!("tool-{}", i % 2).as_str())),
                status: if i % 6 == 0 { SpanStatus::Error } else { SpanStatus::Ok },
                tokens: SpanTokens {
                    input: (i % 2 == 0).then_some(i as i64),
                    ..Default::default()
                },
                scope: "strands.telemetry.tracer".into(),
                service: (i < 20).then(|| InlineText::from("agent")),
                source: source.clone(),
            })
            .collect();
        let coded = agent_spans_coded_batch(spans.iter()).unwrap();
        let plain = agent_spans_batch(spans.iter()).unwrap();
        assert_eq!(coded.schema(), agent_spans_coded_schema());
        same_rows(&coded, &plain, &AGENT_SPANS_CODED, |name| match name {
            "name" => 3,
            // Two addresses of "hospital-a".
            "tenant_id" => 2,
            "tool_name" | "status" => 2,
            // Nulls only.
            "model_id" => 0,
            _ => 1,
        });
        assert_eq!(coded.column_by_name("model_id").unwrap().null_count(), 30);
    }
}
