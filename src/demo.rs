//! `agentmeter demo`: the embedded default, end to end on local files.

use std::path::Path;

use agentmeter_aggregate::LakeReader;
use agentmeter_ingest::synth::{self, SynthConfig};
use agentmeter_reports::run_summary::render;
use agentmeter_reports::usage::tenant_totals;
use anyhow::{Context, bail};

use crate::UsageError;
use crate::cli::{DemoArgs, FormatArg, IngestArgs};
use crate::ingest_cmd::{IngestPlan, execute};

const MARKER: &str = ".agentmeter-demo";

/// Makes `dir` ready: new, empty, or a previous demo's (whose outputs are replaced).
fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.join(MARKER).exists() {
        for sub in ["gen", "lake"] {
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

pub fn run(a: &DemoArgs) -> anyhow::Result<()> {
    prepare(&a.dir)?;
    let cfg =
        SynthConfig { tenants: a.tenants, events: a.events, dirty: true, ..SynthConfig::default() };
    cfg.validate().map_err(UsageError)?;
    let gen_dir = a.dir.join("gen");
    let lake_dir = a.dir.join("lake");
    println!(
        "1. Generating {} for {} tenants ({} usage events, bad records of every kind, {}‰ delivered twice)…",
        cfg.month.format("%B %Y"),
        cfg.tenants,
        cfg.events,
        cfg.duplicate_permille
    );
    let expected = synth::generate(&cfg, &gen_dir).context("generating the demo month")?;
    println!("   {}", expected.summary_line());
    println!("\n2. Ingesting {} into {}…\n", gen_dir.join("input").display(), lake_dir.display());
    let args = IngestArgs {
        lake: lake_dir.clone(),
        sources: vec![gen_dir.join("input")],
        format: FormatArg::Auto,
        tenant_field: "clinic_id".into(),
        max_record_bytes: 4 << 20,
        max_payload_bytes: 64 << 20,
        batch_rows: 250_000,
        workers: None,
        summary_json: None,
        json: false,
        no_progress: false,
    };
    let summary = execute(&IngestPlan::from_args(&args)?)?;
    print!("{}", render(&summary));

    println!("\n3. Usage per tenant (top 10 by total tokens, from usage_hourly):\n");
    let totals = tenant_totals(&LakeReader::new(&lake_dir), None, None)?;
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
    if !mismatches.is_empty() {
        bail!("the lake does not match the generator's expectation: {}", mismatches.join(", "));
    }
    println!(
        "\n   Every total matches the generator's own expectation ({}).",
        gen_dir.join("expected.json").display()
    );

    println!("\n4. Where things are:");
    println!(
        "   lake          {}/usage_events/dt=*/*.parquet, {}/usage_hourly/dt=*/*.parquet",
        lake_dir.display(),
        lake_dir.display()
    );
    println!(
        "   quarantine    {}/_quarantine/*.jsonl (replay: agentmeter ingest --lake {} {}/_quarantine)",
        lake_dir.display(),
        lake_dir.display(),
        lake_dir.display()
    );
    println!("   Athena DDL    agentmeter schema athena --location s3://YOUR-BUCKET/PREFIX");
    println!(
        "   DuckDB        SELECT tenant_id, sum(total_tokens) FROM read_parquet('{}/usage_hourly/*/*.parquet', hive_partitioning=true) GROUP BY 1 ORDER BY 2 DESC;",
        lake_dir.display()
    );
    Ok(())
}
