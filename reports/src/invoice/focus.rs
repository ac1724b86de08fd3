//! The FOCUS exports (FinOps Open Cost and Usage Specification).
//!
//! - Cost and Usage (`focus.csv`, `focus.parquet`), FOCUS 1.3 columns: the period's AWS cost
//!   as allocated to tenants, with the 1.3 allocation columns (`AllocatedMethodId`,
//!   `AllocatedMethodDetails`, `AllocatedResourceId`, `AllocatedResourceName`,
//!   `AllocatedTags`), `ServiceProviderName`/`HostProviderName` (and the deprecated
//!   `ProviderName`/`PublisherName` beside them), and `x_` columns for the tenant, tier and
//!   cost pool (Bedrock inference split by list-price usage; AgentCore Runtime by agent
//!   duration; AgentCore Gateway by tool calls). One row per day, tier and tenant share, and one
//!   per unallocated amount (with an empty `x_TenantId`), so the rows sum exactly to the Cost
//!   Explorer total of the period. A share is priced as one unit of itself (`PricingQuantity`
//!   1, `PricingUnit` `Allocation`, `ListUnitPrice` the share): an allocated amount has no
//!   unit price of its own, and `ListCost = ListUnitPrice × PricingQuantity` holds exactly.
//! - BillingPeriod (`focus-billing-period.csv`) and InvoiceDetail
//!   (`focus-invoice-detail.csv`), the datasets FOCUS 1.4 adds: the period's status (`Open`
//!   or `Closed`) and the customers' invoices line by line, late usage of a closed period as
//!   `ChargeClass` `Correction`.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::compute::InvoiceRun;
use super::export::ExportError;
use super::model::CostPool;
use agentmeter_schemas::money::round_cents;

const PROVIDER: &str = "Amazon Web Services";

/// One FOCUS row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FocusRow {
    /// The allocated or unallocated amount (BilledCost = EffectiveCost = ListCost = ContractedCost).
    pub cost: Decimal,
    /// BillingAccountId.
    pub billing_account: String,
    /// BillingCurrency.
    pub currency: String,
    /// BillingPeriodStart / End.
    pub billing_period: (DateTime<Utc>, DateTime<Utc>),
    /// ChargePeriodStart / End (one day).
    pub charge_period: (DateTime<Utc>, DateTime<Utc>),
    /// ChargeDescription.
    pub description: String,
    /// The cost pool (ServiceName, the quantity's unit, AllocatedMethodId, x_CostPool).
    pub pool: CostPool,
    /// ConsumedQuantity (the pool's driver: tokens, milliseconds or calls), for tenant shares.
    pub tokens: Option<i64>,
    /// Tags (JSON object).
    pub tags: String,
    /// x_TenantId (empty for unallocated cost).
    pub tenant: String,
    /// x_Tier.
    pub tier: String,
    /// x_UsageListCost: the tenant's list-price cost of that day's usage, rounded to the cent.
    pub usage_list_cost: Option<Decimal>,
    /// x_Provisional.
    pub provisional: bool,
    /// The models whose usage weighed an inference share (SkuPriceDetails).
    pub models: Vec<String>,
}

fn day_span(d: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = d.and_time(chrono::NaiveTime::MIN).and_utc();
    (start, start + chrono::TimeDelta::days(1))
}

