//! The invoice engine: usage × prices → lines; Cost Explorer amounts → allocations.
//!
//! Rounding happens at exactly two named points, both with
//! [`round_cents`] (half away from zero):
//! 1. each invoice line's amount (`quantity × unit price`, per million for tokens, per call
//!    for tool calls);
//! 2. each Cost Explorer amount (one day, one tag value) before it is split.
//!
//! Everything else is exact: totals are sums of rounded lines, allocations are whole cents
//! that add up to the rounded amount, weights are exact list-price costs.
//!
//! Tool calls are revenue lines only: the AWS cost being allocated is model inference, so
//! the allocation weights (and [`InvoiceRun::list_cost`]) count tokens alone.

use std::collections::{BTreeMap, BTreeSet};

use agentmeter_schemas::money::{MILLION, round_cents};
use agentmeter_schemas::tables::HOUR_MS;
use agentmeter_schemas::{TenantId, Tier, Tokens};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::model::{
    Allocation, Component, CostPool, Invoice, Line, LineClass, Period, Problem, Unallocated,
};
use super::usage::{Drivers, Series, SeriesKey};
use crate::allocate::allocate_cents;
use crate::costs::{CostGroup, CostReport};
use crate::prices::{TokenPrices, UnitPrices, UsageSource};

/// The model id of tool calls whose spans name no model (see `usage_hourly`): always a
/// problem, never priced.
pub const UNKNOWN_MODEL: &str = agentmeter_aggregate::UNKNOWN;

/// A stretch of time with one billed and one list price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceSpan {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// What the tenant pays (plan markup or rate card applied).
    pub billed: UnitPrices,
    /// The list price (allocation weights).
    pub list: UnitPrices,
    /// The price entry's own start, for display.
    pub effective_from: Option<DateTime<Utc>>,
    /// The price entry's own end, for display.
    pub effective_to: Option<DateTime<Utc>>,
}

/// The prices of a model over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spans {
    /// Priced stretches, in time order, not overlapping.
    pub priced: Vec<PriceSpan>,
    /// Stretches without a price, and why.
    pub uncovered: Vec<(DateTime<Utc>, DateTime<Utc>, String)>,
}

/// Plan terms of a tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanTerms {
    /// Monthly base fee.
    pub base_fee: Decimal,
    /// Usage (in money, at billed prices) included in the base fee.
    pub included_usage: Decimal,
    /// Which record of a model call the tier's tokens are billed from.
    pub usage_source: UsageSource,
}

/// What the engine needs from a price book.
pub trait Pricing {
    /// Version label of the prices.
    fn version(&self) -> String;
    /// Currency code.
    fn currency(&self) -> String;
    /// Tiers that have plans.
    fn tiers(&self) -> Vec<Tier>;
    /// The plan of a tier.
    fn plan(&self, tier: &Tier) -> Option<PlanTerms>;
    /// The display name of a model, when the prices give one.
    fn model_name(&self, _model_id: &str) -> Option<String> {
        None
    }
    /// Billed and list prices of `model_id` for `tier` over `[from, to)`.
    fn spans(&self, tier: &Tier, model_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Spans;
}

/// Everything an invoice run reads.
pub struct InvoiceInput<'a> {
    /// The billing period.
    pub period: Period,
    /// Prices and plans.
    pub pricing: &'a dyn Pricing,
    /// The period's usage.
    pub usage: &'a BTreeMap<SeriesKey, Series>,
    /// AWS costs of model inference, if given.
    pub costs: Option<&'a CostReport>,
    /// AWS costs of the AgentCore pools, split by their span drivers.
    pub pool_costs: &'a [(CostPool, CostReport)],
    /// The span drivers of the period (read only when there are pool costs).
    pub drivers: &'a Drivers,
    /// Billable tenants and their tiers; tenants listed without usage still get an invoice.
    pub roster: &'a BTreeMap<TenantId, Tier>,
}

