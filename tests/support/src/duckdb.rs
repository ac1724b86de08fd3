//! Queries through DuckDB (PyPI `duckdb` in the test virtualenv).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AGENTMETER_PYTHON") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
}

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

/// Runs one SQL query in a fresh DuckDB and returns the rows as JSON objects (decimals as
/// strings, exactly).
///
/// # Panics
///
/// If DuckDB is not installed (run `scripts/test`, which installs it) or the query fails.
pub fn query(sql: &str) -> Vec<Map<String, Value>> {
    try_query(sql).unwrap_or_else(|e| {
        panic!("DuckDB query failed (is DuckDB installed? run scripts/test)\nquery: {sql}\n{e}")
    })
}

/// [`query`], with a failed query (a file listed, then removed by a compaction before it was
/// read) as an error to retry rather than a panic.
///
/// # Errors
///
/// DuckDB's message.
///
/// # Panics
///
/// If Python cannot be run at all.
pub fn try_query(sql: &str) -> Result<Vec<Map<String, Value>>, String> {
    let py = python();
    let out = Command::new(&py).arg("-c").arg(SCRIPT).arg(sql).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}); run scripts/test, which installs DuckDB into .venv",
            py.display()
        )
    });
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// One integer from a single-row, single-column query.
///
/// # Panics
///
/// If the query fails or does not return one integer.
pub fn int(sql: &str) -> i64 {
    let rows = query(sql);
    assert_eq!(rows.len(), 1, "{sql}");
    rows[0].values().next().and_then(Value::as_i64).unwrap_or_else(|| panic!("{sql}: {rows:?}"))
}
