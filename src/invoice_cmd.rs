//! `agentmeter invoice`: usage × price book, AWS costs allocated, finance exports.

use std::collections::BTreeMap;
use std::path::Path;

use agentmeter_aggregate::Lake;
use agentmeter_aggregate::layout;
use agentmeter_aggregate::store::{Condition, Put};
use agentmeter_pipeline::Env;
use agentmeter_reports::costs::{self, CostQuery, CostReport};
use agentmeter_reports::invoice::export::{self, Internal, RunSummary};
use agentmeter_reports::invoice::focus::BillingPeriodInfo;
use agentmeter_reports::invoice::ledger::{self, PeriodRecord};
use agentmeter_reports::invoice::reprice::{late_usage, reprice, stored_book};
use agentmeter_reports::invoice::{
    CostPool, DocumentKind, InvoiceInput, InvoiceRun, Issuer, Period, PeriodStatus, compute,
    roster, usage,
};
use agentmeter_reports::prices::{InferenceProfiles, PriceBook, bedrock, merge_listings};
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};

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
    roster: roster::Roster,
    /// The price book's text, recorded when the period is closed.
    book_text: String,
    /// The roster's text, recorded likewise.
    roster_text: Option<String>,
    /// The inference profiles the run priced with (the lake's copy, merged), recorded likewise.
    profiles_text: Option<String>,
    /// The AgentCore pools' cost files, read at start-up.
    pool_costs: Vec<(CostPool, CostReport)>,
}

