//! `usage_hourly`: rebuilt whole for a partition from that partition's `usage_events`, so it
//! is always consistent with them, late data included, however often it is rebuilt.

use std::collections::HashMap;

use agentmeter_schemas::tables::{
    HourlyKey, HourlyMeasures, USAGE_EVENTS, USAGE_HOURLY, hour_start_ms, hourly_batch,
    usage_hourly_schema,
};
use agentmeter_schemas::{ModelId, TenantId, Tier, Tokens, UserId};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::fsio::remove_if_exists;
use crate::lake::LakeReader;
use crate::parquet_io::{properties, read_columns, write_file};

/// The one file of a `usage_hourly` partition: a fixed name, so a rebuild replaces it.
pub const HOURLY_FILE: &str = "part-00000.parquet";

/// The `usage_events` columns a rollup reads (not the ids or sources, the bulk of the data).
const INPUT: [&str; 10] = [
    "event_time",
    "tier",
    "tenant_id",
    "user_id",
    "model_id",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
];

/// Small integer codes for the strings of a partition, so that grouping hashes integers.
#[derive(Default)]
struct Interner {
    codes: HashMap<String, u32>,
    values: Vec<String>,
}

impl Interner {
    fn code(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.codes.get(s) {
            return c;
        }
        let c = self.values.len() as u32;
        self.values.push(s.to_owned());
        self.codes.insert(s.to_owned(), c);
        c
    }
}

type Group = (i64, u32, u32, u32, u32);

fn add_batch(
    batch: &RecordBatch,
    strings: &mut [Interner; 4],
    groups: &mut HashMap<Group, HourlyMeasures>,
) -> std::result::Result<(), String> {
    let col = |name: &str| batch.column_by_name(name).ok_or(format!("column {name} is missing"));
    let time = col("event_time")?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or("event_time is not timestamp(ms)")?;
    let mut text = Vec::with_capacity(4);
    for name in ["tier", "tenant_id", "user_id", "model_id"] {
        text.push(col(name)?.as_string_opt::<i32>().ok_or(format!("{name} is not utf8"))?);
    }
    let mut ints = Vec::with_capacity(5);
    for name in &INPUT[5..] {
        ints.push(
            col(name)?.as_primitive_opt::<Int64Type>().ok_or(format!("{name} is not int64"))?,
        );
    }
    if time.null_count() > 0
        || text.iter().any(|a| a.null_count() > 0)
        || ints.iter().any(|a| a.null_count() > 0)
    {
        return Err("usage_events has nulls".into());
    }
    for row in 0..batch.num_rows() {
        let key = (
            hour_start_ms(time.value(row)),
            strings[0].code(text[0].value(row)),
            strings[1].code(text[1].value(row)),
            strings[2].code(text[2].value(row)),
            strings[3].code(text[3].value(row)),
        );
        let t = Tokens {
            input: ints[0].value(row),
            output: ints[1].value(row),
            total: ints[2].value(row),
            cache_read: ints[3].value(row),
            cache_write: ints[4].value(row),
        };
        let m = groups.entry(key).or_default();
        m.invocations = m.invocations.checked_add(1).ok_or("invocations overflow")?;
        m.tokens = m.tokens.checked_add(&t).ok_or("token sums overflow")?;
    }
    Ok(())
}

/// Rebuilds `usage_hourly` for partition `dt` from `usage_events`. Returns the row count.
///
/// # Errors
///
/// The lake cannot be read or written, holds an invalid identifier, or a sum overflows `i64`.
pub fn rebuild_hourly(lake: &LakeReader, dt: NaiveDate) -> Result<usize> {
    let mut strings: [Interner; 4] = Default::default();
    let mut groups: HashMap<Group, HourlyMeasures> = HashMap::new();
    for path in lake.files(USAGE_EVENTS, dt)? {
        for batch in read_columns(&path, Some(&INPUT))? {
            add_batch(&batch, &mut strings, &mut groups).map_err(|e| {
                if e.contains("overflow") {
                    Error::Overflow { table: USAGE_HOURLY, dt: dt.to_string() }
                } else {
                    Error::Arrow {
                        path: path.clone(),
                        source: arrow_schema::ArrowError::SchemaError(e),
                    }
                }
            })?;
        }
    }
    let path = lake.layout().partition(USAGE_HOURLY, dt).join(HOURLY_FILE);
    if groups.is_empty() {
        remove_if_exists(&path)?;
        return Ok(0);
    }
    let invalid = |e: agentmeter_schemas::IdError| Error::Arrow {
        path: path.clone(),
        source: arrow_schema::ArrowError::InvalidArgumentError(e.to_string()),
    };
    // Identifiers are validated once per distinct value, not per row.
    let [tiers, tenants, users, models] = strings;
    let tiers: Vec<Tier> =
        tiers.values.into_iter().map(Tier::new).collect::<Result<_, _>>().map_err(invalid)?;
    let tenants: Vec<TenantId> =
        tenants.values.into_iter().map(TenantId::new).collect::<Result<_, _>>().map_err(invalid)?;
    let users: Vec<UserId> =
        users.values.into_iter().map(UserId::new).collect::<Result<_, _>>().map_err(invalid)?;
    let models: Vec<ModelId> =
        models.values.into_iter().map(ModelId::new).collect::<Result<_, _>>().map_err(invalid)?;
    let mut rows: Vec<(HourlyKey, HourlyMeasures)> = groups
        .into_iter()
        .map(|((hour_ms, t, n, u, m), measures)| {
            let key = HourlyKey {
                hour_ms,
                tier: tiers[t as usize].clone(),
                tenant_id: tenants[n as usize].clone(),
                user_id: users[u as usize].clone(),
                model_id: models[m as usize].clone(),
            };
            (key, measures)
        })
        .collect();
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
    let batch = hourly_batch(rows.iter().map(|(k, m)| (k, m)))
        .map_err(|source| Error::Arrow { path: path.clone(), source })?;
    // Sorted by tenant_id (column 2) then hour (column 0).
    write_file(&path, usage_hourly_schema(), properties(&[2, 0], &[]), &[batch])?;
    Ok(n)
}

/// Rebuilds several partitions on up to `threads` threads.
///
/// # Errors
///
/// The first partition that fails.
pub fn rebuild_hourly_all(lake: &LakeReader, days: &[NaiveDate], threads: usize) -> Result<()> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.clamp(1, days.len().max(1)))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&dt) = days.get(i) else { return Ok(()) };
                        rebuild_hourly(lake, dt)?;
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| match w.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    })
}