/// Everything an invoice run produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRun {
    /// The period.
    pub period: Period,
    /// One invoice per tenant, in tenant order.
    pub invoices: Vec<Invoice>,
    /// Cost shares per day, tier and tenant.
    pub allocations: Vec<Allocation>,
    /// Cost no tenant carries.
    pub unallocated: Vec<Unallocated>,
    /// Days and tiers with usage but no cost from Cost Explorer.
    pub usage_without_cost: Vec<(NaiveDate, Tier)>,
    /// Cost Explorer amounts in the period, each rounded to the cent, summed.
    pub cost_total: Decimal,
    /// The same amounts, exact.
    pub cost_total_exact: Decimal,
    /// Observations for the summary.
    pub notes: Vec<String>,
    /// List-price value of the usage per day and tier, exact (what Cost Explorer should show
    /// for a tier billed at list price).
    pub list_cost: BTreeMap<(NaiveDate, Tier), Decimal>,
}

/// A failure of the engine itself (bad input is a [`Problem`], not an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvoiceError {
    /// An amount does not fit exact decimal arithmetic.
    #[error("amount overflow while pricing {0}")]
    Overflow(String),
    /// An allocation failed.
    #[error("allocating the cost of {date} ({tier}): {error}")]
    Allocation {
        /// Day.
        date: NaiveDate,
        /// Tier.
        tier: Tier,
        /// Cause.
        error: crate::allocate::AllocationError,
    },
    /// Costs in another currency than the prices: margins would mix currencies.
    #[error(
        "the costs are in {cost_currency} but the price book is in {book_currency}; \
         give costs in {book_currency} (no conversion is made)"
    )]
    Currency {
        /// The cost rows' unit.
        cost_currency: String,
        /// The price book's currency.
        book_currency: String,
    },
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn day_of(hour_ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(hour_ms).map_or(NaiveDate::MIN, |t| t.date_naive())
}

/// (day, tier) → tenant → (exact list cost, tokens): the allocation weights.
type Weights = BTreeMap<(NaiveDate, Tier), BTreeMap<TenantId, (Decimal, i64)>>;

/// What one usage line bills: the model and tier, the price entry, the class of call, the
/// component and its unit price. Ordered for display: by model, then price period.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LineKey {
    model_id: agentmeter_schemas::ModelId,
    tier: Tier,
    effective_from: Option<DateTime<Utc>>,
    class: LineClass,
    component: Component,
    price: Decimal,
    effective_to: Option<DateTime<Utc>>,
}

/// Per tenant: lines, problems, and the latest hour per tier.
#[derive(Default)]
struct TenantAcc {
    /// Usage quantities per line: summed over the series that price alike (prompt bands on
    /// the same side of a threshold) before the one rounding of each line.
    quantities: BTreeMap<LineKey, i64>,
    lines: Vec<Line>,
    problems: Vec<Problem>,
    latest: BTreeMap<Tier, i64>,
    /// Log lines billed as increments of a lifetime series.
    cumulative_lines: i64,
}

/// `quantity × price` (per million when `per_million`, else per unit), rounded to the cent.
fn amount(
    quantity: i64,
    price: Decimal,
    per_million: bool,
    what: &str,
) -> Result<Decimal, InvoiceError> {
    let overflow = || InvoiceError::Overflow(what.to_owned());
    let mut x = Decimal::from(quantity).checked_mul(price).ok_or_else(overflow)?;
    if per_million {
        x = x.checked_div(MILLION).ok_or_else(overflow)?;
    }
    Ok(round_cents(x))
}

/// The components of token usage, with their quantity and price. Cache writes are split by
/// lifetime: the 1-hour ones are a part of `cache_write`, priced apart.
fn components(t: &Tokens, p: &TokenPrices) -> [(Component, i64, Option<Decimal>); 5] {
    [
        (Component::InputTokens, t.input, Some(p.input_per_million)),
        (Component::OutputTokens, t.output, Some(p.output_per_million)),
        (Component::CacheReadTokens, t.cache_read, p.cache_read_per_million),
        (
            Component::CacheWriteTokens,
            t.cache_write.saturating_sub(t.cache_write_1h),
            p.cache_write_per_million,
        ),
        (Component::CacheWrite1hTokens, t.cache_write_1h, p.cache_write_1h_per_million),
    ]
}

