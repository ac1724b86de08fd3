//! The writer's hot path on a local lake: dedup, sort, encode and store a day of events, then
//! roll the day up. `cargo bench -p agentmeter-aggregate --bench writer`.

// A bench is a harness like a test: a broken set-up should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use agentmeter_aggregate::{EventWriter, Lake, WriterOptions};
use agentmeter_schemas::{EventId, ModelId, SourceUri, TenantId, Tier, Tokens, UsageEvent, UserId};
use chrono::NaiveDate;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const EVENTS: usize = 100_000;
/// 2026-10-01T00:00:00Z.
const DAY0_MS: i64 = 1_790_812_800_000;

/// A day of events over 200 tenants, 5 users each and 3 models, ids shared as a decoder
/// shares them, times spread over the day; every 50th is a duplicate delivery.
fn day() -> Vec<UsageEvent> {
    let tier = Tier::new("basic").unwrap();
    let tenants: Vec<TenantId> =
        (0..200).map(|t| TenantId::new(format!("clinic-{t:03}")).unwrap()).collect();
    let users: Vec<UserId> =
        (0..5).map(|u| UserId::new(format!("user-{u}@example.org")).unwrap()).collect();
    let models: Vec<ModelId> = ["mistral.ministral-3-8b-instruct", "amazon.nova-lite-v1:0", "m3"]
        .iter()
        .map(|m| ModelId::new(*m).unwrap())
        .collect();
    let source = SourceUri::new("file:///bench/events.ndjson");
    (0..EVENTS)
        .map(|i| {
            let n = if i % 50 == 49 { i - 1 } else { i };
            let input = (n as i64 * 7919) % 5000 + 1;
            UsageEvent {
                event_time_ms: DAY0_MS + (n as i64 * 86_399_000 / EVENTS as i64),
                event_id: EventId::new(format!("{:016x}-{n:08}", n as u64 * 0x9e37_79b9)).unwrap(),
                tier: tier.clone(),
                tenant_id: tenants[(n * 31) % tenants.len()].clone(),
                user_id: users[n % users.len()].clone(),
                model_id: models[n % models.len()].clone(),
                source: source.clone(),
                tokens: Tokens { input, output: 100, total: input + 100, ..Tokens::default() },
                session_id: None,
                service_tier: Default::default(),
            }
        })
        .collect()
}

fn write(lake: &Lake, events: Vec<UsageEvent>) {
    let mut w = EventWriter::new(lake, WriterOptions::default());
    for e in events {
        w.push(e).unwrap();
    }
    w.finish_without_rollups().unwrap();
}

fn bench(c: &mut Criterion) {
    let events = day();
    let mut g = c.benchmark_group("writer");
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("write a day into an empty local lake", |b| {
        b.iter_batched(
            || (tempfile::tempdir().unwrap(), events.clone()),
            |(dir, events)| write(&Lake::open_dir(dir.path()).unwrap(), events),
            BatchSize::PerIteration,
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    write(&lake, events.clone());
    let days: BTreeSet<NaiveDate> = [NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()].into();
    g.bench_function("roll up the day", |b| {
        b.iter_batched(
            // Without its rollups, the day is rebuilt (a current one would be left as it is).
            || {
                for table in ["usage_hourly", "tenant_hourly", "agent_invocations"] {
                    let _ = std::fs::remove_dir_all(dir.path().join(table));
                }
            },
            |()| assert_eq!(lake.rebuild_rollups(&days).into_result().unwrap().len(), 1),
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
