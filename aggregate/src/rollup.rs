//! `usage_hourly`: rebuilt whole for a partition from that partition's `usage_events`, so it
//! is always consistent with them, late data included, however often it is rebuilt.

use std::collections::HashMap;

use agentmeter_schemas::tables::{
    HourlyKey, HourlyMeasures, USAGE_HOURLY, hour_start_ms, hourly_batch, usage_hourly_schema,
};
use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::fsio::remove_if_exists;
use crate::lake::Lake;
use crate::parquet_io::{properties, write_file};

/// The one file of a `usage_hourly` partition: a fixed name, so a rebuild replaces it.
pub const HOURLY_FILE: &str = "part-00000.parquet";

/// Rebuilds `usage_hourly` for partition `dt` from `usage_events`.
///
/// # Errors
///
/// The lake cannot be read or written, or a sum overflows `i64`.
pub fn rebuild_hourly(lake: &Lake, dt: NaiveDate) -> Result<usize> {
    let overflow = || Error::Overflow { table: USAGE_HOURLY, dt: dt.to_string() };
    let mut groups: HashMap<HourlyKey, HourlyMeasures> = HashMap::new();
    lake.reader().for_each_event_batch(dt, |events| {
        for e in events {
            let key = HourlyKey {
                hour_ms: hour_start_ms(e.event_time_ms),
                tier: e.tier,
                tenant_id: e.tenant_id,
                user_id: e.user_id,
                model_id: e.model_id,
            };
            let m = groups.entry(key).or_default();
            m.invocations = m.invocations.checked_add(1).ok_or_else(overflow)?;
            m.tokens = m.tokens.checked_add(&e.tokens).ok_or_else(overflow)?;
        }
        Ok(())
    })?;
    let path = lake.layout().partition(USAGE_HOURLY, dt).join(HOURLY_FILE);
    if groups.is_empty() {
        remove_if_exists(&path)?;
        return Ok(0);
    }
    let mut rows: Vec<_> = groups.iter().collect();
    rows.sort_unstable_by(|(a, _), (b, _)| {
        (a.tenant_id.as_str(), a.hour_ms, a.tier.as_str(), a.user_id.as_str(), a.model_id.as_str())
            .cmp(&(
                b.tenant_id.as_str(),
                b.hour_ms,
                b.tier.as_str(),
                b.user_id.as_str(),
                b.model_id.as_str(),
            ))
    });
    let n = rows.len();
    let batch = hourly_batch(rows.into_iter())
        .map_err(|source| Error::Arrow { path: path.clone(), source })?;
    // Sorted by tenant_id (column 2) then hour (column 0).
    write_file(&path, usage_hourly_schema(), properties(&[2, 0]), &[batch])?;
    Ok(n)
}
