//! Agent spans: the OpenTelemetry spans of agent runtimes, reduced to what metering needs.
//!
//! Span events are never kept: they carry prompts, tool arguments and outputs (patient data in
//! the seeds' example). Only identity, timing, tenant context, the operation and the token
//! attributes (for reconciliation with the logs) remain.

use serde::{Deserialize, Serialize};

use crate::{InlineText, ModelId, SourceUri, TenantId, Tier, UserId};

/// A span's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    /// Not set.
    Unset,
    /// OK.
    Ok,
    /// Error.
    Error,
}

impl SpanStatus {
    /// The status of a lower-case code; anything else is unset.
    pub fn from_code(code: &str) -> Self {
        match code {
            "ok" => SpanStatus::Ok,
            "error" => SpanStatus::Error,
            _ => SpanStatus::Unset,
        }
    }

    /// The lower-case code.
    pub fn code(self) -> &'static str {
        match self {
            SpanStatus::Unset => "unset",
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }
}

/// Token counts a span reports (`gen_ai.usage.*`), each when present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpanTokens {
    /// Input tokens.
    pub input: Option<i64>,
    /// Output tokens.
    pub output: Option<i64>,
    /// Total tokens.
    pub total: Option<i64>,
    /// Cache read tokens.
    pub cache_read: Option<i64>,
    /// Cache write tokens.
    pub cache_write: Option<i64>,
}

impl SpanTokens {
    /// The tokens of a `chat` span's call: absent counts as 0 and a missing total as the sum
    /// of the parts.
    pub fn as_chat(&self) -> crate::Tokens {
        let (input, output) = (self.input.unwrap_or(0), self.output.unwrap_or(0));
        let (cache_read, cache_write) =
            (self.cache_read.unwrap_or(0), self.cache_write.unwrap_or(0));
        let parts =
            [output, cache_read, cache_write].iter().try_fold(input, |a, b| a.checked_add(*b));
        crate::Tokens {
            input,
            output,
            total: self.total.or(parts).unwrap_or(i64::MAX),
            cache_read,
            cache_write,
            // Spans say no lifetime: their writes are priced as 5-minute ones.
            cache_write_1h: 0,
        }
    }
}

/// True when a span of this `operation` attribute (`gen_ai.operation.name`) and `name` is of
/// operation `op` (`invoke_agent`, `chat`, `execute_tool`): the attribute, or else the span
/// name (`op` or `op <detail>`).
pub fn is_operation(operation: Option<&str>, name: &str, op: &str) -> bool {
    match operation {
        Some(o) => o == op,
        None => name == op || name.strip_prefix(op).is_some_and(|rest| rest.starts_with(' ')),
    }
}

/// One valid, distinct span: a row of `agent_spans`. Its identity is (trace id, span id). Its
/// text is held in place ([`InlineText`]): a span read allocates nothing for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpan {
    /// Trace id, 32 lower-case hex digits.
    pub trace_id: InlineText,
    /// Span id, 16 lower-case hex digits.
    pub span_id: InlineText,
    /// Parent span id, if any.
    pub parent_span_id: Option<InlineText>,
    /// Span name (at most 256 characters kept).
    pub name: InlineText,
    /// `gen_ai.operation.name` (`invoke_agent`, `chat`, `execute_tool`, ...).
    pub operation: Option<InlineText>,
    /// Start, milliseconds since the epoch, UTC.
    pub start_ms: i64,
    /// End, milliseconds since the epoch, UTC.
    pub end_ms: i64,
    /// Tier.
    pub tier: Tier,
    /// Tenant.
    pub tenant_id: TenantId,
    /// User, when the span carries one (`user_id`, or `actor_id` minus `{tier}-{tenant}-`).
    pub user_id: Option<UserId>,
    /// Model (`gen_ai.request.model`).
    pub model_id: Option<ModelId>,
    /// Tool (`gen_ai.tool.name`).
    pub tool_name: Option<InlineText>,
    /// Status code.
    pub status: SpanStatus,
    /// Token attributes, for reconciliation only (billing uses the logs).
    pub tokens: SpanTokens,
    /// Instrumentation scope (`strands.telemetry.tracer`, ...).
    pub scope: InlineText,
    /// Resource `service.name`.
    pub service: Option<InlineText>,
    /// Where the span was read.
    pub source: SourceUri,
}

impl AgentSpan {
    /// The span's identity as one string: `trace:span`.
    pub fn key(&self) -> String {
        // Built, not formatted: it is made for every span written (its dedup key, its file's name).
        let mut key = String::with_capacity(self.trace_id.len() + 1 + self.span_id.len());
        key.push_str(&self.trace_id);
        key.push(':');
        key.push_str(&self.span_id);
        key
    }

