//! The `agentmeter` command: a thin shell over the library crates. It parses arguments, sets
//! up logging, calls the services of `agentmeter-pipeline` and `agentmeter-reports` with typed
//! options, and maps failures to exit codes (0 success, 1 a run failed, 2 bad arguments or
//! configuration, 3 `reconcile --fail-on-difference` found differences).

mod cli;
mod compact_cmd;
mod demo;
mod example_cmd;
mod flags_cmd;
mod gen_cmd;
mod ingest_cmd;
mod invoice_cmd;
mod lake_cmd;
mod logging;
mod prices_cmd;
mod push_cmd;
mod reconcile_cmd;
mod report_cmd;
mod rollup_cmd;
mod run_cmd;
mod run_config;
mod schema_cmd;
mod serve_cmd;

use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than glibc's malloc: a run's large blocks (batches, rollup tables) freed on
/// one thread and allocated on another left glibc holding 100 to 150 MB it no longer used at
/// the end of a long run, so the peak grew with the input (BENCHMARKS.md, "Levers", the
/// twenty-fifth session). Its options: `_RJEM_MALLOC_CONF` (README, "Throughput and memory").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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

/// A reader that stops early (`agentmeter completions bash | head`) closes the pipe; `println!`
/// and the completion generator then panic on the write. Stop quietly with success instead,
/// as returned write errors do below: nothing is lost that the reader wanted.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.contains("Broken pipe") || msg.contains("BrokenPipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// The error and its causes, `a: b: c`, each cause once: a library error that already shows
/// its cause in its own message (`writing usage_events: PutObject ...`) would otherwise
/// read twice, as `{:#}` prints every source again.
fn causes(e: &anyhow::Error) -> String {
    agentmeter_schemas::error_chain(e.as_ref(), None)
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let args = cli::Cli::parse();
    logging::init(&args.log);
    let result = match agentmeter_pipeline::Env::new() {
        Err(e) => Err(e.into()),
        Ok(env) => match args.command {
            cli::Command::Ingest(a) => ingest_cmd::run(&env, &a).map(|_| ()),
            cli::Command::Schema(a) => schema_cmd::run(&a),
            cli::Command::Invoice(a) => invoice_cmd::run(&env, &a).map(|_| ()),
            cli::Command::Prices(a) => prices_cmd::run(&a),
            cli::Command::Flags(a) => flags_cmd::run(&env, &a),
            cli::Command::Report(a) => report_cmd::run(&env, &a),
            cli::Command::Reconcile(a) => reconcile_cmd::run(&env, &a),
            cli::Command::Rollup(a) => rollup_cmd::run(&env, &a),
            cli::Command::Compact(a) => compact_cmd::run(&env, &a),
            cli::Command::Run(a) => run_cmd::run(&env, &a),
            cli::Command::Serve(a) => serve_cmd::run(&env, &a),
            cli::Command::Gen(a) => gen_cmd::run(&a),
            cli::Command::Demo(a) => demo::run(&env, &a),
            cli::Command::Push(a) => push_cmd::run(&env, &a),
            cli::Command::Example(a) => example_cmd::example(&a),
            cli::Command::Completions(a) => example_cmd::completions(&a),
            cli::Command::Man(a) => example_cmd::man(&a),
        },
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
            eprintln!("error: {}", causes(&e));
            if e.chain().any(|c| c.downcast_ref::<DifferencesFound>().is_some()) {
                ExitCode::from(3)
            } else if e.chain().any(|c| {
                c.downcast_ref::<UsageError>().is_some()
                    || matches!(
                        c.downcast_ref::<agentmeter_pipeline::Error>(),
                        Some(agentmeter_pipeline::Error::Usage(_))
                    )
            }) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
