//! The span tables: `agent_spans` (one row per distinct span) and `agent_invocations`
//! (derived: one row per `invoke_agent` span with the tool calls made inside it).

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, SchemaRef};

use super::{column, invalid, utc_millis, with_version};
use crate::{
    AgentSpan, InlineText, ModelId, SourceUri, SpanStatus, SpanTokens, TenantId, Tier, UserId,
};

/// Name of the spans table.
pub const AGENT_SPANS: &str = "agent_spans";
/// Name of the derived agent invocations table.
pub const AGENT_INVOCATIONS: &str = "agent_invocations";

const SPAN_TOKENS: [&str; 5] =
    ["input_tokens", "output_tokens", "total_tokens", "cache_read_tokens", "cache_write_tokens"];

static AGENT_SPANS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("start_time", utc_millis(), false),
        Field::new("end_time", utc_millis(), false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, false),
        Field::new("operation", DataType::Utf8, true),
        Field::new("tier", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("model_id", DataType::Utf8, true),
        Field::new("tool_name", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
    ];
    fields.extend(SPAN_TOKENS.iter().map(|c| Field::new(*c, DataType::Int64, true)));
    fields.push(Field::new("scope", DataType::Utf8, false));
    fields.push(Field::new("service", DataType::Utf8, true));
    fields.push(Field::new("source", DataType::Utf8, false));
    with_version(fields, "1")
});

/// Schema of `agent_spans`.
pub fn agent_spans_schema() -> SchemaRef {
    AGENT_SPANS_SCHEMA.clone()
}

/// Builds an `agent_spans` batch.
///
/// # Errors
///
/// Only if the columns disagree with the schema, which would be a bug here.
pub fn agent_spans_batch<'a>(
    spans: impl ExactSizeIterator<Item = &'a AgentSpan>,
) -> Result<RecordBatch, ArrowError> {
    let n = spans.len();
    let ts = || TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let text = || StringBuilder::with_capacity(n, n * 16);
    let (mut start, mut end) = (ts(), ts());
    let mut duration = Int64Builder::with_capacity(n);
    let mut s: [StringBuilder; 11] = std::array::from_fn(|_| text());
    let mut tokens: [Int64Builder; 5] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
    let (mut scope, mut service, mut source) = (text(), text(), text());
    for sp in spans {
        start.append_value(sp.start_ms);
        end.append_value(sp.end_ms);
        duration.append_value(sp.duration_ms());
        s[0].append_value(&sp.trace_id);
        s[1].append_value(&sp.span_id);
        s[2].append_option(sp.parent_span_id.as_deref());
        s[3].append_value(&sp.name);
        s[4].append_option(sp.operation.as_deref());
        s[5].append_value(sp.tier.as_str());
        s[6].append_value(sp.tenant_id.as_str());
        s[7].append_option(sp.user_id.as_ref().map(UserId::as_str));
        s[8].append_option(sp.model_id.as_ref().map(ModelId::as_str));
        s[9].append_option(sp.tool_name.as_deref());
        s[10].append_value(sp.status.code());
        let t = &sp.tokens;
        for (b, v) in
            tokens.iter_mut().zip([t.input, t.output, t.total, t.cache_read, t.cache_write])
        {
            b.append_option(v);
        }
        scope.append_value(&sp.scope);
        service.append_option(sp.service.as_deref());
        source.append_value(sp.source.as_str());
    }
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(start.finish()), Arc::new(end.finish()), Arc::new(duration.finish())];
    for b in &mut s {
        columns.push(Arc::new(b.finish()));
    }
    for b in &mut tokens {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(scope.finish()));
    columns.push(Arc::new(service.finish()));
    columns.push(Arc::new(source.finish()));
    RecordBatch::try_new(agent_spans_schema(), columns)
}

fn opt_str(a: &arrow_array::StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn opt_int(a: &arrow_array::PrimitiveArray<Int64Type>, i: usize) -> Option<i64> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn str_col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a arrow_array::StringArray, ArrowError> {
    column(b, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} is not utf8")))
}

fn int_col<'a>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow_array::PrimitiveArray<Int64Type>, ArrowError> {
    column(b, name)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} is not int64")))
}

fn ts_col<'a>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow_array::PrimitiveArray<TimestampMillisecondType>, ArrowError> {
    column(b, name)?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} is not timestamp(ms)")))
}

