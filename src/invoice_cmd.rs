//! `agentmeter invoice`: usage × price book, AWS costs allocated, finance exports.

use std::collections::BTreeMap;
use std::path::Path;

use agentmeter_aggregate::layout;
use agentmeter_aggregate::store::{Condition, Put};
use agentmeter_pipeline::Env;
use agentmeter_reports::costs::{self, CostQuery, CostReport};
use agentmeter_reports::invoice::export::{self, RunSummary};
use agentmeter_reports::invoice::{
    CostPool, InvoiceInput, InvoiceRun, Period, compute, roster, usage,
};
use agentmeter_reports::prices::{InferenceProfiles, PriceBook, bedrock, merge_listings};
use anyhow::{Context, bail};

use crate::UsageError;
use crate::cli::InvoiceArgs;

/// Where costs come from.
enum CostSource {
    None,
    File(std::path::PathBuf),
    CostExplorer,
}

/// Where application inference profiles come from, beside the lake's copy.
enum ProfileSource {
    /// Only the lake's copy, if any.
    Lake,
    /// A listing file's text, checked at start-up.
    File(String),
    /// `bedrock:ListInferenceProfiles`.
    Bedrock,
}

/// The validated command.
pub struct InvoicePlan {
    period: Period,
    book: PriceBook,
    profiles: ProfileSource,
    costs: CostSource,
    query: CostQuery,
    roster: BTreeMap<agentmeter_schemas::TenantId, agentmeter_schemas::Tier>,
    /// The AgentCore pools' cost files, read at start-up.
    pool_costs: Vec<(CostPool, CostReport)>,
}

fn plan(a: &InvoiceArgs) -> anyhow::Result<InvoicePlan> {
    let usage = |m: String| anyhow::Error::new(UsageError(m));
    let period = Period::parse(&a.period).map_err(|e| usage(format!("--period: {e}")))?;
    let book = PriceBook::load(&a.prices).map_err(|e| usage(format!("--prices: {e}")))?;
    let profiles = match a.inference_profiles.as_deref() {
        None => ProfileSource::Lake,
        Some("bedrock") => ProfileSource::Bedrock,
        Some(path) => {
            let (_, text) = InferenceProfiles::load_text(Path::new(path))
                .map_err(|e| usage(format!("--inference-profiles: {e}")))?;
            ProfileSource::File(text)
        }
    };
    let mut query = CostQuery::month(period.start);
    query.metric = a.cost_metric.clone();
    query.tag_key = a.cost_tag.clone();
    if let Some(f) = &a.cost_filter {
        let (key, values) = f
            .split_once('=')
            .ok_or_else(|| usage(format!("--cost-filter {f:?} is not KEY=VALUE[,VALUE...]")))?;
        query = query.with_filter(key, values.split(',').map(str::to_owned).collect::<Vec<_>>());
    }
    query.validate().map_err(|e| usage(format!("--cost-*: {e}")))?;
    let costs = match a.costs.as_deref() {
        None => CostSource::None,
        Some("ce") => CostSource::CostExplorer,
        Some(path) => CostSource::File(path.into()),
    };
    let roster = match &a.tenants {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| usage(format!("--tenants {}: {e}", p.display())))?;
            roster::parse(&text).map_err(|e| usage(format!("--tenants {}: {e}", p.display())))?
        }
        None => BTreeMap::new(),
    };
    let mut pool_costs = Vec::new();
    for (pool, flag, path) in [
        (CostPool::AgentRuntime, "--runtime-costs", &a.runtime_costs),
        (CostPool::AgentGateway, "--gateway-costs", &a.gateway_costs),
    ] {
        if let Some(path) = path {
            pool_costs.push((pool, read_costs(flag, path, &query)?));
        }
    }
    Ok(InvoicePlan { period, book, profiles, costs, query, roster, pool_costs })
}

