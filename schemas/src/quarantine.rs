//! The quarantine envelope: one rejected record, replayable by `agentmeter ingest`.
//!
//! A quarantine file is NDJSON, one [`QuarantineEntry`] per line. The entry keeps the record's
//! exact bytes (`raw` when they are UTF-8, `raw_base64` otherwise), where it came from and why
//! it was refused. Ingesting the file again re-decodes each `raw` as its `format` says, with
//! the original source and position, so a record fixed in place (or one that a corrected
//! configuration now accepts) reaches the lake with its original lineage.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::{Position, Reason, SourceUri};

/// The key that marks an NDJSON line as a quarantine entry; its value is the format version.
pub const QUARANTINE_MARKER: &str = "agentmeter_quarantine";

/// How the raw bytes of a quarantined record are to be decoded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFormat {
    /// One line of an NDJSON file (a usage object, a CloudWatch log event, or a one-line
    /// subscription payload or `filter-log-events` document).
    NdjsonLine,
    /// One CloudWatch log event object (`id`/`eventId`, `timestamp`, `message`).
    CwlLogEvent,
    /// One gzip-compressed CloudWatch Logs subscription payload.
    CwlPayloadGzip,
    /// A whole source (or the part of it that could not be split into records).
    Source,
    /// An OTLP `ExportTraceServiceRequest` in the OTLP JSON encoding, holding the one refused
    /// span with its resource and scope.
    OtlpJson,
}

/// One quarantined record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// Envelope format version, always 1; also the marker that identifies the line.
    #[serde(rename = "agentmeter_quarantine")]
    pub version: u32,
    /// Reason code.
    pub reason: Reason,
    /// Human-readable detail naming the field and value at fault.
    pub detail: String,
    /// The source the record was first read from.
    pub source: SourceUri,
    /// Where in that source.
    pub position: Position,
    /// How to decode `raw` again.
    pub format: RawFormat,
    /// The record's exact bytes when they are valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The record's exact bytes, base64, when they are not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    /// True when only the first bytes of an oversized record were kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_truncated: bool,
}

impl QuarantineEntry {
    /// Builds an entry, keeping at most `max_raw` bytes of `raw`.
    pub fn new(
        reason: Reason,
        detail: impl Into<String>,
        source: SourceUri,
        position: Position,
        format: RawFormat,
        raw: &[u8],
        max_raw: usize,
    ) -> Self {
        let truncated = raw.len() > max_raw;
        let kept = &raw[..raw.len().min(max_raw)];
        let (raw, raw_base64) = match std::str::from_utf8(kept) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (None, Some(STANDARD.encode(kept))),
        };
        Self {
            version: 1,
            reason,
            detail: detail.into(),
            source,
            position,
            format,
            raw,
            raw_base64,
            raw_truncated: truncated,
        }
    }

    /// The record's bytes, decoded from `raw` or `raw_base64`.
    ///
    /// # Errors
    ///
    /// Returns a message when neither field is present or the base64 is invalid.
    pub fn raw_bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.raw, &self.raw_base64) {
            (Some(s), _) => Ok(s.as_bytes().to_vec()),
            (None, Some(b)) => STANDARD.decode(b).map_err(|e| format!("raw_base64: {e}")),
            (None, None) => Err("neither raw nor raw_base64 is present".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_raw_round_trips_exactly_and_binary_goes_to_base64() {
        let src = SourceUri::new("file:///in.ndjson");
        let pos = Position { line: Some(3), ..Default::default() };
        let text = QuarantineEntry::new(
            Reason::InvalidJson,
            "eof",
            src.clone(),
            pos,
            RawFormat::NdjsonLine,
            b"{\"a\": 1,\t\"b\"",
            1 << 20,
        );
        let line = serde_json::to_string(&text).unwrap();
        assert!(line.starts_with("{\"agentmeter_quarantine\":1,\"reason\":\"invalid_json\""));
        let back: QuarantineEntry = serde_json::from_str(&line).unwrap();
        assert_eq!(back.raw_bytes().unwrap(), b"{\"a\": 1,\t\"b\"");

        let bin = QuarantineEntry::new(
            Reason::InvalidUtf8,
            "",
            src,
            pos,
            RawFormat::NdjsonLine,
            &[0xff, 0x00, b'a'],
            1 << 20,
        );
        assert_eq!(bin.raw_base64.as_deref(), Some("/wBh"));
        assert_eq!(bin.raw_bytes().unwrap(), vec![0xff, 0x00, b'a']);
    }

    #[test]
    fn oversized_raw_is_truncated_and_marked() {
        let e = QuarantineEntry::new(
            Reason::TooLarge,
            "",
            SourceUri::new("x"),
            Position::default(),
            RawFormat::NdjsonLine,
            b"abcdef",
            4,
        );
        assert_eq!(e.raw.as_deref(), Some("abcd"));
        assert!(e.raw_truncated);
    }
}
