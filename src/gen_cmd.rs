//! `agentmeter gen`.

use agentmeter_synth::{self as synth, SynthConfig};
use anyhow::Context;
use chrono::NaiveDate;

use crate::UsageError;
use crate::cli::GenArgs;

pub fn config(a: &GenArgs) -> anyhow::Result<SynthConfig> {
    let month = NaiveDate::parse_from_str(&format!("{}-01", a.month), "%Y-%m-%d")
        .map_err(|_| UsageError(format!("--month {:?} is not a YYYY-MM month", a.month)))?;
    let cfg = SynthConfig {
        seed: a.seed,
        month,
        tenants: a.tenants,
        events: a.events,
        noisy: a.noisy,
        dirty: a.dirty,
        duplicate_permille: a.duplicate_permille,
        span_permille: a.span_permille,
        ndjson_only: a.ndjson_only,
        reused_agent_permille: a.reused_agent_permille,
        missing_usage_permille: a.missing_usage_permille,
        price_class_permille: a.price_class_permille,
        profile_arn_permille: a.profile_arn_permille,
    };
    cfg.validate().map_err(UsageError)?;
    Ok(cfg)
}

pub fn run(a: &GenArgs) -> anyhow::Result<()> {
    let cfg = config(a)?;
    let expected = synth::generate(&cfg, &a.out)
        .with_context(|| format!("generating into {}", a.out.display()))?;
    println!("{}", expected.summary_line());
    println!("inputs:      {}", a.out.join("input").display());
    println!("expectation: {}", a.out.join("expected.json").display());
    Ok(())
}