/// A GetCostAndUsage response file given with `flag`; a bad one is a usage error naming both.
fn read_costs(flag: &str, path: &Path, query: &CostQuery) -> anyhow::Result<CostReport> {
    let bad = |e: &dyn std::fmt::Display| UsageError(format!("{flag} {}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(&e))?;
    Ok(costs::parse_file(&text, query).map_err(|e| bad(&e))?)
}

fn load_costs(plan: &InvoicePlan) -> anyhow::Result<Option<CostReport>> {
    match &plan.costs {
        CostSource::None => Ok(None),
        CostSource::File(path) => read_costs("--costs", path, &plan.query).map(Some),
        CostSource::CostExplorer => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let report = rt
                .block_on(async {
                    let client = costs::client_from_env().await;
                    costs::fetch(&client, &plan.query).await
                })
                .context("asking Cost Explorer")?;
            tracing::info!(
                pages = report.pages,
                days = report.days.len(),
                "Costs fetched from Cost Explorer."
            );
            Ok(Some(report))
        }
    }
}

/// The profiles to price with: `source`'s listing merged into the lake's copy (which is
/// replaced only from the version read), or the copy alone; a note saying which.
fn profiles(
    lake: &agentmeter_aggregate::Lake,
    source: &ProfileSource,
) -> anyhow::Result<Option<(InferenceProfiles, String)>> {
    let usage = |m: String| anyhow::Error::new(UsageError(m));
    let listing = match source {
        ProfileSource::Lake => None,
        ProfileSource::File(text) => Some(text.clone()),
        ProfileSource::Bedrock => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let text = rt
                .block_on(async {
                    let client = bedrock::client_from_env().await;
                    bedrock::list_application_profiles(&client).await
                })
                .context("listing application inference profiles")?;
            Some(text)
        }
    };
    let key = layout::INFERENCE_PROFILES;
    for _ in 0..5 {
        let read = lake.store().get(key).context("reading the lake's inference profiles")?;
        let cached = match &read {
            Some(o) => Some(
                std::str::from_utf8(&o.bytes)
                    .with_context(|| format!("{} is not UTF-8", lake.store().uri_of(key)))?,
            ),
            None => None,
        };
        let Some(listing) = &listing else {
            let Some(cached) = cached else { return Ok(None) };
            let p = InferenceProfiles::from_json_str(cached)
                .map_err(|e| usage(format!("{}: {e}", lake.store().uri_of(key))))?;
            let note = format!(
                "application inference profiles: the lake's copy ({} profiles, profiles-{})",
                p.len(),
                p.digest().unwrap_or_default()
            );
            return Ok(Some((p, note)));
        };
        let merged = merge_listings(listing, cached)
            .map_err(|e| usage(format!("--inference-profiles: {e}")))?;
        let p = InferenceProfiles::from_json_str(&merged)
            .map_err(|e| usage(format!("--inference-profiles: {e}")))?;
        let note = format!(
            "application inference profiles: {} profiles (profiles-{}), the listing given merged \
             into the lake's copy",
            p.len(),
            p.digest().unwrap_or_default()
        );
        if cached == Some(merged.as_str()) {
            return Ok(Some((p, note)));
        }
        let cond = Condition::replacing(read.as_ref().map(|o| o.etag.as_str()));
        match lake.store().put(key, merged.into_bytes().into(), cond)? {
            Put::Written { .. } => return Ok(Some((p, note))),
            // Another run saved its listing first: merge into that one.
            Put::Conflict => continue,
        }
    }
    bail!("the lake's inference profiles kept changing under this run; try again")
}

/// Runs an invoice: computes, writes, and returns the run.
pub fn execute(env: &Env, a: &InvoiceArgs) -> anyhow::Result<(InvoiceRun, RunSummary)> {
    let mut plan = plan(a)?;
    let lake = crate::lake_cmd::existing(env, &a.lake)?;
    let profile_note = match profiles(&lake, &plan.profiles)? {
        Some((p, note)) => {
            plan.book = plan.book.clone().with_inference_profiles(p);
            Some(note)
        }
        None => None,
    };
    let report = load_costs(&plan)?;
    crate::lake_cmd::ensure_rollups(&lake, plan.period.start, plan.period.end)?;
    let usage = usage::load(&lake, &plan.period).context("reading usage_hourly")?;
    // The span drivers are read only for the pools that need them.
    let drivers = if plan.pool_costs.is_empty() {
        usage::Drivers::new()
    } else {
        usage::drivers(&lake, &plan.period).context("reading usage_hourly")?
    };
    let input = InvoiceInput {
        period: plan.period,
        pricing: &plan.book,
        usage: &usage,
        costs: report.as_ref(),
        pool_costs: &plan.pool_costs,
        drivers: &drivers,
        roster: &plan.roster,
    };
    let run = compute(&input).map_err(|e| match e {
        agentmeter_reports::invoice::InvoiceError::Currency { .. } => {
            let from = match &plan.costs {
                CostSource::File(p) => format!("--costs {}", p.display()),
                _ => "--costs ce".to_owned(),
            };
            anyhow::Error::new(UsageError(format!("{from}: {e}")))
        }
        other => anyhow::Error::new(other).context("computing invoices"),
    })?;
    let mut run = run;
    run.notes.extend(profile_note);
    let written =
        export::write(&run, &a.out, Some(&lake), &a.billing_account).context("writing invoices")?;
    let summary = export::summary(&run);
    tracing::info!(dir = %written.dir.display(), invoices = run.invoices.len(), "Invoices written.");
    Ok((run, summary))
}