/// Exact list-price cost of some tokens, or `None` if a component with tokens has no price.
/// Tool calls never count: the cost being allocated is model inference.
fn list_cost(t: &Tokens, p: &TokenPrices) -> Option<Decimal> {
    let mut sum = Decimal::ZERO;
    for (_, qty, price) in components(t, p) {
        if qty > 0 {
            sum = sum.checked_add(Decimal::from(qty).checked_mul(price?)?.checked_div(MILLION)?)?;
        }
    }
    Some(sum)
}

/// Billed tokens and tool calls of a series in `[from, to)`, or `None` on overflow.
fn sums(
    series: &Series,
    source: UsageSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<(i64, i64)> {
    series.range(ms(from)..ms(to)).try_fold((0i64, 0i64), |(t, c), (_, h)| {
        Some((t.checked_add(h.billed(source).tokens.total)?, c.checked_add(h.tool_calls)?))
    })
}

/// The calls of a series that reported no usage, and the first and last hour with one.
fn unknown_usage(series: &Series, source: UsageSource) -> Option<(i64, i64, i64)> {
    let mut hours = series.iter().filter(|(_, h)| h.billed(source).usage_unknown > 0);
    let (&first, _) = hours.next()?;
    let last = hours.next_back().map_or(first, |(&h, _)| h);
    let n = series.values().map(|h| h.billed(source).usage_unknown).sum();
    Some((n, first, last))
}

/// `problems` with those of the same tier, model and reason made one, summing what they leave
/// unbilled, in the order each first appears: a model's series of several price classes share
/// a missing model or plan.
fn merged(problems: Vec<Problem>) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::with_capacity(problems.len());
    for p in problems {
        match out
            .iter_mut()
            .find(|q| q.tier == p.tier && q.model_id == p.model_id && q.reason == p.reason)
        {
            Some(q) => {
                q.tokens = q.tokens.saturating_add(p.tokens);
                q.tool_calls = q.tool_calls.saturating_add(p.tool_calls);
                q.usage_unknown = q.usage_unknown.saturating_add(p.usage_unknown);
            }
            None => out.push(p),
        }
    }
    out
}

