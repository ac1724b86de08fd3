//! Logging: human-readable on a terminal, JSON lines otherwise; always to standard error.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{LogArgs, LogFormat};

pub fn init(args: &LogArgs) {
    // The SDK's own warnings (each credential provider that found nothing) would repeat the
    // error agentmeter reports in words; a filter the user sets is taken as given.
    let level =
        if args.log_level == "info" { "info,aws_config=error" } else { args.log_level.as_str() };
    let filter = EnvFilter::try_new(level).unwrap_or_else(|e| {
        eprintln!("warning: ignoring log filter {:?}: {e}", args.log_level);
        EnvFilter::new("info")
    });
    let json = match args.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_target(false).init();
    }
}
