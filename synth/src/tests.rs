//! The generator checked against the crate's own decoder: what it says an ingest must find is
//! what the pipeline finds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use agentmeter_schemas::{
    Accounting, AgentSpan, Reason, SkipKind, SourceUri, SpanStatus, SpanTokens, Tokens,
};

use super::otlp_text::NOTE_MARK;
use super::spans::{RUNAWAY_MS, RUNAWAY_TOOL_CALLS};
use super::*;
use agentmeter_ingest::pipeline::{self, Sink};
use agentmeter_ingest::source::{self, Format, SourceSpec};
use agentmeter_ingest::{DecodeConfig, Decoder, Outcome};

mod shapes;

/// A `usage_hourly` row's key: hour, tier, tenant, user, model, service tier, prompt band.
type HourlyGroup = (i64, String, String, String, String, String, i64);

/// (tenant, user, model, event time in ms) of a usage event.
type EventKey = (String, String, String, i64);

/// A distinct event that names a session: (tenant, session id), then its UTC day, time, id and
/// tokens.
type SessionLine = ((String, String), (i64, i64, String, Tokens));

/// The lines (time, id, tokens) of each session of a day, by (tenant, session id, day).
type Sessions<'a> = BTreeMap<(&'a str, &'a str, i64), Vec<(i64, &'a str, Tokens)>>;

/// A sink that does what an ingest into an empty lake does with the outcomes: dedup by event
/// id and by span identity (first delivery wins), count everything, and sum the distinct
/// events; the distinct spans are kept for [`agent_totals`].
#[derive(Default)]
struct Check {
    /// Distinct valid spans.
    spans: Vec<AgentSpan>,
    span_seen: HashMap<String, u64>,
    /// Tokens of the distinct events, by tenant, user, model and time.
    events: HashMap<EventKey, Vec<Tokens>>,
    /// Outcomes holding text of a span event (a patient note).
    leaks: u64,
    acc: Accounting,
    seen: HashMap<String, u64>,
    tenants: BTreeMap<String, TenantTotals>,
    days: BTreeMap<String, DayTotals>,
    hourly: HashSet<HourlyGroup>,
    /// Per tenant, the decoded events' tokens by price class (`<service tier>/<prompt band>`).
    classes: BTreeMap<String, BTreeMap<String, Totals>>,
    /// Per tenant, the decoded events' tokens under each application inference profile ARN.
    profiles: BTreeMap<String, BTreeMap<String, Totals>>,
    /// (hour, tier, tenant) of each distinct event.
    requests: Vec<(i64, String, String)>,
    /// The distinct events that name a session.
    session_lines: Vec<SessionLine>,
    /// Per tenant, distinct events that report no usage.
    unknown: BTreeMap<String, i64>,
}

impl Sink for Check {
    type Error = Infallible;

    fn source_started(&mut self, _: &SourceSpec) -> Result<(), Infallible> {
        Ok(())
    }

    fn lineage(&mut self, _: &SourceUri) -> Result<(), Infallible> {
        Ok(())
    }

