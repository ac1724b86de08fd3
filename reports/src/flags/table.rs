//! Reading the lake's `flags` table back into flags: the report of a period shows what the
//! scheduled runs found, without the `flags.jsonl` of any one run.

use std::collections::BTreeMap;

use agentmeter_aggregate::Lake;
use agentmeter_schemas::tables::{FLAGS, TABLES};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, NaiveDate, Utc};

use super::engine::{Evaluation, episodes};
use super::model::{Evidence, Flag, FlagStatus};

/// Why the table could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum FlagTableError {
    /// The lake could not be read.
    #[error(transparent)]
    Lake(#[from] agentmeter_aggregate::Error),
    /// A row does not hold a flag this version understands.
    #[error("flags table, {day}: {why}")]
    Row {
        /// The partition.
        day: NaiveDate,
        /// What is wrong.
        why: String,
    },
}

fn rows_of(
    batch: &RecordBatch,
    day: NaiveDate,
) -> Result<Vec<(DateTime<Utc>, Flag)>, FlagTableError> {
    let bad = |why: String| FlagTableError::Row { day, why };
    let col =
        |name: &str| batch.column_by_name(name).ok_or_else(|| bad(format!("no column {name}")));
    let text = |name: &str| -> Result<_, FlagTableError> {
        col(name)?.as_string_opt::<i32>().ok_or_else(|| bad(format!("{name} is not text")))
    };
    let time = |name: &str| -> Result<_, FlagTableError> {
        col(name)?
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| bad(format!("{name} is not a timestamp")))
    };
    let float = |name: &str| -> Result<_, FlagTableError> {
        col(name)?
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| bad(format!("{name} is not a number")))
    };
    let int = |name: &str| -> Result<_, FlagTableError> {
        col(name)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad(format!("{name} is not an integer")))
    };
    let (at, id, kind, tier, tenant) =
        (time("evaluated_at")?, text("id")?, text("kind")?, text("tier")?, text("tenant_id")?);
    let (ws, we, metric, value, threshold) = (
        time("window_start")?,
        time("window_end")?,
        text("metric")?,
        float("value")?,
        float("threshold")?,
    );
    let (over, active, evidence, severity, action) = (
        int("hours_over")?,
        int("hours_active")?,
        text("evidence")?,
        text("severity")?,
        text("recommended_action")?,
    );
    let instant = |ms: i64| {
        DateTime::from_timestamp_millis(ms).ok_or_else(|| bad(format!("{ms} is not a time")))
    };
    let code = |s: &str| serde_json::Value::String(s.to_owned());
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut ev: Evidence = serde_json::from_str(evidence.value(i))
            .map_err(|e| bad(format!("{}: evidence: {e}", id.value(i))))?;
        ev.hours_over = (!over.is_null(i)).then(|| over.value(i) as u32).or(ev.hours_over);
        ev.hours_active = (!active.is_null(i)).then(|| active.value(i) as u32).or(ev.hours_active);
        let flag = Flag {
            id: id.value(i).to_owned(),
            kind: serde_json::from_value(code(kind.value(i)))
                .map_err(|_| bad(format!("{}: unknown kind {:?}", id.value(i), kind.value(i))))?,
            tier: agentmeter_schemas::Tier::new(tier.value(i)).map_err(|e| bad(e.to_string()))?,
            tenant_id: if tenant.is_null(i) {
                None
            } else {
                Some(
                    agentmeter_schemas::TenantId::new(tenant.value(i))
                        .map_err(|e| bad(e.to_string()))?,
                )
            },
            window_start: instant(ws.value(i))?,
            window_end: instant(we.value(i))?,
            metric: metric.value(i).to_owned(),
            value: value.value(i),
            threshold: threshold.value(i),
            evidence: ev,
            severity: serde_json::from_value(code(severity.value(i)))
                .map_err(|_| bad(format!("{}: unknown severity", id.value(i))))?,
            recommended_action: action.value(i).to_owned(),
            status: FlagStatus::Active,
        };
        out.push((instant(at.value(i))?, flag));
    }
    Ok(out)
}

/// The flags of the days in `[from, to)` as the table holds them, merged into episodes like
/// a `flags` run's (`active` if it holds at the last day evaluated).
///
/// # Errors
///
/// The lake cannot be read, or a row is not a flag.
pub fn flags_in(lake: &Lake, from: NaiveDate, to: NaiveDate) -> Result<Vec<Flag>, FlagTableError> {
    let Some(table) = TABLES.iter().find(|t| t.name == FLAGS) else { return Ok(Vec::new()) };
    let mut by_time: BTreeMap<DateTime<Utc>, Vec<Flag>> = BTreeMap::new();
    for day in lake.partitions(FLAGS)? {
        if day < from || day >= to {
            continue;
        }
        // Every day evaluated is a point, even one where nothing held.
        let end = (day + chrono::Days::new(1)).and_time(chrono::NaiveTime::MIN).and_utc();
        by_time.entry(end).or_default();
        for batch in lake.read_partition(table, day)? {
            for (at, f) in rows_of(&batch, day)? {
                by_time.entry(at).or_default().push(f);
            }
        }
    }
    let evaluations: Vec<Evaluation> =
        by_time.into_iter().map(|(at, flags)| Evaluation { at, flags }).collect();
    Ok(episodes(&evaluations))
}
