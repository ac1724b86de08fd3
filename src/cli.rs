//! Command-line arguments.

use std::path::PathBuf;

use agentmeter_pipeline::LakeLocation;
use clap::{Args, Parser, Subcommand, ValueEnum};

fn parse_lake(s: &str) -> Result<LakeLocation, String> {
    LakeLocation::parse(s).map_err(|e| e.to_string())
}

/// Usage metering and billing for multi-tenant AI agent platforms.
#[derive(Debug, Parser)]
#[command(name = "agentmeter", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Logging options (logs go to standard error; results to standard output).
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `agentmeter_aggregate=debug`.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "AGENTMETER_LOG",
        hide_env_values = true
    )]
    pub log_level: String,
    /// Log format: `text` on a terminal and `json` otherwise unless set.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest inference_usage logs from files and directories into the lake.
    Ingest(IngestArgs),
    /// Print table definitions (Athena DDL).
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Price a billing period: invoices, cost allocation, margin and FOCUS exports.
    Invoice(InvoiceArgs),
    /// Price book tools.
    #[command(subcommand)]
    Prices(PricesCommand),
    /// Evaluate noisy-neighbour, saturation, quota and runaway flags, and send their alerts.
    Flags(FlagsArgs),
    /// Write a self-contained HTML report of a period (charts, flags, cost against revenue).
    Report(ReportArgs),
    /// Compare the tokens of the logs with the tokens of the chat spans, per tenant and day.
    Reconcile(ReconcileArgs),
    /// Rebuild the rollups (usage_hourly, tenant_hourly, agent_invocations) of the days that are
    /// not up to date with their data files.
    Rollup(RollupArgs),
    /// Merge each partition's small files (usage_events, agent_spans) into Athena-sized files.
    Compact(CompactArgs),
    /// The long-running service: Kinesis, the OTLP receiver, rollups and scheduled flags (until
    /// SIGTERM or SIGINT).
    Run(RunArgs),
    /// Receive OpenTelemetry spans over OTLP/HTTP into the lake (until SIGTERM or SIGINT).
    Serve(ServeArgs),
    /// Generate a deterministic synthetic month of usage logs.
    Gen(GenArgs),
    /// Generate a month for about 50 tenants, ingest it, and show what came out.
    Demo(DemoArgs),
    /// Push the usage of a range to a billing system (Stripe, Lago, OpenMeter, Metronome),
    /// each quantity once, recorded in the lake's push ledger.
    Push(PushArgs),
    /// Print a documented example file (shipped inside the binary) to standard output.
    Example(ExampleArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff) of agentmeter and its subcommands.
    Man(ManArgs),
}

/// Whole days: a month, or `--from DAY --to DAY` with `--to` exclusive.
#[derive(Debug, Args)]
pub struct DayRangeArgs {
    /// A month, YYYY-MM (or use --from and --to).
    #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
    pub period: Option<String>,
    /// First day, YYYY-MM-DD.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// End of the range, YYYY-MM-DD, exclusive (the day after the last).
    #[arg(long, requires = "from")]
    pub to: Option<String>,
}

fn parse_system(s: &str) -> Result<agentmeter_reports::push::System, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The billing system: stripe, lago, openmeter or metronome.
    #[arg(value_parser = parse_system)]
    pub system: agentmeter_reports::push::System,
    /// The lake: a directory or s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_lake)]
    pub lake: LakeLocation,
    #[command(flatten)]
    pub range: DayRangeArgs,
    /// Tenant roster (TOML; `agentmeter example tenants`): each tenant's id in the system
    /// (`customer_ids`). Required for Stripe; the others default to the tenant id.
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
    /// File holding the API key (else AGENTMETER_PUSH_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The API's base URL (default: the system's cloud API; a self-hosted Lago or OpenMeter).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Event names are `PREFIX_<component>` (Stripe meter event names, Lago metric codes,
    /// OpenMeter and Metronome event types).
    #[arg(long, default_value = "agentmeter")]
    pub event_prefix: String,
    /// Attempts per request (429, 5xx and connection errors are retried with backoff).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_attempts: u32,
}

