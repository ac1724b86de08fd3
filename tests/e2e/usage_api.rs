//! The usage API of `serve`: a generated month's usage per tenant over HTTP, equal to DuckDB's
//! sums over the raw events; the invoice preview equal to `invoice --preview`'s document; and
//! each token confined to its scope.

use std::path::Path;

use serde_json::Value;

use crate::otlp_client::{Server, request};
use crate::util::*;

fn sha256_key(token: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(token.as_bytes())))
}

fn get(server: &Server, path: &str, token: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let r = request(server.port(), "GET", path, &[("Authorization", &auth)], b"").unwrap();
    (r.status, r.json())
}

#[test]
fn serve_answers_each_tenant_its_usage_and_its_invoice_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    generate(
        &root.join("gen"),
        &["--tenants", "4", "--noisy", "1", "--events", "3000", "--seed", "11", "--ndjson-only"],
    );
    let lake = root.join("lake");
    ingest(&lake, &[&root.join("gen/input/ndjson")], &[]);
    let prices = root.join("prices.toml");
    std::fs::write(&prices, crate::crash::PRICES).unwrap();

    // DuckDB over the raw events: per tenant, calls and token sums.
    let expected = duckdb(&format!(
        "SELECT tenant_id, count(*)::BIGINT AS n, sum(input_tokens)::BIGINT AS i, \
         sum(output_tokens)::BIGINT AS o, count(DISTINCT user_id)::BIGINT AS users \
         FROM {} GROUP BY tenant_id ORDER BY tenant_id",
        table(&lake, "usage_events")
    ));
    assert!(expected.len() >= 2, "{expected:?}");
    let first = expected[0]["tenant_id"].as_str().unwrap().to_owned();
    let other = expected[1]["tenant_id"].as_str().unwrap().to_owned();
    let tokens = root.join("api-tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[tokens]\n{:?} = {first:?}\n{:?} = \"*\"\n",
            sha256_key("tenant-token"),
            sha256_key("operator-token")
        ),
    )
    .unwrap();
    let server = Server::start(
        &lake,
        &["--api-tokens", tokens.to_str().unwrap(), "--prices", prices.to_str().unwrap()],
    );

    for row in &expected {
        let tenant = row["tenant_id"].as_str().unwrap();
        let (status, by_day) = get(
            &server,
            &format!("/v1/usage?tenant={tenant}&from=2026-10-01&to=2026-11-01"),
            "operator-token",
        );
        assert_eq!(status, 200, "{by_day}");
        let totals = &by_day["totals"];
        assert_eq!(totals["invocations"], row["n"], "{tenant}");
        assert_eq!(totals["input_tokens"], row["i"], "{tenant}");
        assert_eq!(totals["output_tokens"], row["o"], "{tenant}");
        let day_sum: i64 = by_day["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["input_tokens"].as_i64().unwrap())
            .sum();
        assert_eq!(Some(day_sum), row["i"].as_i64());
        let (_, by_user) = get(
            &server,
            &format!("/v1/usage?tenant={tenant}&from=2026-10-01&to=2026-11-01&group_by=user"),
            "operator-token",
        );
        assert_eq!(
            by_user["rows"].as_array().unwrap().len() as i64,
            row["users"].as_i64().unwrap()
        );
        assert_eq!(by_user["totals"], by_day["totals"]);
    }

    // The tenant's token: its own usage, nobody else's.
    let own = format!("/v1/usage?tenant={first}&from=2026-10-01&to=2026-11-01");
    assert_eq!(get(&server, &own, "tenant-token").0, 200);
    let theirs = format!("/v1/usage?tenant={other}&from=2026-10-01&to=2026-11-01");
    assert_eq!(get(&server, &theirs, "tenant-token").0, 403);
    assert_eq!(request(server.port(), "GET", &own, &[], b"").unwrap().status, 401);

    // The preview is `invoice --preview`'s document for the tenant.
    let (status, preview) = get(
        &server,
        &format!("/v1/invoices/preview?tenant={first}&period=2026-10"),
        "tenant-token",
    );
    assert_eq!(status, 200, "{preview}");
    let out = root.join("out");
    ok(bin()
        .arg("invoice")
        .arg("--lake")
        .arg(&lake)
        .args(["--period", "2026-10", "--preview"])
        .arg("--prices")
        .arg(&prices)
        .arg("--out")
        .arg(&out));
    let doc: Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("previews/2026-10/tenants/{first}.json"))).unwrap(),
    )
    .unwrap();
    for field in ["tenant_id", "status", "period", "currency", "total", "lines", "complete"] {
        assert_eq!(preview[field], doc[field], "{field}");
    }
    assert!(Path::new(&out).exists());
    server.stop();
}
