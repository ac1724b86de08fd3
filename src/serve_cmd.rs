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

use std::path::Path;

use agentmeter_aggregate::Lake;
use agentmeter_reports::api::{ApiConfig, ApiTokens};
use agentmeter_reports::invoice::roster::Roster;
use agentmeter_reports::prices::PriceBook;

use crate::UsageError;
use crate::cli::ServeArgs;

/// The usage API's files, read and checked before anything starts.
pub struct ApiFiles {
    tokens: ApiTokens,
    prices: Option<PriceBook>,
    roster: Roster,
}

impl ApiFiles {
    /// Reads the token file, price book and roster; `names` are how the user gave them
    /// (options or configuration keys), for the messages.
    pub fn load(
        tokens: Option<&Path>,
        prices: Option<&Path>,
        tenants: Option<&Path>,
        names: [&str; 3],
    ) -> Result<Option<Self>, UsageError> {
        let Some(tokens) = tokens else { return Ok(None) };
        let tokens =
            ApiTokens::load(tokens).map_err(|e| UsageError(format!("{}: {e}", names[0])))?;
        let prices = prices
            .map(|p| PriceBook::load(p).map_err(|e| UsageError(format!("{}: {e}", names[1]))))
            .transpose()?;
        let roster = match tenants {
            Some(p) => crate::invoice_cmd::read_roster(names[2], p)?.0,
            None => Roster::default(),
        };
        Ok(Some(Self { tokens, prices, roster }))
    }

    /// The API's routes on `lake` (none when the API is off).
    pub fn routes(files: Option<Self>, lake: &Lake) -> agentmeter_reports::api::Routes {
        if let Some(f) = &files {
            tracing::info!(
                tokens = f.tokens.len(),
                previews = f.prices.is_some(),
                "The usage API is on: GET /v1/usage, GET /v1/invoices/preview."
            );
        }
        agentmeter_reports::api::routes(files.map(|f| ApiConfig {
            lake: lake.clone(),
            tokens: f.tokens,
            prices: f.prices,
            roster: f.roster,
        }))
    }
}

pub fn run(env: &Env, a: &ServeArgs) -> anyhow::Result<()> {
    let decode = DecodeConfig::new(&a.tenant_field, 4 << 20, a.max_body_bytes.max(1))
        .and_then(|c| c.with_max_tokens_per_call(a.max_tokens_per_call))
        .and_then(|c| c.with_limits(a.limits.limits()))
        .map_err(|e| UsageError(format!("--{e}")))?;
    let auth_token = receiver::token(a.auth_token_file.as_deref(), "--auth-token-file")?;
    let api = ApiFiles::load(
        a.api_tokens.as_deref(),
        a.prices.as_deref(),
        a.tenants.as_deref(),
        ["--api-tokens", "--prices", "--tenants"],
    )?;
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
        max_log_backlog_bytes: a.max_log_backlog_mib.saturating_mul(1 << 20),
        decode,
        wal_dir,
        writer,
        routes: ApiFiles::routes(api, &lake),
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
