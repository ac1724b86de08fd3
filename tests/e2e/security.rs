//! Security: every per-tenant artefact of every command, and every answer of the usage API to
//! a tenant's token, holds that tenant alone; secrets appear in no log line, error or output,
//! whatever the log level; the receiver binds to loopback and refuses what is not
//! authenticated; hostile ids are refused or escaped wherever an id enters; free text of log
//! lines reaches no output.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::flags::hook;
use crate::otlp_client::{PROCESS_WAIT, STRANDS_FIXTURE, request};
use crate::util::*;

fn sha256_key(token: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(token.as_bytes())))
}

/// The binary with no log options set: each test chooses the level and format itself.
fn raw_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentmeter"));
    c.env_remove("AGENTMETER_LOG")
        .env_remove("AGENTMETER_OTLP_TOKEN")
        .env_remove("AGENTMETER_PUSH_TOKEN")
        .env_remove("AGENTMETER_WEBHOOK_SECRET")
        .env_remove("AGENTMETER_WEBHOOK_SECRET_FILE");
    c
}

/// `agentmeter serve` started by hand (its address, log options and environment are the
/// test's), stopped with SIGTERM; stdout and stderr kept whole.
struct Serve {
    child: Child,
    addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Serve {
    fn start(mut cmd: Command) -> Serve {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agentmeter serve");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on http://") {
                        let addr = addr.trim().parse().unwrap();
                        return Serve { child, addr, lines, stderr: Some(stderr) };
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("serve printed no address ({e:?}): {}", stderr.join().unwrap());
                }
            }
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// SIGTERM; the exit status and everything printed.
    fn stop(mut self) -> (std::process::ExitStatus, Vec<u8>) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + PROCESS_WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut printed: Vec<u8> = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            printed.extend(l.as_bytes());
            printed.push(b'\n');
        }
        printed.extend(self.stderr.take().unwrap().join().unwrap().into_bytes());
        (status, printed)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn get(port: u16, path: &str, token: &str) -> (u16, Vec<u8>) {
    let auth = format!("Bearer {token}");
    let r = request(port, "GET", path, &[("Authorization", &auth)], b"").unwrap();
    (r.status, r.body)
}

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

// ---------------------------------------------------------------------------------------
// Tenant isolation

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

// ---------------------------------------------------------------------------------------
// Secrets

/// Every secret the commands below are given, each unique, so that a hit names its source.
const SECRETS: [&str; 11] = [
    "whsec-env-5d1c7",     // webhook signing secret, AGENTMETER_WEBHOOK_SECRET
    "whsec-file-9a2e4",    // webhook signing secret, AGENTMETER_WEBHOOK_SECRET_FILE
    "hookpass-3b8f",       // password in a webhook URL
    "qtok-6c0d1",          // token in a webhook URL's query
    "otlp-file-tok-71ad",  // receiver bearer token, --auth-token-file
    "otlp-env-tok-4e90",   // receiver bearer token, AGENTMETER_OTLP_TOKEN
    "api-tenant-tok-2f6b", // usage API token of a tenant
    "api-ops-tok-8d13",    // usage API token of an operator
    "api-plain-tok-0c5e",  // a token written in the token file where its digest belongs
    "push-file-tok-a4e2",  // billing system API key, --token-file
    "push-env-tok-b7c9",   // billing system API key, AGENTMETER_PUSH_TOKEN
];

/// The most verbose logging in both formats.
const VERBOSE: [[&str; 4]; 2] = [
    ["--log-level", "debug", "--log-format", "json"],
    ["--log-level", "trace", "--log-format", "text"],
];

