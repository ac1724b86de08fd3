//! Hostile ids (traversal, percent-encoding, look-alikes, NUL, right-to-left override, 10 KB,
//! markup) in every place an id enters (NDJSON fields, OTLP, CloudWatch, file names, the
//! roster, the policy, `--period`, usage API queries): refused or escaped, never a path
//! outside the lake and the outputs, never raw in what is printed or answered.

use std::path::Path;

use serde_json::{Value, json};

use super::{get, raw_bin, sha256_key};
use crate::otlp_client::STRANDS_FIXTURE;
use crate::util::*;

/// Ids that try a path, a key, a terminal or a page.
fn hostile_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "../x",
        "..%2Fx",
        "%2e%2e",
        "clinic\u{0}a",
        "clinic\u{202e}a",
        "\u{0441}linic-a", // a Cyrillic "с"
        "clinic/a",
        "C:\\x",
        "clinic\na",
        "clinic\ta",
        "clinic-\u{1f600}",
        "...",
        "<script>alert(1)</script>",
    ]
    .map(String::from)
    .to_vec();
    ids.push("a".repeat(10 * 1024));
    ids
}

/// A path component agentmeter may create: nothing a hostile id could have made.
fn safe_component(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && c.len() <= 100
        && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._=-~".contains(&b))
}

fn usage_line(n: usize, field: &str, value: &str) -> String {
    let mut rec = json!({"event": "inference_usage", "event_id": format!("hostile-{n}"),
        "timestamp": "2026-10-05T00:00:00Z", "tier": "basic", "clinic_id": "clinic-ok",
        "user_id": "u1", "model_id": "m1", "input_tokens": 1, "output_tokens": 1,
        "total_tokens": 2});
    match field {
        "tenant_id" => {
            rec.as_object_mut().unwrap().remove("clinic_id");
            rec["tenant_id"] = value.into();
        }
        "actor_id" => {
            rec.as_object_mut().unwrap().remove("user_id");
            rec["actor_id"] = format!("basic-clinic-ok-{value}").into();
        }
        f => rec[f] = value.into(),
    }
    rec.to_string()
}

