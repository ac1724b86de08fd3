//! Tenant isolation: every per-tenant artefact of every command (draft, preview, issued,
//! recorded, credit-note and replacement invoices, flags, alerts to a file and a webhook,
//! pushed events, usage API answers and refusals) names its tenant and holds nothing of any
//! other tenant (ids, users, bill-to name, a total no other tenant has).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::{get, sha256_key};
use crate::flags::hook;
use crate::util::*;

/// Whether `needle` occurs in `hay` with no ASCII letter or digit (or, for amounts, `.`)
/// right before or after it: `clinic-001` is not in `clinic-0010`, `49.10` not in `149.10`.
fn holds(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    let numeric = n.iter().all(|b| b.is_ascii_digit() || *b == b'.');
    let part = |b: u8| b.is_ascii_alphanumeric() || (numeric && b == b'.');
    hay.windows(n.len()).enumerate().any(|(i, w)| {
        w == n && (i == 0 || !part(hay[i - 1])) && hay.get(i + n.len()).is_none_or(|&b| !part(b))
    })
}

/// One per-tenant artefact: what it is, whose it is, its bytes.
struct Artefact {
    what: String,
    tenant: String,
    bytes: Vec<u8>,
}

/// The month every isolation check runs on, with what each tenant owns.
struct Month {
    _dir: tempfile::TempDir,
    root: PathBuf,
    lake: PathBuf,
    out: PathBuf,
    prices: PathBuf,
    roster: PathBuf,
    tenants: Vec<String>,
    /// Per tenant: its id, its users' ids and its bill-to name.
    needles: BTreeMap<String, Vec<String>>,
}

impl Month {
    fn invoice(&self, extra: &[&str]) -> Output {
        ok(bin()
            .arg("invoice")
            .arg("--lake")
            .arg(&self.lake)
            .args(["--period", "2026-10"])
            .arg("--prices")
            .arg(&self.prices)
            .arg("--tenants")
            .arg(&self.roster)
            .arg("--out")
            .arg(&self.out)
            .args(extra))
    }

    /// `DIR/<tenant>.json` and `.html` of every tenant, as artefacts named `what`.
    fn documents(&self, what: &str, dir: &Path) -> Vec<Artefact> {
        let mut found = Vec::new();
        for t in &self.tenants {
            for ext in ["json", "html"] {
                let path = dir.join(format!("{t}.{ext}"));
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()));
                found.push(Artefact { what: format!("{what} {ext}"), tenant: t.clone(), bytes });
            }
        }
        found
    }

    /// The documents of the period's record, by their digests in the lake's blobs.
    fn recorded(&self, what: &str) -> Vec<Artefact> {
        let record: Value = serde_json::from_slice(
            &std::fs::read(self.lake.join("_state/billing/periods/2026-10.json")).unwrap(),
        )
        .unwrap();
        let mut found = Vec::new();
        for d in record["documents"].as_array().unwrap() {
            for key in ["digest", "html_digest"] {
                let digest = d[key].as_str().unwrap();
                let bytes = std::fs::read(self.lake.join("_state/billing/blobs").join(digest))
                    .unwrap_or_else(|e| panic!("blob {digest}: {e}"));
                found.push(Artefact {
                    what: format!("{what}: {} {key}", d["number"]),
                    tenant: d["tenant_id"].as_str().unwrap().to_owned(),
                    bytes,
                });
            }
        }
        found
    }
}

/// Each line of a JSON-lines file whose `pointer` names a tenant, as that tenant's.
fn lines_by_tenant(what: &str, path: &Path, pointer: &str) -> Vec<Artefact> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let tenant = v.pointer(pointer)?.as_str()?.to_owned();
            Some(Artefact { what: what.to_owned(), tenant, bytes: l.as_bytes().to_vec() })
        })
        .collect()
}

/// What makes the artefacts of one command: a new per-tenant artefact is one more entry.
type Producer = fn(&Month) -> Vec<Artefact>;

