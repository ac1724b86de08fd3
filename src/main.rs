//! The `agentmeter` command: a thin shell over the library crates. It parses arguments, sets
//! up logging and progress, joins the ingest and aggregate stages, and maps failures to exit
//! codes (0 success, 1 a run failed, 2 bad arguments or configuration, 3 `reconcile
//! --fail-on-difference` found differences).

mod aws_ingest;
mod cli;
mod compact_cmd;
mod demo;
mod flags_cmd;
mod gen_cmd;
mod ingest_cmd;
mod invoice_cmd;
mod lake_cmd;
mod logging;
mod prices_cmd;
mod progress;
mod reconcile_cmd;
mod report_cmd;
mod rollup_cmd;
mod run_cmd;
mod run_config;
mod s3_lake;
mod schema_cmd;
mod serve_cmd;

use std::process::ExitCode;

use clap::Parser;

/// A failure that is the user's to fix before running again (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `reconcile --fail-on-difference` found lines that do not match (exit code 3).
#[derive(Debug)]
pub struct DifferencesFound(pub usize);

impl std::fmt::Display for DifferencesFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} tenant-days do not reconcile", self.0)
    }
}

impl std::error::Error for DifferencesFound {}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    logging::init(&args.log);
    let result = match args.command {
        cli::Command::Ingest(mut a) => s3_lake::with_lake(&a.lake.clone(), true, |dir| {
            a.lake = dir.to_owned();
            ingest_cmd::run(&a).map(|_| ())
        }),
        cli::Command::Schema(a) => schema_cmd::run(&a),
        cli::Command::Invoice(mut a) => s3_lake::with_lake(&a.lake.clone(), true, |dir| {
            a.lake = dir.to_owned();
            invoice_cmd::run(&a).map(|_| ())
        }),
        cli::Command::Prices(a) => prices_cmd::run(&a),
        cli::Command::Flags(mut a) => s3_lake::with_lake(&a.lake.clone(), true, |dir| {
            a.lake = dir.to_owned();
            flags_cmd::run(&a)
        }),
        cli::Command::Report(mut a) => s3_lake::with_lake(&a.lake.clone(), false, |dir| {
            a.lake = dir.to_owned();
            report_cmd::run(&a)
        }),
        cli::Command::Reconcile(mut a) => s3_lake::with_lake(&a.lake.clone(), false, |dir| {
            a.lake = dir.to_owned();
            reconcile_cmd::run(&a)
        }),
        cli::Command::Rollup(mut a) => s3_lake::with_lake(&a.lake.clone(), true, |dir| {
            a.lake = dir.to_owned();
            rollup_cmd::run(&a)
        }),
        cli::Command::Compact(mut a) => s3_lake::with_lake(&a.lake.clone(), true, |dir| {
            a.lake = dir.to_owned();
            compact_cmd::run(&a)
        }),
        cli::Command::Run(a) => run_cmd::run(&a),
        cli::Command::Serve(a) => serve_cmd::run(&a),
        cli::Command::Gen(a) => gen_cmd::run(&a),
        cli::Command::Demo(a) => demo::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`agentmeter schema athena | head`) is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            if e.chain().any(|c| c.downcast_ref::<DifferencesFound>().is_some()) {
                ExitCode::from(3)
            } else if e.chain().any(|c| c.downcast_ref::<UsageError>().is_some()) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
