//! Writing an invoice run: per-tenant JSON and HTML, the finance CSV, the margin summary,
//! the FOCUS export, the run summary, and the `invoice_lines` table of the lake.
//!
//! ```text
//! OUT/invoices/YYYY-MM/tenants/<tenant>.json   one invoice (amounts are decimal strings)
//! OUT/invoices/YYYY-MM/tenants/<tenant>.html   the same, print-ready, for the customer
//! OUT/invoices/YYYY-MM/credit-notes/<n>/<tenant>.json|html  credit notes of a reopening
//! OUT/invoices/YYYY-MM/invoices.csv    one row per line item, every tenant
//! OUT/invoices/YYYY-MM/focus-invoice-detail.csv  FOCUS 1.4 InvoiceDetail
//!   (the files above are the documents: recorded at a close, reproduced byte for byte)
//! OUT/invoices/YYYY-MM/ledger.csv      every document issued for the period, and its status
//! OUT/invoices/YYYY-MM/focus-billing-period.csv  FOCUS 1.4 BillingPeriod (Open or Closed)
//! OUT/invoices/YYYY-MM/margin.csv|json revenue, allocated and unallocated AWS cost, margin
//! OUT/invoices/YYYY-MM/focus.csv|parquet  allocated costs, FOCUS Cost and Usage
//! OUT/invoices/YYYY-MM/summary.json    problems, unallocated cost, reconciliation
//! OUT/previews/YYYY-MM/...             the same for `--preview` (not numbered, not recorded)
//! ```
//!
//! Every file is written whole under a temporary name and renamed into place, and a rerun
//! replaces them (invoices of tenants no longer billed are removed), so the directory always
//! holds one consistent run. Per-tenant files hold that tenant's data alone, and live in a
//! directory of their own: no tenant id (`summary`, `margin`, ...) can name a run-wide file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentmeter_aggregate::fsio::{remove_if_exists, write_atomic};
use agentmeter_aggregate::{Lake, write_parquet_file};
use agentmeter_schemas::TenantId;
use agentmeter_schemas::tables::{INVOICE_LINES, InvoiceLineRow, TABLES, invoice_lines_batch};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::compute::InvoiceRun;
use super::model::{CostPool, DocumentKind, DocumentStatus, Invoice, Problem, Unallocated};

/// A failure to write an output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The lake or a file could not be written.
    #[error(transparent)]
    Lake(#[from] agentmeter_aggregate::Error),
    /// CSV encoding failed.
    #[error("writing {path}: {source}")]
    Csv {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: csv::Error,
    },
    /// JSON encoding failed.
    #[error("encoding {what}: {source}")]
    Json {
        /// What.
        what: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Arrow rejected a value.
    #[error("{what}: {source}")]
    Arrow {
        /// What.
        what: String,
        /// Cause.
        #[source]
        source: arrow_schema::ArrowError,
    },
}

/// Margin of one tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierMargin {
    /// Tier.
    pub tier: String,
    /// Invoiced to the tier's tenants.
    pub revenue: Decimal,
    /// AWS cost allocated to them.
    pub allocated_cost: Decimal,
    /// The tier's AWS cost no tenant carries.
    pub unallocated_cost: Decimal,
    /// `revenue - allocated_cost - unallocated_cost`.
    pub margin: Decimal,
}

/// Margin of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantMargin {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Tier.
    pub tier: String,
    /// Invoice total.
    pub revenue: Decimal,
    /// Allocated AWS cost.
    pub allocated_cost: Decimal,
    /// `revenue - allocated_cost`.
    pub margin: Decimal,
    /// Rests on estimated costs.
    pub provisional: bool,
}

/// Whether the allocations reconcile with Cost Explorer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// Cost Explorer amounts of the period, each rounded to the cent, summed.
    pub cost_explorer_total: Decimal,
    /// The same amounts, unrounded.
    pub cost_explorer_total_exact: Decimal,
    /// Allocated to tenants.
    pub allocated: Decimal,
    /// Carried by no tenant.
    pub unallocated: Decimal,
    /// `allocated + unallocated == cost_explorer_total`.
    pub reconciled: bool,
}

