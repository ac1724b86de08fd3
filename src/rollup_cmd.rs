//! `agentmeter rollup`: rebuild rollup partitions from `usage_events` and `agent_spans`.

use agentmeter_aggregate::{Lake, rebuild_hourly_all};
use agentmeter_schemas::tables::{AGENT_SPANS, USAGE_EVENTS};
use anyhow::Context;

use crate::UsageError;
use crate::cli::RollupArgs;

pub fn run(a: &RollupArgs) -> anyhow::Result<()> {
    if !a.lake.join("_state/lake.json").is_file() {
        anyhow::bail!(UsageError(format!("--lake {} is not an agentmeter lake", a.lake.display())));
    }
    let lake = Lake::open(&a.lake).map_err(|e| UsageError(e.to_string()))?;
    let mut days = lake.reader().partitions(USAGE_EVENTS)?;
    days.extend(lake.reader().partitions(AGENT_SPANS)?);
    days.sort();
    days.dedup();
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let report = rebuild_hourly_all(lake.reader(), &days, threads);
    let rebuilt = report.rebuilt.len();
    println!("rebuilt usage_hourly, tenant_hourly and agent_invocations for {rebuilt} days");
    report.into_result().context("rebuilding rollups")?;
    Ok(())
}
