//! CSV injection: a model id is the tenants' own text and may start with `=`, `+`, `-` or `@`;
//! every CSV export finance opens in a spreadsheet writes it with a leading `'`, so no cell
//! runs as a formula, while numbers (a negative credit line) stay numbers. Tenant, user and
//! tier ids cannot start so, nor can any id hold a tab or a carriage return: those are refused
//! at ingest.

use std::path::Path;

use serde_json::{Value, json};

use crate::util::*;

const HYPERLINK: &str = r#"=HYPERLINK("http://x","y")"#;
const SUM: &str = "@SUM(1)";
/// Unpriced: named in the invoice's `problems` cell.
const PLUS: &str = "+SUM(1)";
const MINUS: &str = "-2+3+cmd|'/Ccalc'!A0";

/// A price book that prices two of the ids; its plan includes usage, so each invoice has a
/// negative credit line.
const BOOK: &str = r#"
version = "2026-10-01"
currency = "USD"

[[models]]
id = "=HYPERLINK(\"http://x\",\"y\")"
[[models.prices]]
effective_from = "2025-01-01"
input_per_million = "1.00"
output_per_million = "2.00"

[[models]]
id = "@SUM(1)"
[[models.prices]]
effective_from = "2025-01-01"
input_per_million = "0.50"
output_per_million = "0.50"

[plans.basic]
base_fee = "10.00"
included_usage = "1.50"
"#;

fn usage_line(n: u32, tenant: &str, user: &str, tier: &str, model: &str) -> String {
    json!({"event": "inference_usage", "event_id": format!("f-{n}"),
        "timestamp": format!("2026-10-0{}T08:00:00Z", 1 + n % 9), "tier": tier,
        "clinic_id": tenant, "user_id": user, "model_id": model, "input_tokens": 600_000,
        "output_tokens": 200_000, "total_tokens": 800_000})
    .to_string()
}

/// Every cell of the CSV file `path`, with its column, read by DuckDB.
fn cells(path: &Path) -> Vec<(String, String)> {
    let sql = format!(
        "SELECT * FROM read_csv('{}', header = true, all_varchar = true, delim = ',', \
         quote = '\"', escape = '\"')",
        path.display()
    );
    duckdb(&sql)
        .into_iter()
        .flat_map(|row| {
            row.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        })
        .collect()
}

/// A number as agentmeter writes one.
fn is_number(v: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let u = v.strip_prefix('-').unwrap_or(v);
    u.split_once('.').map_or(digits(u), |(i, f)| digits(i) && digits(f))
}

