//! The price book's data: unit prices, effective-dated entries, models, segments and plans.

use std::collections::BTreeMap;

use agentmeter_schemas::{ModelId, ServiceTier};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

/// Token prices per million tokens: the prices of one service tier and prompt size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TokenPrices {
    /// Per million input (prompt, non-cached) tokens.
    pub input_per_million: Decimal,
    /// Per million output (completion) tokens.
    pub output_per_million: Decimal,
    /// Per million prompt-cache read tokens.
    pub cache_read_per_million: Option<Decimal>,
    /// Per million prompt-cache write tokens with the default 5-minute lifetime.
    pub cache_write_per_million: Option<Decimal>,
    /// Per million prompt-cache write tokens with a 1-hour lifetime.
    pub cache_write_1h_per_million: Option<Decimal>,
}

impl TokenPrices {
    fn scaled(&self, factor: Decimal, at: &'static str) -> Result<TokenPrices, (String, Decimal)> {
        let mul =
            |name: &str, p: Decimal| exact_mul(p, factor).ok_or_else(|| (format!("{at}{name}"), p));
        let opt = |name: &str, p: Option<Decimal>| p.map(|p| mul(name, p)).transpose();
        Ok(TokenPrices {
            input_per_million: mul("input_per_million", self.input_per_million)?,
            output_per_million: mul("output_per_million", self.output_per_million)?,
            cache_read_per_million: opt("cache_read_per_million", self.cache_read_per_million)?,
            cache_write_per_million: opt("cache_write_per_million", self.cache_write_per_million)?,
            cache_write_1h_per_million: opt(
                "cache_write_1h_per_million",
                self.cache_write_1h_per_million,
            )?,
        })
    }
}

/// The prices of a service tier other than standard, with its own long-context prices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TierPrices {
    /// Prices of calls up to the model's long-context threshold (all calls, without one).
    pub prices: TokenPrices,
    /// Prices of calls whose prompt exceeds the threshold.
    pub long_context: Option<TokenPrices>,
}

/// The unit prices of one model during one effective period, in the book's currency.
///
/// The top-level token prices are the standard tier's for prompts up to the long-context
/// threshold. Token prices are per million tokens. Prices are exact and never rounded:
/// rounding happens only on invoice line amounts. `None` means the book lists no price for
/// that component, which is not the same as a price of zero: usage of an unpriced component
/// must be reported, not billed at zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct UnitPrices {
    /// Per million input (prompt, non-cached) tokens.
    pub input_per_million: Decimal,
    /// Per million output (completion) tokens.
    pub output_per_million: Decimal,
    /// Per million prompt-cache read tokens.
    pub cache_read_per_million: Option<Decimal>,
    /// Per million prompt-cache write tokens with the default 5-minute lifetime.
    pub cache_write_per_million: Option<Decimal>,
    /// Per million prompt-cache write tokens with a 1-hour lifetime.
    pub cache_write_1h_per_million: Option<Decimal>,
    /// Per tool call.
    pub per_tool_call: Option<Decimal>,
    /// The prompt size (one of [`agentmeter_schemas::PROMPT_BANDS`]) above which a call is priced at the
    /// long-context prices; `None`: the model has one price whatever the prompt.
    pub long_context_above: Option<i64>,
    /// The standard tier's prices for prompts above `long_context_above`.
    pub long_context: Option<TokenPrices>,
    /// The prices of the other service tiers; a tier missing here is unpriced.
    pub service_tiers: BTreeMap<ServiceTier, TierPrices>,
}

/// Why a price class of a model has no price ([`UnitPrices::for_class`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassUnpriced {
    /// The book gives no prices for the service tier.
    ServiceTier(ServiceTier),
    /// The book gives the model a long-context threshold but no long-context prices for the
    /// service tier.
    LongContext(ServiceTier, i64),
}

impl std::fmt::Display for ClassUnpriced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClassUnpriced::ServiceTier(t) => write!(f, "no {t} service tier price"),
            ClassUnpriced::LongContext(t, above) => write!(
                f,
                "no long-context price (prompts over {above} tokens) for the {t} service tier"
            ),
        }
    }
}

impl UnitPrices {
    /// Prices with only input and output at zero and nothing else priced: a start for
    /// struct update syntax.
    pub fn none() -> UnitPrices {
        UnitPrices {
            input_per_million: Decimal::ZERO,
            output_per_million: Decimal::ZERO,
            cache_read_per_million: None,
            cache_write_per_million: None,
            cache_write_1h_per_million: None,
            per_tool_call: None,
            long_context_above: None,
            long_context: None,
            service_tiers: BTreeMap::new(),
        }
    }

