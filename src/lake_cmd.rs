//! Opening a lake for a command that reads it, and making sure the rollups it reads are
//! current.

use agentmeter_aggregate::Lake;
use agentmeter_pipeline::{Env, LakeLocation};
use anyhow::Context;
use chrono::NaiveDate;

/// The days a command covers, `[from, to)`: a billing month (`--period YYYY-MM`), or
/// `--from DAY --to DAY` with `--to` exclusive, as every range of agentmeter is.
pub fn day_range(r: &crate::cli::DayRangeArgs) -> anyhow::Result<(NaiveDate, NaiveDate)> {
    use crate::UsageError;
    let day = |name: &str, s: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| UsageError(format!("--{name} {s:?} is not a YYYY-MM-DD day")))
    };
    match (&r.period, &r.from, &r.to) {
        (Some(p), _, _) => {
            let p = agentmeter_reports::invoice::Period::parse(p)
                .map_err(|e| UsageError(format!("--period: {e}")))?;
            Ok((p.start, p.end))
        }
        (None, Some(f), Some(t)) => {
            let (from, end) = (day("from", f)?, day("to", t)?);
            if end <= from {
                anyhow::bail!(UsageError(format!(
                    "--to {end} is not after --from {from} (--to is exclusive: the day after the last)"
                )));
            }
            Ok((from, end))
        }
        _ => anyhow::bail!(UsageError("give --period, or --from and --to".into())),
    }
}

/// The existing lake at `loc` (a usage error when there is none).
pub fn existing(env: &Env, loc: &LakeLocation) -> anyhow::Result<Lake> {
    Ok(env.existing_lake(loc)?)
}

/// Rebuilds the stale rollups of `[from, to)` (left by a writer that stopped, a rollup that
/// failed, files other writers added) before a command reads them; refuses, naming the days,
/// when they cannot be rebuilt. What the command then reads includes every committed event of
/// those days. Any process may do this at any time: rebuilds replace a rollup only from the
/// version they read.
pub fn ensure_rollups(lake: &Lake, from: NaiveDate, to: NaiveDate) -> anyhow::Result<()> {
    let rebuilt = lake.ensure_rollups(from, to).context(
        "refusing to read usage that is not rolled up; fix the cause and run `agentmeter rollup`",
    )?;
    if !rebuilt.is_empty() {
        tracing::info!(days = rebuilt.len(), "Rebuilt rollups that were not up to date.");
    }
    Ok(())
}