/// One cost pool's split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolCost {
    /// The pool.
    pub pool: CostPool,
    /// What splits it.
    pub driver: String,
    /// Allocated to tenants.
    pub allocated: Decimal,
    /// Carried by no tenant.
    pub unallocated: Decimal,
}

/// The margin summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarginSummary {
    /// `YYYY-MM`.
    pub period: String,
    /// Currency.
    pub currency: String,
    /// Per tier.
    pub tiers: Vec<TierMargin>,
    /// Per tenant.
    pub tenants: Vec<TenantMargin>,
    /// Cost with no tier (untagged, or a tag matching no tier).
    pub untiered_cost: Decimal,
    /// Per cost pool with a cost: what was allocated and what no tenant carries.
    #[serde(default)]
    pub pools: Vec<PoolCost>,
    /// Reconciliation with Cost Explorer.
    pub reconciliation: Reconciliation,
}

/// The run summary (`summary.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// `YYYY-MM`.
    pub period: String,
    /// Price book version.
    pub price_book_version: String,
    /// Invoices written.
    pub invoices: usize,
    /// Sum of invoice totals.
    pub revenue: Decimal,
    /// True when every usage was billed.
    pub complete: bool,
    /// Usage that could not be billed.
    pub problems: Vec<Problem>,
    /// Cost no tenant carries, by day.
    pub unallocated: Vec<Unallocated>,
    /// Days and tiers with usage but no cost.
    pub usage_without_cost: Vec<String>,
    /// Observations.
    pub notes: Vec<String>,
    /// Reconciliation with Cost Explorer.
    pub reconciliation: Reconciliation,
    /// `open`, `closed`, `open (preview)` or `open (reopened)`.
    pub period_status: String,
    /// What happened to the period: closed, reproduced, reopened, late usage billed.
    pub messages: Vec<String>,
}

/// Computes the margin summary of a run.
pub fn margin(run: &InvoiceRun) -> MarginSummary {
    let mut tiers: BTreeMap<String, TierMargin> = BTreeMap::new();
    fn entry<'t>(tiers: &'t mut BTreeMap<String, TierMargin>, name: &str) -> &'t mut TierMargin {
        tiers.entry(name.to_owned()).or_insert_with(|| TierMargin {
            tier: name.to_owned(),
            revenue: Decimal::ZERO,
            allocated_cost: Decimal::ZERO,
            unallocated_cost: Decimal::ZERO,
            margin: Decimal::ZERO,
        })
    }
    for inv in &run.invoices {
        entry(&mut tiers, inv.tier.as_str()).revenue += inv.total;
    }
    for a in &run.allocations {
        entry(&mut tiers, a.tier.as_str()).allocated_cost += a.amount;
    }
    let mut untiered = Decimal::ZERO;
    for u in &run.unallocated {
        match &u.tier {
            Some(t) => entry(&mut tiers, t.as_str()).unallocated_cost += u.amount,
            None => untiered += u.amount,
        }
    }
    for t in tiers.values_mut() {
        t.margin = t.revenue - t.allocated_cost - t.unallocated_cost;
    }
    let mut pools: BTreeMap<CostPool, (Decimal, Decimal)> = BTreeMap::new();
    for a in &run.allocations {
        pools.entry(a.pool).or_default().0 += a.amount;
    }
    for u in &run.unallocated {
        pools.entry(u.pool).or_default().1 += u.amount;
    }
    let pools = pools
        .into_iter()
        .map(|(pool, (allocated, unallocated))| PoolCost {
            pool,
            driver: pool.driver().to_owned(),
            allocated,
            unallocated,
        })
        .collect();
    let tenants = run
        .invoices
        .iter()
        .map(|i| TenantMargin {
            tenant_id: i.tenant_id.clone(),
            tier: i.tier.to_string(),
            revenue: i.total,
            allocated_cost: i.allocated_cost,
            margin: i.margin,
            provisional: i.provisional,
        })
        .collect();
    let currency = run.invoices.first().map(|i| i.currency.clone()).unwrap_or_else(|| "USD".into());
    MarginSummary {
        period: run.period.label(),
        currency,
        tiers: tiers.into_values().collect(),
        pools,
        tenants,
        untiered_cost: untiered,
        reconciliation: reconciliation(run),
    }
}