fn render(run: &InvoiceRun, s: &RunSummary, dir: &Path) -> String {
    use std::fmt::Write as _;
    let m = export::margin(run);
    let mut out = String::new();
    let _ = writeln!(out, "invoices for {} into {}", s.period, dir.display());
    let _ = writeln!(out, "  price book               {}", s.price_book_version);
    let _ = writeln!(out, "  invoices                 {:>14}", s.invoices);
    let _ = writeln!(out, "  revenue                  {:>14}", s.revenue);
    for t in &m.tiers {
        let _ = writeln!(
            out,
            "    {:<20} revenue {:>12}  AWS cost {:>10} (+{} unallocated)  margin {:>12}",
            t.tier, t.revenue, t.allocated_cost, t.unallocated_cost, t.margin
        );
    }
    let r = &s.reconciliation;
    let _ = writeln!(out, "  AWS cost (Cost Explorer) {:>14}", r.cost_explorer_total);
    let _ = writeln!(out, "    allocated to tenants   {:>14}", r.allocated);
    let _ = writeln!(out, "    unallocated            {:>14}", r.unallocated);
    let _ = writeln!(
        out,
        "  check: allocated + unallocated = Cost Explorer total: {}",
        if r.reconciled { "yes" } else { "NO (please report this)" }
    );
    if !s.usage_without_cost.is_empty() {
        let _ = writeln!(
            out,
            "  usage without cost on {} day-tiers (see summary.json)",
            s.usage_without_cost.len()
        );
    }
    let provisional = run.invoices.iter().filter(|i| i.provisional).count();
    if provisional > 0 {
        let _ = writeln!(out, "  provisional (estimated costs): {provisional} invoices");
    }
    if !s.complete {
        let _ = writeln!(out, "  INCOMPLETE: {} unbilled usage items:", s.problems.len());
        for p in s.problems.iter().take(10) {
            let model = p.model_id.as_ref().map(|m| format!(" {m}")).unwrap_or_default();
            let quantities = p.quantities(|n| n.to_string());
            let quantities =
                if quantities.is_empty() { String::new() } else { format!(" ({quantities})") };
            let _ = writeln!(
                out,
                "    {} ({}){}: {}{}",
                p.tenant_id, p.tier, model, p.reason, quantities
            );
        }
    }
    out
}

pub fn run(env: &Env, a: &InvoiceArgs) -> anyhow::Result<InvoiceRun> {
    let (run, summary) = execute(env, a)?;
    let dir = a.out.join("invoices").join(run.period.label());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary).context("encoding the summary")?);
    } else {
        print!("{}", render(&run, &summary, &dir));
    }
    if !summary.complete {
        let tokens: i64 = summary.problems.iter().map(|p| p.tokens).sum();
        let tool_calls: i64 = summary.problems.iter().map(|p| p.tool_calls).sum();
        let unknown: i64 = summary.problems.iter().map(|p| p.usage_unknown).sum();
        bail!(
            "{} of {} invoices are incomplete: {} tokens and {} tool calls have no price, {} model calls reported no usage (see {}); nothing was billed at zero",
            run.invoices.iter().filter(|i| !i.complete).count(),
            run.invoices.len(),
            tokens,
            tool_calls,
            unknown,
            dir.join("summary.json").display()
        );
    }
    Ok(run)
}