/// Computes the invoices and allocations of a period.
///
/// # Errors
///
/// Arithmetic overflow or a failed allocation; unbillable usage is reported as problems.
pub fn compute(input: &InvoiceInput<'_>) -> Result<InvoiceRun, InvoiceError> {
    let period = input.period;
    let book_currency = input.pricing.currency();
    let all_costs = input.costs.into_iter().chain(input.pool_costs.iter().map(|(_, c)| c));
    if let Some(row) = all_costs.flat_map(|c| &c.days).find(|d| d.unit != book_currency) {
        return Err(InvoiceError::Currency { cost_currency: row.unit.clone(), book_currency });
    }
    let mut tenants: BTreeMap<TenantId, TenantAcc> = BTreeMap::new();
    let mut weights: Weights = BTreeMap::new();
    let mut models_used: BTreeMap<
        (NaiveDate, Tier, TenantId),
        BTreeSet<agentmeter_schemas::ModelId>,
    > = BTreeMap::new();
    for (key, series) in input.usage {
        let acc = tenants.entry(key.tenant_id.clone()).or_default();
        if let Some(&last) = series.keys().next_back() {
            let slot = acc.latest.entry(key.tier.clone()).or_insert(last);
            *slot = (*slot).max(last);
        }
        let overflow = || InvoiceError::Overflow(key.model_id.to_string());
        let source = input.pricing.plan(&key.tier).map_or(UsageSource::Logs, |p| p.usage_source);
        if source == UsageSource::Logs {
            acc.cumulative_lines += series.values().map(|h| h.cumulative_lines).sum::<i64>();
        }
        let spans = if key.model_id.as_str() == UNKNOWN_MODEL {
            // Tool spans whose invocation names no model: nothing to price them by, whatever
            // the book says.
            Spans {
                priced: Vec::new(),
                uncovered: vec![(
                    period.start_time(),
                    period.end_time(),
                    format!("the spans name no model ({UNKNOWN_MODEL})"),
                )],
            }
        } else {
            input.pricing.spans(
                &key.tier,
                key.model_id.as_str(),
                period.start_time(),
                period.end_time(),
            )
        };
        let problem = |tokens: i64, tool_calls: i64, reason: String| Problem {
            tenant_id: key.tenant_id.clone(),
            tier: key.tier.clone(),
            model_id: Some(key.model_id.clone()),
            tokens,
            tool_calls,
            usage_unknown: 0,
            reason,
        };
        // A call without usage is not free: its price is unknown, so the invoice is not done.
        if let Some((n, first, last)) = unknown_usage(series, source) {
            let at = |h: i64| {
                DateTime::from_timestamp_millis(h).map_or_else(String::new, |t| t.to_rfc3339())
            };
            acc.problems.push(Problem {
                usage_unknown: n,
                ..problem(
                    0,
                    0,
                    format!(
                        "model calls reported no usage in the {} (usage unknown, not billed as \
                         free) in the hours from {} to {}",
                        match source {
                            UsageSource::Logs => "logs",
                            UsageSource::ChatSpans => "chat spans",
                        },
                        at(first),
                        at(last)
                    ),
                )
            });
        }
        for (from, to, why) in &spans.uncovered {
            let (tokens, tool_calls) = sums(series, source, *from, *to).ok_or_else(overflow)?;
            if tokens > 0 || tool_calls > 0 {
                let reason = format!("{why} from {} to {}", from.to_rfc3339(), to.to_rfc3339());
                acc.problems.push(problem(tokens, tool_calls, reason));
            }
        }
        // Quantities per billed price: spans cut only for a list-price change (which moves
        // allocation weights) bill on one line.
        for span in &spans.priced {
            // The prices of the series' class of call: its service tier and prompt band.
            let class = LineClass {
                service_tier: key.service_tier,
                long_context: span.billed.is_long_context(key.prompt_band),
            };
            let billed = match span.billed.for_class(key.service_tier, key.prompt_band) {
                Ok(p) => p,
                Err(why) => {
                    let (tokens, tool_calls) =
                        sums(series, source, span.from, span.to).ok_or_else(overflow)?;
                    if tokens > 0 || tool_calls > 0 {
                        let reason = format!(
                            "{why} from {} to {}",
                            span.from.to_rfc3339(),
                            span.to.to_rfc3339()
                        );
                        acc.problems.push(problem(tokens, tool_calls, reason));
                    }
                    continue;
                }
            };
            // Without a list price for the class the usage weighs nothing in the allocation
            // (the billed side is what the invoice reports).
            let list = span.list.for_class(key.service_tier, key.prompt_band).ok();
            let mut sum = Tokens::default();
            let mut tool_calls: i64 = 0;
            for (&hour, h) in series.range(ms(span.from)..ms(span.to)) {
                let b = h.billed(source);
                sum = sum.checked_add(&b.tokens).ok_or_else(overflow)?;
                tool_calls = tool_calls.checked_add(h.tool_calls).ok_or_else(overflow)?;
                debug_assert_eq!(hour % HOUR_MS, 0);
                // Weights are inference only: an hour with tool calls alone weighs nothing.
                if !b.has_inference() {
                    continue;
                }
                let day = day_of(hour);
                models_used
                    .entry((day, key.tier.clone(), key.tenant_id.clone()))
                    .or_default()
                    .insert(key.model_id.clone());
                let w = weights
                    .entry((day, key.tier.clone()))
                    .or_default()
                    .entry(key.tenant_id.clone())
                    .or_default();
                // A missing price is reported below as a problem of the billed line.
                if let Some(c) = list.as_ref().and_then(|l| list_cost(&b.tokens, l)) {
                    w.0 = w.0.checked_add(c).ok_or_else(overflow)?;
                }
                w.1 = w.1.saturating_add(b.tokens.total);
            }
            let calls = (Component::ToolCalls, tool_calls, span.billed.per_tool_call);
            for (component, qty, price) in components(&sum, &billed).into_iter().chain([calls]) {
                if qty == 0 {
                    continue;
                }
                let Some(price) = price else {
                    let (tokens, calls) =
                        if component == Component::ToolCalls { (0, qty) } else { (qty, 0) };
                    let reason = format!(
                        "no {} price{} from {} to {}",
                        component.code(),
                        class.describe().map(|c| format!(" for {c}")).unwrap_or_default(),
                        span.from.to_rfc3339(),
                        span.to.to_rfc3339()
                    );
                    acc.problems.push(problem(tokens, calls, reason));
                    continue;
                };
                let q = acc
                    .quantities
                    .entry(LineKey {
                        model_id: key.model_id.clone(),
                        tier: key.tier.clone(),
                        effective_from: span.effective_from,
                        class,
                        component,
                        price,
                        effective_to: span.effective_to,
                    })
                    .or_default();
                *q = q.checked_add(qty).ok_or_else(overflow)?;
            }
        }
    }
    for tenant in input.roster.keys() {
        tenants.entry(tenant.clone()).or_default();
    }

    let mut notes = Vec::new();
    let mut run = InvoiceRun {
        period,
        invoices: Vec::new(),
        allocations: Vec::new(),
        unallocated: Vec::new(),
        usage_without_cost: Vec::new(),
        cost_total: Decimal::ZERO,
        cost_total_exact: Decimal::ZERO,
        notes: Vec::new(),
        list_cost: weights
            .iter()
            .map(|(k, m)| (k.clone(), m.values().map(|(c, _)| *c).sum()))
            .collect(),
    };
    let mut known: BTreeSet<Tier> = input.pricing.tiers().into_iter().collect();
    known.extend(weights.keys().map(|(_, t)| t.clone()));
    if let Some(costs) = input.costs {
        let shares = shares(CostPool::Inference, &weights, input.drivers);
        let costed = allocate(&mut run, CostPool::Inference, costs, &shares, &known, &mut notes)?;
        // The models whose usage weighed each inference share (FOCUS SkuPriceDetails).
        for a in &mut run.allocations {
            if let Some(m) = models_used.get(&(a.date, a.tier.clone(), a.tenant_id.clone())) {
                a.models = m.iter().cloned().collect();
            }
        }
        run.usage_without_cost = weights.keys().filter(|k| !costed.contains(k)).cloned().collect();
    }
    for (pool, costs) in input.pool_costs {
        let shares = shares(*pool, &weights, input.drivers);
        allocate(&mut run, *pool, costs, &shares, &known, &mut notes)?;
    }
    let mut allocated: BTreeMap<TenantId, (Decimal, bool)> = BTreeMap::new();
    for a in &run.allocations {
        let slot = allocated.entry(a.tenant_id.clone()).or_default();
        slot.0 += a.amount;
        slot.1 |= a.provisional;
    }

    for (tenant, acc) in tenants {
        let usage_tier = acc
            .latest
            .iter()
            .max_by_key(|(tier, hour)| (**hour, (*tier).clone()))
            .map(|(t, _)| t.clone());
        let roster_tier = input.roster.get(&tenant).cloned();
        if let (Some(r), Some(u)) = (&roster_tier, &usage_tier)
            && r != u
        {
            notes.push(format!("tenant {tenant}: roster tier {r}, latest usage under tier {u}; the roster tier's plan fee applies"));
        }
        if acc.cumulative_lines > 0 {
            notes.push(format!(
                "tenant {tenant}: {} usage log lines repeated their session's earlier calls \
                 (an Agent object logging its lifetime usage) and were billed as their \
                 increments",
                acc.cumulative_lines
            ));
        }
        if !input.roster.is_empty() && roster_tier.is_none() {
            notes.push(format!("tenant {tenant} has usage but is not in the roster"));
        }
        let Some(tier) = roster_tier.or(usage_tier) else { continue };
        let mut lines = acc.lines;
        for (k, qty) in acc.quantities {
            lines.push(Line {
                component: k.component,
                model_id: Some(k.model_id.clone()),
                model_name: input.pricing.model_name(k.model_id.as_str()),
                tier: k.tier,
                quantity: qty,
                unit: k.component.unit(),
                unit_price: k.price,
                amount: amount(qty, k.price, k.component.per_million(), k.model_id.as_str())?,
                adjusts_period: None,
                price_effective_from: k.effective_from,
                price_effective_to: k.effective_to,
                class: Some(k.class),
            });
        }
        let mut problems = merged(acc.problems);
        lines.sort_by(|a, b| {
            (a.model_id.as_ref().map(|m| m.as_str()), a.price_effective_from, a.class, a.component)
                .cmp(&(
                    b.model_id.as_ref().map(|m| m.as_str()),
                    b.price_effective_from,
                    b.class,
                    b.component,
                ))
        });
        match input.pricing.plan(&tier) {
            Some(plan) => {
                let usage: Decimal = lines.iter().map(|l| l.amount).sum();
                let fee = round_cents(plan.base_fee);
                lines.insert(
                    0,
                    Line {
                        component: Component::PlanFee,
                        model_id: None,
                        model_name: None,
                        tier: tier.clone(),
                        quantity: 1,
                        unit: Component::PlanFee.unit(),
                        unit_price: plan.base_fee,
                        amount: fee,
                        adjusts_period: None,
                        price_effective_from: None,
                        price_effective_to: None,
                        class: None,
                    },
                );
                let included = round_cents(plan.included_usage);
                let credit = usage.min(included);
                if credit > Decimal::ZERO {
                    lines.push(Line {
                        component: Component::IncludedUsage,
                        model_id: None,
                        model_name: None,
                        tier: tier.clone(),
                        quantity: 1,
                        unit: Component::IncludedUsage.unit(),
                        unit_price: -credit,
                        amount: -credit,
                        adjusts_period: None,
                        price_effective_from: None,
                        price_effective_to: None,
                        class: None,
                    });
                }
            }
            None => problems.push(Problem {
                tenant_id: tenant.clone(),
                tier: tier.clone(),
                model_id: None,
                tokens: 0,
                tool_calls: 0,
                usage_unknown: 0,
                reason: format!("tier {tier} has no plan in the price book"),
            }),
        }
        let total: Decimal = lines.iter().map(|l| l.amount).sum();
        let (allocated_cost, provisional) =
            allocated.remove(&tenant).unwrap_or((Decimal::ZERO, false));
        let allocated_cost = round_cents(allocated_cost);
        let usage_source = input.pricing.plan(&tier).map_or(UsageSource::Logs, |p| p.usage_source);
        let number = super::ledger::invoice_number(&period, &tenant, 1);
        let (currency, version) = (input.pricing.currency(), input.pricing.version());
        run.invoices.push(Invoice {
            invoice_number: number,
            usage_source,
            margin: total - allocated_cost,
            total,
            allocated_cost,
            provisional,
            complete: problems.is_empty(),
            lines,
            problems,
            ..Invoice::empty(tenant, tier, &period, &currency, &version)
        });
    }
    notes.sort();
    notes.dedup();
    run.notes = notes;
    Ok(run)
}

