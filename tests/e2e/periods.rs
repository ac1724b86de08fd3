//! Billing periods: closing October, late October usage, October again (byte for byte),
//! November's adjustment lines against DuckDB, reopening with credit notes and replacements.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::util::*;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    lake: PathBuf,
}

/// A generated October split in two: the 1st to the 27th ingested, the 28th to the 31st kept
/// apart to arrive after the close.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    generate(
        &root.join("gen"),
        &[
            "--tenants",
            "6",
            "--noisy",
            "1",
            "--events",
            "4000",
            "--seed",
            "23",
            "--ndjson-only",
            "--span-permille",
            "0",
        ],
    );
    let (early, late) = (root.join("early"), root.join("late"));
    std::fs::create_dir_all(&early).unwrap();
    std::fs::create_dir_all(&late).unwrap();
    for e in std::fs::read_dir(root.join("gen/input/ndjson")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let day: u32 =
            name.trim_end_matches(".ndjson").rsplit('-').next().unwrap().parse().unwrap();
        let to = if day >= 28 { &late } else { &early };
        std::fs::rename(&p, to.join(&name)).unwrap();
    }
    std::fs::write(root.join("prices.toml"), crate::crash::PRICES).unwrap();
    let lake = root.join("lake");
    ingest(&lake, &[&early], &[]);
    Setup { _dir: dir, root, lake }
}

fn invoice(s: &Setup, period: &str, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = bin();
    c.arg("invoice")
        .arg("--lake")
        .arg(&s.lake)
        .args(["--period", period])
        .arg("--prices")
        .arg(s.root.join("prices.toml"))
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The documents of a period's directory: path → bytes.
pub(crate) fn documents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .filter(|f| {
            f.starts_with("tenants/")
                || f.starts_with("credit-notes/")
                || f == "invoices.csv"
                || f == "focus-invoice-detail.csv"
        })
        .map(|f| {
            let b = std::fs::read(dir.join(&f)).unwrap();
            (f, b)
        })
        .collect()
}

fn json_docs(dir: &Path) -> BTreeMap<String, Value> {
    let tenants = dir.join("tenants");
    let Ok(entries) = std::fs::read_dir(&tenants) else { return BTreeMap::new() };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (v["tenant_id"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap()).unwrap()
}

/// Per tenant: (model calls, input tokens, output tokens) of October in `usage_hourly`.
fn usage(lake: &Path) -> BTreeMap<String, (i64, i64, i64)> {
    duckdb(&format!(
        "SELECT tenant_id, sum(invocations)::BIGINT AS n, sum(input_tokens)::BIGINT AS i, \
         sum(output_tokens)::BIGINT AS o FROM {} GROUP BY tenant_id ORDER BY tenant_id",
        table(lake, "usage_hourly")
    ))
    .into_iter()
    .map(|r| {
        (
            r["tenant_id"].as_str().unwrap().to_owned(),
            (r["n"].as_i64().unwrap(), r["i"].as_i64().unwrap(), r["o"].as_i64().unwrap()),
        )
    })
    .collect()
}

/// The sum of a tenant's adjustment lines of one component for `period`.
fn adjusted(inv: &Value, component: &str, period: &str) -> i64 {
    inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["component"] == component && l["adjusts_period"] == period)
        .map(|l| l["quantity"].as_i64().unwrap())
        .sum()
}

