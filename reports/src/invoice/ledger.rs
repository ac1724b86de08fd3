//! Closed billing periods: what was issued, kept in the lake, so that a closed period is never
//! re-priced, late usage is billed once in a later period, and numbers are never reused.
//!
//! ```text
//! _state/billing/periods/YYYY-MM.json   the period's record: status, every document issued,
//!                                       the outputs to reproduce, the inputs that priced it
//! _state/billing/blobs/<32 hex>         document bytes and priced inputs, by content
//! ```
//!
//! Blobs are put if absent before the record that names them; the record is created only if
//! absent and replaced only from the version read, so two runs closing one period at once
//! cannot both issue: the loser is told the period closed meanwhile.
//!
//! Late usage of a closed period P is what re-pricing P now (with the price book, profiles
//! and roster stored at its close, and today's usage of the lake) gives beyond what was billed
//! for P so far: the lines of P's valid invoices plus the adjustment lines for P of the valid
//! invoices of later closed periods. It is billed in the first period after P that is not
//! closed, as adjustment lines: each component's difference, at P's prices, with
//! `adjusts_period`. Amounts are differences of rounded amounts, so the cents billed for P
//! over all periods are exactly those of one invoice of all its usage.

use std::collections::BTreeMap;

use agentmeter_aggregate::layout;
use agentmeter_aggregate::store::{Condition, Put, Store};
use agentmeter_schemas::{ModelId, ServiceTier, TenantId, Tier};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::compute::InvoiceRun;
use super::model::{
    Component, DocumentKind, DocumentStatus, Invoice, Line, LineClass, Period, PeriodStatus,
    Problem,
};
use super::usage::{Series, SeriesKey};
use crate::prices::UsageSource;

/// A failure to read or record the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The lake could not be read or written.
    #[error(transparent)]
    Lake(#[from] agentmeter_aggregate::Error),
    /// A record or blob is not what this version wrote.
    #[error("{uri}: {why}")]
    Corrupt {
        /// The object.
        uri: String,
        /// What is wrong.
        why: String,
    },
    /// Another run changed the period's record first.
    #[error("another run changed the record of {period} meanwhile; run the command again")]
    Conflict {
        /// `YYYY-MM`.
        period: String,
    },
}

/// A document's standing in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStatus {
    /// Issued and in force.
    Issued,
    /// Cancelled by a credit note (`credited_by`).
    Credited,
}

impl LedgerStatus {
    /// The snake_case name used in `ledger.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerStatus::Issued => "issued",
            LedgerStatus::Credited => "credited",
        }
    }
}

/// One line of an issued document, as the ledger keeps it to diff against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRecord {
    /// Component code.
    pub component: Component,
    /// Model of a usage line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<ModelId>,
    /// Tier whose plan priced it.
    pub tier: Tier,
    /// The price class.
    #[serde(default)]
    pub service_tier: ServiceTier,
    /// Long-context prices.
    #[serde(default)]
    pub long_context: bool,
    /// The price entry's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_from: Option<DateTime<Utc>>,
    /// Unit price.
    pub unit_price: Decimal,
    /// Quantity.
    pub quantity: i64,
    /// Amount.
    pub amount: Decimal,
    /// The period whose late usage the line billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjusts_period: Option<String>,
}

impl LineRecord {
    fn of(l: &Line) -> Self {
        let class = l.class.unwrap_or_default();
        Self {
            component: l.component,
            model_id: l.model_id.clone(),
            tier: l.tier.clone(),
            service_tier: class.service_tier,
            long_context: class.long_context,
            effective_from: l.price_effective_from,
            unit_price: l.unit_price,
            quantity: l.quantity,
            amount: l.amount,
            adjusts_period: l.adjusts_period.clone(),
        }
    }

    fn key(&self) -> DiffKey {
        // A fee or credit line's "price" is its amount: one line per invoice, whatever it is.
        let price = match self.component {
            Component::PlanFee | Component::IncludedUsage => Decimal::ZERO,
            _ => self.unit_price,
        };
        (
            self.component,
            self.model_id.clone(),
            self.tier.clone(),
            self.service_tier,
            self.long_context,
            self.effective_from,
            price,
        )
    }
}

/// What makes two lines bill the same thing at the same price.
type DiffKey =
    (Component, Option<ModelId>, Tier, ServiceTier, bool, Option<DateTime<Utc>>, Decimal);