fn plan(a: &InvoiceArgs) -> anyhow::Result<InvoicePlan> {
    let usage = |m: String| anyhow::Error::new(UsageError(m));
    let period = Period::parse(&a.period).map_err(|e| usage(format!("--period: {e}")))?;
    let book = PriceBook::load(&a.prices).map_err(|e| usage(format!("--prices: {e}")))?;
    // Read again as text to record it at a close; the parse above bounded its size.
    let book_text = std::fs::read_to_string(&a.prices)
        .map_err(|e| usage(format!("--prices {}: {e}", a.prices.display())))?;
    if PriceBook::from_toml_str(&book_text).map(|b| b.version()).ok() != Some(book.version()) {
        return Err(usage(format!(
            "--prices {}: the file changed while it was read",
            a.prices.display()
        )));
    }
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
    let (roster, roster_text) = match &a.tenants {
        Some(p) => {
            let (r, text) = read_roster("--tenants", p)?;
            (r, Some(text))
        }
        None => (roster::Roster::default(), None),
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
    Ok(InvoicePlan {
        period,
        book,
        profiles,
        costs,
        query,
        roster,
        pool_costs,
        book_text,
        roster_text,
        profiles_text: None,
    })
}

/// A tenant roster file given with `flag` (an option or a configuration key), and its text;
/// a bad one is a usage error naming both.
pub fn read_roster(flag: &str, path: &Path) -> Result<(roster::Roster, String), UsageError> {
    let bad = |e: &dyn std::fmt::Display| UsageError(format!("{flag} {}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(&e))?;
    let r = roster::parse_roster(&text).map_err(|e| bad(&e))?;
    Ok((r, text))
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
            let report = rt.block_on(async {
                let client = costs::client_from_env()
                    .await
                    .map_err(|e| anyhow::Error::new(UsageError(format!("--costs ce: {e}"))))?;
                costs::fetch(&client, &plan.query).await.context("asking Cost Explorer")
            })?;
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
) -> anyhow::Result<Option<(InferenceProfiles, String, String)>> {
    let usage = |m: String| anyhow::Error::new(UsageError(m));
    let listing = match source {
        ProfileSource::Lake => None,
        ProfileSource::File(text) => Some(text.clone()),
        ProfileSource::Bedrock => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let text = rt.block_on(async {
                let client = bedrock::client_from_env().await.map_err(|e| {
                    anyhow::Error::new(UsageError(format!("--inference-profiles bedrock: {e}")))
                })?;
                bedrock::list_application_profiles(&client)
                    .await
                    .context("listing application inference profiles")
            })?;
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
            return Ok(Some((p, note, cached.to_owned())));
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
            return Ok(Some((p, note, merged)));
        }
        let cond = Condition::replacing(read.as_ref().map(|o| o.etag.as_str()));
        match lake.store().put(key, merged.clone().into_bytes().into(), cond)? {
            Put::Written { .. } => return Ok(Some((p, note, merged))),
            // Another run saved its listing first: merge into that one.
            Put::Conflict => continue,
        }
    }
    bail!("the lake's inference profiles kept changing under this run; try again")
}

/// What the run does with the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Draft invoices of an open period (numbered; the `invoice_lines` partition replaced).
    Draft,
    /// Issue and close.
    Close,
    /// Credit a closed period's invoices and open it again.
    Reopen,
    /// The open period to date: not numbered, not recorded.
    Preview,
}

/// What a run did, beside its invoices.
pub struct Outcome {
    /// The period's directory.
    pub dir: std::path::PathBuf,
}

/// The priced inputs of a closed period, as recorded at its close.
fn describe_late(l: &ledger::Late, billed_in: &str) -> String {
    let c = l.total();
    format!(
        "late usage for {}: {} events ({} model calls, {} tool calls) of {} tenants, billed in {} \
         as adjustment lines at {}'s prices",
        l.period,
        c.calls.saturating_add(c.tool_calls),
        c.calls,
        c.tool_calls,
        l.counts.len().max(l.lines.len()),
        billed_in,
        l.period
    )
}

fn info(
    period: Period,
    rec: Option<&PeriodRecord>,
    currency: &str,
    issuer: Option<&Issuer>,
    billing_account: &str,
    now: DateTime<Utc>,
) -> BillingPeriodInfo {
    BillingPeriodInfo {
        period,
        status: rec.map_or(PeriodStatus::Open, |r| r.status),
        created: rec.map_or(now, |r| r.created),
        last_updated: rec.map_or(now, |r| r.last_updated),
        issuer: issuer
            .map(|i| i.name.clone())
            .or_else(|| rec.and_then(|r| r.issuer.clone()))
            .unwrap_or_default(),
        currency: currency.to_owned(),
        billing_account: billing_account.to_owned(),
    }
}

/// The files of the credit notes recorded for a period, by path under its directory.
fn credit_note_files(
    lake: &Lake,
    rec: Option<&PeriodRecord>,
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for d in rec.iter().flat_map(|r| &r.documents) {
        if d.kind != DocumentKind::CreditNote {
            continue;
        }
        for (ext, digest) in [("json", &d.digest), ("html", &d.html_digest)] {
            let path = export::credit_note_path(&d.number, &d.tenant_id, ext);
            out.insert(path, ledger::get_blob(lake.store().as_ref(), digest)?);
        }
    }
    Ok(out)
}

/// Runs an invoice: computes, writes, and returns the run.
pub fn execute(env: &Env, a: &InvoiceArgs) -> anyhow::Result<(InvoiceRun, RunSummary)> {
    execute_with(env, a).map(|(run, summary, _)| (run, summary))
}

fn execute_with(env: &Env, a: &InvoiceArgs) -> anyhow::Result<(InvoiceRun, RunSummary, Outcome)> {
    let usage_err = |m: String| anyhow::Error::new(UsageError(m));
    let mut plan = plan(a)?;
    let mode = match (a.close, a.reopen, a.preview) {
        (true, _, _) => Mode::Close,
        (_, true, _) => Mode::Reopen,
        (_, _, true) => Mode::Preview,
        _ => Mode::Draft,
    };
    let now = Utc::now();
    let today = a.issue_date.unwrap_or_else(|| now.date_naive());
    let lake = crate::lake_cmd::existing(env, &a.lake)?;
    let records = ledger::load_all(lake.store().as_ref()).context("reading the billing ledger")?;
    let label = plan.period.label();
    let this = records.get(&plan.period.start);
    let closed = this.filter(|(r, _)| r.is_closed());
    let dir = match mode {
        Mode::Preview => a.out.join("previews").join(&label),
        _ => a.out.join("invoices").join(&label),
    };
    let mut messages = Vec::new();

    // A closed period: its documents as issued; the internal views from today's costs.
    if let Some((rec, etag)) = closed {
        match mode {
            Mode::Preview => {
                return Err(usage_err(format!(
                    "--preview: {label} is closed (its invoices were issued); run without \
                     --preview to write them again, or --reopen it"
                )));
            }
            Mode::Reopen => return reopen(&lake, a, &plan, rec, etag, &records, today, now, dir),
            Mode::Draft | Mode::Close => {}
        }
        let (mut run, counts) = reprice(&lake, rec)?;
        let late = ledger::late(rec, &run, &counts, &records);
        let report = load_costs(&plan)?;
        if report.is_some() || !plan.pool_costs.is_empty() {
            // The margin view follows Cost Explorer (estimated days become final); the
            // customers' documents do not change.
            let (book, roster) = stored_book(&lake, rec)?;
            let usage = usage::load(&lake, &plan.period).context("reading usage_hourly")?;
            let drivers = if plan.pool_costs.is_empty() {
                usage::Drivers::new()
            } else {
                usage::drivers(&lake, &plan.period).context("reading usage_hourly")?
            };
            run = compute(&InvoiceInput {
                period: plan.period,
                pricing: &book,
                usage: &usage,
                costs: report.as_ref(),
                pool_costs: &plan.pool_costs,
                drivers: &drivers,
                roster: &roster,
            })
            .context("computing the margin view")?;
        }
        apply_issued(&mut run, rec);
        let mut docs = BTreeMap::new();
        for (path, digest) in &rec.outputs {
            docs.insert(path.clone(), ledger::get_blob(lake.store().as_ref(), digest)?);
        }
        let info = info(plan.period, Some(rec), &rec.currency, None, &a.billing_account, now);
        let internal = Internal {
            billing_account: &a.billing_account,
            info: &info,
            record: Some(rec),
            lake: None,
        };
        export::write(&run, &dir, &docs, &internal).context("writing invoices")?;
        messages.push(format!(
            "{label} is closed (since {}): its {} documents were written again as issued",
            rec.last_updated.format("%Y-%m-%d %H:%M UTC"),
            rec.outputs.len()
        ));
        if !late.is_empty() {
            let next = ledger::billing_period_of_late_usage(plan.period.start, &records);
            messages.push(describe_late(&late, &Period::containing(next).label()));
        }
        let mut summary = export::summary(&run);
        summary.period_status = "closed".into();
        summary.messages = messages.clone();
        return Ok((run, summary, Outcome { dir }));
    }
    if mode == Mode::Reopen {
        return Err(usage_err(format!("--reopen: {label} is not closed")));
    }

    let profile_note = match profiles(&lake, &plan.profiles)? {
        Some((p, note, text)) => {
            plan.profiles_text = Some(text);
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
        roster: &plan.roster.tiers,
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
    let late = late_usage(&lake, &plan.period, &records)?;
    for l in &late {
        messages.push(describe_late(l, &label));
    }
    let currency = plan.book.currency().to_owned();
    ledger::add_adjustments(&mut run, &late, &currency, &plan.book.version());
    let rec = this.map(|(r, _)| r);
    match mode {
        Mode::Preview => ledger::preview(&mut run),
        _ => ledger::number(&mut run, rec),
    }
    let issuer = plan.roster.issuer.clone();
    for inv in &mut run.invoices {
        inv.issuer = issuer.clone();
        inv.bill_to = plan.roster.bill_to.get(&inv.tenant_id).cloned();
    }
    let mut record = None;
    if mode == Mode::Close {
        if run.invoices.iter().any(|i| !i.complete) {
            return Err(usage_err(format!(
                "--close: {} of {} invoices of {label} are incomplete (usage without a price); \
                 nothing was issued. Fix the price book (see {}) and close again",
                run.invoices.iter().filter(|i| !i.complete).count(),
                run.invoices.len(),
                dir.join("summary.json").display()
            )));
        }
        ledger::issue(&mut run, today, issuer.as_ref().map_or(30, |i| i.payment_terms_days));
        record = Some(closing_record(&lake, &plan, this, &late, &usage, now)?);
    }
    let rec_now = record.as_ref().or(rec);
    let info = info(plan.period, rec_now, &currency, issuer.as_ref(), &a.billing_account, now);
    let mut docs = export::documents(&run, &[], &info).context("encoding invoices")?;
    docs.extend(credit_note_files(&lake, rec_now)?);
    if let Some(r) = record.as_mut() {
        // Recorded before they are written anywhere: the record is the truth.
        close(&lake, r, &run, &docs, this.map(|(_, e)| e.as_str()))?;
        messages.push(format!(
            "{label} closed: {} invoices issued on {today}, recorded in the lake",
            run.invoices.len()
        ));
    }
    let rec_now = record.as_ref().or(rec);
    let internal = Internal {
        billing_account: &a.billing_account,
        info: &info,
        record: rec_now,
        lake: (mode != Mode::Preview).then_some(&lake),
    };
    let written = export::write(&run, &dir, &docs, &internal).context("writing invoices")?;
    let mut summary = export::summary(&run);
    if summary.price_book_version.is_empty() {
        summary.price_book_version = plan.book.version();
    }
    if run.invoices.is_empty() {
        messages.push(format!(
            "no usage in the lake for {label}{}: no invoices were written",
            if plan.roster.tiers.is_empty() { " and no roster (--tenants)" } else { "" }
        ));
    }
    summary.period_status = if record.is_some() { "closed" } else { "open" }.into();
    if mode == Mode::Preview {
        summary.period_status = "open (preview)".into();
    }
    summary.messages = messages.clone();
    tracing::info!(dir = %written.dir.display(), invoices = run.invoices.len(), "Invoices written.");
    Ok((run, summary, Outcome { dir }))
}

/// Revenue of a closed period is what was issued: each tenant's invoice in force (a tenant
/// whose usage all came late has none).
fn apply_issued(run: &mut InvoiceRun, rec: &PeriodRecord) {
    for inv in &mut run.invoices {
        // Issued complete; what late usage cannot price is reported where it is billed.
        inv.complete = true;
        inv.problems.clear();
        inv.total = rec
            .in_force()
            .find(|d| d.tenant_id == inv.tenant_id)
            .map_or(rust_decimal::Decimal::ZERO, |d| d.total);
        inv.margin = inv.total - inv.allocated_cost;
    }
}

/// The record of a period being closed: the previous one (a reopened period's documents and
/// credit notes) or a new one, with the inputs that priced it put as blobs.
fn closing_record(
    lake: &Lake,
    plan: &InvoicePlan,
    this: Option<&(PeriodRecord, String)>,
    late: &[ledger::Late],
    usage: &BTreeMap<usage::SeriesKey, usage::Series>,
    now: DateTime<Utc>,
) -> anyhow::Result<PeriodRecord> {
    let store = lake.store().as_ref();
    let book = ledger::put_blob(store, plan.book_text.as_bytes())?;
    let profiles =
        plan.profiles_text.as_ref().map(|t| ledger::put_blob(store, t.as_bytes())).transpose()?;
    let roster =
        plan.roster_text.as_ref().map(|t| ledger::put_blob(store, t.as_bytes())).transpose()?;
    let mut rec = match this {
        Some((r, _)) => r.clone(),
        None => PeriodRecord {
            period: plan.period.label(),
            status: PeriodStatus::Closed,
            created: now,
            last_updated: now,
            closes: 0,
            issuer: None,
            currency: plan.book.currency().to_owned(),
            inputs: ledger::Inputs::default(),
            documents: Vec::new(),
            outputs: BTreeMap::new(),
            billed: BTreeMap::new(),
            adjustments: Vec::new(),
        },
    };
    rec.status = PeriodStatus::Closed;
    rec.last_updated = now;
    rec.closes += 1;
    rec.issuer = plan.roster.issuer.as_ref().map(|i| i.name.clone());
    rec.currency = plan.book.currency().to_owned();
    rec.inputs = ledger::Inputs {
        price_book: book,
        price_book_version: plan.book.version(),
        profiles,
        roster,
    };
    rec.billed = ledger::counts(usage, |t| {
        plan.book.plan(t).map_or(agentmeter_reports::prices::UsageSource::Logs, |p| p.usage_source)
    });
    rec.adjustments = late
        .iter()
        .flat_map(|l| {
            l.counts.iter().map(|(t, c)| ledger::AdjustmentRecord {
                period: l.period.clone(),
                tenant_id: t.clone(),
                counts: *c,
            })
        })
        .collect();
    Ok(rec)
}

/// Records the close: every document as a blob, then the period's record (created if absent,
/// else replaced from the version read).
fn close(
    lake: &Lake,
    rec: &mut PeriodRecord,
    run: &InvoiceRun,
    docs: &BTreeMap<String, Vec<u8>>,
    read: Option<&str>,
) -> anyhow::Result<()> {
    let store = lake.store().as_ref();
    let mut outputs = BTreeMap::new();
    for (path, bytes) in docs {
        outputs.insert(path.clone(), ledger::put_blob(store, bytes)?);
    }
    for inv in &run.invoices {
        let of = |ext: &str| {
            outputs
                .get(&format!("{}/{}.{ext}", export::TENANTS_DIR, inv.tenant_id))
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no {ext} document for {}", inv.tenant_id))
        };
        rec.documents.push(ledger::document_record(inv, of("json")?, of("html")?));
    }
    rec.outputs = outputs;
    ledger::save(store, rec, read).map_err(|e| match e {
        ledger::LedgerError::Conflict { period } => anyhow::Error::new(UsageError(format!(
            "{period} was closed or changed by another run meanwhile; nothing was issued by this \
             one. Run the command again to see the period as it stands"
        ))),
        other => anyhow::Error::new(other),
    })
}

/// Reopens a closed period: a credit note for each invoice in force, recorded, and the period
/// open again.
#[allow(clippy::too_many_arguments)]
fn reopen(
    lake: &Lake,
    a: &InvoiceArgs,
    plan: &InvoicePlan,
    rec: &PeriodRecord,
    etag: &str,
    records: &BTreeMap<NaiveDate, (PeriodRecord, String)>,
    today: NaiveDate,
    now: DateTime<Utc>,
    dir: std::path::PathBuf,
) -> anyhow::Result<(InvoiceRun, RunSummary, Outcome)> {
    ledger::check_reopen(rec, records)
        .map_err(|m| anyhow::Error::new(UsageError(format!("--reopen: {m}"))))?;
    let store = lake.store().as_ref();
    let mut next = rec.clone();
    let mut notes = Vec::new();
    for d in rec.in_force() {
        let n = next
            .documents
            .iter()
            .filter(|x| x.tenant_id == d.tenant_id && x.kind == DocumentKind::CreditNote)
            .count()
            + 1;
        let mut cn = ledger::credit_note(&plan.period, d, n, d.tier.clone(), today);
        cn.issuer = plan.roster.issuer.clone();
        cn.bill_to = plan.roster.bill_to.get(&d.tenant_id).cloned();
        let files = export::document_files(&cn)?;
        let json = ledger::put_blob(store, &files[0].1)?;
        let html = ledger::put_blob(store, &files[1].1)?;
        for x in next.documents.iter_mut().filter(|x| x.number == d.number) {
            x.status = ledger::LedgerStatus::Credited;
            x.credited_by = Some(cn.invoice_number.clone());
        }
        next.documents.push(ledger::document_record(&cn, json, html));
        notes.push(cn);
    }
    next.status = PeriodStatus::Open;
    next.last_updated = now;
    ledger::save(store, &next, Some(etag))?;
    let label = plan.period.label();
    let info = info(plan.period, Some(&next), &next.currency, None, &a.billing_account, now);
    let docs = credit_note_files(lake, Some(&next))?;
    let run = InvoiceRun {
        period: plan.period,
        invoices: Vec::new(),
        allocations: Vec::new(),
        unallocated: Vec::new(),
        usage_without_cost: Vec::new(),
        cost_total: rust_decimal::Decimal::ZERO,
        cost_total_exact: rust_decimal::Decimal::ZERO,
        notes: Vec::new(),
        list_cost: BTreeMap::new(),
    };
    let internal = Internal {
        billing_account: &a.billing_account,
        info: &info,
        record: Some(&next),
        lake: None,
    };
    export::write(&run, &dir, &docs, &internal).context("writing credit notes")?;
    let messages = vec![format!(
        "{label} reopened: {} credit notes issued on {today} ({}); run `invoice --close` to issue \
         replacement invoices",
        notes.len(),
        notes.iter().map(|c| c.invoice_number.as_str()).collect::<Vec<_>>().join(", ")
    )];
    let mut summary = export::summary(&run);
    summary.period_status = "open (reopened)".into();
    summary.messages = messages.clone();
    Ok((run, summary, Outcome { dir }))
}

fn render(run: &InvoiceRun, s: &RunSummary, dir: &Path) -> String {
    use std::fmt::Write as _;
    let m = export::margin(run);
    let mut out = String::new();
    let _ = writeln!(out, "invoices for {} ({}) into {}", s.period, s.period_status, dir.display());
    for m in &s.messages {
        let _ = writeln!(out, "  {m}");
    }
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
        let _ = writeln!(
            out,
            "  margin provisional for {provisional} tenants: Cost Explorer still estimates some \
             days (their invoices do not depend on it)"
        );
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
    let (run, summary, outcome) = execute_with(env, a)?;
    let dir = outcome.dir;
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
