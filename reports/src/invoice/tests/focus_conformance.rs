//! FOCUS conformance: every mandatory column, and every rule the exports can be checked
//! against without the provider's books: types, allowed values, `ListCost = ListUnitPrice ×
//! PricingQuantity`, billed cost summing to what it must.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::DateTime;
use rust_decimal::Decimal;

use super::super::model::{DocumentStatus, PeriodStatus};
use super::super::tests::{costs, run, usage};
use super::*;

/// Mandatory Cost and Usage columns of FOCUS 1.3 (and the conditional ones these rows meet:
/// split cost allocation, consumed quantities, unit prices).
const MANDATORY: &[&str] = &[
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
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingQuantity",
    "PricingUnit",
    "SkuPriceDetails",
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
];

type Table = (Vec<String>, Vec<BTreeMap<String, String>>);

fn parse(bytes: &[u8]) -> Table {
    let mut r = ::csv::Reader::from_reader(bytes);
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| header.iter().cloned().zip(rec.unwrap().iter().map(str::to_owned)).collect())
        .collect();
    (header, rows)
}

fn dec(s: &str) -> Result<Decimal, String> {
    Decimal::from_str(s).map_err(|e| format!("{s:?} is not a decimal: {e}"))
}

/// Every rule the Cost and Usage rows can be checked against; the first broken one.
fn check_cost_and_usage((header, rows): &Table, expected_total: Decimal) -> Result<(), String> {
    for c in MANDATORY {
        if !header.iter().any(|h| h == c) {
            return Err(format!("missing column {c}"));
        }
    }
    let mut billed = Decimal::ZERO;
    for (i, r) in rows.iter().enumerate() {
        let at = |m: String| format!("row {}: {m}", i + 1);
        for c in ["BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"]
        {
            DateTime::parse_from_rfc3339(&r[c]).map_err(|e| at(format!("{c} {e}")))?;
        }
        if !["Usage", "Purchase", "Tax", "Credit", "Adjustment"]
            .contains(&r["ChargeCategory"].as_str())
        {
            return Err(at(format!("ChargeCategory {:?}", r["ChargeCategory"])));
        }
        if !["", "Correction"].contains(&r["ChargeClass"].as_str()) {
            return Err(at(format!("ChargeClass {:?}", r["ChargeClass"])));
        }
        if !["One-Time", "Recurring", "Usage-Based"].contains(&r["ChargeFrequency"].as_str()) {
            return Err(at(format!("ChargeFrequency {:?}", r["ChargeFrequency"])));
        }
        if !["Standard", "Dynamic", "Committed", "Other", ""]
            .contains(&r["PricingCategory"].as_str())
        {
            return Err(at(format!("PricingCategory {:?}", r["PricingCategory"])));
        }
        let cost = dec(&r["BilledCost"]).map_err(at)?;
        for c in ["EffectiveCost", "ListCost", "ContractedCost"] {
            dec(&r[c]).map_err(at)?;
        }
        let (q, p) =
            (dec(&r["PricingQuantity"]).map_err(at)?, dec(&r["ListUnitPrice"]).map_err(at)?);
        if dec(&r["ListCost"]).map_err(at)? != q * p {
            return Err(at("ListCost != ListUnitPrice × PricingQuantity".into()));
        }
        let cq = dec(&r["ContractedUnitPrice"]).map_err(at)?;
        if dec(&r["ContractedCost"]).map_err(at)? != q * cq {
            return Err(at("ContractedCost != ContractedUnitPrice × PricingQuantity".into()));
        }
        if r["BillingCurrency"].len() != 3 || r["PricingCurrency"] != r["BillingCurrency"] {
            return Err(at("currency".into()));
        }
        if r["Tags"].is_empty() || serde_json::from_str::<serde_json::Value>(&r["Tags"]).is_err() {
            return Err(at("Tags is not a JSON object".into()));
        }
        // Split cost: the allocation columns are set exactly on the tenants' shares.
        let shared = !r["x_TenantId"].is_empty();
        for c in
            ["AllocatedMethodId", "AllocatedResourceId", "AllocatedMethodDetails", "AllocatedTags"]
        {
            if r[c].is_empty() == shared {
                return Err(at(format!(
                    "{c} set {} a tenant's share",
                    if shared { "off" } else { "on" }
                )));
            }
        }
        // The model identity of an inference share: the models whose usage weighed it.
        if shared && r["x_CostPool"] == "inference" {
            let d: serde_json::Value = serde_json::from_str(&r["SkuPriceDetails"])
                .map_err(|e| at(format!("SkuPriceDetails: {e}")))?;
            if d["x_ModelIds"].as_array().is_none_or(Vec::is_empty) {
                return Err(at("SkuPriceDetails names no model".into()));
            }
        }
        if shared {
            for c in ["AllocatedMethodDetails", "AllocatedTags"] {
                serde_json::from_str::<serde_json::Value>(&r[c])
                    .map_err(|e| at(format!("{c}: {e}")))?;
            }
        }
        billed += cost;
    }
    if billed != expected_total {
        return Err(format!("BilledCost sums to {billed}, not {expected_total}"));
    }
    Ok(())
}

