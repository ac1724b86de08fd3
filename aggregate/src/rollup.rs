//! `usage_hourly` and `tenant_hourly`: rebuilt whole for a partition from that partition's
//! `usage_events`, so they are always consistent with them, late data included, however often
//! they are rebuilt. `tenant_hourly` keeps each tenant's peak requests in one second of each
//! hour, so rate-limit checks never rescan the events.

use std::collections::HashMap;

use agentmeter_schemas::tables::{
    AGENT_INVOCATIONS, HourlyKey, HourlyMeasures, TENANT_HOURLY, TenantHour, USAGE_EVENTS,
    USAGE_HOURLY, agent_invocations_batch, agent_invocations_schema, hour_start_ms, hourly_batch,
    tenant_hourly_batch, tenant_hourly_schema, usage_hourly_schema,
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

/// One tenant-hour being summed: measures, distinct user codes, peak requests in a second.
type TenantAcc = (HourlyMeasures, std::collections::BTreeSet<u32>, i64);

/// (second since the epoch, tier code, tenant code) → requests in that second.
type Seconds = HashMap<(i64, u32, u32), i64>;

fn add_batch(
    batch: &RecordBatch,
    strings: &mut [Interner; 4],
    groups: &mut HashMap<Group, HourlyMeasures>,
    seconds: &mut Seconds,
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
        *seconds.entry((time.value(row).div_euclid(1000), key.1, key.2)).or_default() += 1;
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
    let mut seconds = Seconds::new();
    for path in lake.files(USAGE_EVENTS, dt)? {
        for batch in read_columns(&path, Some(&INPUT))? {
            add_batch(&batch, &mut strings, &mut groups, &mut seconds).map_err(|e| {
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
    // What the spans of the day add.
    let spans = lake.spans(dt)?;
    let (agent_rows, invocations) = crate::span_rollup::rollup(&spans);
    drop(spans);
    for r in agent_rows {
        let key = (
            r.hour_ms,
            strings[0].code(r.tier.as_str()),
            strings[1].code(r.tenant_id.as_str()),
            strings[2].code(&r.user),
            strings[3].code(&r.model),
        );
        let m = groups.entry(key).or_default();
        m.agent = m
            .agent
            .checked_add(&r.measures)
            .ok_or_else(|| Error::Overflow { table: USAGE_HOURLY, dt: dt.to_string() })?;
    }
    let inv_path = lake.layout().partition(AGENT_INVOCATIONS, dt).join(HOURLY_FILE);
    if invocations.is_empty() {
        remove_if_exists(&inv_path)?;
    } else {
        let batch = agent_invocations_batch(&invocations)
            .map_err(|source| Error::Arrow { path: inv_path.clone(), source })?;
        // Sorted by tenant_id (column 4) then start_time (column 0).
        write_file(&inv_path, agent_invocations_schema(), properties(&[4, 0], &[]), &[batch])?;
    }
    let path = lake.layout().partition(USAGE_HOURLY, dt).join(HOURLY_FILE);
    let tenant_path = lake.layout().partition(TENANT_HOURLY, dt).join(HOURLY_FILE);
    if groups.is_empty() {
        remove_if_exists(&path)?;
        remove_if_exists(&tenant_path)?;
        return Ok(0);
    }
    // Per tenant and hour: sums over users and models, distinct users, peak second.
    let mut tenant_hours: HashMap<(i64, u32, u32), TenantAcc> = HashMap::new();
    for (&(hour, t, n, u, _), m) in groups.iter().filter(|(_, m)| m.invocations > 0) {
        let slot = tenant_hours.entry((hour, t, n)).or_default();
        slot.0.invocations += m.invocations;
        slot.0.tokens = slot
            .0
            .tokens
            .checked_add(&m.tokens)
            .ok_or_else(|| Error::Overflow { table: TENANT_HOURLY, dt: dt.to_string() })?;
        slot.1.insert(u);
    }
    for (&(second, t, n), &count) in &seconds {
        if let Some(slot) = tenant_hours.get_mut(&(hour_start_ms(second * 1000), t, n)) {
            slot.2 = slot.2.max(count);
        }
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
    let mut tenant_rows: Vec<TenantHour> = tenant_hours
        .into_iter()
        .map(|((hour_ms, t, n), (m, users, peak))| TenantHour {
            hour_ms,
            tier: tiers[t as usize].clone(),
            tenant_id: tenants[n as usize].clone(),
            invocations: m.invocations,
            tokens: m.tokens,
            users: users.len() as i64,
            peak_requests_per_second: peak,
        })
        .collect();
    tenant_rows.sort_unstable_by(|a, b| {
        (a.tenant_id.as_str(), a.hour_ms, a.tier.as_str()).cmp(&(
            b.tenant_id.as_str(),
            b.hour_ms,
            b.tier.as_str(),
        ))
    });
    let tenant_batch = tenant_hourly_batch(&tenant_rows)
        .map_err(|source| Error::Arrow { path: tenant_path.clone(), source })?;
    // Sorted by tenant_id (column 2) then hour (column 0).
    write_file(&tenant_path, tenant_hourly_schema(), properties(&[2, 0], &[]), &[tenant_batch])?;
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
