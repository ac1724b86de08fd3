//! Two shapes of real agent telemetry, end to end: reused Agent objects logging their lifetime
//! usage per session (billed as increments over the line before) and calls that reported no
//! usage (counted, never free). gen → ingest → DuckDB and the invoices, against the
//! generator's own expectation.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

const GEN: &[&str] = &[
    "--tenants",
    "6",
    "--noisy",
    "2",
    "--events",
    "16000",
    "--span-permille",
    "500",
    "--seed",
    "3",
    "--reused-agent-permille",
    "150",
    "--missing-usage-permille",
    "20",
];

/// Per tenant: `count` and the five token sums of `table`, then each of `extra`.
fn per_tenant(
    lake: &Path,
    table_name: &str,
    count: &str,
    extra: &[&str],
) -> Vec<(String, Vec<i64>)> {
    let extra: String = extra.iter().enumerate().map(|(i, e)| format!(", {e} AS x{i}")).collect();
    let sql = format!(
        "SELECT tenant_id, {count} AS n, sum(input_tokens) AS i, sum(output_tokens) AS o, \
         sum(total_tokens) AS t, sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw \
         {extra} FROM {} GROUP BY tenant_id ORDER BY tenant_id",
        table(lake, table_name)
    );
    duckdb(&sql)
        .into_iter()
        .map(|r| {
            let mut values: Vec<i64> =
                ["n", "i", "o", "t", "cr", "cw"].iter().map(|k| r[*k].as_i64().unwrap()).collect();
            values
                .extend((0..).map_while(|i| r.get(&format!("x{i}")).map(|v| v.as_i64().unwrap())));
            (r["tenant_id"].as_str().unwrap().to_owned(), values)
        })
        .collect()
}

fn sums(t: &agentmeter_synth::Totals) -> Vec<i64> {
    vec![
        t.invocations,
        t.input_tokens,
        t.output_tokens,
        t.total_tokens,
        t.cache_read_tokens,
        t.cache_write_tokens,
    ]
}

#[test]
fn reused_agents_and_calls_without_usage_land_billed_and_counted_as_generated() {
    let dir = tempfile::tempdir().unwrap();
    let expected = generate(&dir.path().join("gen"), GEN);
    let lake = dir.path().join("lake");
    let summary = ingest(&lake, &[&dir.path().join("gen/input")], &[]);
    assert_eq!(accounting(&summary), expected.accounting);
    assert_eq!(summary["balanced"], true);

    let tenants = &expected.tenants;
    let total = |f: fn(&agentmeter_synth::TenantTotals) -> Option<i64>| -> i64 {
        tenants.values().map(|t| f(t).expect("the shapes' expectation")).sum()
    };
    let unknown = total(|t| t.usage_unknown);
    let chat_unknown = total(|t| t.chat_usage_unknown);
    let cumulative = total(|t| t.cumulative_lines);
    assert!(unknown > 0 && chat_unknown > 0 && cumulative > 0, "{tenants:?}");
    assert_eq!(summary["accounting"]["usage_unknown"], unknown, "{summary}");
    assert_eq!(summary["accounting"]["span_usage_unknown"], chat_unknown, "{summary}");

    // usage_events keeps every line as logged: a reused agent's lines with their running sums,
    // the calls without usage at 0. Of a session's lines (one day each), all but the first
    // repeat earlier calls.
    let want: Vec<(String, Vec<i64>)> = tenants
        .iter()
        .map(|(id, t)| {
            let mut v = sums(&t.totals);
            v.extend([t.usage_unknown.unwrap(), t.cumulative_lines.unwrap()]);
            (id.clone(), v)
        })
        .collect();
    let events = per_tenant(
        &lake,
        "usage_events",
        "count(*)",
        &[
            "count(*) FILTER (WHERE input_tokens = 0 AND total_tokens = 0)",
            "count(*) FILTER (WHERE session_id LIKE 'agent-%') \
             - count(DISTINCT CASE WHEN session_id LIKE 'agent-%' THEN session_id END)",
        ],
    );
    assert_eq!(events, want);

    // usage_hourly bills each call once: a lifetime series' lines as their increments, and
    // counts those lines and the calls, logged or traced, that reported no usage.
    let want: Vec<(String, Vec<i64>)> = tenants
        .iter()
        .map(|(id, t)| {
            let mut v = sums(&t.billed.expect("billed totals"));
            v.extend([
                t.cumulative_lines.unwrap(),
                t.usage_unknown.unwrap(),
                t.chat_usage_unknown.unwrap(),
            ]);
            (id.clone(), v)
        })
        .collect();
    let hourly = per_tenant(
        &lake,
        "usage_hourly",
        "sum(invocations)",
        &["sum(cumulative_lines)", "sum(usage_unknown)", "sum(chat_usage_unknown)"],
    );
    assert_eq!(hourly, want);
    // The shapes make a difference: billed is below logged where lines repeated calls.
    for (id, t) in tenants {
        let (billed, logged) = (t.billed.unwrap(), t.totals);
        assert_eq!(billed.input_tokens < logged.input_tokens, t.cumulative_lines > Some(0), "{id}");
    }

    // Invoices: usage unknown is never free. A tenant with calls that reported no usage gets an
    // incomplete invoice naming them; the run exits 1.
    let out = dir.path().join("out");
    let prices = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.toml");
    let o = bin()
        .arg("invoice")
        .arg("--lake")
        .arg(&lake)
        .args(["--period", "2026-10", "--prices"])
        .arg(&prices)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let month = out.join("invoices/2026-10");
    let mut basic_checked = 0;
    for (id, t) in tenants {
        let text = std::fs::read_to_string(month.join(format!("tenants/{id}.json"))).unwrap();
        let inv: Value = serde_json::from_str(&text).unwrap();
        let n = t.usage_unknown.unwrap();
        let problems: Vec<&Value> = inv["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["usage_unknown"].as_i64().unwrap() > 0)
            .collect();
        let named: i64 = problems.iter().map(|p| p["usage_unknown"].as_i64().unwrap()).sum();
        assert_eq!(named, n, "{id}: {text}");
        if n > 0 {
            assert_eq!(inv["complete"], false, "{id}");
            if t.tier == "basic" {
                // One model: one problem holding every call without usage.
                assert_eq!(problems.len(), 1, "{id}: {text}");
                assert_eq!(problems[0]["usage_unknown"], n, "{id}");
                basic_checked += 1;
            }
        }
    }
    assert!(basic_checked > 0, "a basic tenant with calls without usage");
    // The run's summary notes the tenants whose lines were billed as increments.
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(month.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(run["complete"], false);
    let notes: Vec<&str> =
        run["notes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for (id, t) in tenants.iter().filter(|(_, t)| t.cumulative_lines > Some(0)) {
        let n = t.cumulative_lines.unwrap();
        assert!(
            notes.iter().any(|l| l.starts_with(&format!("tenant {id}: {n} "))),
            "{id}: {n} lines in {notes:?}"
        );
    }
}
