//! The normalised usage event and where a record came from.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{EventId, ModelId, ServiceTier, SessionId, TenantId, Tier, UserId};

/// Token counts of one inference call. All are non-negative and fit in `i64`, the type Athena
/// reads (`bigint`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tokens {
    /// Input (prompt) tokens.
    pub input: i64,
    /// Output (completion) tokens.
    pub output: i64,
    /// Total tokens as the record stated them (checked against the parts).
    pub total: i64,
    /// Prompt-cache read tokens, 0 when absent.
    pub cache_read: i64,
    /// Prompt-cache write tokens, 0 when absent.
    pub cache_write: i64,
    /// Of `cache_write`, the tokens written with a 1-hour lifetime (priced apart); the rest
    /// were written with the default 5-minute lifetime.
    #[serde(default)]
    pub cache_write_1h: i64,
}

impl Tokens {
    /// Subtracts `other` field by field, or `None` on overflow.
    pub fn checked_sub(&self, other: &Tokens) -> Option<Tokens> {
        Some(Tokens {
            input: self.input.checked_sub(other.input)?,
            output: self.output.checked_sub(other.output)?,
            total: self.total.checked_sub(other.total)?,
            cache_read: self.cache_read.checked_sub(other.cache_read)?,
            cache_write: self.cache_write.checked_sub(other.cache_write)?,
            cache_write_1h: self.cache_write_1h.checked_sub(other.cache_write_1h)?,
        })
    }

    /// Adds `other` field by field, or `None` on overflow.
    pub fn checked_add(&self, other: &Tokens) -> Option<Tokens> {
        Some(Tokens {
            input: self.input.checked_add(other.input)?,
            output: self.output.checked_add(other.output)?,
            total: self.total.checked_add(other.total)?,
            cache_read: self.cache_read.checked_add(other.cache_read)?,
            cache_write: self.cache_write.checked_add(other.cache_write)?,
            cache_write_1h: self.cache_write_1h.checked_add(other.cache_write_1h)?,
        })
    }
}

/// The URI of an input: `file:///abs/path` today; `kinesis://`, `logs://` and `s3://` later.
///
/// It names a source in the lake's `source` column and in quarantine entries, and (hashed)
/// names the source's quarantine file. Every event carries one, so it is shared, not copied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceUri(Arc<str>);

impl SourceUri {
    /// Wraps a URI string.
    pub fn new(uri: impl Into<String>) -> Self {
        Self(Arc::from(uri.into()))
    }

    /// The URI as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI for a log line or a message: see [`SourceUri::escape`]. The URI itself
    /// (quarantine entries, checkpoints) stays as given.
    pub fn shown(&self) -> Cow<'_, str> {
        Self::escape(&self.0)
    }

    /// `text` (a file name, an S3 key: chosen by whoever produced the input) with control,
    /// bidirectional and invisible formatting characters written as `\u{..}`: a newline would
    /// forge a log line, a right-to-left override reorder what an operator reads.
    pub fn escape(text: &str) -> Cow<'_, str> {
        let hidden = |c: char| {
            c.is_control()
                || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}')
                || matches!(c, '\u{2060}'..='\u{206f}' | '\u{feff}')
        };
        if !text.chars().any(hidden) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if hidden(c) {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }
}

impl Serialize for SourceUri {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SourceUri {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

impl fmt::Display for SourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a record sits inside its source. Fields that do not apply are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// 1-based line number in a text file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based gzip member (one CloudWatch subscription payload) in a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<u64>,
    /// 1-based log event inside a payload, a line or a `filter-log-events` document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<u64>,
    /// Byte offset of the record (of the compressed file for gzip members).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(l) = self.line {
            parts.push(format!("line {l}"));
        }
        if let Some(m) = self.member {
            parts.push(format!("gzip member {m}"));
        }
        if let Some(e) = self.event {
            parts.push(format!("log event {e}"));
        }
        if parts.is_empty()
            && let Some(o) = self.offset
        {
            parts.push(format!("byte {o}"));
        }
        if parts.is_empty() { f.write_str("whole source") } else { f.write_str(&parts.join(", ")) }
    }
}

/// One valid, distinct `inference_usage` event: a row of `usage_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// Event time in milliseconds since the Unix epoch, UTC.
    pub event_time_ms: i64,
    /// Identity used for deduplication.
    pub event_id: EventId,
    /// Pricing tier.
    pub tier: Tier,
    /// Tenant.
    pub tenant_id: TenantId,
    /// User of the tenant.
    pub user_id: UserId,
    /// Model or inference profile.
    pub model_id: ModelId,
    /// Input the event was read from.
    pub source: SourceUri,
    /// Token counts.
    pub tokens: Tokens,
    /// The session or Agent instance of the line, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// The Bedrock service tier the call ran in (standard when the line names none).
    #[serde(default)]
    pub service_tier: ServiceTier,
}