const ARTEFACTS: &[(&str, Producer)] = &[
    ("invoice (draft)", |m| {
        m.invoice(&[]);
        m.documents("draft invoice", &m.out.join("invoices/2026-10/tenants"))
    }),
    ("invoice --preview", |m| {
        m.invoice(&["--preview"]);
        m.documents("preview", &m.out.join("previews/2026-10/tenants"))
    }),
    ("invoice --close", |m| {
        m.invoice(&["--close", "--issue-date", "2026-11-02"]);
        let mut a = m.documents("issued invoice", &m.out.join("invoices/2026-10/tenants"));
        a.extend(m.recorded("recorded document"));
        a
    }),
    ("invoice --reopen", |m| {
        m.invoice(&["--reopen", "--issue-date", "2026-11-03"]);
        let mut a = m.documents("credit note", &m.out.join("invoices/2026-10/credit-notes/1"));
        a.extend(m.recorded("recorded document after the reopen"));
        a
    }),
    ("invoice --close again", |m| {
        m.invoice(&["--close", "--issue-date", "2026-11-04"]);
        m.documents("replacement invoice", &m.out.join("invoices/2026-10/tenants"))
    }),
    ("flags: flags.jsonl, alerts to a file and a webhook", |m| {
        let receiver = hook(200);
        let alerts = m.root.join("alerts.jsonl");
        ok(bin()
            .arg("flags")
            .arg("--lake")
            .arg(&m.lake)
            .args(["--period", "2026-10", "--out"])
            .arg(m.root.join("flags-out"))
            .arg("--alert")
            .arg(format!("file://{}", alerts.display()))
            .args(["--alert", &format!("http://127.0.0.1:{}/hook", receiver.port)]));
        let mut a = lines_by_tenant("flag", &m.root.join("flags-out/flags.jsonl"), "/tenant_id");
        a.extend(lines_by_tenant("alert (file)", &alerts, "/flag/tenant_id"));
        for (_, body) in receiver.seen.lock().unwrap().iter() {
            let v: Value = serde_json::from_str(body).unwrap();
            if let Some(t) = v["flag"]["tenant_id"].as_str() {
                let bytes = body.clone().into_bytes();
                a.push(Artefact { what: "alert (webhook)".into(), tenant: t.into(), bytes });
            }
        }
        a
    }),
    ("push openmeter: each event sent", |m| {
        let receiver = hook(204);
        let token = m.root.join("push-token");
        std::fs::write(&token, "isolation-push-token\n").unwrap();
        ok(bin()
            .args(["push", "openmeter", "--period", "2026-10", "--lake"])
            .arg(&m.lake)
            .arg("--token-file")
            .arg(&token)
            .args(["--endpoint", &format!("http://127.0.0.1:{}", receiver.port)]));
        let mut a = Vec::new();
        for (_, body) in receiver.seen.lock().unwrap().iter() {
            for e in serde_json::from_str::<Vec<Value>>(body).unwrap() {
                let tenant = e["subject"].as_str().unwrap().to_owned();
                a.push(Artefact { what: "push event".into(), tenant, bytes: e.to_string().into() });
            }
        }
        a
    }),
    ("serve: the usage API to each tenant's token", |m| {
        let mut file = String::from("[tokens]\n");
        for t in &m.tenants {
            file.push_str(&format!("{:?} = {t:?}\n", sha256_key(&format!("token-of-{t}"))));
        }
        let tokens = m.root.join("api-tokens.toml");
        std::fs::write(&tokens, file).unwrap();
        let server = crate::otlp_client::Server::start(
            &m.lake,
            &[
                "--api-tokens",
                tokens.to_str().unwrap(),
                "--prices",
                m.prices.to_str().unwrap(),
                "--tenants",
                m.roster.to_str().unwrap(),
                "--wal-dir",
                m.root.join("wal").to_str().unwrap(),
            ],
        );
        let mut a = Vec::new();
        for t in &m.tenants {
            let token = format!("token-of-{t}");
            let range = "from=2026-10-01&to=2026-11-01";
            let mut paths: Vec<String> = ["day", "model", "user"]
                .iter()
                .map(|g| format!("/v1/usage?tenant={t}&{range}&group_by={g}"))
                .collect();
            // The closed period (its issued invoice priced again) and the open one.
            for period in ["2026-10", "2026-11"] {
                paths.push(format!("/v1/invoices/preview?tenant={t}&period={period}"));
            }
            for path in paths {
                let (status, bytes) = get(server.port(), &path, &token);
                assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&bytes));
                a.push(Artefact { what: format!("GET {path}"), tenant: t.clone(), bytes });
            }
            // Asking for every other tenant, however the id is spelt: refused alike, and the
            // refusal is the token's tenant's artefact (it must not hold the other's data).
            for other in m.tenants.iter().filter(|o| *o != t) {
                let spelt = [
                    format!("tenant={other}"),
                    format!("tenant={}", other.replace('-', "%2D")),
                    format!("tenant={t}&tenant={other}"),
                    format!("tenant={}", other.to_uppercase()),
                ];
                for q in spelt {
                    for base in ["/v1/usage?", "/v1/invoices/preview?"] {
                        let path = format!("{base}{q}");
                        let (status, bytes) = get(server.port(), &path, &token);
                        assert!(matches!(status, 400 | 403), "{path}: {status}");
                        let what = format!("refused GET {path}");
                        a.push(Artefact { what, tenant: t.clone(), bytes });
                    }
                }
            }
        }
        server.stop();
        a
    }),
];

