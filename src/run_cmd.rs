//! `agentmeter run --config agentmeter.toml`: the long-running service on a lake that any
//! number of other writers share.
//!
//! - the HTTP server (main thread, async): OTLP/HTTP receiver with its write-ahead log and
//!   flusher, `/metrics`, `/health` (`agentmeter_pipeline::receiver`);
//! - the Kinesis follower (every configured stream in turns, one router): commit, then
//!   checkpoint; rollups every `rollups.interval_ms`;
//! - the flags schedule: yesterday and today evaluated every `flags.every_minutes`, new
//!   transitions alerted once.
//!
//! One shutdown: SIGTERM or SIGINT cancels one token, and the tracker waits for every part:
//! the receiver flushes what it acknowledged, the follower commits and checkpoints, the flags
//! run finishes. A part that fails cancels the others and the process exits 1 (a supervisor
//! restarts it; checkpoints and the write-ahead log make the restart exact).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentmeter_aggregate::{Lake, WriterOptions};
use agentmeter_ingest::otlp_http::Metrics;
use agentmeter_ingest::source::Format;
use agentmeter_ingest::{DecodeConfig, Decoder};
use agentmeter_pipeline::receiver::{self, ReceiverOptions};
use agentmeter_pipeline::sources::{AwsRun, StreamOptions, shutdown_signal};
use agentmeter_pipeline::{Env, Router};
use anyhow::Context;
use chrono::{TimeDelta, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::UsageError;
use crate::cli::{FlagsArgs, RunArgs};
use crate::run_config::{FlagsConfig, RunConfig};

pub fn run(env: &Env, a: &RunArgs) -> anyhow::Result<()> {
    let cfg = crate::run_config::load(&a.config).map_err(UsageError)?;
    let decode = DecodeConfig::new(&cfg.tenant_field, 4 << 20, cfg.max_body_bytes.max(1))
        .and_then(|c| c.with_max_tokens_per_call(cfg.max_tokens_per_call))
        .and_then(|c| c.with_limits(cfg.limits))
        .map_err(|e| UsageError(format!("{}: {e}", a.config.display())))?;
    let auth_token = receiver::token(cfg.auth_token_file.as_deref(), "otlp.auth_token_file")?;
    let api = crate::serve_cmd::ApiFiles::load(
        cfg.api_tokens.as_deref(),
        cfg.api_prices.as_deref(),
        cfg.api_tenants.as_deref(),
        ["api.tokens", "api.prices", "api.tenants"],
    )
    .map_err(|e| UsageError(format!("{}: {}", a.config.display(), e.0)))?;
    let listener = receiver::bind(env.rt(), cfg.listen)?;
    let wal_dir = cfg.wal_dir.clone().unwrap_or_else(|| receiver::default_wal_dir(&cfg.lake));
    let lake = env.open_lake(&cfg.lake)?;
    let _wal = receiver::lock_wal(&wal_dir)?;
    receiver::recover(&lake, &wal_dir, WriterOptions::default())?;
    let metrics = Arc::new(Metrics::default());
    metrics.daemon.store(true, Ordering::Relaxed);
    let aws = if cfg.streams.is_empty() { None } else { Some(env.sdk()?.clone()) };

    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    {
        let stop = stop.clone();
        tracker.spawn_on(
            async move {
                tokio::select! {
                    () = shutdown_signal() => stop.cancel(),
                    () = stop.cancelled() => {}
                }
            },
            env.rt().handle(),
        );
    }
    let failure: Arc<Mutex<Vec<String>>> = Arc::default();
    if let Some(config) = aws {
        let (lake, counters, stop, failure, cfg) =
            (lake.clone(), Arc::clone(&metrics), stop.clone(), Arc::clone(&failure), cfg.clone());
        let decoder = Decoder::new(decode.clone());
        let handle = env.rt().handle().clone();
        tracker.spawn_blocking_on(
            move || {
                if let Err(e) = follow(&lake, &cfg, &decoder, &config, handle, &counters, &stop) {
                    tracing::error!(error = format!("{e:#}"), "The Kinesis follower stopped.");
                    failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(format!("{e:#}"));
                    stop.cancel();
                }
            },
            env.rt().handle(),
        );
    }
    if let Some(f) = cfg.flags.clone() {
        let (lake, metrics, stop) = (lake.clone(), Arc::clone(&metrics), stop.clone());
        tracker.spawn_blocking_on(
            move || flag_schedule(&lake, &f, &metrics, &stop),
            env.rt().handle(),
        );
    }
    tracker.close();

    let opts = ReceiverOptions {
        listen: cfg.listen,
        auth_token,
        max_body_bytes: cfg.max_body_bytes,
        max_in_flight: cfg.max_in_flight,
        flush_interval: cfg.flush_interval,
        max_log_backlog_bytes: cfg.max_log_backlog_bytes,
        decode,
        wal_dir,
        writer: WriterOptions::default(),
        routes: crate::serve_cmd::ApiFiles::routes(api, &lake),
    };
    let served = receiver::run_receiver(env.rt(), listener, &lake, opts, &metrics, stop.clone());
    stop.cancel();
    env.rt().block_on(tracker.wait());
    served?;
    let failures = failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    println!(
        "stopped: {} spans received, {} written, {} duplicates, {} quarantined; {} Kinesis records, {} checkpoints; {} flag runs",
        metrics.spans_received.load(Ordering::Relaxed),
        metrics.spans_written.load(Ordering::Relaxed),
        metrics.spans_duplicate.load(Ordering::Relaxed),
        metrics.spans_quarantined.load(Ordering::Relaxed),
        metrics.stream_records.load(Ordering::Relaxed),
        metrics.stream_checkpoints.load(Ordering::Relaxed),
        metrics.flag_runs.load(Ordering::Relaxed),
    );
    if let Some(first) = failures.first() {
        anyhow::bail!("{first}");
    }
    Ok(())
}

/// The Kinesis follower: every stream until stopped, then the last commit and checkpoint.
fn follow(
    lake: &Lake,
    cfg: &RunConfig,
    decoder: &Decoder,
    config: &aws_config::SdkConfig,
    rt: tokio::runtime::Handle,
    counters: &Arc<Metrics>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let bytes = AtomicU64::new(0);
    let run = AwsRun {
        lake,
        decoder,
        opts: StreamOptions {
            start: cfg.start,
            follow: true,
            checkpoint_interval: cfg.checkpoint_interval,
            rollup_interval: cfg.rollup_interval,
        },
        rt,
        config,
        stop: stop.clone(),
        bytes: &bytes,
        progress: false,
        format: Format::Auto,
        workers: 1,
        counters: Some(Arc::clone(counters)),
    };
    let mut router = Router::new(lake, WriterOptions::default());
    let read = run.kinesis(&mut router, &cfg.streams);
    let finished = router.finish();
    read?;
    let f = finished?;
    tracing::info!(
        records = f.acc.records_read,
        written = f.acc.events_written,
        duplicates = f.acc.duplicates,
        quarantined = f.acc.quarantined_total(),
        "Kinesis follower stopped."
    );
    Ok(())
}

/// Evaluates the flags of yesterday and today every `every`, until stopped.
fn flag_schedule(lake: &Lake, f: &FlagsConfig, metrics: &Metrics, stop: &CancellationToken) {
    let args = FlagsArgs {
        lake: agentmeter_pipeline::LakeLocation::Dir(Default::default()),
        period: None,
        from: None,
        to: None,
        policy: f.policy.clone(),
        prices: f.prices.clone(),
        out: f.out.clone(),
        alerts: f.alerts.clone(),
        alert_max_attempts: 4,
        alert_backoff_ms: 500,
        alert_max_age_hours: f.alert_max_age_hours,
        json: false,
    };
    let mut next = Instant::now();
    while !stop.is_cancelled() {
        if Instant::now() >= next {
            next = Instant::now() + f.every;
            match evaluate(lake, &args) {
                Ok((flags, sent)) => {
                    metrics.flag_runs.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(flags, alerts_sent = sent, "Flags evaluated.");
                }
                Err(e) => {
                    metrics.flag_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        error = format!("{e:#}"),
                        "Flag evaluation failed; retried on the next run."
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn evaluate(lake: &Lake, args: &FlagsArgs) -> anyhow::Result<(usize, usize)> {
    let policy = crate::flags_cmd::load_policy(args.policy.as_deref())?;
    let sinks = args
        .alerts
        .iter()
        // The error quotes the value with its credentials redacted; `s` itself may hold them.
        .map(|s| s.parse().map_err(|e| anyhow::anyhow!("flags.alerts: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let now = Utc::now();
    let today = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
    let r = crate::flags_cmd::execute_in(
        lake,
        args,
        &policy,
        &sinks,
        today - TimeDelta::days(1),
        now,
        now,
    )
    .context("evaluating flags")?;
    let holding = r.evaluations.last().map_or(0, |e| e.flags.len());
    Ok((holding, r.alerts_sent))
}