fn assert_no_secret(what: &str, bytes: &[u8]) {
    for s in SECRETS {
        assert!(
            !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
            "{what} holds the secret {s:?}:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn no_secret_reaches_a_log_line_an_error_or_an_output_at_any_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    generate(
        &root.join("gen"),
        &["--tenants", "4", "--events", "2000", "--noisy", "1", "--seed", "9"],
    );
    let lake = root.join("lake");
    ingest(&lake, &[&root.join("gen/input")], &[]);
    // The secrets' own files sit apart: they are the one place the secrets belong.
    let secrets = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = secrets.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let otlp_token = file("otlp-token", "otlp-file-tok-71ad\n");
    let webhook_secret = file("webhook-secret", "whsec-file-9a2e4\n");
    let push_token = file("push-token", "push-file-tok-a4e2\n");
    let api_tokens = file(
        "api-tokens.toml",
        &format!(
            "[tokens]\n{:?} = \"clinic-001\"\n{:?} = \"*\"\n",
            sha256_key("api-tenant-tok-2f6b"),
            sha256_key("api-ops-tok-8d13")
        ),
    );
    // Mistakes an operator makes: the token itself as the key, and a line that is not TOML.
    let plain_tokens =
        file("plain-tokens.toml", "[tokens]\n\"api-plain-tok-0c5e\" = \"clinic-001\"\n");
    let broken_tokens = file("broken-tokens.toml", "[tokens]\napi-plain-tok-0c5e = clinic-001\n");

    let mut printed: Vec<(String, Vec<u8>)> = Vec::new();
    let mut runs = 0;
    for (i, log) in VERBOSE.iter().enumerate() {
        let label = log.join(" ");
        // The receiver with its token from a file, then from the environment; every request
        // with a wrong token too, one that begins with the right one.
        for (source, token) in [("file", "otlp-file-tok-71ad"), ("env", "otlp-env-tok-4e90")] {
            let mut cmd = raw_bin();
            cmd.args(log)
                .arg("serve")
                .arg("--lake")
                .arg(&lake)
                .args(["--otlp-http", "127.0.0.1:0", "--flush-interval-ms", "100"])
                .arg("--wal-dir")
                .arg(root.join(format!("wal-{i}-{source}")))
                .arg("--api-tokens")
                .arg(&api_tokens);
            if source == "file" {
                cmd.arg("--auth-token-file").arg(&otlp_token);
            } else {
                cmd.env("AGENTMETER_OTLP_TOKEN", token);
            }
            let server = Serve::start(cmd);
            let body = STRANDS_FIXTURE.as_bytes();
            for (auth, want) in [
                (String::new(), 401),
                (format!("Bearer {token}x"), 401),
                (format!("Basic {token}"), 401),
                ("Bearer api-ops-tok-8d13".to_owned(), 401),
                (format!("Bearer {token}"), 200),
            ] {
                let mut headers = vec![("Content-Type", "application/json")];
                if !auth.is_empty() {
                    headers.push(("Authorization", &auth));
                }
                let r = request(server.port(), "POST", "/v1/traces", &headers, body).unwrap();
                assert_eq!(r.status, want, "{label} {auth}: {}", r.text());
                printed.push((format!("{label}: POST answer ({auth})"), r.body));
            }
            let usage = "/v1/usage?tenant=clinic-001&from=2026-10-01&to=2026-11-01";
            let other = "/v1/usage?tenant=clinic-002&from=2026-10-01&to=2026-11-01";
            for (path, auth, want) in [
                (usage, "api-tenant-tok-2f6b", 200),
                (other, "api-tenant-tok-2f6b", 403),
                (usage, "api-tenant-tok-2f6bx", 401),
                (usage, "api-ops-tok-8d13x", 401),
                (usage, token, 401),
                (other, "api-ops-tok-8d13", 200),
            ] {
                let (status, bytes) = get(server.port(), path, auth);
                assert_eq!(status, want, "{label} {path} {auth}");
                printed.push((format!("{label}: GET answer"), bytes));
            }
            let (status, out) = server.stop();
            assert!(status.success(), "{label}: {}", String::from_utf8_lossy(&out));
            printed.push((format!("{label}: serve, token from {source}"), out));
            runs += 1;
        }
        // A token file with a plaintext token, and one that is not TOML: refused at start-up.
        for bad in [&plain_tokens, &broken_tokens] {
            let o = raw_bin()
                .args(log)
                .arg("serve")
                .arg("--lake")
                .arg(&lake)
                .args(["--otlp-http", "127.0.0.1:0", "--api-tokens"])
                .arg(bad)
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(2), "{label}: {o:?}");
            printed
                .push((format!("{label}: serve {}", bad.display()), [o.stdout, o.stderr].concat()));
            runs += 1;
        }

        // Alerts: a webhook that fails, one that is not there, one that takes them; the
        // secret from the environment or from a file.
        let failing = hook(500);
        let taking = hook(200);
        for (port, secret_env) in [
            (failing.port, ("AGENTMETER_WEBHOOK_SECRET", "whsec-env-5d1c7".to_owned())),
            (
                closed_port(),
                ("AGENTMETER_WEBHOOK_SECRET_FILE", webhook_secret.display().to_string()),
            ),
            (taking.port, ("AGENTMETER_WEBHOOK_SECRET", "whsec-env-5d1c7".to_owned())),
        ] {
            // Each on a copy of the lake: the alert state records what the first run raised.
            let copy = root.join(format!("lake-flags-{i}-{port}"));
            copy_dir(&lake, &copy);
            let url = format!("http://hookuser:hookpass-3b8f@127.0.0.1:{port}/hook?key=qtok-6c0d1");
            let o = raw_bin()
                .args(log)
                .arg("flags")
                .arg("--lake")
                .arg(&copy)
                .args(["--period", "2026-10", "--out"])
                .arg(root.join(format!("flags-{i}")))
                .args(["--alert", &url, "--alert-max-attempts", "2", "--alert-backoff-ms", "5"])
                .env(secret_env.0, &secret_env.1)
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(0), "{label}: {o:?}");
            printed.push((format!("{label}: flags to port {port}"), [o.stdout, o.stderr].concat()));
            runs += 1;
        }
        let delivered = taking.seen.lock().unwrap().clone();
        assert!(!delivered.is_empty(), "{label}: no alert delivered");
        for (headers, body) in delivered {
            let sent: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
            printed.push((format!("{label}: a delivered alert"), format!("{sent}{body}").into()));
        }
        assert!(
            !failing.seen.lock().unwrap().is_empty(),
            "{label}: the failing hook was not tried"
        );

        // Push: a system refusing the key, one that is not there, one that takes the events.
        let refusing = hook(401);
        let accepting = hook(204);
        let push_lake = root.join(format!("lake-push-{i}"));
        copy_dir(&lake, &push_lake);
        for (port, key_file, want) in
            [(refusing.port, true, 1), (closed_port(), false, 1), (accepting.port, false, 0)]
        {
            let mut cmd = raw_bin();
            cmd.args(log)
                .args(["push", "openmeter", "--period", "2026-10", "--max-attempts", "2", "--lake"])
                .arg(&push_lake)
                .args(["--endpoint", &format!("http://127.0.0.1:{port}")]);
            if key_file {
                cmd.arg("--token-file").arg(&push_token);
            } else {
                cmd.env("AGENTMETER_PUSH_TOKEN", "push-env-tok-b7c9");
            }
            let o = cmd.output().unwrap();
            assert_eq!(o.status.code(), Some(want), "{label}: {o:?}");
            printed.push((format!("{label}: push to port {port}"), [o.stdout, o.stderr].concat()));
            runs += 1;
        }
        // The key is sent where it belongs, as the bearer token, and nowhere else.
        let sent = refusing.seen.lock().unwrap().clone();
        assert_eq!(
            sent[0].0.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_str()),
            Some("Bearer push-file-tok-a4e2")
        );
        for (_, body) in sent.iter().chain(accepting.seen.lock().unwrap().iter()) {
            printed.push((format!("{label}: a pushed batch"), body.clone().into_bytes()));
        }
    }

    let mut lines = 0;
    for (what, bytes) in &printed {
        assert_no_secret(what, bytes);
        lines += bytes.split(|b| *b == b'\n').count();
    }
    let files = files_under(root);
    for f in &files {
        assert_no_secret(f, &std::fs::read(root.join(f)).unwrap());
    }
    println!(
        "secrets: {} secrets, {runs} runs, {lines} printed lines and answers, {} files scanned",
        SECRETS.len(),
        files.len()
    );
}

