//! `agentmeter gen`: a deterministic synthetic month of `inference_usage` logs in every input
//! format the ingest reads, and the exact report an ingest of it must produce.
//!
//! [`generate`] writes, under `out/input/`:
//!
//! - `ndjson/usage-YYYY-MM-DD.ndjson`: bare usage objects with their own `timestamp` and (95%)
//!   `event_id`; some with `actor_id` instead of `user_id`, some `\r\n` endings, a few blank
//!   lines, other event types, and some lines repeated further down with other spacing and key
//!   order.
//! - `cloudwatch/export-YYYY-MM-DD.ndjson.gz`: CloudWatch log events (`id`, `timestamp`,
//!   `message`) whose messages use every logger shape (bare JSON, the Lambda text prefix, the
//!   Node order, Python `logging`, the Lambda JSON format), mixed with platform lines,
//!   plain-text logs and JSON logs of other events.
//! - `firehose/usage-YYYY-MM-DD.gz`: concatenated gzip members, each a subscription
//!   DATA_MESSAGE of 1 to 50 log events, plus a CONTROL_MESSAGE and some retried deliveries.
//! - `export/filter-log-events-YYYY-MM-DD.json` on one or two days: the pretty document
//!   `aws logs filter-log-events` prints.
//! - `otlp/spans-YYYY-MM-DD.ndjson.gz`: the spans of the agents, as the OpenTelemetry
//!   Collector's file exporter writes them (one OTLP JSON `{"resourceSpans":[...]}` request
//!   per line), for [`SynthConfig::span_permille`] of the premium tier's usage events: per
//!   event (one agent invocation) an `invoke_agent` trace whose `chat` spans' tokens sum
//!   exactly to the event's, with tool calls, a few failing (their `exception` events hold a
//!   fake patient note), a handful of runaway invocations, some lines exported twice, and (when
//!   dirty) spans without a tenant.
//!
//! and `out/expected.json`, an [`Expected`]: the accounting, per-tenant and per-day totals and
//! the `usage_hourly` row count that an ingest of `out/input` into an empty lake must report,
//! and what the spans add: per tenant agent invocations, durations and tool calls
//! ([`AgentTotals`]) and the runaway invocations.
//! With [`SynthConfig::dirty`], bad records of every kind are mixed in (every quarantine
//! [`Reason`], hostile tenant ids among them) with known counts.
//! With [`SynthConfig::ndjson_only`], every valid event and its duplicates go to the
//! `ndjson/` files instead (a benchmark's single-format input); the counts stay exact.
//! [`SynthConfig::reused_agent_permille`] and [`SynthConfig::missing_usage_permille`] add two
//! shapes of real agent telemetry: reused Agent objects logging their lifetime usage per
//! session, and calls that report no usage; [`TenantTotals`] then also holds what the
//! pipeline must bill and count for them.
//!
//! # Determinism and memory
//!
//! The same configuration gives byte-identical files on any machine: every draw comes from a
//! ChaCha8 stream keyed by the seed and the day (so days are generated in parallel, in any
//! order), weights use only correctly rounded IEEE operations, and gzip runs at a fixed level.
//! Days are streamed to their files one hour at a time. Counts are known by construction rather
//! than by remembering ids: every valid event gets an id unique to it (its day and a sequence
//! number), and every extra delivery is one the generator chose to make.

#![deny(missing_docs)]

