//! The decode stage on NDJSON usage lines: split, parse, validate, outcomes back in input
//! order, on one thread and on every CPU. `cargo bench -p agentmeter-ingest --bench decode`.

// A bench is a harness like a test: a broken set-up should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::AtomicU64;

use agentmeter_ingest::pipeline::{self, Sink};
use agentmeter_ingest::source::{self, Format, SourceSpec};
use agentmeter_ingest::{Decoder, Outcome};
use agentmeter_schemas::SourceUri;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LINES: usize = 50_000;

/// Lines in the shape of the agents' `inference_usage` logs: 200 tenants, users by
/// `user_id` or `actor_id`, some with a session.
fn input() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..LINES {
        let tenant = format!("clinic-{:03}", (i * 31) % 200);
        let user = if i % 2 == 0 {
            format!(r#""user_id":"dr.lee{}@{tenant}.example""#, i % 5)
        } else {
            format!(r#""actor_id":"basic-{tenant}-nurse{}@{tenant}.example""#, i % 5)
        };
        let session = if i % 3 == 0 {
            format!(r#","session_id":"sess-{:016x}""#, i / 7)
        } else {
            String::new()
        };
        let (input, output) = ((i * 7919) % 5000 + 1, (i * 104_729) % 900 + 1);
        writeln!(
            out,
            r#"{{"event":"inference_usage","tier":"basic","clinic_id":"{tenant}",{user},"model_id":"mistral.ministral-3-8b-instruct","input_tokens":{input},"output_tokens":{output},"total_tokens":{},"timestamp":"2026-10-01T{:02}:{:02}:{:02}.{:03}Z","event_id":"{:08x}-9e92-414f-8762-{i:012}"{session}}}"#,
            input + output,
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60,
            i % 1000,
            i * 2_654_435_761 % (1 << 32),
        )
        .unwrap();
    }
    out
}

/// Counts events; everything else would be a fault in the input above.
struct Count(u64);

impl Sink for Count {
    type Error = Infallible;

    fn source_started(&mut self, _: &SourceSpec) -> Result<(), Infallible> {
        Ok(())
    }

    fn lineage(&mut self, _: &SourceUri) -> Result<(), Infallible> {
        Ok(())
    }

    fn outcome(&mut self, outcome: Outcome) -> Result<(), Infallible> {
        assert!(matches!(outcome, Outcome::Event(_)), "{outcome:?}");
        self.0 += 1;
        Ok(())
    }

    fn source_finished(&mut self, _: &SourceSpec) -> Result<(), Infallible> {
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let data = input();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.ndjson");
    std::fs::write(&path, &data).unwrap();
    let specs = source::expand(&[path], Format::Auto).unwrap();
    let decoder = Decoder::default();
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    for workers in [1, cpus] {
        g.bench_function(format!("NDJSON usage lines, {workers} threads"), |b| {
            b.iter(|| {
                let mut count = Count(0);
                pipeline::run(&specs, &decoder, workers, &AtomicU64::new(0), &mut count).unwrap();
                assert_eq!(count.0, LINES as u64);
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
