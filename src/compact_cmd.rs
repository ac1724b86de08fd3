//! `agentmeter compact`: merge the small files of `usage_events` and `agent_spans` partitions
//! (one per commit of a followed stream) into Athena-sized files; every row is kept.

use std::collections::BTreeSet;

use agentmeter_aggregate::Lake;
use agentmeter_aggregate::compact::{CompactStats, compact};
use agentmeter_schemas::tables::{AGENT_SPANS, USAGE_EVENTS};
use agentmeter_schemas::{AgentSpan, UsageEvent};
use anyhow::Context;

use crate::UsageError;
use crate::cli::CompactArgs;

pub fn run(a: &CompactArgs) -> anyhow::Result<()> {
    if !a.lake.join("_state/lake.json").is_file() {
        anyhow::bail!(UsageError(format!("--lake {} is not an agentmeter lake", a.lake.display())));
    }
    if let (Some(f), Some(t)) = (a.from, a.to)
        && f > t
    {
        anyhow::bail!(UsageError(format!("--from {f} is after --to {t}")));
    }
    let lake = Lake::open(&a.lake).map_err(|e| UsageError(e.to_string()))?;
    let max_rows = usize::try_from(a.max_rows_per_file).unwrap_or(usize::MAX);
    let in_range = |table: &'static str| -> anyhow::Result<BTreeSet<chrono::NaiveDate>> {
        Ok(lake
            .reader()
            .partitions(table)?
            .into_iter()
            .filter(|d| a.from.is_none_or(|f| *d >= f) && a.to.is_none_or(|t| *d <= t))
            .collect())
    };
    let report = |table: &str, s: &CompactStats| {
        println!(
            "{table}: {} partitions compacted, {} files into {}, {} rows kept",
            s.partitions, s.files_before, s.files_after, s.rows
        );
    };
    let days = in_range(USAGE_EVENTS)?;
    if !days.is_empty() {
        let s = compact::<UsageEvent>(&lake, &days, max_rows).context("compacting usage_events")?;
        report(USAGE_EVENTS, &s);
    }
    let days = in_range(AGENT_SPANS)?;
    if !days.is_empty() {
        let s = compact::<AgentSpan>(&lake, &days, max_rows).context("compacting agent_spans")?;
        report(AGENT_SPANS, &s);
    }
    Ok(())
}
