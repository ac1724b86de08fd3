//! `agentmeter ingest`: the arguments into `agentmeter_pipeline::ingest`, and the summary out.

use agentmeter_aggregate::WriterOptions;
use agentmeter_ingest::DecodeConfig;
use agentmeter_ingest::source::Format;
use agentmeter_pipeline::Env;
use agentmeter_pipeline::ingest::{IngestOptions, ingest};
use agentmeter_pipeline::sources::StreamOptions;
use agentmeter_reports::run_summary::{IngestSummary, render};
use anyhow::Context;

use crate::UsageError;
use crate::cli::{FormatArg, IngestArgs};

/// The typed options of the arguments, validated before anything is written.
pub fn options(a: &IngestArgs) -> anyhow::Result<IngestOptions> {
    let decode = DecodeConfig::new(&a.tenant_field, a.max_record_bytes, a.max_payload_bytes)
        .and_then(|c| c.with_max_tokens_per_call(a.max_tokens_per_call))
        .and_then(|c| c.with_limits(a.limits.limits()))
        .map_err(|e| UsageError(format!("--{e}")))?
        .with_log_times(a.log_timezone, a.default_time);
    let format = match a.format {
        FormatArg::Auto => Format::Auto,
        FormatArg::Ndjson => Format::Ndjson,
        FormatArg::CwlSubscription => Format::CwlSubscription,
        FormatArg::FilterLogEvents => Format::FilterLogEvents,
        FormatArg::OtlpProto => Format::OtlpProto,
    };
    let workers = a.workers.map_or_else(
        || std::thread::available_parallelism().map_or(2, usize::from),
        |w| w as usize,
    );
    let batch_rows = usize::try_from(a.batch_rows).unwrap_or(usize::MAX);
    Ok(IngestOptions {
        lake: a.lake.clone(),
        sources: a.sources.clone(),
        format,
        decode,
        stream: StreamOptions {
            start: a.start,
            follow: a.follow,
            checkpoint_interval: std::time::Duration::from_millis(a.checkpoint_interval_ms),
            rollup_interval: std::time::Duration::from_millis(a.rollup_interval_ms),
        },
        writer: WriterOptions {
            batch_rows,
            batch_bytes: usize::try_from(a.batch_mib << 20).unwrap_or(usize::MAX),
            ..WriterOptions::default()
        },
        workers,
        progress: !a.no_progress,
    })
}

pub fn run(env: &Env, a: &IngestArgs) -> anyhow::Result<IngestSummary> {
    let summary = ingest(env, &options(a)?)?;
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
