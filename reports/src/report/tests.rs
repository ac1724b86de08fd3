//! A three-day lake with known shares (two tiers, six tenants, one noisy neighbour): exact
//! figures from `gather`, and a page that holds every section, escapes hostile strings, refers
//! to nothing outside itself, renders to the same bytes twice, and loads in Chromium.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use agentmeter_aggregate::{EventWriter, Lake, WriterOptions};
use agentmeter_schemas::tables::HOUR_MS;
use agentmeter_schemas::{EventId, ModelId, SourceUri, TenantId, Tier, Tokens, UsageEvent, UserId};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::*;
use crate::flags::{Evidence, Flag, FlagKind, FlagStatus, Severity};
use crate::invoice::Period;
use crate::invoice::export::{MarginSummary, Reconciliation, TierMargin};

const HOSTILE_MODEL: &str = "<script>alert(1)</script>";

fn oct(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, day).unwrap()
}

fn midnight(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn period() -> Period {
    Period::parse("2026-10").unwrap()
}

/// `requests` events of `tokens` each for `tenant` in hour `hour` of October 2026.
fn burst(
    out: &mut Vec<UsageEvent>,
    tier: &str,
    tenant: &str,
    model: &str,
    hour: i64,
    requests: i64,
    tokens: i64,
) {
    let start = period().start_time().timestamp_millis() + hour * HOUR_MS;
    for i in 0..requests {
        out.push(UsageEvent {
            event_time_ms: start + i * 1000,
            event_id: EventId::new(format!("{tenant}-{hour}-{i}")).unwrap(),
            tier: Tier::new(tier).unwrap(),
            tenant_id: TenantId::new(tenant).unwrap(),
            user_id: UserId::new("u1").unwrap(),
            model_id: ModelId::new(model).unwrap(),
            source: SourceUri::new("file:///test"),
            tokens: Tokens {
                input: tokens - 1,
                output: 1,
                total: tokens,
                cache_read: 0,
                cache_write: 0,
                cache_write_1h: 0,
            },
            session_id: None,
            service_tier: Default::default(),
        });
    }
}

/// Basic (no capacity): `noisy` 6/h and `quiet-a`, `quiet-b` 2/h over days 1–2 (shares 0.6,
/// 0.2, 0.2); `quiet-c` one call at day 1 05:00 (pool 11 then); `quiet-a` alone at day 3
/// 00:00 (share 1.0). Premium (capacity 10/h): `p1` 3/h on day 1 and 8 at day 2 10:00,
/// `p2` 1/h over days 1–3.
fn events() -> Vec<UsageEvent> {
    let mut ev = Vec::new();
    for h in 0..48 {
        burst(&mut ev, "basic", "noisy", "m-small", h, 6, 100);
        burst(&mut ev, "basic", "quiet-a", "m-small", h, 2, 50);
        burst(&mut ev, "basic", "quiet-b", "m-small", h, 2, 30);
    }
    burst(&mut ev, "basic", "quiet-c", HOSTILE_MODEL, 5, 1, 500);
    burst(&mut ev, "basic", "quiet-a", "m-small", 48, 1, 50);
    for h in 0..24 {
        burst(&mut ev, "premium", "p1", "m-large", h, 3, 1000);
    }
    burst(&mut ev, "premium", "p1", "m-large", 34, 8, 1000);
    for h in 0..72 {
        burst(&mut ev, "premium", "p2", "m-large", h, 1, 10);
    }
    ev
}

fn lake() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, WriterOptions::default());
    for e in events() {
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    dir
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn margin() -> MarginSummary {
    let tier =
        |name: &str, revenue: &str, allocated: &str, unallocated: &str, margin: &str| TierMargin {
            tier: name.into(),
            revenue: d(revenue),
            allocated_cost: d(allocated),
            unallocated_cost: d(unallocated),
            margin: d(margin),
        };
    MarginSummary {
        period: "2026-10".into(),
        currency: "USD".into(),
        tiers: vec![
            tier("basic", "1234.565", "0.1", "0.2", "1234.265"),
            tier("premium", "9876.54", "4321.09", "0", "5555.45"),
        ],
        tenants: vec![],
        untiered_cost: d("1.5"),
        pools: vec![],
        reconciliation: Reconciliation {
            cost_explorer_total: d("4322.89"),
            cost_explorer_total_exact: d("4322.89"),
            allocated: d("4321.19"),
            unallocated: d("0.2"),
            reconciled: false,
        },
    }
}

fn flag(tenant: &str, action: &str, status: FlagStatus, day: u32) -> Flag {
    Flag {
        id: format!("silo_migration/basic/{tenant}"),
        kind: FlagKind::SiloMigration,
        tier: Tier::new("basic").unwrap(),
        tenant_id: Some(TenantId::new(tenant).unwrap()),
        window_start: midnight(2026, 10, day),
        window_end: midnight(2026, 10, day + 7),
        metric: "pool_share".into(),
        value: 0.6,
        threshold: 0.2,
        evidence: Evidence { hours_over: Some(48), hours_active: Some(48), ..Evidence::default() },
        severity: Severity::Warning,
        recommended_action: action.into(),
        status,
    }
}

fn options() -> ReportOptions {
    let mut capacity = BTreeMap::new();
    capacity.insert(Tier::new("premium").unwrap(), PoolCapacity { requests_per_hour: Some(10) });
    ReportOptions {
        top_tenants: 3,
        capacity,
        margin: Some(margin()),
        flags: vec![
            flag("quiet-a", "resolved one", FlagStatus::Resolved, 1),
            flag("noisy", "Move noisy to a silo & re-check <soon>", FlagStatus::Active, 1),
            // September: outside the period.
            Flag {
                window_start: midnight(2026, 9, 1),
                window_end: midnight(2026, 9, 8),
                ..flag("quiet-b", "old", FlagStatus::Active, 1)
            },
        ],
        ..ReportOptions::default()
    }
}

fn gathered() -> ReportData {
    let dir = lake();
    gather(&Lake::open_dir(dir.path()).unwrap(), period(), &options()).unwrap()
}

fn ids(top: &[TenantShare]) -> Vec<&str> {
    top.iter().map(|s| s.stats.tenant_id.as_str()).collect()
}

#[test]
fn gather_counts_requests_tokens_and_tenants_per_tier() {
    let data = gathered();
    assert_eq!(data.hours, 744);
    assert_eq!(data.daily.days.len(), 31);
    assert_eq!(data.requests, 482 + 152);
    assert_eq!(data.tokens, 28_800 + 4_850 + 2_880 + 500 + 80_000 + 720);
    assert_eq!(data.tenants, 6);
    let tiers: Vec<(&str, i64, i64, usize)> =
        data.tiers.iter().map(|t| (t.tier.as_str(), t.requests, t.tokens, t.tenants)).collect();
    assert_eq!(tiers, [("basic", 482, 37_030, 4), ("premium", 152, 80_720, 2)]);
    let models: Vec<(&str, &str, i64, i64, usize)> = data
        .models
        .iter()
        .map(|m| (m.tier.as_str(), m.model_id.as_str(), m.requests, m.tokens, m.tenants))
        .collect();
    assert_eq!(
        models,
        [
            ("basic", "m-small", 481, 36_530, 3),
            ("basic", HOSTILE_MODEL, 1, 500, 1),
            ("premium", "m-large", 152, 80_720, 2),
        ]
    );
}

#[test]
fn gather_computes_hourly_shares_of_the_pool() {
    let data = gathered();
    let basic = &data.tiers[0];
    assert_eq!(basic.capacity_per_hour, None);
    assert_eq!(ids(&basic.top), ["noisy", "quiet-a", "quiet-b"]);
    assert_eq!(basic.pool_requests[0], 10);
    assert_eq!(basic.pool_requests[5], 11);
    assert_eq!(basic.pool_requests[48], 1);
    assert_eq!(basic.pool_requests[49], 0);
    let (noisy, a, b) = (&basic.top[0], &basic.top[1], &basic.top[2]);
    assert_eq!(noisy.share.len(), 744);
    assert_eq!((noisy.share[0], noisy.share[5], noisy.share[47]), (0.6, 6.0 / 11.0, 0.6));
    assert_eq!((noisy.share[48], noisy.share[743]), (0.0, 0.0));
    assert_eq!((a.share[0], a.share[5], a.share[48]), (0.2, 2.0 / 11.0, 1.0));
    // Exactly 20% is not above the line.
    let stats = |s: &TenantShare| {
        (s.stats.requests, s.stats.hours_active, s.stats.hours_over, s.stats.peak_share)
    };
    assert_eq!(stats(noisy), (288, 48, 48, 0.6));
    assert_eq!(stats(a), (97, 49, 1, 1.0));
    assert_eq!(stats(b), (96, 48, 0, 0.2));
    assert_eq!((noisy.tokens, a.tokens, b.tokens), (28_800, 4_850, 2_880));
    assert!(basic.others_over.is_empty(), "quiet-c peaks at 1/11");
    assert_eq!(basic.utilization, None);
    assert_eq!(basic.hours_saturated, 0);
}

#[test]
fn with_a_capacity_shares_are_of_the_capacity_and_utilization_is_drawn() {
    let data = gathered();
    let premium = &data.tiers[1];
    assert_eq!(premium.capacity_per_hour, Some(10));
    assert_eq!(ids(&premium.top), ["p1", "p2"]);
    let p1 = &premium.top[0];
    assert_eq!((p1.share[0], p1.share[34], p1.share[35]), (0.3, 0.8, 0.0));
    assert_eq!((p1.stats.hours_active, p1.stats.hours_over, p1.stats.peak_share), (25, 25, 0.8));
    assert_eq!(premium.top[1].share[71], 0.1);
    let u = premium.utilization.as_ref().unwrap();
    assert_eq!((u[0], u[34], u[50], u[72]), (0.4, 0.9, 0.1, 0.0));
    assert_eq!(premium.hours_saturated, 1);
}

#[test]
fn fewer_top_tenants_leave_the_others_over_the_line_listed() {
    let dir = lake();
    let opts = ReportOptions { top_tenants: 1, ..options() };
    let data = gather(&Lake::open_dir(dir.path()).unwrap(), period(), &opts).unwrap();
    assert_eq!(ids(&data.tiers[0].top), ["noisy"]);
    let others: Vec<(&str, u32)> =
        data.tiers[0].others_over.iter().map(|s| (s.tenant_id.as_str(), s.hours_over)).collect();
    assert_eq!(others, [("quiet-a", 1)]);
}

#[test]
fn gather_sums_daily_tokens_for_the_top_tenants_and_the_rest() {
    let data = gathered();
    let daily = &data.daily;
    let top: Vec<(&str, i64, &[i64])> =
        daily.top.iter().map(|t| (t.tenant_id.as_str(), t.total, &t.tokens[..3])).collect();
    assert_eq!(
        top,
        [
            ("p1", 80_000, &[72_000, 8_000, 0][..]),
            ("noisy", 28_800, &[14_400, 14_400, 0][..]),
            ("quiet-a", 4_850, &[2_400, 2_400, 50][..]),
        ]
    );
    assert_eq!(daily.rest_tenants, 3);
    assert_eq!(&daily.rest[..4], [1_440 + 240 + 500, 1_440 + 240, 240, 0]);
    assert!(daily.top.iter().all(|t| t.tokens[3..].iter().all(|&v| v == 0)));
    assert_eq!(daily.days[0], oct(1));
}

#[test]
fn gather_keeps_the_period_flags_in_order_and_the_matching_margin() {
    let data = gathered();
    let flags: Vec<(&str, FlagStatus)> =
        data.flags.iter().map(|f| (f.tenant_id.as_ref().unwrap().as_str(), f.status)).collect();
    assert_eq!(flags, [("noisy", FlagStatus::Active), ("quiet-a", FlagStatus::Resolved)]);
    assert_eq!(data.margin, Some(margin()));
    assert!(data.notes.is_empty());

    let dir = lake();
    let other = MarginSummary { period: "2026-09".into(), ..margin() };
    let opts = ReportOptions { margin: Some(other), ..options() };
    let data = gather(&Lake::open_dir(dir.path()).unwrap(), period(), &opts).unwrap();
    assert_eq!(data.margin, None);
    assert!(data.notes[0].contains("2026-09"), "{:?}", data.notes);
    assert!(!render(&data).contains("id=\"cost-revenue\""));
}

#[test]
fn a_period_without_usage_and_bad_options_are_clear_errors() {
    let dir = lake();
    let reader = Lake::open_dir(dir.path()).unwrap();
    let err = gather(&reader, Period::parse("2026-11").unwrap(), &options()).unwrap_err();
    assert!(matches!(err, ReportError::NoUsage { .. }), "{err}");
    assert!(err.to_string().starts_with("no usage in 2026-11"), "{err}");
    let err = gather(&reader, period(), &ReportOptions { share_threshold: 1.5, ..options() })
        .unwrap_err();
    assert!(err.to_string().contains("share_threshold"), "{err}");
    let mut zero = options();
    zero.capacity.insert(Tier::new("basic").unwrap(), PoolCapacity { requests_per_hour: Some(0) });
    let err = gather(&reader, period(), &zero).unwrap_err();
    assert!(err.to_string().contains("tier basic has a capacity of 0"), "{err}");
}

#[test]
fn margin_json_and_flags_jsonl_parse_back() {
    let json = serde_json::to_string_pretty(&margin()).unwrap();
    assert_eq!(parse_margin(&json).unwrap(), margin());
    let f = flag("noisy", "a & b", FlagStatus::Active, 1);
    let line = serde_json::to_string(&f).unwrap();
    assert_eq!(parse_flags(&format!("{line}\n\n{line}\n")).unwrap(), vec![f.clone(), f]);
    let err = parse_flags(&format!("{line}\nnot json\n")).unwrap_err();
    assert!(err.to_string().contains("flags line 2"), "{err}");
}

#[test]
fn the_page_has_every_section_and_chart() {
    let data = gathered();
    let page = render(&data);
    for id in SECTION_IDS {
        assert!(page.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
    for heading in [
        "<h2>Summary</h2>",
        "<h2>Pool share over time</h2>",
        "<h3>Tier basic</h3>",
        "<h3>Tier premium</h3>",
        "<h2>Daily tokens per tenant</h2>",
        "<h2>Cost against revenue per tier</h2>",
        "<h2>Flags</h2>",
    ] {
        assert!(page.contains(heading), "{heading}");
    }
    // Two charts per tier, the daily chart and the margin chart.
    assert_eq!(page.matches("<svg ").count(), 6);
    assert!(page.contains("<meta name=\"agentmeter-charts\" content=\"6\">"));
    assert_eq!(page.matches("role=\"img\" aria-label=").count(), 6);
    // One line per top tenant (3 basic, 2 premium), one pool line per tier.
    assert_eq!(page.matches("<polyline class=\"tenant\"").count(), 5);
    assert_eq!(page.matches("<polyline class=\"pool\"").count(), 2);
    assert_eq!(page.matches("20% silo-migration line</text>").count(), 2);
    assert_eq!(page.matches("80% saturation line</text>").count(), 1);
    assert!(page.contains("stroke-dasharray"));
    // A polyline has one point per hour of the month.
    let first = page.split("<polyline class=\"tenant\"").nth(1).unwrap();
    let points = first.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(points.split(' ').count(), 744);
    // Days of month on the x axis, k suffixes on the token axis, percentages on shares.
    assert!(page.contains(">31</text>"));
    assert!(page.contains(">100%</text>"));
    assert!(page.contains("k</text>"));
    // Stacked bars: day 1 has every top tenant and the rest.
    assert!(page.contains("<title>2026-10-01 · p1: 72,000 tokens</title>"));
    assert!(page.contains("<title>2026-10-01 · rest (3 tenants): 2,180 tokens</title>"));
    // Money from Decimal, rounded half away from zero.
    assert!(page.contains(">1,234.57</text>"));
    assert!(page.contains("<td class=\"n\">0.10</td><td class=\"n\">0.20</td>"));
    assert!(page.contains("<td class=\"n\">4,321.09</td><td class=\"n\">0.00</td>"));
    assert!(page.contains("does not reconcile"));
    // Flags: the September one is not listed.
    assert!(page.contains("48 / 48 h over"));
    assert!(!page.contains(">old<"));
}

#[test]
fn the_page_escapes_data_and_is_self_contained() {
    let page = render(&gathered());
    assert!(!page.contains(HOSTILE_MODEL));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("Move noisy to a silo &amp; re-check &lt;soon&gt;"));
    let lower = page.to_ascii_lowercase();
    for needle in ["<script", "http://", "https://", "src=", "href=", "url(", "@import"] {
        assert!(!lower.contains(needle), "{needle}");
    }
}

#[test]
fn the_same_data_renders_to_the_same_bytes() {
    let dir = lake();
    let reader = Lake::open_dir(dir.path()).unwrap();
    let a = gather(&reader, period(), &options()).unwrap();
    let b = gather(&reader, period(), &options()).unwrap();
    assert_eq!(a, b);
    let (a, b) = (render(&a), render(&b));
    assert!(a == b, "two renders differ");
    assert!(a == render(&gather(&reader, period(), &options()).unwrap()));
}

#[test]
fn no_flags_and_no_margin_say_so() {
    let dir = lake();
    let opts = ReportOptions { margin: None, flags: Vec::new(), ..options() };
    let data = gather(&Lake::open_dir(dir.path()).unwrap(), period(), &opts).unwrap();
    let page = render(&data);
    assert!(page.contains("No flags for this period."));
    assert!(!page.contains("Cost against revenue"));
    assert_eq!(page.matches("<svg ").count(), 5);
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-report")
}

/// Renders the page in headless Chromium through `scripts/check-report`, when Chromium is
/// installed (CI installs it and also runs the script on the demo's report).
#[test]
fn the_page_loads_cleanly_in_chromium() {
    if !Path::new("/usr/bin/chromium").exists() {
        println!("skipped: /usr/bin/chromium is missing (apt-get install -y chromium)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    std::fs::write(&html, render(&gathered())).unwrap();
    let png = dir.path().join("report.png");
    let out = Command::new("bash").arg(script()).arg(&html).arg(&png).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "check-report failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(png.to_str().unwrap()), "{stdout}");
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);

    // A page that loads a missing file, and one without the sections, are refused.
    let broken = dir.path().join("broken.html");
    let page = render(&gathered()).replace("</main>", "<img src=\"missing.png\" alt=\"\"></main>");
    std::fs::write(&broken, page).unwrap();
    let out = Command::new("bash").arg(script()).arg(&broken).output().unwrap();
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let empty = dir.path().join("empty.html");
    std::fs::write(&empty, "<!doctype html><title>x</title><p>nothing</p>").unwrap();
    let out = Command::new("bash").arg(script()).arg(&empty).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("section"), "{out:?}");
}

/// A month that looks like production (daily and weekly rhythm, one noisy neighbour per tier,
/// a saturated evening), for looking at the page: writes it to `$AGENTMETER_REPORT_DEMO` or
/// the temp dir and prints the path. Run with `-- --ignored demo_month`.
#[test]
#[ignore]
fn demo_month() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let basic = [("clinic-noisy", 14), ("clinic-a", 6), ("clinic-b", 5), ("clinic-c", 4)];
    let basic_tail = ["clinic-d", "clinic-e", "clinic-f", "clinic-g", "clinic-h"];
    let premium = [("hospital-x", 60), ("hospital-y", 45), ("hospital-z", 40), ("lab-q", 30)];
    let mut ev = Vec::new();
    for h in 0..744i64 {
        let hour_of_day = h % 24;
        let weekday = (h / 24 + 3) % 7 < 5; // 2026-10-01 is a Thursday
        let diurnal = if (8..20).contains(&hour_of_day) { 3 } else { 1 };
        let scale = if weekday { diurnal } else { 1 };
        for (tenant, base) in basic {
            let n = base * scale / 2 + rand(base as u64 / 2 + 1) as i64;
            let tenant_scale = if tenant == "clinic-noisy" && h > 240 { 2 } else { 1 };
            burst(
                &mut ev,
                "basic",
                tenant,
                "mistral.ministral-3-8b-instruct",
                h,
                n * tenant_scale,
                900,
            );
        }
        for tenant in basic_tail {
            if rand(3) == 0 {
                burst(
                    &mut ev,
                    "basic",
                    tenant,
                    "mistral.ministral-3-8b-instruct",
                    h,
                    1 + rand(2) as i64,
                    700,
                );
            }
        }
        for (tenant, base) in premium {
            let surge = if tenant == "lab-q" && (400..430).contains(&h) { 5 } else { 1 };
            let n = (base * scale / 2 + rand(base as u64 / 3 + 1) as i64) * surge;
            burst(&mut ev, "premium", tenant, "anthropic.claude-sonnet-4", h, n, 2400);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, WriterOptions::default());
    for e in ev {
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    let mut opts = options();
    opts.top_tenants = 5;
    opts.capacity
        .insert(Tier::new("premium").unwrap(), PoolCapacity { requests_per_hour: Some(380) });
    opts.flags.push(Flag {
        kind: FlagKind::PoolSaturation,
        id: "pool_saturation/premium".into(),
        tier: Tier::new("premium").unwrap(),
        tenant_id: None,
        metric: "pool_utilization".into(),
        value: 1.3,
        threshold: 0.8,
        severity: Severity::Critical,
        recommended_action: "Scale the premium pool".into(),
        ..flag("noisy", "", FlagStatus::Active, 17)
    });
    let data = gather(&lake, period(), &opts).unwrap();
    let out = std::env::var_os("AGENTMETER_REPORT_DEMO")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("agentmeter-report-demo.html"));
    std::fs::write(&out, render(&data)).unwrap();
    println!("wrote {}", out.display());
}
