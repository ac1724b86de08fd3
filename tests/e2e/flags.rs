//! Flags on a generated month with known noisy neighbours, alerts sent exactly once, a
//! signed webhook, and policy errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::Value;

use crate::util::*;

pub(crate) struct Month {
    _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) lake: PathBuf,
    pub(crate) noisy: Vec<String>,
    /// `trace_id:span_id` of the generator's runaway invocations.
    pub(crate) runaways: Vec<String>,
}

pub(crate) fn month() -> Month {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let expected = generate(
        &root.join("gen"),
        &["--tenants", "12", "--events", "40000", "--noisy", "2", "--seed", "5"],
    );
    let lake = root.join("lake");
    ingest(&lake, &[&root.join("gen/input")], &[]);
    // Quotas sized to the generated volume, so that the flags here are about the pool; the
    // premium pool (four tenants) is measured against a provisioned capacity.
    std::fs::write(
        root.join("policy.toml"),
        "[tiers.basic]\ndaily_quota = 100000\nrate_limit_per_second = 100\n[tiers.premium]\ndaily_quota = 100000\nrate_limit_per_second = 100\nrequests_per_hour = 2000\n",
    )
    .unwrap();
    let mut noisy = expected.noisy_tenants.clone();
    noisy.sort();
    Month { _dir: dir, root, lake, noisy, runaways: expected.runaway_invocations }
}

