//! A process killed with SIGKILL in the middle of an ingest, then run again, ends with exact
//! totals: nothing lost, nothing counted twice.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::*;

fn parquet_files(lake: &Path) -> usize {
    files_under(&lake.join("usage_events")).iter().filter(|f| f.ends_with(".parquet")).count()
}

#[test]
fn killed_mid_ingest_then_rerun_gives_exact_totals() {
    let dir = tempfile::tempdir().unwrap();
    let expected =
        generate(&dir.path().join("gen"), &["--tenants", "10", "--events", "60000", "--dirty"]);
    let input = dir.path().join("gen/input");
    let lake = dir.path().join("lake");
    // Kill at two different depths of the run; each kill must land before the run ends.
    for kill_after in [1, 8] {
        let mut child = bin()
            .arg("ingest")
            .arg("--lake")
            .arg(&lake)
            .args(["--batch-rows", "700", "--workers", "2", "--no-progress"])
            .arg(&input)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start_files = parquet_files(&lake);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if parquet_files(&lake) >= start_files + kill_after {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "ingest finished before it could be killed"
            );
            assert!(Instant::now() < deadline, "no file appeared within 120 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "killed, not finished");
    }
    let summary = ingest(&lake, &[&input], &[]);
    assert_eq!(summary["balanced"], true);

    let ev = table(&lake, "usage_events");
    let hourly = table(&lake, "usage_hourly");
    let events = expected.accounting.events_written as i64;
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM {ev}")), events);
    assert_eq!(duckdb_int(&format!("SELECT count(DISTINCT event_id) FROM {ev}")), events);
    assert_eq!(duckdb_int(&format!("SELECT sum(invocations) FROM {hourly}")), events);
    let total: i64 = expected.tenants.values().map(|t| t.totals.total_tokens).sum();
    assert_eq!(duckdb_int(&format!("SELECT sum(total_tokens) FROM {ev}")), total);
    assert_eq!(duckdb_int(&format!("SELECT sum(total_tokens) FROM {hourly}")), total);
    let quarantined: usize = files_under(&lake.join("_quarantine"))
        .iter()
        .filter(|f| f.ends_with(".jsonl"))
        .map(|f| std::fs::read_to_string(lake.join("_quarantine").join(f)).unwrap().lines().count())
        .sum();
    assert_eq!(quarantined as u64, expected.accounting.quarantined_total());
    assert!(
        files_under(&lake).iter().all(|f| !f.contains(".tmp-")),
        "no temporary file survives the rerun"
    );
}

/// Per tenant: (input tokens, output tokens) billed by the invoice run in `out`.
fn billed(out: &Path) -> std::collections::BTreeMap<String, (i64, i64)> {
    let dir = out.join("invoices/2026-10/tenants");
    let mut got = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let inv: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(inv["complete"], true, "{}", p.display());
        let slot: &mut (i64, i64) =
            got.entry(inv["tenant_id"].as_str().unwrap().to_owned()).or_default();
        for l in inv["lines"].as_array().unwrap() {
            let q = l["quantity"].as_i64().unwrap_or_default();
            match l["component"].as_str().unwrap() {
                "input_tokens" => slot.0 += q,
                "output_tokens" => slot.1 += q,
                _ => {}
            }
        }
    }
    got
}

/// Per tenant: (input tokens, output tokens) of every event in the lake, by DuckDB.
fn in_lake(lake: &Path) -> std::collections::BTreeMap<String, (i64, i64)> {
    let ev = table(lake, "usage_events");
    duckdb(&format!(
        "SELECT tenant_id, sum(input_tokens)::BIGINT AS i, sum(output_tokens)::BIGINT AS o FROM {ev} GROUP BY 1"
    ))
    .iter()
    .map(|r| {
        (
            r["tenant_id"].as_str().unwrap().to_owned(),
            (r["i"].as_i64().unwrap(), r["o"].as_i64().unwrap()),
        )
    })
    .collect()
}

pub(crate) const PRICES: &str = r#"
version = "crash-test"
currency = "USD"

[[models]]
id = "mistral.ministral-3-8b-instruct"
[[models.prices]]
effective_from = "2025-01-01"
input_per_million = "0.10"
output_per_million = "0.10"
cache_read_per_million = "0.01"
cache_write_per_million = "0.10"
per_tool_call = "0"

[[models]]
id = "openai.gpt-oss-120b-1:0"
[[models.prices]]
effective_from = "2025-01-01"
input_per_million = "0.15"
output_per_million = "0.60"
cache_read_per_million = "0.01"
cache_write_per_million = "0.15"
per_tool_call = "0"

[[models]]
id = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
[[models.prices]]
effective_from = "2025-01-01"
input_per_million = "1.00"
output_per_million = "5.00"
cache_read_per_million = "0.10"
cache_write_per_million = "1.25"
per_tool_call = "0"

[plans.basic]
base_fee = "0"
included_usage = "0"
[plans.premium]
base_fee = "0"
included_usage = "0"
"#;

#[test]
fn invoices_after_a_kill_at_seeded_points_bill_exactly_what_the_lake_holds() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        &dir.path().join("gen"),
        &["--tenants", "8", "--events", "40000", "--seed", "7", "--noisy", "1"],
    );
    let input = dir.path().join("gen/input");
    let lake = dir.path().join("lake");
    let prices = dir.path().join("prices.toml");
    std::fs::write(&prices, PRICES).unwrap();
    let invoice = |out: &Path| {
        ok(bin()
            .arg("invoice")
            .arg("--lake")
            .arg(&lake)
            .args(["--period", "2026-10"])
            .arg("--prices")
            .arg(&prices)
            .arg("--out")
            .arg(out));
    };
    // Seeded kill points: a few files into the run, each deeper than the one before.
    let mut state: u64 = 0x5eed;
    let mut next = |n: u64| {
        state =
            state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    for round in 0..3 {
        let kill_after = 1 + next(4) as usize;
        let mut child = bin()
            .arg("ingest")
            .arg("--lake")
            .arg(&lake)
            .args(["--batch-rows", "500", "--workers", "2", "--no-progress"])
            .arg(&input)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start_files = parquet_files(&lake);
        let deadline = Instant::now() + Duration::from_secs(120);
        while parquet_files(&lake) < start_files + kill_after {
            assert!(child.try_wait().unwrap().is_none(), "round {round}: finished too soon");
            assert!(Instant::now() < deadline, "no file appeared within 120 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(9));
        // Whatever the kill left, the invoice bills exactly the events in the lake.
        let out = dir.path().join(format!("out-{round}"));
        invoice(&out);
        assert_eq!(billed(&out), in_lake(&lake), "round {round} (killed after {kill_after} files)");
    }
    ingest(&lake, &[&input], &[]);
    let out = dir.path().join("out-final");
    invoice(&out);
    // And after the rerun completes the lake, the same as a clean run.
    let clean = dir.path().join("clean");
    ingest(&clean, &[&input], &[]);
    let clean_out = dir.path().join("out-clean");
    ok(bin()
        .arg("invoice")
        .arg("--lake")
        .arg(&clean)
        .args(["--period", "2026-10"])
        .arg("--prices")
        .arg(&prices)
        .arg("--out")
        .arg(&clean_out));
    for f in ["invoices.csv", "summary.json"] {
        let a = std::fs::read(out.join("invoices/2026-10").join(f)).unwrap();
        let b = std::fs::read(clean_out.join("invoices/2026-10").join(f)).unwrap();
        assert!(a == b, "{f} differs from a clean run's");
    }
}
