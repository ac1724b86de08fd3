//! `--lake s3://`: a lake in S3 (moto) written by `ingest` through a local mirror with
//! deterministic keys, read back by DuckDB from the downloaded objects, deduplicated from a
//! fresh mirror, read by `flags` and `report`, and guarded by its lease.

use std::path::Path;

use crate::aws_sources::{Aws, count};
use crate::util::*;

fn download_all(aws: &Aws, bucket: &str, prefix: &str, to: &Path) -> Vec<String> {
    let out =
        aws.rt.block_on(aws.s3.list_objects_v2().bucket(bucket).prefix(prefix).send()).unwrap();
    let mut keys = Vec::new();
    for o in out.contents() {
        let key = o.key().unwrap().to_owned();
        let obj = aws.rt.block_on(aws.s3.get_object().bucket(bucket).key(&key).send()).unwrap();
        let bytes = aws.rt.block_on(obj.body.collect()).unwrap().into_bytes();
        let path = to.join(key.strip_prefix(prefix).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        keys.push(key);
    }
    keys
}

#[test]
fn a_lake_in_s3_is_written_read_back_and_deduplicated_from_any_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let expected = generate(
        &dir.path().join("gen"),
        &["--tenants", "8", "--events", "4000", "--noisy", "2", "--seed", "9"],
    );
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("lakes").send()).unwrap();
    let input = dir.path().join("gen/input");
    let ingest = |cache: &str| {
        let mut c = aws.cmd(&[
            "ingest",
            "--lake",
            "s3://lakes/acme",
            "--json",
            "--no-progress",
            input.to_str().unwrap(),
        ]);
        c.env("AGENTMETER_LAKE_CACHE", dir.path().join(cache));
        let out = ok(&mut c);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let s = ingest("cache-1");
    assert_eq!(accounting(&s), expected.accounting);

    // The objects, downloaded, are a lake DuckDB reads with exactly the generator's totals.
    let copy = dir.path().join("copy");
    let keys = download_all(&aws, "lakes", "acme/", &copy);
    assert!(keys.iter().all(|k| !k.contains(".s3-") && !k.ends_with("_state/lock")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("acme/usage_events/dt=2026-10-")));
    assert!(!keys.iter().any(|k| k.ends_with("_state/lease.json")), "lease released");
    let events = duckdb_int(&format!("SELECT count(*) FROM {}", table(&copy, "usage_events")));
    assert_eq!(events, expected.accounting.events_written as i64);
    let tokens =
        duckdb_int(&format!("SELECT sum(total_tokens) FROM {}", table(&copy, "usage_hourly")));
    assert_eq!(tokens, expected.tenants.values().map(|t| t.totals.total_tokens).sum::<i64>());

    // Another machine (an empty mirror) ingesting the same input adds nothing.
    let s = ingest("cache-2");
    assert_eq!((count(&s, "events_written"), count(&s, "spans_written")), (0, 0), "{s}");
    assert_eq!(
        count(&s, "duplicates"),
        expected.accounting.events_written as i64 + expected.accounting.duplicates as i64
    );
    // Keys are deterministic: the same objects as before.
    let again = download_all(&aws, "lakes", "acme/", &dir.path().join("copy-2"));
    assert_eq!(again, keys);

    // Readers and other writers work on it too.
    let mut c = aws.cmd(&["flags", "--lake", "s3://lakes/acme", "--period", "2026-10", "--out"]);
    c.arg(dir.path().join("out")).env("AGENTMETER_LAKE_CACHE", dir.path().join("cache-3"));
    ok(&mut c);
    let mut c = aws.cmd(&["report", "--lake", "s3://lakes/acme", "--period", "2026-10", "--out"]);
    c.arg(dir.path().join("out/report.html"))
        .env("AGENTMETER_LAKE_CACHE", dir.path().join("cache-3"));
    ok(&mut c);
    assert!(dir.path().join("out/report.html").is_file());
    let after_flags = download_all(&aws, "lakes", "acme/", &dir.path().join("copy-3"));
    assert!(
        after_flags.iter().any(|k| k.starts_with("acme/flags/dt=2026-10-31/")),
        "{after_flags:?}"
    );

    // A held lease: a writer is refused (exit 2) and says whose it is.
    aws.rt
        .block_on(
            aws.s3
                .put_object()
                .bucket("lakes")
                .key("acme/_state/lease.json")
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b"{}"))
                .send(),
        )
        .unwrap();
    let out = aws
        .cmd(&["ingest", "--lake", "s3://lakes/acme", input.to_str().unwrap()])
        .env("AGENTMETER_LAKE_CACHE", dir.path().join("cache-1"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in use by another writer"));
}
