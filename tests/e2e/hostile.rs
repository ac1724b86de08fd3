//! Hostile input beside good records: a 2 GB gzip bomb, a line nested 100,000 levels deep, a
//! 64 MB line and an oversized subscription payload. Every one is refused with its reason, every
//! good record lands, and the ingest's peak memory stays under 600 MB.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agentmeter_schemas::Reason;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::util::*;

const GOOD: usize = 2000;
const MB: usize = 1 << 20;

fn usage(i: usize) -> String {
    format!(
        r#"{{"event":"inference_usage","tier":"basic","clinic_id":"clinic-{t}","user_id":"u{i}","model_id":"m","input_tokens":{i},"output_tokens":1,"total_tokens":{},"timestamp":"2026-10-01T08:00:00Z","event_id":"e{i}"}}"#,
        i + 1,
        t = i % 7
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The peak resident memory of `pid` so far (`VmHWM`), in bytes; `None` once it is gone.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    Some(kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()? * 1024)
}

/// Writes the inputs; returns the number of hostile records among them.
fn inputs(dir: &Path) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let good = |range: std::ops::Range<usize>| range.map(usage).collect::<Vec<_>>().join("\n");
    // 2 GiB of zeros without a newline, as 128 gzip members of 16 MiB each (2 MB on disk):
    // one line, refused at the record limit while the rest streams past.
    let member = gzip(&vec![0u8; 16 * MB]);
    let mut f = std::fs::File::create(dir.join("bomb.ndjson.gz")).unwrap();
    f.write_all(&gzip(format!("{}\n", good(0..500)).as_bytes())).unwrap();
    for _ in 0..128 {
        f.write_all(&member).unwrap();
    }
    f.write_all(&gzip(format!("\n{}\n", good(500..1000)).as_bytes())).unwrap();
    drop(f);
    // 100,000 levels of nesting and a 64 MiB line, each between good lines.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let long = format!("{{\"event\":\"inference_usage\",\"pad\":\"{}\"}}", "x".repeat(64 * MB));
    let text = format!(
        "{}\n{deep}\n{}\n{long}\n{}\n",
        good(1000..1300),
        good(1300..1600),
        good(1600..1800)
    );
    std::fs::write(dir.join("hostile.ndjson"), text).unwrap();
    // A Firehose file: a subscription payload that inflates past the 64 MiB payload limit
    // (its JSON never ends), then a good payload.
    let events: Vec<String> = (1800..GOOD)
        .map(|i| {
            serde_json::json!({"id": format!("cw{i}"), "timestamp": 1_790_841_600_000i64, "message": usage(i)})
                .to_string()
        })
        .collect();
    let payload = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{}]}}"#,
        events.join(",")
    );
    let mut huge = br#"{"messageType":"DATA_MESSAGE","logEvents":[{"message":""#.to_vec();
    huge.resize(80 * MB, b'a');
    std::fs::create_dir_all(dir.join("firehose")).unwrap();
    let mut fh = gzip(&huge);
    fh.extend(gzip(payload.as_bytes()));
    std::fs::write(dir.join("firehose/part-0001"), fh).unwrap();
    4
}

#[test]
fn hostile_input_is_refused_in_bounded_memory_and_every_good_record_lands() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let hostile = inputs(&input);
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let mut child = bin()
        .args(["ingest", "--no-progress", "--summary-json"])
        .arg(&summary_path)
        .arg("--lake")
        .arg(&lake)
        .arg(&input)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Sampled every 5 ms: a peak shorter than that could pass unseen, a leak or a buffer of
    // the whole bomb could not.
    let (mut peak, deadline) = (0u64, Instant::now() + Duration::from_secs(300));
    let status = loop {
        if let Some(rss) = peak_rss(child.id()) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the ingest took over 300 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(peak > 0 && peak < 600 * MB as u64, "peak RSS {} MB", peak / MB as u64);

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    let a = accounting(&summary);
    assert!(a.balances());
    assert_eq!(a.events_written, GOOD as u64, "{a:?}");
    assert_eq!(a.quarantined_total(), hostile as u64);
    assert_eq!(a.quarantined[&Reason::TooLarge], 3, "{:?}", a.quarantined);
    assert_eq!(a.quarantined[&Reason::OverLimit], 1, "{:?}", a.quarantined);
    let ev = table(&lake, "usage_events");
    assert_eq!(duckdb_int(&format!("SELECT count(DISTINCT event_id) FROM {ev}")), GOOD as i64);
    let want: i64 = (0..GOOD).map(|i| i as i64 + 1).sum();
    assert_eq!(duckdb_int(&format!("SELECT sum(total_tokens) FROM {ev}")), want);
    println!("hostile input: peak RSS {} MB, {} records refused", peak / MB as u64, hostile);
}