/// One tenant's weight in a pool's split of one day's cost of its tier.
#[derive(Debug, Clone, Copy)]
struct Share {
    weight: Decimal,
    list_cost: Decimal,
    tokens: i64,
    driver: i64,
}

/// (day, tier) → tenant → share.
type Shares = BTreeMap<(NaiveDate, Tier), BTreeMap<TenantId, Share>>;

/// The shares of a pool: list-price usage for inference, the span drivers for AgentCore.
fn shares(pool: CostPool, weights: &Weights, drivers: &Drivers) -> Shares {
    match pool {
        CostPool::Inference => weights
            .iter()
            .map(|(k, m)| {
                let m = m.iter().map(|(t, &(list_cost, tokens))| {
                    (t.clone(), Share { weight: list_cost, list_cost, tokens, driver: tokens })
                });
                (k.clone(), m.collect())
            })
            .collect(),
        CostPool::AgentRuntime | CostPool::AgentGateway => drivers
            .iter()
            .map(|(k, m)| {
                let m = m.iter().map(|(t, d)| {
                    let driver = if pool == CostPool::AgentRuntime {
                        d.agent_duration_ms
                    } else {
                        d.tool_calls
                    };
                    let share = Share {
                        weight: Decimal::from(driver),
                        list_cost: Decimal::ZERO,
                        tokens: 0,
                        driver,
                    };
                    (t.clone(), share)
                });
                (k.clone(), m.collect())
            })
            .collect(),
    }
}