    fn outcome(&mut self, outcome: Outcome) -> Result<(), Infallible> {
        self.acc.records_read += 1;
        if format!("{outcome:?}").contains(NOTE_MARK) {
            self.leaks += 1;
        }
        match outcome {
            Outcome::Event(e) => {
                let fingerprint = e.content_fingerprint();
                if let Some(&first) = self.seen.get(e.event_id.as_str()) {
                    self.acc.duplicates += 1;
                    if first != fingerprint {
                        self.acc.conflicting_duplicates += 1;
                    }
                    return Ok(());
                }
                self.seen.insert(e.event_id.as_str().to_owned(), fingerprint);
                self.acc.events_written += 1;
                let (tier, tenant) = (e.tier.to_string(), e.tenant_id.to_string());
                if e.tokens.input == 0 && e.tokens.total == 0 {
                    self.acc.usage_unknown += 1;
                    *self.unknown.entry(tenant.clone()).or_default() += 1;
                }
                if let Some(session) = &e.session_id {
                    self.session_lines.push((
                        (tenant.clone(), session.to_string()),
                        (
                            e.event_time_ms.div_euclid(86_400_000),
                            e.event_time_ms,
                            e.event_id.to_string(),
                            e.tokens,
                        ),
                    ));
                }
                let t = self
                    .tenants
                    .entry(tenant.clone())
                    .or_insert_with(|| TenantTotals { tier: tier.clone(), ..Default::default() });
                assert_eq!(t.tier, tier, "{tenant} changed tier");
                t.totals.add(&e.tokens);
                self.days.entry(e.date().unwrap().to_string()).or_default().add(&e.tokens);
                let hour = e.event_time_ms.div_euclid(3_600_000);
                // The band of the line as logged: a lifetime series' lines (the only ones
                // billed otherwise) are generated far below every band.
                let band = agentmeter_schemas::prompt_band(&e.tokens);
                self.hourly.insert((
                    hour,
                    tier.clone(),
                    tenant.clone(),
                    e.user_id.to_string(),
                    e.model_id.to_string(),
                    e.service_tier.to_string(),
                    band,
                ));
                self.classes
                    .entry(tenant.clone())
                    .or_default()
                    .entry(format!("{}/{band}", e.service_tier))
                    .or_default()
                    .add(&e.tokens);
                if e.model_id.as_str().contains(":application-inference-profile/") {
                    self.profiles
                        .entry(tenant.clone())
                        .or_default()
                        .entry(e.model_id.to_string())
                        .or_default()
                        .add(&e.tokens);
                }
                self.events
                    .entry((
                        tenant.clone(),
                        e.user_id.to_string(),
                        e.model_id.to_string(),
                        e.event_time_ms,
                    ))
                    .or_default()
                    .push(e.tokens);
                self.requests.push((hour, tier, tenant));
            }
            Outcome::Skip(k) => *self.acc.skipped.entry(k).or_default() += 1,
            Outcome::Reject(q) => *self.acc.quarantined.entry(q.reason).or_default() += 1,
            Outcome::Span(s) => {
                let fingerprint = s.content_fingerprint();
                if let Some(&first) = self.span_seen.get(&s.key()) {
                    self.acc.span_duplicates += 1;
                    if first != fingerprint {
                        self.acc.conflicting_duplicates += 1;
                    }
                    return Ok(());
                }
                self.span_seen.insert(s.key(), fingerprint);
                self.acc.spans_written += 1;
                if is_op(&s, "chat")
                    && s.tokens.input.unwrap_or(0) == 0
                    && s.tokens.total.unwrap_or(0) == 0
                {
                    self.acc.span_usage_unknown += 1;
                }
                self.spans.push(*s);
            }
        }
        Ok(())
    }

    fn source_finished(&mut self, _: &SourceSpec) -> Result<(), Infallible> {
        Ok(())
    }
}

fn ingest(out: &Path) -> Check {
    let specs = source::expand(&[out.join("input")], Format::Auto).unwrap();
    let mut sink = Check::default();
    pipeline::run(&specs, &Decoder::default(), 2, &AtomicU64::new(0), &mut sink).unwrap();
    sink
}

fn is_op(s: &AgentSpan, op: &str) -> bool {
    s.operation.as_deref() == Some(op)
}

