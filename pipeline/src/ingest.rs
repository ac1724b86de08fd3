//! One ingest run: files first (decoded on every core, in input order), then the AWS sources,
//! all routed into one lake; then the rollups of the days written and the run's summary.

use std::sync::atomic::AtomicU64;

use agentmeter_aggregate::WriterOptions;
use agentmeter_ingest::source::{self, Format, SourceSpec};
use agentmeter_ingest::{DecodeConfig, Decoder};
use agentmeter_reports::run_summary::{IngestSummary, RollupFailure};

use crate::env::{Env, LakeLocation};
use crate::error::{Error, Result};
use crate::router::{Finished, Router};
use crate::sources::{AwsRun, AwsSource, StreamOptions, parse_source, stop_on_signal};

/// Most bytes of row keys an ingest keeps for its own rollups (16 a row: 262,144 rows, a day
/// and a half of the 5M-event file; past it, files are rolled up by reading their ids). The
/// rollups ahead run at a lower priority and may lag behind the writers by several days, and
/// the keys of every day they lag by would be held: 16 MiB raised the peaks of the 5M file
/// and of the month (BENCHMARKS.md, "Levers").
const ROW_KEYS_BYTES: usize = 4 << 20;

/// What to ingest, and how.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The lake.
    pub lake: LakeLocation,
    /// Files, directories and AWS sources, as given.
    pub sources: Vec<String>,
    /// The format of files and S3 objects.
    pub format: Format,
    /// Decoder settings.
    pub decode: DecodeConfig,
    /// How streams are read.
    pub stream: StreamOptions,
    /// Writer settings.
    pub writer: WriterOptions,
    /// Decoder threads.
    pub workers: usize,
    /// Progress bars on a terminal.
    pub progress: bool,
}

/// The sources, checked before anything is written.
struct Plan {
    files: Vec<SourceSpec>,
    aws: Vec<AwsSource>,
}

fn plan(opts: &IngestOptions) -> Result<Plan> {
    let mut files = Vec::new();
    let mut aws = Vec::new();
    for s in &opts.sources {
        match parse_source(s)? {
            Some(src) => aws.push(src),
            None => files.push(std::path::PathBuf::from(s)),
        }
    }
    if opts.stream.follow && !aws.iter().any(|s| matches!(s, AwsSource::Kinesis(_))) {
        return Err(Error::Usage("--follow needs a kinesis:// source".into()));
    }
    let files = if files.is_empty() {
        Vec::new()
    } else {
        source::expand(&files, opts.format).map_err(|e| Error::Usage(e.to_string()))?
    };
    Ok(Plan { files, aws })
}

/// Runs an ingest.
///
/// # Errors
///
/// [`Error::Usage`] for a source or option to fix (nothing written); otherwise the lake holds
/// the batches committed before the error, and running the same ingest again completes it.
pub fn ingest(env: &Env, opts: &IngestOptions) -> Result<IngestSummary> {
    let plan = plan(opts)?;
    let lake = env.open_lake(&opts.lake)?;
    let decoder = Decoder::new(opts.decode.clone());
    let total: u64 = plan.files.iter().map(|s| s.len).sum();
    let progress = crate::progress::Progress::start(total, opts.progress);
    // Files alone are read once to their end, so their days can be rolled up as the run moves
    // past them; the AWS sources commit and roll up on their own schedule. Not on S3: there a
    // day's rollup ahead waits on its round trips one day at a time, and measured against moto
    // (the NDJSON of a month in 10,000-row batches, S3 20 ms late) it rolled 6 days of 31 up
    // while the run wrote and saved nothing (BENCHMARKS.md, "Levers").
    let rolling_ahead = plan.aws.is_empty() && matches!(opts.lake, LakeLocation::Dir(_));
    // The run rolls up the days it writes: its own files' ids need not be read back for that.
    lake.keep_row_keys(ROW_KEYS_BYTES);
    let mut router = if rolling_ahead {
        let mut router = Router::rolling_up_ahead(&lake, opts.writer);
        router.expect_groups(&plan.files);
        router
    } else {
        Router::new(&lake, opts.writer)
    };
    let result = agentmeter_ingest::pipeline::run(
        &plan.files,
        &decoder,
        opts.workers,
        &progress.bytes,
        &mut router,
    );
    let mut bytes_read = progress.finish();
    result.map_err(|e| match e {
        agentmeter_ingest::pipeline::RunError::Sink(e) => e,
        other => Error::Source {
            what: "ingest stopped; the lake holds the batches written before the error, and running the same ingest again completes it".into(),
            detail: other.to_string(),
        },
    })?;
    if !plan.aws.is_empty() {
        bytes_read += read_aws(env, opts, &plan.aws, &decoder, &mut router)?;
    }
    let Finished { acc, files, rollups, quarantine: q, .. } = router.finish()?;
    let balanced = acc.balances();
    if balanced {
        tracing::info!(
            lake = %opts.lake,
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
        lake: opts.lake.display(),
        sources: (plan.files.len() + plan.aws.len()) as u64,
        bytes_read,
        accounting: acc,
        files_written: files,
        partitions_rolled_up: rollups.rebuilt.len() as u64,
        quarantine_files_written: q.files_written,
        quarantine_files_removed: q.files_removed,
        balanced,
        rollups_failed: rollups
            .failed
            .into_iter()
            .map(|(dt, e)| RollupFailure { dt, error: e.to_string() })
            .collect(),
    })
}

/// Reads the AWS sources into `router`; returns the bytes read.
fn read_aws(
    env: &Env,
    opts: &IngestOptions,
    sources: &[AwsSource],
    decoder: &Decoder,
    router: &mut Router,
) -> Result<u64> {
    let config = env.sdk()?;
    let bytes = AtomicU64::new(0);
    let lake = router.lake().clone();
    let run = AwsRun {
        lake: &lake,
        decoder,
        opts: opts.stream,
        rt: env.rt().handle().clone(),
        config,
        stop: stop_on_signal(env.rt()),
        bytes: &bytes,
        progress: opts.progress,
        format: opts.format,
        workers: opts.workers,
        counters: None,
    };
    let done = "the lake holds what was read and checkpointed before the error; running the same ingest again continues from there";
    let with = |e: Error, what: &str| match e {
        Error::Source { what: w, detail } => {
            Error::Source { what: format!("{what}{w}: {done}"), detail }
        }
        other => other,
    };
    let streams: Vec<String> = sources
        .iter()
        .filter_map(|s| if let AwsSource::Kinesis(k) = s { Some(k.clone()) } else { None })
        .collect();
    for src in sources {
        match src {
            AwsSource::Kinesis(_) => {}
            AwsSource::Logs(q) => run.logs(router, q).map_err(|e| with(e, ""))?,
            AwsSource::S3(loc) => run.s3(router, loc).map_err(|e| with(e, ""))?,
        }
    }
    // The streams last (with --follow they run until stopped), in turns on one router.
    if !streams.is_empty() {
        run.kinesis(router, &streams).map_err(|e| with(e, ""))?;
    }
    Ok(bytes.into_inner())
}