fn reconciliation(run: &InvoiceRun) -> Reconciliation {
    let allocated: Decimal = run.allocations.iter().map(|a| a.amount).sum();
    let unallocated: Decimal = run.unallocated.iter().map(|u| u.amount).sum();
    Reconciliation {
        cost_explorer_total: run.cost_total,
        cost_explorer_total_exact: run.cost_total_exact,
        allocated,
        unallocated,
        reconciled: allocated + unallocated == run.cost_total,
    }
}

/// The run summary.
pub fn summary(run: &InvoiceRun) -> RunSummary {
    RunSummary {
        period: run.period.label(),
        price_book_version: run
            .invoices
            .first()
            .map(|i| i.price_book_version.clone())
            .unwrap_or_default(),
        invoices: run.invoices.len(),
        revenue: run.invoices.iter().map(|i| i.total).sum(),
        complete: run.invoices.iter().all(|i| i.complete),
        problems: run.invoices.iter().flat_map(|i| i.problems.iter().cloned()).collect(),
        unallocated: run.unallocated.clone(),
        usage_without_cost: run
            .usage_without_cost
            .iter()
            .map(|(d, t)| format!("{d} {t}"))
            .collect(),
        notes: run.notes.clone(),
        reconciliation: reconciliation(run),
        period_status: "open".into(),
        messages: Vec::new(),
    }
}

fn json<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>, ExportError> {
    let mut out = serde_json::to_vec_pretty(v)
        .map_err(|source| ExportError::Json { what: what.to_owned(), source })?;
    out.push(b'\n');
    Ok(out)
}

fn csv_bytes(
    path: &Path,
    header: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) -> Result<Vec<u8>, ExportError> {
    let err = |source| ExportError::Csv { path: path.to_owned(), source };
    let mut w = crate::export_csv::Writer::new();
    w.row(header).map_err(err)?;
    for r in rows {
        w.row(&r).map_err(err)?;
    }
    w.finish().map_err(err)
}

fn opt_time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
}

/// The rows of the `invoice_lines` table.
pub fn line_rows(invoices: &[Invoice]) -> Vec<InvoiceLineRow> {
    let mut rows = Vec::new();
    for inv in invoices {
        for (i, l) in inv.lines.iter().enumerate() {
            rows.push(InvoiceLineRow {
                invoice_number: inv.invoice_number.clone(),
                tenant_id: inv.tenant_id.clone(),
                tier: l.tier.clone(),
                line: i as i64 + 1,
                component: l.component.code().to_owned(),
                model_id: l.model_id.clone(),
                quantity: l.quantity,
                unit: l.unit.to_owned(),
                unit_price: l.unit_price,
                amount: l.amount,
                currency: inv.currency.clone(),
                price_effective_from_ms: l.price_effective_from.map(|t| t.timestamp_millis()),
                price_effective_to_ms: l.price_effective_to.map(|t| t.timestamp_millis()),
                price_book_version: inv.price_book_version.clone(),
                provisional: inv.provisional,
                service_tier: l.class.map(|c| c.service_tier.code().to_owned()),
                long_context: l.class.map(|c| c.long_context),
                adjusts_period: l.adjusts_period.clone(),
                status: status_code(inv.status).to_owned(),
            });
        }
    }
    rows
}

fn status_code(s: DocumentStatus) -> &'static str {
    match s {
        DocumentStatus::Preview => "preview",
        DocumentStatus::Draft => "draft",
        DocumentStatus::Issued => "issued",
    }
}

fn kind_code(k: DocumentKind) -> &'static str {
    match k {
        DocumentKind::Invoice => "invoice",
        DocumentKind::CreditNote => "credit_note",
    }
}

