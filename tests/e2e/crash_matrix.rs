//! The crash matrix: each command that writes the lake or its outputs is killed with SIGKILL
//! at seeded points of its run (`util::Seeded`, within the time a clean run takes), then run
//! again to completion; the lake, as a reader sees it, and the outputs equal a clean run's.
//!
//! `AGENTMETER_CRASH_TRIALS` sets the trials per command (2 in CI); a soak:
//! `AGENTMETER_CRASH_TRIALS=25 scripts/test -p agentmeter --test e2e crash_matrix`.
//! A failure names its seed; `AGENTMETER_CRASH_SEED=<hex>` replays the same kill points.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::aws_sources::Aws;
use crate::util::*;

/// A generated month with spans, bad records and duplicate deliveries, its price book, and a
/// lake of it ingested in small batches (many files per day, for compaction).
struct Month {
    dir: tempfile::TempDir,
    input: PathBuf,
    prices: PathBuf,
}

impl Month {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        generate(
            &dir.path().join("gen"),
            &["--tenants", "6", "--events", "12000", "--seed", "11", "--noisy", "1", "--dirty"],
        );
        let prices = dir.path().join("prices.toml");
        std::fs::write(&prices, crate::crash::PRICES).unwrap();
        let input = dir.path().join("gen/input");
        Month { dir, input, prices }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The lake as a reader sees it, as text: per tenant the events (rows, distinct ids, token
/// sums), the spans (rows, distinct ids), every rollup row, and the quarantine's entries by
/// reason. Two lakes with the same text bill, flag and report the same.
pub(crate) fn reader_view(lake: &Path) -> String {
    // One line per row, so that a difference names its row.
    let q = |sql: String| {
        duckdb(&sql)
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ev = table(lake, "usage_events");
    let mut view = vec![q(format!(
        "SELECT tenant_id, count(*) AS n, count(DISTINCT event_id) AS d, sum(input_tokens)::BIGINT AS i,
                sum(output_tokens)::BIGINT AS o, sum(total_tokens)::BIGINT AS t
         FROM {ev} GROUP BY ALL ORDER BY ALL"
    ))];
    // A lake of logs alone has no span table (a lake that lost its spans still differs: the
    // clean run's view has this section).
    if lake.join("agent_spans").is_dir() {
        view.push(q(format!(
            "SELECT tenant_id, count(*) AS n, count(DISTINCT (trace_id, span_id)) AS d,
                    sum(duration_ms)::BIGINT AS ms
             FROM {} GROUP BY ALL ORDER BY ALL",
            table(lake, "agent_spans")
        )));
    }
    for t in ["usage_hourly", "tenant_hourly", "agent_invocations"] {
        // As text: timestamps with a zone would need Python's pytz to come back as values.
        view.push(q(format!("SELECT COLUMNS(*)::VARCHAR FROM {} ORDER BY ALL", table(lake, t))));
    }
    let mut reasons: Vec<String> = files_under(&lake.join("_quarantine"))
        .iter()
        .filter(|f| f.ends_with(".jsonl"))
        .flat_map(|f| {
            let text = std::fs::read_to_string(lake.join("_quarantine").join(f)).unwrap();
            text.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    format!("{} {}", v["reason"], v["source"])
                })
                .collect::<Vec<_>>()
        })
        .collect();
    reasons.sort();
    view.push(reasons.join("\n"));
    view.join("\n")
}

/// `got` equals `want`, or the first rows that differ.
fn assert_same(got: &str, want: &str, what: &str) {
    if got != want {
        let diff: Vec<String> = got
            .lines()
            .zip(want.lines())
            .filter(|(g, w)| g != w)
            .take(3)
            .map(|(g, w)| format!("got  {g}\nwant {w}"))
            .collect();
        panic!(
            "{what}: differs from a clean run's ({} lines against {}):\n{}",
            got.lines().count(),
            want.lines().count(),
            diff.join("\n")
        );
    }
}

/// No row is stored twice and no temporary file is left.
fn assert_settled(lake: &Path, what: &str) {
    let ev = table(lake, "usage_events");
    assert_eq!(
        duckdb_int(&format!("SELECT count(*) - count(DISTINCT event_id) FROM {ev}")),
        0,
        "{what}: an event stored twice"
    );
    let tmp: Vec<String> = files_under(lake)
        .into_iter()
        .filter(|f| f.contains(".tmp-") || f.contains(".partial"))
        .collect();
    assert!(tmp.is_empty(), "{what}: temporary files left: {tmp:?}");
}

/// Kills `cmd` at seeded points, then reruns it; `check` compares each trial with the clean
/// run. `fresh` makes the state a trial starts from. Returns (trials, kills that landed).
fn matrix(
    name: &str,
    clean: Duration,
    mut fresh: impl FnMut(u64) -> PathBuf,
    mut cmd: impl FnMut(&Path) -> Command,
    mut check: impl FnMut(&Path, &str),
) -> (u64, u64) {
    let mut rng = Seeded::new(name);
    let (trials, mut landed) = (crash_trials(), 0);
    for trial in 0..trials {
        let at = rng.within(clean.mul_f64(0.9));
        let target = fresh(trial);
        if kill_after(&mut cmd(&target), at) {
            landed += 1;
        }
        ok(&mut cmd(&target));
        check(&target, &format!("{name} trial {trial} (seed {:x}, killed at {at:?})", rng.seed));
    }
    println!(
        "crash matrix: {name}: {trials} trials, {landed} kills landed, outputs equal a clean run's"
    );
    (trials, landed)
}

fn ingest_cmd(m: &Month, lake: &Path, batch_rows: &str) -> Command {
    let mut c = bin();
    c.arg("ingest")
        .arg("--lake")
        .arg(lake)
        .args(["--batch-rows", batch_rows, "--no-progress"])
        .arg(&m.input);
    c
}

#[test]
fn ingest_into_a_local_lake_killed_and_rerun_equals_a_clean_run() {
    let m = Month::new();
    let clean = m.path("clean");
    let took = timed(&mut ingest_cmd(&m, &clean, "400"));
    let want = reader_view(&clean);
    matrix(
        "ingest",
        took,
        |t| m.path(&format!("lake-{t}")),
        |lake| ingest_cmd(&m, lake, "400"),
        |lake, what| {
            assert_settled(lake, what);
            assert_same(&reader_view(lake), &want, what);
        },
    );
}

#[test]
fn ingest_into_an_s3_lake_killed_and_rerun_equals_a_clean_run() {
    let m = Month::new();
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("crash").send()).unwrap();
    let run = |prefix: &str| {
        let mut c = crate::s3_lake::machine(
            &aws,
            m.dir.path(),
            prefix,
            &[
                "ingest",
                "--lake",
                &format!("s3://crash/{prefix}"),
                "--batch-rows",
                "400",
                "--no-progress",
            ],
        );
        c.arg(&m.input);
        c
    };
    let local = |prefix: &str| {
        let to = m.path(&format!("copy-{prefix}"));
        crate::s3_lake::download(&aws, "crash", &format!("{prefix}/"), &to);
        to
    };
    let took = timed(&mut run("clean"));
    let want = reader_view(&local("clean"));
    matrix(
        "ingest-s3",
        took,
        |t| PathBuf::from(format!("trial-{t}")),
        |prefix| run(prefix.to_str().unwrap()),
        |prefix, what| {
            let lake = local(prefix.to_str().unwrap());
            assert_settled(&lake, what);
            assert_same(&reader_view(&lake), &want, what);
        },
    );
}

