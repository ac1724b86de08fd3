//! `flags`: the flags holding at the end of each evaluated day.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, SchemaRef};

use super::{utc_millis, with_version};
use crate::{TenantId, Tier};

static FLAGS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields = vec![
        Field::new("evaluated_at", utc_millis(), false),
        Field::new("id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("tier", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, true),
        Field::new("window_start", utc_millis(), false),
        Field::new("window_end", utc_millis(), false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("threshold", DataType::Float64, false),
        Field::new("hours_over", DataType::Int64, true),
        Field::new("hours_active", DataType::Int64, true),
        Field::new("evidence", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("recommended_action", DataType::Utf8, false),
    ];
    with_version(fields, "1")
});

/// Schema of `flags`.
pub fn flags_schema() -> SchemaRef {
    FLAGS_SCHEMA.clone()
}

/// One row of `flags`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagRow {
    /// When the flag was evaluated (the end of its day), milliseconds.
    pub evaluated_at_ms: i64,
    /// Stable flag identity.
    pub id: String,
    /// Kind code.
    pub kind: String,
    /// Tier.
    pub tier: Tier,
    /// Tenant, except for pool flags.
    pub tenant_id: Option<TenantId>,
    /// Evidence window, milliseconds.
    pub window_start_ms: i64,
    /// Evidence window end, milliseconds.
    pub window_end_ms: i64,
    /// Metric name.
    pub metric: String,
    /// Measured value.
    pub value: f64,
    /// Threshold crossed.
    pub threshold: f64,
    /// Hours over the threshold.
    pub hours_over: Option<i64>,
    /// Active hours.
    pub hours_active: Option<i64>,
    /// The evidence as JSON.
    pub evidence: String,
    /// Severity code.
    pub severity: String,
    /// Recommended action.
    pub recommended_action: String,
}

/// Builds a `flags` record batch.
///
/// # Errors
///
/// Only if the columns disagree with the schema, which would be a bug here.
pub fn flags_batch(rows: &[FlagRow]) -> Result<RecordBatch, ArrowError> {
    use arrow_array::builder::Float64Builder;
    let n = rows.len();
    let ts = || TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let text = || StringBuilder::with_capacity(n, n * 24);
    let (mut at, mut start, mut end) = (ts(), ts(), ts());
    let (
        mut id,
        mut kind,
        mut tier,
        mut tenant,
        mut metric,
        mut evidence,
        mut severity,
        mut action,
    ) = (text(), text(), text(), text(), text(), text(), text(), text());
    let (mut value, mut threshold) =
        (Float64Builder::with_capacity(n), Float64Builder::with_capacity(n));
    let (mut over, mut active) = (Int64Builder::with_capacity(n), Int64Builder::with_capacity(n));
    for r in rows {
        at.append_value(r.evaluated_at_ms);
        id.append_value(&r.id);
        kind.append_value(&r.kind);
        tier.append_value(r.tier.as_str());
        tenant.append_option(r.tenant_id.as_ref().map(TenantId::as_str));
        start.append_value(r.window_start_ms);
        end.append_value(r.window_end_ms);
        metric.append_value(&r.metric);
        value.append_value(r.value);
        threshold.append_value(r.threshold);
        over.append_option(r.hours_over);
        active.append_option(r.hours_active);
        evidence.append_value(&r.evidence);
        severity.append_value(&r.severity);
        action.append_value(&r.recommended_action);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(at.finish()),
        Arc::new(id.finish()),
        Arc::new(kind.finish()),
        Arc::new(tier.finish()),
        Arc::new(tenant.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(metric.finish()),
        Arc::new(value.finish()),
        Arc::new(threshold.finish()),
        Arc::new(over.finish()),
        Arc::new(active.finish()),
        Arc::new(evidence.finish()),
        Arc::new(severity.finish()),
        Arc::new(action.finish()),
    ];
    RecordBatch::try_new(flags_schema(), columns)
}
