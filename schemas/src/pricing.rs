//! The dimensions a model call is priced by besides its model and tokens: the Bedrock service
//! tier it ran in, and the prompt-size band that decides long-context prices.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Tokens;

/// The Bedrock service tier a call ran in: each has its own token prices.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ServiceTier {
    /// On-demand at list price (the API calls it `default`). A call that names no tier.
    #[default]
    Standard,
    /// Priority: faster, at a premium.
    Priority,
    /// Flex: slower, at a discount.
    Flex,
    /// Batch inference jobs.
    Batch,
}

impl ServiceTier {
    /// Every tier, in code order.
    pub const ALL: [ServiceTier; 4] =
        [ServiceTier::Standard, ServiceTier::Priority, ServiceTier::Flex, ServiceTier::Batch];

    /// The name used in the lake, the price book and every output.
    pub fn code(self) -> &'static str {
        match self {
            ServiceTier::Standard => "standard",
            ServiceTier::Priority => "priority",
            ServiceTier::Flex => "flex",
            ServiceTier::Batch => "batch",
        }
    }

    /// Parses a code as [`ServiceTier::code`] writes it.
    pub fn from_code(s: &str) -> Option<ServiceTier> {
        ServiceTier::ALL.into_iter().find(|t| t.code() == s)
    }

    /// Parses a tier as agents log it: a code, or `default` (the Bedrock API's name for the
    /// standard tier), in any letter case.
    pub fn from_logged(s: &str) -> Option<ServiceTier> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "default" | "on_demand" | "on-demand" => Some(ServiceTier::Standard),
            other => ServiceTier::from_code(other),
        }
    }
}

impl fmt::Display for ServiceTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The prompt sizes at which models change to long-context prices. A call whose prompt
/// (input + cache read + cache write tokens) exceeds one of them is counted in that band
/// ([`prompt_band`]); a price book's `long_context_above` must be one of them, so that every
/// band is wholly on one side of every model's threshold.
pub const PROMPT_BANDS: [i64; 3] = [128_000, 200_000, 272_000];

/// The largest of [`PROMPT_BANDS`] that the call's prompt exceeds, or 0.
pub fn prompt_band(t: &Tokens) -> i64 {
    let prompt = t.input.saturating_add(t.cache_read).saturating_add(t.cache_write);
    PROMPT_BANDS.iter().rev().copied().find(|&b| prompt > b).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_count_the_whole_prompt_and_are_exclusive_at_the_boundary() {
        let t = |input, cache_read, cache_write| Tokens {
            input,
            cache_read,
            cache_write,
            ..Tokens::default()
        };
        assert_eq!(prompt_band(&t(0, 0, 0)), 0);
        assert_eq!(prompt_band(&t(200_000, 0, 0)), 128_000);
        assert_eq!(prompt_band(&t(200_001, 0, 0)), 200_000);
        assert_eq!(prompt_band(&t(1, 150_000, 50_000)), 200_000);
        assert_eq!(prompt_band(&t(128_000, 0, 0)), 0);
        assert_eq!(prompt_band(&t(1_000_000, 0, 0)), 272_000);
        assert_eq!(prompt_band(&t(i64::MAX, i64::MAX, 0)), 272_000);
    }

    #[test]
    fn logged_tiers() {
        assert_eq!(ServiceTier::from_logged("default"), Some(ServiceTier::Standard));
        assert_eq!(ServiceTier::from_logged("Priority"), Some(ServiceTier::Priority));
        assert_eq!(ServiceTier::from_logged("flex"), Some(ServiceTier::Flex));
        assert_eq!(ServiceTier::from_logged("batch"), Some(ServiceTier::Batch));
        assert_eq!(ServiceTier::from_logged("reserved"), None);
        assert_eq!(ServiceTier::from_code("default"), None);
    }
}
