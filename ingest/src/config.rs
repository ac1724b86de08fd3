//! Decoder settings.

/// How records are decoded and validated. Build with [`DecodeConfig::new`] or use the default.
#[derive(Debug, Clone)]
pub struct DecodeConfig {
    /// Input field holding the tenant id (`clinic_id` by default). `tenant_id` is always
    /// accepted as well; if both are present they must agree.
    pub tenant_field: String,
    /// Longest record (line or log event) accepted, in bytes. CloudWatch allows 1 MB events;
    /// the default leaves room for the JSON around them.
    pub max_record_bytes: usize,
    /// Largest decompressed subscription payload or JSON document accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Most raw bytes kept for one quarantined record.
    pub max_quarantine_raw_bytes: usize,
    /// Largest token count one call may report (each of input, output, total, cache read and
    /// cache write); above it the record is quarantined as `implausible_value`. It keeps one
    /// absurd record from overflowing the 64-bit sums of everyone's rollups.
    pub max_tokens_per_call: i64,
    /// Longest span accepted, in milliseconds; longer ones are `implausible_value` (their
    /// durations are summed per hour and tenant).
    pub max_span_duration_ms: i64,
    /// Zone of times written without one (a Python `asctime` prefix in a log file).
    pub log_timezone: crate::LogTimezone,
    /// Time of usage lines that state none (no timestamp field, no time in their logging
    /// prefix), milliseconds; without it such lines are quarantined.
    pub default_time_ms: Option<i64>,
    /// Limits other than size, each refusing as `over_limit`.
    pub limits: RecordLimits,
}

/// Limits a hostile or broken producer could otherwise use to make one record or batch cost
/// everyone: what is over one is quarantined as `over_limit`, its neighbours unaffected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// Deepest JSON nesting of one log record (a line, a log event, its message, a payload).
    /// Real records nest a few levels; parsing is recursive. OTLP JSON requests are held to
    /// the parser's own 128 levels instead: checking them again costs a span ingest ~6 %.
    pub json_depth: usize,
    /// Most attributes of one span, and of one resource: a span's context is looked up in
    /// both for every span, so their length multiplies the cost of a request.
    pub attributes: usize,
    /// Most distinct tenants among the records of one batch as delivered (a Kinesis record,
    /// an OTLP request, a unit of at most 8,192 lines of a file); records naming a further
    /// tenant are refused.
    pub tenants_per_batch: usize,
    /// Most distinct users in one batch, as for tenants.
    pub users_per_batch: usize,
}

impl RecordLimits {
    /// The defaults: far above what real telemetry holds.
    pub const DEFAULT: Self = Self {
        json_depth: DEFAULT_MAX_JSON_DEPTH,
        attributes: 1024,
        tenants_per_batch: 10_000,
        users_per_batch: 100_000,
    };
}

impl Default for RecordLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Default [`RecordLimits::json_depth`].
pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;

/// Highest accepted [`RecordLimits::json_depth`]: the JSON parser's own recursion limit.
pub const MAX_JSON_DEPTH_CEILING: usize = 128;

/// Highest accepted count limit of [`RecordLimits`].
const MAX_COUNT_CEILING: usize = 10_000_000;

/// Default [`DecodeConfig::max_tokens_per_call`]: ten times the longest context window of any
/// model on Amazon Bedrock, and far below what overflows a month's sums (about 9.2e10 calls).
pub const DEFAULT_MAX_TOKENS_PER_CALL: i64 = 100_000_000;

/// Default [`DecodeConfig::max_span_duration_ms`]: seven days.
pub const DEFAULT_MAX_SPAN_DURATION_MS: i64 = 7 * 24 * 3600 * 1000;

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            tenant_field: "clinic_id".into(),
            max_record_bytes: 4 << 20,
            max_payload_bytes: 64 << 20,
            max_quarantine_raw_bytes: 64 << 20,
            max_tokens_per_call: DEFAULT_MAX_TOKENS_PER_CALL,
            max_span_duration_ms: DEFAULT_MAX_SPAN_DURATION_MS,
            log_timezone: crate::LogTimezone::Utc,
            default_time_ms: None,
            limits: RecordLimits::default(),
        }
    }
}

/// Highest accepted [`DecodeConfig::max_tokens_per_call`].
pub const MAX_TOKENS_CEILING: i64 = 1_000_000_000_000_000;