/// The header of `invoices.csv`.
pub const INVOICES_CSV_HEADER: [&str; 27] = [
    "invoice_number",
    "document",
    "status",
    "tenant_id",
    "tier",
    "period",
    "issue_date",
    "due_date",
    "line",
    "component",
    "model_id",
    "quantity",
    "unit",
    "unit_price",
    "amount",
    "usage_quantity",
    "usage_unit",
    "currency",
    "adjusts_period",
    "invoice_total",
    "complete",
    "problems",
    "price_effective_from",
    "price_effective_to",
    "price_book_version",
    "service_tier",
    "long_context",
];

/// The rows of `invoices.csv`: one per line of every document, and one (without line fields)
/// for a document without lines, so that an incomplete one is never missing. Quantities are
/// in the line's unit (`1M tokens`, `call`, `month`, `credit`), exact; amounts have two
/// decimals; the raw count is beside them.
pub fn csv_rows(period: &str, invoices: &[Invoice]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for inv in invoices {
        let problems: Vec<String> = inv
            .problems
            .iter()
            .map(|p| {
                let q = p.quantities(|n| n.to_string());
                let model = p.model_id.as_ref().map(|m| format!("{m}: ")).unwrap_or_default();
                if q.is_empty() {
                    format!("{model}{}", p.reason)
                } else {
                    format!("{model}{} ({q})", p.reason)
                }
            })
            .collect();
        let head = |line: String| {
            vec![
                inv.invoice_number.clone(),
                kind_code(inv.document).to_owned(),
                status_code(inv.status).to_owned(),
                inv.tenant_id.to_string(),
                inv.tier.to_string(),
                period.to_owned(),
                inv.issue_date.map(|d| d.to_string()).unwrap_or_default(),
                inv.due_date.map(|d| d.to_string()).unwrap_or_default(),
                line,
            ]
        };
        let tail = |adjusts: String| {
            vec![
                inv.currency.clone(),
                adjusts,
                cents(inv.total),
                inv.complete.to_string(),
                problems.join("; "),
            ]
        };
        if inv.lines.is_empty() {
            let mut r = head(String::new());
            r.extend(std::iter::repeat_n(String::new(), 8));
            r.extend(tail(String::new()));
            r.extend([String::new(), String::new(), inv.price_book_version.clone()]);
            r.extend([String::new(), String::new()]);
            rows.push(r);
        }
        for (i, l) in inv.lines.iter().enumerate() {
            let mut r = head((i + 1).to_string());
            let quantity = if l.component.per_million() {
                (Decimal::from(l.quantity) / agentmeter_schemas::money::MILLION)
                    .normalize()
                    .to_string()
            } else {
                l.quantity.to_string()
            };
            r.extend([
                l.component.code().to_owned(),
                l.model_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                quantity,
                l.component.billing_unit().to_owned(),
                l.unit_price.normalize().to_string(),
                cents(l.amount),
                l.quantity.to_string(),
                l.unit.to_owned(),
            ]);
            r.extend(tail(l.adjusts_period.clone().unwrap_or_default()));
            r.extend([
                opt_time(l.price_effective_from),
                opt_time(l.price_effective_to),
                inv.price_book_version.clone(),
                l.class.map(|c| c.service_tier.code().to_owned()).unwrap_or_default(),
                l.class.map(|c| c.long_context.to_string()).unwrap_or_default(),
            ]);
            rows.push(r);
        }
    }
    rows
}

/// An amount with exactly two decimals.
fn cents(d: Decimal) -> String {
    let mut d = d.round_dp(2);
    d.rescale(2);
    d.to_string()
}

/// Paths written by [`write()`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// The period's output directory.
    pub dir: PathBuf,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// The `invoice_lines` partition's URI, when a lake was given.
    pub lake_file: Option<String>,
}

/// The directory of per-tenant files inside a period's directory.
pub const TENANTS_DIR: &str = "tenants";
/// The directory of credit notes inside a period's directory (`credit-notes/<n>/<tenant>.*`).
pub const CREDIT_NOTES_DIR: &str = "credit-notes";

