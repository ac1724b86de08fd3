//! From the book as written ([`super::raw`]) to a validated [`PriceBook`].
//!
//! Every check names the location the way the TOML spells it (indices from 0, the model id
//! in parentheses) so that the person editing the file can go straight to it.

use std::collections::{BTreeMap, HashMap};

use agentmeter_schemas::{ModelId, PROMPT_BANDS, ServiceTier, Tier};
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use rust_decimal::Decimal;

use super::book::{ModelTable, PlanEntry, PriceBook};
use super::error::PriceBookError;
use super::model::{
    ModelPrices, Plan, PlanPricing, PriceEntry, TierPrices, TokenPrices, UnitPrices, UsageSource,
};
use super::profiles::{InferenceProfiles, application_profile_id};
use super::raw::{RawBook, RawModel, RawPlan, RawPrice, RawTokenPrices};

/// The five token price values of a raw table (the entry itself, a tier's table or a
/// `long_context` table: three serde structs, since `deny_unknown_fields` rules out
/// flattening one into the others), in [`TOKEN_PRICE_NAMES`] order.
macro_rules! token_values {
    ($raw:expr) => {
        [
            Some(&$raw.input_per_million),
            Some(&$raw.output_per_million),
            $raw.cache_read_per_million.as_ref(),
            $raw.cache_write_per_million.as_ref(),
            $raw.cache_write_1h_per_million.as_ref(),
        ]
    };
}

/// The only currency the book supports for now.
pub(super) const CURRENCY: &str = "USD";

/// Most decimal places an amount may have (as written).
pub(super) const MAX_DP: u32 = 12;

/// Validates a parsed book; `digest` is the hex BLAKE3 digest of the file's bytes.
pub(super) fn build(raw: RawBook, digest: String) -> Result<PriceBook, PriceBookError> {
    check_version(&raw.version)?;
    if raw.currency != CURRENCY {
        return Err(PriceBookError::Currency { at: "currency".into(), value: raw.currency });
    }
    let list = models("models", &raw.models)?;

    let mut rate_cards = BTreeMap::new();
    for (name, card) in &raw.rate_cards {
        let at = format!("rate_cards.{}", key(name));
        if !is_name(name) {
            return Err(PriceBookError::BadName { at, value: name.clone() });
        }
        rate_cards.insert(name.clone(), models(&format!("{at}.models"), &card.models)?);
    }

    let mut plans = BTreeMap::new();
    for (name, p) in &raw.plans {
        let at = format!("plans.{}", key(name));
        let tier = Tier::new(name.as_str())
            .map_err(|error| PriceBookError::InvalidId { at: at.clone(), error })?;
        let entry = plan(&at, p, &list, &rate_cards)?;
        plans.insert(tier, entry);
    }

    Ok(PriceBook {
        label: raw.version,
        digest,
        currency: raw.currency,
        list,
        plans,
        rate_cards,
        profiles: InferenceProfiles::default(),
    })
}

pub(super) fn check_version(v: &str) -> Result<(), PriceBookError> {
    let bad = |why| Err(PriceBookError::BadVersion { value: v.to_owned(), why });
    if v.is_empty() {
        bad("is empty")
    } else if v.len() > 64 {
        bad("is longer than 64 characters")
    } else if !v.bytes().all(|b| b.is_ascii_graphic() && b != b'+') {
        bad("must be printable ASCII without spaces or '+' ('+' separates the file digest)")
    } else {
        Ok(())
    }
}

/// A rate card name: what TOML allows as a bare key, at most 64 characters.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A table key as TOML would show it: bare if it can be, quoted otherwise.
fn key(s: &str) -> String {
    if is_name(s) { s.to_owned() } else { format!("{s:?}") }
}