/// A refused setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The tenant field name is empty or not a plain JSON key.
    #[error("tenant field {0:?} must be 1 to 64 characters from A-Z a-z 0-9 _ - .")]
    TenantField(String),
    /// The token plausibility limit is out of range.
    #[error("max tokens per call must be between 1 and {MAX_TOKENS_CEILING}, got {0}")]
    MaxTokens(i64),
    /// A count or depth limit is out of its range.
    #[error("{name} must be between 1 and {max}, got {value}")]
    Range {
        /// Setting name.
        name: &'static str,
        /// Value given.
        value: usize,
        /// Highest accepted.
        max: usize,
    },
    /// A size limit is zero or above 1 GiB.
    #[error("{name} must be between 1 and 1073741824 bytes, got {value}")]
    Limit {
        /// Setting name.
        name: &'static str,
        /// Value given.
        value: usize,
    },
}

impl DecodeConfig {
    /// Validated settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting at fault.
    pub fn new(
        tenant_field: &str,
        max_record_bytes: usize,
        max_payload_bytes: usize,
    ) -> Result<Self, ConfigError> {
        let ok = (1..=64).contains(&tenant_field.len())
            && tenant_field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(ConfigError::TenantField(tenant_field.into()));
        }
        for (name, value) in
            [("max record bytes", max_record_bytes), ("max payload bytes", max_payload_bytes)]
        {
            if value == 0 || value > 1 << 30 {
                return Err(ConfigError::Limit { name, value });
            }
        }
        Ok(Self {
            tenant_field: tenant_field.into(),
            max_record_bytes,
            max_payload_bytes,
            max_quarantine_raw_bytes: max_payload_bytes.max(max_record_bytes),
            max_tokens_per_call: DEFAULT_MAX_TOKENS_PER_CALL,
            max_span_duration_ms: DEFAULT_MAX_SPAN_DURATION_MS,
            log_timezone: crate::LogTimezone::Utc,
            default_time_ms: None,
            limits: RecordLimits::default(),
        })
    }

    /// The same settings with another [`DecodeConfig::max_tokens_per_call`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::MaxTokens`] when `max` is below 1 or above 10^15 (where a few thousand
    /// calls would overflow a day's sums again).
    pub fn with_max_tokens_per_call(mut self, max: i64) -> Result<Self, ConfigError> {
        if !(1..=MAX_TOKENS_CEILING).contains(&max) {
            return Err(ConfigError::MaxTokens(max));
        }
        self.max_tokens_per_call = max;
        Ok(self)
    }

    /// The same settings with other [`RecordLimits`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Range`] naming the limit that is 0 or above its ceiling (128 for the
    /// JSON depth, the parser's own; 10,000,000 for the counts).
    pub fn with_limits(mut self, limits: RecordLimits) -> Result<Self, ConfigError> {
        for (name, value, max) in [
            ("max JSON depth", limits.json_depth, MAX_JSON_DEPTH_CEILING),
            ("max attributes", limits.attributes, MAX_COUNT_CEILING),
            ("max tenants per batch", limits.tenants_per_batch, MAX_COUNT_CEILING),
            ("max users per batch", limits.users_per_batch, MAX_COUNT_CEILING),
        ] {
            if !(1..=max).contains(&value) {
                return Err(ConfigError::Range { name, value, max });
            }
        }
        self.limits = limits;
        Ok(self)
    }

    /// The same settings reading log-file times in `zone`, and giving lines without a time
    /// `default_time_ms`.
    pub fn with_log_times(
        mut self,
        zone: crate::LogTimezone,
        default_time_ms: Option<i64>,
    ) -> Self {
        self.log_timezone = zone;
        self.default_time_ms = default_time_ms;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(DecodeConfig::new("org_id", 10, 10).is_ok());
        assert_eq!(
            DecodeConfig::new("a b", 10, 10).unwrap_err().to_string(),
            "tenant field \"a b\" must be 1 to 64 characters from A-Z a-z 0-9 _ - ."
        );
        assert_eq!(
            DecodeConfig::new("x", 0, 10).unwrap_err(),
            ConfigError::Limit { name: "max record bytes", value: 0 }
        );
        let cfg = DecodeConfig::default();
        assert_eq!(cfg.clone().with_max_tokens_per_call(5).unwrap().max_tokens_per_call, 5);
        assert_eq!(
            cfg.with_max_tokens_per_call(0).unwrap_err().to_string(),
            "max tokens per call must be between 1 and 1000000000000000, got 0"
        );
        let limits = RecordLimits { json_depth: 129, ..RecordLimits::default() };
        assert_eq!(
            DecodeConfig::default().with_limits(limits).unwrap_err().to_string(),
            "max JSON depth must be between 1 and 128, got 129"
        );
        let limits = RecordLimits { users_per_batch: 0, ..RecordLimits::default() };
        assert_eq!(
            DecodeConfig::default().with_limits(limits).unwrap_err().to_string(),
            "max users per batch must be between 1 and 10000000, got 0"
        );
        let limits = RecordLimits { attributes: 7, ..RecordLimits::default() };
        assert_eq!(DecodeConfig::default().with_limits(limits).unwrap().limits.attributes, 7);
    }
}
