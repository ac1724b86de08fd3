//! `agentmeter prices`: import and check price books.

use std::io::Write;

use agentmeter_reports::prices::{
    ImportOptions, PlanPricing, PriceBook, UsageSource, import_litellm,
};
use anyhow::Context;
use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::UsageError;
use crate::cli::{CheckPricesArgs, ImportLitellmArgs, PricesCommand};

pub fn run(cmd: &PricesCommand) -> anyhow::Result<()> {
    match cmd {
        PricesCommand::ImportLitellm(a) => import(a),
        PricesCommand::Check(a) => check(a),
    }
}

fn import(a: &ImportLitellmArgs) -> anyhow::Result<()> {
    let json = std::fs::read_to_string(&a.file)
        .map_err(|e| UsageError(format!("{}: {e}", a.file.display())))?;
    // The only clock read of the command: the default version label and effective date.
    let today = chrono::Utc::now().date_naive();
    let mut opts = ImportOptions::new(today);
    opts.providers = a.providers.clone();
    opts.keep_region_pinned = a.keep_region_pinned;
    if let Some(v) = &a.version {
        opts.version = v.clone();
    }
    if let Some(d) = &a.effective_from {
        let date = NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| UsageError(format!("--effective-from {d:?} is not a YYYY-MM-DD date")))?;
        opts.effective_from = date.and_time(chrono::NaiveTime::MIN).and_utc();
    }
    let (toml, report) = import_litellm(&json, &opts)
        .map_err(|e| UsageError(format!("{}: {e}", a.file.display())))?;
    match &a.out {
        Some(path) => {
            std::fs::write(path, &toml).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            std::io::stdout().lock().write_all(toml.as_bytes()).context("writing the price book")?
        }
    }
    eprintln!("{}", report.summary());
    if a.effective_from.is_none() {
        // Dated today by default: an earlier month's usage would have no price.
        eprintln!(
            "note: the imported prices take effect from {today} (today); usage before that has no \
             price. To invoice an earlier month, import with --effective-from YYYY-MM-DD (its \
             first day, or earlier)."
        );
    }
    Ok(())
}

fn check(a: &CheckPricesArgs) -> anyhow::Result<()> {
    let book = PriceBook::load(&a.file).map_err(|e| UsageError(e.to_string()))?;
    println!(
        "price book {} ({} models, currency {})",
        book.version(),
        book.models().len(),
        book.currency()
    );
    for (tier, plan) in book.plans() {
        let pricing = match &plan.pricing {
            PlanPricing::List => "list prices".to_owned(),
            PlanPricing::Markup(m) => {
                format!("list prices + {}%", (m * Decimal::ONE_HUNDRED).normalize())
            }
            PlanPricing::RateCard(name) => format!("rate card {name}"),
        };
        println!(
            "  plan {tier}: base fee {}, included usage {}, {pricing}, tokens from the {}",
            plan.base_fee,
            plan.included_usage,
            match plan.usage_source {
                UsageSource::Logs => "usage logs",
                UsageSource::ChatSpans => "chat spans",
            }
        );
    }
    for m in book.models() {
        let aliases: Vec<&str> = m.aliases().iter().map(|a| a.as_str()).collect();
        match (m.name(), aliases.is_empty()) {
            (Some(n), true) => println!("  model {} ({n})", m.id()),
            (Some(n), false) => println!("  model {} ({n}; also {})", m.id(), aliases.join(", ")),
            (None, true) => println!("  model {}", m.id()),
            (None, false) => println!("  model {} (also {})", m.id(), aliases.join(", ")),
        }
    }
    Ok(())
}