/// The FOCUS rows of a run.
pub fn rows(run: &InvoiceRun, billing_account: &str) -> Vec<FocusRow> {
    let period = (run.period.start_time(), run.period.end_time());
    let currency = run.invoices.first().map(|i| i.currency.clone()).unwrap_or_else(|| "USD".into());
    let mut out: Vec<FocusRow> = run
        .allocations
        .iter()
        .map(|a| FocusRow {
            pool: a.pool,
            cost: a.amount,
            billing_account: billing_account.to_owned(),
            currency: currency.clone(),
            billing_period: period,
            charge_period: day_span(a.date),
            description: format!(
                "{} cost of tier {} allocated to tenant {} by {}",
                a.pool.service(),
                a.tier,
                a.tenant_id,
                a.pool.driver()
            ),
            tokens: Some(a.driver),
            tags: serde_json::json!({ "Tier": a.tier.as_str() }).to_string(),
            tenant: a.tenant_id.to_string(),
            tier: a.tier.to_string(),
            usage_list_cost: Some(round_cents(a.list_cost)),
            provisional: a.provisional,
            models: a.models.iter().map(ToString::to_string).collect(),
        })
        .collect();
    out.extend(run.unallocated.iter().map(|u| FocusRow {
        pool: u.pool,
        cost: u.amount,
        billing_account: billing_account.to_owned(),
        currency: currency.clone(),
        billing_period: period,
        charge_period: day_span(u.date),
        description: format!("{} cost not allocated to a tenant: {}", u.pool.service(), u.reason),
        tokens: None,
        tags: if u.tag_value.is_empty() {
            "{}".into()
        } else {
            serde_json::json!({ "Tier": u.tag_value }).to_string()
        },
        tenant: String::new(),
        tier: u.tier.as_ref().map(ToString::to_string).unwrap_or_default(),
        usage_list_cost: None,
        provisional: u.provisional,
        models: Vec::new(),
    }));
    out.sort_by(|a, b| {
        (a.charge_period.0, a.pool, &a.tier, &a.tenant).cmp(&(
            b.charge_period.0,
            b.pool,
            &b.tier,
            &b.tenant,
        ))
    });
    out
}

const COLUMNS: [&str; 45] = [
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingQuantity",
    "PricingUnit",
    "SkuPriceDetails",
    "ProviderName",
    "PublisherName",
    "ServiceProviderName",
    "HostProviderName",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "Tags",
    "AllocatedMethodId",
    "AllocatedMethodDetails",
    "AllocatedResourceId",
    "AllocatedResourceName",
    "AllocatedTags",
    "x_TenantId",
    "x_Tier",
    "x_UsageListCost",
    "x_Provisional",
    "x_CostPool",
];

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Fixed values of a row, in [`COLUMNS`] order, as text.
fn text_row(r: &FocusRow) -> Vec<String> {
    let cost = r.cost.to_string();
    let shared = !r.tenant.is_empty();
    let allocated = |v: String| if shared { v } else { String::new() };
    vec![
        cost.clone(),
        r.billing_account.clone(),
        String::new(),
        "Billing Account".into(),
        r.currency.clone(),
        iso(r.billing_period.1),
        iso(r.billing_period.0),
        "Usage".into(),
        String::new(),
        r.description.clone(),
        "Usage-Based".into(),
        iso(r.charge_period.1),
        iso(r.charge_period.0),
        r.tokens.map(|t| t.to_string()).unwrap_or_default(),
        if r.tokens.is_some() { r.pool.unit().into() } else { String::new() },
        cost.clone(),
        cost.clone(),
        String::new(),
        PROVIDER.into(),
        cost.clone(),
        cost.clone(),
        cost,
        "Standard".into(),
        r.currency.clone(),
        "1".into(),
        "Allocation".into(),
        if r.models.is_empty() {
            String::new()
        } else {
            serde_json::json!({ "x_ModelIds": r.models }).to_string()
        },
        PROVIDER.into(),
        PROVIDER.into(),
        PROVIDER.into(),
        PROVIDER.into(),
        "AI and Machine Learning".into(),
        r.pool.service().into(),
        "Generative AI".into(),
        r.tags.clone(),
        allocated(format!("agentmeter-{}-share", r.pool.driver().replace(' ', "-"))),
        allocated(
            serde_json::json!({
                "Driver": r.pool.driver(),
                "DriverQuantity": r.tokens,
                "DriverUnit": r.pool.unit(),
                "Scope": "day and tier",
            })
            .to_string(),
        ),
        allocated(format!("tenant/{}", r.tenant)),
        allocated(r.tenant.clone()),
        allocated(serde_json::json!({ "x_TenantId": r.tenant, "Tier": r.tier }).to_string()),
        r.tenant.clone(),
        r.tier.clone(),
        r.usage_list_cost.map(|c| c.to_string()).unwrap_or_default(),
        r.provisional.to_string(),
        r.pool.as_str().into(),
    ]
}

