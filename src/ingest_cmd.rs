//! `agentmeter ingest`: joins the decode stage (agentmeter-ingest) to the lake writer
//! (agentmeter-aggregate) and reports where every record went.

use std::path::{Path, PathBuf};

use agentmeter_aggregate::{EventWriter, Lake, QuarantineReport, QuarantineWriter, WriterOptions};
use agentmeter_ingest::pipeline::{self, Sink};
use agentmeter_ingest::source::{self, Format, SourceSpec};
use agentmeter_ingest::{DecodeConfig, Decoder, Outcome};
use agentmeter_reports::run_summary::{IngestSummary, RollupFailure, render};
use agentmeter_schemas::{Accounting, SourceUri};
use anyhow::Context;

use crate::UsageError;
use crate::aws_ingest::{AwsRun, AwsSource, StreamOptions};
use crate::cli::{FormatArg, IngestArgs};
use crate::progress::Progress;

/// Everything an ingest needs, validated.
pub struct IngestPlan {
    pub lake: PathBuf,
    pub sources: Vec<SourceSpec>,
    /// `kinesis://` and `logs://` sources, read after the files.
    pub aws: Vec<AwsSource>,
    /// The format of files (and S3 objects).
    pub format: Format,
    pub stream: StreamOptions,
    pub decoder: Decoder,
    pub writer: WriterOptions,
    pub workers: usize,
    pub progress: bool,
}

impl IngestPlan {
    /// Validates arguments before anything is written.
    pub fn from_args(a: &IngestArgs) -> anyhow::Result<Self> {
        let cfg = DecodeConfig::new(&a.tenant_field, a.max_record_bytes, a.max_payload_bytes)
            .and_then(|c| c.with_max_tokens_per_call(a.max_tokens_per_call))
            .map_err(|e| UsageError(format!("--{e}")))?;
        let format = match a.format {
            FormatArg::Auto => Format::Auto,
            FormatArg::Ndjson => Format::Ndjson,
            FormatArg::CwlSubscription => Format::CwlSubscription,
            FormatArg::FilterLogEvents => Format::FilterLogEvents,
            FormatArg::OtlpProto => Format::OtlpProto,
        };
        let mut files = Vec::new();
        let mut aws = Vec::new();
        for s in &a.sources {
            match crate::aws_ingest::parse_source(&s.to_string_lossy())? {
                Some(src) => aws.push(src),
                None => files.push(s.clone()),
            }
        }
        if a.follow && !aws.iter().any(|s| matches!(s, AwsSource::Kinesis(_))) {
            return Err(UsageError("--follow needs a kinesis:// source".into()).into());
        }
        let sources = if files.is_empty() {
            Vec::new()
        } else {
            source::expand(&files, format).map_err(|e| UsageError(e.to_string()))?
        };
        if a.lake.is_file() {
            return Err(UsageError(format!(
                "--lake {} is a file, not a directory",
                a.lake.display()
            ))
            .into());
        }
        let workers = a.workers.map_or_else(
            || std::thread::available_parallelism().map_or(2, usize::from),
            |w| w as usize,
        );
        let batch_rows = usize::try_from(a.batch_rows).unwrap_or(usize::MAX);
        Ok(Self {
            lake: a.lake.clone(),
            sources,
            aws,
            format,
            stream: StreamOptions {
                start: a.start,
                follow: a.follow,
                checkpoint_interval: std::time::Duration::from_millis(a.checkpoint_interval_ms),
                rollup_interval: std::time::Duration::from_millis(a.rollup_interval_ms),
            },
            decoder: Decoder::new(cfg),
            writer: WriterOptions { batch_rows, ..WriterOptions::default() },
            workers,
            progress: !a.no_progress,
        })
    }
}

pub fn run(a: &IngestArgs) -> anyhow::Result<IngestSummary> {
    let plan = IngestPlan::from_args(a)?;
    let summary = execute(&plan)?;
    let text = if a.json {
        serde_json::to_string_pretty(&summary).context("serializing the summary")? + "\n"
    } else {
        render(&summary)
    };
    print!("{text}");
    if let Some(path) = &a.summary_json {
        let body = serde_json::to_vec_pretty(&summary).context("serializing the summary")?;
        std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    if !summary.rollups_failed.is_empty() {
        let days: Vec<String> = summary.rollups_failed.iter().map(|f| f.dt.to_string()).collect();
        anyhow::bail!(
            "the events are in the lake, but the rollups of {} could not be rebuilt; invoices, flags and reports refuse those days until `agentmeter rollup` succeeds",
            days.join(", ")
        );
    }
    Ok(summary)
}

/// Routes outcomes: events to the writer, refusals to the quarantine, counts to `acc`.
pub struct IngestSink<'l> {
    writer: EventWriter<'l>,
    spans: EventWriter<'l, agentmeter_schemas::AgentSpan>,
    quarantine: QuarantineWriter,
    acc: Accounting,
    /// Records read before the current source started.
    source_start: u64,
    /// What earlier quarantine commits wrote.
    quarantine_done: QuarantineReport,
}