/// A list of `[[models]]` tables (the book's or a rate card's), with its id index.
fn models(prefix: &str, raw: &[RawModel]) -> Result<ModelTable, PriceBookError> {
    let mut table = ModelTable::default();
    // Every id and alias → where it was declared first, for the duplicate message.
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, m) in raw.iter().enumerate() {
        let id = ModelId::new(m.id.as_str()).map_err(|error| PriceBookError::InvalidId {
            at: format!("{prefix}[{i}].id"),
            error,
        })?;
        let at = format!("{prefix}[{i}] ({id})");
        let mut declare = |value: &str, where_: String| match seen.get(value) {
            _ if application_profile_id(value).is_some() => {
                Err(PriceBookError::ApplicationProfileId { at: where_, id: value.to_owned() })
            }
            Some(first) => Err(PriceBookError::DuplicateId {
                at: where_,
                id: value.to_owned(),
                first: first.clone(),
            }),
            None => {
                seen.insert(value.to_owned(), at.clone());
                Ok(())
            }
        };
        declare(id.as_str(), format!("{at}.id"))?;
        let mut aliases = Vec::with_capacity(m.aliases.len());
        for (k, a) in m.aliases.iter().enumerate() {
            let a_at = format!("{at}.aliases[{k}]");
            let alias = ModelId::new(a.as_str())
                .map_err(|error| PriceBookError::InvalidId { at: a_at.clone(), error })?;
            declare(alias.as_str(), a_at)?;
            aliases.push(alias);
        }
        let entries = entries(&at, &m.prices)?;
        let n = table.models.len();
        table.index.insert(id.as_str().to_owned(), n);
        for a in &aliases {
            table.index.insert(a.as_str().to_owned(), n);
        }
        table.models.push(ModelPrices { id, name: m.name.clone(), aliases, entries });
    }
    Ok(table)
}

fn entries(at: &str, raw: &[RawPrice]) -> Result<Vec<PriceEntry>, PriceBookError> {
    if raw.is_empty() {
        return Err(PriceBookError::NoPrices { at: format!("{at}.prices") });
    }
    let mut out: Vec<PriceEntry> = Vec::with_capacity(raw.len());
    for (j, p) in raw.iter().enumerate() {
        let e_at = format!("{at}.prices[{j}]");
        let field = |name: &str| format!("{e_at}.{name}");
        let effective_from = instant(&field("effective_from"), &p.effective_from)?;
        if let Some(prev) = out.last()
            && prev.effective_from >= effective_from
        {
            return Err(PriceBookError::NotIncreasing {
                at: field("effective_from"),
                value: show_instant(effective_from),
                previous_at: format!("{at}.prices[{}].effective_from", j - 1),
                previous: show_instant(prev.effective_from),
            });
        }
        let opt = |name: &str, v: &Option<toml::Value>| {
            v.as_ref().map(|v| amount(&field(name), v)).transpose()
        };
        let base = token_prices(&e_at, token_values!(p))?;
        let long = |at: String, l: &Option<RawTokenPrices>| {
            l.as_ref().map(|l| token_prices(&at, token_values!(l))).transpose()
        };
        let long_context_above = p
            .long_context_above
            .as_ref()
            .map(|v| threshold(&field("long_context_above"), v))
            .transpose()?;
        let long_context = long(field("long_context"), &p.long_context)?;
        if long_context.is_some() && long_context_above.is_none() {
            return Err(PriceBookError::Invalid {
                at: field("long_context"),
                detail: "long-context prices need long_context_above in the same entry".into(),
            });
        }
        let mut service_tiers = BTreeMap::new();
        for (tier, raw) in [
            (ServiceTier::Priority, &p.priority),
            (ServiceTier::Flex, &p.flex),
            (ServiceTier::Batch, &p.batch),
        ] {
            let Some(raw) = raw else { continue };
            let t_at = field(tier.code());
            let prices = token_prices(&t_at, token_values!(raw))?;
            let long_context = long(format!("{t_at}.long_context"), &raw.long_context)?;
            if long_context.is_some() && long_context_above.is_none() {
                return Err(PriceBookError::Invalid {
                    at: format!("{t_at}.long_context"),
                    detail: "long-context prices need long_context_above in the same entry".into(),
                });
            }
            service_tiers.insert(tier, TierPrices { prices, long_context });
        }
        let prices = UnitPrices {
            input_per_million: base.input_per_million,
            output_per_million: base.output_per_million,
            cache_read_per_million: base.cache_read_per_million,
            cache_write_per_million: base.cache_write_per_million,
            cache_write_1h_per_million: base.cache_write_1h_per_million,
            per_tool_call: opt("per_tool_call", &p.per_tool_call)?,
            long_context_above,
            long_context,
            service_tiers,
        };
        out.push(PriceEntry { effective_from, prices });
    }
    Ok(out)
}

