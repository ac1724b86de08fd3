//! Placeholder until focus.rs / roster.rs gain these (temporary).
#![allow(missing_docs, clippy::missing_errors_doc)]
use std::path::Path;

use chrono::{DateTime, Utc};

use super::export::ExportError;
use super::model::{Invoice, Period, PeriodStatus};

pub struct BillingPeriodInfo {
    pub period: Period,
    pub status: PeriodStatus,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub issuer: String,
    pub currency: String,
    pub billing_account: String,
}

pub fn billing_period_csv(_path: &Path, info: &BillingPeriodInfo) -> Result<Vec<u8>, ExportError> {
    Ok(format!("BillingPeriodStart,Status\n{},{}\n", info.period.label(), info.status.as_str())
        .into_bytes())
}

pub fn invoice_detail_csv(
    _path: &Path,
    invoices: &[Invoice],
    _info: &BillingPeriodInfo,
) -> Result<Vec<u8>, ExportError> {
    let mut s = String::from("InvoiceId,Total\n");
    for i in invoices {
        s.push_str(&format!("{},{}\n", i.invoice_number, i.total));
    }
    Ok(s.into_bytes())
}

