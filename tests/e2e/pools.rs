//! AgentCore cost pools end to end: two tenants' traced agent calls, Runtime cost split by
//! agent duration and Gateway cost by tool calls, to the cent, in the invoices, margin.json
//! and the FOCUS export (read back with DuckDB).

use serde_json::Value;

use crate::otlp_client::STRANDS_FIXTURE;
use crate::util::*;

/// One `GetCostAndUsage` response grouped by `Tier`: (day, tag value, amount).
fn costs(rows: &[(&str, &str, &str)]) -> String {
    let days: Vec<Value> = rows
        .iter()
        .map(|(day, tag, amount)| {
            let end = format!("{}{}", &day[..8], day[8..].parse::<u32>().unwrap() + 1);
            let end = if end.len() == 9 { format!("{}0{}", &end[..8], &end[8..]) } else { end };
            serde_json::json!({
                "TimePeriod": {"Start": day, "End": end},
                "Total": {},
                "Groups": [{"Keys": [format!("Tier${tag}")],
                            "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}}],
                "Estimated": false
            })
        })
        .collect();
    serde_json::json!({"GroupDefinitions": [{"Type": "TAG", "Key": "Tier"}], "ResultsByTime": days})
        .to_string()
}

#[test]
fn agentcore_costs_split_by_agent_duration_and_tool_calls() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    // clinic-a-north's trace as recorded (3.1 s agent call, 2 tool calls); clinic-b's the same
    // call under other ids with one tool span fewer.
    let a: Value = serde_json::from_str(STRANDS_FIXTURE).unwrap();
    let mut b: Value = serde_json::from_str(
        &STRANDS_FIXTURE
            .replace("clinic-a-north", "clinic-b")
            .replace("5b8efff798038103d269b633813fc60c", "6b8efff798038103d269b633813fc60c")
            .replace("5B8EFFF798038103D269B633813FC60C", "6B8EFFF798038103D269B633813FC60C"),
    )
    .unwrap();
    let spans = b["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array_mut().unwrap();
    spans.retain(|s| s["name"] != "execute_tool send_referral");
    std::fs::write(input.join("spans.json"), format!("{a}\n{b}\n")).unwrap();
    let lake = dir.path().join("lake");
    let summary = ingest(&lake, &[&input], &[]);
    assert_eq!(accounting(&summary).spans_written, 13, "{summary}");

    std::fs::write(dir.path().join("runtime.json"), costs(&[("2026-10-01", "basic", "1.01")]))
        .unwrap();
    std::fs::write(
        dir.path().join("gateway.json"),
        costs(&[("2026-10-01", "basic", "0.30"), ("2026-10-02", "basic", "0.05")]),
    )
    .unwrap();
    let out = dir.path().join("out");
    let prices = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.toml");
    let o = bin()
        .arg("invoice")
        .arg("--lake")
        .arg(&lake)
        .args(["--period", "2026-10", "--prices"])
        .arg(&prices)
        .arg("--runtime-costs")
        .arg(dir.path().join("runtime.json"))
        .arg("--gateway-costs")
        .arg(dir.path().join("gateway.json"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    // Without usage logs the tenants have spans only: invoices with their base fee.
    assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
    let month = out.join("invoices/2026-10");
    let margin: Value =
        serde_json::from_str(&std::fs::read_to_string(month.join("margin.json")).unwrap()).unwrap();
    let allocated = |t: &str| -> Value {
        let tenants = margin["tenants"].as_array().unwrap();
        tenants.iter().find(|x| x["tenant_id"] == t).unwrap()["allocated_cost"].clone()
    };
    // Equal agent durations: 1.01 → 0.51 / 0.50 (the tie to the first); tool calls 2 : 1 →
    // 0.20 / 0.10; Oct 2's gateway cost has no tool call that day.
    assert_eq!(allocated("clinic-a-north"), "0.71");
    assert_eq!(allocated("clinic-b"), "0.60");
    assert_eq!(
        margin["pools"],
        serde_json::json!([
            {"pool": "agent_runtime", "driver": "agent duration", "allocated": "1.01", "unallocated": "0"},
            {"pool": "agent_gateway", "driver": "tool calls", "allocated": "0.30", "unallocated": "0.05"}
        ])
    );
    assert_eq!(margin["reconciliation"]["reconciled"], true);
    let focus = format!("read_parquet('{}')", month.join("focus.parquet").display());
    let rows = duckdb(&format!(
        "SELECT x_CostPool AS p, coalesce(x_TenantId, '') AS t, BilledCost::VARCHAR AS c, \
         ConsumedQuantity AS q, ServiceName AS s FROM {focus} ORDER BY 1, 2, ChargePeriodStart"
    ));
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["p"].as_str().unwrap(),
                r["t"].as_str().unwrap(),
                r["c"].as_str().unwrap(),
                r["q"],
                r["s"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "agent_gateway  0.05 null Amazon Bedrock AgentCore",
            "agent_gateway clinic-a-north 0.20 2 Amazon Bedrock AgentCore",
            "agent_gateway clinic-b 0.10 1 Amazon Bedrock AgentCore",
            "agent_runtime clinic-a-north 0.51 3100 Amazon Bedrock AgentCore",
            "agent_runtime clinic-b 0.50 3100 Amazon Bedrock AgentCore",
        ]
    );
}