    /// True when the span is of operation `op` (`invoke_agent`, `chat`, `execute_tool`):
    /// `gen_ai.operation.name`, or else the span name (`op` or `op <detail>`).
    pub fn is_operation(&self, op: &str) -> bool {
        is_operation(self.operation.as_deref(), &self.name, op)
    }

    /// The tokens a `chat` span reports, absent counts as 0 and a missing total as the sum of
    /// the parts; `None` for a span of another operation (its tokens repeat its children's).
    pub fn chat_tokens(&self) -> Option<crate::Tokens> {
        self.is_operation("chat").then(|| self.tokens.as_chat())
    }

    /// True for a `chat` span that reported no usage (input and total tokens 0 or absent).
    pub fn usage_unknown(&self) -> bool {
        self.chat_tokens().is_some_and(|t| t.input == 0 && t.total == 0)
    }

    /// Duration in milliseconds (never negative).
    pub fn duration_ms(&self) -> i64 {
        (self.end_ms - self.start_ms).max(0)
    }

    /// A hash (seeded per process) of the content (not the source), to tell conflicting
    /// duplicates. Each field is written with its length (and optional ones with a presence
    /// byte), so no two different contents feed the hasher the same bytes.
    pub fn content_fingerprint(&self) -> u64 {
        use std::hash::Hasher as _;
        let mut h = crate::keyed::fingerprint_hasher();
        let mut text = |v: Option<&str>| match v {
            None => h.write_u8(0),
            Some(s) => {
                h.write_u8(1);
                h.write_u64(s.len() as u64);
                h.write(s.as_bytes());
            }
        };
        text(self.parent_span_id.as_deref());
        text(Some(&self.name));
        text(self.operation.as_deref());
        text(Some(self.tier.as_str()));
        text(Some(self.tenant_id.as_str()));
        text(self.user_id.as_ref().map(|u| u.as_str()));
        text(self.model_id.as_ref().map(|m| m.as_str()));
        text(self.tool_name.as_deref());
        text(Some(self.status.code()));
        let t = &self.tokens;
        for n in [t.input, t.output, t.total, t.cache_read, t.cache_write] {
            match n {
                None => h.write_u8(0),
                Some(n) => {
                    h.write_u8(1);
                    h.write_i64(n);
                }
            }
        }
        h.write_i64(self.start_ms);
        h.write_i64(self.end_ms);
        h.finish()
    }
}

/// True for `n` lower-case hex digits that are not all zero (OTLP's invalid id).
pub fn valid_hex_id(id: &str, n: usize) -> bool {
    id.len() == n
        && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_hex_id("0af7651916cd43dd8448eb211c80319c", 32));
        assert!(!valid_hex_id("00000000000000000000000000000000", 32));
        assert!(!valid_hex_id("0AF7651916CD43DD8448EB211C80319C", 32));
        assert!(!valid_hex_id("b7ad6b716920333", 16));
    }

    fn span() -> AgentSpan {
        AgentSpan {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: "b7ad6b7169203331".into(),
            parent_span_id: None,
            name: "execute_tool lookup".into(),
            operation: Some("execute_tool".into()),
            start_ms: 1_000,
            end_ms: 2_000,
            tier: Tier::new("basic").unwrap(),
            tenant_id: TenantId::new("clinic-a").unwrap(),
            user_id: None,
            model_id: None,
            tool_name: Some("lookup".into()),
            status: SpanStatus::Ok,
            tokens: SpanTokens::default(),
            scope: "strands".into(),
            service: None,
            source: SourceUri::new("file:///a"),
        }
    }

    #[test]
    fn the_fingerprint_follows_the_content_not_the_source() {
        let a = span();
        let moved = AgentSpan { source: SourceUri::new("file:///b"), ..span() };
        assert_eq!(a.content_fingerprint(), moved.content_fingerprint());
        let changed = [
            AgentSpan { tool_name: None, ..span() },
            AgentSpan { tool_name: Some(InlineText::default()), ..span() },
            AgentSpan { end_ms: 2_001, ..span() },
            AgentSpan { status: SpanStatus::Error, ..span() },
            AgentSpan { tokens: SpanTokens { input: Some(0), ..SpanTokens::default() }, ..span() },
            // The same bytes split differently between two fields.
            AgentSpan {
                name: "execute_tool lookupx".into(),
                operation: Some("ecute_tool".into()),
                ..span()
            },
        ];
        for c in &changed {
            assert_ne!(a.content_fingerprint(), c.content_fingerprint(), "{c:?}");
        }
    }
}