mod day;
mod deliver;
mod dirty;
mod otlp_text;
mod plan;
mod shapes;
mod spans;
#[cfg(test)]
mod tests;
mod write;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use agentmeter_schemas::{Accounting, Reason, Tokens};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use day::{Billed, Measures};
use plan::{Plan, TierKind};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Random seed: the same seed (and settings) gives the same bytes.
    pub seed: u64,
    /// First day of the billing month (UTC).
    pub month: NaiveDate,
    /// Number of tenants, at least 4: about 70% basic tier (`clinic-001`, ...), the rest
    /// premium (`hospital-001`, ...).
    pub tenants: usize,
    /// Distinct valid usage events in the month (exactly).
    pub events: u64,
    /// Basic-tier tenants that each take well over 20% of the basic pool's hourly requests
    /// (at most 4, and less than half the tenants).
    pub noisy: usize,
    /// Mix in bad records of every kind.
    pub dirty: bool,
    /// Share of valid events delivered twice, per thousand; also the share of span export
    /// lines written twice (a retried export).
    pub duplicate_permille: u32,
    /// Share of the premium tier's usage events whose agent invocation also has its spans in
    /// `otlp/`, per thousand (default 1000: every one). Basic-tier events never do.
    pub span_permille: u32,
    /// Deliver every valid event, and its duplicates, in the days' NDJSON files only (one
    /// input format, as a benchmark wants); spans are unchanged, and with [`Self::dirty`] the
    /// bad records stay in their formats. Files that would hold no record are not written.
    /// Left out of `expected.json` when off, so that the output without it does not change.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ndjson_only: bool,
    /// Share of usage events, per thousand, logged by reused Agent objects: each tenant's
    /// such events of an hour form sessions of 2 to 5 calls (one user and model) whose lines
    /// state the session's running sum and a `session_id`, which the pipeline bills as
    /// increments. Chat spans keep each call's own tokens. [`TenantTotals::billed`] and
    /// [`TenantTotals::cumulative_lines`] then hold the expectation. Left out of
    /// `expected.json` when 0 (the default), as is everything it adds.
    #[serde(skip_serializing_if = "is_zero")]
    pub reused_agent_permille: u32,
    /// Share of the other usage events, per thousand, whose call reports no usage (0 input,
    /// output and total tokens, in the log line and on its chat spans): usage unknown.
    /// [`TenantTotals::usage_unknown`] and [`TenantTotals::chat_usage_unknown`] then hold the
    /// expectation. Left out of `expected.json` when 0 (the default), as is what it adds.
    #[serde(skip_serializing_if = "is_zero")]
    pub missing_usage_permille: u32,
    /// Share of the basic tier's other usage events, per thousand, given a price class: the
    /// priority, flex or batch service tier, a long-context prompt, or 1-hour cache writes
    /// (see the `shapes` module). [`TenantTotals::classes`] then holds the expectation. Left
    /// out of `expected.json` when 0 (the default), as is what it adds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub price_class_permille: u32,
    /// Share of the premium tier's usage events, per thousand, logged (and traced) under the
    /// tenant's application inference profile ARN for the model; `out/inference-profiles.json`
    /// then lists every tenant's profiles as `aws bedrock list-inference-profiles` prints
    /// them, and [`TenantTotals::profiles`] holds the calls per profile. Left out of
    /// `expected.json` when 0 (the default), as is what it adds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub profile_arn_permille: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            month: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap_or_default(),
            tenants: 50,
            events: 200_000,
            noisy: 3,
            dirty: false,
            duplicate_permille: 20,
            span_permille: 1000,
            ndjson_only: false,
            reused_agent_permille: 0,
            missing_usage_permille: 0,
            price_class_permille: 0,
            profile_arn_permille: 0,
        }
    }
}

/// Most tenants accepted.
const MAX_TENANTS: usize = 10_000;
/// Most events accepted (ten billion).
const MAX_EVENTS: u64 = 10_000_000_000;

