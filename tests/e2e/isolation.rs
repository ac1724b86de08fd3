//! Whatever a tenant id says, no file is created outside the lake.

use crate::util::*;

#[test]
fn hostile_tenant_ids_never_reach_a_path() {
    let sandbox = tempfile::tempdir().unwrap();
    let root = sandbox.path();
    let expected = generate(
        &root.join("gen"),
        &["--tenants", "4", "--events", "300", "--noisy", "1", "--dirty"],
    );
    assert!(expected.hostile_tenant_ids.len() >= 5);
    let input = root.join("gen/input");
    // More hostile ids, in every input shape a tenant id can take.
    let mut lines = String::new();
    for (i, id) in [
        "../../../../tmp/agentmeter-escape",
        "/tmp/agentmeter-escape",
        "..",
        ".",
        "a/../../b",
        "%2e%2e%2f",
        "x\\..\\y",
        "con\u{0}",
        " ",
        "clinic-a/../../x",
    ]
    .iter()
    .enumerate()
    {
        let rec = serde_json::json!({"event":"inference_usage","event_id":format!("h{i}"),"timestamp":"2026-10-05T00:00:00Z","tier":"basic","clinic_id":id,"user_id":"u","model_id":"m","input_tokens":1,"output_tokens":1,"total_tokens":2});
        lines.push_str(&rec.to_string());
        lines.push('\n');
        let rec = serde_json::json!({"event":"inference_usage","event_id":format!("t{i}"),"timestamp":"2026-10-05T00:00:00Z","tier":"basic","tenant_id":id,"actor_id":format!("basic-{id}-u"),"model_id":"m","input_tokens":1,"output_tokens":1,"total_tokens":2});
        lines.push_str(&rec.to_string());
        lines.push('\n');
    }
    std::fs::write(input.join("hostile.ndjson"), lines).unwrap();
    let work = root.join("cwd");
    std::fs::create_dir_all(&work).unwrap();
    let before_inputs = files_under(&root.join("gen"));
    let lake = root.join("lake");
    let out = ok(bin()
        .current_dir(&work)
        .arg("ingest")
        .arg("--lake")
        .arg(&lake)
        .arg("--json")
        .arg(&input));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = accounting(&summary);
    assert!(a.quarantined[&agentmeter_schemas::Reason::InvalidTenantId] >= 20);

    assert!(files_under(&work).is_empty(), "nothing in the working directory");
    assert_eq!(files_under(&root.join("gen")), before_inputs, "inputs untouched");
    let mut top: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["cwd", "gen", "lake"]);
    assert!(!std::path::Path::new("/tmp/agentmeter-escape").exists());
    for f in files_under(&lake) {
        let ok = (f.starts_with("usage_events/dt=")
            || f.starts_with("usage_hourly/dt=")
            || f.starts_with("tenant_hourly/dt=")
            || f.starts_with("agent_invocations/dt="))
            && f.ends_with(".parquet")
            || f.starts_with("_quarantine/")
                && f.ends_with(".jsonl")
                && f.matches('/').count() == 1
            || f.strip_prefix("_quarantine/.raw/")
                .and_then(|n| n.strip_suffix(".bin"))
                .is_some_and(agentmeter_schemas::is_raw_ref)
            || f == "_state/lake.json"
            || f == "_state/lock";
        assert!(ok, "unexpected file in the lake: {f}");
    }
    // The hostile ids are in the quarantine, verbatim, and in no table.
    let q: String = files_under(&lake.join("_quarantine"))
        .iter()
        .filter(|f| f.ends_with(".jsonl"))
        .map(|f| std::fs::read_to_string(lake.join("_quarantine").join(f)).unwrap())
        .collect();
    assert!(q.contains("../../../../tmp/agentmeter-escape"));
    let ev = table(&lake, "usage_events");
    assert_eq!(
        duckdb_int(&format!(
            "SELECT count(*) FROM {ev} WHERE tenant_id NOT SIMILAR TO '[A-Za-z0-9][A-Za-z0-9._-]*'"
        )),
        0
    );
}
