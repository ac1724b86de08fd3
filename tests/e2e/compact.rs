//! `agentmeter compact`: many small files per partition merged, every row kept (DuckDB
//! compares the tables before and after, both ways), rollups rebuilt with the same rows, dedup
//! still works.

use std::path::Path;

use crate::util::*;

fn files(lake: &Path, table: &str) -> usize {
    let mut n = 0;
    for p in std::fs::read_dir(lake.join(table)).unwrap() {
        n += std::fs::read_dir(p.unwrap().path()).unwrap().count();
    }
    n
}

#[test]
fn small_files_are_merged_and_every_row_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        &dir.path().join("gen"),
        &["--tenants", "8", "--events", "6000", "--seed", "3", "--noisy", "2"],
    );
    let lake = dir.path().join("lake");
    // Small batches: many files per day, as a followed stream makes.
    ingest(&lake, &[&dir.path().join("gen/input")], &["--batch-rows", "150"]);
    let before = dir.path().join("before");
    copy_dir(&lake, &before);
    let (events_before, spans_before) = (files(&lake, "usage_events"), files(&lake, "agent_spans"));
    let days = std::fs::read_dir(lake.join("usage_events")).unwrap().count();
    assert!(events_before > 2 * days, "{events_before} files over {days} days");

    // `--to` is exclusive, as everywhere: Oct 1 and 2.
    let out = ok(bin()
        .args(["compact", "--from", "2026-10-01", "--to", "2026-10-03", "--lake"])
        .arg(&lake));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("usage_events: 2 partitions compacted"), "{text}");
    let refused = bin()
        .args(["compact", "--from", "2026-10-03", "--to", "2026-10-03", "--lake"])
        .arg(&lake)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("--to 2026-10-03 is not after --from 2026-10-03")
    );

    let out = ok(bin().args(["compact", "--lake"]).arg(&lake));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("usage_events:") && text.contains("agent_spans:"), "{text}");
    assert_eq!(files(&lake, "usage_events"), days, "one file per day");
    assert!(files(&lake, "agent_spans") < spans_before);

    for t in ["usage_events", "agent_spans", "usage_hourly"] {
        let (a, b) = (table(&before, t), table(&lake, t));
        assert_eq!(
            duckdb_int(&format!(
                "SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})"
            )),
            0,
            "{t}"
        );
        assert_eq!(
            duckdb_int(&format!(
                "SELECT count(*) FROM (SELECT * FROM {b} EXCEPT ALL SELECT * FROM {a})"
            )),
            0,
            "{t}"
        );
    }
    // Still sorted by tenant then time within each file.
    let unsorted = format!(
        "SELECT count(*) FROM (SELECT tenant_id, event_time AS ts, lag(tenant_id) OVER w AS pt, lag(event_time) OVER w AS pts \
         FROM read_parquet('{}/usage_events/*/*.parquet', filename = true, file_row_number = true) \
         WINDOW w AS (PARTITION BY filename ORDER BY file_row_number)) WHERE pt > tenant_id OR (pt = tenant_id AND pts > ts)",
        lake.display()
    );
    assert_eq!(duckdb_int(&unsorted), 0);
    // Re-ingesting the same input after compaction writes nothing.
    let s = ingest(&lake, &[&dir.path().join("gen/input")], &[]);
    assert_eq!(s["accounting"]["events_written"], 0);
    assert_eq!(s["accounting"]["spans_written"], 0);
    // A second compaction has nothing to merge in usage_events.
    let out = ok(bin().args(["compact", "--lake"]).arg(&lake));
    assert!(String::from_utf8_lossy(&out.stdout).contains("usage_events: 0 partitions"));
}
