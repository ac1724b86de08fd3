//! Rough edges a new user meets first: a small demo, `prices check` in words, and the
//! examples, completions and manual the binary carries.

use crate::util::*;

#[test]
fn a_demo_for_five_tenants_runs_and_checks_itself() {
    let dir = tempfile::tempdir().unwrap();
    // The generator wants its noisy neighbours under half the tenants: the demo takes fewer.
    let out = ok(bin()
        .args(["demo", "--tenants", "5", "--events", "5000", "--dir"])
        .arg(dir.path().join("d")));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("These are exactly the generator's noisy neighbours."), "{stdout}");
    assert!(dir.path().join("d/out/invoices/2026-10/invoices.csv").is_file());
}

#[test]
fn prices_check_describes_plans_and_models_in_words() {
    let book = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.toml");
    let out = ok(bin().args(["prices", "check"]).arg(&book));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        &lines[1..3],
        [
            "  plan basic: base fee 49.00, included usage 0.00, list prices + 25%, tokens from the usage logs",
            "  plan premium: base fee 499.00, included usage 50.00, rate card premium, tokens from the usage logs",
        ]
    );
    assert!(
        lines.contains(
            &"  model openai.gpt-oss-20b-1:0 (OpenAI gpt-oss-20b; also openai.gpt-oss-20b)"
        ),
        "{stdout}"
    );
    let models = lines.iter().filter(|l| l.starts_with("  model ")).count();
    assert!(lines[0].contains(&format!("({models} models, currency USD)")), "{stdout}");
}

#[test]
fn help_names_the_log_variable_once_and_never_its_value() {
    let out = ok(bin().args(["invoice", "--help"]).env("AGENTMETER_LOG", "secret-filter"));
    let help = String::from_utf8(out.stdout).unwrap();
    assert_eq!(help.matches("[env: AGENTMETER_LOG]").count(), 1, "{help}");
    assert!(!help.contains("secret-filter"), "{help}");
}

#[test]
fn import_litellm_says_when_its_prices_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("litellm.json");
    std::fs::write(
        &json,
        r#"{"mistral.ministral-3-8b-instruct": {"litellm_provider": "bedrock_converse",
            "mode": "chat", "input_cost_per_token": 1.5e-07, "output_cost_per_token": 1.5e-07}}"#,
    )
    .unwrap();
    let today = chrono::Utc::now().date_naive();
    let out = ok(bin().args(["prices", "import-litellm"]).arg(&json));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the imported prices take effect from {today} (today)"))
            && err.contains("--effective-from YYYY-MM-DD"),
        "{err}"
    );
    let book = String::from_utf8_lossy(&out.stdout);
    assert!(book.contains(&format!("effective_from = \"{today}")), "{book}");
    // Dated explicitly: nothing to warn about.
    let out =
        ok(bin().args(["prices", "import-litellm", "--effective-from", "2026-10-01"]).arg(&json));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("take effect from"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2026-10-01"));
}

#[test]
fn the_binary_carries_its_examples_completions_and_manual() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (kind, file) in [
        ("prices", "prices.toml"),
        ("policy", "policy.toml"),
        ("config", "agentmeter.toml"),
        ("tenants", "tenants.toml"),
        ("api-tokens", "api-tokens.toml"),
    ] {
        let out = ok(bin().args(["example", kind]));
        assert_eq!(out.stdout, std::fs::read(root.join("examples").join(file)).unwrap(), "{kind}");
    }
    let bash = ok(bin().args(["completions", "bash"]));
    let bash = String::from_utf8(bash.stdout).unwrap();
    assert!(bash.contains("complete -F _agentmeter") && bash.contains("import-litellm"), "{bash}");
    let page = String::from_utf8(ok(bin().arg("man")).stdout).unwrap();
    assert!(page.contains(".TH agentmeter 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    ok(bin().args(["man", "--dir"]).arg(dir.path()));
    for page in ["agentmeter.1", "agentmeter-ingest.1", "agentmeter-prices-import-litellm.1"] {
        assert!(dir.path().join(page).is_file(), "{page}");
    }
    // Help cites the examples by the command that prints them, never by a path in the sources.
    let help = String::from_utf8(ok(bin().args(["invoice", "--help"])).stdout).unwrap();
    assert!(help.contains("agentmeter example prices") && !help.contains("examples/"), "{help}");
}

#[test]
fn a_machine_without_aws_credentials_is_told_so_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "").unwrap();
    ingest(&lake, &[&empty], &[]);
    let prices = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.toml");
    let bare = |cmd: &mut std::process::Command| {
        // No credentials anywhere, and no instance metadata service to wait for.
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap()
    };
    let costs = bare(
        bin()
            .args(["invoice", "--period", "2026-10", "--costs", "ce", "--lake"])
            .arg(&lake)
            .arg("--prices")
            .arg(&prices)
            .arg("--out")
            .arg(dir.path().join("out")),
    );
    let err = String::from_utf8_lossy(&costs.stderr);
    assert_eq!(costs.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: --costs ce: no AWS credentials found: set AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    assert!(!err.contains("IMDS") && !err.contains("WARN"), "{err}");
    let s3 = bare(bin().args(["ingest", "--lake", "s3://bucket/lake"]).arg(&prices));
    let err = String::from_utf8_lossy(&s3.stderr);
    assert_eq!(s3.status.code(), Some(2), "{err}");
    assert!(err.contains("no AWS credentials found"), "{err}");
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    // The pipe is closed before the command writes: every write fails with EPIPE.
    for args in [
        &["completions", "bash"][..],
        &["example", "policy"],
        &["schema", "athena", "--location", "s3://bucket/prefix"],
    ] {
        let mut child = bin()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {}\n{err}", out.status);
        assert!(!err.contains("panicked") && !err.contains("error"), "{args:?}: {err}");
    }
}