// A batch holds hundreds of thousands of events and its byte estimate counts this size: a
// field added or widened here moves every batch's memory (the event id, inline, is 64 bytes).
const _: () = assert!(std::mem::size_of::<UsageEvent>() <= 224);

impl UsageEvent {
    /// True when the call reported no usage (input and total tokens 0): a stream that ended
    /// without its usage chunk. Usage unknown, never free.
    pub fn usage_unknown(&self) -> bool {
        self.tokens.input == 0 && self.tokens.total == 0
    }

    /// The event time as a `DateTime`, or `None` if out of chrono's range.
    pub fn event_time(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.event_time_ms)
    }

    /// The UTC date of the event: its `dt` partition.
    pub fn date(&self) -> Option<NaiveDate> {
        self.event_time().map(|t| t.date_naive())
    }

    /// A hash (seeded per process) of everything that makes the event billable (not its id or
    /// source). Two deliveries of the same id with different fingerprints are a conflict worth
    /// reporting.
    pub fn content_fingerprint(&self) -> u64 {
        use std::hash::Hasher as _;
        let mut h = crate::keyed::fingerprint_hasher();
        h.write_i64(self.event_time_ms);
        for s in [
            self.tier.as_str(),
            self.tenant_id.as_str(),
            self.user_id.as_str(),
            self.model_id.as_str(),
        ] {
            h.write_u64(s.len() as u64);
            h.write(s.as_bytes());
        }
        let t = &self.tokens;
        for n in [t.input, t.output, t.total, t.cache_read, t.cache_write, t.cache_write_1h] {
            h.write_i64(n);
        }
        // Tagged, so that an optional part cannot pass for another.
        if let Some(s) = &self.session_id {
            h.write(b"session");
            h.write_u64(s.as_str().len() as u64);
            h.write(s.as_str().as_bytes());
        }
        h.write(b"service_tier");
        h.write(self.service_tier.code().as_bytes());
        h.finish()
    }
}

/// Hex of the first 16 bytes of the BLAKE3 digest of `bytes`: stable across versions and
/// machines, used for content-derived ids and deterministic names.
pub fn content_digest_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = blake3::hash(bytes);
    let mut s = String::with_capacity(32);
    for &b in &digest.as_bytes()[..16] {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_is_shown_with_hidden_characters_escaped() {
        let plain = SourceUri::new("s3://usage/agents/2026/10/01/part-0001.ndjson.gz");
        assert!(matches!(plain.shown(), Cow::Borrowed(_)));
        assert_eq!(plain.shown(), plain.as_str());
        let hostile = SourceUri::new("/in/a\nERROR forged\r\u{202e}txt.gz\u{200b}\u{7f}é");
        assert_eq!(
            hostile.shown(),
            "/in/a\\u{a}ERROR forged\\u{d}\\u{202e}txt.gz\\u{200b}\\u{7f}é"
        );
        // The URI itself is kept as given.
        assert_eq!(hostile.as_str(), "/in/a\nERROR forged\r\u{202e}txt.gz\u{200b}\u{7f}é");
    }

    fn event(input: i64) -> UsageEvent {
        UsageEvent {
            event_time_ms: 1_760_000_000_123,
            event_id: EventId::new("e1").unwrap(),
            tier: Tier::new("basic").unwrap(),
            tenant_id: TenantId::new("clinic-a").unwrap(),
            user_id: UserId::new("u1").unwrap(),
            model_id: ModelId::new("m").unwrap(),
            source: SourceUri::new("file:///x"),
            tokens: Tokens { input, output: 1, total: input + 1, ..Tokens::default() },
            session_id: None,
            service_tier: ServiceTier::Standard,
        }
    }

    #[test]
    fn fingerprint_ignores_source_and_id_but_not_tokens() {
        let a = event(10);
        let mut b = a.clone();
        b.source = SourceUri::new("file:///y");
        b.event_id = EventId::new("e2").unwrap();
        assert_eq!(a.content_fingerprint(), b.content_fingerprint());
        assert_ne!(a.content_fingerprint(), event(11).content_fingerprint());
    }

    #[test]
    fn date_is_utc() {
        let e = event(1);
        assert_eq!(e.date().unwrap().to_string(), "2025-10-09");
    }

    #[test]
    fn digest_is_stable() {
        assert_eq!(content_digest_hex(b"abc"), "6437b3ac38465133ffb63b75273a8db5");
    }

    #[test]
    fn position_display() {
        let p = Position { member: Some(3), event: Some(2), offset: Some(99), line: None };
        assert_eq!(p.to_string(), "gzip member 3, log event 2");
        assert_eq!(Position { offset: Some(5), ..Default::default() }.to_string(), "byte 5");
    }
}