/// Per tenant, what the lake's span rollup finds in distinct spans (reimplemented simply: per
/// day of the spans' start, tool spans attributed to the nearest `invoke_agent` ancestor), and
/// the invocations a default `runaway_session` policy flags.
fn agent_totals(spans: &[AgentSpan]) -> (BTreeMap<String, AgentTotals>, Vec<String>) {
    let mut totals: BTreeMap<String, AgentTotals> = BTreeMap::new();
    let mut by_day: BTreeMap<i64, Vec<&AgentSpan>> = BTreeMap::new();
    for s in spans {
        by_day.entry(s.start_ms.div_euclid(86_400_000)).or_default().push(s);
        let a = totals.entry(s.tenant_id.to_string()).or_default();
        a.spans += 1;
        if is_op(s, "invoke_agent") {
            a.agent_invocations += 1;
            a.agent_duration_ms += s.duration_ms();
            a.max_agent_duration_ms = a.max_agent_duration_ms.max(s.duration_ms());
            a.chat_tokens.invocations += 1;
        } else if is_op(s, "execute_tool") {
            a.tool_calls += 1;
            a.tool_errors += i64::from(s.status == SpanStatus::Error);
        } else if is_op(s, "chat") {
            a.model_calls += 1;
            let t = s.tokens;
            let c = &mut a.chat_tokens;
            c.input_tokens += t.input.unwrap_or(0);
            c.output_tokens += t.output.unwrap_or(0);
            c.total_tokens += t.total.unwrap_or(0);
            c.cache_read_tokens += t.cache_read.unwrap_or(0);
            c.cache_write_tokens += t.cache_write.unwrap_or(0);
        }
    }
    let mut runaway = Vec::new();
    for day in by_day.values() {
        let index: HashMap<(&str, &str), &AgentSpan> =
            day.iter().map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), *s)).collect();
        let mut tools: HashMap<String, i64> = HashMap::new();
        for s in day.iter().filter(|s| is_op(s, "execute_tool")) {
            let mut at = *s;
            while !is_op(at, "invoke_agent") {
                let parent = at.parent_span_id.as_deref().expect("a tool runs in an invocation");
                at = index[&(at.trace_id.as_str(), parent)];
            }
            *tools.entry(at.key()).or_default() += 1;
        }
        for s in day.iter().filter(|s| is_op(s, "invoke_agent")) {
            let calls = tools.get(&s.key()).copied().unwrap_or(0);
            if calls > RUNAWAY_TOOL_CALLS || s.duration_ms() > RUNAWAY_MS {
                runaway.push(s.key());
            }
        }
    }
    runaway.sort();
    (totals, runaway)
}

fn assert_matches(expected: &Expected, got: &Check) {
    assert_eq!(got.acc, expected.accounting);
    assert!(expected.accounting.balances());
    assert_eq!(expected.accounting.conflicting_duplicates, 0);
    assert_eq!(got.tenant_totals(&expected.config), expected.tenants);
    assert_eq!(got.days, expected.days);
    assert_eq!(got.hourly_rows(), expected.hourly_rows);
    assert_eq!(expected.accounting.events_written, expected.config.events);
    let (agents, runaway) = agent_totals(&got.spans);
    assert_eq!(agents, expected.agents);
    assert_eq!(runaway, expected.runaway_invocations);
    assert_eq!(got.leaks, 0, "a span event's text reached a decoded outcome");
    // A reused agent's session: 2 to 5 lines of one UTC day that pass the lifetime rule.
    let mut days: HashMap<(&str, &str), i64> = HashMap::new();
    for ((tenant, session, day), lines) in got.sessions() {
        if !session.starts_with("agent-") {
            assert_eq!(lines.len(), 1, "a per-request session id is used once: {session}");
            continue;
        }
        assert!(expected.config.reused_agent_permille > 0, "{session}");
        assert!((2..=5).contains(&lines.len()), "{tenant} {session}: {} lines", lines.len());
        let tokens: Vec<Tokens> = lines.iter().map(|l| l.2).collect();
        assert!(lifetime_series(&tokens), "{tenant} {session}: {tokens:?}");
        assert!(days.insert((tenant, session), day).is_none(), "{session} spans two days");
    }
    // Only premium tenants have spans; with every premium event traced, their chat spans
    // reconcile exactly with their logs.
    for (tenant, a) in &expected.agents {
        let t = &expected.tenants[tenant];
        assert_eq!(t.tier, "premium", "{tenant}");
        if expected.config.span_permille == 1000 {
            assert_eq!(a.chat_tokens, t.billed_totals(), "{tenant}");
        }
    }
}

/// The pipeline's rule for a lifetime series (aggregate's `sessions`), restated: at least two
/// lines, the first with input and output, each step growing input by at least half the first
/// line's input, output and total by at least one, cache counts never shrinking.
fn lifetime_series(lines: &[Tokens]) -> bool {
    let first = lines[0];
    lines.len() >= 2
        && first.input > 0
        && first.output > 0
        && lines.windows(2).all(|w| {
            2 * (w[1].input - w[0].input) >= first.input
                && w[1].output > w[0].output
                && w[1].total > w[0].total
                && w[1].cache_read >= w[0].cache_read
                && w[1].cache_write >= w[0].cache_write
        })
}

