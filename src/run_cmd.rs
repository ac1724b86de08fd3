//! `agentmeter run --config agentmeter.toml`: the long-running service on one lake lock.
//!
//! - the HTTP server (main thread, async): OTLP/HTTP receiver with its write-ahead log and
//!   flusher, `/metrics`, `/health` (`serve_cmd::run_receiver`);
//! - the Kinesis follower (one thread, every configured stream in turns, one sink): commit,
//!   then checkpoint; rollups every `rollups.interval_ms`;
//! - the flags schedule (one thread): yesterday and today evaluated every
//!   `flags.every_minutes`, new transitions alerted once.
//!
//! SIGTERM or SIGINT stops all three: the receiver flushes what it acknowledged, the follower
//! commits and checkpoints, the flags thread finishes its run. A part that fails stops the
//! others and the process exits 1 (a supervisor restarts it; checkpoints and the write-ahead
//! log make the restart exact).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentmeter_aggregate::{Lake, WriterOptions};
use agentmeter_ingest::otlp_http::Metrics;
use agentmeter_ingest::source::Format;
use agentmeter_ingest::{DecodeConfig, Decoder};
use anyhow::Context;
use chrono::{TimeDelta, Utc};

use crate::UsageError;
use crate::aws_ingest::{AwsRun, StreamOptions};
use crate::cli::{FlagsArgs, RunArgs};
use crate::ingest_cmd::IngestSink;
use crate::run_config::{FlagsConfig, RunConfig};
use crate::serve_cmd::{Receiver, run_receiver, shutdown_signal, token};

/// Asks every part to stop; the HTTP server waits on the channel.
#[derive(Clone)]
struct Stop {
    flag: Arc<AtomicBool>,
    tx: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Stop {
    fn now(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.tx.send_replace(true);
    }
}

pub fn run(a: &RunArgs) -> anyhow::Result<()> {
    let cfg = crate::run_config::load(&a.config).map_err(UsageError)?;
    let decode = DecodeConfig::new(&cfg.tenant_field, 4 << 20, cfg.max_body_bytes.max(1))
        .map_err(|e| UsageError(format!("{}: {e}", a.config.display())))?;
    let auth_token = token(cfg.auth_token_file.as_deref(), "otlp.auth_token_file")?;
    let (lake, rt) = crate::serve_cmd::start(&cfg.lake)?;
    let metrics = Arc::new(Metrics::default());
    metrics.daemon.store(true, Ordering::Relaxed);
    let aws = if cfg.streams.is_empty() {
        None
    } else {
        Some(rt.block_on(crate::aws_ingest::sdk_config())?)
    };
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let stop = Stop { flag: Arc::new(AtomicBool::new(false)), tx: Arc::new(tx) };
    {
        let stop = stop.clone();
        rt.spawn(async move {
            shutdown_signal().await;
            stop.now();
        });
    }
    let failure: Arc<Mutex<Vec<String>>> = Arc::default();

    let follower = aws.map(|config| {
        let (lake, metrics, stop, failure, cfg) = (
            Arc::clone(&lake),
            Arc::clone(&metrics),
            stop.clone(),
            Arc::clone(&failure),
            cfg.clone(),
        );
        let decoder = Decoder::new(decode.clone());
        std::thread::spawn(move || {
            if let Err(e) = follow(&lake, &cfg, &decoder, &config, &metrics, &stop) {
                tracing::error!(error = format!("{e:#}"), "The Kinesis follower stopped.");
                failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(format!("{e:#}"));
                stop.now();
            }
        })
    });
    let flags = cfg.flags.clone().map(|f| {
        let (lake, metrics, stop) = (Arc::clone(&lake), Arc::clone(&metrics), stop.clone());
        std::thread::spawn(move || flag_schedule(&lake, &f, &metrics, &stop))
    });

    let receiver = Receiver {
        listen: cfg.listen,
        auth_token,
        max_body_bytes: cfg.max_body_bytes,
        max_in_flight: cfg.max_in_flight,
        flush_interval: cfg.flush_interval,
        decode,
    };
    let shutdown = async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
        tracing::info!("Stopping: flushing what was acknowledged, committing, checkpointing.");
    };
    let served = run_receiver(&lake, receiver, &metrics, &rt, shutdown);
    stop.now();
    if let Some(t) = follower {
        let _ = t.join();
    }
    if let Some(t) = flags {
        let _ = t.join();
    }
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
    metrics: &Arc<Metrics>,
    stop: &Stop,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
        rt: &rt,
        config,
        stop: Arc::clone(&stop.flag),
        bytes: &bytes,
        progress: false,
        format: Format::Auto,
        workers: 1,
        metrics: Some(Arc::clone(metrics)),
    };
    let mut sink = IngestSink::new(lake, WriterOptions::default());
    let read = run.kinesis(&mut sink, &cfg.streams);
    let finished = sink.finish(lake);
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
fn flag_schedule(lake: &Lake, f: &FlagsConfig, metrics: &Metrics, stop: &Stop) {
    let args = FlagsArgs {
        lake: lake.layout().root().to_owned(),
        period: None,
        from: None,
        to: None,
        policy: f.policy.clone(),
        out: f.out.clone(),
        alerts: f.alerts.clone(),
        alert_max_attempts: 4,
        alert_backoff_ms: 500,
        alert_max_age_hours: f.alert_max_age_hours,
        json: false,
    };
    let mut next = Instant::now();
    while !stop.flag.load(Ordering::Relaxed) {
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
    )?;
    let holding = r.evaluations.last().map_or(0, |e| e.flags.len());
    Ok((holding, r.alerts_sent))
}