#[test]
fn ids_that_start_a_formula_reach_every_csv_export_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let input = root.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let mut lines = Vec::new();
    let mut n = 0;
    let mut line = |tenant: &str, user: &str, tier: &str, model: &str| {
        n += 1;
        lines.push(usage_line(n, tenant, user, tier, model));
    };
    for _ in 0..2 {
        line("clinic-a", "dr.lee@clinic-a.example", "basic", HYPERLINK);
        line("clinic-a", "dr.lee@clinic-a.example", "basic", SUM);
    }
    line("clinic-b", "u1", "basic", PLUS);
    line("clinic-b", "u1", "basic", MINUS);
    // Refused at ingest: ids that would start a formula where an id must start with a letter
    // or digit (or `_`), and a tab or carriage return in any id.
    let refused = [
        ("=1+1", "u1", "basic", SUM, "invalid_tenant_id"),
        ("@a", "u1", "basic", SUM, "invalid_tenant_id"),
        ("clinic-c", "-1+1", "basic", SUM, "invalid_user_id"),
        ("clinic-c", "+a", "basic", SUM, "invalid_user_id"),
        ("clinic-c", "u1", "=a", SUM, "invalid_tier"),
        ("clinic-c", "u1", "basic", "\t=1+1", "invalid_model_id"),
        ("clinic-c", "u1", "basic", "\r=1+1", "invalid_model_id"),
        ("clinic-c", "u1", "basic", "=1+ 1", "invalid_model_id"),
    ];
    for (tenant, user, tier, model, _) in refused {
        line(tenant, user, tier, model);
    }
    std::fs::write(input.join("usage.ndjson"), lines.join("\n") + "\n").unwrap();
    let lake = root.join("lake");
    let summary = ingest(&lake, &[&input], &[]);
    let a = accounting(&summary);
    assert_eq!(a.events_written, 6, "{summary}");
    let mut want: Vec<&str> = refused.iter().map(|r| r.4).collect();
    want.sort();
    let mut got: Vec<String> = Vec::new();
    for (reason, count) in &a.quarantined {
        got.extend(std::iter::repeat_n(reason.to_string(), *count as usize));
    }
    got.sort();
    assert_eq!(got, want, "{summary}");

    let prices = root.join("prices.toml");
    std::fs::write(&prices, BOOK).unwrap();
    let out = root.join("out");
    // clinic-b's models are unpriced: the run says so (exit 1) and writes its files.
    let o = bin()
        .args(["invoice", "--period", "2026-10", "--lake"])
        .arg(&lake)
        .arg("--prices")
        .arg(&prices)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let reconcile = out.join("reconcile.csv");
    ok(bin()
        .args(["reconcile", "--period", "2026-10", "--lake"])
        .arg(&lake)
        .arg("--out")
        .arg(&reconcile));

    // No cell of any CSV starts a formula unless it is a number; the ids are there, escaped.
    let files: Vec<String> =
        files_under(&out).into_iter().filter(|f| f.ends_with(".csv")).collect();
    let mut seen: Vec<(String, String, String)> = Vec::new();
    let mut total = 0;
    for f in &files {
        for (column, v) in cells(&out.join(f)) {
            total += 1;
            assert!(
                !v.starts_with(['=', '+', '-', '@', '\t', '\r']) || is_number(&v),
                "{f} {column}: {v:?} would run as a formula"
            );
            if v.starts_with('\'') || v.starts_with('-') {
                seen.push((f.clone(), column, v));
            }
        }
    }
    let has = |file: &str, column: &str, value: &str| {
        seen.iter().any(|(f, c, v)| f.ends_with(file) && c == column && v.starts_with(value))
    };
    for (file, column) in [("invoices.csv", "model_id"), ("focus-invoice-detail.csv", "x_ModelId")]
    {
        for id in [HYPERLINK, SUM] {
            assert!(has(file, column, &format!("'{id}")), "{file} {column}: {seen:?}");
        }
    }
    // The unpriced ids, named in the problems cell of clinic-b's rows.
    assert!(has("invoices.csv", "problems", "'+SUM(1): "), "{seen:?}");
    // The included usage's credit line: a negative amount, written as a number.
    for (file, column) in [("invoices.csv", "amount"), ("focus-invoice-detail.csv", "BilledCost")] {
        assert!(has(file, column, "-1.50"), "{file} {column}: {seen:?}");
    }

    // Outside CSV the id is data, kept as it came: the invoice's JSON and the lake's table.
    let json: Value = serde_json::from_slice(
        &std::fs::read(out.join("invoices/2026-10/tenants/clinic-a.json")).unwrap(),
    )
    .unwrap();
    let models: Vec<&Value> =
        json["lines"].as_array().unwrap().iter().map(|l| &l["model_id"]).collect();
    assert!(models.contains(&&json!(HYPERLINK)), "{models:?}");
    let lines = table(&lake, "invoice_lines");
    let sql = format!("SELECT count(*) FROM {lines} WHERE model_id = '{HYPERLINK}'");
    assert_eq!(duckdb_int(&sql), 2, "its input and output lines");
    println!(
        "csv formulas: {} ids refused at ingest; {total} cells of {} CSV files checked, {} \
         escaped",
        refused.len(),
        files.len(),
        seen.iter().filter(|(_, _, v)| v.starts_with('\'')).count()
    );
}
