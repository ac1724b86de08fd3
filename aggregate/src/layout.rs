//! Where things are in a lake: every key is built here from constants, dates and hex digests,
//! never from an input string, so nothing can be written outside the lake or under a name a
//! tenant chose.
//!
//! ```text
//! LAKE/  (a directory, or s3://bucket/prefix)
//!   usage_events/dt=YYYY-MM-DD/part-<32 hex>.parquet   one file per committed batch, created once
//!   agent_spans/dt=YYYY-MM-DD/part-<32 hex>.parquet    the same for spans
//!   usage_hourly/dt=YYYY-MM-DD/part-00000.parquet      replaced whole on each rollup; its footer
//!   tenant_hourly/...  agent_invocations/...          names the data files it covers
//!   _quarantine/<name>-<16 hex>.jsonl                 refused records, one file per source
//!   _quarantine/.raw/<32 hex>.bin                     the bytes of large refused records
//!   _state/lake.json                                  format marker and version
//!   _state/flags.json                                 raised flags and pending alerts
//!   _state/inference_profiles.json                    application inference profiles seen
//!   _state/checkpoints/kinesis/<16 hex>/<shard>.json  one checkpoint per Kinesis shard
//!   _state/checkpoints/s3/<16 hex>/<32 hex>-<etag>.json  one record per S3 object ingested
//!   _state/rollups_owed/<16 hex>.json                 days a checkpointed source has not rolled up
//!   _state/billing/periods/YYYY-MM.json               a closed billing period's record
//!   _state/billing/blobs/<32 hex>                     issued documents and priced inputs
//! ```

use agentmeter_schemas::tables::{PARTITION_COLUMN, TableDef};
use agentmeter_schemas::{RAW_DIR, SourceUri};
use chrono::NaiveDate;

use crate::record::Identity;

/// Directory of the quarantine.
pub const QUARANTINE_DIR: &str = "_quarantine";
/// Directory of the lake's own state.
pub const STATE_DIR: &str = "_state";
/// The lake's format marker.
pub const MARKER: &str = "_state/lake.json";
/// The flag and alert state.
pub const FLAG_STATE: &str = "_state/flags.json";
/// The application inference profiles every invoice run was given, merged (a
/// `list-inference-profiles` page): usage of a profile deleted since still prices.
pub const INFERENCE_PROFILES: &str = "_state/inference_profiles.json";
/// The records of billing periods ever closed.
pub const BILLING_PERIODS: &str = "_state/billing/periods/";
/// The push ledgers: what each billing system was sent, per day of usage.
pub const PUSH_LEDGERS: &str = "_state/push/";

/// The push ledger of `system` (a fixed lowercase name) for the usage of `day`.
pub fn push_ledger(system: &str, day: NaiveDate) -> String {
    format!("{PUSH_LEDGERS}{system}/{day}.json")
}

/// The record of the billing period (a UTC month) starting on `start`.
pub fn billing_period(start: NaiveDate) -> String {
    format!("{BILLING_PERIODS}{}.json", start.format("%Y-%m"))
}

/// The month a billing period record's key names, or `None` for another key.
pub fn parse_billing_period(key: &str) -> Option<NaiveDate> {
    let label = key.strip_prefix(BILLING_PERIODS)?.strip_suffix(".json")?;
    let d = NaiveDate::parse_from_str(&format!("{label}-01"), "%Y-%m-%d").ok()?;
    (label.len() == 7).then_some(d)
}

/// A billing blob, by its content digest (hex; anything else is refused by the reader).
pub fn billing_blob(hex: &str) -> String {
    format!("_state/billing/blobs/{hex}")
}

/// The one file of a rollup or derived partition: a fixed name, so a rebuild replaces it.
pub const PARTITION_FILE: &str = "part-00000.parquet";

/// `TABLE/`: every partition of a table.
pub fn table(table: &str) -> String {
    format!("{table}/")
}

