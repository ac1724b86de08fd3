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
        .map(|f| std::fs::read_to_string(lake.join("_quarantine").join(f)).unwrap().lines().count())
        .sum();
    assert_eq!(quarantined as u64, expected.accounting.quarantined_total());
    assert!(
        files_under(&lake).iter().all(|f| !f.contains(".tmp-")),
        "no temporary file survives the rerun"
    );
}