impl SynthConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A message naming the setting at fault and its value.
    pub fn validate(&self) -> Result<(), String> {
        if self.month.day() != 1 {
            return Err(format!("month must be the first day of a month, got {}", self.month));
        }
        if !(1970..=9998).contains(&self.month.year()) {
            return Err(format!(
                "month must be between 1970-01 and 9998-12, got {}",
                self.month.format("%Y-%m")
            ));
        }
        if !(4..=MAX_TENANTS).contains(&self.tenants) {
            return Err(format!(
                "tenants must be between 4 and {MAX_TENANTS}, got {}",
                self.tenants
            ));
        }
        if self.events > MAX_EVENTS {
            return Err(format!("events must be at most {MAX_EVENTS}, got {}", self.events));
        }
        if self.noisy * 2 >= self.tenants {
            return Err(format!(
                "noisy must be less than half of tenants ({}), got {}",
                self.tenants, self.noisy
            ));
        }
        if self.noisy > 4 {
            return Err(format!(
                "noisy must be at most 4 (each noisy tenant takes over 20% of the basic pool), \
                 got {}",
                self.noisy
            ));
        }
        if self.duplicate_permille > 1000 {
            return Err(format!(
                "duplicate_permille must be at most 1000, got {}",
                self.duplicate_permille
            ));
        }
        if self.span_permille > 1000 {
            return Err(format!("span_permille must be at most 1000, got {}", self.span_permille));
        }
        if self.reused_agent_permille > 1000 {
            return Err(format!(
                "reused_agent_permille must be at most 1000, got {}",
                self.reused_agent_permille
            ));
        }
        if self.profile_arn_permille > 1000 {
            return Err(format!(
                "profile_arn_permille must be at most 1000, got {}",
                self.profile_arn_permille
            ));
        }
        if self.price_class_permille > 1000 {
            return Err(format!(
                "price_class_permille must be at most 1000, got {}",
                self.price_class_permille
            ));
        }
        if self.missing_usage_permille > 1000 {
            return Err(format!(
                "missing_usage_permille must be at most 1000, got {}",
                self.missing_usage_permille
            ));
        }
        Ok(())
    }
}

/// Sums over distinct valid events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Usage events (inference calls).
    pub invocations: i64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Total tokens as the records state them (cache tokens included where reported).
    pub total_tokens: i64,
    /// Prompt-cache read tokens.
    pub cache_read_tokens: i64,
    /// Prompt-cache write tokens.
    pub cache_write_tokens: i64,
    /// Of those, the ones written for an hour (absent when 0).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub cache_write_1h_tokens: i64,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

impl Totals {
    /// Adds one event's tokens.
    pub fn add(&mut self, t: &Tokens) {
        self.invocations += 1;
        self.input_tokens += t.input;
        self.output_tokens += t.output;
        self.total_tokens += t.total;
        self.cache_read_tokens += t.cache_read;
        self.cache_write_tokens += t.cache_write;
        self.cache_write_1h_tokens += t.cache_write_1h;
    }
}

impl From<Measures> for Totals {
    fn from(m: Measures) -> Self {
        Self {
            invocations: m.invocations,
            input_tokens: m.input,
            output_tokens: m.output,
            total_tokens: m.total,
            cache_read_tokens: m.cache_read,
            cache_write_tokens: m.cache_write,
            cache_write_1h_tokens: m.cache_write_1h,
        }
    }
}

/// Sums over a UTC day's distinct valid events.
pub type DayTotals = Totals;

/// Sums over a tenant's distinct valid events, with its tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantTotals {
    /// The tenant's tier.
    pub tier: String,
    /// The sums of the lines as logged (`usage_events`).
    #[serde(flatten)]
    pub totals: Totals,
    /// With [`SynthConfig::reused_agent_permille`]: the sums as billed (`usage_hourly`), each
    /// line of a lifetime series as its increment over the line before, so every call's own
    /// tokens once. Without it, billed and logged are the same and this is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billed: Option<Totals>,
    /// With [`SynthConfig::reused_agent_permille`]: the lines billed as increments (every
    /// line of a session but its first): `usage_hourly.cumulative_lines`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cumulative_lines: Option<i64>,
    /// With [`SynthConfig::missing_usage_permille`]: the log lines that report no usage
    /// (`usage_hourly.usage_unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_unknown: Option<i64>,
    /// With [`SynthConfig::missing_usage_permille`]: the distinct `chat` spans that report no
    /// usage (`usage_hourly.chat_usage_unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_usage_unknown: Option<i64>,
    /// With [`SynthConfig::price_class_permille`]: the calls' own tokens (as billed) by price
    /// class, keyed `<service tier>/<prompt band>` (`standard/0`, `priority/0`,
    /// `standard/200000`, ...): `usage_hourly` summed by `service_tier` and `prompt_band`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<BTreeMap<String, Totals>>,
    /// With [`SynthConfig::profile_arn_permille`]: the calls logged under each of the tenant's
    /// application inference profile ARNs (premium tenants; empty for basic ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<BTreeMap<String, Totals>>,
}

