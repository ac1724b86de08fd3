//! `agentmeter flags`: evaluate flags over a range, write them, and send their alerts once.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use agentmeter_aggregate::fsio::write_atomic;
use agentmeter_aggregate::store::{Condition, Put};
use agentmeter_aggregate::{Lake, layout};
use agentmeter_pipeline::Env;
use agentmeter_reports::alerts::{
    AlertSink, CircuitOpen, DeliveryOptions, Secret, deliver_with_state,
};
use agentmeter_reports::flags::state::{Backlog, Pending};
use agentmeter_reports::flags::usage_rules;
use agentmeter_reports::flags::{
    AgentInvocation, Evaluation, Flag, FlagKind, FlagState, FlagStatus, Policy, episodes,
    evaluate_range,
};
use agentmeter_reports::invoice::Period;
use agentmeter_reports::invoice::reprice::charges_to_date;
use agentmeter_reports::prices::PriceBook;
use agentmeter_schemas::tables::{
    AGENT_INVOCATIONS, FLAGS, FlagRow, TABLES, TENANT_HOURLY, TenantHour, flags_batch,
};
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::UsageError;
use crate::cli::FlagsArgs;

/// Parses `YYYY-MM-DD` (UTC midnight) or an RFC 3339 instant.
pub fn instant(name: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(|_| {
        UsageError(format!("--{name} {s:?} is neither YYYY-MM-DD nor an RFC 3339 instant")).into()
    })
}

/// Reads a policy file, or the defaults.
pub fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    match path {
        None => Ok(Policy::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| UsageError(format!("--policy {}: {e}", p.display())))?;
            Policy::from_toml_str(&text)
                .map_err(|e| UsageError(format!("--policy {}: {e}", p.display())).into())
        }
    }
}