#[test]
fn a_closed_period_is_never_repriced_and_late_usage_is_billed_once_in_the_next() {
    let s = setup();
    let out = s.root.join("out");
    let oct = out.join("invoices/2026-10");

    // Close October, with an issuer and one tenant's bill-to.
    let first = usage(&s.lake).into_keys().next().unwrap();
    let roster = s.root.join("roster.toml");
    std::fs::write(
        &roster,
        format!(
            "[issuer]\nname = \"Acme Health AI Ltd\"\naddress = [\"1 Main Street\", \"Dublin\"]\n\
             payment_terms_days = 30\n[tenants.{first}]\ntier = \"basic\"\n\
             name = \"First Clinic Group\"\nemail = \"ap@first.example\"\n"
        ),
    )
    .unwrap();
    let roster = roster.to_str().unwrap().to_owned();
    let closed = ok(&mut invoice(
        &s,
        "2026-10",
        &out,
        &["--close", "--issue-date", "2026-11-02", "--tenants", &roster],
    ));
    assert!(stdout(&closed).contains("2026-10 closed:"), "{}", stdout(&closed));
    let issued = documents(&oct);
    let issued_json = json_docs(&oct);
    assert!(issued_json.len() >= 3, "{issued_json:?}");
    let html = std::fs::read_to_string(oct.join(format!("tenants/{first}.html"))).unwrap();
    for want in ["Acme Health AI Ltd", "First Clinic Group", "2 November 2026", "2 December 2026"] {
        assert!(html.contains(want), "{want} missing from the invoice");
    }
    // (CSS has `margin`: the words a reader would see.)
    for internal in ["allocated", "Margin", "AWS", "rovisional", "valid", "effective"] {
        assert!(!html.contains(internal), "{internal} on a customer's invoice");
    }
    assert_eq!(issued_json[&first]["bill_to"]["name"], "First Clinic Group");
    check_in_chromium(&oct.join(format!("tenants/{first}.html")), &s.root.join("invoice.png"));
    for inv in issued_json.values() {
        assert_eq!(inv["status"], "issued");
        assert_eq!(inv["issue_date"], "2026-11-02");
        assert_eq!(inv["due_date"], "2026-12-02");
        assert!(inv["invoice_number"].as_str().unwrap().starts_with("AM-202610-"));
        assert!(inv.get("allocated_cost").is_none(), "internal fields stay internal");
    }
    let before = usage(&s.lake);

    // Late October events arrive.
    ingest(&s.lake, &[&s.root.join("late")], &[]);
    let after = usage(&s.lake);
    let late_calls: i64 =
        after.values().map(|v| v.0).sum::<i64>() - before.values().map(|v| v.0).sum::<i64>();
    assert!(late_calls > 100, "the late days hold events: {late_calls}");

    // October again: the issued documents, byte for byte, and the late usage reported.
    std::fs::remove_dir_all(&out).unwrap();
    let again = ok(&mut invoice(&s, "2026-10", &out, &[]));
    let text = stdout(&again);
    assert!(text.contains("2026-10 is closed"), "{text}");
    assert!(
        text.contains(&format!(
            "late usage for 2026-10: {late_calls} events ({late_calls} model calls, 0 tool calls)"
        )),
        "{text}"
    );
    assert_eq!(documents(&oct), issued, "a closed period's documents never change");
    let ledger = std::fs::read_to_string(oct.join("ledger.csv")).unwrap();
    assert_eq!(ledger.lines().count(), issued_json.len() + 1, "{ledger}");
    let bp = std::fs::read_to_string(oct.join("focus-billing-period.csv")).unwrap();
    assert!(bp.contains("Closed"), "{bp}");

    // November bills the late usage as adjustment lines at October's prices.
    let nov = out.join("invoices/2026-11");
    let n = ok(&mut invoice(&s, "2026-11", &out, &[]));
    assert!(stdout(&n).contains("late usage for 2026-10"), "{}", stdout(&n));
    let nov_json = json_docs(&nov);
    for (tenant, (calls, input, output)) in &after {
        let (c0, i0, o0) = before.get(tenant).copied().unwrap_or_default();
        if *calls == c0 {
            continue;
        }
        let inv = &nov_json[tenant];
        assert_eq!(adjusted(inv, "input_tokens", "2026-10"), input - i0, "{tenant}");
        assert_eq!(adjusted(inv, "output_tokens", "2026-10"), output - o0, "{tenant}");
        let lines: Decimal =
            inv["lines"].as_array().unwrap().iter().map(|l| dec(&l["amount"])).sum();
        assert_eq!(dec(&inv["total"]), lines);
    }

    // Issued October plus November's adjustments equal October priced whole, to the cent.
    let whole = s.root.join("whole");
    copy_dir(&s.lake, &whole);
    std::fs::remove_dir_all(whole.join("_state/billing")).unwrap();
    let mut c = bin();
    ok(c.arg("invoice")
        .arg("--lake")
        .arg(&whole)
        .args(["--period", "2026-10", "--prices"])
        .arg(s.root.join("prices.toml"))
        .arg("--out")
        .arg(s.root.join("whole-out")));
    let whole_json = json_docs(&s.root.join("whole-out/invoices/2026-10"));
    for (tenant, inv) in &whole_json {
        let issued_total = issued_json.get(tenant).map_or(Decimal::ZERO, |i| dec(&i["total"]));
        let adjustments: Decimal = nov_json.get(tenant).map_or(Decimal::ZERO, |i| {
            i["lines"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["adjusts_period"] == "2026-10")
                .map(|l| dec(&l["amount"]))
                .sum()
        });
        assert_eq!(issued_total + adjustments, dec(&inv["total"]), "{tenant}");
    }

    // Close November: December has nothing late.
    ok(&mut invoice(&s, "2026-11", &out, &["--close", "--issue-date", "2026-12-01"]));
    let dec_run = ok(&mut invoice(&s, "2026-12", &out, &[]));
    assert!(!stdout(&dec_run).contains("late usage"), "{}", stdout(&dec_run));

    // October cannot be reopened while November bills its late usage.
    let refused = invoice(&s, "2026-10", &out, &["--reopen"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("reopen 2026-11 first"), "{err}");

    // Reopen November, then October: credit notes that reference the originals.
    ok(&mut invoice(&s, "2026-11", &out, &["--reopen", "--issue-date", "2026-12-03"]));
    let r = ok(&mut invoice(&s, "2026-10", &out, &["--reopen", "--issue-date", "2026-12-03"]));
    assert!(stdout(&r).contains("2026-10 reopened:"), "{}", stdout(&r));
    for (tenant, inv) in &issued_json {
        let cn: Value = serde_json::from_slice(
            &std::fs::read(oct.join(format!("credit-notes/1/{tenant}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(cn["document"], "credit_note");
        assert_eq!(cn["invoice_number"], format!("CN-202610-{tenant}/1"));
        assert_eq!(cn["references"], inv["invoice_number"]);
        assert_eq!(dec(&cn["total"]), -dec(&inv["total"]));
    }
    let ledger = std::fs::read_to_string(oct.join("ledger.csv")).unwrap();
    assert_eq!(ledger.matches(",credited,").count(), issued_json.len(), "{ledger}");

    // Closing October again issues replacements of October's whole usage; numbers move on.
    ok(&mut invoice(&s, "2026-10", &out, &["--close", "--issue-date", "2026-12-04"]));
    let replaced = json_docs(&oct);
    for (tenant, inv) in &replaced {
        assert_eq!(inv["invoice_number"], format!("AM-202610-{tenant}/2"));
        assert_eq!(inv["references"], format!("AM-202610-{tenant}"));
        assert_eq!(inv["total"], whole_json[tenant]["total"], "{tenant}");
    }
    // November, open again, has no late October usage left to bill.
    let n2 = ok(&mut invoice(&s, "2026-11", &out, &[]));
    assert!(!stdout(&n2).contains("late usage for 2026-10"), "{}", stdout(&n2));
}

#[test]
fn a_preview_is_neither_numbered_nor_recorded() {
    let s = setup();
    let out = s.root.join("out");
    // A month without usage says so, and names the price book all the same.
    let empty = stdout(&ok(&mut invoice(&s, "2026-09", &out, &[])));
    assert!(
        empty.contains(
            "no usage in the lake for 2026-09 and no roster (--tenants): no invoices were written"
        ),
        "{empty}"
    );
    assert!(empty.contains("price book               crash-test+"), "{empty}");
    let o = ok(&mut invoice(&s, "2026-10", &out, &["--preview"]));
    assert!(stdout(&o).contains("open (preview)"), "{}", stdout(&o));
    let docs = json_docs(&out.join("previews/2026-10"));
    assert!(!docs.is_empty());
    for inv in docs.values() {
        assert_eq!(inv["status"], "preview");
        assert!(inv.get("invoice_number").is_none());
    }
    assert!(!s.lake.join("_state/billing").exists());
    assert!(!s.lake.join("invoice_lines").exists());
    // A closed period has no preview.
    ok(&mut invoice(&s, "2026-10", &out, &["--close"]));
    let refused = invoice(&s, "2026-10", &out, &["--preview"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

/// The invoice in headless Chromium (`scripts/check-invoice`): loads cleanly, fits A4 and
/// Letter, prints to PDF at both; the screenshot kept beside the test's files.
fn check_in_chromium(html: &Path, png: &Path) {
    if !Path::new("/usr/bin/chromium").exists() && std::env::var_os("CHROMIUM").is_none() {
        println!("skipped: /usr/bin/chromium is missing (apt-get install -y chromium)");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-invoice");
    let out = std::process::Command::new(script).arg(html).arg(png).output().unwrap();
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "check-invoice failed:\n{o}\n{e}");
    assert!(o.contains("A4 PDF") && o.contains("letter PDF"), "{o}");
    let shot = std::fs::metadata(png).unwrap().len();
    assert!(shot > 10_000, "a {shot}-byte screenshot");
}
