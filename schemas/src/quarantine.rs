//! The quarantine envelope: one rejected record, replayable by `agentmeter ingest`.
//!
//! A quarantine file is NDJSON, one [`QuarantineEntry`] per line. The entry keeps the record's
//! exact bytes (`raw` when they are UTF-8, `raw_base64` otherwise), where it came from and why
//! it was refused. Ingesting the file again re-decodes each `raw` as its `format` says, with
//! the original source and position, so a record fixed in place (or one that a corrected
//! configuration now accepts) reaches the lake with its original lineage.
//!
//! Large records are not embedded: their bytes are kept once, content-addressed, in
//! [`RAW_DIR`] beside the quarantine file, and the entry names them (`raw_ref`, `raw_len`). An
//! entry line therefore never grows past [`INLINE_LINE_MAX`] plus its detail, and a replay
//! reads it as the same entry, however large the record was.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::{Position, Reason, SourceUri};

/// The key that marks an NDJSON line as a quarantine entry; its value is the format version.
pub const QUARANTINE_MARKER: &str = "agentmeter_quarantine";

/// The directory, beside quarantine files, of the bytes of large entries (hidden: never read as
/// a source itself).
pub const RAW_DIR: &str = ".raw";

/// Longest entry line with its bytes inline; above it the bytes go to [`RAW_DIR`].
pub const INLINE_LINE_MAX: usize = 64 << 10;

/// Longest quarantine entry line a reader accepts, whatever its record limit: an entry is the
/// pipeline's own output and must always read back as itself.
pub const ENTRY_LINE_MAX: usize = 1 << 20;

/// The name of a large entry's bytes in [`RAW_DIR`]: 32 hex digits of their BLAKE3 digest.
pub fn raw_ref(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..32].to_owned()
}

/// True when `r` can be a [`raw_ref`] (so it never names a path outside [`RAW_DIR`]).
pub fn is_raw_ref(r: &str) -> bool {
    r.len() == 32 && r.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

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
    /// True when the bytes were deliberately not kept (a trace request that does not parse
    /// may hold patient text that cannot be scrubbed): the entry names the source and
    /// position, and stays quarantined on replay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_withheld: bool,
    /// The bytes are kept in [`RAW_DIR`] under this name ([`raw_ref`]) instead of inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_ref: Option<String>,
    /// The length of the bytes kept under `raw_ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_len: Option<u64>,
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
            raw_withheld: false,
            raw_ref: None,
            raw_len: None,
        }
    }

    /// An entry that keeps no bytes at all (see `raw_withheld`).
    pub fn withheld(
        reason: Reason,
        detail: impl Into<String>,
        source: SourceUri,
        position: Position,
        format: RawFormat,
    ) -> Self {
        let mut e = Self::new(reason, detail, source, position, format, &[], 0);
        e.raw = None;
        e.raw_withheld = true;
        e
    }

    /// Moves the inline bytes out: returns them (to be kept under the returned entry's
    /// `raw_ref`) when there are any.
    pub fn take_inline(&mut self) -> Option<Vec<u8>> {
        let bytes = self.raw_bytes().ok()?;
        if self.raw_ref.is_some() {
            return None;
        }
        self.raw = None;
        self.raw_base64 = None;
        self.raw_ref = Some(raw_ref(&bytes));
        self.raw_len = Some(bytes.len() as u64);
        Some(bytes)
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
            (None, None) if self.raw_ref.is_some() => {
                Err("the bytes are kept apart (raw_ref), not inline".into())
            }
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
