//! `agentmeter demo`: the embedded default, end to end on local files.

use std::path::Path;

use agentmeter_aggregate::Lake;
use agentmeter_pipeline::{Env, LakeLocation};
use agentmeter_reports::run_summary::render;
use agentmeter_reports::usage::tenant_totals;
use agentmeter_synth::{self as synth, SynthConfig};
use anyhow::{Context, bail};

use crate::UsageError;
use crate::cli::{DemoArgs, FormatArg, IngestArgs};

const MARKER: &str = ".agentmeter-demo";

/// Share of the premium tier's invocations whose spans the demo generates, per thousand.
const DEMO_SPAN_PERMILLE: u32 = 250;

/// The example price book, shipped in the binary so that the demo runs anywhere.
const EXAMPLE_PRICES: &str = crate::example_cmd::PRICES;

/// Writes the price book and a Cost Explorer response for the demo month, then invoices it.
fn invoice(
    env: &Env,
    dir: &Path,
    lake_dir: &Path,
    month: chrono::NaiveDate,
) -> anyhow::Result<(
    agentmeter_reports::invoice::InvoiceRun,
    agentmeter_reports::invoice::export::RunSummary,
)> {
    use agentmeter_reports::costs::{CostGroup, CostReport, DailyCost, to_response_json};
    use agentmeter_reports::invoice::{InvoiceInput, Period, compute, usage};
    use agentmeter_reports::prices::PriceBook;
    use rust_decimal::Decimal;

    let prices_path = dir.join("prices.toml");
    std::fs::write(&prices_path, EXAMPLE_PRICES)
        .with_context(|| format!("writing {}", prices_path.display()))?;
    let book = PriceBook::from_toml_str(EXAMPLE_PRICES).context("the example price book")?;
    let period = Period::containing(month);
    let usage = usage::load(&Lake::open_dir(lake_dir)?, &period)?;
    let dry = compute(&InvoiceInput {
        period,
        pricing: &book,
        usage: &usage,
        costs: None,
        pool_costs: &[],
        drivers: &Default::default(),
        roster: &Default::default(),
    })?;
    // What AWS would bill each tier's Bedrock Project: its usage at list price (to 10 places,
    // as Cost Explorer reports), plus a little untagged cost each day; the last two days are
    // still estimates.
    let mut days = Vec::new();
    for ((day, tier), list) in &dry.list_cost {
        let mut label = tier.as_str().to_owned();
        if let Some(first) = label.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        days.push(DailyCost {
            date: *day,
            group: CostGroup::Tagged(label),
            amount: list.round_dp(10),
            unit: "USD".into(),
            estimated: *day >= period.end - chrono::TimeDelta::days(2),
        });
    }
    for day in period.days() {
        days.push(DailyCost {
            date: day,
            group: CostGroup::Untagged,
            amount: Decimal::new(37, 2),
            unit: "USD".into(),
            estimated: day >= period.end - chrono::TimeDelta::days(2),
        });
    }
    days.sort_by(|a, b| (a.date, &a.group).cmp(&(b.date, &b.group)));
    let report =
        CostReport { metric: "UnblendedCost".into(), tag_key: "Tier".into(), days, pages: 1 };
    let costs_path = dir.join("costs.json");
    let body = serde_json::to_vec_pretty(&to_response_json(&report)).context("encoding costs")?;
    std::fs::write(&costs_path, body)
        .with_context(|| format!("writing {}", costs_path.display()))?;
    let args = crate::cli::InvoiceArgs {
        lake: LakeLocation::Dir(lake_dir.to_owned()),
        period: period.label(),
        prices: prices_path,
        inference_profiles: None,
        costs: Some(costs_path.display().to_string()),
        cost_metric: "UnblendedCost".into(),
        cost_tag: "Tier".into(),
        cost_filter: None,
        runtime_costs: None,
        gateway_costs: None,
        tenants: None,
        close: false,
        reopen: false,
        preview: false,
        issue_date: None,
        billing_account: "123456789012".into(),
        out: dir.join("out"),
        json: false,
    };
    crate::invoice_cmd::execute(env, &args)
}

/// The demo's policy: the seeds' thresholds, with quotas sized to the generated volume (the
/// seeds' 50 requests a day would flag every tenant of a month this busy). The basic pool is
/// shared by many tenants and measured by its own usage; the premium pool has few tenants, so
/// it is measured against its provisioned capacity (in a pool of four, each tenant is a
/// quarter of the usage).
const DEMO_POLICY: &str = "# agentmeter flags policy for the demo month\n\
share_threshold = 0.20\n\
saturation_threshold = 0.80\n\
[tiers.basic]\n\
rate_limit_per_second = 50\n\
daily_quota = 100000\n\
[tiers.premium]\n\
rate_limit_per_second = 100\n\
daily_quota = 200000\n\
requests_per_hour = 2000\n";

