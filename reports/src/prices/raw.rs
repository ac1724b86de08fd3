//! The price book as written: serde structs that mirror the TOML exactly.
//!
//! Amounts and instants are kept as raw [`toml::Value`]s so that validation can say precisely
//! what is wrong with each (a float that must be quoted, a string that is not a decimal) and
//! where; syntax, unknown keys and wrong types are refused here by toml, with line and column.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBook {
    pub version: String,
    pub currency: String,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub plans: BTreeMap<String, RawPlan>,
    #[serde(default)]
    pub rate_cards: BTreeMap<String, RawRateCard>,
}

/// One `[[models]]` (or `[[rate_cards.<name>.models]]`) table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub prices: Vec<RawPrice>,
}

/// One `[[models.prices]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrice {
    pub effective_from: toml::Value,
    pub input_per_million: toml::Value,
    pub output_per_million: toml::Value,
    #[serde(default)]
    pub cache_read_per_million: Option<toml::Value>,
    #[serde(default)]
    pub cache_write_per_million: Option<toml::Value>,
    #[serde(default)]
    pub cache_write_1h_per_million: Option<toml::Value>,
    #[serde(default)]
    pub per_tool_call: Option<toml::Value>,
    #[serde(default)]
    pub long_context_above: Option<toml::Value>,
    #[serde(default)]
    pub long_context: Option<RawTokenPrices>,
    #[serde(default)]
    pub priority: Option<RawTierPrices>,
    #[serde(default)]
    pub flex: Option<RawTierPrices>,
    #[serde(default)]
    pub batch: Option<RawTierPrices>,
}

/// A `long_context` table: token prices only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenPrices {
    pub input_per_million: toml::Value,
    pub output_per_million: toml::Value,
    #[serde(default)]
    pub cache_read_per_million: Option<toml::Value>,
    #[serde(default)]
    pub cache_write_per_million: Option<toml::Value>,
    #[serde(default)]
    pub cache_write_1h_per_million: Option<toml::Value>,
}

/// A service tier's table (`priority`, `flex`, `batch`): token prices and its own
/// `long_context` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTierPrices {
    pub input_per_million: toml::Value,
    pub output_per_million: toml::Value,
    #[serde(default)]
    pub cache_read_per_million: Option<toml::Value>,
    #[serde(default)]
    pub cache_write_per_million: Option<toml::Value>,
    #[serde(default)]
    pub cache_write_1h_per_million: Option<toml::Value>,
    #[serde(default)]
    pub long_context: Option<RawTokenPrices>,
}

/// One `[plans.<tier>]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlan {
    pub base_fee: toml::Value,
    pub included_usage: toml::Value,
    #[serde(default)]
    pub markup: Option<toml::Value>,
    #[serde(default)]
    pub rate_card: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    #[serde(default)]
    pub requests_per_day: Option<u32>,
    #[serde(default)]
    pub usage_source: Option<String>,
}

/// One `[rate_cards.<name>]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateCard {
    #[serde(default)]
    pub models: Vec<RawModel>,
}