impl TenantTotals {
    /// The sums as billed: [`Self::billed`], or the logged ones when that is absent.
    pub fn billed_totals(&self) -> Totals {
        self.billed.unwrap_or(self.totals)
    }
}

/// What a tenant's distinct valid spans add up to, as the lake's span rollup counts them:
/// every span once (copies from retried exports are duplicates), tool calls attributed to the
/// `invoke_agent` invocation they ran in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTotals {
    /// Distinct valid spans, of every operation.
    pub spans: i64,
    /// `invoke_agent` spans: agent invocations (one per traced usage event).
    pub agent_invocations: i64,
    /// Sum of the invocations' durations in ms (start and end floored to the millisecond).
    pub agent_duration_ms: i64,
    /// The longest invocation, ms.
    pub max_agent_duration_ms: i64,
    /// `execute_tool` spans.
    pub tool_calls: i64,
    /// `execute_tool` spans with status ERROR (code 2).
    pub tool_errors: i64,
    /// `chat` spans (model calls).
    pub model_calls: i64,
    /// Sums of the `chat` spans' token attributes, which equal the tokens of the traced usage
    /// events' calls exactly (`invocations` counts those events): as billed, not as a reused
    /// agent logs them. Basic-tier tenants and untraced events have none, so logs and spans
    /// reconcile exactly only for traced events.
    pub chat_tokens: Totals,
}

impl AgentTotals {
    /// Adds `o`'s counts.
    pub fn merge(&mut self, o: &AgentTotals) {
        self.spans += o.spans;
        self.agent_invocations += o.agent_invocations;
        self.agent_duration_ms += o.agent_duration_ms;
        self.max_agent_duration_ms = self.max_agent_duration_ms.max(o.max_agent_duration_ms);
        self.tool_calls += o.tool_calls;
        self.tool_errors += o.tool_errors;
        self.model_calls += o.model_calls;
        let (t, u) = (&mut self.chat_tokens, &o.chat_tokens);
        t.invocations += u.invocations;
        t.input_tokens += u.input_tokens;
        t.output_tokens += u.output_tokens;
        t.total_tokens += u.total_tokens;
        t.cache_read_tokens += u.cache_read_tokens;
        t.cache_write_tokens += u.cache_write_tokens;
        t.cache_write_1h_tokens += u.cache_write_1h_tokens;
    }
}

/// What an ingest of `out/input` into an empty lake must report, written to
/// `out/expected.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// The configuration that produced the files.
    pub config: SynthConfig,
    /// The run's accounting: records read (one per span for OTLP lines), distinct events and
    /// spans written, duplicates of each (none conflicting), skips by kind and quarantined
    /// records by reason.
    pub accounting: Accounting,
    /// Per tenant id (tenants with at least one event).
    pub tenants: BTreeMap<String, TenantTotals>,
    /// Per UTC day, `YYYY-MM-DD` (days with at least one event).
    pub days: BTreeMap<String, DayTotals>,
    /// Distinct (hour, tier, tenant, user, model) groups: the rows of `usage_hourly` (a tool
    /// span starting in the hour after its invocation's adds its group there).
    pub hourly_rows: u64,
    /// Per tenant id (tenants with at least one valid span): what their spans add up to.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentTotals>,
    /// `trace_id:span_id` of the invocations a default `runaway_session` policy flags (more
    /// than 10 tool calls, or longer than 300 s), sorted.
    #[serde(default)]
    pub runaway_invocations: Vec<String>,
    /// The noisy-neighbour tenants, which a 20% silo-migration rule must flag.
    pub noisy_tenants: Vec<String>,
    /// Every tenant id, by tier.
    pub tiers: BTreeMap<String, Vec<String>>,
    /// The malicious tenant id strings used by bad records (none unless dirty).
    pub hostile_tenant_ids: Vec<String>,
    /// The files written, relative to the output directory, in name order.
    pub files: Vec<String>,
}