    /// The standard tier's prices for prompts up to the threshold.
    pub fn standard(&self) -> TokenPrices {
        TokenPrices {
            input_per_million: self.input_per_million,
            output_per_million: self.output_per_million,
            cache_read_per_million: self.cache_read_per_million,
            cache_write_per_million: self.cache_write_per_million,
            cache_write_1h_per_million: self.cache_write_1h_per_million,
        }
    }

    /// True when the call band `prompt_band` ([`agentmeter_schemas::prompt_band`]) is priced
    /// at long-context prices: its prompts exceed the model's threshold.
    pub fn is_long_context(&self, prompt_band: i64) -> bool {
        self.long_context_above.is_some_and(|above| prompt_band >= above)
    }

    /// The token prices of calls in `service_tier` whose prompt band is `prompt_band`.
    ///
    /// # Errors
    ///
    /// The book prices that class of call nowhere.
    pub fn for_class(
        &self,
        service_tier: ServiceTier,
        prompt_band: i64,
    ) -> Result<TokenPrices, ClassUnpriced> {
        let long = self.is_long_context(prompt_band);
        let above = self.long_context_above.unwrap_or_default();
        if service_tier == ServiceTier::Standard {
            if !long {
                return Ok(self.standard());
            }
            return self
                .long_context
                .clone()
                .ok_or(ClassUnpriced::LongContext(service_tier, above));
        }
        let t = self
            .service_tiers
            .get(&service_tier)
            .ok_or(ClassUnpriced::ServiceTier(service_tier))?;
        if !long {
            return Ok(t.prices.clone());
        }
        t.long_context.clone().ok_or(ClassUnpriced::LongContext(service_tier, above))
    }

    /// Every price multiplied by `factor`, exactly.
    ///
    /// # Errors
    ///
    /// The name of the first component whose product cannot be represented exactly (it
    /// overflows the 96-bit mantissa or 28 decimal places) and that component's list price.
    pub(crate) fn scaled(&self, factor: Decimal) -> Result<UnitPrices, (String, Decimal)> {
        let base = self.standard().scaled(factor, "")?;
        let per_tool_call = self
            .per_tool_call
            .map(|p| exact_mul(p, factor).ok_or_else(|| ("per_tool_call".to_owned(), p)))
            .transpose()?;
        let long_context =
            self.long_context.as_ref().map(|l| l.scaled(factor, "long_context.")).transpose()?;
        let mut service_tiers = BTreeMap::new();
        for (tier, t) in &self.service_tiers {
            let at = tier_at(*tier);
            let prices = t.prices.scaled(factor, at.0)?;
            let long_context =
                t.long_context.as_ref().map(|l| l.scaled(factor, at.1)).transpose()?;
            service_tiers.insert(*tier, TierPrices { prices, long_context });
        }
        Ok(UnitPrices {
            input_per_million: base.input_per_million,
            output_per_million: base.output_per_million,
            cache_read_per_million: base.cache_read_per_million,
            cache_write_per_million: base.cache_write_per_million,
            cache_write_1h_per_million: base.cache_write_1h_per_million,
            per_tool_call,
            long_context_above: self.long_context_above,
            long_context,
            service_tiers,
        })
    }
}

/// The price book paths of a tier's table and its long-context table, for error messages.
fn tier_at(tier: ServiceTier) -> (&'static str, &'static str) {
    match tier {
        ServiceTier::Standard => ("", "long_context."),
        ServiceTier::Priority => ("priority.", "priority.long_context."),
        ServiceTier::Flex => ("flex.", "flex.long_context."),
        ServiceTier::Batch => ("batch.", "batch.long_context."),
    }
}

/// `a × b` if the product is exact.
///
/// rust_decimal silently drops low digits when a product does not fit; an exact product
/// keeps the sum of the operands' scales, so a smaller scale reveals the rounding.
fn exact_mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    let p = a.checked_mul(b)?;
    (p.scale() == a.scale() + b.scale() || p.is_zero()).then_some(p)
}

/// One effective-dated price entry: `prices` apply from `effective_from` until the next
/// entry's `effective_from` (the last entry applies indefinitely).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceEntry {
    /// When the prices take effect, on a whole UTC hour.
    pub effective_from: DateTime<Utc>,
    /// The prices.
    pub prices: UnitPrices,
}

/// A priced model: its canonical id, the other ids billed as it, and its price history.
///
/// Returned by [`PriceBook::resolve`](super::PriceBook::resolve). Entries are sorted by
/// `effective_from`, strictly increasing, and there is at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrices {
    pub(crate) id: ModelId,
    pub(crate) name: Option<String>,
    pub(crate) aliases: Vec<ModelId>,
    pub(crate) entries: Vec<PriceEntry>,
}

