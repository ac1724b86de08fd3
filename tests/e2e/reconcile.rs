//! `agentmeter reconcile` on the recorded Strands trace and hand-written log lines: the
//! invoke_agent span's lifetime total shows up as a difference against the chat spans, a
//! tenant without spans is listed as logs-only, and the CSV agrees with DuckDB.

use std::path::Path;

use crate::util::*;

const TRACE: &str = include_str!("../../ingest/src/otlp/testdata/strands-trace.json");

/// `clinic-a-north` logs the Agent's lifetime total (as its invoke_agent span does), which
/// exceeds what its two chat spans carry; `clinic-b` has a log line and no spans.
const LOGS: &str = r#"{"event":"inference_usage","tier":"basic","clinic_id":"clinic-a-north","user_id":"dr.lee@clinic-a.example","model_id":"mistral.ministral-3-8b-instruct","input_tokens":9664,"output_tokens":805,"total_tokens":10469,"cache_read_input_tokens":1280,"timestamp":"2026-10-01T08:00:05Z"}
{"event":"inference_usage","tier":"basic","clinic_id":"clinic-b","user_id":"u","model_id":"mistral.ministral-3-8b-instruct","input_tokens":10,"output_tokens":5,"total_tokens":15,"timestamp":"2026-10-01T09:00:05Z"}
"#;

fn lake(root: &Path) -> std::path::PathBuf {
    let input = root.join("input");
    std::fs::create_dir_all(&input).unwrap();
    // The Collector's file exporter writes one request per line.
    let one_line: serde_json::Value = serde_json::from_str(TRACE).unwrap();
    std::fs::write(input.join("spans.json"), format!("{one_line}\n")).unwrap();
    std::fs::write(input.join("usage.ndjson"), LOGS).unwrap();
    let lake = root.join("lake");
    let summary = ingest(&lake, &[&input], &[]);
    let a = accounting(&summary);
    assert_eq!((a.events_written, a.spans_written, a.quarantined_total()), (2, 7, 0), "{summary}");
    lake
}

#[test]
fn lists_the_differences_between_logs_and_chat_spans() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
    let csv = dir.path().join("out/reconcile.csv");
    let out = ok(bin()
        .arg("reconcile")
        .arg("--lake")
        .arg(&lake)
        .args(["--period", "2026-10", "--out"])
        .arg(&csv));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().next().unwrap(),
        "2 tenant-days: 0 match, 1 differ, 1 logs only, 0 spans only, 0 with usage unknown"
    );
    assert!(stdout.contains("clinic-a-north"), "{stdout}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        rows,
        [
            "2026-10-01,basic,clinic-a-north,differs,1,0,2,0,9664,1832,-7832,805,161,-644,1280,640,-640,0,0,0,cumulative_logging",
            "2026-10-01,basic,clinic-b,logs_only,1,0,0,0,10,0,-10,5,0,-5,0,0,0,0,0,0,",
        ]
    );
    // The chat spans' side, as an analyst would compute it in Athena.
    let sql = format!(
        "SELECT sum(input_tokens) FROM {} WHERE operation = 'chat' AND tenant_id = 'clinic-a-north'",
        table(&lake, "agent_spans")
    );
    assert_eq!(duckdb_int(&sql), 1832);
    // The invoke_agent span carries the lifetime total that the log line repeats.
    let sql = format!(
        "SELECT sum(input_tokens) FROM {} WHERE operation = 'invoke_agent'",
        table(&lake, "agent_spans")
    );
    assert_eq!(duckdb_int(&sql), 9664);
}

#[test]
fn fail_on_difference_exits_3_and_bad_ranges_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
    let run = |args: &[&str]| {
        bin().arg("reconcile").arg("--lake").arg(&lake).args(args).output().unwrap()
    };
    let out = run(&["--from", "2026-10-01", "--to", "2026-10-02", "--fail-on-difference"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 tenant-days do not reconcile"));
    // A day without data reconciles (to nothing).
    let out = run(&["--from", "2026-10-02", "--to", "2026-10-03", "--fail-on-difference"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0 tenant-days: 0 match, 0 differ, 0 logs only, 0 spans only, 0 with usage unknown\n"
    );
    // `--to` is exclusive: a range of no day is refused.
    let out = run(&["--from", "2026-10-02", "--to", "2026-10-02"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "--to 2026-10-02 is not after --from 2026-10-02 (--to is exclusive: the day after the last)"
    ));
    let out = run(&["--period", "2026-13"]);
    assert_eq!(out.status.code(), Some(2));
}
