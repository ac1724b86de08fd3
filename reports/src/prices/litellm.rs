//! A starting price book from LiteLLM's model price map
//! (`model_prices_and_context_window.json`).
//!
//! LiteLLM gives costs in USD per token as JSON numbers (`1.5e-07`). Each is read from its
//! literal text and shifted by six decimal places to a price per million tokens, with integer
//! arithmetic only, so `1.5e-07` becomes exactly `0.15`; no value ever passes through a
//! binary float.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use agentmeter_schemas::ModelId;
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::book::PriceBook;
use super::error::PriceBookError;
use super::validate::{CURRENCY, MAX_DP, check_version, show_instant};

/// The LiteLLM fields imported, and the book's field each becomes.
const COSTS: [(&str, &str); 5] = [
    ("input_cost_per_token", "input_per_million"),
    ("output_cost_per_token", "output_per_million"),
    ("cache_read_input_token_cost", "cache_read_per_million"),
    ("cache_creation_input_token_cost", "cache_write_per_million"),
    ("cache_creation_input_token_cost_above_1hr", "cache_write_1h_per_million"),
];

/// LiteLLM's service-tier suffixes (input and output prices only) and the book's table.
const TIERS: [(&str, &str); 3] =
    [("_priority", "priority"), ("_flex", "flex"), ("_batches", "batch")];

/// LiteLLM's long-context suffixes and the threshold each is (a lake prompt band).
const LONG: [(&str, i64); 3] = [
    ("_above_128k_tokens", 128_000),
    ("_above_200k_tokens", 200_000),
    ("_above_272k_tokens", 272_000),
];

/// What to keep from the LiteLLM map, and how to label the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The book's `version` label.
    pub version: String,
    /// The `effective_from` of every imported price (on a whole UTC hour).
    pub effective_from: DateTime<Utc>,
    /// The `litellm_provider` values kept.
    pub providers: Vec<String>,
    /// Keep keys containing `/` (region-pinned `bedrock/us-east-1/...` variants and
    /// `bedrock_mantle/...` ids), which are skipped by default.
    pub keep_region_pinned: bool,
}

impl ImportOptions {
    /// The defaults for an import made on `today`: version `today` (YYYY-MM-DD), prices
    /// effective from `today` at 00:00 UTC, providers `bedrock` and `bedrock_converse`,
    /// region-pinned keys skipped.
    ///
    /// Usage before `effective_from` is unpriced, so set it to the start of the first period
    /// the imported prices should bill.
    pub fn new(today: NaiveDate) -> ImportOptions {
        ImportOptions {
            version: today.format("%Y-%m-%d").to_string(),
            effective_from: today.and_time(chrono::NaiveTime::MIN).and_utc(),
            providers: vec!["bedrock".into(), "bedrock_converse".into()],
            keep_region_pinned: false,
        }
    }
}

/// Why a LiteLLM entry was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Its `litellm_provider` is not one of the kept providers (empty when absent).
    Provider(String),
    /// Its `mode` is not `chat`.
    Mode(String),
    /// Its key contains `/` (a region-pinned or provider-prefixed variant).
    RegionPinned,
    /// It has no input or output cost.
    MissingCost(&'static str),
    /// A cost cannot become a price of the book.
    BadCost {
        /// The LiteLLM field.
        field: String,
        /// Its JSON text.
        literal: String,
        /// Why.
        why: &'static str,
    },
    /// The key is not a valid model id.
    InvalidId(String),
    /// The entry is not a JSON object with string `litellm_provider` and `mode`.
    Malformed,
}

impl SkipReason {
    /// A short stable name of the reason, for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            SkipReason::Provider(_) => "other provider",
            SkipReason::Mode(_) => "not chat",
            SkipReason::RegionPinned => "region-pinned",
            SkipReason::MissingCost(_) => "missing cost",
            SkipReason::BadCost { .. } => "unusable cost",
            SkipReason::InvalidId(_) => "invalid model id",
            SkipReason::Malformed => "malformed",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Provider(p) => write!(f, "provider {p:?} is not imported"),
            SkipReason::Mode(m) => write!(f, "mode {m:?} is not chat"),
            SkipReason::RegionPinned => f.write_str("the key contains '/' (region-pinned)"),
            SkipReason::MissingCost(field) => write!(f, "no {field}"),
            SkipReason::BadCost { field, literal, why } => write!(f, "{field} {literal}: {why}"),
            SkipReason::InvalidId(e) => f.write_str(e),
            SkipReason::Malformed => f.write_str("not an object with string provider and mode"),
        }
    }
}