/// The five token prices of a table at `at` (input and output required, the caches optional).
fn token_prices(at: &str, v: [Option<&toml::Value>; 5]) -> Result<TokenPrices, PriceBookError> {
    let names = TOKEN_PRICE_NAMES;
    let get = |k: usize| v[k].map(|v| amount(&format!("{at}.{}", names[k]), v)).transpose();
    let need = |k: usize| {
        get(k)?.ok_or_else(|| PriceBookError::Invalid {
            at: format!("{at}.{}", names[k]),
            detail: "is missing".into(),
        })
    };
    Ok(TokenPrices {
        input_per_million: need(0)?,
        output_per_million: need(1)?,
        cache_read_per_million: get(2)?,
        cache_write_per_million: get(3)?,
        cache_write_1h_per_million: get(4)?,
    })
}

const TOKEN_PRICE_NAMES: [&str; 5] = [
    "input_per_million",
    "output_per_million",
    "cache_read_per_million",
    "cache_write_per_million",
    "cache_write_1h_per_million",
];

/// A long-context threshold: an integer that is one of the lake's prompt bands, so that
/// every hourly row is wholly on one side of it.
fn threshold(at: &str, v: &toml::Value) -> Result<i64, PriceBookError> {
    let bands = PROMPT_BANDS.map(|b| b.to_string()).join(", ");
    match v.as_integer() {
        Some(n) if PROMPT_BANDS.contains(&n) => Ok(n),
        _ => Err(PriceBookError::Invalid {
            at: at.to_owned(),
            detail: format!(
                "{} is not one of the supported thresholds ({bands} tokens)",
                v.as_integer().map_or_else(|| format!("a {}", v.type_str()), |n| n.to_string())
            ),
        }),
    }
}

fn plan(
    at: &str,
    p: &RawPlan,
    list: &ModelTable,
    rate_cards: &BTreeMap<String, ModelTable>,
) -> Result<PlanEntry, PriceBookError> {
    if let Some(c) = &p.currency
        && c != CURRENCY
    {
        return Err(PriceBookError::Currency { at: format!("{at}.currency"), value: c.clone() });
    }
    let base_fee = amount(&format!("{at}.base_fee"), &p.base_fee)?;
    let included_usage = amount(&format!("{at}.included_usage"), &p.included_usage)?;
    for (name, limit) in
        [("requests_per_second", p.requests_per_second), ("requests_per_day", p.requests_per_day)]
    {
        if limit == Some(0) {
            return Err(PriceBookError::ZeroLimit { at: format!("{at}.{name}") });
        }
    }
    let (pricing, marked) = match (&p.markup, &p.rate_card) {
        (Some(_), Some(_)) => {
            return Err(PriceBookError::MarkupAndRateCard { at: at.to_owned() });
        }
        (Some(m), None) => {
            let m_at = format!("{at}.markup");
            let markup = markup(&m_at, m)?;
            let marked = marked_up(&m_at, markup, list)?;
            (PlanPricing::Markup(markup), Some(marked))
        }
        (None, Some(name)) => {
            if !rate_cards.contains_key(name) {
                return Err(PriceBookError::UnknownRateCard {
                    at: at.to_owned(),
                    name: name.clone(),
                });
            }
            (PlanPricing::RateCard(name.clone()), None)
        }
        (None, None) => (PlanPricing::List, None),
    };
    let usage_source = match &p.usage_source {
        None => UsageSource::Logs,
        Some(v) => UsageSource::parse(v).ok_or_else(|| PriceBookError::UsageSource {
            at: format!("{at}.usage_source"),
            value: v.clone(),
        })?,
    };
    let plan = Plan {
        base_fee,
        included_usage,
        pricing,
        usage_source,
        requests_per_second: p.requests_per_second,
        requests_per_day: p.requests_per_day,
    };
    Ok(PlanEntry { plan, marked })
}