/// `tenant_hourly` rows of the days overlapping `[from, to)`.
pub fn tenant_hours(
    lake: &Lake,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<TenantHour>> {
    let mut rows = Vec::new();
    for dt in lake.partitions(TENANT_HOURLY)? {
        let start = dt.and_time(chrono::NaiveTime::MIN).and_utc();
        if start + TimeDelta::days(1) <= from || start >= to {
            continue;
        }
        rows.extend(lake.tenant_hourly(dt)?);
    }
    Ok(rows)
}

/// The agent invocations started in `[from, to)` that exceed the policy's runaway limits.
/// Only these can raise a `runaway_session` flag, so the others are not held in memory.
pub fn runaway_candidates(
    lake: &Lake,
    policy: &Policy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<AgentInvocation>> {
    let max_calls = i64::try_from(policy.max_tool_calls).unwrap_or(i64::MAX);
    let max_ms =
        i64::try_from(policy.max_invocation_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    let mut out = Vec::new();
    for dt in lake.partitions(AGENT_INVOCATIONS)? {
        let start = dt.and_time(chrono::NaiveTime::MIN).and_utc();
        if start + TimeDelta::days(1) <= from || start >= to {
            continue;
        }
        for r in lake.invocations(dt)? {
            let over = r.tool_calls > max_calls || r.duration_ms > max_ms;
            if !over || r.start_ms < from_ms || r.start_ms >= to_ms {
                continue;
            }
            let Some(start) = DateTime::from_timestamp_millis(r.start_ms) else { continue };
            out.push(AgentInvocation {
                trace_id: r.trace_id,
                span_id: r.span_id,
                tier: r.tier,
                tenant_id: r.tenant_id,
                start,
                duration_ms: r.duration_ms,
                tool_calls: r.tool_calls,
            });
        }
    }
    Ok(out)
}

/// What a flags run did. Sinks appear only in their display form (no credentials).
pub struct FlagsRun {
    pub evaluations: Vec<Evaluation>,
    pub episodes: Vec<Flag>,
    pub alerts_sent: usize,
    pub failures: Vec<String>,
    /// Sinks whose circuit opened, with the alerts kept for them.
    pub circuits_open: Vec<CircuitOpen>,
    /// Pending alerts dropped for being older than `--alert-max-age-hours`.
    pub expired: Vec<Pending>,
    pub max_age_hours: u32,
    /// Pending alerts kept for sinks not configured in this run.
    pub backlog: Vec<Backlog>,
    pub out: PathBuf,
    pub window_days: u32,
    /// Why there was nothing to evaluate, when the range has no usage.
    pub no_usage: Option<String>,
}

fn row(e_at: DateTime<Utc>, f: &Flag) -> anyhow::Result<FlagRow> {
    Ok(FlagRow {
        evaluated_at_ms: e_at.timestamp_millis(),
        id: f.id.clone(),
        kind: f.kind.code().to_owned(),
        tier: f.tier.clone(),
        tenant_id: f.tenant_id.clone(),
        window_start_ms: f.window_start.timestamp_millis(),
        window_end_ms: f.window_end.timestamp_millis(),
        metric: f.metric.clone(),
        value: f.value,
        threshold: f.threshold,
        hours_over: f.evidence.hours_over.map(i64::from),
        hours_active: f.evidence.hours_active.map(i64::from),
        evidence: serde_json::to_string(&f.evidence).context("encoding evidence")?,
        severity: serde_json::to_value(f.severity)?.as_str().unwrap_or_default().to_owned(),
        recommended_action: f.recommended_action.clone(),
    })
}

pub fn execute(env: &Env, a: &FlagsArgs) -> anyhow::Result<FlagsRun> {
    let (from, to) = match (&a.period, &a.from, &a.to) {
        (Some(p), _, _) => {
            let p = Period::parse(p).map_err(|e| UsageError(format!("--period: {e}")))?;
            (p.start_time(), p.end_time())
        }
        (None, Some(f), Some(t)) => (instant("from", f)?, instant("to", t)?),
        _ => bail!(UsageError("give --period, or --from and --to".into())),
    };
    if from >= to {
        bail!(UsageError(format!("--from {from} is not before --to {to}")));
    }
    let policy = load_policy(a.policy.as_deref())?;
    if policy.budgets.needs_prices() && a.prices.is_none() {
        bail!(UsageError("the policy has usd budgets: give --prices FILE to price them".into()));
    }
    let sinks: Vec<AlertSink> = a
        .alerts
        .iter()
        .map(|s| {
            s.parse::<AlertSink>()
                .map_err(|e| anyhow::Error::new(UsageError(format!("--alert: {e}"))))
        })
        .collect::<anyhow::Result<_>>()?;
    let lake = crate::lake_cmd::existing(env, &a.lake)?;
    execute_in(&lake, a, &policy, &sinks, from, to, Utc::now())
}

/// Evaluates `[from, to)` on an open lake, writes the flags table
/// and `OUT/flags.jsonl`, and sends the new alerts and the pending ones of `sinks`; `now`
/// dates new failures and decides which pending alerts have expired.
pub fn execute_in(
    lake: &Lake,
    a: &FlagsArgs,
    policy: &Policy,
    sinks: &[AlertSink],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<FlagsRun> {
    let history = (from - TimeDelta::days(i64::from(policy.window_days)))
        .min(usage_rules::history_start(policy, from));
    let last_day = (to - TimeDelta::milliseconds(1)).date_naive();
    crate::lake_cmd::ensure_rollups(lake, history.date_naive(), last_day + TimeDelta::days(1))?;
    let rows = tenant_hours(lake, history, to).context("reading tenant_hourly")?;
    let no_usage = if rows.is_empty() { Some(no_usage(lake, from, to)?) } else { None };
    let runaways =
        runaway_candidates(lake, policy, from, to).context("reading agent_invocations")?;
    let mut evaluations = evaluate_range(&rows, &runaways, policy, from, to);
    // Budgets and anomalies: the tenant's own usage, from the same rows.
    let charges = match (policy.budgets.needs_prices(), &a.prices) {
        (false, _) => None,
        (true, None) => {
            bail!(UsageError("the policy has usd budgets: give --prices FILE to price them".into()))
        }
        (true, Some(p)) => {
            let book = PriceBook::load(p)
                .map_err(|e| UsageError(format!("--prices {}: {e}", p.display())))?;
            let points: Vec<DateTime<Utc>> = evaluations.iter().map(|e| e.at).collect();
            Some(
                charges_to_date(lake, &book, &usage_rules::charge_instants(&points))
                    .context("pricing usage for the usd budgets")?,
            )
        }
    };
    let index = usage_rules::TenantHours::new(&rows);
    for e in &mut evaluations {
        let charges = charges.as_ref().map(|c| c as &dyn usage_rules::ChargesToDate);
        e.flags.extend(usage_rules::usage_flags(&index, policy, charges, e.at));
        e.flags.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let eps = episodes(&evaluations);

    // The flags table: the flags holding at the end of each evaluated day.
    let table = TABLES.iter().find(|t| t.name == FLAGS).context("flags table")?;
    for e in &evaluations {
        let day = (e.at - TimeDelta::milliseconds(1)).date_naive();
        let rows = e.flags.iter().map(|f| row(e.at, f)).collect::<anyhow::Result<Vec<_>>>()?;
        let batch = flags_batch(&rows).context("building flags rows")?;
        // Sorted by id (column 1).
        lake.replace_partition(table, day, &batch, &[1]).context("writing the flags table")?;
    }
    let mut jsonl = Vec::new();
    for f in &eps {
        serde_json::to_writer(&mut jsonl, f).context("encoding a flag")?;
        jsonl.push(b'\n');
    }
    let out = a.out.join("flags.jsonl");
    write_atomic(&out, &jsonl).with_context(|| format!("writing {}", out.display()))?;

    // Alerts: transitions after the last evaluation the state has seen, plus earlier failures.
    // The state is replaced only from the version read: when another flags run (another
    // worker's schedule) saved first, this one starts over from its state, so no transition
    // is lost; an alert both sent is dropped by receivers by its id.
    let mut attempt = 0;
    let (state, expired, sent, failures, circuits_open, backlog) = loop {
        attempt += 1;
        let read = lake.store().get(layout::FLAG_STATE).context("reading the flag state")?;
        let mut state = match &read {
            Some(o) => FlagState::from_json(&o.bytes, now)
                .with_context(|| format!("reading {}", lake.store().uri_of(layout::FLAG_STATE)))?,
            None => FlagState::default(),
        };
        let new_alerts = state.advance(&evaluations);
        let expired = state.expire(now, TimeDelta::hours(i64::from(a.alert_max_age_hours)));
        let keys: Vec<String> = sinks.iter().map(AlertSink::key).collect();
        let retry = state.pending.iter().any(|p| keys.contains(&p.sink_key));
        let mut sent = 0;
        let mut failures = Vec::new();
        let mut circuits_open = Vec::new();
        if !sinks.is_empty() && (!new_alerts.is_empty() || retry) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let opts = DeliveryOptions {
                webhook_secret: Secret::from_env().map_err(|e| UsageError(e.to_string()))?,
                max_attempts: a.alert_max_attempts,
                initial_backoff: std::time::Duration::from_millis(a.alert_backoff_ms),
                ..DeliveryOptions::default()
            };
            let report =
                rt.block_on(deliver_with_state(&mut state, &new_alerts, sinks, &opts, now));
            sent = report.delivered;
            failures = report.failures.iter().map(ToString::to_string).collect();
            circuits_open = report.circuits_open;
        }
        let backlog = state.backlog(sinks);
        // The state holds sinks only as display form and key (Pending), never as configured.
        let body = serde_json::to_vec_pretty(&state).context("encoding the flag state")?;
        let cond = Condition::replacing(read.as_ref().map(|o| o.etag.as_str()));
        match lake
            .store()
            .put(layout::FLAG_STATE, body.into(), cond)
            .context("writing the flag state")?
        {
            Put::Written { .. } => break (state, expired, sent, failures, circuits_open, backlog),
            Put::Conflict if attempt < 5 => {
                tracing::info!(
                    "Another flags run saved the flag state first; starting over from it."
                );
            }
            Put::Conflict => {
                bail!("other flags runs kept saving the flag state through 5 attempts; try again")
            }
        }
    };
    drop(state);
    for b in &backlog {
        tracing::warn!(sink = %b.sink, alerts = b.alerts,
            "Pending alerts for a sink not configured in this run; kept until they expire.");
    }
    Ok(FlagsRun {
        evaluations,
        episodes: eps,
        alerts_sent: sent,
        failures,
        circuits_open,
        expired,
        max_age_hours: a.alert_max_age_hours,
        backlog,
        out,
        window_days: policy.window_days,
        no_usage,
    })
}

/// What to tell a user whose range holds no usage: the days the lake does hold.
fn no_usage(lake: &Lake, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<String> {
    let days = lake.partitions(TENANT_HOURLY)?;
    let range = format!("from {} to {} (exclusive)", from.date_naive(), to.date_naive());
    Ok(match (days.first(), days.last()) {
        (Some(first), Some(last)) => format!(
            "no usage in the lake {range}: it holds usage from {first} to {last}; choose a period \
             in that span"
        ),
        _ => format!("no usage in the lake {range}: it holds none yet; ingest usage logs first"),
    })
}

pub fn run(env: &Env, a: &FlagsArgs) -> anyhow::Result<()> {
    let r = execute(env, a)?;
    let mut stdout = std::io::stdout().lock();
    if a.json {
        for f in &r.episodes {
            writeln!(stdout, "{}", serde_json::to_string(f)?)?;
        }
    } else {
        render(&mut stdout, &r)?;
    }
    Ok(())
}

/// The human summary: counts per kind and the silo-migration candidates with their evidence.
pub fn render(w: &mut impl std::io::Write, r: &FlagsRun) -> std::io::Result<()> {
    writeln!(w, "flags over {} evaluations into {}", r.evaluations.len(), r.out.display())?;
    if let Some(why) = &r.no_usage {
        writeln!(w, "  {why}")?;
    }
    for kind in [
        FlagKind::SiloMigration,
        FlagKind::PoolSaturation,
        FlagKind::QuotaBreach,
        FlagKind::RunawaySession,
        FlagKind::BudgetThreshold,
        FlagKind::UsageAnomaly,
    ] {
        let all: Vec<&Flag> = r.episodes.iter().filter(|f| f.kind == kind).collect();
        let active = all.iter().filter(|f| f.status == FlagStatus::Active).count();
        writeln!(w, "  {:<18} {:>5} ({} active at the end)", kind.code(), all.len(), active)?;
    }
    let silo: Vec<&Flag> = r
        .episodes
        .iter()
        .filter(|f| f.kind == FlagKind::SiloMigration && f.status == FlagStatus::Active)
        .collect();
    if !silo.is_empty() {
        writeln!(w, "  migrate to a silo:")?;
        for f in silo {
            let share =
                f.evidence.figures.get("share_of_pool_requests").copied().unwrap_or_default();
            writeln!(
                w,
                "    {} ({}): {:.0}% of the pool's requests in the last {} days; above {:.0}% of it in {} of {} active hours",
                f.tenant_id.as_ref().map(|t| t.as_str()).unwrap_or("?"),
                f.tier,
                share * 100.0,
                r.window_days,
                f.threshold * 100.0,
                f.evidence.hours_over.unwrap_or_default(),
                f.evidence.hours_active.unwrap_or_default()
            )?;
        }
    }
    writeln!(
        w,
        "  alerts sent: {}{}",
        r.alerts_sent,
        if r.failures.is_empty() {
            String::new()
        } else {
            format!(", {} failed (kept for the next run)", r.failures.len())
        }
    )?;
    for f in r.failures.iter().take(5) {
        writeln!(w, "    {f}")?;
    }
    for c in &r.circuits_open {
        writeln!(w, "  {c}")?;
    }
    if !r.expired.is_empty() {
        writeln!(
            w,
            "  pending alerts expired: {} (older than {} hours; dropped, see the log)",
            r.expired.len(),
            r.max_age_hours
        )?;
    }
    for b in &r.backlog {
        writeln!(w, "  {} alerts kept for {} (not configured in this run)", b.alerts, b.sink)?;
    }
    Ok(())
}