/// Reads `agent_spans` rows back, validating identifiers.
///
/// # Errors
///
/// A missing or mistyped column, or an identifier that fails validation.
pub fn agent_spans_from_batch(b: &RecordBatch) -> Result<Vec<AgentSpan>, ArrowError> {
    let (start, end) = (ts_col(b, "start_time")?, ts_col(b, "end_time")?);
    let names = [
        "trace_id",
        "span_id",
        "parent_span_id",
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
    ];
    let s: Vec<_> = names.iter().map(|n| str_col(b, n)).collect::<Result<_, _>>()?;
    // Absent from a read of the other columns only.
    let source = b.column_by_name("source").map(|_| str_col(b, "source")).transpose()?;
    let t: Vec<_> = SPAN_TOKENS.iter().map(|n| int_col(b, n)).collect::<Result<_, _>>()?;
    (0..b.num_rows())
        .map(|i| {
            Ok(AgentSpan {
                trace_id: s[0].value(i).into(),
                span_id: s[1].value(i).into(),
                parent_span_id: opt_str(s[2], i).map(InlineText::from),
                name: s[3].value(i).into(),
                operation: opt_str(s[4], i).map(InlineText::from),
                start_ms: start.value(i),
                end_ms: end.value(i),
                tier: Tier::new(s[5].value(i)).map_err(|e| invalid("tier", i, e))?,
                tenant_id: TenantId::new(s[6].value(i)).map_err(|e| invalid("tenant_id", i, e))?,
                user_id: opt_str(s[7], i)
                    .map(UserId::new)
                    .transpose()
                    .map_err(|e| invalid("user_id", i, e))?,
                model_id: opt_str(s[8], i)
                    .map(ModelId::new)
                    .transpose()
                    .map_err(|e| invalid("model_id", i, e))?,
                tool_name: opt_str(s[9], i).map(InlineText::from),
                status: SpanStatus::from_code(s[10].value(i)),
                tokens: SpanTokens {
                    input: opt_int(t[0], i),
                    output: opt_int(t[1], i),
                    total: opt_int(t[2], i),
                    cache_read: opt_int(t[3], i),
                    cache_write: opt_int(t[4], i),
                },
                scope: s[11].value(i).into(),
                service: opt_str(s[12], i).map(InlineText::from),
                source: SourceUri::new(source.map_or("", |a| a.value(i))),
            })
        })
        .collect()
}

/// One agent invocation: an `invoke_agent` span and what happened inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRow {
    /// Start, milliseconds.
    pub start_ms: i64,
    /// Trace id.
    pub trace_id: String,
    /// Span id of the `invoke_agent` span.
    pub span_id: String,
    /// Tier.
    pub tier: Tier,
    /// Tenant.
    pub tenant_id: TenantId,
    /// User, when known.
    pub user_id: Option<UserId>,
    /// Model, when known.
    pub model_id: Option<ModelId>,
    /// Duration, milliseconds.
    pub duration_ms: i64,
    /// `execute_tool` spans below it.
    pub tool_calls: i64,
    /// Of those, the failed ones.
    pub tool_errors: i64,
    /// `chat` spans below it.
    pub model_calls: i64,
    /// The invocation's status.
    pub status: SpanStatus,
}

static AGENT_INVOCATIONS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields = vec![
        Field::new("start_time", utc_millis(), false),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("tier", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("model_id", DataType::Utf8, true),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("tool_calls", DataType::Int64, false),
        Field::new("tool_errors", DataType::Int64, false),
        Field::new("model_calls", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
    ];
    with_version(fields, "1")
});

/// Schema of `agent_invocations`.
pub fn agent_invocations_schema() -> SchemaRef {
    AGENT_INVOCATIONS_SCHEMA.clone()
}

/// Builds an `agent_invocations` batch.
///
/// # Errors
///
/// Only if the columns disagree with the schema, which would be a bug here.
pub fn agent_invocations_batch(rows: &[InvocationRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut start = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut s: [StringBuilder; 7] =
        std::array::from_fn(|_| StringBuilder::with_capacity(n, n * 16));
    let mut ints: [Int64Builder; 4] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
    for r in rows {
        start.append_value(r.start_ms);
        s[0].append_value(&r.trace_id);
        s[1].append_value(&r.span_id);
        s[2].append_value(r.tier.as_str());
        s[3].append_value(r.tenant_id.as_str());
        s[4].append_option(r.user_id.as_ref().map(UserId::as_str));
        s[5].append_option(r.model_id.as_ref().map(ModelId::as_str));
        s[6].append_value(r.status.code());
        for (b, v) in
            ints.iter_mut().zip([r.duration_ms, r.tool_calls, r.tool_errors, r.model_calls])
        {
            b.append_value(v);
        }
    }
    let [trace, span, tier, tenant, user, model, status] = &mut s;
    let [duration, tools, errors, models] = &mut ints;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(start.finish()),
        Arc::new(trace.finish()),
        Arc::new(span.finish()),
        Arc::new(tier.finish()),
        Arc::new(tenant.finish()),
        Arc::new(user.finish()),
        Arc::new(model.finish()),
        Arc::new(duration.finish()),
        Arc::new(tools.finish()),
        Arc::new(errors.finish()),
        Arc::new(models.finish()),
        Arc::new(status.finish()),
    ];
    RecordBatch::try_new(agent_invocations_schema(), columns)
}