impl ModelPrices {
    /// The model's canonical id (the `id` key of its `[[models]]` table).
    pub fn id(&self) -> &ModelId {
        &self.id
    }

    /// The display name, if the book gives one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The other ids billed as this model.
    pub fn aliases(&self) -> &[ModelId] {
        &self.aliases
    }

    /// The price history, oldest first.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// The prices in effect at `at`, or `None` before the first entry.
    pub fn price_at(&self, at: DateTime<Utc>) -> Option<&UnitPrices> {
        let n = self.entries.partition_point(|e| e.effective_from <= at);
        n.checked_sub(1).and_then(|i| self.entries.get(i)).map(|e| &e.prices)
    }

    /// The price intervals overlapping `[from, to)`, clipped to it, and the parts of it that
    /// no entry covers (usage there is unpriced).
    ///
    /// An empty or reversed range gives an empty [`Coverage`].
    pub fn segments(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Coverage {
        let mut cov = Coverage::default();
        if from >= to {
            return cov;
        }
        if let Some(first) = self.entries.first()
            && from < first.effective_from
        {
            cov.uncovered.push(TimeRange { from, to: to.min(first.effective_from) });
        }
        for (i, e) in self.entries.iter().enumerate() {
            let effective_to = self.entries.get(i + 1).map(|n| n.effective_from);
            let lo = from.max(e.effective_from);
            let hi = effective_to.map_or(to, |end| to.min(end));
            if lo < hi {
                cov.segments.push(PriceSegment {
                    from: lo,
                    to: hi,
                    effective_from: e.effective_from,
                    effective_to,
                    prices: e.prices.clone(),
                });
            }
        }
        cov
    }
}

/// A half-open time interval `[from, to)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TimeRange {
    /// Start, inclusive.
    pub from: DateTime<Utc>,
    /// End, exclusive.
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// Whether `at` lies in `[from, to)`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.to
    }
}

/// A part of a queried interval during which one price entry applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceSegment {
    /// Start of the part, inclusive (the later of the query's start and the entry's).
    pub from: DateTime<Utc>,
    /// End of the part, exclusive (the earlier of the query's end and the entry's).
    pub to: DateTime<Utc>,
    /// When the entry takes effect, for display on invoice lines.
    pub effective_from: DateTime<Utc>,
    /// When the next entry replaces it; `None` while it is the latest.
    pub effective_to: Option<DateTime<Utc>>,
    /// The prices.
    pub prices: UnitPrices,
}

impl PriceSegment {
    /// Whether `at` lies in `[from, to)`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.to
    }
}

/// How a queried interval is priced: the priced parts in time order and the unpriced rest.
///
/// The segments and the uncovered ranges together tile the queried interval exactly, without
/// overlap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The priced parts, in time order.
    pub segments: Vec<PriceSegment>,
    /// The parts without a price (before the first entry), in time order.
    pub uncovered: Vec<TimeRange>,
}

/// How a plan prices usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanPricing {
    /// At list price.
    List,
    /// List price × (1 + markup), e.g. 0.25 for +25 %. At least -1.
    Markup(Decimal),
    /// The prices of the named rate card; models missing from it are unpriced for the plan.
    RateCard(String),
}

/// Which record of a model call a plan bills its tokens from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The `inference_usage` log lines (the default).
    #[default]
    Logs,
    /// The `chat` spans: one per model call, so never an Agent object's lifetime total.
    ChatSpans,
}

impl UsageSource {
    /// The name used in the price book and every output (`logs`, `chat_spans`).
    pub fn code(self) -> &'static str {
        match self {
            UsageSource::Logs => "logs",
            UsageSource::ChatSpans => "chat_spans",
        }
    }

    /// Parses a price book value.
    pub fn parse(s: &str) -> Option<UsageSource> {
        match s {
            "logs" => Some(UsageSource::Logs),
            "chat_spans" => Some(UsageSource::ChatSpans),
            _ => None,
        }
    }
}

/// The terms of one tier's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Plan {
    /// Monthly base fee, in the book's currency.
    pub base_fee: Decimal,
    /// Usage (valued at the plan's prices, in the book's currency) included in the base fee
    /// each month.
    pub included_usage: Decimal,
    /// How usage is priced.
    pub pricing: PlanPricing,
    /// Which record of a model call its tokens are billed from.
    pub usage_source: UsageSource,
    /// Requests per second allowed to one tenant of the tier, if limited (for quota flags;
    /// not used for billing).
    pub requests_per_second: Option<u32>,
    /// Requests per day allowed to one tenant of the tier, if limited (for quota flags; not
    /// used for billing).
    pub requests_per_day: Option<u32>,
}
