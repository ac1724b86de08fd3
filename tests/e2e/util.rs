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
