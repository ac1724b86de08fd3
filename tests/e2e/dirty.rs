//! Dirty input: every record accounted for exactly; the quarantine is replayable.

use std::path::Path;

use agentmeter_schemas::{QuarantineEntry, Reason, SkipKind};

use crate::util::*;

fn entries(lake: &Path) -> Vec<QuarantineEntry> {
    let mut out = Vec::new();
    for f in files_under(&lake.join("_quarantine")).iter().filter(|f| f.ends_with(".jsonl")) {
        let text = std::fs::read_to_string(lake.join("_quarantine").join(f)).unwrap();
        out.extend(text.lines().map(|l| serde_json::from_str::<QuarantineEntry>(l).unwrap()));
    }
    out
}

#[test]
fn every_bad_kind_is_accounted_for_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let expected =
        generate(&dir.path().join("gen"), &["--tenants", "8", "--events", "6000", "--dirty"]);
    let lake = dir.path().join("lake");
    let summary = ingest(&lake, &[&dir.path().join("gen/input")], &[]);
    let a = accounting(&summary);
    assert_eq!(a, expected.accounting);
    assert!(a.balances());
    for r in Reason::ALL {
        assert!(a.quarantined.get(&r).copied().unwrap_or(0) > 0, "no {r} in the dirty month");
    }
    for k in SkipKind::ALL {
        assert!(a.skipped.get(&k).copied().unwrap_or(0) > 0, "no {k} in the dirty month");
    }
    // The quarantine holds exactly the refused records, each with its reason.
    let q = entries(&lake);
    assert_eq!(q.len() as u64, a.quarantined_total());
    for r in Reason::ALL {
        let n = q.iter().filter(|e| e.reason == r).count() as u64;
        assert_eq!(n, a.quarantined[&r], "{r}");
    }
    assert!(q.iter().all(|e| e.source.as_str().starts_with("file:///") && !e.detail.is_empty()));
    // Totals of the valid events are untouched by the bad ones.
    let ev = table(&lake, "usage_events");
    let total: i64 = expected.tenants.values().map(|t| t.totals.total_tokens).sum();
    assert_eq!(duckdb_int(&format!("SELECT sum(total_tokens) FROM {ev}")), total);
}

#[test]
fn a_fixed_quarantine_entry_replays_into_the_lake_with_its_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let good = r#"{"event":"inference_usage","event_id":"ok-1","timestamp":"2026-10-03T09:00:00Z","tier":"basic","clinic_id":"clinic-a","user_id":"u1","model_id":"m","input_tokens":10,"output_tokens":5,"total_tokens":15}"#;
    let bad_total =
        good.replace("ok-1", "fix-me").replace("\"total_tokens\":15", "\"total_tokens\":16");
    let other_field = good.replace("ok-1", "org-1").replace("clinic_id", "org");
    std::fs::write(
        input.join("day.ndjson"),
        format!("{good}\n{bad_total}\n{other_field}\nnot json\n"),
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let a = accounting(&ingest(&lake, &[&input], &[]));
    assert_eq!((a.events_written, a.quarantined_total()), (1, 3));
    let qdir = lake.join("_quarantine");
    let qfiles = files_under(&qdir);
    assert_eq!(qfiles.len(), 1);
    let qfile = qdir.join(&qfiles[0]);

    // Fix one record in place, as an operator would.
    let text = std::fs::read_to_string(&qfile).unwrap();
    let fixed: String = text
        .lines()
        .map(|l| {
            let mut e: QuarantineEntry = serde_json::from_str(l).unwrap();
            if e.reason == Reason::InconsistentTotal {
                e.raw = e.raw.map(|r| r.replace("\"total_tokens\":16", "\"total_tokens\":15"));
            }
            serde_json::to_string(&e).unwrap() + "\n"
        })
        .collect();
    std::fs::write(&qfile, fixed).unwrap();
    let a = accounting(&ingest(&lake, &[&qdir], &[]));
    assert_eq!((a.records_read, a.events_written, a.quarantined_total()), (3, 1, 2));

    // Then a configuration fix: the tenant field of the third record.
    let a = accounting(&ingest(&lake, &[&qdir], &["--tenant-field", "org"]));
    assert_eq!((a.records_read, a.events_written, a.quarantined_total()), (2, 1, 1));
    let left = entries(&lake);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].reason, Reason::InvalidJson);
    assert_eq!(left[0].raw.as_deref(), Some("not json"));
    assert_eq!(left[0].position.line, Some(4));

    let ev = table(&lake, "usage_events");
    let rows = duckdb(&format!("SELECT event_id, source FROM {ev} ORDER BY event_id"));
    let ids: Vec<_> = rows.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["fix-me", "ok-1", "org-1"]);
    let src = format!("file://{}", input.join("day.ndjson").canonicalize().unwrap().display());
    assert!(rows.iter().all(|r| r["source"] == src.as_str()), "lineage kept: {rows:?}");
}

