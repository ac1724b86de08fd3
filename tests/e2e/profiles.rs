//! Application inference profiles: usage logged under a profile's ARN (or bare id) is priced
//! as the model the profile routes to, given `--inference-profiles`; without it, or for a
//! profile it does not list, the usage is a problem, never priced by the opaque id.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::util::*;

/// The shipped price book: basic is list × 1.25 with no included usage.
const PRICES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prices.toml");

const HAIKU: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";
const US_HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";

fn arn(id: &str) -> String {
    format!("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/{id}")
}

struct Lake {
    dir: tempfile::TempDir,
    lake: PathBuf,
}

impl Lake {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// clinic-a (basic) in October: two calls under profile a1b2c3d4e5f6 (Claude Haiku 4.5 in
/// us-east-1), one under b2c3d4e5f6a7 (copied from the US cross-region profile), one logged
/// with the bare id a1b2c3d4e5f6. clinic-b (basic) in November: one call under a profile the
/// listing does not have.
fn lake() -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let line = |id: &str, at: &str, tenant: &str, model: &str, input: i64, output: i64| {
        json!({
            "event": "inference_usage", "event_id": id, "timestamp": at, "tier": "basic",
            "clinic_id": tenant, "user_id": "u1", "model_id": model,
            "input_tokens": input, "output_tokens": output, "total_tokens": input + output,
        })
        .to_string()
    };
    let text = [
        line("e1", "2026-10-03T09:00:00Z", "clinic-a", &arn("a1b2c3d4e5f6"), 1_000_000, 200_000),
        line("e2", "2026-10-20T17:30:00Z", "clinic-a", &arn("a1b2c3d4e5f6"), 234_567, 12_345),
        line("e3", "2026-10-04T08:00:00Z", "clinic-a", &arn("b2c3d4e5f6a7"), 3_000_000, 100_000),
        line("e4", "2026-10-05T11:00:00Z", "clinic-a", "a1b2c3d4e5f6", 500_000, 40_000),
        line("e5", "2026-11-02T10:00:00Z", "clinic-b", &arn("f6a7b8c9d0e1"), 10_000, 1_000),
    ]
    .join("\n");
    let input = dir.path().join("usage.ndjson");
    std::fs::write(&input, text + "\n").unwrap();
    let lake = dir.path().join("lake");
    assert_eq!(accounting(&ingest(&lake, &[&input], &[])).events_written, 5);
    Lake { dir, lake }
}

/// What `aws bedrock list-inference-profiles --type-equals APPLICATION` prints for the two
/// profiles.
fn listing() -> Value {
    let profile = |id: &str, model_arn: String| {
        json!({
            "inferenceProfileName": format!("clinic-a-{id}"),
            "description": "clinic-a usage",
            "createdAt": "2026-09-01T10:00:00.000000+00:00",
            "updatedAt": "2026-09-01T10:00:00.000000+00:00",
            "inferenceProfileArn": arn(id),
            "models": [{"modelArn": model_arn}],
            "inferenceProfileId": id,
            "status": "ACTIVE",
            "type": "APPLICATION",
        })
    };
    json!({"inferenceProfileSummaries": [
        profile("a1b2c3d4e5f6", format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}")),
        profile(
            "b2c3d4e5f6a7",
            format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/{US_HAIKU}"),
        ),
    ]})
}

fn invoice(l: &Lake, period: &str, profiles: Option<&Path>, out: &Path) -> Output {
    let mut c: Command = bin();
    c.arg("invoice").arg("--lake").arg(&l.lake).args(["--period", period]);
    c.args(["--prices", PRICES]).arg("--out").arg(out);
    if let Some(p) = profiles {
        c.arg("--inference-profiles").arg(p);
    }
    c.output().unwrap()
}

fn read(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// (component, model, quantity, unit price, amount) of each line.
fn lines(invoice: &Value) -> Vec<(String, String, i64, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let q = l["quantity"].as_i64().unwrap();
            (s(&l["component"]), s(&l["model_id"]), q, s(&l["unit_price"]), s(&l["amount"]))
        })
        .collect()
}