/// The InvoiceDetail rules: allowed values, and each invoice's lines summing to its total.
fn check_invoice_detail(
    (header, rows): &Table,
    totals: &BTreeMap<String, Decimal>,
) -> Result<(), String> {
    for c in [
        "InvoiceId",
        "InvoiceIssuerName",
        "BillingAccountId",
        "BillingCurrency",
        "BillingPeriodStart",
        "BillingPeriodEnd",
        "ChargeCategory",
        "ChargeDescription",
        "BilledCost",
        "InvoiceStatus",
        "InvoiceType",
    ] {
        if !header.iter().any(|h| h == c) {
            return Err(format!("missing column {c}"));
        }
    }
    let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if !["Usage", "Purchase", "Credit", "Adjustment", "Tax"]
            .contains(&r["ChargeCategory"].as_str())
        {
            return Err(format!("row {}: ChargeCategory {:?}", i + 1, r["ChargeCategory"]));
        }
        *sums.entry(r["InvoiceId"].clone()).or_default() += dec(&r["BilledCost"])?;
        if dec(&r["InvoiceTotal"])? != totals[&r["InvoiceId"]] {
            return Err(format!("row {}: InvoiceTotal", i + 1));
        }
    }
    if &sums != totals {
        return Err(format!("lines sum to {sums:?}, invoices to {totals:?}"));
    }
    Ok(())
}

fn info(status: PeriodStatus) -> BillingPeriodInfo {
    let t = DateTime::from_timestamp(1_793_000_000, 0).unwrap();
    BillingPeriodInfo {
        period: super::super::model::Period::parse("2026-10").unwrap(),
        status,
        created: t,
        last_updated: t,
        issuer: "Acme Health AI Ltd".into(),
        currency: "USD".into(),
        billing_account: "123456789012".into(),
    }
}

#[test]
fn the_cost_and_usage_rows_conform_and_a_broken_row_is_caught() {
    let c = costs(&[(1, Some("basic"), "10", false), (2, None, "1.5", true)]);
    let r = run(&usage(), Some(&c), &BTreeMap::new());
    let rows = rows(&r, "123456789012");
    let table = parse(&csv(std::path::Path::new("focus.csv"), &rows).unwrap());
    assert!(table.1.len() >= 3, "{:?}", table.1);
    check_cost_and_usage(&table, r.cost_total).unwrap();

    // Each rule can fail: a broken copy is caught, naming the rule.
    let mut broken = table.clone();
    broken.1[0].insert("ListUnitPrice".into(), "0.01".into());
    assert_eq!(
        check_cost_and_usage(&broken, r.cost_total).unwrap_err(),
        "row 1: ListCost != ListUnitPrice × PricingQuantity"
    );
    let mut broken = table.clone();
    broken.0.retain(|h| h != "AllocatedMethodId");
    assert_eq!(
        check_cost_and_usage(&broken, r.cost_total).unwrap_err(),
        "missing column AllocatedMethodId"
    );
    assert!(check_cost_and_usage(&table, r.cost_total + Decimal::ONE).is_err());

    // The Parquet file has numbers where numbers belong.
    let b = batch(&rows).unwrap();
    let ty = |name: &str| b.schema().field_with_name(name).unwrap().data_type().clone();
    assert_eq!(ty("PricingQuantity"), arrow_schema::DataType::Decimal128(38, 0));
    assert_eq!(ty("ListUnitPrice"), arrow_schema::DataType::Decimal128(38, 2));
    assert_eq!(ty("BilledCost"), arrow_schema::DataType::Decimal128(38, 2));
    assert_eq!(b.column_by_name("PricingQuantity").unwrap().null_count(), 0);
}

#[test]
fn the_billing_period_and_invoice_detail_datasets_conform() {
    let mut r = run(&usage(), None, &BTreeMap::new());
    for inv in &mut r.invoices {
        inv.status = DocumentStatus::Issued;
    }
    let bp = parse(
        &billing_period_csv(std::path::Path::new("bp.csv"), &info(PeriodStatus::Closed)).unwrap(),
    );
    assert_eq!(bp.0, BILLING_PERIOD_COLUMNS);
    assert_eq!(bp.1.len(), 1);
    assert_eq!(bp.1[0]["BillingPeriodStatus"], "Closed");
    assert_eq!(bp.1[0]["BillingPeriodStart"], "2026-10-01T00:00:00Z");
    assert_eq!(bp.1[0]["BillingPeriodEnd"], "2026-11-01T00:00:00Z");
    for c in ["BillingPeriodCreated", "BillingPeriodLastUpdated"] {
        DateTime::parse_from_rfc3339(&bp.1[0][c]).unwrap();
    }

    let detail = parse(
        &invoice_detail_csv(
            std::path::Path::new("d.csv"),
            &r.invoices,
            &info(PeriodStatus::Closed),
        )
        .unwrap(),
    );
    let totals: BTreeMap<String, Decimal> =
        r.invoices.iter().map(|i| (i.invoice_number.clone(), i.total)).collect();
    check_invoice_detail(&detail, &totals).unwrap();
    assert_eq!(detail.1.len(), r.invoices.iter().map(|i| i.lines.len()).sum::<usize>());
    let mut broken = detail.clone();
    broken.1[0].insert("BilledCost".into(), "999".into());
    assert!(check_invoice_detail(&broken, &totals).unwrap_err().starts_with("lines sum to"));

    // A preview is not numbered: it has no place in InvoiceDetail.
    let mut preview = r.invoices.clone();
    for inv in &mut preview {
        inv.invoice_number.clear();
    }
    let empty = parse(
        &invoice_detail_csv(std::path::Path::new("d.csv"), &preview, &info(PeriodStatus::Open))
            .unwrap(),
    );
    assert!(empty.1.is_empty());
}