/// One issued document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRecord {
    /// Its number (never reused).
    pub number: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// Invoice or credit note.
    pub kind: DocumentKind,
    /// In force, or credited.
    pub status: LedgerStatus,
    /// The document it credits or replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
    /// The credit note that cancelled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credited_by: Option<String>,
    /// Date of issue.
    pub issue_date: NaiveDate,
    /// Total.
    pub total: Decimal,
    /// Currency.
    pub currency: String,
    /// The tier of the invoice.
    pub tier: Tier,
    /// BLAKE3 (32 hex) of the document's JSON as issued.
    pub digest: String,
    /// The same of its HTML page.
    pub html_digest: String,
    /// Its lines.
    pub lines: Vec<LineRecord>,
}

/// Usage counted in a period, per tenant: what late usage is measured against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Model calls (of the record each tier's plan bills).
    pub calls: i64,
    /// Tool calls.
    pub tool_calls: i64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.calls = self.calls.saturating_add(o.calls);
        self.tool_calls = self.tool_calls.saturating_add(o.tool_calls);
    }

    fn minus(self, o: Counts) -> Counts {
        Counts {
            calls: self.calls.saturating_sub(o.calls),
            tool_calls: self.tool_calls.saturating_sub(o.tool_calls),
        }
    }

    /// True when nothing is counted.
    pub fn is_zero(&self) -> bool {
        self.calls == 0 && self.tool_calls == 0
    }
}

/// The late usage of an earlier period that a period's invoices billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentRecord {
    /// The period adjusted.
    pub period: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// Late usage billed.
    pub counts: Counts,
}

/// The priced inputs of a close, by blob digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// The price book's TOML.
    pub price_book: String,
    /// Its version label.
    pub price_book_version: String,
    /// The inference profiles' JSON, when the run had some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<String>,
    /// The roster's TOML, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roster: Option<String>,
}

/// A billing period's record in the lake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodRecord {
    /// `YYYY-MM`.
    pub period: String,
    /// Open (reopened) or closed.
    pub status: PeriodStatus,
    /// First close.
    pub created: DateTime<Utc>,
    /// Last close or reopening.
    pub last_updated: DateTime<Utc>,
    /// How many times the period was closed.
    pub closes: u32,
    /// The issuer's name at the last close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Currency.
    pub currency: String,
    /// What priced the last close.
    pub inputs: Inputs,
    /// Every document issued for the period, in issue order.
    pub documents: Vec<DocumentRecord>,
    /// The files the last close wrote, by path under the period's directory → blob digest:
    /// written again, byte for byte, whenever the period is invoiced while closed.
    pub outputs: BTreeMap<String, String>,
    /// Usage counted at the last close, per tenant.
    pub billed: BTreeMap<TenantId, Counts>,
    /// Late usage of earlier periods billed by this period's invoices.
    #[serde(default)]
    pub adjustments: Vec<AdjustmentRecord>,
}

impl PeriodRecord {
    /// True when closed.
    pub fn is_closed(&self) -> bool {
        self.status == PeriodStatus::Closed
    }

    /// The invoices in force (not credited), by tenant.
    pub fn in_force(&self) -> impl Iterator<Item = &DocumentRecord> {
        self.documents
            .iter()
            .filter(|d| d.kind == DocumentKind::Invoice && d.status == LedgerStatus::Issued)
    }

    /// The next revision of a tenant's invoice: 1 for the first, then one more than every
    /// invoice and credit note issued to it for the period.
    fn next_revision(&self, tenant: &TenantId, kind: DocumentKind) -> usize {
        self.documents.iter().filter(|d| &d.tenant_id == tenant && d.kind == kind).count() + 1
    }
}

/// The number of a tenant's invoice of `period`, revision `n` (1 for the first):
/// `AM-YYYYMM-<tenant>`, then `AM-YYYYMM-<tenant>/<n>`. A `/` never occurs in a tenant id, so
/// no two tenants' numbers meet.
pub fn invoice_number(period: &Period, tenant: &TenantId, n: usize) -> String {
    let base = format!("AM-{}-{tenant}", period.start.format("%Y%m"));
    if n <= 1 { base } else { format!("{base}/{n}") }
}

/// The number of a tenant's credit note `n` for `period`: `CN-YYYYMM-<tenant>/<n>`.
pub fn credit_note_number(period: &Period, tenant: &TenantId, n: usize) -> String {
    format!("CN-{}-{tenant}/{n}", period.start.format("%Y%m"))
}

