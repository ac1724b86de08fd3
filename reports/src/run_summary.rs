//! The end-of-run summary of an ingest.

use std::fmt::Write as _;

use agentmeter_schemas::{Accounting, Reason, SkipKind};
use serde::{Deserialize, Serialize};

/// Everything an ingest run reports, as printed and as written with `--summary-json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    /// The lake written to.
    pub lake: String,
    /// Files read.
    pub sources: u64,
    /// Bytes read (compressed size for gzip files).
    pub bytes_read: u64,
    /// Where every record went.
    pub accounting: Accounting,
    /// `usage_events` files written.
    pub files_written: u64,
    /// `usage_hourly` partitions rebuilt.
    pub partitions_rolled_up: u64,
    /// Quarantine files written or replaced.
    pub quarantine_files_written: u64,
    /// Quarantine files removed because their source no longer has refused records.
    pub quarantine_files_removed: u64,
    /// True when every record read is accounted for exactly once.
    pub balanced: bool,
    /// Partitions whose rollup could not be rebuilt, with why: their events are in the lake,
    /// and commands that read rollups rebuild them or refuse, naming them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollups_failed: Vec<RollupFailure>,
}

/// A partition whose rollup failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupFailure {
    /// The partition's day.
    pub dt: chrono::NaiveDate,
    /// Why.
    pub error: String,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Renders the summary as aligned text lines.
pub fn render(s: &IngestSummary) -> String {
    let a = &s.accounting;
    let mut out = String::new();
    let _ = writeln!(out, "ingest into {}", s.lake);
    let row = |out: &mut String, label: &str, n: u64, extra: String| {
        let _ = writeln!(out, "  {label:<22}{n:>12}{extra}");
    };
    row(&mut out, "sources read", s.sources, format!("  ({} bytes)", s.bytes_read));
    row(&mut out, "records read", a.records_read, String::new());
    row(
        &mut out,
        "events written",
        a.events_written,
        format!(
            "  ({}, {})",
            plural(s.files_written, "file", "files"),
            plural(s.partitions_rolled_up, "partition rolled up", "partitions rolled up")
        ),
    );
    let conflicting = if a.conflicting_duplicates > 0 {
        format!("  ({} with different content: first copy kept)", a.conflicting_duplicates)
    } else {
        String::new()
    };
    // Calls that reported no usage are stored, and named, so that no one bills them as free.
    let unknown = |out: &mut String, n: u64| {
        if n > 0 {
            let _ = writeln!(
                out,
                "    {:<20}{n:>12}  (no usage reported: never billed as free)",
                "usage_unknown"
            );
        }
    };
    unknown(&mut out, a.usage_unknown);
    row(&mut out, "duplicates", a.duplicates, conflicting);
    if a.spans_written + a.span_duplicates > 0 {
        row(&mut out, "spans written", a.spans_written, String::new());
        unknown(&mut out, a.span_usage_unknown);
        row(&mut out, "span duplicates", a.span_duplicates, String::new());
    }
    row(&mut out, "skipped", a.skipped_total(), String::new());
    for k in SkipKind::ALL {
        if let Some(n) = a.skipped.get(&k).filter(|n| **n > 0) {
            let _ = writeln!(out, "    {:<20}{n:>12}", k.code());
        }
    }
    row(&mut out, "quarantined", a.quarantined_total(), String::new());
    for r in Reason::ALL {
        if let Some(n) = a.quarantined.get(&r).filter(|n| **n > 0) {
            let _ = writeln!(out, "    {:<20}{n:>12}", r.code());
        }
    }
    if a.quarantined_total() > 0 {
        let _ = writeln!(
            out,
            "  quarantine: {}/_quarantine/ ({} written, {} cleared); fix and ingest it again",
            s.lake,
            plural(s.quarantine_files_written, "file", "files"),
            s.quarantine_files_removed
        );
    }
    for f in &s.rollups_failed {
        let _ = writeln!(out, "  rollup FAILED for dt={}: {}", f.dt, f.error);
    }
    let _ = writeln!(
        out,
        "  check: read = written + duplicates + skipped + quarantined: {}",
        if s.balanced { "yes" } else { "NO (please report this)" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_nonzero_bucket() {
        let mut a = Accounting {
            records_read: 10,
            events_written: 5,
            duplicates: 2,
            conflicting_duplicates: 1,
            usage_unknown: 1,
            ..Default::default()
        };
        a.skipped.insert(SkipKind::ControlMessage, 1);
        a.quarantined.insert(Reason::InconsistentTotal, 2);
        let s = IngestSummary {
            lake: "/l".into(),
            sources: 1,
            bytes_read: 99,
            balanced: a.balances(),
            accounting: a,
            files_written: 1,
            partitions_rolled_up: 1,
            quarantine_files_written: 1,
            quarantine_files_removed: 0,
            rollups_failed: vec![RollupFailure {
                dt: chrono::NaiveDate::from_ymd_opt(2026, 10, 3).unwrap(),
                error: "disk full".into(),
            }],
        };
        let text = render(&s);
        let expected = "\
ingest into /l
  sources read                     1  (99 bytes)
  records read                    10
  events written                   5  (1 file, 1 partition rolled up)
    usage_unknown                  1  (no usage reported: never billed as free)
  duplicates                       2  (1 with different content: first copy kept)
  skipped                          1
    control_message                1
  quarantined                      2
    inconsistent_total             2
  quarantine: /l/_quarantine/ (1 file written, 0 cleared); fix and ingest it again
  rollup FAILED for dt=2026-10-03: disk full
  check: read = written + duplicates + skipped + quarantined: yes
";
        assert_eq!(text, expected);
    }
}