/// The example files `agentmeter example` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExampleKind {
    /// A price book (`invoice --prices`).
    Prices,
    /// A flags policy (`flags --policy`).
    Policy,
    /// The service's configuration (`run --config`).
    Config,
    /// A tenant roster (`invoice --tenants`).
    Tenants,
    /// A usage API token file (`serve --api-tokens`).
    ApiTokens,
}

#[derive(Debug, Args)]
pub struct ExampleArgs {
    /// Which file.
    #[arg(value_enum)]
    pub kind: ExampleKind,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (agentmeter.1, agentmeter-ingest.1, ...) into this
    /// directory instead of printing agentmeter.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Auto,
    Ndjson,
    CwlSubscription,
    FilterLogEvents,
    OtlpProto,
}

/// The writer's default batch budget, in the MiB `--batch-mib` takes.
pub const DEFAULT_BATCH_MIB: u64 = (agentmeter_aggregate::DEFAULT_BATCH_BYTES >> 20) as u64;

const LIMITS: agentmeter_ingest::RecordLimits = agentmeter_ingest::RecordLimits::DEFAULT;

/// Limits on one record or batch other than its size; what is over one is quarantined as
/// `over_limit`.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Deepest JSON nesting of one log record (at most 128; OTLP requests are held to the
    /// parser's own 128).
    #[arg(long, default_value_t = LIMITS.json_depth as u64, value_parser = clap::value_parser!(u64).range(1..=128))]
    pub max_json_depth: u64,
    /// Most attributes of one span, and of one resource.
    #[arg(long, default_value_t = LIMITS.attributes as u64, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_attributes: u64,
    /// Most distinct tenants in one batch as delivered (a Kinesis record, an OTLP request, up
    /// to 8,192 lines of a file).
    #[arg(long, default_value_t = LIMITS.tenants_per_batch as u64, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_tenants_per_batch: u64,
    /// Most distinct users in one batch as delivered.
    #[arg(long, default_value_t = LIMITS.users_per_batch as u64, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_users_per_batch: u64,
}

impl Default for LimitArgs {
    fn default() -> Self {
        Self {
            max_json_depth: LIMITS.json_depth as u64,
            max_attributes: LIMITS.attributes as u64,
            max_tenants_per_batch: LIMITS.tenants_per_batch as u64,
            max_users_per_batch: LIMITS.users_per_batch as u64,
        }
    }
}