#[test]
fn hostile_ids_are_refused_or_escaped_wherever_an_id_enters() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let input = root.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let ids = hostile_ids();
    const FIELDS: [&str; 7] =
        ["clinic_id", "tenant_id", "user_id", "actor_id", "tier", "model_id", "event_id"];
    // NDJSON: each id in each field, one line each, beside a good line per id.
    let mut lines = Vec::new();
    let mut n = 0;
    for id in &ids {
        for field in FIELDS {
            lines.push(usage_line(n, field, id));
            n += 1;
        }
    }
    let good = ids.len();
    for i in 0..good {
        lines.push(usage_line(100_000 + i, "user_id", &format!("good{i}")));
    }
    std::fs::write(input.join("hostile.ndjson"), lines.join("\n") + "\n").unwrap();
    // OTLP: the span's tenant attribute; CloudWatch: the tenant in the message and the event
    // id, as a Firehose file of subscription payloads.
    let mut spans = Vec::new();
    let mut events = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut req: Value = serde_json::from_str(STRANDS_FIXTURE).unwrap();
        let rs = &mut req["resourceSpans"][0]["scopeSpans"][0]["spans"];
        for sp in rs.as_array_mut().unwrap() {
            for a in sp["attributes"].as_array_mut().unwrap() {
                if a["key"] == "clinic_id" {
                    a["value"]["stringValue"] = id.as_str().into();
                }
            }
        }
        spans.push(req.to_string());
        let msg = usage_line(200_000 + i, "clinic_id", id);
        events.push(json!({"id": id, "timestamp": 1_790_841_600_000i64, "message": msg}));
        let msg = usage_line(300_000 + i, "user_id", &format!("cw{i}"));
        events.push(
            json!({"id": format!("{id}-cw"), "timestamp": 1_790_841_600_000i64, "message": msg}),
        );
    }
    std::fs::write(input.join("spans.json"), spans.join("\n") + "\n").unwrap();
    let payload = json!({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g",
        "logStream": "s", "subscriptionFilters": ["f"], "logEvents": events});
    std::fs::create_dir_all(input.join("firehose")).unwrap();
    std::fs::write(
        input.join("firehose/part-0001"),
        crate::otlp_client::gzip(payload.to_string().as_bytes()),
    )
    .unwrap();
    // Hostile names of input files: a source names its quarantine entries (by a digest),
    // never a path; logs and messages show it with control and bidirectional characters
    // escaped.
    let named = root.join("input-names");
    std::fs::create_dir_all(&named).unwrap();
    for (i, id) in ids.iter().enumerate() {
        if id.contains(['/', '\0']) || id.len() > 200 || id.starts_with('.') {
            continue;
        }
        let bad = usage_line(400_000 + i, "clinic_id", "../escape");
        std::fs::write(named.join(format!("{id}.ndjson")), bad + "\n").unwrap();
    }

    let lake = root.join("lake");
    let out = root.join("out");
    let work = root.join("cwd");
    std::fs::create_dir_all(&work).unwrap();
    let verbose = ["--log-level", "debug", "--log-format", "text"];
    let mut printed: Vec<(String, Vec<u8>)> = Vec::new();
    let o = raw_bin()
        .current_dir(&work)
        .args(verbose)
        .args(["ingest", "--json", "--no-progress", "--lake"])
        .arg(&lake)
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    let a = accounting(&summary);
    assert!(a.balances(), "{summary}");
    printed.push(("ingest".into(), [o.stdout, o.stderr].concat()));
    let o = raw_bin()
        .current_dir(&work)
        .args(verbose)
        .args(["ingest", "--lake"])
        .arg(&lake)
        .arg(&named)
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("clinic\\u{202e}a.ndjson") && err.contains("clinic\\u{a}a.ndjson"),
        "{err}"
    );
    for raw in ["\u{202e}", "clinic\na", "clinic\ta"] {
        assert!(!err.contains(raw), "{raw:?} printed raw:\n{err}");
    }

    // What got in holds only safe ids; model and event ids (printable ASCII) may hold
    // markup, which every page escapes below.
    let ev = table(&lake, "usage_events");
    let unsafe_rows = duckdb_int(&format!(
        "SELECT count(*) FROM {ev} WHERE NOT regexp_full_match(tenant_id, '[A-Za-z0-9][A-Za-z0-9._-]{{0,63}}') \
         OR NOT regexp_full_match(user_id, '[A-Za-z0-9_][A-Za-z0-9._@+:-]{{0,127}}') \
         OR NOT regexp_full_match(tier, '[A-Za-z0-9][A-Za-z0-9_-]{{0,31}}') \
         OR NOT regexp_full_match(model_id, '[!-~]{{1,256}}')"
    ));
    assert_eq!(unsafe_rows, 0);
    let kept: Vec<String> = duckdb(&format!("SELECT DISTINCT model_id FROM {ev} ORDER BY 1"))
        .iter()
        .map(|r| r["model_id"].as_str().unwrap().to_owned())
        .collect();
    println!("model ids kept: {kept:?}");

    // Every reader of the lake, verbose, on the same ids.
    let prices = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.toml");
    let period = ["--period", "2026-10"];
    let commands: Vec<(&str, Vec<std::ffi::OsString>)> = vec![
        (
            "invoice",
            vec!["--prices".into(), prices.clone().into(), "--out".into(), out.clone().into()],
        ),
        ("flags", vec!["--out".into(), out.clone().into()]),
        ("report", vec!["--out".into(), out.join("report.html").into()]),
        ("reconcile", vec!["--out".into(), out.join("reconcile.csv").into()]),
    ];
    for (name, args) in commands {
        let o = raw_bin()
            .current_dir(&work)
            .args(verbose)
            .arg(name)
            .arg("--lake")
            .arg(&lake)
            .args(period)
            .args(&args)
            .output()
            .unwrap();
        assert!(matches!(o.status.code(), Some(0 | 1)), "{name}: {o:?}");
        printed.push((name.into(), [o.stdout, o.stderr].concat()));
    }

    // Ids in the files an operator writes: refused at start-up, the id escaped.
    for id in &ids {
        let key = serde_json::to_string(id).unwrap();
        let roster = root.join("roster.toml");
        std::fs::write(&roster, format!("[tenants]\n{key} = \"basic\"\n")).unwrap();
        let o = raw_bin()
            .args(["invoice", "--lake"])
            .arg(&lake)
            .args(period)
            .arg("--prices")
            .arg(&prices)
            .arg("--tenants")
            .arg(&roster)
            .arg("--out")
            .arg(root.join("out-roster"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "roster {id:?}: {o:?}");
        printed.push((format!("roster {id:?}"), [o.stdout, o.stderr].concat()));
        let policy = root.join("policy.toml");
        std::fs::write(&policy, format!("[budgets.tenants.{key}]\ntokens = 10\n")).unwrap();
        let o = raw_bin()
            .args(["flags", "--lake"])
            .arg(&lake)
            .args(period)
            .arg("--policy")
            .arg(&policy)
            .arg("--out")
            .arg(root.join("out-policy"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "policy {id:?}: {o:?}");
        printed.push((format!("policy {id:?}"), [o.stdout, o.stderr].concat()));
        // A period that is not YYYY-MM names no directory (an argument cannot hold a NUL).
        if id.contains('\0') {
            continue;
        }
        let o = raw_bin()
            .args(["invoice", "--lake"])
            .arg(&lake)
            .args(["--period", id])
            .arg("--prices")
            .arg(&prices)
            .arg("--out")
            .arg(root.join("out-period"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "period {id:?}: {o:?}");
        printed.push((format!("period {id:?}"), [o.stdout, o.stderr].concat()));
    }

    // The usage API: the id percent-encoded in the query, as a client would send it.
    let tokens = root.join("api-tokens.toml");
    std::fs::write(&tokens, format!("[tokens]\n{:?} = \"*\"\n", sha256_key("ops"))).unwrap();
    let server = crate::otlp_client::Server::start(
        &lake,
        &["--api-tokens", tokens.to_str().unwrap(), "--prices", prices.to_str().unwrap()],
    );
    for id in &ids {
        let enc: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        for path in [
            format!("/v1/usage?tenant={enc}&from=2026-10-01&to=2026-11-01"),
            format!("/v1/invoices/preview?tenant={enc}&period=2026-10"),
            format!("/v1/usage?tenant=clinic-ok&{enc}=1"),
        ] {
            let (status, body) = get(server.port(), &path, "ops");
            assert!(matches!(status, 400 | 431 | 414), "{id:?} {path}: {status}");
            printed.push((format!("GET {id:?}"), body));
        }
    }
    server.stop();

    // Nothing printed or answered holds an id raw: control characters and the override are
    // escaped, the 10 KB id shortened.
    // (A refused look-alike or emoji may be shown as it is: printable, and refused.)
    let raw: Vec<&String> =
        ids.iter().filter(|i| i.contains(['\n', '\t', '\0', '\u{202e}'])).collect();
    for (what, bytes) in &printed {
        for id in &raw {
            assert!(
                !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
                "{what} holds {id:?} raw"
            );
        }
        assert!(!bytes.windows(3).any(|w| w == "\u{202e}".as_bytes()), "{what} holds U+202E");
        assert!(!bytes.contains(&0), "{what} holds NUL");
        // (An argument the operator typed may be echoed whole.)
        let typed = what.starts_with("period");
        assert!(
            typed || !bytes.windows(1024).any(|w| w.iter().all(|b| *b == b'a')),
            "{what} holds 1 KB of the long id"
        );
    }
    // Pages: markup escaped.
    for f in files_under(&out).into_iter().filter(|f| f.ends_with(".html")) {
        let bytes = std::fs::read(out.join(&f)).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"<script>"), "{f} holds markup");
    }
    // Nothing outside the lake and the outputs; every path component of both is safe.
    assert_eq!(files_under(&work), Vec::<String>::new());
    for tree in [&lake, &out] {
        for f in files_under(tree) {
            assert!(f.split('/').all(safe_component), "unsafe path {f:?} in {}", tree.display());
        }
    }
    println!(
        "hostile ids: {} ids, {} NDJSON fields, OTLP, CloudWatch, file names, roster, policy, \
         --period, API query; {} outputs checked",
        ids.len(),
        FIELDS.len(),
        printed.len()
    );
}
