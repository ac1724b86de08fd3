//! Invoices against an independent recomputation in DuckDB, cost allocation against Cost
//! Explorer (a file, and the real client on moto), unpriced usage, tenant isolation.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use agentmeter_testkit::moto::MotoServer;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use crate::util::*;

const BOOK: &str = r#"
version = "e2e-1"
currency = "USD"

[[models]]
id = "mistral.ministral-3-8b-instruct"
[[models.prices]]
effective_from = "2025-01-01"
input_per_million = "0.15"
output_per_million = "0.15"
per_tool_call = "0.0010"
[[models.prices]]
effective_from = "2026-10-15T12:00:00Z"
input_per_million = "0.12"
output_per_million = "0.20"
per_tool_call = "0.0008"

[[models]]
id = "openai.gpt-oss-120b-1:0"
[[models.prices]]
effective_from = "2025-01-01"
input_per_million = "0.15"
output_per_million = "0.60"
per_tool_call = "0.0012"

[[models]]
id = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
[[models.prices]]
effective_from = "2025-01-01"
input_per_million = "1.10"
output_per_million = "5.50"
cache_read_per_million = "0.11"
cache_write_per_million = "1.375"
per_tool_call = "0.0015"

[plans.basic]
base_fee = "49.00"
included_usage = "2.00"
markup = "0.25"

[plans.premium]
base_fee = "499.00"
included_usage = "5.00"
markup = "0.40"
"#;

/// The same list prices, for the SQL recomputation: model, from and to (epoch ms), input,
/// output, cache read, cache write (per million), tool call (per call).
type ListPrice =
    (&'static str, i64, i64, &'static str, &'static str, &'static str, &'static str, &'static str);
const LIST: &[ListPrice] = &[
    ("mistral.ministral-3-8b-instruct", 0, 1_792_065_600_000, "0.15", "0.15", "0", "0", "0.0010"),
    (
        "mistral.ministral-3-8b-instruct",
        1_792_065_600_000,
        i64::MAX,
        "0.12",
        "0.20",
        "0",
        "0",
        "0.0008",
    ),
    ("openai.gpt-oss-120b-1:0", 0, i64::MAX, "0.15", "0.60", "0", "0", "0.0012"),
    (
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        0,
        i64::MAX,
        "1.10",
        "5.50",
        "0.11",
        "1.375",
        "0.0015",
    ),
];

/// Tier, base fee, included usage, price factor.
const PLANS: &[(&str, &str, &str, &str)] =
    &[("basic", "49.00", "2.00", "1.25"), ("premium", "499.00", "5.00", "1.40")];

struct Month {
    _dir: tempfile::TempDir,
    root: PathBuf,
    lake: PathBuf,
}

fn month() -> Month {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    generate(
        &root.join("gen"),
        &["--tenants", "8", "--events", "20000", "--noisy", "1", "--seed", "11"],
    );
    let lake = root.join("lake");
    ingest(&lake, &[&root.join("gen/input")], &[]);
    std::fs::write(root.join("prices.toml"), BOOK).unwrap();
    Month { _dir: dir, root, lake }
}

