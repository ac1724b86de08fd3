//! Harness: running the binary, generating inputs, and querying the lake with DuckDB.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agentmeter_ingest::synth::Expected;
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

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("AGENTMETER_PYTHON") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// Runs one SQL query in a fresh DuckDB and returns the rows as JSON objects.
///
/// # Panics
///
/// If DuckDB is not installed (run `scripts/test`, which installs it) or the query fails.
pub fn duckdb(sql: &str) -> Vec<serde_json::Map<String, Value>> {
    const SCRIPT: &str = r#"
import decimal, json, sys
import duckdb
con = duckdb.connect()
cur = con.execute(sys.argv[1])
cols = [d[0] for d in cur.description]
def conv(v):
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, int):
        return v
    if v is None or isinstance(v, (str, float, bool)):
        return v
    return str(v)
print(json.dumps([{c: conv(v) for c, v in zip(cols, row)} for row in cur.fetchall()]))
"#;
    let py = python();
    let out = Command::new(&py).arg("-c").arg(SCRIPT).arg(sql).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}); run scripts/test, which installs DuckDB into .venv",
            py.display()
        )
    });
    assert!(
        out.status.success(),
        "DuckDB query failed (is DuckDB installed? run scripts/test)\nquery: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Map<String, Value>>>(&out.stdout).expect("rows")
}

/// One integer from a single-row, single-column query.
pub fn duckdb_int(sql: &str) -> i64 {
    let rows = duckdb(sql);
    assert_eq!(rows.len(), 1, "{sql}");
    rows[0].values().next().and_then(Value::as_i64).unwrap_or_else(|| panic!("{sql}: {rows:?}"))
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
