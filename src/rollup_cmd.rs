//! `agentmeter rollup`: rebuild the rollups of every day whose rollups are not current (or of
//! every day with `--all`), from `usage_events` and `agent_spans`. Safe at any time, from any
//! machine: a rebuild replaces a rollup only from the version it read.

use agentmeter_aggregate::rebuild_hourly_all;
use agentmeter_pipeline::Env;
use anyhow::Context;
use chrono::NaiveDate;

use crate::cli::RollupArgs;

pub fn run(env: &Env, a: &RollupArgs) -> anyhow::Result<()> {
    let lake = crate::lake_cmd::existing(env, &a.lake)?;
    let days: Vec<NaiveDate> = lake
        .stale_rollups(NaiveDate::MIN, NaiveDate::MAX)
        .context("checking the rollups")?
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let report = rebuild_hourly_all(&lake, &days, threads);
    let rebuilt = report.rebuilt.len();
    println!(
        "rebuilt usage_hourly, tenant_hourly and agent_invocations for {rebuilt} days that were not up to date"
    );
    report.into_result().context("rebuilding rollups")?;
    Ok(())
}