impl Check {
    /// The decoded events' lines of each session of a day, in the order the pipeline reads
    /// them (time, then id), by (tenant, session id, day).
    fn sessions(&self) -> Sessions<'_> {
        let mut out = Sessions::new();
        for ((tenant, session), (day, time, id, tokens)) in &self.session_lines {
            out.entry((tenant, session, *day)).or_default().push((*time, id, *tokens));
        }
        for lines in out.values_mut() {
            lines.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        }
        out
    }

    /// Per tenant, the sums of the decoded events as `expected.json` states them: as logged,
    /// and, with the shapes, as billed (each line of a lifetime series as its increment over
    /// the line before), the lines so billed, and the log lines and chat spans without usage.
    fn tenant_totals(&self, cfg: &SynthConfig) -> BTreeMap<String, TenantTotals> {
        let mut repeated: BTreeMap<&str, (Tokens, i64)> = BTreeMap::new();
        for ((tenant, ..), lines) in self.sessions() {
            let tokens: Vec<Tokens> = lines.iter().map(|l| l.2).collect();
            if lifetime_series(&tokens) {
                let r = repeated.entry(tenant).or_default();
                for t in &tokens[..tokens.len() - 1] {
                    r.0 = r.0.checked_add(t).unwrap();
                    r.1 += 1;
                }
            }
        }
        let mut chat_unknown: BTreeMap<String, i64> = BTreeMap::new();
        for s in self.spans.iter().filter(|s| is_op(s, "chat")) {
            if s.tokens.input.unwrap_or(0) == 0 && s.tokens.total.unwrap_or(0) == 0 {
                *chat_unknown.entry(s.tenant_id.to_string()).or_default() += 1;
            }
        }
        let mut out = self.tenants.clone();
        for (tenant, t) in &mut out {
            if cfg.reused_agent_permille > 0 {
                let (r, n) = repeated.get(tenant.as_str()).copied().unwrap_or_default();
                let mut b = t.totals;
                less_repeated(&mut b, &r);
                t.billed = Some(b);
                t.cumulative_lines = Some(n);
            }
            if cfg.missing_usage_permille > 0 {
                t.usage_unknown = Some(self.unknown.get(tenant).copied().unwrap_or(0));
                t.chat_usage_unknown = Some(chat_unknown.get(tenant).copied().unwrap_or(0));
            }
            if cfg.price_class_permille > 0 {
                let mut classes = self.classes.get(tenant).cloned().unwrap_or_default();
                // Lifetime series are standard calls of band 0, billed as increments.
                if let Some((r, _)) = repeated.get(tenant.as_str()) {
                    less_repeated(classes.entry("standard/0".into()).or_default(), r);
                }
                t.classes = Some(classes);
            }
            if cfg.profile_arn_permille > 0 {
                t.profiles = Some(self.profiles.get(tenant).cloned().unwrap_or_default());
            }
        }
        out
    }

    /// The rows of `usage_hourly`: the groups of the distinct events, and those of the tool
    /// and agent spans (user and model of their invocation) and chat spans (their own model).
    fn hourly_rows(&self) -> u64 {
        let mut groups: HashSet<HourlyGroup> = self.hourly.iter().cloned().collect();
        let roots: HashMap<(&str, &str), &AgentSpan> =
            self.spans.iter().map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), s)).collect();
        for s in &self.spans {
            if !["execute_tool", "invoke_agent", "chat"].iter().any(|op| is_op(s, op)) {
                continue;
            }
            let mut at = s;
            while !is_op(at, "invoke_agent") {
                let parent = at.parent_span_id.as_deref().unwrap();
                at = roots[&(at.trace_id.as_str(), parent)];
            }
            groups.insert((
                s.start_ms.div_euclid(3_600_000),
                s.tier.to_string(),
                s.tenant_id.to_string(),
                at.user_id.as_ref().unwrap().to_string(),
                s.model_id
                    .as_ref()
                    .filter(|_| is_op(s, "chat"))
                    .or(at.model_id.as_ref())
                    .unwrap()
                    .to_string(),
                "standard".to_owned(),
                s.chat_tokens().map_or(0, |t| agentmeter_schemas::prompt_band(&t)),
            ));
        }
        groups.len() as u64
    }
}

/// `t` less the tokens that lifetime-series lines repeated (billed as increments instead).
fn less_repeated(t: &mut Totals, r: &Tokens) {
    t.input_tokens -= r.input;
    t.output_tokens -= r.output;
    t.total_tokens -= r.total;
    t.cache_read_tokens -= r.cache_read;
    t.cache_write_tokens -= r.cache_write;
}

