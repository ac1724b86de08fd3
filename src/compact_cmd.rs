//! `agentmeter compact`: merge the small files of `usage_events` and `agent_spans` partitions
//! (one per commit of a followed stream, one per Lambda batch) into Athena-sized files, each
//! record once; then rebuild the rollups of the days rewritten. Safe beside writers and
//! readers: no row is ever missing, and a record stored twice is counted once by every reader.

use std::collections::BTreeSet;

use agentmeter_aggregate::compact::{CompactStats, compact};
use agentmeter_pipeline::Env;
use agentmeter_schemas::tables::{AGENT_SPANS, USAGE_EVENTS};
use agentmeter_schemas::{AgentSpan, UsageEvent};
use anyhow::Context;

use crate::UsageError;
use crate::cli::CompactArgs;

pub fn run(env: &Env, a: &CompactArgs) -> anyhow::Result<()> {
    if let (Some(f), Some(t)) = (a.from, a.to)
        && t <= f
    {
        anyhow::bail!(UsageError(format!(
            "--to {t} is not after --from {f} (--to is exclusive: the day after the last)"
        )));
    }
    let lake = crate::lake_cmd::existing(env, &a.lake)?;
    let max_rows = usize::try_from(a.max_rows_per_file).unwrap_or(usize::MAX);
    let in_range = |table: &'static str| -> anyhow::Result<BTreeSet<chrono::NaiveDate>> {
        Ok(lake
            .partitions(table)?
            .into_iter()
            .filter(|d| a.from.is_none_or(|f| *d >= f) && a.to.is_none_or(|t| *d < t))
            .collect())
    };
    let report = |table: &str, s: &CompactStats| {
        println!(
            "{table}: {} partitions compacted, {} files into {}, {} rows kept, {} extra copies removed",
            s.partitions, s.files_before, s.files_after, s.rows, s.duplicates
        );
    };
    let mut touched = BTreeSet::new();
    let days = in_range(USAGE_EVENTS)?;
    if !days.is_empty() {
        let s = compact::<UsageEvent>(&lake, &days, max_rows).context("compacting usage_events")?;
        report(USAGE_EVENTS, &s);
        touched.extend(s.days);
    }
    let days = in_range(AGENT_SPANS)?;
    if !days.is_empty() {
        let s = compact::<AgentSpan>(&lake, &days, max_rows).context("compacting agent_spans")?;
        report(AGENT_SPANS, &s);
        touched.extend(s.days);
    }
    // The rewritten days' rollups name the old files: rebuilt now rather than by the next reader.
    lake.rebuild_rollups(&touched).into_result().context("rebuilding rollups")?;
    Ok(())
}