/// One entry not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The LiteLLM key.
    pub key: String,
    /// Why.
    pub reason: SkipReason,
}

/// What [`import_litellm`] kept and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Keys imported as models, in output (sorted) order.
    pub kept: Vec<String>,
    /// Keys not imported, sorted, with the reason.
    pub skipped: Vec<Skipped>,
    /// Cost fields present on kept entries that the book cannot express (batch, tiered,
    /// 1-hour cache write, reasoning, image, ...), with how many kept entries carry each.
    /// Usage those prices would apply to is billed at the imported prices.
    pub ignored_costs: BTreeMap<String, usize>,
}

impl ImportReport {
    /// Skipped entries counted by [`SkipReason::kind`].
    pub fn skipped_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for s in &self.skipped {
            *counts.entry(s.reason.kind()).or_insert(0) += 1;
        }
        counts
    }

    /// One line: kept and skipped counts, skips by reason.
    pub fn summary(&self) -> String {
        let mut s = format!("kept {}, skipped {}", self.kept.len(), self.skipped.len());
        let by_kind = self.skipped_by_kind();
        if !by_kind.is_empty() {
            let parts: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            let _ = write!(s, " ({})", parts.join(", "));
        }
        s
    }
}

/// One model as imported.
struct Imported {
    id: ModelId,
    /// Book field name and price per million, in [`COSTS`] order.
    prices: Vec<(&'static str, Decimal)>,
    /// The long-context threshold and prices, where LiteLLM gives input and output ones.
    long: Option<(i64, Vec<(&'static str, Decimal)>)>,
    /// The service tiers' tables (name, input and output prices), where it gives both.
    tiers: Vec<(&'static str, Vec<(&'static str, Decimal)>)>,
}

/// Converts LiteLLM's model price map into a price book's TOML text.
///
/// Keeps entries whose `litellm_provider` is in `opts.providers` and whose `mode` is `chat`
/// or absent, skipping keys with `/` unless `opts.keep_region_pinned`. Each kept key becomes
/// one `[[models]]` with a single price entry effective from `opts.effective_from`: input,
/// output, and where given cache read, cache write (5-minute) and 1-hour cache write prices,
/// per million tokens, exact; long-context prices (`*_above_128k_tokens`, `_200k`, `_272k`:
/// the first band with input and output prices) and the priority, flex and batch tiers'
/// input and output prices (`*_priority`, `*_flex`, `*_batches`) where both are given. The text opens with a comment saying the prices are LiteLLM's and must be checked
/// against the AWS price list before billing; it defines no plans. It always loads with
/// [`PriceBook::from_toml_str`].
///
/// # Errors
///
/// [`PriceBookError::LiteLlmJson`] if `json` is not a JSON object;
/// [`PriceBookError::ImportOption`] if `opts.version` is not a valid label or
/// `opts.effective_from` is not on a whole UTC hour.
pub fn import_litellm(
    json: &str,
    opts: &ImportOptions,
) -> Result<(String, ImportReport), PriceBookError> {
    if let Err(e) = check_version(&opts.version) {
        return Err(PriceBookError::ImportOption { option: "version", why: e.to_string() });
    }
    let t = opts.effective_from;
    if t.minute() != 0 || t.second() != 0 || t.nanosecond() != 0 {
        return Err(PriceBookError::ImportOption {
            option: "effective_from",
            why: format!("{} is not on a whole UTC hour", t.to_rfc3339()),
        });
    }
    let map: BTreeMap<String, &RawValue> =
        serde_json::from_str(json).map_err(PriceBookError::LiteLlmJson)?;

    let mut report = ImportReport::default();
    let mut models = Vec::new();
    for (key, value) in map {
        match entry(&key, value, opts, &mut report.ignored_costs) {
            Ok(m) => {
                report.kept.push(key);
                models.push(m);
            }
            Err(reason) => report.skipped.push(Skipped { key, reason }),
        }
    }
    let text = render(opts, &models, &report);
    // The output is ours; refuse to hand back a book that would not load.
    PriceBook::from_toml_str(&text).map_err(|e| PriceBookError::ImportOption {
        option: "(output)",
        why: format!("the generated book does not load: {e}"),
    })?;
    Ok((text, report))
}

/// Decides one LiteLLM entry.
fn entry(
    key: &str,
    value: &RawValue,
    opts: &ImportOptions,
    ignored: &mut BTreeMap<String, usize>,
) -> Result<Imported, SkipReason> {
    let fields: BTreeMap<String, &RawValue> =
        serde_json::from_str(value.get()).map_err(|_| SkipReason::Malformed)?;
    let string = |name: &str| -> Result<Option<String>, SkipReason> {
        match fields.get(name) {
            None => Ok(None),
            Some(v) if v.get() == "null" => Ok(None),
            Some(v) => serde_json::from_str(v.get()).map(Some).map_err(|_| SkipReason::Malformed),
        }
    };
    let provider = string("litellm_provider")?.unwrap_or_default();
    if !opts.providers.contains(&provider) {
        return Err(SkipReason::Provider(provider));
    }
    if let Some(mode) = string("mode")?
        && mode != "chat"
    {
        return Err(SkipReason::Mode(mode));
    }
    if key.contains('/') && !opts.keep_region_pinned {
        return Err(SkipReason::RegionPinned);
    }
    let id = ModelId::new(key).map_err(|e| SkipReason::InvalidId(e.to_string()))?;

    // The price of LiteLLM field `name`, per million, if given.
    let cost = |name: &str| -> Result<Option<Decimal>, SkipReason> {
        let Some(raw) = fields.get(name).filter(|v| v.get() != "null") else {
            return Ok(None);
        };
        let literal = raw.get();
        let bad =
            |why| SkipReason::BadCost { field: name.to_owned(), literal: literal.to_owned(), why };
        let p = per_million(literal).map_err(bad)?;
        if p < Decimal::ZERO {
            return Err(bad("is negative"));
        }
        if p.scale() > MAX_DP {
            return Err(bad("has more than 12 decimal places per million tokens"));
        }
        Ok(Some(p))
    };
    // The LiteLLM fields that became prices.
    let mut used: Vec<String> = Vec::new();
    let mut prices = Vec::with_capacity(COSTS.len());
    for (i, (field, book_field)) in COSTS.into_iter().enumerate() {
        match cost(field)? {
            Some(p) => {
                prices.push((book_field, p));
                used.push(field.to_owned());
            }
            None if i < 2 => return Err(SkipReason::MissingCost(field)),
            None => {}
        }
    }
    // Long-context prices: a table needs its input and output prices; the first band given
    // is the threshold.
    let mut long = None;
    for (suffix, threshold) in LONG {
        if long.is_some() {
            break;
        }
        let mut table = Vec::new();
        let mut names = Vec::new();
        for (field, book_field) in COSTS {
            let name = format!("{field}{suffix}");
            if let Some(p) = cost(&name)? {
                table.push((book_field, p));
                names.push(name);
            }
        }
        let has = |f: &str| table.iter().any(|(b, _)| *b == f);
        if has("input_per_million") && has("output_per_million") {
            used.extend(names);
            long = Some((threshold, table));
        }
    }
    let mut tiers = Vec::new();
    for (suffix, tier) in TIERS {
        let (i, o) =
            (format!("input_cost_per_token{suffix}"), format!("output_cost_per_token{suffix}"));
        if let (Some(input), Some(output)) = (cost(&i)?, cost(&o)?) {
            tiers.push((tier, vec![("input_per_million", input), ("output_per_million", output)]));
            used.extend([i, o]);
        }
    }
    for name in fields.keys() {
        if !used.contains(name) && name.contains("cost") {
            *ignored.entry(name.clone()).or_insert(0) += 1;
        }
    }
    Ok(Imported { id, prices, long, tiers })
}

/// A JSON number literal (USD per token) as a normalized exact price per million tokens.
///
/// The literal's digits become an integer mantissa and its fraction length and exponent a
/// decimal scale, less six for "per million": integer arithmetic only.
pub(super) fn per_million(literal: &str) -> Result<Decimal, &'static str> {
    const NOT_A_NUMBER: &str = "is not a JSON number";
    let (negative, rest) = match literal.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, literal),
    };
    let (mantissa_text, exp) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(NOT_A_NUMBER);
            }
            let e: i64 = e.parse().map_err(|_| NOT_A_NUMBER)?;
            (m, e)
        }
        None => (rest, 0),
    };
    let (int, frac) = mantissa_text.split_once('.').unwrap_or((mantissa_text, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !is_digits(int) || !is_digits(frac) || mantissa_text.ends_with('.') {
        return Err(NOT_A_NUMBER);
    }
    let all: String = [int, frac].concat();
    let significant = all.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let dropped = i64::try_from(significant.len() - trimmed.len()).map_err(|_| NOT_A_NUMBER)?;
    let frac_len = i64::try_from(frac.len()).map_err(|_| NOT_A_NUMBER)?;
    // value = trimmed × 10^(dropped - frac_len + exp) per token; per million: + 6.
    let scale = frac_len - exp - dropped - 6;
    const TOO_BIG: &str = "cannot be represented exactly as a decimal";
    let mut mantissa: i128 = trimmed.parse().map_err(|_| TOO_BIG)?;
    if negative {
        mantissa = -mantissa;
    }
    let scale = if scale < 0 {
        let pow = u32::try_from(-scale).map_err(|_| TOO_BIG)?;
        mantissa = 10i128.checked_pow(pow).and_then(|p| mantissa.checked_mul(p)).ok_or(TOO_BIG)?;
        0
    } else {
        u32::try_from(scale).map_err(|_| TOO_BIG)?
    };
    Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|_| TOO_BIG)
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The book's TOML text.
fn render(opts: &ImportOptions, models: &[Imported], report: &ImportReport) -> String {
    let mut s = String::new();
    let providers = opts.providers.join(", ");
    let from = show_instant(opts.effective_from);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "# Price book imported from LiteLLM's model price map (model_prices_and_context_window.json).\n\
         #\n\
         # CHECK BEFORE BILLING: these list prices are third-party figures copied from LiteLLM,\n\
         # not from AWS. Verify every price against the AWS price list\n\
         # (https://aws.amazon.com/bedrock/pricing/ or the AWS Price List API) before invoicing.\n\
         #\n\
         # Imported {kept} models (providers: {providers}; mode: chat), effective from {from}.\n\
         # Skipped {skipped} entries: {by_kind}.\n\
         # Imported with them: 1-hour cache writes, long-context prices (above 128k, 200k or\n\
         # 272k tokens) and the priority, flex and batch tiers' input and output prices.\n\
         # Not imported: price dimensions the book cannot express ({ignored} kinds on the\n\
         # kept entries; see the import report).\n\
         # Ids are billed exactly as listed: add aliases for the ids your agents log, and\n\
         # [plans.<tier>] tables, before invoicing.\n\n",
        kept = models.len(),
        skipped = report.skipped.len(),
        by_kind = skipped_text(report),
        ignored = report.ignored_costs.len(),
    );
    let _ = writeln!(s, "version = {}", quoted(&opts.version));
    let _ = writeln!(s, "currency = {}", quoted(CURRENCY));
    for m in models {
        let _ = write!(
            s,
            "\n[[models]]\nid = {}\n[[models.prices]]\neffective_from = {}\n",
            quoted(m.id.as_str()),
            quoted(&from)
        );
        for (field, price) in &m.prices {
            let _ = writeln!(s, "{field} = {}", quoted(&price.to_string()));
        }
        if let Some((threshold, table)) = &m.long {
            let _ = writeln!(s, "long_context_above = {threshold}\n[models.prices.long_context]");
            for (field, price) in table {
                let _ = writeln!(s, "{field} = {}", quoted(&price.to_string()));
            }
        }
        for (tier, table) in &m.tiers {
            let _ = writeln!(s, "[models.prices.{tier}]");
            for (field, price) in table {
                let _ = writeln!(s, "{field} = {}", quoted(&price.to_string()));
            }
        }
    }
    s
}

fn skipped_text(report: &ImportReport) -> String {
    let by_kind = report.skipped_by_kind();
    if by_kind.is_empty() {
        return "none".into();
    }
    by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}