/// BLAKE3 of bytes, 32 hex digits: the name of a blob.
pub fn digest(bytes: &[u8]) -> String {
    let hex = blake3::hash(bytes).to_hex();
    hex.as_str()[..32].to_owned()
}

/// Puts `bytes` as a blob (if absent) and returns its digest.
///
/// # Errors
///
/// The put fails.
pub fn put_blob(store: &dyn Store, bytes: &[u8]) -> Result<String, LedgerError> {
    let d = digest(bytes);
    let key = layout::billing_blob(&d);
    // Content-addressed: an existing blob of that name holds the same bytes.
    store.put(&key, bytes.to_vec().into(), Condition::Absent)?;
    Ok(d)
}

/// A blob's bytes, checked against its digest.
///
/// # Errors
///
/// Missing, unreadable or not matching its digest.
pub fn get_blob(store: &dyn Store, d: &str) -> Result<Vec<u8>, LedgerError> {
    // A digest comes from a record a user could edit: never let it reach a key unchecked.
    if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LedgerError::Corrupt {
            uri: store.uri_of(layout::BILLING_PERIODS),
            why: format!("{d:?} is not a blob digest"),
        });
    }
    let key = layout::billing_blob(d);
    let corrupt = |why: &str| LedgerError::Corrupt { uri: store.uri_of(&key), why: why.into() };
    let o = store.get(&key)?.ok_or_else(|| corrupt("missing"))?;
    if digest(&o.bytes) != d {
        return Err(corrupt("its bytes do not match its name"));
    }
    Ok(o.bytes.to_vec())
}

/// Every period record of the lake, by period start, with the version read.
///
/// # Errors
///
/// The listing or a read fails, or a record does not parse.
pub fn load_all(
    store: &dyn Store,
) -> Result<BTreeMap<NaiveDate, (PeriodRecord, String)>, LedgerError> {
    let mut out = BTreeMap::new();
    for meta in store.list(layout::BILLING_PERIODS)? {
        let Some(start) = layout::parse_billing_period(&meta.key) else { continue };
        if let Some(r) = load(store, start)? {
            out.insert(start, r);
        }
    }
    Ok(out)
}

/// A period's record and the version read, if it was ever closed.
///
/// # Errors
///
/// The read fails or the record does not parse.
pub fn load(
    store: &dyn Store,
    start: NaiveDate,
) -> Result<Option<(PeriodRecord, String)>, LedgerError> {
    let key = layout::billing_period(start);
    let Some(o) = store.get(&key)? else { return Ok(None) };
    let r: PeriodRecord = serde_json::from_slice(&o.bytes)
        .map_err(|e| LedgerError::Corrupt { uri: store.uri_of(&key), why: e.to_string() })?;
    Ok(Some((r, o.etag)))
}

/// Saves a record, only over the version read (`None`: only if there is none).
///
/// # Errors
///
/// [`LedgerError::Conflict`] when another run changed it first; a failed put.
pub fn save(
    store: &dyn Store,
    record: &PeriodRecord,
    read: Option<&str>,
) -> Result<(), LedgerError> {
    let start = Period::parse(&record.period)
        .map_err(|why| LedgerError::Corrupt { uri: record.period.clone(), why })?
        .start;
    let mut bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| LedgerError::Corrupt { uri: record.period.clone(), why: e.to_string() })?;
    bytes.push(b'\n');
    match store.put(&layout::billing_period(start), bytes.into(), Condition::replacing(read))? {
        Put::Written { .. } => Ok(()),
        Put::Conflict => Err(LedgerError::Conflict { period: record.period.clone() }),
    }
}

/// Usage per tenant of a period's series: the calls each tier's plan bills (`source`) and
/// tool calls.
pub fn counts(
    usage: &BTreeMap<SeriesKey, Series>,
    source: impl Fn(&Tier) -> UsageSource,
) -> BTreeMap<TenantId, Counts> {
    let mut out: BTreeMap<TenantId, Counts> = BTreeMap::new();
    for (k, series) in usage {
        let s = source(&k.tier);
        let c = out.entry(k.tenant_id.clone()).or_default();
        for h in series.values() {
            c.add(Counts { calls: h.billed(s).calls, tool_calls: h.tool_calls });
        }
    }
    out
}

