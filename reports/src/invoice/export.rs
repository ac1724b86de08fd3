//! Writing an invoice run: per-tenant JSON and HTML, the finance CSV, the margin summary,
//! the FOCUS export, the run summary, and the `invoice_lines` table of the lake.
//!
//! ```text
//! OUT/invoices/YYYY-MM/tenants/<tenant>.json   one invoice (amounts are decimal strings)
//! OUT/invoices/YYYY-MM/tenants/<tenant>.html   the same, readable
//! OUT/invoices/YYYY-MM/invoices.csv    one row per line item, every tenant
//! OUT/invoices/YYYY-MM/margin.csv|json revenue, allocated and unallocated AWS cost, margin
//! OUT/invoices/YYYY-MM/focus.csv|parquet  allocated costs, FOCUS 1.2 columns (+ x_ columns)
//! OUT/invoices/YYYY-MM/summary.json    problems, unallocated cost, reconciliation
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
use super::model::{CostPool, Invoice, Problem, Unallocated};

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
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).map_err(err)?;
    for r in rows {
        w.write_record(&r).map_err(err)?;
    }
    w.into_inner().map_err(|e| err(e.into_error().into()))
}

fn opt_time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
}

/// The rows of `invoices.csv` and of the `invoice_lines` table.
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
            });
        }
    }
    rows
}

/// Paths written by [`write`].
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

/// Writes every output of `run` under `out/invoices/YYYY-MM/`, and the `invoice_lines`
/// partition of the period into `lake` when given.
///
/// # Errors
///
/// Any file that cannot be written.
pub fn write(
    run: &InvoiceRun,
    out: &Path,
    lake: Option<&Lake>,
    billing_account: &str,
) -> Result<Written, ExportError> {
    let dir = out.join("invoices").join(run.period.label());
    let tenant_dir = dir.join(TENANTS_DIR);
    let mut files = Vec::new();
    let put = |files: &mut Vec<PathBuf>, name: String, bytes: Vec<u8>| -> Result<(), ExportError> {
        let path = dir.join(name);
        write_atomic(&path, &bytes)?;
        files.push(path);
        Ok(())
    };
    for inv in &run.invoices {
        // Tenant ids are validated (no separator, never `.` or `..`): safe as file names.
        for (ext, bytes) in [
            ("json", json(&inv.invoice_number, inv)?),
            ("html", super::html::invoice_page(inv).into_bytes()),
        ] {
            let path = tenant_dir.join(format!("{}.{ext}", inv.tenant_id));
            write_atomic(&path, &bytes)?;
            files.push(path);
        }
    }
    let rows = line_rows(&run.invoices);
    let csv_path = dir.join("invoices.csv");
    let csv = csv_bytes(
        &csv_path,
        &[
            "invoice_number",
            "tenant_id",
            "tier",
            "period",
            "line",
            "component",
            "model_id",
            "quantity",
            "unit",
            "unit_price",
            "amount",
            "currency",
            "price_effective_from",
            "price_effective_to",
            "price_book_version",
            "provisional",
            "service_tier",
            "long_context",
        ],
        rows.iter().map(|r| {
            vec![
                r.invoice_number.clone(),
                r.tenant_id.to_string(),
                r.tier.to_string(),
                run.period.label(),
                r.line.to_string(),
                r.component.clone(),
                r.model_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                r.quantity.to_string(),
                r.unit.clone(),
                r.unit_price.normalize().to_string(),
                r.amount.to_string(),
                r.currency.clone(),
                opt_time(
                    r.price_effective_from_ms.and_then(chrono::DateTime::from_timestamp_millis),
                ),
                opt_time(r.price_effective_to_ms.and_then(chrono::DateTime::from_timestamp_millis)),
                r.price_book_version.clone(),
                r.provisional.to_string(),
                r.service_tier.clone().unwrap_or_default(),
                r.long_context.map(|b| b.to_string()).unwrap_or_default(),
            ]
        }),
    )?;
    put(&mut files, "invoices.csv".into(), csv)?;
    let m = margin(run);
    put(&mut files, "margin.json".into(), json("margin", &m)?)?;
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
    put(&mut files, "margin.csv".into(), margin_csv)?;
    let focus = super::focus::rows(run, billing_account);
    put(&mut files, "focus.csv".into(), super::focus::csv(&dir.join("focus.csv"), &focus)?)?;
    let focus_batch = super::focus::batch(&focus)
        .map_err(|source| ExportError::Arrow { what: "focus.parquet".into(), source })?;
    let focus_path = dir.join("focus.parquet");
    write_parquet_file(&focus_path, &focus_batch, &[])?;
    files.push(focus_path);
    put(&mut files, "summary.json".into(), json("summary", &summary(run))?)?;

    // Remove invoices of tenants this run no longer bills (and, at the top, the tenant files
    // of versions that wrote them beside the run-wide ones).
    let keep: std::collections::BTreeSet<PathBuf> = files.iter().cloned().collect();
    for d in [&dir, &tenant_dir] {
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

    let lake_file = match lake {
        Some(lake) => {
            let batch = invoice_lines_batch(&rows)
                .map_err(|source| ExportError::Arrow { what: INVOICE_LINES.into(), source })?;
            let table =
                TABLES.iter().find(|t| t.name == INVOICE_LINES).expect("invoice_lines is a table");
            // Sorted by tenant_id (column 1), then line (column 3).
            Some(lake.replace_partition(table, run.period.start, &batch, &[1, 3])?)
        }
        None => None,
    };
    Ok(Written { dir, files, lake_file })
}