impl Expected {
    /// One line for the CLI: events, spans, records, duplicates, tenants.
    pub fn summary_line(&self) -> String {
        let a = &self.accounting;
        format!(
            "{} distinct usage events and {} spans in {} input records ({} duplicate events, {} \
             duplicate spans, {} skipped, {} quarantined) for {} tenants over {} days",
            a.events_written,
            a.spans_written,
            a.records_read,
            a.duplicates,
            a.span_duplicates,
            a.skipped_total(),
            a.quarantined_total(),
            self.tenants.len(),
            self.days.len()
        )
    }
}

fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Generates the month of `cfg` into `out/input/` and writes `out/expected.json`.
///
/// `out/input` must not exist or be empty, so that no file of another run is mixed in.
///
/// # Errors
///
/// An invalid configuration ([`io::ErrorKind::InvalidInput`], naming the setting), a
/// non-empty `out/input` ([`io::ErrorKind::AlreadyExists`]), or a failed write.
pub fn generate(cfg: &SynthConfig, out: &Path) -> io::Result<Expected> {
    cfg.validate().map_err(invalid_input)?;
    let input = out.join("input");
    if input.exists() && fs::read_dir(&input)?.next().is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is not empty; generate into a new directory", input.display()),
        ));
    }
    for sub in ["ndjson", "cloudwatch", "firehose", "export"] {
        fs::create_dir_all(input.join(sub))?;
    }
    let plan = Plan::new(cfg);
    let days = day::run_all(&plan, &input)?;

    let mut accounting = Accounting::default();
    let mut files = Vec::new();
    if cfg.dirty {
        let notes = write::notes_document(&cfg.month.format("%B %Y").to_string());
        fs::write(input.join("export/notes.json"), notes)?;
        files.push("input/export/notes.json".to_owned());
        accounting.records_read += 1;
        *accounting.quarantined.entry(Reason::UnrecognizedFormat).or_default() += 1;
    }
    if cfg.ndjson_only {
        // The directories of the other formats, when nothing was written to them.
        for sub in ["cloudwatch", "firehose", "export"] {
            let dir = input.join(sub);
            if fs::read_dir(&dir)?.next().is_none() {
                fs::remove_dir(&dir)?;
            }
        }
    }
    let mut per_tenant = vec![Measures::default(); plan.tenants.len()];
    let mut billed = vec![Billed::default(); plan.tenants.len()];
    let mut chat_unknown = vec![0i64; plan.tenants.len()];
    let mut agents = vec![AgentTotals::default(); plan.tenants.len()];
    let mut runaway_invocations = Vec::new();
    let mut day_totals = BTreeMap::new();
    let mut hourly_rows = 0;
    for d in &days {
        accounting.merge(&d.tally.acc);
        accounting.merge(&d.spans.acc);
        for (sum, m) in per_tenant.iter_mut().zip(&d.tally.tenants) {
            sum.merge(m);
        }
        for (sum, b) in billed.iter_mut().zip(&d.tally.billed) {
            sum.merge(b);
        }
        for (sum, n) in chat_unknown.iter_mut().zip(&d.spans.chat_unknown) {
            *sum += n;
        }
        for (sum, a) in agents.iter_mut().zip(&d.spans.agents) {
            sum.merge(a);
        }
        runaway_invocations.extend(d.spans.runaway.iter().cloned());
        if d.tally.day.invocations > 0 {
            day_totals.insert(d.date.format("%Y-%m-%d").to_string(), DayTotals::from(d.tally.day));
        }
        hourly_rows += d.tally.hourly_rows;
        files.extend(d.files.iter().chain(&d.spans.files).map(|f| format!("input/{f}")));
    }
    files.sort();
    runaway_invocations.sort();

    let mut tenants = BTreeMap::new();
    let mut tiers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut agent_totals = BTreeMap::new();
    let (reused, missing) = (cfg.reused_agent_permille > 0, cfg.missing_usage_permille > 0);
    for (i, ((t, m), a)) in plan.tenants.iter().zip(&per_tenant).zip(&agents).enumerate() {
        tiers.entry(t.tier.as_str().to_owned()).or_default().push(t.id.clone());
        if a.spans > 0 {
            agent_totals.insert(t.id.clone(), *a);
        }
        if m.invocations > 0 {
            let b = &billed[i];
            tenants.insert(
                t.id.clone(),
                TenantTotals {
                    tier: t.tier.as_str().to_owned(),
                    totals: Totals::from(*m),
                    billed: reused.then(|| Totals::from(b.calls)),
                    cumulative_lines: reused.then_some(b.cumulative_lines),
                    usage_unknown: missing.then_some(b.usage_unknown),
                    chat_usage_unknown: missing.then_some(chat_unknown[i]),
                    classes: (cfg.price_class_permille > 0).then(|| {
                        b.classes
                            .iter()
                            .map(|((t, band), m)| (format!("{t}/{band}"), Totals::from(*m)))
                            .collect()
                    }),
                    profiles: (cfg.profile_arn_permille > 0).then(|| {
                        b.profiles
                            .iter()
                            .map(|(&model, m)| {
                                (plan::profile_arn(cfg.seed, i, model), Totals::from(*m))
                            })
                            .collect()
                    }),
                },
            );
        }
    }
    let expected = Expected {
        config: cfg.clone(),
        accounting,
        tenants,
        days: day_totals,
        hourly_rows,
        agents: agent_totals,
        runaway_invocations,
        noisy_tenants: plan.noisy.iter().map(|&i| plan.tenants[i].id.clone()).collect(),
        tiers,
        hostile_tenant_ids: if cfg.dirty { dirty::hostile_tenant_ids() } else { Vec::new() },
        files,
    };
    if cfg.profile_arn_permille > 0 {
        // Every premium tenant's profiles, one per model it may call, as the CLI lists them.
        let mut summaries = Vec::new();
        for (i, t) in plan.tenants.iter().enumerate().filter(|(_, t)| t.tier == TierKind::Premium) {
            for model in [1, plan::HAIKU] {
                let arn = plan::profile_arn(cfg.seed, i, model);
                let id = arn.rsplit('/').next().unwrap_or_default().to_owned();
                summaries.push(serde_json::json!({
                    "inferenceProfileName": format!("{}-{}", t.id, plan::MODELS[usize::from(model)]),
                    "inferenceProfileArn": arn,
                    "inferenceProfileId": id,
                    "models": [{"modelArn": plan::profile_model_arn(model)}],
                    "status": "ACTIVE",
                    "type": "APPLICATION",
                }));
            }
        }
        let listing = serde_json::json!({ "inferenceProfileSummaries": summaries });
        let text = serde_json::to_string_pretty(&listing).map_err(io::Error::other)?;
        fs::write(out.join("inference-profiles.json"), text + "\n")?;
    }
    let mut text = serde_json::to_string_pretty(&expected).map_err(io::Error::other)?;
    text.push('\n');
    let tmp = out.join(".expected.json.tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, out.join("expected.json"))?;
    Ok(expected)
}