/// Reads `agent_invocations` rows back.
///
/// # Errors
///
/// A missing or mistyped column, or an identifier that fails validation.
pub fn agent_invocations_from_batch(b: &RecordBatch) -> Result<Vec<InvocationRow>, ArrowError> {
    let start = ts_col(b, "start_time")?;
    let names = ["trace_id", "span_id", "tier", "tenant_id", "user_id", "model_id", "status"];
    let s: Vec<_> = names.iter().map(|n| str_col(b, n)).collect::<Result<_, _>>()?;
    let ints = ["duration_ms", "tool_calls", "tool_errors", "model_calls"];
    let n: Vec<_> = ints.iter().map(|c| int_col(b, c)).collect::<Result<_, _>>()?;
    (0..b.num_rows())
        .map(|i| {
            Ok(InvocationRow {
                start_ms: start.value(i),
                trace_id: s[0].value(i).to_owned(),
                span_id: s[1].value(i).to_owned(),
                tier: Tier::new(s[2].value(i)).map_err(|e| invalid("tier", i, e))?,
                tenant_id: TenantId::new(s[3].value(i)).map_err(|e| invalid("tenant_id", i, e))?,
                user_id: opt_str(s[4], i)
                    .map(UserId::new)
                    .transpose()
                    .map_err(|e| invalid("user_id", i, e))?,
                model_id: opt_str(s[5], i)
                    .map(ModelId::new)
                    .transpose()
                    .map_err(|e| invalid("model_id", i, e))?,
                duration_ms: n[0].value(i),
                tool_calls: n[1].value(i),
                tool_errors: n[2].value(i),
                model_calls: n[3].value(i),
                status: SpanStatus::from_code(s[6].value(i)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(i: usize) -> AgentSpan {
        AgentSpan {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: format!("b7ad6b716920333{i}").into(),
            parent_span_id: (i > 0).then(|| "b7ad6b7169203330".into()),
            name: "execute_tool search".into(),
            operation: Some("execute_tool".into()),
            start_ms: 1_790_812_800_000,
            end_ms: 1_790_812_800_250,
            tier: Tier::new("premium").unwrap(),
            tenant_id: TenantId::new("hospital-a").unwrap(),
            user_id: (i == 1).then(|| UserId::new("dr.lee@hospital-a.example").unwrap()),
            model_id: None,
            tool_name: Some("search".into()),
            status: if i == 1 { SpanStatus::Error } else { SpanStatus::Ok },
            tokens: SpanTokens { input: Some(10), ..Default::default() },
            scope: "strands.telemetry.tracer".into(),
            service: Some("agent".into()),
            source: SourceUri::new("otlp://127.0.0.1:4318"),
        }
    }

    #[test]
    fn spans_round_trip() {
        let spans: Vec<_> = (0..3).map(span).collect();
        let batch = agent_spans_batch(spans.iter()).unwrap();
        assert_eq!(agent_spans_from_batch(&batch).unwrap(), spans);
        assert_eq!(batch.column(2).as_primitive::<Int64Type>().value(0), 250);
    }

    #[test]
    fn invocations_round_trip() {
        let row = InvocationRow {
            start_ms: 5,
            trace_id: "t".into(),
            span_id: "s".into(),
            tier: Tier::new("basic").unwrap(),
            tenant_id: TenantId::new("c").unwrap(),
            user_id: None,
            model_id: Some(ModelId::new("m").unwrap()),
            duration_ms: 301_000,
            tool_calls: 11,
            tool_errors: 1,
            model_calls: 12,
            status: SpanStatus::Ok,
        };
        let batch = agent_invocations_batch(std::slice::from_ref(&row)).unwrap();
        assert_eq!(agent_invocations_from_batch(&batch).unwrap(), vec![row]);
    }
}
