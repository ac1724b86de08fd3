//! Shared vocabulary of agentmeter: validated identifiers, usage records, the accounting of
//! every input record, the quarantine envelope, the lake's Arrow schemas and their Athena DDL.
//!
//! Nothing here performs I/O. The other crates agree through these types:
//!
//! - [`TenantId`], [`UserId`], [`Tier`], [`ModelId`], [`EventId`]: identifiers that are
//!   validated once, at the edge, and can then be used in paths, keys and file names.
//! - [`UsageEvent`]: one valid `inference_usage` record, normalised.
//! - [`AgentSpan`]: one valid OpenTelemetry span of an agent runtime, without its events.
//! - [`Reason`], [`SkipKind`], [`Accounting`]: where each input record ended up.
//! - [`QuarantineEntry`]: the replayable form of a rejected record.
//! - [`money`]: exact decimal amounts and the one rounding rule.
//! - [`tables`]: the lake's tables (Arrow schemas, row builders) and [`athena`] their DDL.
//! - [`error_chain`]: an error and its causes in words (a transport error, a credentials or
//!   webhook failure); [`service_error`]: a service's refusal as `Code: message`.
#![deny(missing_docs)]

mod accounting;
pub mod athena;
mod error_chain;
mod event;
mod ids;
pub mod keyed;
pub mod money;
pub mod pricing;
mod quarantine;
mod span;
pub mod tables;

pub use accounting::{Accounting, Reason, SkipKind};
pub use error_chain::{error_chain, service_error};
pub use event::{Position, SourceUri, Tokens, UsageEvent, content_digest_hex};
pub use ids::{EventId, IdCache, IdError, InlineText, ModelId, SessionId, TenantId, Tier, UserId};
pub use pricing::{PROMPT_BANDS, ServiceTier, prompt_band};
pub use quarantine::{
    ENTRY_LINE_MAX, INLINE_LINE_MAX, QUARANTINE_MARKER, QuarantineEntry, RAW_DIR, RawFormat,
    is_raw_ref, raw_ref,
};
pub use span::{AgentSpan, SpanStatus, SpanTokens, is_operation, valid_hex_id};