/// `TABLE/dt=YYYY-MM-DD/`: one partition.
pub fn partition(table: &str, dt: NaiveDate) -> String {
    format!("{table}/{PARTITION_COLUMN}={}/", dt.format("%Y-%m-%d"))
}

/// `TABLE/dt=YYYY-MM-DD/part-00000.parquet`: the one file of a rollup partition.
pub fn partition_file(table: &str, dt: NaiveDate) -> String {
    format!("{}{PARTITION_FILE}", partition(table, dt))
}

/// The one file of a partition of a table with its own partitioning
/// (`invoice_lines/period=YYYY-MM/part-00000.parquet`).
pub fn partition_file_of(table: &TableDef, at: NaiveDate) -> String {
    let p = table.partitioning;
    format!("{}/{}={}/{PARTITION_FILE}", table.name, p.column, at.format(p.chrono_format))
}

/// A data file: `TABLE/dt=YYYY-MM-DD/part-<hex>.parquet`.
pub fn data_file(table: &str, dt: NaiveDate, hex: &str) -> String {
    format!("{}part-{hex}.parquet", partition(table, dt))
}

/// The `<hex>` of a data file holding the records of `ids`, in order: the first 16 bytes of
/// the BLAKE3 digest of each id followed by a newline. The same ids always make the same name,
/// so a retried or repeated write finds its file taken rather than writing a second one.
pub fn data_file_hex<'a>(ids: impl IntoIterator<Item = Identity<'a>>) -> String {
    let mut name = DataFileName::default();
    for id in ids {
        name.push(id);
    }
    name.hex()
}

/// [`data_file_hex`] fed an id at a time, so that a writer names a file in the pass that
/// encodes it.
pub struct DataFileName {
    digest: blake3::Hasher,
    buf: Vec<u8>,
}

impl Default for DataFileName {
    fn default() -> Self {
        Self { digest: blake3::Hasher::new(), buf: Vec::with_capacity(Self::FEED + 256) }
    }
}

impl DataFileName {
    // Fed to the hasher 64 KiB at a time: BLAKE3 hashes whole chunks in parallel lanes, while
    // an update per id (tens of bytes) copies each into its chunk buffer one at a time.
    const FEED: usize = 64 * 1024;

    /// The next id of the file.
    pub fn push(&mut self, id: Identity<'_>) {
        for part in id.parts() {
            self.buf.extend_from_slice(part);
        }
        self.buf.push(b'\n');
        if self.buf.len() >= Self::FEED {
            self.digest.update(&self.buf);
            self.buf.clear();
        }
    }

    /// The `<hex>` of the ids pushed.
    pub fn hex(mut self) -> String {
        self.digest.update(&self.buf);
        self.digest.finalize().to_hex()[..32].to_owned()
    }
}

/// `_quarantine/`.
pub fn quarantine() -> String {
    format!("{QUARANTINE_DIR}/")
}

/// The quarantine file of a source: a readable hint from the source's file name and a
/// digest of its full URI.
pub fn quarantine_file(source: &SourceUri) -> String {
    format!("{QUARANTINE_DIR}/{}", quarantine_file_name(source))
}

/// The kept bytes of a large quarantine entry (`name` is a [`raw_ref`](agentmeter_schemas::raw_ref)).
pub fn quarantine_raw(name: &str) -> String {
    format!("{QUARANTINE_DIR}/{RAW_DIR}/{name}.bin")
}

/// `_state/checkpoints/kinesis/<16 hex>/`: the shard checkpoints of Kinesis stream `stream`
/// (a name or an ARN, never a path: the directory is named by a digest).
pub fn kinesis_checkpoints(stream: &str) -> String {
    let digest = agentmeter_schemas::content_digest_hex(format!("kinesis://{stream}").as_bytes());
    format!("{STATE_DIR}/checkpoints/kinesis/{}/", &digest[..16])
}

