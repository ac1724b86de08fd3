//! One `ExportTraceServiceRequest` into one outcome per span.

use agentmeter_schemas::{
    AgentSpan, InlineText, Position, QuarantineEntry, RawFormat, Reason, SourceUri, SpanStatus,
    valid_hex_id,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

use super::OtlpError;
use super::attrs::{self, Attrs};
use super::model::{KeyValue, Request, Resource, ResourceSpans, Scope, ScopeSpans, Span, Status};
use crate::config::DecodeConfig;
use crate::decode::{Ctx, Decoded, Outcome};
use crate::normalize::{Refusal, check_time_ms, refuse};

/// Decodes one protobuf-encoded `ExportTraceServiceRequest` (or `TracesData`, the same
/// message) into one outcome per span, in request order: [`Outcome::Span`] or
/// [`Outcome::Reject`]. A refused span's position has `event` = its 1-based index in the
/// request.
///
/// # Errors
///
/// [`OtlpError::Protobuf`] when `body` is not such a message; no span is decoded then.
pub fn decode_proto(
    body: &[u8],
    source: &SourceUri,
    cfg: &DecodeConfig,
) -> Result<Decoded, OtlpError> {
    let mut out = Decoded::default();
    proto_in(body, Ctx::new(source, Position::default()), cfg, &mut out)?;
    Ok(out)
}

/// Decodes one `ExportTraceServiceRequest` in the OTLP JSON encoding, as
/// [`decode_proto`] does.
///
/// # Errors
///
/// [`OtlpError::Json`] when `body` is not JSON (or nests deeper than the parser's 128 levels) or not shaped as a request (for example a
/// string where an array belongs, an id that is not a string, an integer out of range).
pub fn decode_json(
    body: &[u8],
    source: &SourceUri,
    cfg: &DecodeConfig,
) -> Result<Decoded, OtlpError> {
    let mut out = Decoded::default();
    json_in(body, Ctx::new(source, Position::default()), cfg, &mut out, false)?;
    Ok(out)
}

/// [`decode_proto`] at a position, appending to `out`.
pub(crate) fn proto_in(
    body: &[u8],
    ctx: Ctx<'_>,
    cfg: &DecodeConfig,
    out: &mut Decoded,
) -> Result<(), OtlpError> {
    let req = ExportTraceServiceRequest::decode(body).map_err(OtlpError::Protobuf)?;
    request(&Request::from(req), ctx, cfg, out, false);
    Ok(())
}

/// [`decode_json`] at a position, appending to `out`. `replayed_span`: the body is the raw
/// bytes of a quarantined span, whose position already names the span.
pub(crate) fn json_in(
    body: &[u8],
    ctx: Ctx<'_>,
    cfg: &DecodeConfig,
    out: &mut Decoded,
    replayed_span: bool,
) -> Result<(), OtlpError> {
    let req = match std::str::from_utf8(body).ok().and_then(super::flat::request) {
        Some((req, _)) => req,
        None => serde_json::from_slice(body).map_err(OtlpError::Json)?,
    };
    request(&req, ctx, cfg, out, replayed_span);
    Ok(())
}

/// A line that starts as an OTLP JSON request (`{"resourceSpans"`), decoded in one pass
/// instead of being read for its fields first. `false` (nothing appended) when it is not a
/// whole request, or also names `event` or the quarantine marker at its top level: the general
/// path then reads it, with the same outcome it always had. Read as text, which the line was
/// checked to be: parsed as bytes, each of its strings was checked again.
pub(crate) fn request_line(
    line: &str,
    ctx: Ctx<'_>,
    cfg: &DecodeConfig,
    out: &mut Decoded,
) -> bool {
    let read = super::flat::request(line).or_else(|| {
        let r = serde_json::from_str::<super::model::RequestLine>(line).ok()?;
        Some((r.request, r.names_other_record))
    });
    match read {
        Some((req, false)) => {
            request(&req, ctx, cfg, out, false);
            true
        }
        _ => false,
    }
}

fn request(req: &Request, ctx: Ctx<'_>, cfg: &DecodeConfig, out: &mut Decoded, keep_pos: bool) {
    let total: usize =
        req.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum();
    let mut index = 0u64;
    for rs in &req.resource_spans {
        let resource = rs.resource.as_ref().map_or(&[][..], |r| r.attributes.as_slice());
        let service = attrs::service(resource);
        let resource_attrs = attrs::Index::new(resource, &cfg.tenant_field);
        for ss in &rs.scope_spans {
            let scope = attrs::truncate(ss.scope.as_ref().map_or("", |s| s.name.as_str()));
            for span in &ss.spans {
                index += 1;
                let pos = if keep_pos && total == 1 {
                    ctx.pos
                } else {
                    Position { event: Some(index), ..ctx.pos }
                };
                let span_ok = attribute_count(&span.attributes, resource, cfg)
                    .and_then(|()| {
                        let a = Attrs::new(&span.attributes, resource_attrs, &cfg.tenant_field);
                        agent_span(span, &a, &scope, &service, ctx.source, cfg)
                    })
                    .and_then(|s| {
                        out.ids.admit(&s.tenant_id, s.user_id.as_ref(), &cfg.limits).map(|()| s)
                    });
                let outcome = match span_ok {
                    Ok(s) => Outcome::Span(Box::new(s)),
                    Err(r) => Outcome::Reject(Box::new(quarantine(r, rs, ss, span, ctx, pos, cfg))),
                };
                out.outcomes.push(outcome);
            }
        }
    }
}

/// Refuses a span whose own attributes, or its resource's, are more than the limit: its
/// context is looked up in both, so their length multiplies a request's cost.
fn attribute_count(
    span: &[KeyValue],
    resource: &[KeyValue],
    cfg: &DecodeConfig,
) -> Result<(), Refusal> {
    let max = cfg.limits.attributes;
    for (what, n) in [("span", span.len()), ("resource", resource.len())] {
        if n > max {
            return Err(refuse(
                agentmeter_schemas::Reason::OverLimit,
                format!("the {what} has {n} attributes, over the limit of {max}"),
            ));
        }
    }
    Ok(())
}

/// The refused span alone, with its resource and scope, as an OTLP JSON request: replaying it
/// decodes the same span. Only what the decoder reads is kept (ids, name, kind, times, status
/// code, the attributes of [`attrs::is_read`], the scope's name and version): events and links
/// were never read, and the status message, trace state and every other attribute may carry
/// free text.
fn quarantine(
    r: Refusal,
    rs: &ResourceSpans,
    ss: &ScopeSpans,
    span: &Span,
    ctx: Ctx<'_>,
    pos: Position,
    cfg: &DecodeConfig,
) -> QuarantineEntry {
    let read = |kvs: &[KeyValue]| -> Vec<KeyValue> {
        kvs.iter().filter(|kv| attrs::is_read(&kv.key, &cfg.tenant_field)).cloned().collect()
    };
    let span = Span {
        attributes: read(&span.attributes),
        trace_state: String::new(),
        status: span.status.as_ref().map(|s| Status { code: s.code, message: String::new() }),
        ..span.clone()
    };
    let one = Request {
        resource_spans: vec![ResourceSpans {
            resource: rs
                .resource
                .as_ref()
                .map(|r| Resource { attributes: read(&r.attributes), ..r.clone() }),
            scope_spans: vec![ScopeSpans {
                scope: ss.scope.as_ref().map(|s| Scope { attributes: Vec::new(), ..s.clone() }),
                spans: vec![span],
                schema_url: ss.schema_url.clone(),
            }],
            schema_url: rs.schema_url.clone(),
        }],
    };
    let (raw, detail) = match serde_json::to_vec(&one) {
        Ok(raw) => (raw, r.detail),
        // Not expected: the model holds no map with non-string keys.
        Err(e) => (Vec::new(), format!("{} (span not kept: {e})", r.detail)),
    };
    QuarantineEntry::new(
        r.reason,
        detail,
        ctx.source.clone(),
        pos,
        RawFormat::OtlpJson,
        &raw,
        cfg.max_quarantine_raw_bytes,
    )
}

/// Validates one span. The checks run in a fixed order (tenant context, GenAI fields,
/// status, time, ids) so that a span with several faults always gets the same reason.
fn agent_span(
    span: &Span,
    a: &Attrs<'_>,
    scope: &InlineText,
    service: &Option<InlineText>,
    source: &SourceUri,
    cfg: &DecodeConfig,
) -> Result<AgentSpan, Refusal> {
    let tier = attrs::tier(a)?;
    let tenant_id = attrs::tenant(a, &cfg.tenant_field)?;
    let user_id = attrs::user(a, &tier, &tenant_id)?;
    let operation = attrs::operation(&a.span)?;
    let model_id = attrs::model(&a.span)?;
    let tool_name = attrs::tool(&a.span)?;
    let status = status(span)?;
    let (start_ms, end_ms) = times(span)?;
    if end_ms - start_ms > cfg.max_span_duration_ms {
        return Err(refuse(
            Reason::ImplausibleValue,
            format!(
                "span lasts {} ms, over the plausible maximum of {} ms",
                end_ms - start_ms,
                cfg.max_span_duration_ms
            ),
        ));
    }
    let tokens = attrs::tokens(&a.span, cfg.max_tokens_per_call)?;
    let trace_id = id(&span.trace_id, 32, "trace id")?;
    let span_id = id(&span.span_id, 16, "span id")?;
    let parent_span_id = parent(&span.parent_span_id)?;
    Ok(AgentSpan {
        trace_id,
        span_id,
        parent_span_id,
        name: attrs::truncate(&span.name),
        operation,
        start_ms,
        end_ms,
        tier,
        tenant_id,
        user_id,
        model_id,
        tool_name,
        status,
        tokens,
        scope: scope.clone(),
        service: service.clone(),
        source: source.clone(),
    })
}

fn status(span: &Span) -> Result<SpanStatus, Refusal> {
    match span.status.as_ref().map_or(0, |s| s.code) {
        0 => Ok(SpanStatus::Unset),
        1 => Ok(SpanStatus::Ok),
        2 => Ok(SpanStatus::Error),
        other => Err(refuse(
            Reason::InvalidField,
            format!("status code {other} is not 0 (unset), 1 (ok) or 2 (error)"),
        )),
    }
}

/// Start and end in milliseconds, floored (a span never moves into the next millisecond,
/// or the next day's partition).
fn times(span: &Span) -> Result<(i64, i64), Refusal> {
    let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
    if start == 0 {
        return Err(refuse(Reason::InvalidTimestamp, "start time is unset (0)"));
    }
    if end < start {
        return Err(refuse(
            Reason::InvalidTimestamp,
            format!("end time {end} ns is before start time {start} ns"),
        ));
    }
    // u64 nanoseconds / 10^6 is below 2^45: the casts cannot wrap.
    let ms = |ns: u64| (ns / 1_000_000) as i64;
    Ok((check_time_ms(ms(start), "start time")?, check_time_ms(ms(end), "end time")?))
}

/// A trace or span id: `len` hex digits, not all zero.
fn id(hex: &InlineText, len: usize, what: &str) -> Result<InlineText, Refusal> {
    if valid_hex_id(hex, len) {
        return Ok(hex.clone());
    }
    let shown = attrs::describe(&super::model::Value::String(hex.clone()));
    let why = if hex.len() == len && hex.bytes().all(|b| b == b'0') {
        "is all zero (invalid)"
    } else {
        "is not hex of the right length"
    };
    Err(refuse(Reason::InvalidEventId, format!("{what} {shown} {why}: {len} hex digits expected")))
}

/// A parent span id: empty (or the all-zero invalid id) for a root span.
fn parent(hex: &InlineText) -> Result<Option<InlineText>, Refusal> {
    if hex.is_empty() || (hex.len() == 16 && hex.bytes().all(|b| b == b'0')) {
        return Ok(None);
    }
    id(hex, 16, "parent span id").map(Some)
}
