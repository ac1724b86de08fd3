//! Harness: running the binary, generating inputs, and querying the lake with DuckDB.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use agentmeter_synth::Expected;
use serde_json::Value;

/// The binary under test.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentmeter"));
    c.env("AGENTMETER_LOG", "warn").arg("--log-format").arg("text");
    c
}

/// Runs `cmd`, failing the test with its output unless it succeeds.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run agentmeter");
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `agentmeter gen` into `dir`; returns the generator's expectation.
pub fn generate(dir: &Path, args: &[&str]) -> Expected {
    ok(bin().arg("gen").arg("--out").arg(dir).args(args));
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("parse expected.json")
}

/// `agentmeter ingest --json`; returns the summary.
pub fn ingest(lake: &Path, sources: &[&Path], args: &[&str]) -> Value {
    let out =
        ok(bin().arg("ingest").arg("--lake").arg(lake).arg("--json").args(args).args(sources));
    serde_json::from_slice(&out.stdout).expect("summary JSON")
}

/// The accounting part of a summary, as the schemas type.
pub fn accounting(summary: &Value) -> agentmeter_schemas::Accounting {
    serde_json::from_value(summary["accounting"].clone()).expect("accounting")
}

/// Runs one SQL query in DuckDB (the local Athena); rows as JSON objects.
pub fn duckdb(sql: &str) -> Vec<serde_json::Map<String, Value>> {
    agentmeter_testkit::duckdb::query(sql)
}

/// One integer from a single-row, single-column DuckDB query.
pub fn duckdb_int(sql: &str) -> i64 {
    agentmeter_testkit::duckdb::int(sql)
}

/// `read_parquet` over a table of the lake, with Hive partitions.
pub fn table(lake: &Path, name: &str) -> String {
    format!("read_parquet('{}/{name}/*/*.parquet', hive_partitioning = true)", lake.display())
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap_or(&p).to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub use agentmeter_testkit::crash::{Seeded, crash_trials};

/// Runs `cmd` and sends it SIGKILL after `after`. `true` if the kill landed (the process was
/// still running), `false` if it had finished first (then it must have succeeded).
pub fn kill_after(cmd: &mut Command, after: std::time::Duration) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn agentmeter");
    let deadline = std::time::Instant::now() + after;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            let _ =
                std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err);
            assert!(status.success(), "{cmd:?} failed before the kill: {status}\n{err}");
            return false;
        }
        if std::time::Instant::now() >= deadline {
            child.kill().expect("SIGKILL");
            let status = child.wait().expect("wait");
            return status.signal() == Some(9);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// How long `cmd` takes to succeed: the window the crash matrix kills it within.
pub fn timed(cmd: &mut Command) -> std::time::Duration {
    let start = std::time::Instant::now();
    ok(cmd);
    start.elapsed()
}

/// A copy of the directory tree `from` at `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for e in std::fs::read_dir(from).expect("read directory") {
        let p = e.expect("directory entry").path();
        let t = to.join(p.file_name().expect("file name"));
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy file");
        }
    }
}
