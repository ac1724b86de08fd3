//! OpenTelemetry spans: OTLP `ExportTraceServiceRequest`s, in protobuf or in the OTLP JSON
//! encoding, into [`AgentSpan`](agentmeter_schemas::AgentSpan)s and quarantine entries.
//!
//! [`decode_proto`] and [`decode_json`] are pure: one request body in, one
//! [`Outcome`](crate::Outcome) per span out, in request order. The OTLP/HTTP server answers
//! 400 for an [`OtlpError`] (the body as a whole is not a request); a file reader quarantines
//! the record. The same decoders serve files: NDJSON lines that are requests (the
//! OpenTelemetry Collector's file exporter writes one `{"resourceSpans":[...]}` per line) and
//! protobuf files (see [`source`](crate::source)).
//!
//! # What a span becomes
//!
//! - Tenant context from the span's attributes, then its resource's: `tier`; the tenant from
//!   the configured field (`clinic_id` by default) or `tenant_id`, which must agree; the user
//!   from `user_id` (or `user.id`, `enduser.id`), else from `actor_id` by removing the known
//!   `{tier}-{tenant}-` prefix (tenant ids contain hyphens: it is never split on `-`). The
//!   same newtypes and reason codes as for the logs apply. A span without a valid tier and
//!   tenant is quarantined; the user is optional, but an invalid one is quarantined.
//! - `operation` is `gen_ai.operation.name`, `model_id` is `gen_ai.request.model` (else
//!   `gen_ai.response.model`), `tool_name` is `gen_ai.tool.name`; names of at most 256
//!   printable characters. The span name, scope name and `service.name` are cut to 256
//!   characters.
//! - Times are floored to milliseconds; ids are lower-case hex (32 and 16 digits, not all
//!   zero); an empty or all-zero parent id means a root span.
//! - Token attributes are kept for reconciliation only: the first spelling present of each
//!   count (`gen_ai.usage.input_tokens` before `prompt_tokens`, `output_tokens` before
//!   `completion_tokens`, `cache_read.input_tokens` before Strands'
//!   `cache_read_input_tokens`, `cache_creation.input_tokens` before
//!   `cache_write_input_tokens`); aliases are never summed, and a count that is not a
//!   non-negative integer is `None`, never a reason to refuse the span.
//!
//! # Events never stay
//!
//! Span events and links carry prompts, tool arguments and outputs (patient data in the
//! seeds' example). They are not read: the JSON decoder skips them unbuilt and the protobuf
//! path drops them before anything else looks at the span. They reach neither an
//! [`AgentSpan`](agentmeter_schemas::AgentSpan) nor a quarantine entry.
//!
//! # Quarantined spans
//!
//! A refused span becomes a [`QuarantineEntry`](agentmeter_schemas::QuarantineEntry) with
//! format [`RawFormat::OtlpJson`](agentmeter_schemas::RawFormat::OtlpJson): its raw bytes are
//! an `ExportTraceServiceRequest` in OTLP JSON holding that span alone, with its resource and
//! scope, **without its events and links** and without the GenAI content attributes
//! (`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.system_instructions`,
//! `gen_ai.tool.call.arguments`, `gen_ai.tool.call.result`, `gen_ai.prompt*`,
//! `gen_ai.completion*`), none of which decoding reads. Replaying the entry (after fixing an
//! attribute, or with a configuration that now accepts it) decodes the same span, at the
//! entry's original position. The position of a span is the record's (a line, a request in a
//! protobuf file) with `event` = the span's 1-based index within the request.
//!
//! # What the JSON decoder accepts
//!
//! Everything the OTLP JSON mapping allows, and a little more (see `model`): hex ids in
//! either case, 64-bit integers as strings or numbers, enums as integers (or their proto
//! names), `null` as a field's default, every `AnyValue` variant, unknown fields ignored,
//! snake_case keys as well as lowerCamelCase. A bad id refuses its span, not the request.

mod attrs;
mod decode;
#[cfg(test)]
pub(crate) mod fixtures;
mod flat;
mod model;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use decode::{decode_json, decode_proto};
pub(crate) use decode::{json_in, proto_in, request_line};
pub(crate) use flat::agrees as flat_agrees;

/// A body that is not an `ExportTraceServiceRequest` at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// The body does not decode as a protobuf `ExportTraceServiceRequest`.
    #[error("body is not a protobuf ExportTraceServiceRequest")]
    Protobuf(#[source] prost::DecodeError),
    /// The body is not JSON, or not shaped as an `ExportTraceServiceRequest`.
    #[error("body is not an OTLP JSON ExportTraceServiceRequest")]
    Json(#[source] serde_json::Error),
}

impl OtlpError {
    /// The message and its cause on one line, for a 400 response body or a quarantine
    /// detail. The parser quotes the string it choked on, which may be free text from the
    /// span (a status message, an event): quoted strings are left out.
    pub fn detail(&self) -> String {
        match self {
            OtlpError::Protobuf(e) => format!("{self}: {e}"),
            OtlpError::Json(e) => format!("{self}: {}", without_quoted(&e.to_string())),
        }
    }
}

/// `msg` with the text of every double-quoted string replaced by `…`.
fn without_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quoted = false;
    let mut escaped = false;
    for c in msg.chars() {
        if quoted {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => {
                    quoted = false;
                    out.push_str("…\"");
                }
                _ => escaped = false,
            }
        } else {
            if c == '"' {
                quoted = true;
            }
            out.push(c);
        }
    }
    if quoted {
        out.push('…');
    }
    out
}