/// The first period after `closed` that is not closed: where its late usage is billed.
pub fn billing_period_of_late_usage(
    closed: NaiveDate,
    records: &BTreeMap<NaiveDate, (PeriodRecord, String)>,
) -> NaiveDate {
    let mut p = Period::containing(closed).end;
    while records.get(&p).is_some_and(|(r, _)| r.is_closed()) {
        p = Period::containing(p).end;
    }
    p
}

/// What was billed for `period` so far: its invoices in force, and the adjustment lines for it
/// of later periods' invoices in force; and the late usage those adjustments counted.
pub fn billed_so_far(
    period: &PeriodRecord,
    records: &BTreeMap<NaiveDate, (PeriodRecord, String)>,
) -> (BTreeMap<TenantId, Vec<LineRecord>>, BTreeMap<TenantId, Counts>) {
    let mut lines: BTreeMap<TenantId, Vec<LineRecord>> = BTreeMap::new();
    let mut counts = period.billed.clone();
    for d in period.in_force() {
        lines
            .entry(d.tenant_id.clone())
            .or_default()
            .extend(d.lines.iter().filter(|l| l.adjusts_period.is_none()).cloned());
    }
    for (r, _) in records.values().filter(|(r, _)| r.period > period.period) {
        for d in r.in_force() {
            let adj =
                d.lines.iter().filter(|l| l.adjusts_period.as_deref() == Some(&period.period));
            lines.entry(d.tenant_id.clone()).or_default().extend(adj.cloned());
        }
        if r.is_closed() {
            for a in r.adjustments.iter().filter(|a| a.period == period.period) {
                counts.entry(a.tenant_id.clone()).or_default().add(a.counts);
            }
        }
    }
    (lines, counts)
}

/// Late usage of one closed period, per tenant: the adjustment lines and the usage counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Late {
    /// `YYYY-MM` of the closed period.
    pub period: String,
    /// Adjustment lines per tenant (possibly none for a tenant with late usage that changes
    /// no amount).
    pub lines: BTreeMap<TenantId, Vec<Line>>,
    /// Late usage per tenant.
    pub counts: BTreeMap<TenantId, Counts>,
    /// Late usage that the closed period's prices do not price, per tenant: the invoice that
    /// bills the period's late usage is incomplete until it is priced.
    pub problems: BTreeMap<TenantId, Vec<Problem>>,
}

impl Late {
    /// Late usage of every tenant, summed.
    pub fn total(&self) -> Counts {
        let mut c = Counts::default();
        for x in self.counts.values() {
            c.add(*x);
        }
        c
    }

    /// True when there is nothing late.
    pub fn is_empty(&self) -> bool {
        self.lines.values().all(Vec::is_empty)
            && self.total().is_zero()
            && self.problems.values().all(Vec::is_empty)
    }
}

/// The late usage of `period`: `repriced` (the period priced now, with the inputs of its close)
/// against what was billed so far.
pub fn late(
    period: &PeriodRecord,
    repriced: &InvoiceRun,
    now_counts: &BTreeMap<TenantId, Counts>,
    records: &BTreeMap<NaiveDate, (PeriodRecord, String)>,
) -> Late {
    let (billed, counted) = billed_so_far(period, records);
    let mut out = Late { period: period.period.clone(), ..Late::default() };
    let mut tenants: std::collections::BTreeSet<&TenantId> = billed.keys().collect();
    tenants.extend(repriced.invoices.iter().map(|i| &i.tenant_id));
    for tenant in tenants {
        // Per key: (quantity, amount) now minus billed; a template line for its fields.
        let mut diff: BTreeMap<DiffKey, (i64, Decimal, Line)> = BTreeMap::new();
        if let Some(inv) = repriced.invoices.iter().find(|i| &i.tenant_id == tenant) {
            // The period closed complete: what is unpriced now came late.
            let problems: Vec<Problem> = inv
                .problems
                .iter()
                .map(|p| Problem {
                    reason: format!("late usage of {}: {}", period.period, p.reason),
                    ..p.clone()
                })
                .collect();
            if !problems.is_empty() {
                out.problems.insert(tenant.clone(), problems);
            }
            for l in &inv.lines {
                let r = LineRecord::of(l);
                let e = diff.entry(r.key()).or_insert_with(|| (0, Decimal::ZERO, l.clone()));
                e.0 = e.0.saturating_add(l.quantity);
                e.1 += l.amount;
            }
        }
        for r in billed.get(tenant).into_iter().flatten() {
            let e = diff.entry(r.key()).or_insert_with(|| (0, Decimal::ZERO, line_of(r)));
            e.0 = e.0.saturating_sub(r.quantity);
            e.1 -= r.amount;
        }
        let lines: Vec<Line> = diff
            .into_values()
            .filter(|(q, a, l)| {
                // A fee or credit differs only by its amount (each invoice has one, of 1).
                let fee = matches!(l.component, Component::PlanFee | Component::IncludedUsage);
                !a.is_zero() || (*q != 0 && !fee)
            })
            .map(|(q, a, mut l)| {
                // The quantity of a plan fee or an included-usage credit is 1 per invoice;
                // their difference is in the amount.
                if matches!(l.component, Component::PlanFee | Component::IncludedUsage) {
                    l.quantity = if a.is_zero() { 0 } else { 1 };
                    l.unit_price = a;
                } else {
                    l.quantity = q;
                }
                l.amount = a;
                l.adjusts_period = Some(period.period.clone());
                l
            })
            .collect();
        if !lines.is_empty() {
            out.lines.insert(tenant.clone(), lines);
        }
        let now = now_counts.get(tenant).copied().unwrap_or_default();
        let was = counted.get(tenant).copied().unwrap_or_default();
        let c = now.minus(was);
        if !c.is_zero() {
            out.counts.insert(tenant.clone(), c);
        }
    }
    out
}

