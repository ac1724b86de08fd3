//! The price book: effective-dated list prices per model, explicit id aliases, rate cards,
//! and the plan terms of each tier.
//!
//! - [`PriceBook`]: a validated book, from [`PriceBook::from_toml_str`] or
//!   [`PriceBook::load`]; [`PriceBook::version`] names it on invoices.
//! - [`PriceBook::resolve`]: which [`ModelPrices`] a logged model id is billed as.
//! - [`InferenceProfiles`], [`PriceBook::with_inference_profiles`]: application inference
//!   profiles priced as the model each routes to.
//! - [`ModelPrices::segments`]: the [`PriceSegment`]s of a model over an interval, and the
//!   uncovered (unpriced) rest.
//! - [`PriceBook::plan`], [`PriceBook::billed_prices`], [`PriceBook::billed_segments`]: what a
//!   tier pays, as [`UnitPrices`], with the list prices beside them ([`BilledSegments`]), or
//!   why it cannot be priced ([`Unpriced`]).
//! - [`import_litellm`]: a starting book from LiteLLM's model price map.
//!
//! Prices are exact [`Decimal`](rust_decimal::Decimal)s and are never rounded here: the
//! invoicer rounds line amounts, once, with `agentmeter_schemas::money::round_cents`.
//!
//! # The file format
//!
//! TOML. All amounts are **quoted decimal strings** in the book's currency (a bare TOML
//! float such as `0.15` is refused, because a float cannot hold most prices exactly), at
//! least zero, with at most 12 decimal places. Token prices are per million tokens. Unknown
//! keys are refused everywhere.
//!
//! ```toml
//! version = "2026-10-01"   # the book's own label, required; printable ASCII, no spaces or '+'
//! currency = "USD"         # required; the only currency supported
//!
//! [[models]]
//! id = "openai.gpt-oss-120b-1:0"      # the id as agents log it
//! name = "OpenAI gpt-oss-120b"        # optional display name
//! aliases = ["openai.gpt-oss-120b"]   # optional: other ids billed as this model
//! [[models.prices]]
//! effective_from = "2025-01-01"       # a date (UTC midnight) or an RFC 3339 instant on a whole hour
//! input_per_million = "0.15"
//! output_per_million = "0.60"
//! cache_read_per_million = "0.015"    # optional
//! cache_write_per_million = "0.1875"  # optional: 5-minute cache writes
//! cache_write_1h_per_million = "0.30" # optional: 1-hour cache writes
//! per_tool_call = "0.001"             # optional, per call
//! long_context_above = 200000         # optional: 128000, 200000 or 272000 prompt tokens
//! [models.prices.long_context]        # prompts above it (input + cache read + cache write)
//! input_per_million = "0.30"          # same keys as above but per_tool_call
//! output_per_million = "1.20"
//! [models.prices.priority]            # optional: service tiers priority, flex, batch
//! input_per_million = "0.2625"
//! output_per_million = "1.05"
//! [models.prices.priority.long_context]   # each tier its own long-context prices
//! input_per_million = "0.525"
//! output_per_million = "2.10"
//! [[models.prices]]
//! effective_from = "2026-10-15"       # a price change: the previous entry ends here
//! input_per_million = "0.12"
//! output_per_million = "0.48"
//!
//! [plans.basic]                 # the table's key is the tier, as logged
//! base_fee = "49.00"            # per month
//! included_usage = "0.00"       # usage (at the plan's prices) included in the base fee
//! markup = "0.25"               # list × 1.25; or rate_card = "name"; neither: list price
//! requests_per_second = 2       # optional, for quota flags (not billing)
//! requests_per_day = 50         # optional, for quota flags (not billing)
//! usage_source = "logs"         # optional: "logs" (default) or "chat_spans"
//!
//! [plans.premium]
//! base_fee = "499.00"
//! included_usage = "50.00"
//! rate_card = "premium"
//!
//! [rate_cards.premium]          # a tier's own prices: same shape as the top-level models
//! [[rate_cards.premium.models]]
//! id = "openai.gpt-oss-120b-1:0"
//! [[rate_cards.premium.models.prices]]
//! effective_from = "2025-01-01"
//! input_per_million = "0.18"
//! output_per_million = "0.72"
//! ```
//!
//! ## Model ids
//!
//! A logged id resolves by an exact match on a model's `id` or one of its `aliases`; failing
//! that, a foundation model or cross-region (system-defined) inference profile ARN in the
//! `aws` partition
//! (`arn:aws:bedrock:<region>:<account>:(foundation-model|inference-profile)/<resource>`)
//! resolves by an exact match on its resource part (after the last `/`). Nothing else is
//! inferred: geo prefixes (`us.`, `eu.`, `apac.`, `global.`, ...) and version suffixes
//! (`-v1:0`, `-1:0`) are never stripped, because geo profiles can be priced about 10 % above
//! the bare id. Every id that is billed must be declared, as a model or an alias. An id or
//! alias may appear only once among the models of the list (and once within each rate card).
//!
//! An application inference profile's id is opaque, so an application inference profile ARN
//! (`arn:<partition>:bedrock:<region>:<account>:application-inference-profile/<id>`) is never
//! resolved by it, nor declared in the book (refused at load). It resolves only through the
//! profiles given to [`PriceBook::with_inference_profiles`] ([`InferenceProfiles`], read from
//! `aws bedrock list-inference-profiles` output): the ARN, or its bare id, resolves as the
//! model the profile routes to (the foundation model id, or the cross-region profile id, prefix
//! kept), by the rules above, for the list and every rate card. An application profile ARN
//! that the profiles do not list is unpriced ([`Unpriced::UnknownApplicationProfile`]), and so
//! is a profile that routes its model to other Regions without naming the cross-region profile
//! it was copied from ([`Unpriced::CrossRegionProfile`]).
//!
//! ## Price classes
//!
//! A call is priced by its class: the Bedrock service tier it ran in (`standard` unless the
//! usage line says `priority`, `flex` or `batch`) and whether its prompt (input + cache read +
//! cache write tokens) exceeds the entry's `long_context_above`. The entry's top-level prices
//! are the standard tier's for prompts up to the threshold; `[...long_context]` holds the
//! standard tier's above it; `[...priority]`, `[...flex]` and `[...batch]` each hold a tier's,
//! with a `long_context` table of their own. Cache writes are priced by lifetime: the usage's
//! 1-hour writes at `cache_write_1h_per_million`, the rest at `cache_write_per_million`.
//!
//! A class the entry does not price is unpriced ([`ClassUnpriced`]), never billed at another
//! class's price: a tier without a table, a long prompt of a model with a threshold but no
//! `long_context` table for that tier, 1-hour writes without their price. Without
//! `long_context_above` the model has one price whatever the prompt. The threshold must be
//! one of the lake's prompt bands ([`agentmeter_schemas::PROMPT_BANDS`]): `usage_hourly`
//! keeps calls by band, so every row is wholly on one side of it. A markup applies to every
//! class alike.
//!
//! ## Effective dating
//!
//! A model's `prices` entries must be in strictly increasing order of `effective_from`, and
//! each `effective_from` must fall on a whole UTC hour (usage is aggregated by hour, so a
//! change inside an hour could not split invoice lines exactly). An entry applies from its
//! `effective_from` until the next entry's (the last one indefinitely). Usage before a
//! model's first entry is unpriced and reported, never billed at zero.
//!
//! ## Plans and rate cards
//!
//! `[plans.<tier>]` gives a tier's monthly `base_fee`, `included_usage`, and how its usage is
//! priced: `markup` (a fraction over list, at least -1; every list price × (1 + markup),
//! exactly, unrounded), or `rate_card` (the named `[rate_cards.<name>]`, whose models resolve
//! by the same rules; a model missing from the rate card is unpriced for that tier, never
//! billed at list), or neither (list price). An optional `currency` must equal the book's.
//! `usage_source` says which record of a model call the tier's tokens are billed from: the
//! `inference_usage` logs (the default) or the `chat` spans (one per model call, the safe
//! source when agents log an Agent object's lifetime total). Tool calls always come from spans.
//!
//! ## Errors
//!
//! Syntax errors, unknown keys and wrong types are toml's own errors, with line and column.
//! Every other error names its location with array indices counted from 0 and the model id
//! in parentheses, for example
//! `models[3] (anthropic.claude-haiku-4-5-20251001-v1:0).prices[1].input_per_million: "abc" is not a decimal`
//! or `plans.premium: rate_card "gold" is not defined`.
//!
//! ## Version
//!
//! [`PriceBook::version`] is the declared `version`, `+`, and the first 12 hex digits of the
//! BLAKE3 digest of the file's bytes (`2026-10-01+1a2b3c4d5e6f`), so an invoice names the
//! exact book that priced it.

pub mod bedrock;
mod book;
mod error;
mod litellm;
mod model;
mod profiles;
mod raw;
mod resolve;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_classes;
#[cfg(test)]
mod tests_litellm;
#[cfg(test)]
mod tests_profiles;
#[cfg(test)]
mod tests_validate;

pub use book::{MAX_FILE_BYTES, PriceBook};
pub use error::PriceBookError;
pub use litellm::{ImportOptions, ImportReport, SkipReason, Skipped, import_litellm};
pub use model::{
    ClassUnpriced, Coverage, ModelPrices, Plan, PlanPricing, PriceEntry, PriceSegment, TierPrices,
    TimeRange, TokenPrices, UnitPrices, UsageSource,
};
pub use profiles::{
    ApplicationProfile, InferenceProfiles, InferenceProfilesError, MAX_PROFILES_FILE_BYTES, Route,
    application_profile_id, merge_listings,
};
pub use resolve::{BilledSegments, Unpriced, bedrock_arn_resource};
