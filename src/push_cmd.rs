//! `agentmeter push SYSTEM`: the usage of a range sent to a billing system, each quantity
//! once (`agentmeter_reports::push`).

use std::time::Duration;

use agentmeter_pipeline::Env;
use agentmeter_reports::invoice::roster::Roster;
use agentmeter_reports::push::{PushOptions, System, push};
use anyhow::{Context, bail};
use chrono::NaiveDate;

use crate::UsageError;
use crate::cli::PushArgs;

/// The environment variable holding the API key when no `--token-file` is given.
pub const TOKEN_ENV: &str = "AGENTMETER_PUSH_TOKEN";

fn days(a: &PushArgs) -> anyhow::Result<Vec<NaiveDate>> {
    let (from, to) = crate::lake_cmd::day_range(&a.range)?;
    Ok(from.iter_days().take_while(|d| *d < to).collect())
}

fn token(a: &PushArgs) -> anyhow::Result<String> {
    let t = match &a.token_file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| UsageError(format!("--token-file {}: {e}", p.display())))?
            .trim()
            .to_owned(),
        None => std::env::var(TOKEN_ENV).unwrap_or_default(),
    };
    if t.is_empty() {
        bail!(UsageError(format!(
            "no API key for {}: give --token-file FILE or set {TOKEN_ENV}",
            a.system.name()
        )));
    }
    Ok(t)
}

pub fn run(env: &Env, a: &PushArgs) -> anyhow::Result<()> {
    let days = days(a)?;
    let token = token(a)?;
    let roster = match &a.tenants {
        Some(p) => crate::invoice_cmd::read_roster("--tenants", p)?.0,
        None if a.system == System::Stripe => bail!(UsageError(
            "stripe needs --tenants FILE: each tenant's Stripe customer (customer_ids.stripe)"
                .into()
        )),
        None => Roster::default(),
    };
    let endpoint = a.endpoint.clone().unwrap_or_else(|| a.system.default_endpoint().to_owned());
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        bail!(UsageError(format!("--endpoint {endpoint:?} is not an http(s) URL")));
    }
    let lake = crate::lake_cmd::existing(env, &a.lake)?;
    let (first, last) = (days[0], days[days.len() - 1]);
    crate::lake_cmd::ensure_rollups(&lake, first, last + chrono::TimeDelta::days(1))?;
    let opts = PushOptions {
        system: a.system,
        endpoint,
        token,
        event_prefix: a.event_prefix.clone(),
        max_attempts: a.max_attempts,
        initial_backoff: Duration::from_millis(500),
        timeout: Duration::from_secs(30),
    };
    let r = push(&lake, &roster, &days, &opts).context("pushing usage")?;
    let name = a.system.name();
    println!(
        "{name}: {} events sent over {} days ({} left pending by an earlier run), {} pending",
        r.sent, r.days, r.resent, r.pending
    );
    for (component, q) in &r.quantities {
        println!("  {component:<20} {q:>14}");
    }
    if !r.tenants_without_customer.is_empty() {
        let list: Vec<&str> = r.tenants_without_customer.iter().map(|t| t.as_str()).collect();
        println!(
            "  not sent: {} tenants without a {name} customer id in the roster: {}",
            list.len(),
            list.join(", ")
        );
    }
    if r.decreased > 0 {
        println!("  {} quantities are below what was already sent (left as sent)", r.decreased);
    }
    if let Some(f) = r.failure {
        bail!("{name} failed; {} events are pending and go first next run: {f}", r.pending);
    }
    Ok(())
}