#[test]
fn profiles_are_priced_as_their_models_and_unknown_ones_are_problems() {
    let l = lake();
    let file = l.path("profiles.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&listing()).unwrap()).unwrap();

    let row = |c: &str, m: &str, q: i64, p: &str, amt: &str| {
        (c.to_owned(), m.to_owned(), q, p.to_owned(), amt.to_owned())
    };
    let (pa, pb) = (arn("a1b2c3d4e5f6"), arn("b2c3d4e5f6a7"));

    // Without it, on a lake that never saw a listing: the ARNs are problems, never priced by
    // their ids; the bare id is unknown.
    let out = l.path("without");
    let res = invoice(&l, "2026-10", None, &out);
    assert_eq!(res.status.code(), Some(1), "{}", String::from_utf8_lossy(&res.stderr));
    let summary = read(out.join("invoices/2026-10/summary.json"));
    assert_eq!(summary["complete"], false);
    let mut problems: Vec<(String, i64, String)> = summary["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["tenant_id"], "clinic-a");
            let m = p["model_id"].as_str().unwrap().to_owned();
            (m, p["tokens"].as_i64().unwrap(), p["reason"].as_str().unwrap().to_owned())
        })
        .collect();
    problems.sort();
    let month = " from 2026-10-01T00:00:00+00:00 to 2026-11-01T00:00:00+00:00";
    assert_eq!(
        problems,
        vec![
            (
                "a1b2c3d4e5f6".to_owned(),
                540_000,
                format!(
                    "model \"a1b2c3d4e5f6\" is not in the price book (declare it, or add it as an alias){month}"
                )
            ),
            (
                pa.clone(),
                1_446_912,
                format!(
                    "application inference profile a1b2c3d4e5f6 is not in --inference-profiles{month}"
                )
            ),
            (
                pb.clone(),
                3_100_000,
                format!(
                    "application inference profile b2c3d4e5f6a7 is not in --inference-profiles{month}"
                )
            ),
        ]
    );
    let a = read(out.join("invoices/2026-10/tenants/clinic-a.json"));
    assert_eq!(a["complete"], false);
    assert_eq!(lines(&a), vec![row("plan_fee", "", 1, "49.00", "49.00")]);
    assert_eq!(a["total"], "49.00");

    // With the listing: every October call is priced, at the profile's model's price.
    let out = l.path("with");
    let res = invoice(&l, "2026-10", Some(&file), &out);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let a = read(out.join("invoices/2026-10/tenants/clinic-a.json"));
    assert_eq!(a["complete"], true);
    let mut got = lines(&a);
    got.sort();
    let mut want = vec![
        row("plan_fee", "", 1, "49.00", "49.00"),
        // Claude Haiku 4.5 in us-east-1: 1.00 / 5.00 × 1.25.
        row("input_tokens", &pa, 1_234_567, "1.2500", "1.54"),
        row("output_tokens", &pa, 212_345, "6.2500", "1.33"),
        // The US cross-region profile: 1.10 / 5.50 × 1.25.
        row("input_tokens", &pb, 3_000_000, "1.3750", "4.13"),
        row("output_tokens", &pb, 100_000, "6.8750", "0.69"),
        // The bare id, as the profile.
        row("input_tokens", "a1b2c3d4e5f6", 500_000, "1.2500", "0.63"),
        row("output_tokens", "a1b2c3d4e5f6", 40_000, "6.2500", "0.25"),
    ];
    want.sort();
    assert_eq!(got, want, "{}", serde_json::to_string_pretty(&a).unwrap());
    assert_eq!(a["total"], "57.57");

    // The lake keeps the listing: a run without the option prices as the one with it, and
    // says so.
    assert!(l.lake.join("_state/inference_profiles.json").is_file());
    let again = l.path("again");
    let res = invoice(&l, "2026-10", None, &again);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let b = read(again.join("invoices/2026-10/tenants/clinic-a.json"));
    assert_eq!(lines(&b), lines(&a));
    assert_eq!(b["price_book_version"], a["price_book_version"]);
    let summary = read(again.join("invoices/2026-10/summary.json"));
    let notes = summary["notes"].to_string();
    assert!(
        notes.contains("application inference profiles: the lake's copy (2 profiles, profiles-"),
        "{notes}"
    );

    // A profile the listing does not have stays a problem with it.
    let out = l.path("november");
    let res = invoice(&l, "2026-11", Some(&file), &out);
    assert_eq!(res.status.code(), Some(1), "{}", String::from_utf8_lossy(&res.stderr));
    let b = read(out.join("invoices/2026-11/tenants/clinic-b.json"));
    assert_eq!(b["complete"], false);
    let p = &b["problems"][0];
    assert_eq!(p["model_id"], arn("f6a7b8c9d0e1").as_str());
    assert_eq!(p["tokens"], 11_000);
    assert_eq!(
        p["reason"],
        "application inference profile f6a7b8c9d0e1 is not in --inference-profiles from 2026-11-01T00:00:00+00:00 to 2026-12-01T00:00:00+00:00"
    );
    assert_eq!(lines(&b), vec![row("plan_fee", "", 1, "49.00", "49.00")]);
}