/// The documents a customer or finance receives, by path under the period's directory: each
/// tenant's invoice (JSON and HTML), each credit note, `invoices.csv` and the FOCUS
/// InvoiceDetail dataset. A closed period's are recorded at its close and written again as
/// they were.
///
/// # Errors
///
/// An encoding failure.
pub fn documents(
    run: &InvoiceRun,
    credit_notes: &[Invoice],
    info: &super::focus::BillingPeriodInfo,
) -> Result<BTreeMap<String, Vec<u8>>, ExportError> {
    let mut out = BTreeMap::new();
    // Tenant ids are validated (no separator, never `.` or `..`): safe as file names.
    for inv in &run.invoices {
        for (ext, bytes) in document_files(inv)? {
            out.insert(format!("{TENANTS_DIR}/{}.{ext}", inv.tenant_id), bytes);
        }
    }
    for cn in credit_notes {
        for (ext, bytes) in document_files(cn)? {
            out.insert(credit_note_path(&cn.invoice_number, &cn.tenant_id, ext), bytes);
        }
    }
    let label = run.period.label();
    let all: Vec<Invoice> = run.invoices.iter().chain(credit_notes).cloned().collect();
    let path = Path::new("invoices.csv");
    out.insert(
        "invoices.csv".into(),
        csv_bytes(path, &INVOICES_CSV_HEADER, csv_rows(&label, &all).into_iter())?,
    );
    out.insert(
        "focus-invoice-detail.csv".into(),
        super::focus::invoice_detail_csv(Path::new("focus-invoice-detail.csv"), &all, info)?,
    );
    Ok(out)
}

/// A document's two files: its JSON and its HTML page.
///
/// # Errors
///
/// An encoding failure.
pub fn document_files(inv: &Invoice) -> Result<[(&'static str, Vec<u8>); 2], ExportError> {
    Ok([
        ("json", json(inv.tenant_id.as_str(), inv)?),
        ("html", super::html::invoice_page(inv).into_bytes()),
    ])
}

/// Where a credit note's file goes under the period's directory: `credit-notes/<n>/<tenant>.<ext>`,
/// `n` the credit note's revision (the digits its number ends with).
pub fn credit_note_path(number: &str, tenant: &TenantId, ext: &str) -> String {
    let n: u32 = number.rsplit('/').next().and_then(|n| n.parse().ok()).unwrap_or(1);
    format!("{CREDIT_NOTES_DIR}/{n}/{tenant}.{ext}")
}

/// The rest of a run's outputs: internal views, recomputed on every run.
pub struct Internal<'a> {
    /// BillingAccountId in the FOCUS export.
    pub billing_account: &'a str,
    /// The period's status and dates.
    pub info: &'a super::focus::BillingPeriodInfo,
    /// The period's record, for `ledger.csv`.
    pub record: Option<&'a super::ledger::PeriodRecord>,
    /// Where to write the `invoice_lines` partition (not for a preview, nor a closed period,
    /// whose partition stays as its close wrote it).
    pub lake: Option<&'a Lake>,
}

