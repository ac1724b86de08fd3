//! agentmeter as an AWS Lambda function behind a Kinesis event source mapping.
//!
//! Each invocation gets a batch of one shard's records (CloudWatch Logs subscription payloads
//! or NDJSON). [`Handler::handle`] decodes every record with the same
//! [`Decoder`] as `agentmeter ingest` and routes it with the same
//! [`Router`]: events and spans written exactly once into the lake (in S3, or a directory),
//! bad records quarantined under `kinesis://STREAM/SHARD/SEQUENCE`. No lock and no file system:
//! invocations on every shard (and several per shard, with a `ParallelizationFactor` above 1)
//! write into one lake at once, each reading only the ids of the days its batch holds.
//!
//! Delivery: a corrupt record is quarantined, never reported as failed (it would be retried
//! forever). When the batch cannot be made durable (a write fails after the SDK's retries),
//! nothing of it is known to be durable, so the first record's sequence number is returned
//! in `batchItemFailures` and Lambda retries the batch from there; the lake's dedup by event
//! id makes a retry write only what is missing. Files are named by a digest of the ids they
//! hold, so a retried batch finds its own objects.
//!
//! Rollups: after a batch, the days it wrote are rolled up, at most once per
//! `AGENTMETER_ROLLUP_EVERY_SECONDS` per day and function instance (a day rolled up more
//! recently stays stale for a moment; every reader rebuilds a stale day before reading it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentmeter_aggregate::{Lake, WriterOptions};
use agentmeter_ingest::{DecodeConfig, Decoded, Decoder};
use agentmeter_pipeline::{LakeLocation, Router};
use agentmeter_schemas::{Accounting, SourceUri};
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use chrono::NaiveDate;

/// The object cache's default size: half of the 512 MiB `/tmp` a function has by default, the
/// rest left to quarantine spools.
pub const LAMBDA_CACHE_MAX_BYTES: u64 = 256 << 20;

/// The function's settings and its open lake; shared by the invocations of one instance.
#[derive(Debug)]
pub struct Handler {
    lake: Lake,
    decoder: Decoder,
    /// Least time between two rollups of one day by this instance; `None`: no rollups.
    rollup_every: Option<Duration>,
    /// When this instance last rolled each day up.
    rolled: Mutex<HashMap<NaiveDate, Instant>>,
}

/// Reads an optional numeric variable.
fn var<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v.parse::<T>().map(Some).map_err(|e| format!("{name}={v}: {e}")),
        Err(_) => Ok(None),
    }
}

impl Handler {
    /// A handler writing into `lake`.
    pub fn new(lake: Lake, decoder: Decoder, rollup_every: Option<Duration>) -> Self {
        Self { lake, decoder, rollup_every, rolled: Mutex::default() }
    }

    /// Settings from the environment, with the lake opened: `AGENTMETER_LAKE` (required:
    /// `s3://bucket/prefix`, or a directory), `AGENTMETER_TENANT_FIELD` (default `clinic_id`),
    /// `AGENTMETER_MAX_TOKENS_PER_CALL` (default 100000000), the record limits
    /// `AGENTMETER_MAX_JSON_DEPTH` (64), `AGENTMETER_MAX_ATTRIBUTES` (1024),
    /// `AGENTMETER_MAX_TENANTS_PER_BATCH` (10000) and `AGENTMETER_MAX_USERS_PER_BATCH` (100000),
    /// `AGENTMETER_ROLLUP_EVERY_SECONDS`
    /// (default 60; `off` for none), `AGENTMETER_CACHE_DIR` (default `/tmp/agentmeter`) and
    /// `AGENTMETER_CACHE_MAX_BYTES` (default 256 MiB). Call from a blocking thread: the lake's requests run on
    /// `handle`.
    ///
    /// # Errors
    ///
    /// A message naming the variable at fault, or why the lake cannot be opened.
    pub fn from_env(handle: &tokio::runtime::Handle) -> Result<Self, String> {
        let lake = std::env::var("AGENTMETER_LAKE").ok().filter(|v| !v.is_empty()).ok_or(
            "AGENTMETER_LAKE: required (s3://BUCKET/PREFIX, or a directory the function mounts)",
        )?;
        let loc = LakeLocation::parse(&lake).map_err(|e| format!("AGENTMETER_LAKE: {e}"))?;
        let field = std::env::var("AGENTMETER_TENANT_FIELD").unwrap_or_else(|_| "clinic_id".into());
        let mut cfg = DecodeConfig::new(&field, 4 << 20, 64 << 20)
            .map_err(|e| format!("AGENTMETER_TENANT_FIELD: {e}"))?;
        if let Some(max) = var::<i64>("AGENTMETER_MAX_TOKENS_PER_CALL")? {
            cfg = cfg
                .with_max_tokens_per_call(max)
                .map_err(|e| format!("AGENTMETER_MAX_TOKENS_PER_CALL: {e}"))?;
        }
        type Slot = fn(&mut agentmeter_ingest::RecordLimits) -> &mut usize;
        let vars: [(&str, Slot); 4] = [
            ("AGENTMETER_MAX_JSON_DEPTH", |l| &mut l.json_depth),
            ("AGENTMETER_MAX_ATTRIBUTES", |l| &mut l.attributes),
            ("AGENTMETER_MAX_TENANTS_PER_BATCH", |l| &mut l.tenants_per_batch),
            ("AGENTMETER_MAX_USERS_PER_BATCH", |l| &mut l.users_per_batch),
        ];
        for (name, slot) in vars {
            if let Some(v) = var::<usize>(name)? {
                let mut limits = cfg.limits;
                *slot(&mut limits) = v;
                cfg = cfg.with_limits(limits).map_err(|e| format!("{name}={v}: {e}"))?;
            }
        }
        let rollup_every = match std::env::var("AGENTMETER_ROLLUP_EVERY_SECONDS").as_deref() {
            Ok("off") => None,
            Ok(_) => var::<u64>("AGENTMETER_ROLLUP_EVERY_SECONDS")?.map(Duration::from_secs),
            Err(_) => Some(Duration::from_secs(60)),
        };
        let sdk = match loc {
            LakeLocation::S3 { .. } => Some(
                handle
                    .block_on(agentmeter_pipeline::env::sdk_config())
                    .map_err(|e| e.to_string())?,
            ),
            LakeLocation::Dir(_) => None,
        };
        // /tmp is the function's only writable disk (512 MiB unless configured larger).
        let cache = agentmeter_pipeline::env::cache_from_env(
            Some(std::path::PathBuf::from("/tmp/agentmeter")),
            LAMBDA_CACHE_MAX_BYTES,
        )
        .map_err(|e| e.to_string())?;
        let lake = agentmeter_pipeline::env::open_lake_on(handle, sdk.as_ref(), &loc, true, cache)
            .map_err(|e| e.to_string())?;
        Ok(Self::new(lake, Decoder::new(cfg), rollup_every))
    }