/// The checkpoint of one shard (shard ids are `shardId-<digits>`; anything else is named by a
/// digest).
pub fn kinesis_checkpoint(stream: &str, shard: &str) -> String {
    let safe = shard.len() <= 64
        && !shard.is_empty()
        && shard.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let name = if safe {
        shard.to_owned()
    } else {
        agentmeter_schemas::content_digest_hex(shard.as_bytes())
    };
    format!("{}{name}.json", kinesis_checkpoints(stream))
}

/// `_state/checkpoints/s3/<16 hex>/`: the objects ingested of S3 source `source`.
pub fn s3_objects_done(source: &str) -> String {
    let digest = agentmeter_schemas::content_digest_hex(source.trim_end_matches('/').as_bytes());
    format!("{STATE_DIR}/checkpoints/s3/{}/", &digest[..16])
}

/// `_state/rollups_owed/<16 hex>.json`: the days checkpointed source `source` (its URI) committed
/// data for and has not rolled up yet.
pub fn rollups_owed(source: &str) -> String {
    let digest = agentmeter_schemas::content_digest_hex(source.trim_end_matches('/').as_bytes());
    format!("{STATE_DIR}/rollups_owed/{}.json", &digest[..16])
}

/// The name of the record that object `key` at version `etag` is ingested: a digest of the
/// key and the ETag (hex, or hex-N for a multipart upload; anything else is dropped).
pub fn s3_object_done_name(key: &str, etag: &str) -> String {
    let etag: String =
        etag.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    format!("{}-{etag}", agentmeter_schemas::content_digest_hex(key.as_bytes()))
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
    fn a_data_file_name_is_the_digest_of_its_ids_however_they_are_fed() {
        // What earlier versions computed (an update per id): names they wrote must be found
        // again, across the 64 KiB feeding boundary too.
        let per_id = |ids: &[String]| {
            let mut d = blake3::Hasher::new();
            for id in ids {
                d.update(id.as_bytes());
                d.update(b"\n");
            }
            d.finalize().to_hex()[..32].to_owned()
        };
        for n in [0, 1, 2, 5_000, 20_000] {
            let ids: Vec<String> = (0..n).map(|i| format!("event-{i:08}")).collect();
            let hex = data_file_hex(ids.iter().map(|s| Identity::of(s)));
            assert_eq!(hex, per_id(&ids), "{n} ids");
        }
        let two = ["evt-1".to_owned(), "evt-2".to_owned()];
        let hex = data_file_hex(two.iter().map(|s| Identity::of(s)));
        assert_eq!(hex, "9699db4935ba722610abf465ec49f0ed");
        assert_eq!(hex, per_id(&two));
        // A span's identity, fed as its trace and span ids, names its file as the joined
        // `trace:span` did.
        let (trace, span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        let joined = [format!("{trace}:{span}")];
        assert_eq!(data_file_hex([Identity::joined(trace, span)]), per_id(&joined));
    }

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
    fn keys() {
        let dt = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        assert_eq!(partition("usage_events", dt), "usage_events/dt=2026-10-01/");
        assert_eq!(
            partition_file("usage_hourly", dt),
            "usage_hourly/dt=2026-10-01/part-00000.parquet"
        );
        assert_eq!(parse_partition("dt=2026-10-01"), Some(dt));
        assert_eq!(parse_partition("dt=2026-13-01"), None);
        assert_eq!(parse_partition("x=2026-10-01"), None);
        let shard = kinesis_checkpoint("usage/../../etc", "shardId-000000000001");
        assert!(
            shard.starts_with("_state/checkpoints/kinesis/")
                && shard.ends_with("/shardId-000000000001.json")
        );
        assert!(!shard.contains(".."));
        let odd = kinesis_checkpoint("usage", "../x");
        assert!(!odd.contains("..") && odd.matches('/').count() == 4, "{odd}");
        let done = s3_object_done_name("p/../../x.gz", "\"9b2c/../x\"");
        assert!(!done.contains('/') && !done.contains(".."), "{done}");
    }
}