fn line_of(r: &LineRecord) -> Line {
    Line {
        component: r.component,
        model_id: r.model_id.clone(),
        model_name: None,
        tier: r.tier.clone(),
        quantity: 0,
        unit: r.component.unit(),
        unit_price: r.unit_price,
        amount: Decimal::ZERO,
        adjusts_period: None,
        price_effective_from: r.effective_from,
        price_effective_to: None,
        class: r
            .model_id
            .as_ref()
            .map(|_| LineClass { service_tier: r.service_tier, long_context: r.long_context }),
    }
}

/// Appends late usage to `run`'s invoices (a tenant with late usage and no invoice in the run
/// gets one of adjustment lines alone), after each invoice's own lines, and sums the totals
/// again.
pub fn add_adjustments(run: &mut InvoiceRun, late: &[Late], currency: &str, version: &str) {
    for l in late {
        let mut tenants: std::collections::BTreeSet<&TenantId> = l.lines.keys().collect();
        tenants.extend(l.problems.keys());
        let (no_lines, no_problems) = (Vec::new(), Vec::new());
        for tenant in tenants {
            let lines = l.lines.get(tenant).unwrap_or(&no_lines);
            let problems = l.problems.get(tenant).unwrap_or(&no_problems);
            let inv = match run.invoices.iter().position(|i| &i.tenant_id == tenant) {
                Some(i) => &mut run.invoices[i],
                None => {
                    let tier = lines
                        .first()
                        .map(|x| x.tier.clone())
                        .or_else(|| problems.first().map(|p| p.tier.clone()));
                    let Some(tier) = tier else { continue };
                    let mut inv =
                        Invoice::empty(tenant.clone(), tier, &run.period, currency, version);
                    inv.invoice_number = invoice_number(&run.period, tenant, 1);
                    run.invoices.push(inv);
                    run.invoices.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
                    let i = run
                        .invoices
                        .iter()
                        .position(|i| &i.tenant_id == tenant)
                        .unwrap_or_default();
                    &mut run.invoices[i]
                }
            };
            inv.lines.extend(lines.iter().cloned());
            inv.problems.extend(problems.iter().cloned());
            inv.complete = inv.problems.is_empty();
            inv.total = inv.lines.iter().map(|x| x.amount).sum();
            inv.margin = inv.total - inv.allocated_cost;
        }
    }
}

/// Numbers the run's invoices for a period whose record (if any) holds earlier documents:
/// revision 1 for a tenant's first invoice, one more after each credit.
pub fn number(run: &mut InvoiceRun, record: Option<&PeriodRecord>) {
    for inv in &mut run.invoices {
        let n = record.map_or(1, |r| r.next_revision(&inv.tenant_id, DocumentKind::Invoice));
        inv.invoice_number = invoice_number(&run.period, &inv.tenant_id, n);
        // A replacement names the invoice it replaces: the tenant's last one, credited.
        inv.references = record.and_then(|r| {
            r.documents
                .iter()
                .rev()
                .find(|d| d.tenant_id == inv.tenant_id && d.kind == DocumentKind::Invoice)
                .map(|d| d.number.clone())
        });
    }
}