#[test]
fn replaying_the_quarantine_is_idempotent_for_every_entry_including_oversized_ones() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let good = r#"{"event":"inference_usage","event_id":"ok-1","timestamp":"2026-10-03T09:00:00Z","tier":"basic","clinic_id":"clinic-a","user_id":"u1","model_id":"m","input_tokens":10,"output_tokens":5,"total_tokens":15}"#;
    // Over the 4 MiB record limit: only its first bytes can be kept.
    let oversized = good
        .replace("ok-1", "big")
        .replace("}", &format!(",\"pad\":\"{}\"}}", "x".repeat(5 << 20)));
    // 200 kB: kept whole, apart from its entry line, and replayable once the field is known.
    let large_other_field = good
        .replace("ok-1", "large")
        .replace("clinic_id", "org")
        .replace("}", &format!(",\"pad\":\"{}\"}}", "y".repeat(200_000)));
    std::fs::write(
        input.join("day.ndjson"),
        format!("{good}\n{oversized}\n{large_other_field}\nnot json\n"),
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let a = accounting(&ingest(&lake, &[&input], &[]));
    assert_eq!((a.events_written, a.quarantined_total()), (1, 3));
    let qdir = lake.join("_quarantine");
    let snapshot = || -> Vec<(String, Vec<u8>)> {
        files_under(&qdir)
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(qdir.join(&f)).unwrap()))
            .collect()
    };
    let first = snapshot();
    // One entry file and the two large records' bytes, each kept once.
    assert_eq!(first.iter().filter(|(f, _)| f.ends_with(".jsonl")).count(), 1);
    assert_eq!(first.iter().filter(|(f, _)| f.starts_with(".raw/")).count(), 2);
    for (f, bytes) in &first {
        if f.ends_with(".jsonl") {
            assert!(bytes.len() < 64 << 10, "entry lines stay short: {} bytes", bytes.len());
        }
    }
    for round in 0..3 {
        let a = accounting(&ingest(&lake, &[&qdir], &[]));
        assert_eq!(
            (a.records_read, a.events_written, a.quarantined_total()),
            (3, 0, 3),
            "round {round}"
        );
        assert_eq!(snapshot(), first, "round {round}: the quarantine is unchanged");
    }
    // A configuration fix replays the large record from its kept bytes.
    let a = accounting(&ingest(&lake, &[&qdir], &["--tenant-field", "org"]));
    assert_eq!((a.records_read, a.events_written, a.quarantined_total()), (3, 1, 2));
    let left = entries(&lake);
    let reasons: Vec<_> = left.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, [Reason::TooLarge, Reason::InvalidJson]);
    let ev = table(&lake, "usage_events");
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM {ev} WHERE event_id = 'large'")), 1);
}

#[test]
fn configuration_errors_exit_2_with_a_message_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "ingest".into(),
                "--lake".into(),
                lake.display().to_string(),
                dir.path().join("missing").display().to_string(),
            ],
            "cannot read source",
        ),
        (
            vec![
                "ingest".into(),
                "--lake".into(),
                lake.display().to_string(),
                "--tenant-field".into(),
                "a b".into(),
                dir.path().display().to_string(),
            ],
            "tenant field \"a b\"",
        ),
        (
            vec![
                "ingest".into(),
                "--lake".into(),
                lake.display().to_string(),
                "--max-record-bytes".into(),
                "0".into(),
                dir.path().display().to_string(),
            ],
            "max record bytes",
        ),
        (
            vec!["schema".into(), "athena".into(), "--location".into(), "/not/s3".into()],
            "is not of the form s3://bucket/prefix",
        ),
        (
            vec![
                "gen".into(),
                "--out".into(),
                dir.path().join("g").display().to_string(),
                "--month".into(),
                "2026-13".into(),
            ],
            "--month \"2026-13\"",
        ),
    ];
    for (args, message) in cases {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    assert!(!lake.exists(), "nothing was created");

    let src = dir.path().join("x.ndjson");
    std::fs::write(&src, "").unwrap();
    let out = bin()
        .env("AGENTMETER_CACHE_MAX_BYTES", "2GB")
        .arg("ingest")
        .arg("--lake")
        .arg(&lake)
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AGENTMETER_CACHE_MAX_BYTES=\"2GB\" is not a number of bytes"), "{err}");
    assert!(!lake.exists(), "nothing was created");

    let not_a_lake = dir.path().join("home");
    std::fs::create_dir_all(&not_a_lake).unwrap();
    std::fs::write(not_a_lake.join("thesis.txt"), "precious").unwrap();
    let out = bin().arg("ingest").arg("--lake").arg(&not_a_lake).arg(&src).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an agentmeter lake"));
    assert_eq!(files_under(&not_a_lake), ["thesis.txt"]);
}