    /// The lake written to.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Writes the batch; reports its first record as failed when it could not be made durable.
    pub fn handle(&self, event: &KinesisEvent) -> KinesisEventResponse {
        let mut response = KinesisEventResponse::default();
        let Some(first) = event.records.first() else { return response };
        match self.write(&event.records) {
            Ok(acc) => tracing::info!(
                records = acc.records_read,
                written = acc.events_written,
                spans = acc.spans_written,
                duplicates = acc.duplicates + acc.span_duplicates,
                quarantined = acc.quarantined_total(),
                "Batch written."
            ),
            Err(e) => {
                tracing::error!(error = %e, first = %first.kinesis.sequence_number, "Batch not written; Lambda retries it.");
                let mut failure = KinesisBatchItemFailure::default();
                failure.item_identifier = Some(first.kinesis.sequence_number.clone());
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Decodes and writes every record; returns where they went.
    ///
    /// # Errors
    ///
    /// The lake cannot be written: nothing of the batch is known to be durable.
    pub fn write(&self, records: &[KinesisEventRecord]) -> agentmeter_pipeline::Result<Accounting> {
        let mut router = Router::new(&self.lake, WriterOptions::default());
        for r in records {
            let mut out = Decoded::default();
            self.decoder.stream_record(&r.kinesis.data.0, &source(r), &mut out);
            for o in out.outcomes {
                router.route(o)?;
            }
        }
        router.commit()?;
        let days = router.take_touched()?;
        let done = router.finish_without_rollups()?;
        // The batch is durable now: rollups never fail it (retrying would only redo what is
        // written); a day left stale is rebuilt by whoever reads it.
        self.roll_up(days);
        Ok(done.acc)
    }

    fn roll_up(&self, days: std::collections::BTreeSet<NaiveDate>) {
        let Some(every) = self.rollup_every else { return };
        let mut due = std::collections::BTreeSet::new();
        {
            let mut rolled = self.rolled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for d in days {
                if rolled.get(&d).is_none_or(|t| t.elapsed() >= every) {
                    rolled.insert(d, Instant::now());
                    due.insert(d);
                }
            }
        }
        for (dt, e) in self.lake.rebuild_rollups(&due).failed {
            tracing::error!(%dt, error = %e, "Rollup failed; the day stays stale until rebuilt.");
        }
    }
}

/// `kinesis://STREAM/SHARD/SEQUENCE` of a record, from its event source ARN and event id.
pub fn source(r: &KinesisEventRecord) -> SourceUri {
    let stream = r
        .event_source_arn
        .as_deref()
        .and_then(|a| a.rsplit_once(":stream/").map(|(_, s)| s))
        .unwrap_or("unknown-stream");
    let shard = r
        .event_id
        .as_deref()
        .and_then(|id| id.split_once(':').map(|(s, _)| s))
        .unwrap_or("unknown-shard");
    SourceUri::new(format!("kinesis://{stream}/{shard}/{}", r.kinesis.sequence_number))
}