/// Writes a run of an open period as drafts under `out/invoices/YYYY-MM/`, without a lake.
///
/// # Errors
///
/// Any file that cannot be written.
pub fn write_draft(
    run: &InvoiceRun,
    out: &Path,
    billing_account: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Written, ExportError> {
    let currency = run.invoices.first().map_or_else(|| "USD".to_owned(), |i| i.currency.clone());
    let info = super::focus::BillingPeriodInfo {
        period: run.period,
        status: super::model::PeriodStatus::Open,
        created: now,
        last_updated: now,
        issuer: String::new(),
        currency,
        billing_account: billing_account.to_owned(),
    };
    let docs = documents(run, &[], &info)?;
    let dir = out.join("invoices").join(run.period.label());
    let internal = Internal { billing_account, info: &info, record: None, lake: None };
    write(run, &dir, &docs, &internal)
}

/// Writes `docs` and the internal views of `run` under `dir`, and the `invoice_lines`
/// partition of the period into the lake when given.
///
/// # Errors
///
/// Any file that cannot be written.
pub fn write(
    run: &InvoiceRun,
    dir: &Path,
    docs: &BTreeMap<String, Vec<u8>>,
    internal: &Internal<'_>,
) -> Result<Written, ExportError> {
    let mut files = Vec::new();
    let put = |files: &mut Vec<PathBuf>, name: &str, bytes: &[u8]| -> Result<(), ExportError> {
        let path = dir.join(name);
        write_atomic(&path, bytes)?;
        files.push(path);
        Ok(())
    };
    for (name, bytes) in docs {
        put(&mut files, name, bytes)?;
    }
    let m = margin(run);
    put(&mut files, "margin.json", &json("margin", &m)?)?;
    let margin_path = dir.join("margin.csv");
    let mut margin_rows: Vec<Vec<String>> = m
        .tiers
        .iter()
        .map(|t| {
            vec![
                "tier".into(),
                t.tier.clone(),
                String::new(),
                t.revenue.to_string(),
                t.allocated_cost.to_string(),
                t.unallocated_cost.to_string(),
                t.margin.to_string(),
                String::new(),
            ]
        })
        .collect();
    margin_rows.extend(m.tenants.iter().map(|t| {
        vec![
            "tenant".into(),
            t.tier.clone(),
            t.tenant_id.to_string(),
            t.revenue.to_string(),
            t.allocated_cost.to_string(),
            String::new(),
            t.margin.to_string(),
            t.provisional.to_string(),
        ]
    }));
    let margin_csv = csv_bytes(
        &margin_path,
        &[
            "level",
            "tier",
            "tenant_id",
            "revenue",
            "allocated_cost",
            "unallocated_cost",
            "margin",
            "provisional",
        ],
        margin_rows.into_iter(),
    )?;
    put(&mut files, "margin.csv", &margin_csv)?;
    let focus = super::focus::rows(run, internal.billing_account);
    put(&mut files, "focus.csv", &super::focus::csv(&dir.join("focus.csv"), &focus)?)?;
    let focus_batch = super::focus::batch(&focus)
        .map_err(|source| ExportError::Arrow { what: "focus.parquet".into(), source })?;
    let focus_path = dir.join("focus.parquet");
    write_parquet_file(&focus_path, &focus_batch, &[])?;
    files.push(focus_path);
    put(
        &mut files,
        "focus-billing-period.csv",
        &super::focus::billing_period_csv(&dir.join("focus-billing-period.csv"), internal.info)?,
    )?;
    let ledger = internal.record.map(super::ledger::ledger_rows).unwrap_or_default();
    let ledger_path = dir.join("ledger.csv");
    put(
        &mut files,
        "ledger.csv",
        &csv_bytes(&ledger_path, &super::ledger::LEDGER_HEADER, ledger.into_iter())?,
    )?;
    put(&mut files, "summary.json", &json("summary", &summary(run))?)?;

    // Remove documents this run did not write: invoices of tenants no longer billed, and the
    // tenant files of versions that wrote them beside the run-wide ones.
    let keep: std::collections::BTreeSet<PathBuf> = files.iter().cloned().collect();
    let mut dirs = vec![dir.to_path_buf(), dir.join(TENANTS_DIR)];
    if let Ok(entries) = std::fs::read_dir(dir.join(CREDIT_NOTES_DIR)) {
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for d in &dirs {
        let Ok(entries) = std::fs::read_dir(d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let stale = matches!(p.extension().and_then(|x| x.to_str()), Some("json" | "html"))
                && !keep.contains(&p);
            if stale {
                remove_if_exists(&p)?;
            }
        }
    }

    let lake_file = match internal.lake {
        Some(lake) => {
            let rows = line_rows(&run.invoices);
            let batch = invoice_lines_batch(&rows)
                .map_err(|source| ExportError::Arrow { what: INVOICE_LINES.into(), source })?;
            let table =
                TABLES.iter().find(|t| t.name == INVOICE_LINES).expect("invoice_lines is a table");
            // Sorted by tenant_id (column 1), then line (column 3).
            Some(lake.replace_partition(table, run.period.start, &batch, &[1, 3])?)
        }
        None => None,
    };
    Ok(Written { dir: dir.to_path_buf(), files, lake_file })
}