/// What a finished sink wrote.
pub struct Finished {
    pub acc: Accounting,
    /// Parquet files written (events and spans).
    pub files: u64,
    /// Rollup partitions rebuilt.
    pub rollups: u64,
    /// Partitions whose rollup failed (their events are durable; the rollup stays stale).
    pub rollups_failed: Vec<RollupFailure>,
    pub quarantine: QuarantineReport,
}

impl<'l> IngestSink<'l> {
    /// A sink writing into `lake`.
    pub fn new(lake: &'l Lake, opts: WriterOptions) -> Self {
        IngestSink {
            writer: EventWriter::new(lake, opts),
            spans: EventWriter::new(lake, opts),
            quarantine: QuarantineWriter::new(lake.layout().clone()),
            acc: Accounting::default(),
            source_start: 0,
            quarantine_done: QuarantineReport::default(),
        }
    }

    /// Writes what is left, rebuilds the rollups of the days written, then puts the
    /// quarantine in place (after the events: a replayed record is never dropped from the
    /// quarantine before it is durable in the lake).
    pub fn finish(self, lake: &Lake) -> anyhow::Result<Finished> {
        let IngestSink { writer, spans, quarantine, mut acc, quarantine_done, .. } = self;
        let (stats, mut days) = writer.finish_without_rollups().context("writing the lake")?;
        let (span_stats, span_days) = spans.finish_without_rollups().context("writing the lake")?;
        days.extend(span_days);
        let report = lake.rebuild_rollups(&days);
        let rollups = report.rebuilt.len() as u64;
        let rollups_failed = report
            .failed
            .into_iter()
            .map(|(dt, e)| RollupFailure { dt, error: e.to_string() })
            .collect();
        let mut q = quarantine.finish().context("writing the quarantine")?;
        q.files_written += quarantine_done.files_written;
        q.files_removed += quarantine_done.files_removed;
        q.entries += quarantine_done.entries;
        acc.events_written = stats.written;
        acc.duplicates = stats.duplicates;
        acc.conflicting_duplicates = stats.conflicting + span_stats.conflicting;
        acc.spans_written = span_stats.written;
        acc.span_duplicates = span_stats.duplicates;
        Ok(Finished {
            acc,
            files: stats.files + span_stats.files,
            rollups,
            rollups_failed,
            quarantine: q,
        })
    }
}

impl IngestSink<'_> {
    /// The days written (events or spans) since the last call, once they are committed: a
    /// long-running reader rolls them up on its own schedule.
    pub fn take_touched(
        &mut self,
    ) -> agentmeter_aggregate::Result<std::collections::BTreeSet<chrono::NaiveDate>> {
        let mut days = self.writer.take_touched()?;
        days.extend(self.spans.take_touched()?);
        Ok(days)
    }

    /// Makes everything received so far durable: events and spans committed, then the
    /// quarantine files put in place (a stream source's checkpoint may follow).
    pub fn commit(&mut self, lake: &Lake) -> agentmeter_aggregate::Result<()> {
        self.writer.commit()?;
        self.spans.commit()?;
        let q =
            std::mem::replace(&mut self.quarantine, QuarantineWriter::new(lake.layout().clone()));
        let r = q.finish()?;
        self.quarantine_done.entries += r.entries;
        self.quarantine_done.files_written += r.files_written;
        self.quarantine_done.files_removed += r.files_removed;
        Ok(())
    }
}

impl Sink for IngestSink<'_> {
    type Error = agentmeter_aggregate::Error;

    fn source_started(&mut self, s: &SourceSpec) -> Result<(), Self::Error> {
        tracing::debug!(source = %s.uri, bytes = s.len, "Reading source.");
        self.source_start = self.acc.records_read;
        self.quarantine.touch(&s.uri);
        Ok(())
    }

    fn lineage(&mut self, s: &SourceUri) -> Result<(), Self::Error> {
        self.quarantine.touch(s);
        Ok(())
    }

    fn outcome(&mut self, o: Outcome) -> Result<(), Self::Error> {
        self.acc.records_read += 1;
        match o {
            Outcome::Event(e) => self.writer.push(e)?,
            Outcome::Skip(k) => *self.acc.skipped.entry(k).or_default() += 1,
            Outcome::Span(s) => self.spans.push(*s)?,
            Outcome::Reject(q) => {
                tracing::debug!(source = %q.source, position = %q.position, reason = %q.reason, detail = %q.detail, "Record quarantined.");
                *self.acc.quarantined.entry(q.reason).or_default() += 1;
                self.quarantine.write(&q)?;
            }
        }
        Ok(())
    }

    fn source_finished(&mut self, s: &SourceSpec) -> Result<(), Self::Error> {
        self.quarantine.close(&s.uri)?;
        let records = self.acc.records_read - self.source_start;
        tracing::debug!(source = %s.uri, records, "Source read.");
        Ok(())
    }
}

