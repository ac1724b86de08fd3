//! The API over loopback HTTP on a two-tenant lake: exact rows and totals per grouping, the
//! range rules, every authorisation answer, and an invoice preview priced to the cent.

use agentmeter_aggregate::{EventWriter, Lake, WriterOptions};
use agentmeter_schemas::{EventId, ModelId, SourceUri, TenantId, Tier, Tokens, UsageEvent, UserId};
use chrono::NaiveDate;
use serde_json::{Value, json};

use super::*;
use crate::invoice::roster::parse_roster;

const TENANT_TOKEN: &str = "clinic-a-secret";
const OPERATOR_TOKEN: &str = "operator-secret";

/// Price book: m1 1.00 in / 2.00 out per million, m2 10.00 / 20.00; basic plan 5.00 a month.
const BOOK: &str = r#"
version = "api-test"
currency = "USD"
[[models]]
id = "m1"
[[models.prices]]
effective_from = "2026-01-01"
input_per_million = "1.00"
output_per_million = "2.00"
[[models]]
id = "m2"
[[models.prices]]
effective_from = "2026-01-01"
input_per_million = "10.00"
output_per_million = "20.00"
[plans.basic]
base_fee = "5.00"
included_usage = "0"
"#;

fn event(
    tenant: &str,
    user: &str,
    model: &str,
    day: u32,
    hour: u32,
    n: i64,
    input: i64,
) -> UsageEvent {
    let t = NaiveDate::from_ymd_opt(2026, 11, day).unwrap().and_hms_opt(hour, 0, 0).unwrap();
    UsageEvent {
        event_time_ms: t.and_utc().timestamp_millis() + n,
        event_id: EventId::new(format!("{tenant}-{user}-{model}-{day}-{hour}-{n}")).unwrap(),
        tier: Tier::new("basic").unwrap(),
        tenant_id: TenantId::new(tenant).unwrap(),
        user_id: UserId::new(user).unwrap(),
        model_id: ModelId::new(model).unwrap(),
        source: SourceUri::new("file:///test"),
        tokens: Tokens {
            input,
            output: 1_000,
            total: input + 1_000,
            cache_read: 0,
            cache_write: 0,
            cache_write_1h: 0,
        },
        session_id: None,
        service_tier: Default::default(),
    }
}

/// clinic-a: Nov 1 10:00 u1 m1 ×3 (100k in), Nov 2 09:00 u2 m2 ×2 (50k in), Nov 2 23:00 u1 m1
/// ×1 (10k in). clinic-b: Nov 1 10:00 u9 m1 ×5 (1M in).
fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, WriterOptions::default());
    let mut add = |tenant, user, model, day, hour, count, input| {
        for n in 0..count {
            w.push(event(tenant, user, model, day, hour, n, input)).unwrap();
        }
    };
    add("clinic-a", "u1", "m1", 1, 10, 3, 100_000);
    add("clinic-a", "u2", "m2", 2, 9, 2, 50_000);
    add("clinic-a", "u1", "m1", 2, 23, 1, 10_000);
    add("clinic-b", "u9", "m1", 1, 10, 5, 1_000_000);
    w.finish().unwrap();
    (dir, lake)
}

struct Server {
    rt: tokio::runtime::Runtime,
    base: String,
    _dir: tempfile::TempDir,
}

fn server(prices: bool) -> Server {
    let (dir, lake) = lake();
    let tokens = ApiTokens::parse(&format!(
        "[tokens]\n{:?} = \"clinic-a\"\n{:?} = \"*\"\n",
        tokens::token_key(TENANT_TOKEN),
        tokens::token_key(OPERATOR_TOKEN)
    ))
    .unwrap();
    let roster = parse_roster("[tenants]\nclinic-z = \"basic\"\n").unwrap();
    let cfg = ApiConfig {
        lake,
        tokens,
        prices: prices.then(|| PriceBook::from_toml_str(BOOK).unwrap()),
        roster,
    };
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(cfg);
    rt.spawn(async move { axum::serve(listener, app).await });
    Server { rt, base, _dir: dir }
}

