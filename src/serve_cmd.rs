//! `agentmeter serve`: the OTLP/HTTP receiver (`agentmeter_pipeline::receiver`) on a lake.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agentmeter_aggregate::WriterOptions;
use agentmeter_ingest::DecodeConfig;
use agentmeter_ingest::otlp_http::Metrics;
use agentmeter_pipeline::Env;
use agentmeter_pipeline::receiver::{self, ReceiverOptions};
use agentmeter_pipeline::sources::stop_on_signal;

use crate::UsageError;
use crate::cli::ServeArgs;

pub fn run(env: &Env, a: &ServeArgs) -> anyhow::Result<()> {
    let decode = DecodeConfig::new(&a.tenant_field, 4 << 20, a.max_body_bytes.max(1))
        .and_then(|c| c.with_max_tokens_per_call(a.max_tokens_per_call))
        .map_err(|e| UsageError(format!("--{e}")))?;
    let auth_token = receiver::token(a.auth_token_file.as_deref(), "--auth-token-file")?;
    // The address first: a busy port fails before anything is created.
    let listener = receiver::bind(env.rt(), a.otlp_http)?;
    let wal_dir = a.wal_dir.clone().unwrap_or_else(|| receiver::default_wal_dir(&a.lake));
    let lake = env.open_lake(&a.lake)?;
    let _wal = receiver::lock_wal(&wal_dir)?;
    let writer = WriterOptions::default();
    receiver::recover(&lake, &wal_dir, writer)?;
    let metrics = Arc::new(Metrics::default());
    let opts = ReceiverOptions {
        listen: a.otlp_http,
        auth_token,
        max_body_bytes: a.max_body_bytes,
        max_in_flight: a.max_in_flight,
        flush_interval: Duration::from_millis(a.flush_interval_ms),
        decode,
        wal_dir,
        writer,
    };
    receiver::run_receiver(env.rt(), listener, &lake, opts, &metrics, stop_on_signal(env.rt()))?;
    println!(
        "stopped: {} spans received, {} written, {} duplicates, {} quarantined",
        metrics.spans_received.load(Ordering::Relaxed),
        metrics.spans_written.load(Ordering::Relaxed),
        metrics.spans_duplicate.load(Ordering::Relaxed),
        metrics.spans_quarantined.load(Ordering::Relaxed)
    );
    Ok(())
}
