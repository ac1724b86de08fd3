//! Secrets: every secret a command is given (webhook signing secrets, credentials in a webhook
//! URL, the receiver's bearer token, usage API tokens, billing system keys; from files and the
//! environment) appears in no log line, error, answer or written file, at debug and trace
//! level, in json and text, failing runs included.

use super::{Serve, get, raw_bin, sha256_key};
use crate::flags::hook;
use crate::otlp_client::{STRANDS_FIXTURE, request};
use crate::util::*;

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