/// Marks the run's invoices issued on `today`, due after `terms_days`.
pub fn issue(run: &mut InvoiceRun, today: NaiveDate, terms_days: u32) {
    for inv in &mut run.invoices {
        inv.status = DocumentStatus::Issued;
        inv.issue_date = Some(today);
        inv.due_date = today.checked_add_days(chrono::Days::new(u64::from(terms_days)));
    }
}

/// Marks the run's invoices as a preview: not numbered.
pub fn preview(run: &mut InvoiceRun) {
    for inv in &mut run.invoices {
        inv.status = DocumentStatus::Preview;
        inv.invoice_number.clear();
        inv.references = None;
    }
}

/// The record of an issued document.
pub fn document_record(inv: &Invoice, digest: String, html_digest: String) -> DocumentRecord {
    DocumentRecord {
        number: inv.invoice_number.clone(),
        tenant_id: inv.tenant_id.clone(),
        kind: inv.document,
        status: LedgerStatus::Issued,
        references: inv.references.clone(),
        credited_by: None,
        issue_date: inv.issue_date.unwrap_or_default(),
        total: inv.total,
        currency: inv.currency.clone(),
        tier: inv.tier.clone(),
        digest,
        html_digest,
        lines: inv.lines.iter().map(LineRecord::of).collect(),
    }
}

/// A credit note cancelling an issued invoice: its lines negated, issued `today`.
pub fn credit_note(
    period: &Period,
    original: &DocumentRecord,
    n: usize,
    tier: Tier,
    today: NaiveDate,
) -> Invoice {
    let lines: Vec<Line> = original
        .lines
        .iter()
        .map(|r| {
            let mut l = line_of(r);
            l.quantity = -r.quantity;
            l.amount = -r.amount;
            l.adjusts_period = r.adjusts_period.clone();
            l
        })
        .collect();
    let mut cn = Invoice::empty(original.tenant_id.clone(), tier, period, &original.currency, "");
    cn.invoice_number = credit_note_number(period, &original.tenant_id, n);
    cn.document = DocumentKind::CreditNote;
    cn.status = DocumentStatus::Issued;
    cn.references = Some(original.number.clone());
    cn.issue_date = Some(today);
    cn.total = lines.iter().map(|l| l.amount).sum();
    cn.lines = lines;
    cn
}

/// Whether `period` may be reopened: not while a later closed period's invoices in force bill
/// its late usage (reopen that one first), since a replacement would bill it again.
///
/// # Errors
///
/// A message naming the later period.
pub fn check_reopen(
    period: &PeriodRecord,
    records: &BTreeMap<NaiveDate, (PeriodRecord, String)>,
) -> Result<(), String> {
    for (r, _) in records.values().filter(|(r, _)| r.period > period.period && r.is_closed()) {
        let adjusts = r
            .in_force()
            .flat_map(|d| &d.lines)
            .any(|l| l.adjusts_period.as_deref() == Some(&period.period));
        if adjusts {
            return Err(format!(
                "{} cannot be reopened: the invoices of {} bill late usage of it; reopen {} first",
                period.period, r.period, r.period
            ));
        }
    }
    Ok(())
}

/// The rows of `ledger.csv`: every document of the period.
pub fn ledger_rows(record: &PeriodRecord) -> Vec<Vec<String>> {
    record
        .documents
        .iter()
        .map(|d| {
            vec![
                d.number.clone(),
                match d.kind {
                    DocumentKind::Invoice => "invoice".into(),
                    DocumentKind::CreditNote => "credit_note".into(),
                },
                d.tenant_id.to_string(),
                record.period.clone(),
                d.issue_date.to_string(),
                d.total.round_dp(2).to_string(),
                d.currency.clone(),
                d.status.as_str().into(),
                d.references.clone().unwrap_or_default(),
                d.credited_by.clone().unwrap_or_default(),
                d.digest.clone(),
            ]
        })
        .collect()
}

/// The header of `ledger.csv`.
pub const LEDGER_HEADER: [&str; 11] = [
    "number",
    "document",
    "tenant_id",
    "period",
    "issue_date",
    "total",
    "currency",
    "status",
    "references",
    "credited_by",
    "digest",
];

#[cfg(test)]
#[path = "tests/ledger.rs"]
mod tests;