impl Server {
    fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.rt.block_on(async {
            let mut req = reqwest::Client::new().get(format!("{}{path}", self.base));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
        })
    }
}

fn rows(v: &Value) -> Vec<(String, i64, i64, i64)> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_owned(),
                r["invocations"].as_i64().unwrap(),
                r["input_tokens"].as_i64().unwrap(),
                r["total_tokens"].as_i64().unwrap(),
            )
        })
        .collect()
}

const A: &str = "/v1/usage?tenant=clinic-a&from=2026-11-01&to=2026-12-01";

#[test]
fn usage_by_day_model_and_user_adds_up_exactly() {
    let s = server(false);
    let (status, by_day) = s.get(A, Some(TENANT_TOKEN));
    assert_eq!(status, 200, "{by_day}");
    let k = |s: &str| s.to_owned();
    assert_eq!(
        rows(&by_day),
        [(k("2026-11-01"), 3, 300_000, 303_000), (k("2026-11-02"), 3, 110_000, 113_000)]
    );
    assert_eq!(by_day["tenant_id"], "clinic-a");
    assert_eq!(by_day["from"], "2026-11-01");
    assert_eq!(by_day["to"], "2026-12-01");
    assert_eq!(by_day["group_by"], "day");
    assert_eq!(by_day["tiers"], json!(["basic"]));
    assert_eq!(by_day["last_hour"], "2026-11-02T23:00:00Z");
    let totals = &by_day["totals"];
    assert_eq!(totals["invocations"], 6);
    assert_eq!(totals["input_tokens"], 410_000);
    assert_eq!(totals["output_tokens"], 6_000);
    assert_eq!(totals["total_tokens"], 416_000);
    assert_eq!(totals["usage_unknown"], 0);
    assert_eq!(totals["tool_calls"], 0);

    let (_, by_model) = s.get(&format!("{A}&group_by=model"), Some(OPERATOR_TOKEN));
    assert_eq!(rows(&by_model), [(k("m1"), 4, 310_000, 314_000), (k("m2"), 2, 100_000, 102_000)]);
    assert_eq!(by_model["totals"], by_day["totals"]);
    let (_, by_user) = s.get(&format!("{A}&group_by=user"), Some(TENANT_TOKEN));
    assert_eq!(rows(&by_user), [(k("u1"), 4, 310_000, 314_000), (k("u2"), 2, 100_000, 102_000)]);

    // `to` is exclusive: Nov 2 is left out.
    let (_, first) =
        s.get("/v1/usage?tenant=clinic-a&from=2026-11-01&to=2026-11-02", Some(TENANT_TOKEN));
    assert_eq!(rows(&first), [(k("2026-11-01"), 3, 300_000, 303_000)]);
    // A range without usage: no rows, zero totals.
    let (status, none) =
        s.get("/v1/usage?tenant=clinic-a&from=2026-10-01&to=2026-11-01", Some(TENANT_TOKEN));
    assert_eq!(status, 200);
    assert_eq!(none["rows"], json!([]));
    assert_eq!(none["totals"]["invocations"], 0);
    assert_eq!(none["last_hour"], Value::Null);
}

#[test]
fn every_token_reads_its_own_tenant_only() {
    let s = server(false);
    let b = "/v1/usage?tenant=clinic-b&from=2026-11-01&to=2026-12-01";
    let (status, body) = s.get(b, None);
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (401, "a bearer token is required (Authorization: Bearer <token>)")
    );
    assert_eq!(s.get(b, Some("guess")).0, 401);
    let (status, body) = s.get(b, Some(TENANT_TOKEN));
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (403, "this token may not read that tenant")
    );
    // The same answer for a tenant that does not exist: no probing.
    assert_eq!(s.get("/v1/usage?tenant=clinic-nobody", Some(TENANT_TOKEN)).0, 403);
    let (status, body) = s.get(b, Some(OPERATOR_TOKEN));
    assert_eq!(status, 200);
    assert_eq!(body["totals"]["input_tokens"], 5_000_000);
    assert_eq!(s.get("/v1/invoices/preview?tenant=clinic-b", Some(TENANT_TOKEN)).0, 403);
    assert_eq!(s.get("/v1/invoices/preview?tenant=clinic-b", None).0, 401);
}