/// The list table with every price multiplied by `1 + markup`, computed once at load so that
/// an inexact product is a load error rather than a silently rounded price.
fn marked_up(at: &str, markup: Decimal, list: &ModelTable) -> Result<ModelTable, PriceBookError> {
    let overflow = |price_at: String, price: Decimal| PriceBookError::MarkupOverflow {
        at: at.to_owned(),
        markup: markup.to_string(),
        price_at,
        price: price.to_string(),
    };
    let factor =
        Decimal::ONE.checked_add(markup).ok_or_else(|| overflow("1".into(), Decimal::ONE))?;
    let mut models = Vec::with_capacity(list.models.len());
    for (i, m) in list.models.iter().enumerate() {
        let mut entries = Vec::with_capacity(m.entries.len());
        for (j, e) in m.entries.iter().enumerate() {
            let prices = e.prices.scaled(factor).map_err(|(field, price)| {
                overflow(format!("models[{i}] ({}).prices[{j}].{field}", m.id), price)
            })?;
            entries.push(PriceEntry { effective_from: e.effective_from, prices });
        }
        models.push(ModelPrices {
            id: m.id.clone(),
            name: m.name.clone(),
            aliases: m.aliases.clone(),
            entries,
        });
    }
    Ok(ModelTable { models, index: list.index.clone() })
}

/// A non-negative amount: a quoted decimal string with at most [`MAX_DP`] places.
pub(super) fn amount(at: &str, v: &toml::Value) -> Result<Decimal, PriceBookError> {
    let (d, text) = decimal(at, v)?;
    if d < Decimal::ZERO {
        return Err(PriceBookError::Negative { at: at.to_owned(), value: text.to_owned() });
    }
    Ok(d)
}

/// A markup: a quoted decimal string, at least -1.
fn markup(at: &str, v: &toml::Value) -> Result<Decimal, PriceBookError> {
    let (d, text) = decimal(at, v)?;
    if d < Decimal::NEGATIVE_ONE {
        return Err(PriceBookError::MarkupBelowMinusOne {
            at: at.to_owned(),
            value: text.to_owned(),
        });
    }
    Ok(d)
}

/// A quoted decimal (`-?[0-9]+(\.[0-9]+)?`, at most [`MAX_DP`] places) and its text.
fn decimal<'v>(at: &str, v: &'v toml::Value) -> Result<(Decimal, &'v str), PriceBookError> {
    let text = match v {
        toml::Value::String(s) => s.as_str(),
        toml::Value::Float(f) => {
            return Err(PriceBookError::NotQuoted {
                at: at.to_owned(),
                shown: f.to_string(),
                kind: "float",
            });
        }
        toml::Value::Integer(i) => {
            return Err(PriceBookError::NotQuoted {
                at: at.to_owned(),
                shown: i.to_string(),
                kind: "integer",
            });
        }
        other => {
            return Err(PriceBookError::WrongType {
                at: at.to_owned(),
                found: other.type_str(),
                expected: "a quoted decimal string such as \"0.15\"",
            });
        }
    };
    let not_decimal = || PriceBookError::NotADecimal { at: at.to_owned(), value: text.to_owned() };
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || !frac.is_none_or(all_digits) {
        return Err(not_decimal());
    }
    if frac.is_some_and(|f| f.len() > MAX_DP as usize) {
        return Err(PriceBookError::TooPrecise {
            at: at.to_owned(),
            value: text.to_owned(),
            max: MAX_DP,
        });
    }
    let mut d: Decimal = text.parse().map_err(|_| not_decimal())?;
    // "-0" is zero; never show it as "-0" on an invoice.
    if d.is_zero() {
        d.set_sign_positive(true);
    }
    Ok((d, text))
}

/// A date (`YYYY-MM-DD`, UTC midnight) or an RFC 3339 instant, on a whole UTC hour; quoted,
/// or a native TOML date or offset date-time.
fn instant(at: &str, v: &toml::Value) -> Result<DateTime<Utc>, PriceBookError> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => {
            return Err(PriceBookError::WrongType {
                at: at.to_owned(),
                found: other.type_str(),
                expected: "a quoted date such as \"2026-10-01\"",
            });
        }
    };
    let t = parse_instant(&text)
        .ok_or_else(|| PriceBookError::NotAnInstant { at: at.to_owned(), value: text.clone() })?;
    if t.minute() != 0 || t.second() != 0 || t.nanosecond() != 0 {
        return Err(PriceBookError::NotOnTheHour { at: at.to_owned(), value: text });
    }
    Ok(t)
}

/// Parses `YYYY-MM-DD` (as UTC midnight) or an RFC 3339 instant.
pub(super) fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    if text.len() == 10 {
        let d = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// An instant as the book writes it: `YYYY-MM-DD` at midnight, RFC 3339 otherwise.
pub(super) fn show_instant(t: DateTime<Utc>) -> String {
    if t.hour() == 0 && t.minute() == 0 && t.second() == 0 && t.nanosecond() == 0 {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}
