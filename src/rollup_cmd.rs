//! `agentmeter rollup`: rebuild every rollup partition from `usage_events`.

use agentmeter_aggregate::{Lake, rebuild_hourly_all};
use agentmeter_schemas::tables::USAGE_EVENTS;
use anyhow::Context;

use crate::UsageError;
use crate::cli::RollupArgs;

pub fn run(a: &RollupArgs) -> anyhow::Result<()> {
    if !a.lake.join("_state/lake.json").is_file() {
        anyhow::bail!(UsageError(format!("--lake {} is not an agentmeter lake", a.lake.display())));
    }
    let lake = Lake::open(&a.lake).map_err(|e| UsageError(e.to_string()))?;
    let days = lake.reader().partitions(USAGE_EVENTS)?;
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    rebuild_hourly_all(lake.reader(), &days, threads).context("rebuilding rollups")?;
    println!("rebuilt usage_hourly and tenant_hourly for {} days", days.len());
    Ok(())
}
