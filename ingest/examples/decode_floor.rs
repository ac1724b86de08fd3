//! The parse-only floor that `bench/run` measures an ingest against: how long reading a file
//! takes when nothing is written.
//!
//! ```sh
//! cargo run --profile dist -p agentmeter-ingest --example decode_floor -- decode FILE
//! cargo run --profile dist -p agentmeter-ingest --example decode_floor -- parse FILE
//! ```
//!
//! - `decode`: agentmeter's own decode stage (split into units, parse, validate, on one thread
//!   per CPU, outcomes back in input order), each outcome counted and dropped: an ingest
//!   without dedup, sorting, Parquet and rollups.
//! - `parse`: the file read into memory, split into lines and each non-blank line parsed by
//!   `serde_json` into `IgnoredAny`, on one thread per CPU: the cost of merely reading the JSON.
//!
//! Prints one JSON line: the mode, the records seen and the seconds taken.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use agentmeter_ingest::pipeline::{self, Sink};
use agentmeter_ingest::source::{self, Format, SourceSpec};
use agentmeter_ingest::{Decoder, Outcome};
use agentmeter_schemas::SourceUri;
use serde::de::IgnoredAny;

/// Counts outcomes by kind.
#[derive(Default)]
struct Count {
    events: u64,
    spans: u64,
    skipped: u64,
    rejected: u64,
}

impl Sink for Count {
    type Error = Infallible;

    fn source_started(&mut self, _: &SourceSpec) -> Result<(), Infallible> {
        Ok(())
    }

    fn lineage(&mut self, _: &SourceUri) -> Result<(), Infallible> {
        Ok(())
    }

    fn outcome(&mut self, outcome: Outcome) -> Result<(), Infallible> {
        match outcome {
            Outcome::Event(_) => self.events += 1,
            Outcome::Span(_) => self.spans += 1,
            Outcome::Skip(_) => self.skipped += 1,
            Outcome::Reject(_) => self.rejected += 1,
        }
        Ok(())
    }

    fn source_finished(&mut self, _: &SourceSpec) -> Result<(), Infallible> {
        Ok(())
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// Parses every non-blank line of `chunk`; returns the lines parsed.
fn parse_lines(chunk: &[u8]) -> Result<u64, String> {
    let mut n = 0;
    for line in chunk.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        serde_json::from_slice::<IgnoredAny>(line).map_err(|e| format!("line {n}: {e}"))?;
        n += 1;
    }
    Ok(n)
}

/// `data` cut into about `parts` pieces at line ends.
fn chunks(data: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(parts);
    let mut rest = data;
    let size = data.len() / parts.max(1) + 1;
    while !rest.is_empty() {
        let cut = if rest.len() <= size {
            rest.len()
        } else {
            memchr::memchr(b'\n', &rest[size..]).map_or(rest.len(), |i| size + i + 1)
        };
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, file] = args.as_slice() else {
        return Err("usage: decode_floor decode|parse FILE".into());
    };
    let path = PathBuf::from(file);
    let start = Instant::now();
    let (records, detail) = match mode.as_str() {
        "decode" => {
            let specs = source::expand(&[path], Format::Auto).map_err(|e| e.to_string())?;
            let mut count = Count::default();
            pipeline::run(&specs, &Decoder::default(), cpus(), &AtomicU64::new(0), &mut count)
                .map_err(|e| e.to_string())?;
            let c = &count;
            let records = c.events + c.spans + c.skipped + c.rejected;
            let detail = format!(
                ",\"events\":{},\"spans\":{},\"skipped\":{},\"rejected\":{}",
                c.events, c.spans, c.skipped, c.rejected
            );
            (records, detail)
        }
        "parse" => {
            let data = std::fs::read(&path).map_err(|e| format!("{file}: {e}"))?;
            let parts = chunks(&data, cpus() * 8);
            let next = std::sync::atomic::AtomicUsize::new(0);
            let total = std::thread::scope(|s| {
                let handles: Vec<_> = (0..cpus())
                    .map(|_| {
                        s.spawn(|| {
                            let mut n = 0;
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(part) = parts.get(i) else { return Ok::<u64, String>(n) };
                                n += parse_lines(part)?;
                            }
                        })
                    })
                    .collect();
                handles.into_iter().try_fold(0, |sum, h| {
                    h.join().map_err(|_| "a parser thread panicked".to_owned())?.map(|n| sum + n)
                })
            })?;
            (total, String::new())
        }
        other => return Err(format!("unknown mode {other:?}: decode or parse")),
    };
    println!(
        "{{\"mode\":\"{mode}\",\"records\":{records}{detail},\"seconds\":{:.3}}}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