/// A small dirty month, generated and decoded once for the tests that need it.
fn dirty_month() -> &'static (Expected, Check) {
    static MONTH: OnceLock<(Expected, Check)> = OnceLock::new();
    MONTH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig { tenants: 8, events: 20_000, dirty: true, ..SynthConfig::default() };
        let expected = generate(&cfg, dir.path()).unwrap();
        (expected, ingest(dir.path()))
    })
}

#[test]
fn a_dirty_month_decodes_to_exactly_the_expectation() {
    let (expected, got) = dirty_month();
    assert_matches(expected, got);
    let a = &expected.accounting;
    for r in Reason::ALL {
        assert!(a.quarantined.get(&r).copied().unwrap_or(0) > 0, "no record quarantined as {r}");
    }
    for k in SkipKind::ALL {
        assert!(a.skipped.get(&k).copied().unwrap_or(0) > 0, "no record skipped as {k}");
    }
    assert_eq!(a.quarantined[&Reason::TooLarge], 1);
    assert_eq!(a.quarantined[&Reason::UnrecognizedFormat], 1);
    // About 2% delivered twice (a retried payload delivers its events again).
    let share = a.duplicates as f64 / a.events_written as f64;
    assert!((0.01..0.04).contains(&share), "duplicate share {share}");
    // Hostile ids were refused, never attributed.
    assert!(expected.hostile_tenant_ids.len() >= 10);
    let known: HashSet<&String> = expected.tiers.values().flatten().collect();
    assert!(got.tenants.keys().all(|t| known.contains(t)));
    assert!(expected.hostile_tenant_ids.iter().all(|h| !got.tenants.contains_key(h)));
    assert!(expected.files.iter().all(|f| f.starts_with("input/")));
    assert!(expected.files.iter().any(|f| f.starts_with("input/export/filter-log-events-")));
    assert!(expected.files.iter().any(|f| f.starts_with("input/otlp/spans-")));
    // Spans: some exported twice, the few without a tenant quarantined, runaways.
    assert!(a.spans_written > a.events_written, "{} spans", a.spans_written);
    assert!(a.span_duplicates > 0);
    assert_eq!(expected.runaway_invocations.len(), 5, "{:?}", expected.runaway_invocations);
    let tools: i64 = expected.agents.values().map(|a| a.tool_calls).sum();
    let errors: i64 = expected.agents.values().map(|a| a.tool_errors).sum();
    let share = errors as f64 / tools as f64;
    assert!((0.015..0.05).contains(&share), "tool error share {share}");
    let max = expected.agents.values().map(|a| a.max_agent_duration_ms).max().unwrap();
    assert!(max > 300_000, "a long runaway: {max} ms");
    let premium = expected.tenants.values().filter(|t| t.tier == "premium").count();
    assert_eq!(expected.agents.len(), premium);
}

#[test]
fn a_clean_month_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        seed: 7,
        month: NaiveDate::from_ymd_opt(2027, 2, 1).unwrap(),
        tenants: 5,
        events: 4_000,
        noisy: 1,
        duplicate_permille: 0,
        ..SynthConfig::default()
    };
    let expected = generate(&cfg, dir.path()).unwrap();
    assert_matches(&expected, &ingest(dir.path()));
    let a = &expected.accounting;
    assert_eq!(a.duplicates, 0);
    assert_eq!(a.span_duplicates, 0);
    assert!(a.spans_written > 0);
    assert!(a.quarantined.is_empty(), "{:?}", a.quarantined);
    assert!(expected.hostile_tenant_ids.is_empty());
    assert_eq!(expected.days.len(), 28);
    assert!(expected.days.keys().all(|d| d.starts_with("2027-02-")));
    let tiers: Vec<_> = expected.tiers.iter().map(|(t, v)| (t.as_str(), v.len())).collect();
    assert_eq!(tiers, [("basic", 4), ("premium", 1)]);
}

