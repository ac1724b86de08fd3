//! Where things are in a lake directory. Every path is built here from constants, dates and
//! hex digests, never from an input string, so nothing can be written outside the lake.
//!
//! ```text
//! LAKE/
//!   usage_events/dt=YYYY-MM-DD/part-<32 hex>.parquet   one file per committed batch
//!   usage_hourly/dt=YYYY-MM-DD/part-00000.parquet      rewritten whole on each change; its
//!                                                     footer names the data files it covers
//!   _quarantine/<name>-<16 hex>.jsonl                 one file per source
//!   _state/lake.json                                  format marker and version
//!   _state/lock                                       held by the one writer
//!   _state/checkpoints/kinesis-<name>-<16 hex>.json   per-shard checkpoints of a stream
//!   _state/checkpoints/s3-<name>-<16 hex>.json        the objects of an S3 source done
//!   _state/download/                                  S3 objects being read (temporary)
//!   _wal/otlp/<20 digits>.ndjson                      the OTLP receiver's write-ahead log
//! ```

use std::path::{Path, PathBuf};

use agentmeter_schemas::SourceUri;
use agentmeter_schemas::tables::{PARTITION_COLUMN, TableDef};
use chrono::NaiveDate;

/// Directory of the quarantine.
pub const QUARANTINE_DIR: &str = "_quarantine";
/// Directory of the lake's own state.
pub const STATE_DIR: &str = "_state";
/// Directory of the write-ahead logs.
pub const WAL_DIR: &str = "_wal";

/// The paths of one lake.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout of the lake at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The lake's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A table's directory.
    pub fn table(&self, table: &'static str) -> PathBuf {
        self.root.join(table)
    }

    /// A partition's directory: `TABLE/dt=YYYY-MM-DD`.
    pub fn partition(&self, table: &'static str, dt: NaiveDate) -> PathBuf {
        self.table(table).join(format!("{PARTITION_COLUMN}={}", dt.format("%Y-%m-%d")))
    }

    /// A partition of a table with its own partitioning (`invoice_lines/period=YYYY-MM`).
    pub fn partition_of(&self, table: &TableDef, at: NaiveDate) -> PathBuf {
        let p = table.partitioning;
        self.table(table.name).join(format!("{}={}", p.column, at.format(p.chrono_format)))
    }

    /// The quarantine directory.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join(QUARANTINE_DIR)
    }

    /// The quarantine file of a source: a readable hint from the source's file name and a
    /// digest of its full URI.
    pub fn quarantine_file(&self, source: &SourceUri) -> PathBuf {
        self.quarantine_dir().join(quarantine_file_name(source))
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// The checkpoint file of Kinesis stream `stream` (a name or an ARN, never a path: the
    /// file is named by a digest).
    pub fn kinesis_checkpoint(&self, stream: &str) -> PathBuf {
        let uri = SourceUri::new(format!("kinesis://{stream}"));
        let name = quarantine_file_name(&uri);
        let name = name.strip_suffix(".jsonl").unwrap_or(&name);
        self.state_dir().join("checkpoints").join(format!("kinesis-{name}.json"))
    }

    /// The file listing the objects done of S3 source `source` (`s3://bucket/prefix`).
    pub fn s3_checkpoint(&self, source: &str) -> PathBuf {
        let uri = SourceUri::new(source.trim_end_matches('/'));
        let name = quarantine_file_name(&uri);
        let name = name.strip_suffix(".jsonl").unwrap_or(&name);
        self.state_dir().join("checkpoints").join(format!("s3-{name}.json"))
    }

    /// Where S3 objects are downloaded to be read (emptied by every run).
    pub fn download_dir(&self) -> PathBuf {
        self.state_dir().join("download")
    }

    /// The OTLP receiver's write-ahead log.
    pub fn otlp_wal_dir(&self) -> PathBuf {
        self.root.join(WAL_DIR).join("otlp")
    }
}

/// `<hint>-<16 hex>.jsonl` where the hint keeps only `[A-Za-z0-9._-]` of the source's last
/// path segment (at most 40 characters) and the hex is a digest of the whole URI.
pub fn quarantine_file_name(source: &SourceUri) -> String {
    let last = source.as_str().rsplit('/').next().unwrap_or_default();
    let hint: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .take(40)
        .collect();
    let hint = hint.trim_start_matches(['.', '_', '-']);
    let hint = if hint.is_empty() { "source" } else { hint };
    let digest = agentmeter_schemas::content_digest_hex(source.as_str().as_bytes());
    format!("{hint}-{}.jsonl", &digest[..16])
}

/// The name of a table that compaction may rewrite, as a static string.
pub fn known_table(name: &str) -> Option<&'static str> {
    [agentmeter_schemas::tables::USAGE_EVENTS, agentmeter_schemas::tables::AGENT_SPANS]
        .into_iter()
        .find(|t| *t == name)
}

/// Parses a partition directory name `dt=YYYY-MM-DD`.
pub fn parse_partition(name: &str) -> Option<NaiveDate> {
    let date = name.strip_prefix(PARTITION_COLUMN)?.strip_prefix('=')?;
    NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_names_are_safe_and_distinct() {
        let a = quarantine_file_name(&SourceUri::new("file:///data/in/usage-2026-10-01.ndjson"));
        assert!(a.starts_with("usage-2026-10-01.ndjson-") && a.ends_with(".jsonl"), "{a}");
        let b = quarantine_file_name(&SourceUri::new("file:///other/usage-2026-10-01.ndjson"));
        assert_ne!(a, b);
        for hostile in ["file:///x/..", "file:///x/../../etc/passwd", "s3://b/%2e%2e", "file:///"] {
            let n = quarantine_file_name(&SourceUri::new(hostile));
            assert!(!n.contains('/') && !n.starts_with('.') && !n.contains(".."), "{n}");
        }
    }

    #[test]
    fn partitions() {
        let l = Layout::new("/lake");
        let dt = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        assert_eq!(
            l.partition("usage_events", dt),
            PathBuf::from("/lake/usage_events/dt=2026-10-01")
        );
        assert_eq!(parse_partition("dt=2026-10-01"), Some(dt));
        assert_eq!(parse_partition("dt=2026-13-01"), None);
        assert_eq!(parse_partition("x=2026-10-01"), None);
    }
}
