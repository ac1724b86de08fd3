//! Opening a lake for a command, and making sure the rollups it reads are current.

use std::path::Path;

use agentmeter_aggregate::{Lake, LakeReader};
use anyhow::Context;
use chrono::NaiveDate;

use crate::UsageError;

/// Opens the lake at `path` for writing; "in use" and "not a lake" are the user's to fix.
pub fn open(path: &Path) -> anyhow::Result<Lake> {
    Lake::open(path).map_err(|e| match e {
        agentmeter_aggregate::Error::Locked { .. }
        | agentmeter_aggregate::Error::NotALake { .. } => {
            anyhow::Error::new(UsageError(e.to_string()))
        }
        other => anyhow::Error::new(other).context("opening the lake"),
    })
}

/// Rebuilds the stale rollups of `[from, to)` (left by a writer that stopped, or by a rollup
/// that failed) before a command reads them; refuses, naming the days, when they cannot be
/// rebuilt. What the command then reads includes every committed event of those days.
pub fn ensure_rollups(lake: &Lake, from: NaiveDate, to: NaiveDate) -> anyhow::Result<()> {
    let rebuilt = lake.ensure_rollups(from, to).context(
        "refusing to read usage that is not rolled up; fix the cause and run `agentmeter rollup`",
    )?;
    if !rebuilt.is_empty() {
        tracing::info!(days = rebuilt.len(), "Rebuilt rollups that were not up to date.");
    }
    Ok(())
}

/// For a command that only reads: the rollups of `[from, to)` must be current. Stale ones are
/// rebuilt when the lake can be opened for writing; when another process holds it, the
/// command refuses, naming the days, rather than read an incomplete rollup.
pub fn current_rollups(path: &Path, from: NaiveDate, to: NaiveDate) -> anyhow::Result<()> {
    let stale = LakeReader::new(path).stale_rollups(from, to).context("reading the lake")?;
    if stale.is_empty() {
        return Ok(());
    }
    let lake = open(path).with_context(|| {
        let days: Vec<String> = stale.iter().map(|(d, _)| d.to_string()).collect();
        format!("the rollups of {} are not up to date and cannot be rebuilt now", days.join(", "))
    })?;
    ensure_rollups(&lake, from, to)
}
