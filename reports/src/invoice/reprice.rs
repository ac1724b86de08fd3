//! Pricing a period again from what the lake holds: a closed period with the inputs recorded
//! at its close (late usage), and an open period to date for one tenant (the usage API's
//! invoice preview). The `invoice` command and the API share these, so a preview over HTTP is
//! the same document as `invoice --preview` writes.

use std::collections::BTreeMap;

use agentmeter_aggregate::Lake;
use agentmeter_schemas::{TenantId, Tier};
use chrono::NaiveDate;

use super::ledger::{self, Counts, Late, PeriodRecord};
use super::roster::{self, Roster};
use super::{Invoice, InvoiceInput, InvoiceRun, Period, compute, usage};
use crate::prices::{InferenceProfiles, PriceBook, UsageSource};

/// Why a period could not be priced again: what was being read, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct RepriceError {
    /// What was being read or computed.
    pub what: String,
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

fn err<E: std::error::Error + Send + Sync + 'static>(what: &str) -> impl FnOnce(E) -> RepriceError {
    let what = what.to_owned();
    move |e| RepriceError { what, source: Box::new(e) }
}

fn text_err(what: &str, why: String) -> RepriceError {
    RepriceError { what: what.to_owned(), source: why.into() }
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, RepriceError> {
    String::from_utf8(bytes).map_err(err(what))
}

/// The price book (with its inference profiles) and the roster recorded when `rec` closed.
///
/// # Errors
///
/// A recorded input cannot be read or no longer parses.
pub fn stored_book(
    lake: &Lake,
    rec: &PeriodRecord,
) -> Result<(PriceBook, BTreeMap<TenantId, Tier>), RepriceError> {
    let store = lake.store().as_ref();
    let blob = |d: &str, what: &str| {
        ledger::get_blob(store, d).map_err(err(what)).and_then(|b| utf8(b, what))
    };
    let text = blob(&rec.inputs.price_book, "the recorded price book")?;
    let mut book = PriceBook::from_toml_str(&text).map_err(err("the recorded price book"))?;
    if let Some(d) = &rec.inputs.profiles {
        let text = blob(d, "the recorded inference profiles")?;
        book = book.with_inference_profiles(
            InferenceProfiles::from_json_str(&text)
                .map_err(err("the recorded inference profiles"))?,
        );
    }
    let roster = match &rec.inputs.roster {
        Some(d) => roster::parse(&blob(d, "the recorded roster")?)
            .map_err(|why| text_err("the recorded roster", why))?,
        None => BTreeMap::new(),
    };
    Ok((book, roster))
}

/// Prices a closed period again with the inputs of its close and the lake's usage now: the
/// run (no costs) and the usage counted.
///
/// # Errors
///
/// The recorded inputs or the lake cannot be read, or pricing fails.
pub fn reprice(
    lake: &Lake,
    rec: &PeriodRecord,
) -> Result<(InvoiceRun, BTreeMap<TenantId, Counts>), RepriceError> {
    let period = Period::parse(&rec.period).map_err(|why| text_err("a period record", why))?;
    let (book, roster) = stored_book(lake, rec)?;
    lake.ensure_rollups(period.start, period.end).map_err(err("rolling up usage"))?;
    let usage = usage::load(lake, &period).map_err(err("reading usage_hourly"))?;
    let drivers = usage::Drivers::new();
    let input = InvoiceInput {
        period,
        pricing: &book,
        usage: &usage,
        costs: None,
        pool_costs: &[],
        drivers: &drivers,
        roster: &roster,
    };
    let run = compute(&input).map_err(err(&format!("pricing {} again", rec.period)))?;
    let counts =
        ledger::counts(&usage, |t| book.plan(t).map_or(UsageSource::Logs, |p| p.usage_source));
    Ok((run, counts))
}

/// The late usage of every closed period before `period` whose late usage `period` bills.
///
/// # Errors
///
/// As [`reprice`].
pub fn late_usage(
    lake: &Lake,
    period: &Period,
    records: &BTreeMap<NaiveDate, (PeriodRecord, String)>,
) -> Result<Vec<Late>, RepriceError> {
    let mut out = Vec::new();
    for (start, (rec, _)) in records.range(..period.start) {
        if !rec.is_closed() || ledger::billing_period_of_late_usage(*start, records) != period.start
        {
            continue;
        }
        let (run, counts) = reprice(lake, rec)?;
        let late = ledger::late(rec, &run, &counts, records);
        if !late.is_empty() {
            out.push(late);
        }
    }
    Ok(out)
}

/// One tenant's invoice for `period` as it stands: priced to date like `invoice --preview`
/// (the period's usage, late usage it bills, the roster's bill-to), no costs. `Ok(None)`: the
/// tenant has no usage and is not on the roster. A closed period answers its issued
/// document as priced again from the recorded inputs (status issued, the number recorded).
///
/// # Errors
///
/// The lake or the ledger cannot be read, or pricing fails.
pub fn tenant_invoice(
    lake: &Lake,
    book: &PriceBook,
    roster: &Roster,
    tenant: &TenantId,
    period: Period,
) -> Result<Option<Invoice>, RepriceError> {
    let records =
        ledger::load_all(lake.store().as_ref()).map_err(err("reading the billing ledger"))?;
    if let Some((rec, _)) = records.get(&period.start).filter(|(r, _)| r.is_closed()) {
        let (run, _) = reprice(lake, rec)?;
        let issued = rec
            .documents
            .iter()
            .rev()
            .find(|d| &d.tenant_id == tenant && d.kind == super::DocumentKind::Invoice);
        return Ok(run.invoices.into_iter().find(|i| &i.tenant_id == tenant).map(|mut inv| {
            if let Some(d) = issued {
                inv.invoice_number = d.number.clone();
                inv.status = super::DocumentStatus::Issued;
            }
            inv
        }));
    }
    lake.ensure_rollups(period.start, period.end).map_err(err("rolling up usage"))?;
    let mut usage = usage::load(lake, &period).map_err(err("reading usage_hourly"))?;
    usage.retain(|k, _| &k.tenant_id == tenant);
    let tiers: BTreeMap<TenantId, Tier> = roster
        .tiers
        .iter()
        .filter(|(t, _)| *t == tenant)
        .map(|(t, x)| (t.clone(), x.clone()))
        .collect();
    let drivers = usage::Drivers::new();
    let input = InvoiceInput {
        period,
        pricing: book,
        usage: &usage,
        costs: None,
        pool_costs: &[],
        drivers: &drivers,
        roster: &tiers,
    };
    let mut run = compute(&input).map_err(err(&format!("pricing {}", period.label())))?;
    let late = late_usage(lake, &period, &records)?;
    ledger::add_adjustments(&mut run, &late, book.currency(), &book.version());
    ledger::preview(&mut run);
    Ok(run.invoices.into_iter().find(|i| &i.tenant_id == tenant).map(|mut inv| {
        inv.issuer = roster.issuer.clone();
        inv.bill_to = roster.bill_to.get(tenant).cloned();
        inv
    }))
}

/// The usage charges of every tenant in the period so far at each of `instants` (the period
/// holding `instant - 1 ms`): the usage `invoice --preview` would price before that instant,
/// at the plan's prices, without the plan fee and the included-usage credit. Usage without a
/// price adds nothing (the invoice reports it as a problem).
///
/// # Errors
///
/// The lake cannot be read, or pricing fails.
pub fn charges_to_date(
    lake: &Lake,
    book: &PriceBook,
    instants: &[chrono::DateTime<chrono::Utc>],
) -> Result<crate::flags::usage_rules::ChargeTable, RepriceError> {
    use super::Component;
    let mut table = crate::flags::usage_rules::ChargeTable::default();
    let mut loaded: BTreeMap<NaiveDate, BTreeMap<usage::SeriesKey, usage::Series>> =
        BTreeMap::new();
    let drivers = usage::Drivers::new();
    let roster = BTreeMap::new();
    for &at in instants {
        let period = crate::flags::usage_rules::period_at(at);
        let month = match loaded.entry(period.start) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                lake.ensure_rollups(period.start, period.end).map_err(err("rolling up usage"))?;
                e.insert(usage::load(lake, &period).map_err(err("reading usage_hourly"))?)
            }
        };
        let cut = at.timestamp_millis();
        let mut before: BTreeMap<usage::SeriesKey, usage::Series> = BTreeMap::new();
        for (k, series) in month.iter() {
            let s: usage::Series = series.range(..cut).map(|(h, u)| (*h, *u)).collect();
            if !s.is_empty() {
                before.insert(k.clone(), s);
            }
        }
        let input = InvoiceInput {
            period,
            pricing: book,
            usage: &before,
            costs: None,
            pool_costs: &[],
            drivers: &drivers,
            roster: &roster,
        };
        let run = compute(&input).map_err(err(&format!("pricing {} to {at}", period.label())))?;
        let at_map = table.0.entry(at).or_default();
        for inv in run.invoices {
            let charged: rust_decimal::Decimal = inv
                .lines
                .iter()
                .filter(|l| !matches!(l.component, Component::PlanFee | Component::IncludedUsage))
                .map(|l| l.amount)
                .sum();
            at_map.insert(inv.tenant_id, charged);
        }
    }
    Ok(table)
}