/// Splits every amount of a pool's costs across the tenants of its tier, by the pool's
/// driver; returns the (day, tier) pairs that had a cost.
fn allocate(
    run: &mut InvoiceRun,
    pool: CostPool,
    costs: &CostReport,
    shares: &Shares,
    known: &BTreeSet<Tier>,
    notes: &mut Vec<String>,
) -> Result<BTreeSet<(NaiveDate, Tier)>, InvoiceError> {
    let mut costed: BTreeSet<(NaiveDate, Tier)> = BTreeSet::new();
    for c in &costs.days {
        if c.date < run.period.start || c.date >= run.period.end {
            notes.push(format!(
                "{} cost of {} is outside the period and was ignored",
                pool.service(),
                c.date
            ));
            continue;
        }
        let amount = round_cents(c.amount);
        run.cost_total += amount;
        run.cost_total_exact += c.amount;
        let (tag_value, tier) = match &c.group {
            CostGroup::Untagged => (String::new(), None),
            // Tag values are written by people ("Premium"); tiers by code ("premium").
            CostGroup::Tagged(v) => {
                (v.clone(), known.iter().find(|t| t.as_str().eq_ignore_ascii_case(v)).cloned())
            }
        };
        let unallocated = |reason: String, tier: Option<Tier>| Unallocated {
            pool,
            date: c.date,
            tier,
            tag_value: tag_value.clone(),
            amount,
            reason,
            provisional: c.estimated,
        };
        let Some(tier) = tier else {
            let reason = if tag_value.is_empty() {
                "untagged cost".to_owned()
            } else {
                format!("tag value {tag_value:?} matches no tier")
            };
            run.unallocated.push(unallocated(reason, None));
            continue;
        };
        costed.insert((c.date, tier.clone()));
        let day: Vec<(&TenantId, &Share)> = shares
            .get(&(c.date, tier.clone()))
            .map(|m| m.iter().filter(|(_, s)| s.weight > Decimal::ZERO).collect())
            .unwrap_or_default();
        if day.is_empty() {
            let reason = match pool {
                CostPool::Inference => format!("no priced usage of tier {tier} that day"),
                _ => format!("no {} of tier {tier} that day (no spans)", pool.driver()),
            };
            run.unallocated.push(unallocated(reason, Some(tier)));
            continue;
        }
        let w: Vec<Decimal> = day.iter().map(|(_, s)| s.weight).collect();
        let parts = allocate_cents(amount, &w).map_err(|error| InvoiceError::Allocation {
            date: c.date,
            tier: tier.clone(),
            error,
        })?;
        for ((tenant, s), part) in day.into_iter().zip(parts) {
            run.allocations.push(Allocation {
                pool,
                date: c.date,
                tier: tier.clone(),
                tenant_id: tenant.clone(),
                amount: part,
                list_cost: s.list_cost,
                tokens: s.tokens,
                driver: s.driver,
                provisional: c.estimated,
                models: Vec::new(),
            });
        }
    }
    Ok(costed)
}
