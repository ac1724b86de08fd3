//! Where every input record ends: written, a duplicate, a counted skip, or quarantined.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a record was quarantined. The snake_case codes are a public interface: they appear in
/// quarantine files, run summaries and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// The record's bytes are not valid UTF-8.
    InvalidUtf8,
    /// The record is not parseable JSON (including a truncated object).
    InvalidJson,
    /// The record is JSON but not an object.
    NotAnObject,
    /// A required field is absent (the detail names it).
    MissingField,
    /// A field has the wrong type or an out-of-range value (the detail names it).
    InvalidField,
    /// Two spellings of one field disagree (for example `clinic_id` and `tenant_id`).
    ConflictingField,
    /// The tenant id fails the [`TenantId`](crate::TenantId) rules.
    InvalidTenantId,
    /// The user id fails the [`UserId`](crate::UserId) rules, or cannot be derived from
    /// `actor_id`.
    InvalidUserId,
    /// The tier fails the [`Tier`](crate::Tier) rules.
    InvalidTier,
    /// The model id fails the [`ModelId`](crate::ModelId) rules.
    InvalidModelId,
    /// The event id fails the [`EventId`](crate::EventId) rules.
    InvalidEventId,
    /// `total_tokens` is neither input + output nor input + output + cache read + cache write.
    InconsistentTotal,
    /// No event time: no CloudWatch timestamp and no `timestamp` field.
    MissingTimestamp,
    /// The event time cannot be parsed or is out of range.
    InvalidTimestamp,
    /// A gzip member cannot be decompressed.
    InvalidGzip,
    /// A CloudWatch Logs subscription payload is not a valid DATA_MESSAGE or CONTROL_MESSAGE.
    InvalidPayload,
    /// A record or a decompressed payload is over the configured size limit.
    TooLarge,
    /// A value no real call produces (a token count over the per-call maximum, a span
    /// lasting longer than the maximum): refused before it can overflow anyone's sums.
    ImplausibleValue,
    /// A whole source in no format agentmeter reads.
    UnrecognizedFormat,
    /// A record over a configured limit other than size: JSON nested too deep, a span with
    /// too many attributes, a batch naming too many tenants or users (the detail names it).
    OverLimit,
}

impl Reason {
    /// Every reason, in code order.
    pub const ALL: [Reason; 20] = [
        Reason::InvalidUtf8,
        Reason::InvalidJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::ConflictingField,
        Reason::InvalidTenantId,
        Reason::InvalidUserId,
        Reason::InvalidTier,
        Reason::InvalidModelId,
        Reason::InvalidEventId,
        Reason::InconsistentTotal,
        Reason::MissingTimestamp,
        Reason::InvalidTimestamp,
        Reason::InvalidGzip,
        Reason::InvalidPayload,
        Reason::TooLarge,
        Reason::ImplausibleValue,
        Reason::UnrecognizedFormat,
        Reason::OverLimit,
    ];

    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::InvalidJson => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::ConflictingField => "conflicting_field",
            Reason::InvalidTenantId => "invalid_tenant_id",
            Reason::InvalidUserId => "invalid_user_id",
            Reason::InvalidTier => "invalid_tier",
            Reason::InvalidModelId => "invalid_model_id",
            Reason::InvalidEventId => "invalid_event_id",
            Reason::InconsistentTotal => "inconsistent_total",
            Reason::MissingTimestamp => "missing_timestamp",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::InvalidGzip => "invalid_gzip",
            Reason::InvalidPayload => "invalid_payload",
            Reason::TooLarge => "too_large",
            Reason::ImplausibleValue => "implausible_value",
            Reason::UnrecognizedFormat => "unrecognized_format",
            Reason::OverLimit => "over_limit",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a record was skipped: it is not usage, and skipping it loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipKind {
    /// A CloudWatch Logs subscription CONTROL_MESSAGE (a destination health check).
    ControlMessage,
    /// A JSON object whose `event` is not `inference_usage`, or, inside a CloudWatch message,
    /// a JSON log without an `event` field.
    OtherEvent,
    /// A Lambda platform line (`START`, `END`, `REPORT`, `INIT_START`, `XRAY`).
    PlatformLine,
    /// A CloudWatch message with no JSON in it (a plain-text log line).
    NonJsonMessage,
}

impl SkipKind {
    /// Every kind, in code order.
    pub const ALL: [SkipKind; 4] = [
        SkipKind::ControlMessage,
        SkipKind::OtherEvent,
        SkipKind::PlatformLine,
        SkipKind::NonJsonMessage,
    ];

    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            SkipKind::ControlMessage => "control_message",
            SkipKind::OtherEvent => "other_event",
            SkipKind::PlatformLine => "platform_line",
            SkipKind::NonJsonMessage => "non_json_message",
        }
    }
}

impl fmt::Display for SkipKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The counts of one run. The invariant, checked by [`Accounting::balances`]:
/// `records_read = events_written + duplicates + spans_written + span_duplicates + skipped +
/// quarantined`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounting {
    /// Input records read (lines, log events, payloads, documents).
    pub records_read: u64,
    /// Distinct valid events newly written to the lake.
    pub events_written: u64,
    /// Valid events already in the lake or seen earlier in the run.
    pub duplicates: u64,
    /// Duplicates whose content differs from the copy kept (a subset of `duplicates`).
    pub conflicting_duplicates: u64,
    /// Events written whose call reported no usage (input and total tokens 0): a subset of
    /// `events_written`, stored, and never billed as free.
    #[serde(default)]
    pub usage_unknown: u64,
    /// Distinct valid spans newly written to `agent_spans`.
    #[serde(default)]
    pub spans_written: u64,
    /// Spans already in the lake or seen earlier in the run (same trace and span id).
    #[serde(default)]
    pub span_duplicates: u64,
    /// `chat` spans written that reported no usage: a subset of `spans_written`.
    #[serde(default)]
    pub span_usage_unknown: u64,
    /// Skipped records by kind.
    pub skipped: BTreeMap<SkipKind, u64>,
    /// Quarantined records by reason.
    pub quarantined: BTreeMap<Reason, u64>,
}

impl Accounting {
    /// Total skipped records.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Total quarantined records.
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }

    /// True when every record read is accounted for exactly once.
    pub fn balances(&self) -> bool {
        self.records_read
            == self.events_written
                + self.duplicates
                + self.spans_written
                + self.span_duplicates
                + self.skipped_total()
                + self.quarantined_total()
    }

    /// Adds `other`'s counts to `self`.
    pub fn merge(&mut self, other: &Accounting) {
        self.records_read += other.records_read;
        self.events_written += other.events_written;
        self.duplicates += other.duplicates;
        self.conflicting_duplicates += other.conflicting_duplicates;
        self.usage_unknown += other.usage_unknown;
        self.span_usage_unknown += other.span_usage_unknown;
        self.spans_written += other.spans_written;
        self.span_duplicates += other.span_duplicates;
        for (k, v) in &other.skipped {
            *self.skipped.entry(*k).or_default() += v;
        }
        for (k, v) in &other.quarantined {
            *self.quarantined.entry(*k).or_default() += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_serde_names() {
        for r in Reason::ALL {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.code()));
        }
        for k in SkipKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.code()));
        }
    }

    #[test]
    fn balance() {
        let mut a =
            Accounting { records_read: 10, events_written: 5, duplicates: 2, ..Default::default() };
        a.skipped.insert(SkipKind::ControlMessage, 1);
        a.quarantined.insert(Reason::InvalidJson, 2);
        assert!(a.balances());
        a.records_read += 1;
        assert!(!a.balances());
    }
}