// ---------------------------------------------------------------------------------------
// The receiver

#[test]
fn the_receiver_listens_on_loopback_by_default_and_writes_nothing_unauthenticated() {
    let help = ok(bin().args(["serve", "--help"]));
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: 127.0.0.1:4318]"));
    let config = ok(bin().args(["example", "config"]));
    assert!(String::from_utf8_lossy(&config.stdout).contains("listen = \"127.0.0.1:4318\""));

    let dir = tempfile::tempdir().unwrap();
    let (lake, wal) = (dir.path().join("lake"), dir.path().join("wal"));
    let token = dir.path().join("token");
    std::fs::write(&token, "receiver-token-1c9e\n").unwrap();
    let mut cmd = raw_bin();
    cmd.args(["serve", "--flush-interval-ms", "100", "--lake"])
        .arg(&lake)
        .arg("--wal-dir")
        .arg(&wal)
        .arg("--auth-token-file")
        .arg(&token);
    // Without --otlp-http (the port must be free on this machine).
    let server = Serve::start(cmd);
    assert_eq!(server.addr, "127.0.0.1:4318".parse().unwrap());
    // The kernel's view: the one socket listening on 4318 is on 127.0.0.1 (0100007F).
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let listening: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[3] == "0A" && f[1].ends_with(":10DE")).then_some(f[1])
        })
        .collect();
    assert_eq!(listening, ["0100007F:10DE"]);
    let v6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    assert!(!v6.lines().any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(":10DE"))));

    let json_body = STRANDS_FIXTURE.as_bytes();
    let gzipped = crate::otlp_client::gzip(json_body);
    let huge = vec![b'x'; 32 << 20];
    let ct = ("Content-Type", "application/json");
    let proto = ("Content-Type", "application/x-protobuf");
    let gz = ("Content-Encoding", "gzip");
    let wrong = ("Authorization", "Bearer receiver-token-1c9ex");
    let basic = ("Authorization", "Basic receiver-token-1c9e");
    let empty = ("Authorization", "Bearer ");
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let tries: Vec<(Headers, &[u8])> = vec![
        (vec![ct], json_body),
        (vec![ct, wrong], json_body),
        (vec![ct, basic], json_body),
        (vec![ct, empty], json_body),
        (vec![ct, gz, wrong], &gzipped),
        (vec![proto, wrong], b"\x0a\x00"),
        (vec![ct], &huge),
    ];
    for (headers, body) in &tries {
        let r = request(server.port(), "POST", "/v1/traces", headers, body).unwrap();
        assert_eq!(r.status, 401, "{headers:?}: {}", r.text());
    }
    let r = request(server.port(), "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let metrics = r.text();
    assert_eq!(crate::otlp_client::metric(&metrics, "agentmeter_otlp_spans_received_total"), 0);
    assert_eq!(crate::otlp_client::metric(&metrics, "agentmeter_otlp_received_bytes_total"), 0);
    let (status, _) = server.stop();
    assert!(status.success());
    // Nothing of the requests anywhere: no table, no quarantine, nothing in the log.
    let written: Vec<String> =
        files_under(&lake).into_iter().filter(|f| !f.starts_with("_state/")).collect();
    assert_eq!(written, Vec::<String>::new());
    for f in files_under(&wal) {
        let bytes = std::fs::read(wal.join(&f)).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"clinic-a"), "{f} holds a span");
    }

    // Beyond loopback only when told, and then with a warning.
    let mut cmd = raw_bin();
    cmd.args(["--log-format", "text", "serve", "--otlp-http", "0.0.0.0:0", "--lake"])
        .arg(&lake)
        .arg("--wal-dir")
        .arg(&wal);
    let server = Serve::start(cmd);
    assert!(server.addr.ip().is_unspecified());
    let (_, printed) = server.stop();
    let printed = String::from_utf8_lossy(&printed);
    assert!(printed.contains("Listening beyond loopback: put TLS and a bearer token in front."));
}

// ---------------------------------------------------------------------------------------
// Hostile ids

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
    // never a path. (Logs name a source as it is spelt: not checked for escaping below.)
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
    let o = raw_bin().current_dir(&work).args(["ingest", "--lake"]).arg(&lake).arg(&named).output();
    assert!(o.unwrap().status.success());

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