#[test]
fn noisy_tenants_stand_out_hour_after_hour() {
    let (expected, got) = dirty_month();
    let mut pool: BTreeMap<i64, u64> = BTreeMap::new();
    let mut per: BTreeMap<(&str, i64), u64> = BTreeMap::new();
    for (hour, tier, tenant) in &got.requests {
        if tier == "basic" {
            *pool.entry(*hour).or_default() += 1;
            *per.entry((tenant.as_str(), *hour)).or_default() += 1;
        }
    }
    // tenant -> (active hours, hours over 20% of the pool)
    let mut stats: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for ((tenant, hour), n) in &per {
        let s = stats.entry(tenant).or_default();
        s.0 += 1;
        if n * 5 > pool[hour] {
            s.1 += 1;
        }
    }
    assert_eq!(expected.noisy_tenants.len(), 3);
    for (tenant, (active, over)) in &stats {
        let noisy = expected.noisy_tenants.iter().any(|n| n == tenant);
        let share = *over as f64 / *active as f64;
        if noisy {
            assert!(share >= 0.6, "noisy {tenant} over 20% in only {over} of {active} hours");
        } else {
            assert!(share <= 0.1, "quiet {tenant} over 20% in {over} of {active} hours");
        }
    }
    for n in &expected.noisy_tenants {
        assert!(expected.tiers["basic"].contains(n));
        assert!(stats.contains_key(n.as_str()));
    }
}

#[test]
fn edge_configurations_still_match() {
    let d = SynthConfig::default;
    for cfg in [
        SynthConfig { tenants: 4, noisy: 1, events: 0, dirty: true, ..d() },
        SynthConfig { tenants: 4, noisy: 0, events: 300, duplicate_permille: 1000, ..d() },
        SynthConfig { tenants: 9, noisy: 4, events: 2_000, duplicate_permille: 500, ..d() },
        SynthConfig {
            month: NaiveDate::from_ymd_opt(2028, 2, 1).unwrap(),
            tenants: 40,
            events: 1_000,
            ..d()
        },
        SynthConfig { tenants: 6, noisy: 2, events: 1_500, span_permille: 0, ..d() },
        SynthConfig { tenants: 6, noisy: 2, events: 1_500, span_permille: 300, dirty: true, ..d() },
        SynthConfig {
            tenants: 4,
            noisy: 1,
            events: 3_000,
            duplicate_permille: 300,
            reused_agent_permille: 1000,
            missing_usage_permille: 1000,
            ..d()
        },
        SynthConfig {
            tenants: 5,
            noisy: 1,
            events: 2_000,
            ndjson_only: true,
            dirty: true,
            reused_agent_permille: 400,
            ..d()
        },
        SynthConfig { tenants: 5, noisy: 1, events: 2_000, missing_usage_permille: 50, ..d() },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let expected = generate(&cfg, dir.path()).unwrap();
        assert_matches(&expected, &ingest(dir.path()));
        assert_eq!(expected.noisy_tenants.len(), cfg.noisy);
        assert_eq!(expected.tiers.values().map(Vec::len).sum::<usize>(), cfg.tenants);
        if cfg.span_permille == 0 && !cfg.dirty {
            assert!(expected.agents.is_empty());
            assert!(expected.files.iter().all(|f| !f.starts_with("input/otlp/")));
        }
    }
}

#[test]
fn an_ndjson_only_month_has_every_event_in_its_ndjson_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        tenants: 8,
        events: 20_000,
        span_permille: 0,
        ndjson_only: true,
        ..SynthConfig::default()
    };
    let expected = generate(&cfg, dir.path()).unwrap();
    assert_matches(&expected, &ingest(dir.path()));
    // One NDJSON file a day and nothing else.
    assert_eq!(expected.files.len(), 31);
    assert!(expected.files.iter().all(|f| f.starts_with("input/ndjson/usage-")));
    let inputs: Vec<_> = snapshot(dir.path()).into_iter().map(|f| f.0).collect();
    assert_eq!(inputs.len(), 32, "the NDJSON files and expected.json: {inputs:?}");
    assert!(inputs.iter().all(|p| p.starts_with("input/ndjson") || p.ends_with("expected.json")));
    let a = &expected.accounting;
    let share = a.duplicates as f64 / a.events_written as f64;
    assert!((0.01..0.03).contains(&share), "duplicate share {share}");
    assert!(a.skipped[&SkipKind::OtherEvent] > 0);
    let text = std::fs::read_to_string(dir.path().join("expected.json")).unwrap();
    assert!(text.contains("\"ndjson_only\": true"));
    let written: Expected = serde_json::from_str(&text).unwrap();
    assert_eq!(written, expected);

    // Spans and bad records keep their own files; the counts stay exact.
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig { dirty: true, span_permille: 1000, ..cfg };
    let expected = generate(&cfg, dir.path()).unwrap();
    assert_matches(&expected, &ingest(dir.path()));
    assert!(expected.files.iter().any(|f| f.starts_with("input/otlp/spans-")));
    assert!(expected.accounting.spans_written > 0);

    // Off, the option is not written, so expected.json is what it was before it existed.
    let off = serde_json::to_string(&SynthConfig::default()).unwrap();
    assert!(!off.contains("ndjson_only"), "{off}");
}