#[test]
fn bad_requests_say_what_is_wrong() {
    let s = server(false);
    let cases = [
        ("/v1/usage", "the tenant parameter is required (tenant=<tenant id>)"),
        ("/v1/usage?tenant=clinic-a&from=2026-11-31", "from: expected a date, YYYY-MM-DD"),
        (
            "/v1/usage?tenant=clinic-a&from=2026-11-02&to=2026-11-02",
            "to must be after from (to is exclusive: the day after the last)",
        ),
        ("/v1/usage?tenant=clinic-a&from=2025-01-01&to=2026-11-02", "at most 366 days per request"),
        (
            "/v1/usage?tenant=clinic-a&group_by=hour",
            "group_by \"hour\": expected day, model or user",
        ),
        (
            "/v1/usage?tenant=clinic-a&tenant_id=x",
            "unknown parameter \"tenant_id\"; expected tenant, from, to, group_by",
        ),
        ("/v1/invoices/preview?tenant=clinic-a&period=2026-13", "period: "),
    ];
    for (path, want) in cases {
        let (status, body) = s.get(path, Some(OPERATOR_TOKEN));
        assert_eq!(status, 400, "{path}: {body}");
        let got = body["error"].as_str().unwrap();
        assert!(got.starts_with(want), "{path}: {got}");
    }
    let (status, body) = s.get("/v1/usage?tenant=..%2Fetc", Some(OPERATOR_TOKEN));
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().starts_with("tenant: "), "{body}");
    let (status, body) = s.get("/v1/invoices/preview?tenant=clinic-a", Some(OPERATOR_TOKEN));
    assert_eq!(status, 404);
    assert_eq!(
        body["error"],
        "invoice previews are off: the server was started without a price book (--prices)"
    );
}

#[test]
fn the_preview_prices_the_period_to_date() {
    let s = server(true);
    let (status, inv) =
        s.get("/v1/invoices/preview?tenant=clinic-a&period=2026-11", Some(TENANT_TOKEN));
    assert_eq!(status, 200, "{inv}");
    assert_eq!(inv["status"], "preview");
    assert_eq!(inv["tenant_id"], "clinic-a");
    assert_eq!(inv["period"], "2026-11");
    assert_eq!(inv["currency"], "USD");
    assert!(inv.get("invoice_number").is_none(), "a preview is not numbered: {inv}");
    assert!(inv.get("allocated_cost").is_none() && inv.get("margin").is_none());
    // m1: 310,000 in × 1.00 + 4,000 out × 2.00 per million = 0.31 + 0.008 → 0.318;
    // m2: 100,000 × 10.00 + 2,000 × 20.00 = 1.00 + 0.04 = 1.04; plan fee 5.00.
    let lines: Vec<(String, String, String)> = inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["component"].as_str().unwrap().to_owned(),
                l["model_id"].as_str().unwrap_or("").to_owned(),
                l["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let t = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        lines,
        [
            t("plan_fee", "", "5.00"),
            t("input_tokens", "m1", "0.31"),
            t("output_tokens", "m1", "0.01"),
            t("input_tokens", "m2", "1.00"),
            t("output_tokens", "m2", "0.04"),
        ]
    );
    assert_eq!(inv["total"], "6.36");
    assert_eq!(inv["complete"], true);
    // On the roster without usage: the plan fee alone. Neither: 404.
    let (status, z) =
        s.get("/v1/invoices/preview?tenant=clinic-z&period=2026-11", Some(OPERATOR_TOKEN));
    assert_eq!((status, z["total"].as_str()), (200, Some("5.00")));
    let (status, body) =
        s.get("/v1/invoices/preview?tenant=clinic-q&period=2026-11", Some(OPERATOR_TOKEN));
    assert_eq!(status, 404);
    assert_eq!(body["error"], "clinic-q has no usage in 2026-11 and is not on the roster");
}
