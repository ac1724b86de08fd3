//! `agentmeter reconcile`: tokens of the logs against tokens of the chat spans.

use agentmeter_aggregate::fsio::write_atomic;
use agentmeter_pipeline::Env;
use agentmeter_reports::reconcile::{Reconciliation, Status, reconcile};
use anyhow::{Context, bail};
use chrono::TimeDelta;

use crate::DifferencesFound;
use crate::cli::ReconcileArgs;

/// Differences printed before "... and N more".
const SHOWN: usize = 50;

pub fn execute(env: &Env, a: &ReconcileArgs) -> anyhow::Result<Reconciliation> {
    let (from, end) = crate::lake_cmd::day_range(&a.range)?;
    // The reconciliation reads whole days, last one included.
    let to = end - TimeDelta::days(1);
    let lake = crate::lake_cmd::existing(env, &a.lake)?;
    crate::lake_cmd::ensure_rollups(&lake, from, to + TimeDelta::days(1))?;
    let r = reconcile(&lake, from, to).context("reconciling")?;
    if let Some(out) = &a.out {
        let csv = r.to_csv().context("writing CSV")?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_atomic(out, &csv).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(r)
}

pub fn run(env: &Env, a: &ReconcileArgs) -> anyhow::Result<()> {
    let r = execute(env, a)?;
    let counts = r.counts();
    let n = |s: Status| counts.get(&s).copied().unwrap_or(0);
    println!(
        "{} tenant-days: {} match, {} differ, {} logs only, {} spans only, {} with usage unknown",
        r.lines.len(),
        n(Status::Match),
        n(Status::Differs),
        n(Status::LogsOnly),
        n(Status::SpansOnly),
        n(Status::UsageUnknown),
    );
    let differences: Vec<_> = r.differences().collect();
    if !differences.is_empty() {
        println!(
            "{:<10}  {:<10}  {:<24}  {:<13}  {:>12}  {:>12}  {:>12}  {:>12}  {:>8}  likely cause",
            "day",
            "tier",
            "tenant",
            "status",
            "input",
            "output",
            "cache read",
            "cache write",
            "no usage"
        );
    }
    for l in differences.iter().take(SHOWN) {
        let d = l.difference;
        let line = format!(
            "{:<10}  {:<10}  {:<24}  {:<13}  {:>+12}  {:>+12}  {:>+12}  {:>+12}  {:>8}  {}",
            l.dt,
            l.tier.as_str(),
            l.tenant_id.as_str(),
            l.status.as_str(),
            d.input,
            d.output,
            d.cache_read,
            d.cache_write,
            l.chat_spans_without_usage + l.log_calls_without_usage,
            l.likely_cause.map_or("", |c| c.as_str()),
        );
        println!("{}", line.trim_end());
    }
    if differences.len() > SHOWN {
        println!("... and {} more", differences.len() - SHOWN);
    }
    if !differences.is_empty() {
        println!(
            "(differences are chat spans minus logs, in tokens; \"no usage\" counts the calls, \
             logged or traced, that reported none)"
        );
    }
    let causes: std::collections::BTreeSet<_> =
        differences.iter().filter_map(|l| l.likely_cause).collect();
    for c in causes {
        println!("{}: {}", c.as_str(), c.explain());
    }
    if let Some(out) = &a.out {
        println!("wrote {}", out.display());
    }
    if a.fail_on_difference && !differences.is_empty() {
        bail!(DifferencesFound(differences.len()));
    }
    Ok(())
}