#[test]
fn kinesis_ingest_killed_and_rerun_equals_a_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut aws = Aws::start();
    // 80 PutLogEvents calls (80 records through the subscription filter) and a corrupt record.
    for _ in 0..80 {
        aws.put_usage(40);
    }
    aws.put_record("bad", b"\x1f\x8b\x08\x00 cut".to_vec());
    // Small batches and a short checkpoint interval: many commits and checkpoints to land in.
    let ingest = |lake: &Path| {
        let mut c = aws.cmd(&["ingest", "--lake", lake.to_str().unwrap(), "--no-progress"]);
        c.args(["--batch-rows", "300", "--checkpoint-interval-ms", "20", "kinesis://usage"]);
        c
    };
    let clean = dir.path().join("clean");
    let took = timed(&mut ingest(&clean));
    let want = reader_view(&clean);
    assert_eq!(crate::aws_sources::lake_totals(&clean), aws.want());
    matrix(
        "ingest-kinesis",
        took,
        |t| dir.path().join(format!("lake-{t}")),
        ingest,
        |lake, what| {
            assert_settled(lake, what);
            assert_same(&reader_view(lake), &want, what);
            // Checkpointed to the end: another run reads nothing.
            let out = ok(ingest(lake).arg("--json"));
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(s["accounting"]["records_read"], 0, "{what}: {s}");
        },
    );
}

