//! `agentmeter report`: one self-contained HTML page of a period.

use std::collections::BTreeMap;

use agentmeter_aggregate::fsio::write_atomic;
use agentmeter_pipeline::Env;
use agentmeter_reports::invoice::Period;
use agentmeter_reports::report::{
    PoolCapacity, ReportOptions, gather, parse_flags, parse_margin, render,
};
use anyhow::Context;

use crate::UsageError;
use crate::cli::ReportArgs;

/// Gathers and writes the report.
pub fn write(env: &Env, a: &ReportArgs) -> anyhow::Result<()> {
    let period = Period::parse(&a.period).map_err(|e| UsageError(format!("--period: {e}")))?;
    let policy = crate::flags_cmd::load_policy(a.policy.as_deref())?;
    let mut opts = ReportOptions {
        top_tenants: a.top,
        share_threshold: policy.share_threshold,
        saturation_threshold: policy.saturation_threshold,
        capacity: policy
            .tiers
            .iter()
            .map(|(t, p)| (t.clone(), PoolCapacity { requests_per_hour: p.requests_per_hour }))
            .collect::<BTreeMap<_, _>>(),
        ..ReportOptions::default()
    };
    if let Some(dir) = &a.outputs {
        let margin = dir.join("invoices").join(period.label()).join("margin.json");
        if let Ok(text) = std::fs::read_to_string(&margin) {
            opts.margin =
                Some(parse_margin(&text).with_context(|| format!("reading {}", margin.display()))?);
        }
        let flags = dir.join("flags.jsonl");
        if let Ok(text) = std::fs::read_to_string(&flags) {
            opts.flags =
                parse_flags(&text).with_context(|| format!("reading {}", flags.display()))?;
        }
    }
    let lake = crate::lake_cmd::existing(env, &a.lake)?;
    if opts.flags.is_empty() {
        // No flags.jsonl given: what the scheduled flags runs recorded in the lake.
        opts.flags = agentmeter_reports::flags::table::flags_in(&lake, period.start, period.end)
            .context("reading the flags table")?;
    }
    crate::lake_cmd::ensure_rollups(&lake, period.start, period.end)?;
    let data = gather(&lake, period, &opts).map_err(|e| match e {
        agentmeter_reports::report::ReportError::NoUsage { .. } => {
            anyhow::Error::new(UsageError(e.to_string()))
        }
        other => anyhow::Error::new(other).context("gathering the report"),
    })?;
    write_atomic(&a.out, render(&data).as_bytes())
        .with_context(|| format!("writing {}", a.out.display()))?;
    Ok(())
}

pub fn run(env: &Env, a: &ReportArgs) -> anyhow::Result<()> {
    write(env, a)?;
    println!("{}", a.out.display());
    Ok(())
}