#[test]
fn every_per_tenant_artefact_holds_its_tenant_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    generate(
        &root.join("gen"),
        &["--tenants", "6", "--events", "6000", "--noisy", "1", "--seed", "21"],
    );
    let lake = root.join("lake");
    ingest(&lake, &[&root.join("gen/input")], &[]);
    let ev = table(&lake, "usage_events");
    let rows = duckdb(&format!(
        "SELECT DISTINCT tenant_id, tier, user_id FROM {ev} ORDER BY tenant_id, user_id"
    ));
    const NAMES: [&str; 6] = ["Aster", "Birch", "Cedar", "Dahlia", "Elder", "Fennel"];
    let mut roster = String::from("[issuer]\nname = \"Issuer Ltd\"\n");
    let mut needles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &rows {
        let t = row["tenant_id"].as_str().unwrap().to_owned();
        if !needles.contains_key(&t) {
            let name = format!("{} Health Group", NAMES[needles.len() % NAMES.len()]);
            roster.push_str(&format!(
                "[tenants.{t}]\ntier = {}\nname = {name:?}\nemail = \"ap@{t}.example\"\n",
                row["tier"]
            ));
            needles.insert(t.clone(), vec![t.clone(), name]);
        }
        needles.get_mut(&t).unwrap().push(row["user_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(needles.len(), 6, "{needles:?}");
    let m = Month {
        tenants: needles.keys().cloned().collect(),
        needles,
        out: root.join("out"),
        prices: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.toml"),
        roster: root.join("roster.toml"),
        lake,
        root,
        _dir: dir,
    };
    std::fs::write(&m.roster, roster).unwrap();

    let mut artefacts = Vec::new();
    for (command, produce) in ARTEFACTS {
        let made = produce(&m);
        let owners: BTreeSet<&str> = made.iter().map(|a| a.tenant.as_str()).collect();
        assert!(!made.is_empty(), "{command} made no per-tenant artefact");
        assert!(owners.len() >= 2, "{command}: artefacts of {owners:?} only");
        artefacts.extend(made);
    }
    // Each tenant's total, where no other tenant has the same: one more thing of its own.
    let mut totals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &m.tenants {
        let doc: Value = serde_json::from_slice(
            &std::fs::read(m.out.join(format!("invoices/2026-10/tenants/{t}.json"))).unwrap(),
        )
        .unwrap();
        totals.entry(doc["total"].as_str().unwrap().to_owned()).or_default().push(t.clone());
    }
    let mut needles = m.needles.clone();
    for (total, owners) in &totals {
        if let [only] = owners.as_slice() {
            needles.get_mut(only).unwrap().push(total.clone());
        }
    }

    // The matcher itself: an invoice number names its tenant; a longer id is another tenant.
    assert!(holds(b"AM-202610-clinic-002/1", "clinic-002"));
    assert!(!holds(b"clinic-0020 clinic-00", "clinic-002"));
    assert!(holds(b"\"total\":\"149.10\"", "149.10") && !holds(b"1149.10", "149.10"));
    let mut checked = 0;
    for a in &artefacts {
        assert!(m.tenants.contains(&a.tenant), "{}: unknown tenant {}", a.what, a.tenant);
        if !a.what.starts_with("refused") {
            assert!(holds(&a.bytes, &a.tenant), "{} of {} does not name it", a.what, a.tenant);
        }
        for (other, theirs) in needles.iter().filter(|(o, _)| **o != a.tenant) {
            for n in theirs {
                assert!(
                    !holds(&a.bytes, n),
                    "{} of {} holds {n:?} of {other}:\n{}",
                    a.what,
                    a.tenant,
                    String::from_utf8_lossy(&a.bytes)
                );
            }
        }
        checked += 1;
    }
    let kinds: BTreeSet<&str> =
        artefacts.iter().map(|a| a.what.split(['?', ':']).next().unwrap()).collect();
    println!(
        "tenant isolation: {checked} artefacts of {} kinds, {} tenants, {} needles",
        kinds.len(),
        m.tenants.len(),
        needles.values().map(Vec::len).sum::<usize>()
    );
}