/// The rows as CSV.
///
/// # Errors
///
/// CSV encoding failed.
pub fn csv(path: &Path, rows: &[FocusRow]) -> Result<Vec<u8>, ExportError> {
    let err = |source| ExportError::Csv { path: path.to_owned(), source };
    let mut w = crate::export_csv::Writer::new();
    w.row(COLUMNS).map_err(err)?;
    for r in rows {
        w.row(text_row(r)).map_err(err)?;
    }
    w.finish().map_err(err)
}

/// The rows as an Arrow batch with typed columns (decimals, UTC timestamps), for Parquet.
///
/// # Errors
///
/// An amount that does not fit its column.
pub fn batch(rows: &[FocusRow]) -> Result<RecordBatch, ArrowError> {
    let money = DataType::Decimal128(38, 2);
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let n = rows.len();
    let cents = |d: Decimal| -> Result<i128, ArrowError> {
        let r = round_cents(d);
        if r != d {
            return Err(ArrowError::InvalidArgumentError(format!("{d} is not whole cents")));
        }
        Ok(r.mantissa())
    };
    let texts: Vec<Vec<String>> = rows.iter().map(text_row).collect();
    for (i, name) in COLUMNS.iter().enumerate() {
        let (ty, array): (DataType, ArrayRef) = match *name {
            "BilledCost"
            | "ContractedCost"
            | "EffectiveCost"
            | "ListCost"
            | "ListUnitPrice"
            | "ContractedUnitPrice"
            | "x_UsageListCost" => {
                let mut b = Decimal128Builder::with_capacity(n).with_precision_and_scale(38, 2)?;
                for r in rows {
                    let v =
                        if *name == "x_UsageListCost" { r.usage_list_cost } else { Some(r.cost) };
                    b.append_option(v.map(cents).transpose()?);
                }
                (money.clone(), Arc::new(b.finish()))
            }
            "BillingPeriodStart" | "BillingPeriodEnd" | "ChargePeriodStart" | "ChargePeriodEnd" => {
                let mut b = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
                for r in rows {
                    let t = match *name {
                        "BillingPeriodStart" => r.billing_period.0,
                        "BillingPeriodEnd" => r.billing_period.1,
                        "ChargePeriodStart" => r.charge_period.0,
                        _ => r.charge_period.1,
                    };
                    b.append_value(t.timestamp_millis());
                }
                (ts.clone(), Arc::new(b.finish()))
            }
            "ConsumedQuantity" => {
                let mut b = Int64Builder::with_capacity(n);
                for r in rows {
                    b.append_option(r.tokens);
                }
                (DataType::Int64, Arc::new(b.finish()))
            }
            "PricingQuantity" => {
                let mut b = Decimal128Builder::with_capacity(n).with_precision_and_scale(38, 0)?;
                for _ in rows {
                    b.append_value(1);
                }
                (DataType::Decimal128(38, 0), Arc::new(b.finish()))
            }
            "x_Provisional" => {
                let mut b = BooleanBuilder::with_capacity(n);
                for r in rows {
                    b.append_value(r.provisional);
                }
                (DataType::Boolean, Arc::new(b.finish()))
            }
            _ => {
                let mut b = StringBuilder::with_capacity(n, n * 16);
                for t in &texts {
                    let v = &t[i];
                    if v.is_empty() { b.append_null() } else { b.append_value(v) }
                }
                (DataType::Utf8, Arc::new(b.finish()))
            }
        };
        fields.push(Field::new(*name, ty, true));
        columns.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// A billing period as the FOCUS 1.4 BillingPeriod dataset describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingPeriodInfo {
    /// The period.
    pub period: super::model::Period,
    /// Open or closed.
    pub status: super::model::PeriodStatus,
    /// When it was first closed (an open period never closed: this run).
    pub created: DateTime<Utc>,
    /// Its last close or reopening (an open period never closed: this run).
    pub last_updated: DateTime<Utc>,
    /// InvoiceIssuerName (empty when the roster names none).
    pub issuer: String,
    /// BillingCurrency.
    pub currency: String,
    /// BillingAccountId.
    pub billing_account: String,
}

/// The columns of `focus-billing-period.csv`.
pub const BILLING_PERIOD_COLUMNS: [&str; 8] = [
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "BillingPeriodStatus",
    "BillingPeriodCreated",
    "BillingPeriodLastUpdated",
    "InvoiceIssuerName",
];

/// `focus-billing-period.csv`: one row, the period.
///
/// # Errors
///
/// CSV encoding failed.
pub fn billing_period_csv(path: &Path, info: &BillingPeriodInfo) -> Result<Vec<u8>, ExportError> {
    let err = |source| ExportError::Csv { path: path.to_owned(), source };
    let mut w = crate::export_csv::Writer::new();
    w.row(BILLING_PERIOD_COLUMNS).map_err(err)?;
    w.row([
        info.billing_account.clone(),
        info.currency.clone(),
        iso(info.period.start_time()),
        iso(info.period.end_time()),
        info.status.as_str().to_owned(),
        iso(info.created),
        iso(info.last_updated),
        info.issuer.clone(),
    ])
    .map_err(err)?;
    w.finish().map_err(err)
}

/// The columns of `focus-invoice-detail.csv`.
pub const INVOICE_DETAIL_COLUMNS: [&str; 24] = [
    "InvoiceId",
    "InvoiceIssuerName",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "InvoiceIssueDate",
    "InvoicePaymentDueDate",
    "InvoiceStatus",
    "InvoiceType",
    "InvoiceLineId",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "PricingQuantity",
    "PricingUnit",
    "ListUnitPrice",
    "BilledCost",
    "InvoiceTotal",
    "x_TenantId",
    "x_Component",
    "x_ModelId",
    "x_AdjustsPeriod",
    "x_Tier",
];

/// `focus-invoice-detail.csv`: every line of every numbered document, amounts summing to each
/// invoice's total. Previews (not numbered) are left out.
///
/// # Errors
///
/// CSV encoding failed.
pub fn invoice_detail_csv(
    path: &Path,
    invoices: &[super::model::Invoice],
    info: &BillingPeriodInfo,
) -> Result<Vec<u8>, ExportError> {
    use super::model::{Component, DocumentKind, DocumentStatus};
    let err = |source| ExportError::Csv { path: path.to_owned(), source };
    let mut w = crate::export_csv::Writer::new();
    w.row(INVOICE_DETAIL_COLUMNS).map_err(err)?;
    for inv in invoices.iter().filter(|i| !i.invoice_number.is_empty()) {
        for (i, l) in inv.lines.iter().enumerate() {
            let category = match l.component {
                Component::PlanFee => "Purchase",
                Component::IncludedUsage => "Credit",
                _ => "Usage",
            };
            let (quantity, unit) = if l.component.per_million() {
                (
                    (Decimal::from(l.quantity) / agentmeter_schemas::money::MILLION)
                        .normalize()
                        .to_string(),
                    "1M Tokens",
                )
            } else {
                (l.quantity.to_string(), l.component.billing_unit())
            };
            w.row([
                inv.invoice_number.clone(),
                info.issuer.clone(),
                info.billing_account.clone(),
                inv.currency.clone(),
                iso(info.period.start_time()),
                iso(info.period.end_time()),
                inv.issue_date.map(|d| d.to_string()).unwrap_or_default(),
                inv.due_date.map(|d| d.to_string()).unwrap_or_default(),
                match inv.status {
                    DocumentStatus::Issued => "Issued",
                    DocumentStatus::Draft => "Draft",
                    DocumentStatus::Preview => "Preview",
                }
                .to_owned(),
                match inv.document {
                    DocumentKind::Invoice => "Invoice",
                    DocumentKind::CreditNote => "Credit Note",
                }
                .to_owned(),
                format!("{}#{}", inv.invoice_number, i + 1),
                category.to_owned(),
                if l.adjusts_period.is_some() { "Correction" } else { "" }.to_owned(),
                super::html::describe(l),
                quantity,
                unit.to_owned(),
                l.unit_price.normalize().to_string(),
                l.amount.to_string(),
                inv.total.to_string(),
                inv.tenant_id.to_string(),
                l.component.code().to_owned(),
                l.model_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                l.adjusts_period.clone().unwrap_or_default(),
                l.tier.to_string(),
            ])
            .map_err(err)?;
        }
    }
    w.finish().map_err(err)
}

#[cfg(test)]
#[path = "tests/focus_conformance.rs"]
mod conformance;
