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

/// The example book with Ministral 3 8B (the basic tier's model) priced in more classes:
/// 5-minute and 1-hour cache writes, long-context prices above 128,000 prompt tokens, and the
/// priority and flex service tiers. Batch stays unpriced.
fn class_book() -> String {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.toml"))
            .unwrap();
    let at = "output_per_million = \"0.15\"\n";
    assert!(example.contains("id = \"mistral.ministral-3-8b-instruct\""));
    example.replacen(
        at,
        &format!(
            "{at}cache_write_per_million = \"0.1875\"\ncache_write_1h_per_million = \"0.30\"\n\
             long_context_above = 128000\n\
             [models.prices.long_context]\ninput_per_million = \"0.30\"\noutput_per_million = \"0.30\"\n\
             [models.prices.priority]\ninput_per_million = \"0.2625\"\noutput_per_million = \"0.2625\"\n\
             [models.prices.flex]\ninput_per_million = \"0.075\"\noutput_per_million = \"0.075\"\n"
        ),
        1,
    )
}

#[test]
fn price_classes_land_by_class_and_each_bills_at_its_own_price_or_not_at_all() {
    use rust_decimal::Decimal;
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--tenants",
        "6",
        "--noisy",
        "2",
        "--events",
        "16000",
        "--span-permille",
        "500",
        "--seed",
        "5",
        "--price-class-permille",
        "100",
    ];
    let expected = generate(&dir.path().join("gen"), &args);
    let lake = dir.path().join("lake");
    let summary = ingest(&lake, &[&dir.path().join("gen/input")], &[]);
    assert_eq!(accounting(&summary), expected.accounting);

    // usage_hourly by tenant and class, read by DuckDB, is the generator's expectation.
    let sql = format!(
        "SELECT tenant_id, service_tier || '/' || prompt_band AS class, sum(invocations) AS n, \
         sum(input_tokens) AS i, sum(output_tokens) AS o, sum(total_tokens) AS t, \
         sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw, \
         sum(cache_write_1h_tokens) AS cw1h FROM {} GROUP BY ALL ORDER BY ALL",
        table(&lake, "usage_hourly")
    );
    let got: Vec<(String, String, Vec<i64>)> = duckdb(&sql)
        .into_iter()
        .map(|r| {
            let v = ["n", "i", "o", "t", "cr", "cw", "cw1h"]
                .iter()
                .map(|k| r[*k].as_i64().unwrap())
                .collect();
            (r["tenant_id"].as_str().unwrap().into(), r["class"].as_str().unwrap().into(), v)
        })
        .collect();
    let mut want = Vec::new();
    for (id, t) in &expected.tenants {
        for (class, c) in t.classes.as_ref().unwrap() {
            let mut v = sums(c);
            v.push(c.cache_write_1h_tokens);
            want.push((id.clone(), class.clone(), v));
        }
    }
    // Span-only rows (agent measures, no calls) are standard/0 rows of premium tenants.
    let got: Vec<_> = got.into_iter().filter(|(_, _, v)| v[0] > 0 || v[1] > 0).collect();
    assert_eq!(got, want);
    let classes: std::collections::BTreeSet<&str> = want.iter().map(|w| w.1.as_str()).collect();
    assert_eq!(
        classes.into_iter().collect::<Vec<_>>(),
        ["batch/0", "flex/0", "priority/0", "standard/0", "standard/200000"]
    );
    // usage_events keeps each line's tier and 1-hour writes as logged.
    let n = duckdb_int(&format!(
        "SELECT count(*) FROM {} WHERE service_tier <> 'standard'",
        table(&lake, "usage_events")
    ));
    let tiered: i64 = want.iter().filter(|w| !w.1.starts_with("standard/")).map(|w| w.2[0]).sum();
    assert_eq!(n, tiered);

    // Invoices: each class at its own price, the basic plan's 25 % markup on each; batch has
    // no price, so it is a problem and the run exits 1.
    let book = dir.path().join("prices.toml");
    std::fs::write(&book, class_book()).unwrap();
    let out = dir.path().join("out");
    let o = bin()
        .arg("invoice")
        .arg("--lake")
        .arg(&lake)
        .args(["--period", "2026-10", "--prices"])
        .arg(&book)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    let mut checked = 0;
    for (id, t) in expected.tenants.iter().filter(|(_, t)| t.tier == "basic") {
        let path = out.join(format!("invoices/2026-10/tenants/{id}.json"));
        let inv: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let c = t.classes.as_ref().unwrap();
        let zero = agentmeter_synth::Totals::default();
        let class = |k: &str| c.get(k).unwrap_or(&zero);
        let (std0, long, prio, flex) =
            (class("standard/0"), class("standard/200000"), class("priority/0"), class("flex/0"));
        let mut want: Vec<(String, Option<&str>, bool, i64, Decimal)> = vec![
            ("input_tokens".into(), None, false, std0.input_tokens, d("0.1875")),
            ("output_tokens".into(), None, false, std0.output_tokens, d("0.1875")),
            (
                "cache_write_tokens".into(),
                None,
                false,
                std0.cache_write_tokens - std0.cache_write_1h_tokens,
                d("0.234375"),
            ),
            ("cache_write_1h_tokens".into(), None, false, std0.cache_write_1h_tokens, d("0.375")),
            ("input_tokens".into(), None, true, long.input_tokens, d("0.375")),
            ("output_tokens".into(), None, true, long.output_tokens, d("0.375")),
            ("input_tokens".into(), Some("priority"), false, prio.input_tokens, d("0.328125")),
            ("output_tokens".into(), Some("priority"), false, prio.output_tokens, d("0.328125")),
            ("input_tokens".into(), Some("flex"), false, flex.input_tokens, d("0.09375")),
            ("output_tokens".into(), Some("flex"), false, flex.output_tokens, d("0.09375")),
        ];
        want.retain(|w| w.3 > 0);
        want.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        let mut lines: Vec<(String, Option<&str>, bool, i64, Decimal)> = inv["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["model_id"].is_string())
            .map(|l| {
                let (q, p) =
                    (l["quantity"].as_i64().unwrap(), d(l["unit_price"].as_str().unwrap()));
                let amount = d(l["amount"].as_str().unwrap());
                let exact = Decimal::from(q) * p / Decimal::from(1_000_000);
                assert_eq!(
                    amount,
                    exact.round_dp_with_strategy(
                        2,
                        rust_decimal::RoundingStrategy::MidpointAwayFromZero
                    )
                );
                (
                    l["component"].as_str().unwrap().to_owned(),
                    l["service_tier"].as_str(),
                    l["long_context"].as_bool().unwrap_or(false),
                    q,
                    p.normalize(),
                )
            })
            .collect();
        lines.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        let want: Vec<_> =
            want.into_iter().map(|(a, b, c, q, p)| (a, b, c, q, p.normalize())).collect();
        assert_eq!(lines, want, "{id}");
        let batch = class("batch/0");
        let problems: Vec<(i64, &str)> = inv["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["tokens"].as_i64().unwrap(), p["reason"].as_str().unwrap()))
            .collect();
        if batch.invocations > 0 {
            assert_eq!(problems.len(), 1, "{id}: {problems:?}");
            assert_eq!(problems[0].0, batch.total_tokens);
            assert!(problems[0].1.starts_with("no batch service tier price from "), "{problems:?}");
            assert_eq!(inv["complete"], false);
        } else {
            assert!(problems.is_empty());
        }
        checked += usize::from(long.invocations > 0 && std0.cache_write_1h_tokens > 0);
    }
    assert!(checked > 0, "a basic tenant with long-context calls and 1-hour writes");
    // The CSV and the lake's invoice_lines name every line's class.
    let n = duckdb_int(&format!(
        "SELECT count(*) FROM {} WHERE service_tier = 'priority' AND NOT long_context",
        table(&lake, "invoice_lines")
    ));
    assert!(n > 0);
}

#[test]
fn calls_under_profile_arns_are_problems_until_listed_then_priced_as_their_models() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen");
    let args = [
        "--tenants",
        "6",
        "--noisy",
        "2",
        "--events",
        "12000",
        "--span-permille",
        "500",
        "--seed",
        "9",
        "--profile-arn-permille",
        "200",
    ];
    let expected = generate(&generated, &args);
    let lake = dir.path().join("lake");
    let summary = ingest(&lake, &[&generated.join("input")], &[]);
    assert_eq!(accounting(&summary), expected.accounting);
    let prices = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.toml");
    let invoice = |out: &Path, profiles: Option<&Path>| {
        let mut c = bin();
        c.arg("invoice").arg("--lake").arg(&lake).args(["--period", "2026-10", "--prices"]);
        c.arg(&prices).arg("--out").arg(out);
        if let Some(p) = profiles {
            c.arg("--inference-profiles").arg(p);
        }
        c.output().unwrap()
    };
    let read = |p: std::path::PathBuf| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let premium: Vec<(&String, &agentmeter_synth::TenantTotals)> =
        expected.tenants.iter().filter(|(_, t)| t.tier == "premium").collect();
    assert!(premium.iter().all(|(_, t)| !t.profiles.as_ref().unwrap().is_empty()));

    // Not listed yet: each profile's calls are one problem holding all their tokens.
    let out = dir.path().join("without");
    let o = invoice(&out, None);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    for (id, t) in &premium {
        let inv = read(out.join(format!("invoices/2026-10/tenants/{id}.json")));
        let mut got: Vec<(String, i64)> = inv["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["model_id"].as_str().unwrap().to_owned(), p["tokens"].as_i64().unwrap()))
            .collect();
        got.sort();
        let want: Vec<(String, i64)> = t
            .profiles
            .as_ref()
            .unwrap()
            .iter()
            .map(|(arn, x)| (arn.clone(), x.total_tokens))
            .collect();
        assert_eq!(got, want, "{id}");
    }

    // Listed: every call is priced, each profile at its model's premium rate-card price.
    let listing = read(generated.join("inference-profiles.json"));
    let routes: std::collections::HashMap<&str, &str> = listing["inferenceProfileSummaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let model = p["models"][0]["modelArn"].as_str().unwrap();
            (p["inferenceProfileArn"].as_str().unwrap(), model)
        })
        .collect();
    let out = dir.path().join("with");
    let o = invoice(&out, Some(&generated.join("inference-profiles.json")));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (id, t) in &premium {
        let inv = read(out.join(format!("invoices/2026-10/tenants/{id}.json")));
        assert_eq!(inv["complete"], true, "{id}");
        for (arn, x) in t.profiles.as_ref().unwrap() {
            let haiku = routes[arn.as_str()].contains("claude-haiku");
            let price = |component: &str| -> (i64, String) {
                let l = inv["lines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|l| l["model_id"] == arn.as_str() && l["component"] == component)
                    .unwrap_or_else(|| panic!("{id} {arn} {component}"));
                (l["quantity"].as_i64().unwrap(), l["unit_price"].as_str().unwrap().to_owned())
            };
            let (input, output) = if haiku { ("1.32", "6.60") } else { ("0.18", "0.72") };
            assert_eq!(price("input_tokens"), (x.input_tokens, input.to_owned()), "{id} {arn}");
            assert_eq!(price("output_tokens"), (x.output_tokens, output.to_owned()), "{id} {arn}");
        }
    }
}