/// A two-page Cost Explorer response for October 2026: both tiers every day (tag values as
/// people write them), untagged cost, a tag matching no tier, the last two days estimated.
fn cost_pages() -> (Vec<Value>, Vec<(String, String, Decimal)>) {
    let mut rows = Vec::new();
    let mut pages = Vec::new();
    for (days, token) in [(1..=15, Some("page-2")), (16..=31, None)] {
        let mut results = Vec::new();
        for day in days {
            let date = format!("2026-10-{day:02}");
            let next =
                if day == 31 { "2026-11-01".to_owned() } else { format!("2026-10-{:02}", day + 1) };
            let mut groups = vec![
                ("Basic", format!("{}.{:07}", day / 3 + 1, (day * 1_234_567) % 10_000_000)),
                ("premium", format!("{}.{:05}", day % 7 + 2, (day * 4_321) % 100_000)),
                ("", "0.0449".to_owned()),
            ];
            if day == 5 {
                groups.push(("enterprise", "3.21".to_owned()));
            }
            let json_groups: Vec<Value> = groups
                .iter()
                .map(|(tag, amount)| {
                    rows.push((date.clone(), tag.to_lowercase(), Decimal::from_str(amount).unwrap()));
                    json!({"Keys": [format!("Tier${tag}")], "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}})
                })
                .collect();
            results.push(json!({
                "TimePeriod": {"Start": date, "End": next},
                "Total": {},
                "Groups": json_groups,
                "Estimated": day >= 30,
            }));
        }
        let mut page = json!({
            "GroupDefinitions": [{"Type": "TAG", "Key": "Tier"}],
            "ResultsByTime": results,
            "DimensionValueAttributes": [],
        });
        if let Some(t) = token {
            page["NextPageToken"] = json!(t);
        }
        pages.push(page);
    }
    (pages, rows)
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn invoice_cmd(m: &Month, out: &Path, costs: Option<&str>) -> std::process::Command {
    let mut c = bin();
    c.arg("invoice")
        .arg("--lake")
        .arg(&m.lake)
        .args(["--period", "2026-10", "--billing-account", "123456789012"])
        .arg("--prices")
        .arg(m.root.join("prices.toml"))
        .arg("--out")
        .arg(out);
    if let Some(c2) = costs {
        c.args(["--costs", c2]);
    }
    c
}

fn invoices(out: &Path) -> Vec<Value> {
    let dir = out.join("invoices/2026-10/tenants");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| serde_json::from_str(&std::fs::read_to_string(dir.join(n)).unwrap()).unwrap())
        .collect()
}

fn values(rows: &[String]) -> String {
    rows.join(", ")
}

/// The deliberately simple second implementation: SQL over `usage_hourly`.
fn sql_lines(lake: &Path) -> String {
    let prices = values(
        &LIST
            .iter()
            .map(|(m, f, t, i, o, cr, cw, tc)| {
                format!("('{m}', {f}, {t}, '{i}'::DECIMAL(18,6), '{o}'::DECIMAL(18,6), '{cr}'::DECIMAL(18,6), '{cw}'::DECIMAL(18,6), '{tc}'::DECIMAL(18,6))")
            })
            .collect::<Vec<_>>(),
    );
    let plans = values(
        &PLANS
            .iter()
            .map(|(t, fee, inc, f)| {
                format!(
                    "('{t}', '{fee}'::DECIMAL(18,2), '{inc}'::DECIMAL(18,2), '{f}'::DECIMAL(18,4))"
                )
            })
            .collect::<Vec<_>>(),
    );
    // Component, its usage_hourly column and price column, and the price's unit (tokens are
    // priced per million, tool calls per call).
    let comps = [
        ("input_tokens", "c_in", "0.000001"),
        ("output_tokens", "c_out", "0.000001"),
        ("cache_read_tokens", "c_cr", "0.000001"),
        ("cache_write_tokens", "c_cw", "0.000001"),
        ("tool_calls", "c_tc", "1"),
    ];
    let unions = comps
        .iter()
        .map(|(col, price, per)| {
            format!(
                "SELECT u.tenant_id, u.tier, u.model_id, p.t_from, '{col}' AS component, u.{col} AS q, p.{price} * pl.factor AS price, \
                 '{per}'::DECIMAL(18,6) AS per \
                 FROM u JOIN prices p ON u.model_id = p.model_id AND u.h >= p.t_from AND u.h < p.t_to JOIN plans pl ON pl.tier = u.tier"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!(
        "WITH prices(model_id, t_from, t_to, c_in, c_out, c_cr, c_cw, c_tc) AS (VALUES {prices}), \
         plans(tier, fee, included, factor) AS (VALUES {plans}), \
         u AS (SELECT *, epoch_ms(hour) AS h FROM read_parquet('{}/usage_hourly/*/*.parquet') \
               WHERE epoch_ms(hour) >= 1790812800000 AND epoch_ms(hour) < 1793491200000), \
         c AS ({unions}), \
         lines AS (SELECT tenant_id, tier, model_id, t_from, component, price, per, sum(q) AS q FROM c GROUP BY ALL HAVING sum(q) > 0), \
         amounts AS (SELECT *, round(q::DECIMAL(38,0) * price * per, 2) AS amount FROM lines)",
        lake.display()
    )
}

#[test]
fn invoices_equal_an_independent_recomputation_to_the_cent() {
    let m = month();
    let out = m.root.join("out");
    ok(&mut invoice_cmd(&m, &out, None));
    let base = sql_lines(&m.lake);
    let totals = duckdb(&format!(
        "{base}, usage AS (SELECT tenant_id, tier, sum(amount) AS usage FROM amounts GROUP BY ALL) \
         SELECT usage.tenant_id, (pl.fee + usage.usage - least(usage.usage, pl.included))::VARCHAR AS total \
         FROM usage JOIN (SELECT * FROM (VALUES {}) AS t(tier, fee, included, factor)) pl ON pl.tier = usage.tier ORDER BY 1",
        values(
            &PLANS
                .iter()
                .map(|(t, fee, inc, f)| format!(
                    "('{t}', '{fee}'::DECIMAL(18,2), '{inc}'::DECIMAL(18,2), '{f}'::DECIMAL(18,4))"
                ))
                .collect::<Vec<_>>()
        )
    ));
    let invs = invoices(&out);
    assert_eq!(invs.len(), totals.len());
    assert!(invs.len() >= 8);
    for (inv, row) in invs.iter().zip(&totals) {
        assert_eq!(inv["tenant_id"], row["tenant_id"]);
        let want = Decimal::from_str(row["total"].as_str().unwrap()).unwrap();
        let got = Decimal::from_str(inv["total"].as_str().unwrap()).unwrap();
        assert_eq!(got, want, "{}", inv["tenant_id"]);
        assert_eq!(inv["complete"], true);
        let sum: Decimal = inv["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| Decimal::from_str(l["amount"].as_str().unwrap()).unwrap())
            .sum();
        assert_eq!(sum, got, "lines add up to the total");
    }
    // Line by line, in the lake's invoice_lines (read by DuckDB, Hive-partitioned by period).
    let lines = format!(
        "read_parquet('{}/invoice_lines/*/*.parquet', hive_partitioning = true)",
        m.lake.display()
    );
    let usage_lines = format!(
        "SELECT tenant_id, model_id, component, quantity::BIGINT AS q, amount::DECIMAL(38,2) AS amount FROM {lines} \
         WHERE period = '2026-10' AND component NOT IN ('plan_fee', 'included_usage')"
    );
    let recomputed = format!(
        "{base} SELECT tenant_id, model_id, component, q::BIGINT AS q, amount::DECIMAL(38,2) AS amount FROM amounts"
    );
    assert_eq!(
        duckdb_int(&format!("SELECT count(*) FROM (({usage_lines}) EXCEPT ALL ({recomputed}))")),
        0
    );
    assert_eq!(
        duckdb_int(&format!("SELECT count(*) FROM (({recomputed}) EXCEPT ALL ({usage_lines}))")),
        0
    );
    // The price change splits the basic tier's lines at 2026-10-15 12:00.
    let split = duckdb_int(&format!(
        "SELECT count(DISTINCT price_effective_from) FROM {lines} WHERE model_id = 'mistral.ministral-3-8b-instruct'"
    ));
    assert_eq!(split, 2);
    let typed = duckdb(&format!(
        "SELECT typeof(amount) AS a, typeof(unit_price) AS p FROM {lines} LIMIT 1"
    ));
    assert_eq!(typed[0]["a"], "DECIMAL(38,2)");
    assert_eq!(typed[0]["p"], "DECIMAL(38,12)");
}

#[test]
fn costs_are_allocated_exactly_and_the_real_client_agrees_with_the_file() {
    let m = month();
    let (pages, rows) = cost_pages();
    let file = m.root.join("costs.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&pages).unwrap()).unwrap();
    let out = m.root.join("out-file");
    ok(&mut invoice_cmd(&m, &out, Some(file.to_str().unwrap())));
    let dir = out.join("invoices/2026-10");
    let focus = format!("read_parquet('{}/focus.parquet')", dir.display());

    // FOCUS columns have their types, as Athena and DuckDB read them: amounts and quantities
    // are decimals, never strings, and PricingQuantity is never null.
    let types = duckdb(&format!(
        "SELECT any_value(typeof(PricingQuantity)) AS pq, count(*) FILTER (WHERE PricingQuantity IS NULL) AS pq_nulls, \
                any_value(typeof(BilledCost)) AS bc, any_value(typeof(ChargePeriodStart)) AS cps, \
                any_value(typeof(x_Provisional)) AS prov FROM {focus}"
    ));
    assert_eq!(types[0]["pq"], "DECIMAL(38,0)");
    assert_eq!(types[0]["pq_nulls"], 0);
    assert_eq!(types[0]["bc"], "DECIMAL(38,2)");
    assert_eq!(types[0]["cps"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(types[0]["prov"], "BOOLEAN");

    // Every Cost Explorer amount, rounded to the cent, is exactly the sum of its rows.
    let total: Decimal = rows.iter().map(|(_, _, a)| cents(*a)).sum();
    let got = duckdb(&format!("SELECT sum(BilledCost)::VARCHAR AS s FROM {focus}"));
    assert_eq!(Decimal::from_str(got[0]["s"].as_str().unwrap()).unwrap(), total);
    let per_day = duckdb(&format!(
        "SELECT strftime(ChargePeriodStart AT TIME ZONE 'UTC', '%Y-%m-%d') AS d, \
                coalesce(json_extract_string(Tags, '$.Tier'), '') AS tag, sum(BilledCost)::VARCHAR AS s \
         FROM {focus} GROUP BY ALL ORDER BY ALL"
    ));
    let mut want: Vec<(String, String, Decimal)> =
        rows.iter().map(|(d, t, a)| (d.clone(), t.clone(), cents(*a))).collect();
    want.sort();
    let mut got: Vec<(String, String, Decimal)> = per_day
        .iter()
        .map(|r| {
            (
                r["d"].as_str().unwrap().to_owned(),
                r["tag"].as_str().unwrap().to_lowercase(),
                Decimal::from_str(r["s"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    // No share is negative, and each is within a cent of its exact quota (list-price usage
    // recomputed here from usage_hourly: tokens alone, tool calls never weigh).
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM {focus} WHERE BilledCost < 0")), 0);
    let quota = format!(
        "WITH l AS (SELECT strftime(make_timestamp(h * 1000), '%Y-%m-%d') AS d, u.tier, u.tenant_id, \
             sum(u.input_tokens * p.c_in + u.output_tokens * p.c_out + u.cache_read_tokens * p.c_cr + u.cache_write_tokens * p.c_cw) AS w \
           FROM (SELECT *, epoch_ms(hour) AS h FROM read_parquet('{lake}/usage_hourly/*/*.parquet')) u \
           JOIN (VALUES {prices}) AS p(model_id, t_from, t_to, c_in, c_out, c_cr, c_cw) ON u.model_id = p.model_id AND u.h >= p.t_from AND u.h < p.t_to \
           GROUP BY ALL), \
         f AS (SELECT strftime(ChargePeriodStart AT TIME ZONE 'UTC', '%Y-%m-%d') AS d, x_Tier AS tier, x_TenantId AS tenant_id, BilledCost AS c \
           FROM {focus} WHERE x_TenantId IS NOT NULL), \
         t AS (SELECT d, tier, sum(c) AS amount FROM f GROUP BY ALL), \
         s AS (SELECT d, tier, sum(w) AS total_w FROM l GROUP BY ALL) \
         SELECT count(*) FILTER (WHERE abs(f.c - t.amount * l.w / s.total_w) >= 0.0100001) AS off, count(*) AS n \
         FROM f JOIN l USING (d, tier, tenant_id) JOIN t USING (d, tier) JOIN s USING (d, tier)",
        lake = m.lake.display(),
        prices = values(
            &LIST
                .iter()
                .map(|(mo, f, t, i, o, cr, cw, _per_tool_call)| {
                    format!("('{mo}', {f}, {t}, {i}, {o}, {cr}, {cw})")
                })
                .collect::<Vec<_>>()
        ),
    );
    let q = duckdb(&quota);
    let shares = duckdb_int(&format!("SELECT count(*) FROM {focus} WHERE x_TenantId IS NOT NULL"));
    assert_eq!(q[0]["off"], 0);
    assert_eq!(q[0]["n"].as_i64().unwrap(), shares, "every share was checked");
    assert!(shares > 31);

    let margin: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("margin.json")).unwrap()).unwrap();
    assert_eq!(margin["reconciliation"]["reconciled"], true);
    assert_eq!(
        Decimal::from_str(margin["reconciliation"]["cost_explorer_total"].as_str().unwrap())
            .unwrap(),
        total
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let unallocated = summary["unallocated"].as_array().unwrap();
    assert!(unallocated.iter().any(
        |u| u["reason"] == "tag value \"enterprise\" matches no tier" && u["amount"] == "3.21"
    ));
    assert_eq!(unallocated.iter().filter(|u| u["reason"] == "untagged cost").count(), 31);
    // AWS cost and margin are internal: in margin.json per tenant, never on an invoice.
    let tenants = margin["tenants"].as_array().unwrap();
    let allocated: Decimal = tenants
        .iter()
        .map(|t| Decimal::from_str(t["allocated_cost"].as_str().unwrap()).unwrap())
        .sum();
    assert_eq!(
        allocated,
        Decimal::from_str(margin["reconciliation"]["allocated"].as_str().unwrap()).unwrap()
    );
    assert!(tenants.iter().all(|t| t["provisional"] == true), "the last two days are estimated");
    for i in invoices(&out) {
        for internal in ["allocated_cost", "margin", "provisional"] {
            assert!(i.get(internal).is_none(), "{internal} on a customer's invoice");
        }
    }

    // The same through the real Cost Explorer client against moto: two pages, same bytes out.
    let moto = MotoServer::start();
    moto.queue_cost_and_usage(&pages);
    let out_ce = m.root.join("out-ce");
    ok(invoice_cmd(&m, &out_ce, Some("ce"))
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE"));
    for f in ["focus.csv", "margin.json", "invoices.csv", "summary.json"] {
        let a = std::fs::read(dir.join(f)).unwrap();
        let b = std::fs::read(out_ce.join("invoices/2026-10").join(f)).unwrap();
        assert!(a == b, "{f} differs between the file and Cost Explorer");
    }

    // And through faults on the Cost Explorer calls: each kind once, then a seeded share. A run
    // the SDK's retries cannot carry stops with an error and writes no invoice; the run that
    // completes writes the same bytes.
    use agentmeter_testkit::faults::{Fault, FaultProxy, Plan, Rule};
    let mut plan = Plan::seeded(agentmeter_testkit::crash::Seeded::new("faults ce").seed)
        .rule(Rule::each(&[], "", &Fault::ALL, 60));
    // Requests are numbered from 1.
    plan.at = Fault::ALL.iter().enumerate().map(|(i, f)| (1 + i as u64, *f)).collect();
    let proxy = FaultProxy::start(moto.port(), plan);
    let mut stopped = 0;
    let out_faults = loop {
        let out = m.root.join(format!("out-faults-{stopped}"));
        let o = invoice_cmd(&m, &out, Some("ce"))
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap();
        if o.status.success() {
            break out;
        }
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("GetCostAndUsage") && !err.contains("panicked"), "{err}");
        assert!(files_under(&out).iter().all(|f| !f.starts_with("invoices/")), "{err}");
        stopped += 1;
        assert!(stopped < 20, "no run completed: {}", proxy.summary());
    };
    let injected = proxy.injected();
    assert!(Fault::ALL.iter().all(|f| injected.contains_key(f)), "{}", proxy.summary());
    for f in ["focus.csv", "margin.json", "invoices.csv", "summary.json"] {
        let a = std::fs::read(dir.join(f)).unwrap();
        let b = std::fs::read(out_faults.join("invoices/2026-10").join(f)).unwrap();
        assert!(a == b, "{f} differs after faults on Cost Explorer");
    }
    println!("faults, Cost Explorer: {}; {stopped} runs stopped with an error", proxy.summary());
}

#[test]
fn unpriced_usage_fails_the_run_and_is_never_billed_at_zero() {
    let m = month();
    let without_haiku = BOOK.split("[[models]]\nid = \"us.anthropic").next().unwrap().to_owned()
        + &BOOK[BOOK.find("[plans.basic]").unwrap()..];
    std::fs::write(m.root.join("prices.toml"), without_haiku).unwrap();
    let out = m.root.join("out");
    let res = invoice_cmd(&m, &out, None).output().unwrap();
    assert_eq!(res.status.code(), Some(1));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("invoices are incomplete") && err.contains("nothing was billed at zero"),
        "{err}"
    );
    let dir = out.join("invoices/2026-10");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["complete"], false);
    let problems = summary["problems"].as_array().unwrap();
    assert!(!problems.is_empty());
    assert!(
        problems.iter().all(|p| p["model_id"] == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
            && p["reason"].as_str().unwrap().contains("not in the price book"))
    );
    // No line bills it; the incomplete invoices' rows name it in `problems`.
    let csv = std::fs::read_to_string(dir.join("invoices.csv")).unwrap();
    let haiku = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
    assert!(!csv.lines().any(|l| l.split(',').nth(10) == Some(haiku)), "{csv}");
    assert!(csv.lines().any(|l| l.contains(",false,") && l.contains(haiku)), "{csv}");
    let incomplete: Vec<Value> =
        invoices(&out).into_iter().filter(|i| i["complete"] == false).collect();
    assert!(!incomplete.is_empty() && incomplete.iter().all(|i| i["tier"] == "premium"));
}

#[test]
fn a_tenants_files_hold_no_other_tenant() {
    let m = month();
    let (pages, _) = cost_pages();
    let file = m.root.join("costs.json");
    std::fs::write(&file, serde_json::to_vec(&pages[0]).unwrap()).unwrap();
    let out = m.root.join("out");
    // One page alone still carries its NextPageToken: an incomplete file is refused.
    let res = invoice_cmd(&m, &out, Some(file.to_str().unwrap())).output().unwrap();
    assert_eq!(res.status.code(), Some(2), "{}", String::from_utf8_lossy(&res.stderr));
    std::fs::write(&file, serde_json::to_vec(&pages).unwrap()).unwrap();
    ok(&mut invoice_cmd(&m, &out, Some(file.to_str().unwrap())));
    let dir = out.join("invoices/2026-10");
    let invs = invoices(&out);
    let ids: Vec<String> =
        invs.iter().map(|i| i["tenant_id"].as_str().unwrap().to_owned()).collect();
    for (inv, id) in invs.iter().zip(&ids) {
        for ext in ["json", "html"] {
            let text =
                std::fs::read_to_string(dir.join("tenants").join(format!("{id}.{ext}"))).unwrap();
            for other in ids.iter().filter(|o| *o != id) {
                assert!(!text.contains(other.as_str()), "{id}.{ext} mentions {other}");
            }
            assert!(text.contains(id.as_str()));
        }
        assert_eq!(inv["invoice_number"], format!("AM-202610-{id}"));
    }
}

#[test]
fn costs_in_another_currency_are_refused_naming_the_file_and_the_currency() {
    let m = month();
    let (pages, _) = cost_pages();
    let eur =
        serde_json::to_string(&pages).unwrap().replace("\"Unit\":\"USD\"", "\"Unit\":\"EUR\"");
    let file = m.root.join("costs-eur.json");
    std::fs::write(&file, eur).unwrap();
    let out = m.root.join("out");
    let res = invoice_cmd(&m, &out, Some(file.to_str().unwrap())).output().unwrap();
    assert_eq!(res.status.code(), Some(2));
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: --costs {}: the costs are in EUR but the price book is in USD; give costs in USD (no conversion is made)",
            file.display()
        )
    );
    assert!(!out.join("invoices").exists(), "nothing written");
}

#[test]
fn an_absurd_token_count_is_quarantined_and_blocks_no_one() {
    // The reproduction: three events of one tenant with 5e18 input tokens (they would
    // overflow the day's sums) and one small event of another tenant on the same day.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let line = |id: &str, tenant: &str, input: i64| {
        format!(
            r#"{{"event":"inference_usage","event_id":"{id}","timestamp":"2026-10-03T09:00:00Z","tier":"basic","clinic_id":"{tenant}","user_id":"u1","model_id":"mistral.ministral-3-8b-instruct","input_tokens":{input},"output_tokens":5,"total_tokens":{}}}"#,
            input + 5
        )
    };
    let text: String = [
        line("huge-1", "clinic-a", 5_000_000_000_000_000_000),
        line("huge-2", "clinic-a", 5_000_000_000_000_000_000),
        line("huge-3", "clinic-a", 5_000_000_000_000_000_000),
        line("small", "clinic-b", 1000),
    ]
    .join("\n");
    std::fs::write(&input, text + "\n").unwrap();
    let lake = dir.path().join("lake");
    let a = accounting(&ingest(&lake, &[&input], &[]));
    assert_eq!(a.events_written, 1);
    assert_eq!(a.quarantined.get(&agentmeter_schemas::Reason::ImplausibleValue), Some(&3));
    std::fs::write(dir.path().join("prices.toml"), BOOK).unwrap();
    let out = dir.path().join("out");
    ok(bin()
        .arg("invoice")
        .arg("--lake")
        .arg(&lake)
        .args(["--period", "2026-10"])
        .arg("--prices")
        .arg(dir.path().join("prices.toml"))
        .arg("--out")
        .arg(&out));
    let b: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("invoices/2026-10/tenants/clinic-b.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(b["complete"], true);
    let input_line =
        b["lines"].as_array().unwrap().iter().find(|l| l["component"] == "input_tokens");
    assert_eq!(input_line.unwrap()["quantity"], 1000);
    assert!(!out.join("invoices/2026-10/tenants/clinic-a.json").exists());
}