/// Every file under `dir`, relative path and bytes, in name order.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let mut entries: Vec<_> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((p.strip_prefix(root).unwrap().to_owned(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let cfg = SynthConfig {
        tenants: 7,
        events: 3_000,
        noisy: 2,
        dirty: true,
        month: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        ..SynthConfig::default()
    };
    let (a, b, c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ea = generate(&cfg, a.path()).unwrap();
    let eb = generate(&cfg, b.path()).unwrap();
    assert_eq!(ea, eb);
    let (sa, sb) = (snapshot(a.path()), snapshot(b.path()));
    assert_eq!(sa.len(), ea.files.len() + 1, "the inputs and expected.json");
    assert_eq!(
        sa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        sb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in sa.iter().zip(&sb) {
        assert!(x == y, "{} differs between two runs", name.display());
    }
    let written: Expected =
        serde_json::from_slice(&std::fs::read(a.path().join("expected.json")).unwrap()).unwrap();
    assert_eq!(written, ea);

    assert!(ea.files.iter().any(|f| f.starts_with("input/otlp/spans-")));
    assert!(!ea.runaway_invocations.is_empty());

    let ec = generate(&SynthConfig { seed: 43, ..cfg }, c.path()).unwrap();
    assert_ne!(ec, ea);
    let sc = snapshot(c.path());
    let same: Vec<_> = sa.iter().filter(|f| sc.contains(f)).map(|f| &f.0).collect();
    assert_eq!(same, [Path::new("input/export/notes.json")], "the rest changes with the seed");
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    assert_eq!(SynthConfig::default().validate(), Ok(()));
    let d = SynthConfig::default;
    let cases = [
        (SynthConfig { month: NaiveDate::from_ymd_opt(2026, 10, 5).unwrap(), ..d() }, "month"),
        (SynthConfig { month: NaiveDate::from_ymd_opt(1969, 12, 1).unwrap(), ..d() }, "month"),
        (SynthConfig { tenants: 3, ..d() }, "tenants"),
        (SynthConfig { tenants: 1_000_000, ..d() }, "tenants"),
        (SynthConfig { events: u64::MAX, ..d() }, "events"),
        (SynthConfig { tenants: 8, noisy: 4, ..d() }, "noisy"),
        (SynthConfig { noisy: 5, ..d() }, "noisy"),
        (SynthConfig { duplicate_permille: 1001, ..d() }, "duplicate_permille"),
        (SynthConfig { span_permille: 1001, ..d() }, "span_permille"),
        (SynthConfig { reused_agent_permille: 1001, ..d() }, "reused_agent_permille"),
        (SynthConfig { missing_usage_permille: 1001, ..d() }, "missing_usage_permille"),
        (SynthConfig { price_class_permille: 1001, ..d() }, "price_class_permille"),
        (SynthConfig { profile_arn_permille: 1001, ..d() }, "profile_arn_permille"),
    ];
    for (cfg, field) in cases {
        let err = cfg.validate().unwrap_err();
        assert!(err.starts_with(&format!("{field} must ")), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let err = generate(&SynthConfig { tenants: 2, ..d() }, dir.path()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("tenants"), "{err}");
    std::fs::create_dir_all(dir.path().join("input")).unwrap();
    std::fs::write(dir.path().join("input/old.ndjson"), "{}\n").unwrap();
    let err = generate(&SynthConfig { events: 10, ..d() }, dir.path()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
}

#[test]
fn summary_line_and_config_round_trip() {
    let (expected, _) = dirty_month();
    let line = expected.summary_line();
    assert!(line.starts_with("20000 distinct usage events and "), "{line}");
    assert!(line.contains(&format!(" and {} spans in ", expected.accounting.spans_written)));
    assert!(line.contains(" for 8 tenants over 31 days"), "{line}");
    assert!(!line.contains('\n'));
    let cfg: SynthConfig = serde_json::from_str(r#"{"seed": 1, "dirty": true}"#).unwrap();
    assert_eq!(cfg, SynthConfig { seed: 1, dirty: true, ..SynthConfig::default() });
    assert!(serde_json::from_str::<SynthConfig>(r#"{"sed": 1}"#).is_err());
}

/// The lines of a gzip NDJSON file.
fn gz_lines(path: &Path) -> Vec<String> {
    let f = std::fs::File::open(path).unwrap();
    BufReader::new(flate2::read::MultiGzDecoder::new(f)).lines().map(Result::unwrap).collect()
}

fn decode_line(line: &str) -> Vec<AgentSpan> {
    let src = SourceUri::new("file:///spans.ndjson");
    let d = agentmeter_ingest::otlp::decode_json(line.as_bytes(), &src, &DecodeConfig::default())
        .unwrap();
    d.outcomes
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Span(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn sum(tokens: impl Iterator<Item = SpanTokens>) -> Tokens {
    let mut t = Tokens::default();
    for s in tokens {
        t.input += s.input.unwrap();
        t.output += s.output.unwrap();
        t.total += s.total.unwrap();
        t.cache_read += s.cache_read.unwrap_or(0);
        t.cache_write += s.cache_write.unwrap_or(0);
    }
    t
}

#[test]
fn one_line_holds_an_invocation_whose_chat_tokens_are_its_usage_events() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        SynthConfig { seed: 9, tenants: 5, events: 3_000, noisy: 1, ..SynthConfig::default() };
    let expected = generate(&cfg, dir.path()).unwrap();
    let got = ingest(dir.path());
    assert_matches(&expected, &got);
    let file = expected.files.iter().find(|f| f.starts_with("input/otlp/")).unwrap();
    let lines = gz_lines(&dir.path().join(file));
    // Where each trace's root and chat spans are, by line.
    let mut roots: HashMap<String, usize> = HashMap::new();
    let mut chats: HashMap<String, Vec<usize>> = HashMap::new();
    let mut first_child: HashMap<String, usize> = HashMap::new();
    for (n, line) in lines.iter().enumerate() {
        for s in decode_line(line) {
            if is_op(&s, "invoke_agent") {
                roots.insert(s.trace_id.to_string(), n);
            } else {
                first_child.entry(s.trace_id.to_string()).or_insert(n);
            }
            if is_op(&s, "chat") {
                chats.entry(s.trace_id.to_string()).or_default().push(n);
            }
        }
    }
    // As Strands exports: children first, some roots in a later line than their children.
    assert!(roots.iter().any(|(t, &n)| first_child[t] < n));
    assert!(roots.iter().all(|(t, &n)| first_child[t] <= n));
    let (trace, &n) = roots
        .iter()
        .filter(|(t, n)| chats[*t].len() >= 2 && chats[*t].iter().all(|c| c == *n))
        .min()
        .expect("a line with a root and all its chat spans");
    let spans: Vec<AgentSpan> = decode_line(&lines[n])
        .into_iter()
        .filter(|s| s.trace_id.as_str() == trace.as_str())
        .collect();
    let root = spans.iter().find(|s| is_op(s, "invoke_agent")).unwrap();
    let chat = sum(spans.iter().filter(|s| is_op(s, "chat")).map(|s| s.tokens));
    assert_eq!(chat, sum(std::iter::once(root.tokens)));
    let key = (
        root.tenant_id.to_string(),
        root.user_id.as_ref().unwrap().to_string(),
        root.model_id.as_ref().unwrap().to_string(),
        root.start_ms,
    );
    assert!(got.events[&key].contains(&chat), "{key:?}: {:?} vs {chat:?}", got.events[&key]);
    // Span times nest inside the root's.
    for s in &spans {
        assert!(root.start_ms <= s.start_ms && s.end_ms <= root.end_ms, "{}", s.name);
    }
    // Failing tools carry a patient note in their exception events (which decoding drops).
    let noted = expected
        .files
        .iter()
        .filter(|f| f.starts_with("input/otlp/"))
        .any(|f| gz_lines(&dir.path().join(f)).iter().any(|l| l.contains(NOTE_MARK)));
    assert!(noted);
}