#[test]
fn compact_and_rollup_killed_and_rerun_equal_a_clean_run() {
    let m = Month::new();
    let small = m.path("small");
    ok(&mut ingest_cmd(&m, &small, "120"));
    let files = |lake: &Path| files_under(&lake.join("usage_events")).len();

    // compact: the clean run merges each partition into one file.
    let clean = m.path("compact-clean");
    copy_dir(&small, &clean);
    let compact = |lake: &Path| {
        let mut c = bin();
        c.args(["compact", "--lake"]).arg(lake);
        c
    };
    let took = timed(&mut compact(&clean));
    let want = reader_view(&clean);
    assert!(files(&clean) < files(&small));
    matrix(
        "compact",
        took,
        |t| {
            let lake = m.path(&format!("compact-{t}"));
            copy_dir(&small, &lake);
            lake
        },
        compact,
        |lake, what| {
            assert_settled(lake, what);
            assert_eq!(files(lake), files(&clean), "{what}: files after the rerun");
            assert!(
                reader_view(lake) == want,
                "{what}: the lake differs from a clean compaction's"
            );
        },
    );

    // rollup: every rollup deleted, then rebuilt from the data files.
    let bare = m.path("bare");
    copy_dir(&small, &bare);
    for t in ["usage_hourly", "tenant_hourly", "agent_invocations"] {
        std::fs::remove_dir_all(bare.join(t)).unwrap();
    }
    let rollup = |lake: &Path| {
        let mut c = bin();
        c.args(["rollup", "--lake"]).arg(lake);
        c
    };
    let clean = m.path("rollup-clean");
    copy_dir(&bare, &clean);
    let took = timed(&mut rollup(&clean));
    let want = reader_view(&clean);
    assert!(
        want == reader_view(&small),
        "a rebuild from the data files equals the ingest's rollups"
    );
    matrix(
        "rollup",
        took,
        |t| {
            let lake = m.path(&format!("rollup-{t}"));
            copy_dir(&bare, &lake);
            lake
        },
        rollup,
        |lake, what| {
            assert_settled(lake, what);
            assert_same(&reader_view(lake), &want, what);
        },
    );
}

#[test]
fn closing_a_period_killed_and_rerun_issues_what_a_clean_close_issues() {
    let m = Month::new();
    let lake = m.path("lake");
    ok(&mut ingest_cmd(&m, &lake, "400"));
    let close = |lake: &Path, out: &Path| {
        let mut c = bin();
        c.arg("invoice")
            .arg("--lake")
            .arg(lake)
            .args(["--period", "2026-10", "--close"])
            .arg("--prices")
            .arg(&m.prices)
            .arg("--out")
            .arg(out);
        c
    };
    let clean = m.path("close-clean");
    copy_dir(&lake, &clean);
    let took = timed(&mut close(&clean, &clean.join("out")));
    let docs = |lake: &Path| crate::periods::documents(&lake.join("out/invoices/2026-10"));
    let want = docs(&clean);
    assert!(want.keys().any(|k| k.starts_with("tenants/")), "{:?}", want.keys());
    matrix(
        "invoice-close",
        took,
        |t| {
            let target = m.path(&format!("close-{t}"));
            copy_dir(&lake, &target);
            target
        },
        |lake| close(lake, &lake.join("out")),
        |lake, what| {
            let got = docs(lake);
            assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{what}");
            for (k, v) in &want {
                assert!(got[k] == *v, "{what}: {k} differs from a clean close's");
            }
            // Closed once: a third run gives the recorded documents again.
            ok(&mut close(lake, &lake.join("again")));
            assert!(
                crate::periods::documents(&lake.join("again/invoices/2026-10")) == want,
                "{what}: a closed period's documents changed"
            );
        },
    );
}