/// Makes `dir` ready: new, empty, or a previous demo's (whose outputs are replaced).
fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.join(MARKER).exists() {
        for sub in ["gen", "lake", "out"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).with_context(|| format!("clearing {}", p.display()))?;
            }
        }
    } else if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(UsageError(format!(
            "{} is not empty and was not made by `agentmeter demo`; choose another --dir",
            dir.display()
        ))
        .into());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "made by agentmeter demo; safe to delete\n")
        .with_context(|| format!("writing {}", dir.join(MARKER).display()))?;
    Ok(())
}

pub fn run(env: &Env, a: &DemoArgs) -> anyhow::Result<()> {
    prepare(&a.dir)?;
    // A quarter of the premium tier's invocations traced keeps the demo quick; every other
    // figure of the month is unchanged by the share.
    // Fewer noisy neighbours for a small demo: the generator wants them under half the tenants.
    let noisy = SynthConfig::default().noisy.min(a.tenants.saturating_sub(1) / 2);
    let cfg = SynthConfig {
        tenants: a.tenants,
        events: a.events,
        noisy,
        dirty: true,
        span_permille: DEMO_SPAN_PERMILLE,
        ..SynthConfig::default()
    };
    cfg.validate().map_err(UsageError)?;
    let gen_dir = a.dir.join("gen");
    let lake_dir = a.dir.join("lake");
    println!(
        "1. Generating {} for {} tenants ({} usage events, bad records of every kind, {}‰ delivered twice; \
         the agents' OpenTelemetry spans for {}‰ of the premium tier's invocations)…",
        cfg.month.format("%B %Y"),
        cfg.tenants,
        cfg.events,
        cfg.duplicate_permille,
        cfg.span_permille
    );
    let expected = synth::generate(&cfg, &gen_dir).context("generating the demo month")?;
    println!("   {}", expected.summary_line());
    println!("\n2. Ingesting {} into {}…\n", gen_dir.join("input").display(), lake_dir.display());
    let args = IngestArgs {
        lake: LakeLocation::Dir(lake_dir.clone()),
        sources: vec![gen_dir.join("input").display().to_string()],
        format: FormatArg::Auto,
        tenant_field: "clinic_id".into(),
        max_record_bytes: 4 << 20,
        max_payload_bytes: 64 << 20,
        max_tokens_per_call: agentmeter_ingest::DEFAULT_MAX_TOKENS_PER_CALL,
        limits: crate::cli::LimitArgs::default(),
        log_timezone: agentmeter_ingest::LogTimezone::Utc,
        default_time: None,
        batch_rows: 250_000,
        batch_mib: crate::cli::DEFAULT_BATCH_MIB,
        workers: None,
        summary_json: None,
        json: false,
        no_progress: false,
        start: agentmeter_ingest::kinesis::StartPosition::TrimHorizon,
        follow: false,
        checkpoint_interval_ms: 5000,
        rollup_interval_ms: 60_000,
    };
    let summary = agentmeter_pipeline::ingest::ingest(env, &crate::ingest_cmd::options(&args)?)?;
    print!("{}", render(&summary));

    println!("\n3. Usage per tenant (top 10 by total tokens, from usage_hourly):\n");
    let totals = tenant_totals(&Lake::open_dir(&lake_dir)?, None, None)?;
    let mut rows: Vec<_> = totals.iter().collect();
    rows.sort_by(|a, b| b.1.tokens.total.cmp(&a.1.tokens.total).then(a.0.cmp(b.0)));
    println!(
        "   {:<16} {:<8} {:>12} {:>16} {:>14}",
        "tenant", "tier", "invocations", "total tokens", "cache tokens"
    );
    for (tenant, t) in rows.iter().take(10) {
        let tiers: Vec<_> = t.tiers.iter().map(|t| t.as_str()).collect();
        println!(
            "   {:<16} {:<8} {:>12} {:>16} {:>14}",
            tenant.as_str(),
            tiers.join(","),
            t.invocations,
            t.tokens.total,
            t.tokens.cache_read + t.tokens.cache_write
        );
    }
    println!("   … {} tenants in all", rows.len());

    // The lake must say exactly what the generator says it put in.
    let mut mismatches = Vec::new();
    if summary.accounting != expected.accounting {
        mismatches.push("run accounting".to_string());
    }
    for (tenant, want) in &expected.tenants {
        let got = totals.iter().find(|(t, _)| t.as_str() == tenant).map(|(_, t)| t);
        let same = got.is_some_and(|g| {
            let w = &want.totals;
            g.invocations == w.invocations
                && g.tokens.input == w.input_tokens
                && g.tokens.output == w.output_tokens
                && g.tokens.total == w.total_tokens
                && g.tokens.cache_read == w.cache_read_tokens
                && g.tokens.cache_write == w.cache_write_tokens
        });
        if !same {
            mismatches.push(format!("tenant {tenant}"));
        }
    }
    if totals.len() != expected.tenants.len() {
        mismatches.push("number of tenants".into());
    }
    for (tenant, t) in &totals {
        let want = expected.agents.get(tenant.as_str()).copied().unwrap_or_default();
        let a = &t.agent;
        let same = a.tool_calls == want.tool_calls
            && a.tool_errors == want.tool_errors
            && a.agent_invocations == want.agent_invocations
            && a.agent_duration_ms == want.agent_duration_ms
            && a.max_agent_duration_ms == want.max_agent_duration_ms;
        if !same {
            mismatches.push(format!("agent spans of tenant {tenant}"));
        }
    }
    if !mismatches.is_empty() {
        bail!("the lake does not match the generator's expectation: {}", mismatches.join(", "));
    }
    println!("\n   Agents (from the spans; top 5 by tool calls):\n");
    let mut agents: Vec<_> = totals.iter().filter(|(_, t)| t.agent.agent_invocations > 0).collect();
    agents.sort_by(|a, b| b.1.agent.tool_calls.cmp(&a.1.agent.tool_calls).then(a.0.cmp(b.0)));
    println!(
        "   {:<16} {:>12} {:>11} {:>11} {:>13} {:>13}",
        "tenant", "invocations", "tool calls", "tool errors", "mean seconds", "max seconds"
    );
    for (tenant, t) in agents.iter().take(5) {
        let a = &t.agent;
        println!(
            "   {:<16} {:>12} {:>11} {:>11} {:>13.1} {:>13.1}",
            tenant.as_str(),
            a.agent_invocations,
            a.tool_calls,
            a.tool_errors,
            a.agent_duration_ms as f64 / a.agent_invocations as f64 / 1000.0,
            a.max_agent_duration_ms as f64 / 1000.0
        );
    }
    println!(
        "\n   Every total, tokens and spans, matches the generator's own expectation ({}).",
        gen_dir.join("expected.json").display()
    );

    println!(
        "\n4. Invoicing {} with the example price book and a Cost Explorer file made from the usage…\n",
        cfg.month.format("%Y-%m")
    );
    let (run, inv_summary) = invoice(env, &a.dir, &lake_dir, cfg.month)?;
    let mut by_revenue: Vec<_> = run.invoices.iter().collect();
    by_revenue.sort_by(|x, y| y.total.cmp(&x.total).then(x.tenant_id.cmp(&y.tenant_id)));
    println!(
        "   {:<16} {:<8} {:>12} {:>12} {:>12}",
        "tenant", "tier", "invoiced", "AWS cost", "margin"
    );
    for i in by_revenue.iter().take(8) {
        println!(
            "   {:<16} {:<8} {:>12} {:>12} {:>12}",
            i.tenant_id.as_str(),
            i.tier.as_str(),
            i.total,
            i.allocated_cost,
            i.margin
        );
    }
    let r = &inv_summary.reconciliation;
    println!(
        "   … {} invoices, {} USD in all; AWS cost {} = {} allocated + {} unallocated: {}",
        inv_summary.invoices,
        inv_summary.revenue,
        r.cost_explorer_total,
        r.allocated,
        r.unallocated,
        if r.reconciled { "reconciled to the cent" } else { "NOT RECONCILED" }
    );
    if !inv_summary.complete || !r.reconciled {
        bail!("the demo's invoices are incomplete or do not reconcile");
    }

    println!(
        "\n5. Flags for {} (noisy neighbours, pool saturation, quotas, runaway sessions) and their alerts…\n",
        cfg.month.format("%Y-%m")
    );
    let policy_path = a.dir.join("policy.toml");
    std::fs::write(&policy_path, DEMO_POLICY)
        .with_context(|| format!("writing {}", policy_path.display()))?;
    let alerts_path = a.dir.join("out").join("alerts.jsonl");
    let flags_args = crate::cli::FlagsArgs {
        lake: LakeLocation::Dir(lake_dir.clone()),
        period: Some(cfg.month.format("%Y-%m").to_string()),
        from: None,
        to: None,
        policy: Some(policy_path.clone()),
        prices: None,
        out: a.dir.join("out"),
        alerts: vec![format!("file://{}", std::path::absolute(&alerts_path)?.display())],
        alert_max_attempts: 4,
        alert_backoff_ms: 500,
        alert_max_age_hours: crate::cli::DEFAULT_ALERT_MAX_AGE_HOURS,
        json: false,
    };
    let flags_run = crate::flags_cmd::execute(env, &flags_args)?;
    let mut text = Vec::new();
    crate::flags_cmd::render(&mut text, &flags_run)?;
    for line in String::from_utf8_lossy(&text).lines() {
        println!("   {line}");
    }
    let mut migrate: Vec<String> = flags_run
        .episodes
        .iter()
        .filter(|f| {
            f.kind == agentmeter_reports::flags::FlagKind::SiloMigration
                && f.status == agentmeter_reports::flags::FlagStatus::Active
        })
        .filter_map(|f| f.tenant_id.as_ref().map(ToString::to_string))
        .collect();
    migrate.sort();
    let mut noisy = expected.noisy_tenants.clone();
    noisy.sort();
    if migrate != noisy {
        bail!(
            "the silo-migration flags ({migrate:?}) are not the generator's noisy neighbours ({noisy:?})"
        );
    }
    println!("   These are exactly the generator's noisy neighbours.");
    let mut runaways: Vec<String> = flags_run
        .episodes
        .iter()
        .filter(|f| f.kind == agentmeter_reports::flags::FlagKind::RunawaySession)
        .filter_map(|f| f.evidence.invocation.clone())
        .collect();
    runaways.sort();
    runaways.dedup();
    if runaways != expected.runaway_invocations {
        bail!(
            "the runaway-session flags ({runaways:?}) are not the generator's runaway invocations ({:?})",
            expected.runaway_invocations
        );
    }
    println!(
        "   The {} runaway sessions are exactly the generator's runaway agent invocations.",
        runaways.len()
    );

    println!("\n6. Report…");
    let report_path = a.dir.join("out").join("report.html");
    crate::report_cmd::write(
        env,
        &crate::cli::ReportArgs {
            lake: LakeLocation::Dir(lake_dir.clone()),
            period: cfg.month.format("%Y-%m").to_string(),
            out: report_path.clone(),
            outputs: Some(a.dir.join("out")),
            policy: Some(policy_path),
            top: 5,
        },
    )?;
    println!("   {}", report_path.display());

    println!("\n7. Where things are:");
    println!(
        "   lake          {}/usage_events/dt=*/*.parquet, {}/usage_hourly/dt=*/*.parquet",
        lake_dir.display(),
        lake_dir.display()
    );
    println!(
        "   spans         {}/agent_spans/dt=*/*.parquet, {}/agent_invocations/dt=*/*.parquet \
         (logs against spans: agentmeter reconcile --lake {} --period {})",
        lake_dir.display(),
        lake_dir.display(),
        lake_dir.display(),
        cfg.month.format("%Y-%m")
    );
    println!(
        "   quarantine    {}/_quarantine/*.jsonl (replay: agentmeter ingest --lake {} {}/_quarantine)",
        lake_dir.display(),
        lake_dir.display(),
        lake_dir.display()
    );
    println!(
        "   flags         {}/out/flags.jsonl, alerts {}/out/alerts.jsonl, table {}/flags/",
        a.dir.display(),
        a.dir.display(),
        lake_dir.display()
    );
    println!(
        "   report        {}/out/report.html (check it in a browser: scripts/check-report)",
        a.dir.display()
    );
    println!(
        "   invoices      {}/out/invoices/{}/ (tenants/<tenant>.json and .html, invoices.csv, ledger.csv, margin.csv, focus.csv, focus.parquet, focus-billing-period.csv, focus-invoice-detail.csv, summary.json)",
        a.dir.display(),
        cfg.month.format("%Y-%m")
    );
    println!(
        "   inputs        {}/prices.toml (price book), {}/costs.json (Cost Explorer response)",
        a.dir.display(),
        a.dir.display()
    );
    println!("   Athena DDL    agentmeter schema athena --location s3://YOUR-BUCKET/PREFIX");
    println!(
        "   DuckDB        SELECT tenant_id, sum(total_tokens) FROM read_parquet('{}/usage_hourly/*/*.parquet', hive_partitioning=true) GROUP BY 1 ORDER BY 2 DESC;",
        lake_dir.display()
    );
    Ok(())
}