pub(crate) fn flags(m: &Month, period: &str, extra: &[&str]) -> std::process::Command {
    let mut c = bin();
    c.arg("flags")
        .arg("--lake")
        .arg(&m.lake)
        .args(["--period", period])
        .arg("--policy")
        .arg(m.root.join("policy.toml"));
    c.arg("--out").arg(m.root.join("out")).args(extra);
    c
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn noisy_neighbours_are_flagged_and_the_quiet_are_not_and_alerts_go_out_once() {
    let m = month();
    let alerts = m.root.join("alerts/alerts.jsonl");
    let sink = format!("file://{}", alerts.display());
    ok(&mut flags(&m, "2026-10", &["--alert", &sink]));
    let flagged: Vec<Value> = lines(&m.root.join("out/flags.jsonl"));
    // The measured share is the value, the fraction of hours over the line evidence.
    for f in flagged.iter().filter(|f| f["kind"] == "silo_migration") {
        let (v, t) = (f["value"].as_f64().unwrap(), f["threshold"].as_f64().unwrap());
        assert!(v > t && v < 1.0, "a share of {v} against {t}");
        assert!(f["evidence"]["figures"]["fraction_of_hours_over"].as_f64().unwrap() <= 1.0);
    }
    // A month without usage says which days the lake holds.
    let empty = ok(&mut flags(&m, "2026-05", &[]));
    let said = String::from_utf8_lossy(&empty.stdout);
    assert!(
        said.contains(
            "no usage in the lake from 2026-05-01 to 2026-06-01 (exclusive): it holds usage from \
             2026-10-01 to 2026-10-31"
        ),
        "{said}"
    );
    let mut silo: Vec<String> = flagged
        .iter()
        .filter(|f| f["kind"] == "silo_migration" && f["status"] == "active")
        .map(|f| f["tenant_id"].as_str().unwrap().to_owned())
        .collect();
    silo.sort();
    assert_eq!(silo, m.noisy, "exactly the generator's noisy neighbours");
    for f in flagged.iter().filter(|f| f["kind"] == "silo_migration") {
        assert_eq!(f["tier"], "basic");
        assert!(
            f["evidence"]["hours_over"].as_u64().unwrap() * 2
                >= f["evidence"]["hours_active"].as_u64().unwrap()
        );
        assert_eq!(f["threshold"], 0.2);
        assert!(f["recommended_action"].as_str().unwrap().contains("silo"));
    }
    // The flags table holds the flags active at the end of each day; DuckDB reads it.
    let table =
        format!("read_parquet('{}/flags/*/*.parquet', hive_partitioning = true)", m.lake.display());
    let last_day = duckdb(&format!(
        "SELECT tenant_id FROM {table} WHERE dt = '2026-10-31' AND kind = 'silo_migration' ORDER BY tenant_id"
    ));
    let last: Vec<&str> = last_day.iter().map(|r| r["tenant_id"].as_str().unwrap()).collect();
    assert_eq!(last, m.noisy);

    // The report without the run's outputs shows the flags the lake's table holds.
    let page = m.root.join("report.html");
    ok(bin()
        .arg("report")
        .arg("--lake")
        .arg(&m.lake)
        .args(["--period", "2026-10", "--out"])
        .arg(&page));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("No flags for this period"));
    for t in &m.noisy {
        assert!(
            html.contains(&format!("silo_migration/basic/{t}")) || html.contains(t.as_str()),
            "{t}"
        );
    }

    // Exactly the generator's runaway invocations are flagged, read from agent_invocations.
    let mut runaway: Vec<String> = flagged
        .iter()
        .filter(|f| f["kind"] == "runaway_session")
        .map(|f| f["evidence"]["invocation"].as_str().unwrap().to_owned())
        .collect();
    runaway.sort();
    assert!(!m.runaways.is_empty());
    assert_eq!(runaway, m.runaways, "exactly the generator's runaway invocations");

    let first = lines(&alerts);
    let raised: Vec<&Value> = first.iter().filter(|a| a["transition"] == "raised").collect();
    assert!(
        raised.iter().filter(|a| a["flag"]["kind"] == "silo_migration").count() == m.noisy.len()
    );
    // Evaluating the same month again sends nothing.
    ok(&mut flags(&m, "2026-10", &["--alert", &sink]));
    assert_eq!(lines(&alerts).len(), first.len());
    // November has no usage: every flag resolves, once.
    ok(&mut flags(&m, "2026-11", &["--alert", &sink]));
    ok(&mut flags(&m, "2026-11", &["--alert", &sink]));
    let all = lines(&alerts);
    let mut ids: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for a in &all {
        ids.entry(a["flag"]["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(a["transition"].as_str().unwrap().to_owned());
    }
    assert!(!ids.is_empty());
    for (id, transitions) in ids {
        assert_eq!(transitions, ["raised", "resolved"], "{id}");
    }
    let unique: std::collections::BTreeSet<&str> =
        all.iter().map(|a| a["alert_id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), all.len(), "alert ids are unique");
}

/// A received request: its headers (lower-case names) and body.
pub(crate) type Request = (Vec<(String, String)>, String);

/// A one-connection-at-a-time HTTP server answering with the status the test sets and
/// keeping every request (headers, body).
pub(crate) struct Hook {
    pub(crate) port: u16,
    pub(crate) status: Arc<std::sync::atomic::AtomicU16>,
    pub(crate) seen: Arc<Mutex<Vec<Request>>>,
}

pub(crate) fn hook(initial: u16) -> Hook {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&seen);
    let status = Arc::new(std::sync::atomic::AtomicU16::new(initial));
    let current = Arc::clone(&status);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            keep.lock().unwrap().push((headers, String::from_utf8(body).unwrap()));
            let status = current.load(std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Hook { port, status, seen }
}

/// What must never be in the alert state, the output or the logs: the parts of the webhook
/// URL below and the signing secret.
const CREDENTIALS: [&str; 4] = ["pass", "s3cr3t", "user:", "for-the-test"];

fn assert_no_credentials(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for needle in CREDENTIALS {
        assert!(!text.contains(needle), "{needle:?} in {what}: {text}");
    }
}

#[test]
fn a_signed_webhook_is_retried_recorded_and_delivered_by_the_next_run() {
    let m = month();
    let secret = "s3cr3t-for-the-test";
    let state_file = m.lake.join("_state/flags.json");
    // First run: the receiver fails every attempt; the failure is recorded, the run goes on.
    // The URL carries credentials in its user-info and query, as webhook providers hand out.
    let receiver = hook(500);
    let url = format!("http://user:pass@127.0.0.1:{}/hook?token=s3cr3t", receiver.port);
    let shown = format!("http://[redacted]@127.0.0.1:{}/hook?[redacted]", receiver.port);
    let out = ok(flags(&m, "2026-10", &["--alert", &url, "--alert-backoff-ms", "5"])
        .env("AGENTMETER_WEBHOOK_SECRET", secret));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("failed (kept for the next run)"), "{text}");
    assert_no_credentials("stdout", &out.stdout);
    assert_no_credentials("stderr", &out.stderr);
    let state_bytes = std::fs::read(&state_file).unwrap();
    assert_no_credentials("the alert state", &state_bytes);
    let state: Value = serde_json::from_slice(&state_bytes).unwrap();
    let pending = state["pending"].as_array().unwrap();
    // One alert per noisy neighbour, and a raise and a resolve per runaway invocation (each
    // is over within the month), all kept for the sink under its redacted form and key.
    let total = m.noisy.len() + 2 * m.runaways.len();
    assert_eq!(pending.len(), total);
    let key = pending[0]["sink_key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 64);
    for p in pending {
        assert_eq!(p["sink"], shown.as_str());
        assert_eq!(p["sink_key"], key.as_str());
    }
    let attempts: Vec<u64> = pending.iter().map(|p| p["attempts"].as_u64().unwrap()).collect();
    assert_eq!(attempts[0], 4);
    assert!(attempts[1..].iter().all(|&a| a == 0), "{attempts:?}");
    // The circuit breaker: only the first alert was tried, 4 times; the rest were kept.
    let first = receiver.seen.lock().unwrap().clone();
    let idempotency_key = |headers: &[(String, String)]| {
        headers.iter().find(|(h, _)| h == "idempotency-key").map(|(_, v)| v.clone()).unwrap()
    };
    let tried: Vec<String> = first.iter().map(|(h, _)| idempotency_key(h)).collect();
    assert_eq!(tried, vec![pending[0]["alert"]["alert_id"].as_str().unwrap().to_owned(); 4]);
    let circuit = format!("circuit open for {shown}: {total} alerts kept for the next run");
    assert!(text.contains(&circuit), "{text}");

    // The state as an older version left it, with one alert past the maximum age: the
    // second alert's sink as given (credentials and all), the first one failed long ago.
    let mut old = state.clone();
    let expired_id = pending[0]["alert"]["alert_id"].as_str().unwrap().to_owned();
    old["pending"][0]["first_failed_at"] = "2000-01-01T00:00:00Z".into();
    old["pending"][1] = serde_json::json!({"sink": url, "alert": pending[1]["alert"]});
    std::fs::write(&state_file, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    let all: std::collections::BTreeSet<String> = pending
        .iter()
        .map(|p| p["alert"]["alert_id"].as_str().unwrap().to_owned())
        .filter(|id| *id != expired_id)
        .collect();

    // A run without the sink: the old alert expires, the others stay, nothing is sent, and
    // the rewritten state holds no credentials (the old entry is migrated).
    let out = ok(&mut flags(&m, "2026-10", &[]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pending alerts expired: 1 (older than 168 hours"), "{text}");
    let backlog = format!("{} alerts kept for {shown} (not configured in this run)", total - 1);
    assert!(text.contains(&backlog), "{text}");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("maximum age") && logs.contains(&expired_id), "{logs}");
    assert_no_credentials("stdout", &out.stdout);
    assert_no_credentials("stderr", &out.stderr);
    let state_bytes = std::fs::read(&state_file).unwrap();
    assert_no_credentials("the migrated alert state", &state_bytes);
    let state: Value = serde_json::from_slice(&state_bytes).unwrap();
    let pending = state["pending"].as_array().unwrap();
    assert_eq!(pending.len(), total - 1);
    assert!(pending.iter().all(|p| p["sink"] == shown.as_str() && p["sink_key"] == key.as_str()));
    assert_eq!(receiver.seen.lock().unwrap().len(), 4, "nothing sent without the sink");

    // The sink again, the receiver back: each kept alert arrives once, signed.
    receiver.status.store(200, std::sync::atomic::Ordering::SeqCst);
    receiver.seen.lock().unwrap().clear();
    ok(flags(&m, "2026-10", &["--alert", &url]).env("AGENTMETER_WEBHOOK_SECRET", secret));
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), total - 1, "{} deliveries", seen.len());
    let mut keys = std::collections::BTreeSet::new();
    for (headers, body) in &seen {
        let get = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone()).unwrap();
        let ts = get("x-agentmeter-timestamp");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.{body}").as_bytes());
        assert_eq!(
            get("x-agentmeter-signature"),
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        let alert: Value = serde_json::from_str(body).unwrap();
        assert_eq!(get("idempotency-key"), alert["alert_id"].as_str().unwrap());
        assert!(keys.insert(get("idempotency-key")), "each alert once");
    }
    assert_eq!(keys, all, "the kept alerts are the ones delivered");
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(state["pending"], serde_json::json!([]));
    // A fourth run has nothing left to send.
    receiver.seen.lock().unwrap().clear();
    ok(flags(&m, "2026-10", &["--alert", &url]).env("AGENTMETER_WEBHOOK_SECRET", secret));
    assert!(receiver.seen.lock().unwrap().is_empty());
}

#[test]
fn a_malformed_policy_fails_at_start_up_naming_the_field() {
    let m = month();
    std::fs::write(m.root.join("policy.toml"), "[tiers.basic]\ndaily_quota = -3\n").unwrap();
    let out = flags(&m, "2026-10", &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tiers.basic.daily_quota: must be a whole number"), "{err}");
    std::fs::write(m.root.join("policy.toml"), "").unwrap();
    let out = flags(&m, "2026-10", &["--alert-max-age-hours", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--alert-max-age-hours"));
    let out = flags(&m, "2026-10", &["--alert", "ftp://example"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--alert"));
    assert!(!m.root.join("out/flags.jsonl").exists(), "nothing written");
}

#[test]
fn budgets_alert_once_per_level_with_charges_equal_to_the_invoice() {
    let m = month();
    let prices = m.root.join("prices.toml");
    std::fs::write(&prices, crate::crash::PRICES).unwrap();
    // Budgets every tenant passes: each level is raised once per tenant, and the charges at
    // the end of the month are the usage lines of the tenant's invoice.
    std::fs::write(
        m.root.join("policy.toml"),
        "[tiers.basic]\ndaily_quota = 100000\nrate_limit_per_second = 100\n\
         [tiers.premium]\ndaily_quota = 100000\nrate_limit_per_second = 100\n\
         [budgets]\nlevels = [0.5, 1.0]\n[budgets.tiers.basic]\nusd = \"0.01\"\n\
         [budgets.tiers.premium]\ntokens = 1\n",
    )
    .unwrap();
    let refused = flags(&m, "2026-10", &[]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("the policy has usd budgets: give --prices FILE to price them"), "{err}");

    let alerts = m.root.join("alerts/alerts.jsonl");
    let sink = format!("file://{}", alerts.display());
    let with_prices = ["--prices", prices.to_str().unwrap(), "--alert", &sink];
    ok(&mut flags(&m, "2026-10", &with_prices));
    let flagged = lines(&m.root.join("out/flags.jsonl"));
    ok(&mut flags(&m, "2026-10", &with_prices));
    ok(&mut flags(&m, "2026-11", &with_prices));
    let sent: Vec<Value> =
        lines(&alerts).into_iter().filter(|a| a["flag"]["kind"] == "budget_threshold").collect();
    let tenants = duckdb(&format!(
        "SELECT DISTINCT tier, tenant_id FROM {} ORDER BY tenant_id",
        table(&m.lake, "usage_hourly")
    ));
    // Two levels per tenant, raised once, never resolved.
    assert_eq!(sent.len(), 2 * tenants.len());
    assert!(sent.iter().all(|a| a["transition"] == "raised"));
    let ids: std::collections::BTreeSet<&str> =
        sent.iter().map(|a| a["flag"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), sent.len());

    // The usage charges at the end of October are the invoice's usage lines.
    let out = m.root.join("inv");
    ok(bin()
        .arg("invoice")
        .arg("--lake")
        .arg(&m.lake)
        .args(["--period", "2026-10", "--preview", "--prices"])
        .arg(&prices)
        .arg("--out")
        .arg(&out));
    let mut checked = 0;
    for f in flagged.iter().filter(|f| {
        f["metric"] == "budget_usd" && f["id"].as_str().unwrap().ends_with("/2026-10/100%")
    }) {
        let tenant = f["tenant_id"].as_str().unwrap();
        let doc: Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("previews/2026-10/tenants/{tenant}.json"))).unwrap(),
        )
        .unwrap();
        let usage: rust_decimal::Decimal = doc["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["component"] != "plan_fee" && l["component"] != "included_usage")
            .map(|l| l["amount"].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap())
            .sum();
        let spent: rust_decimal::Decimal =
            f["evidence"]["amounts"]["spent"].as_str().unwrap().parse().unwrap();
        assert_eq!(spent, usage, "{tenant}");
        checked += 1;
    }
    assert!(checked > 0);
}