impl LimitArgs {
    /// The limits, in range by the parsers above.
    pub fn limits(&self) -> agentmeter_ingest::RecordLimits {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        agentmeter_ingest::RecordLimits {
            json_depth: n(self.max_json_depth),
            attributes: n(self.max_attributes),
            tenants_per_batch: n(self.max_tenants_per_batch),
            users_per_batch: n(self.max_users_per_batch),
        }
    }
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The lake: a directory (created if missing; must be empty or an agentmeter lake) or
    /// s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_lake)]
    pub lake: LakeLocation,
    /// Files or directories to read (directories recursively, hidden entries skipped),
    /// `kinesis://STREAM` (a stream name or ARN: every shard, checkpointed in the lake),
    /// `logs://LOG_GROUP?start=T[&end=T]` (a CloudWatch Logs backfill; T: RFC 3339 or
    /// YYYY-MM-DD, end exclusive) or `s3://BUCKET/PREFIX` (the objects not read before, by
    /// key and ETag).
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Where a Kinesis shard without a checkpoint starts: trim-horizon, latest or
    /// at-timestamp:RFC3339.
    #[arg(long, default_value = "trim-horizon", value_parser = parse_start)]
    pub start: agentmeter_ingest::kinesis::StartPosition,
    /// Keep reading Kinesis until SIGTERM or SIGINT (else stop when every shard is caught up).
    #[arg(long)]
    pub follow: bool,
    /// How often Kinesis data is committed to the lake and the checkpoints saved, ms.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_interval_ms: u64,
    /// With --follow: how often the rollups of the days written are rebuilt, ms.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rollup_interval_ms: u64,
    /// Input format; `auto` detects it per file (gzip is always detected).
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// Input field holding the tenant id (`tenant_id` is accepted as well).
    #[arg(long, default_value = "clinic_id")]
    pub tenant_field: String,
    /// Longest record accepted, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_record_bytes: usize,
    /// Largest decompressed payload or JSON document accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_payload_bytes: usize,
    /// Largest token count one call may report; above it the record is quarantined as
    /// `implausible_value`.
    #[arg(long, default_value_t = agentmeter_ingest::DEFAULT_MAX_TOKENS_PER_CALL)]
    pub max_tokens_per_call: i64,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Zone of log-file times written without one (Python's `asctime`): UTC, an offset such
    /// as +02:00, or an IANA name such as Europe/Berlin.
    #[arg(long, default_value = "UTC", value_parser = parse_zone)]
    pub log_timezone: agentmeter_ingest::LogTimezone,
    /// Time of usage lines that state none (no timestamp field, no time in their logging
    /// prefix): an RFC 3339 instant, or a date for its midnight UTC. Without it, such lines
    /// are quarantined as `missing_timestamp`.
    #[arg(long, value_name = "TIME", value_parser = parse_default_time)]
    pub default_time: Option<i64>,
    /// Events gathered before they are written (bounds memory).
    #[arg(long, default_value_t = 250_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_rows: u64,
    /// Most memory one batch holds, MiB, whatever its row count (a span takes several times
    /// an event's memory, so span batches are cut sooner).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_BATCH_MIB, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub batch_mib: u64,
    /// Decoder threads (default: the number of CPUs).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub workers: Option<u64>,
    /// Also write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// CREATE EXTERNAL TABLE statements for every table, with partition projection on `dt`.
    Athena(AthenaArgs),
}

#[derive(Debug, Args)]
pub struct AthenaArgs {
    /// Where the lake is in S3: `s3://bucket/prefix`.
    #[arg(long)]
    pub location: String,
    /// Database to create the tables in (unqualified names when omitted).
    #[arg(long)]
    pub database: Option<String>,
    /// First day of the `dt` partition projection range.
    #[arg(long, default_value = "2024-01-01")]
    pub since: String,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Output directory: inputs go to DIR/input, the expectation to DIR/expected.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed (same seed, same bytes).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Billing month, YYYY-MM.
    #[arg(long, default_value = "2026-10")]
    pub month: String,
    /// Number of tenants.
    #[arg(long, default_value_t = 50)]
    pub tenants: usize,
    /// Distinct valid usage events to generate.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Noisy-neighbour tenants (basic tier, above 20% of the pool).
    #[arg(long, default_value_t = 3)]
    pub noisy: usize,
    /// Include bad records of every kind.
    #[arg(long)]
    pub dirty: bool,
    /// Share of valid events delivered twice, per thousand.
    #[arg(long, default_value_t = 20)]
    pub duplicate_permille: u32,
    /// Share of premium-tier usage events that also get their agent's spans, per thousand.
    #[arg(long, default_value_t = agentmeter_synth::SynthConfig::default().span_permille)]
    pub span_permille: u32,
    /// Deliver every valid event (and its duplicates) in the NDJSON files only, as one
    /// single-format input for benchmarks; spans are unchanged.
    #[arg(long)]
    pub ndjson_only: bool,
    /// Share of usage events logged by reused Agent objects, per thousand: sessions of 2 to 5
    /// calls whose lines carry the running sum and a session_id.
    #[arg(long, default_value_t = 0)]
    pub reused_agent_permille: u32,
    /// Share of the other usage events whose call reports no usage (0 tokens in the log line
    /// and on its chat spans), per thousand.
    #[arg(long, default_value_t = 0)]
    pub missing_usage_permille: u32,
    /// Share of the basic tier's other usage events given a price class, per thousand: the
    /// priority, flex or batch service tier, a long-context prompt, or 1-hour cache writes.
    #[arg(long, default_value_t = 0)]
    pub price_class_permille: u32,
    /// Share of the premium tier's usage events logged (and traced) under the tenant's
    /// application inference profile ARN, per thousand; DIR/inference-profiles.json lists the
    /// profiles.
    #[arg(long, default_value_t = 0)]
    pub profile_arn_permille: u32,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working directory for the demo (inputs, lake); must be new, empty, or a previous demo's.
    #[arg(long, default_value = "demo")]
    pub dir: PathBuf,
    /// Number of tenants.
    #[arg(long, default_value_t = 50)]
    pub tenants: usize,
    /// Distinct valid usage events to generate.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
}

#[derive(Debug, Args)]
pub struct InvoiceArgs {
    /// The lake: a directory or s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_lake)]
    pub lake: LakeLocation,
    /// Billing period, YYYY-MM (a calendar month in UTC).
    #[arg(long)]
    pub period: String,
    /// Price book (TOML; `agentmeter example prices` prints a documented one).
    #[arg(long)]
    pub prices: PathBuf,
    /// Application inference profiles: a FILE holding the JSON of `aws bedrock
    /// list-inference-profiles --type-equals APPLICATION` (or an array of its pages, or
    /// `get-inference-profile` output), or `bedrock` to list them with the Bedrock API
    /// (standard AWS credentials, region and AWS_ENDPOINT_URL). Usage logged under a profile's
    /// ARN or id is priced as the model it routes to. The profiles are merged into the lake's
    /// copy, which runs without this option use; without either, such usage is unpriced.
    #[arg(long, value_name = "FILE|bedrock")]
    pub inference_profiles: Option<String>,
    /// AWS costs: a file holding GetCostAndUsage response JSON (one response or an array of
    /// pages), or `ce` to ask the Cost Explorer API (standard AWS credentials, region and
    /// AWS_ENDPOINT_URL). Without it, no cost is allocated.
    #[arg(long, value_name = "FILE|ce")]
    pub costs: Option<String>,
    /// Cost Explorer metric.
    #[arg(long, default_value = "UnblendedCost")]
    pub cost_metric: String,
    /// Cost-allocation tag whose values are the tiers.
    #[arg(long, default_value = "Tier")]
    pub cost_tag: String,
    /// Only costs with this tag value: KEY=VALUE[,VALUE...] (e.g. Application=HealthcareDemo).
    #[arg(long, value_name = "KEY=VALUES")]
    pub cost_filter: Option<String>,
    /// AgentCore Runtime costs (GetCostAndUsage response JSON grouped by the cost tag, as for
    /// --costs), split across each tier's tenants by their agent duration (`invoke_agent`
    /// spans).
    #[arg(long, value_name = "FILE")]
    pub runtime_costs: Option<PathBuf>,
    /// AgentCore Gateway costs (as --runtime-costs), split by tool calls (`execute_tool`
    /// spans).
    #[arg(long, value_name = "FILE")]
    pub gateway_costs: Option<PathBuf>,
    /// Roster of tenants to bill (TOML `[tenants]` id = "tier", or a `[tenants.<id>]` table
    /// with `tier` and the bill-to name, address, email and customer ids), and the `[issuer]`
    /// printed on the invoices; listed tenants without usage still get their base fee.
    #[arg(long)]
    pub tenants: Option<PathBuf>,
    /// Issue the period's invoices and close it: they are recorded in the lake, never priced
    /// again, and usage of the period that arrives later is billed in the next open period.
    #[arg(long, conflicts_with_all = ["reopen", "preview"])]
    pub close: bool,
    /// Reopen a closed period: credit notes cancel its invoices; the next --close issues
    /// replacement invoices that reference them.
    #[arg(long, conflicts_with = "preview")]
    pub reopen: bool,
    /// Price the open period to date into OUT/previews/YYYY-MM/: marked as a preview, neither
    /// numbered nor recorded.
    #[arg(long)]
    pub preview: bool,
    /// The issue date of documents issued by --close or --reopen (default: today, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub issue_date: Option<chrono::NaiveDate>,
    /// BillingAccountId in the FOCUS export (the AWS account that pays).
    #[arg(long, default_value = "unknown")]
    pub billing_account: String,
    /// Output directory: invoices go to OUT/invoices/YYYY-MM/.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the run summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Convert LiteLLM's model price JSON into a price book (to standard output or --out).
    ImportLitellm(ImportLitellmArgs),
    /// Check a price book and print what it prices.
    Check(CheckPricesArgs),
}

#[derive(Debug, Args)]
pub struct ImportLitellmArgs {
    /// LiteLLM's model_prices_and_context_window.json.
    pub file: PathBuf,
    /// Write the price book here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// LiteLLM providers to keep (repeatable).
    #[arg(long = "provider", default_values_t = ["bedrock".to_string(), "bedrock_converse".to_string()])]
    pub providers: Vec<String>,
    /// The book's version label (default: today's date).
    #[arg(long)]
    pub version: Option<String>,
    /// Date the imported prices take effect (default: today).
    #[arg(long)]
    pub effective_from: Option<String>,
    /// Also keep region-pinned keys (`bedrock/us-east-1/...`).
    #[arg(long)]
    pub keep_region_pinned: bool,
}

#[derive(Debug, Args)]
pub struct CheckPricesArgs {
    /// The price book.
    pub file: PathBuf,
}

/// How long a pending alert is kept by default: 7 days.
pub const DEFAULT_ALERT_MAX_AGE_HOURS: u32 = 7 * 24;

#[derive(Debug, Args)]
pub struct FlagsArgs {
    /// The lake: a directory or s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_lake)]
    pub lake: LakeLocation,
    /// A billing month to evaluate, YYYY-MM (or use --from and --to).
    #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
    pub period: Option<String>,
    /// Start of the range: YYYY-MM-DD or an RFC 3339 instant.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// End of the range (exclusive): YYYY-MM-DD or an RFC 3339 instant.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Policy file (TOML; `agentmeter example policy`); the seeds' defaults when omitted.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Price book that prices the policy's `usd` budgets (required when it has any).
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// Output directory: OUT/flags.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Where alerts go (repeatable): file:///path/alerts.jsonl, stdout, an http(s):// webhook
    /// URL (signed with AGENTMETER_WEBHOOK_SECRET or the file in AGENTMETER_WEBHOOK_SECRET_FILE),
    /// an SNS topic ARN, or an EventBridge bus ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME).
    #[arg(long = "alert", value_name = "SINK")]
    pub alerts: Vec<String>,
    /// Attempts per alert and webhook before the failure is recorded (and retried next run).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub alert_max_attempts: u32,
    /// Wait after a webhook's first failed attempt, doubling after each further failure (ms).
    #[arg(long, default_value_t = 500)]
    pub alert_backoff_ms: u64,
    /// Hours an alert a sink did not take is kept (in LAKE/_state/flags.json) and retried by
    /// later runs with that sink; older ones are dropped, logged and counted.
    #[arg(long, default_value_t = DEFAULT_ALERT_MAX_AGE_HOURS,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub alert_max_age_hours: u32,
    /// Print the flags as JSON lines instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The lake: a directory or s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_lake)]
    pub lake: LakeLocation,
    /// Billing month, YYYY-MM.
    #[arg(long)]
    pub period: String,
    /// The HTML file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Directory where `agentmeter invoice` and `agentmeter flags` wrote their outputs (for the
    /// cost-against-revenue chart and the flags table).
    #[arg(long)]
    pub outputs: Option<PathBuf>,
    /// Policy file (pool capacities for utilization charts).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Tenants to chart per tier.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The lake: a directory or s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_lake)]
    pub lake: LakeLocation,
    #[command(flatten)]
    pub range: DayRangeArgs,
    /// Write every line as CSV to this file (the differences are printed either way).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit with code 3 when any line does not match.
    #[arg(long)]
    pub fail_on_difference: bool,
}

#[derive(Debug, Args)]
pub struct RollupArgs {
    /// The lake: a directory or s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_lake)]
    pub lake: LakeLocation,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service's configuration (TOML; `agentmeter example config` documents every key).
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The lake: a directory or s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_lake)]
    pub lake: LakeLocation,
    /// First day to compact (YYYY-MM-DD; default: every partition).
    #[arg(long)]
    pub from: Option<chrono::NaiveDate>,
    /// End of the days to compact, YYYY-MM-DD, exclusive (the day after the last).
    #[arg(long)]
    pub to: Option<chrono::NaiveDate>,
    /// Rows per file at most.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rows_per_file: u64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The lake: a directory (created if missing; must be empty or an agentmeter lake) or
    /// s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_lake)]
    pub lake: LakeLocation,
    /// Address of the OTLP/HTTP receiver (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub otlp_http: std::net::SocketAddr,
    /// File holding the bearer token clients must send (else AGENTMETER_OTLP_TOKEN; else none).
    #[arg(long)]
    pub auth_token_file: Option<PathBuf>,
    /// Largest request body after decompression, bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Requests decoded or waiting on the log at once; more are answered 503.
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
    /// Largest token count one span may report; above it the span is quarantined as
    /// `implausible_value`.
    #[arg(long, default_value_t = agentmeter_ingest::DEFAULT_MAX_TOKENS_PER_CALL)]
    pub max_tokens_per_call: i64,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// How often acknowledged spans move from the write-ahead log into the lake, ms.
    #[arg(long, default_value_t = 2000)]
    pub flush_interval_ms: u64,
    /// Acknowledged spans waiting in the write-ahead log for the lake, MiB, beyond which
    /// requests are answered 503 until the flushes catch up.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_log_backlog_mib: u64,
    /// Input field holding the tenant id (`tenant_id` is accepted as well).
    #[arg(long, default_value = "clinic_id")]
    pub tenant_field: String,
    /// The write-ahead log's directory, on local disk, this receiver's alone (default:
    /// LAKE/_wal/otlp for a lake directory; ~/.local/state/agentmeter/wal/... for an S3 lake).
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// Turns on the usage API (GET /v1/usage, /v1/invoices/preview): a TOML file of token
    /// digests, each scoped to a tenant or to all (`agentmeter example api-tokens`).
    #[arg(long, value_name = "FILE")]
    pub api_tokens: Option<PathBuf>,
    /// Price book of the API's invoice previews (without it, previews are off).
    #[arg(long, value_name = "FILE", requires = "api_tokens")]
    pub prices: Option<PathBuf>,
    /// Tenant roster of the API's invoice previews (tiers of tenants without usage, bill-to).
    #[arg(long, value_name = "FILE", requires = "prices")]
    pub tenants: Option<PathBuf>,
}

fn parse_start(s: &str) -> Result<agentmeter_ingest::kinesis::StartPosition, String> {
    s.parse()
}

fn parse_zone(s: &str) -> Result<agentmeter_ingest::LogTimezone, String> {
    s.parse().map_err(|e: agentmeter_ingest::BadTimezone| e.to_string())
}

/// An RFC 3339 instant or a date (its midnight UTC), as milliseconds since the epoch.
fn parse_default_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis())
        .map_err(|_| {
            format!("{s:?} is neither an RFC 3339 instant (2026-10-01T08:00:00Z) nor a date (2026-10-01)")
        })
}