/// Runs a validated ingest.
pub fn execute(plan: &IngestPlan) -> anyhow::Result<IngestSummary> {
    let lake = Lake::open(&plan.lake).map_err(|e| match e {
        agentmeter_aggregate::Error::Locked { .. }
        | agentmeter_aggregate::Error::NotALake { .. } => {
            anyhow::Error::new(UsageError(e.to_string()))
        }
        other => anyhow::Error::new(other).context("opening the lake"),
    })?;
    // Spans a stopped receiver acknowledged but did not flush belong in the lake first.
    let recovered = agentmeter_aggregate::wal::recover_otlp(&lake, plan.writer)
        .context("flushing the OTLP write-ahead log")?;
    if recovered.segments > 0 {
        tracing::info!(
            segments = recovered.segments,
            written = recovered.spans_written,
            "Flushed spans an OTLP receiver had acknowledged."
        );
    }
    let total: u64 = plan.sources.iter().map(|s| s.len).sum();
    let progress = Progress::start(total, plan.progress);
    let mut sink = IngestSink::new(&lake, plan.writer);
    let result =
        pipeline::run(&plan.sources, &plan.decoder, plan.workers, &progress.bytes, &mut sink);
    let mut bytes_read = progress.finish();
    result.context("ingest stopped; the lake holds the batches written before the error, and running the same ingest again completes it")?;
    if !plan.aws.is_empty() {
        bytes_read += read_aws(plan, &lake, &mut sink)?;
    }
    let Finished { acc, files, rollups, rollups_failed, quarantine: q } = sink.finish(&lake)?;
    let balanced = acc.balances();
    if balanced {
        tracing::info!(
            lake = %plan.lake.display(),
            records = acc.records_read,
            written = acc.events_written,
            duplicates = acc.duplicates,
            skipped = acc.skipped_total(),
            quarantined = acc.quarantined_total(),
            "Ingest finished."
        );
    } else {
        tracing::error!(?acc, "Records are not all accounted for.");
    }
    Ok(IngestSummary {
        lake: display_path(&plan.lake),
        sources: (plan.sources.len() + plan.aws.len()) as u64,
        bytes_read,
        accounting: acc,
        files_written: files,
        partitions_rolled_up: rollups,
        quarantine_files_written: q.files_written,
        quarantine_files_removed: q.files_removed,
        balanced,
        rollups_failed,
    })
}

/// Reads the `kinesis://` and `logs://` sources into `sink`; returns the bytes read.
fn read_aws(plan: &IngestPlan, lake: &Lake, sink: &mut IngestSink<'_>) -> anyhow::Result<u64> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let config = rt.block_on(crate::aws_ingest::sdk_config())?;
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let run = AwsRun {
        lake,
        decoder: &plan.decoder,
        opts: plan.stream,
        rt: &rt,
        config: &config,
        stop: crate::aws_ingest::stop_on_signal(&rt),
        bytes: &bytes,
        progress: plan.progress,
        format: plan.format,
        workers: plan.workers,
        metrics: None,
    };
    let done = "the lake holds what was read and checkpointed before the error; running the same ingest again continues from there";
    let streams: Vec<String> = plan
        .aws
        .iter()
        .filter_map(|s| if let AwsSource::Kinesis(k) = s { Some(k.clone()) } else { None })
        .collect();
    for src in &plan.aws {
        match src {
            AwsSource::Kinesis(_) => {}
            AwsSource::Logs(q) => {
                run.logs(sink, q).with_context(|| format!("logs://{}: {done}", q.group))?;
            }
            AwsSource::S3(loc) => {
                run.s3(sink, loc).with_context(|| format!("{}: {done}", loc.uri()))?;
            }
        }
    }
    // The streams last (with --follow they run until stopped), in turns on one sink.
    if !streams.is_empty() {
        run.kinesis(sink, &streams).with_context(|| done.to_string())?;
    }
    Ok(bytes.into_inner())
}

pub fn display_path(p: &Path) -> String {
    p.display().to_string()
}
