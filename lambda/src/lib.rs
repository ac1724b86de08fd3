//! agentmeter as an AWS Lambda function behind a Kinesis event source mapping.
//!
//! Each invocation gets a batch of one shard's records (CloudWatch Logs subscription payloads
//! or NDJSON). [`Handler::handle`] decodes every record with the same
//! [`Decoder`](agentmeter_ingest::Decoder) as `agentmeter ingest`, writes the events and spans
//! into the lake (a file system the function mounts, such as EFS) with the same exactly-once
//! writer, quarantines bad records under `kinesis://STREAM/SHARD/SEQUENCE`, and rebuilds the
//! rollups of the days written.
//!
//! Delivery: a corrupt record is quarantined, never reported as failed (it would be retried
//! forever). When the batch cannot be made durable (the lake is busy past the lock wait, or a
//! write fails), nothing of it is known to be durable, so the first record's sequence number
//! is returned in `batchItemFailures` and Lambda retries the batch from there; the lake's dedup
//! by event id makes a retry write only what is missing. Files are named by a digest of the
//! ids they hold, so a retried batch rewrites the same names.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentmeter_aggregate::{EventWriter, Lake, QuarantineWriter, WriterOptions};
use agentmeter_ingest::{DecodeConfig, Decoded, Decoder, Outcome};
use agentmeter_schemas::{Accounting, AgentSpan, SourceUri};
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};

/// The function's settings, from its environment.
#[derive(Debug, Clone)]
pub struct Handler {
    /// The lake directory (on a mounted file system).
    pub lake: PathBuf,
    pub decoder: Decoder,
    /// How long to wait for another invocation to release the lake before failing the batch.
    pub lock_wait: Duration,
}

/// Why a batch was not made durable.
#[derive(Debug)]
pub enum BatchError {
    /// Another writer held the lake past the lock wait.
    Busy,
    /// The lake could not be written.
    Lake(agentmeter_aggregate::Error),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Busy => f.write_str("the lake is in use by another writer"),
            BatchError::Lake(e) => write!(f, "{e}"),
        }
    }
}

impl From<agentmeter_aggregate::Error> for BatchError {
    fn from(e: agentmeter_aggregate::Error) -> Self {
        BatchError::Lake(e)
    }
}

impl Handler {
    /// Settings from `AGENTMETER_LAKE` (required), `AGENTMETER_TENANT_FIELD` (default
    /// `clinic_id`), `AGENTMETER_MAX_TOKENS_PER_CALL` (default 100000000) and
    /// `AGENTMETER_LOCK_WAIT_MS` (default 10000).
    ///
    /// # Errors
    ///
    /// A message naming the variable at fault.
    pub fn from_env() -> Result<Self, String> {
        let lake = std::env::var_os("AGENTMETER_LAKE").filter(|v| !v.is_empty()).ok_or(
            "AGENTMETER_LAKE: required (the lake directory on the function's file system)",
        )?;
        let field = std::env::var("AGENTMETER_TENANT_FIELD").unwrap_or_else(|_| "clinic_id".into());
        let mut cfg = DecodeConfig::new(&field, 4 << 20, 64 << 20)
            .map_err(|e| format!("AGENTMETER_TENANT_FIELD: {e}"))?;
        if let Ok(v) = std::env::var("AGENTMETER_MAX_TOKENS_PER_CALL") {
            let max =
                v.parse::<i64>().map_err(|e| format!("AGENTMETER_MAX_TOKENS_PER_CALL={v}: {e}"))?;
            cfg = cfg
                .with_max_tokens_per_call(max)
                .map_err(|e| format!("AGENTMETER_MAX_TOKENS_PER_CALL={v}: {e}"))?;
        }
        let wait = match std::env::var("AGENTMETER_LOCK_WAIT_MS") {
            Ok(v) => v.parse::<u64>().map_err(|e| format!("AGENTMETER_LOCK_WAIT_MS={v}: {e}"))?,
            Err(_) => 10_000,
        };
        Ok(Self {
            lake: PathBuf::from(lake),
            decoder: Decoder::new(cfg),
            lock_wait: Duration::from_millis(wait),
        })
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

    fn open(&self) -> Result<Lake, BatchError> {
        let deadline = Instant::now() + self.lock_wait;
        loop {
            match Lake::open(&self.lake) {
                Ok(lake) => return Ok(lake),
                Err(agentmeter_aggregate::Error::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(agentmeter_aggregate::Error::Locked { .. }) => return Err(BatchError::Busy),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Decodes and writes every record; returns where they went.
    ///
    /// # Errors
    ///
    /// The lake is busy or cannot be written: nothing of the batch is known to be durable.
    pub fn write(&self, records: &[KinesisEventRecord]) -> Result<Accounting, BatchError> {
        let lake = self.open()?;
        let opts = WriterOptions::default();
        let mut events: EventWriter<'_> = EventWriter::new(&lake, opts);
        let mut spans: EventWriter<'_, AgentSpan> = EventWriter::new(&lake, opts);
        let mut quarantine = QuarantineWriter::new(lake.layout().clone());
        let mut acc = Accounting::default();
        for r in records {
            let mut out = Decoded::default();
            self.decoder.stream_record(&r.kinesis.data.0, &source(r), &mut out);
            for o in out.outcomes {
                acc.records_read += 1;
                match o {
                    Outcome::Event(e) => events.push(e)?,
                    Outcome::Span(s) => spans.push(*s)?,
                    Outcome::Skip(k) => *acc.skipped.entry(k).or_default() += 1,
                    Outcome::Reject(q) => {
                        *acc.quarantined.entry(q.reason).or_default() += 1;
                        quarantine.write(&q)?;
                    }
                }
            }
        }
        let (e, mut days) = events.finish_without_rollups()?;
        let (s, span_days) = spans.finish_without_rollups()?;
        days.extend(span_days);
        // The batch is durable once its data files are: a rollup that fails is logged and
        // left stale for the readers (failing the batch would only retry what is written).
        for (dt, e) in lake.rebuild_rollups(&days).failed {
            tracing::error!(%dt, error = %e, "Rollup failed; the day stays stale until rebuilt.");
        }
        quarantine.finish()?;
        acc.events_written = e.written;
        acc.duplicates = e.duplicates;
        acc.conflicting_duplicates = e.conflicting + s.conflicting;
        acc.spans_written = s.written;
        acc.span_duplicates = s.duplicates;
        Ok(acc)
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