#[test]
fn ambiguous_or_malformed_listings_are_refused_at_start_up() {
    let l = lake();
    let file = l.path("profiles.json");
    let out = l.path("out");
    let refused = |listing: &Value| {
        std::fs::write(&file, listing.to_string()).unwrap();
        let res = invoice(&l, "2026-10", Some(&file), &out);
        assert_eq!(res.status.code(), Some(2), "{}", String::from_utf8_lossy(&res.stderr));
        assert!(!out.join("invoices").exists(), "nothing written");
        String::from_utf8_lossy(&res.stderr).trim_end().to_owned()
    };
    let mut two = listing();
    two["inferenceProfileSummaries"][1]["models"]
        .as_array_mut()
        .unwrap()
        .push(json!({"modelArn": format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}")}));
    assert_eq!(
        refused(&two),
        format!(
            "error: --inference-profiles: {}: inferenceProfileSummaries[1] (b2c3d4e5f6a7).models: application inference profile b2c3d4e5f6a7 routes to several models ({US_HAIKU}, {HAIKU}); it cannot be priced as one",
            file.display()
        )
    );
    let mut bad = listing();
    bad["inferenceProfileSummaries"][0]["models"][0]["modelArn"] = json!(HAIKU);
    assert_eq!(
        refused(&bad),
        format!(
            "error: --inference-profiles: {}: inferenceProfileSummaries[0] (a1b2c3d4e5f6).models[0].modelArn: \"{HAIKU}\" is not a Bedrock foundation-model or inference-profile ARN (arn:aws:bedrock:<region>:<account>:foundation-model/<id> or .../inference-profile/<id>)",
            file.display()
        )
    );
}

#[test]
fn a_failed_bedrock_listing_stops_the_run_before_anything_is_written() {
    // moto 5.2.5 has no ListInferenceProfiles (it answers 500): the real client's failure
    // must stop the run, naming the call, with no invoice and no copy in the lake.
    let l = lake();
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let out = l.path("out");
    let res = bin()
        .arg("invoice")
        .arg("--lake")
        .arg(&l.lake)
        .args(["--period", "2026-10", "--prices", PRICES, "--inference-profiles", "bedrock"])
        .arg("--out")
        .arg(&out)
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("listing application inference profiles"), "{stderr}");
    assert!(stderr.contains("bedrock:ListInferenceProfiles (page 1) failed"), "{stderr}");
    assert!(!out.join("invoices").exists());
    assert!(!l.lake.join("_state/inference_profiles.json").exists());
    assert!(moto.log().iter().any(|r| r.contains("/inference-profiles")), "{:?}", moto.log());
}
