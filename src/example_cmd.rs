//! `agentmeter example`, `completions` and `man`: what a command-line user expects beside the
//! commands themselves. The examples are the files under `examples/`, compiled in, so an
//! installed binary carries them; tests parse each with the code that reads it.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ExampleArgs, ExampleKind, ManArgs};

pub const PRICES: &str = include_str!("../examples/prices.toml");
pub const POLICY: &str = include_str!("../examples/policy.toml");
pub const CONFIG: &str = include_str!("../examples/agentmeter.toml");
pub const TENANTS: &str = include_str!("../examples/tenants.toml");
pub const API_TOKENS: &str = include_str!("../examples/api-tokens.toml");

pub fn text(kind: ExampleKind) -> &'static str {
    match kind {
        ExampleKind::Prices => PRICES,
        ExampleKind::Policy => POLICY,
        ExampleKind::Config => CONFIG,
        ExampleKind::Tenants => TENANTS,
        ExampleKind::ApiTokens => API_TOKENS,
    }
}

pub fn example(a: &ExampleArgs) -> anyhow::Result<()> {
    std::io::stdout().lock().write_all(text(a.kind).as_bytes())?;
    Ok(())
}

pub fn completions(a: &CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "agentmeter", &mut std::io::stdout().lock());
    Ok(())
}

pub fn man(a: &ManArgs) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match &a.dir {
        None => {
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout().lock())?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(cmd, dir)?;
            println!("manual pages written to {}", dir.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_read_by_the_code_that_reads_such_files() {
        let book = agentmeter_reports::prices::PriceBook::from_toml_str(PRICES).unwrap();
        assert!(book.models().len() > 5);
        agentmeter_reports::flags::Policy::from_toml_str(POLICY).unwrap();
        // The example policy states the defaults: it parses to the same policy as none.
        assert_eq!(
            agentmeter_reports::flags::Policy::from_toml_str(POLICY).unwrap(),
            agentmeter_reports::flags::Policy::default()
        );
        crate::run_config::parse(CONFIG, std::path::Path::new("/etc/agentmeter")).unwrap();
        let roster = agentmeter_reports::invoice::roster::parse_roster(TENANTS).unwrap();
        assert_eq!(roster.tiers.len(), 3);
        assert!(roster.issuer.is_some());
        let tokens = agentmeter_reports::api::ApiTokens::parse(API_TOKENS).unwrap();
        assert_eq!(tokens.len(), 2);
        // The tokens the comments name are the ones the digests are of.
        let scope = tokens.scope(Some("Bearer example-tenant-token")).unwrap();
        assert!(scope.allows(&agentmeter_schemas::TenantId::new("clinic-001").unwrap()));
        assert_eq!(
            tokens.scope(Some("Bearer example-operator-token")),
            Some(&agentmeter_reports::api::Scope::Operator)
        );
    }

    #[test]
    fn completions_and_the_manual_name_every_subcommand() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "agentmeter",
            &mut out,
        );
        let bash = String::from_utf8(out).unwrap();
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            assert!(bash.contains(name), "bash completion lacks {name}");
            assert!(page.contains(name), "man page lacks {name}");
        }
        assert!(page.starts_with(".ie \\n(.g .ds Aq \\(aq") || page.contains(".TH agentmeter"));
    }
}
