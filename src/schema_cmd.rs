//! `agentmeter schema athena`.

use std::io::Write;

use agentmeter_schemas::athena::{DdlOptions, all_tables};
use anyhow::Context;

use crate::UsageError;
use crate::cli::{AthenaArgs, SchemaCommand};

pub fn run(cmd: &SchemaCommand) -> anyhow::Result<()> {
    match cmd {
        SchemaCommand::Athena(a) => athena(a),
    }
}

fn athena(a: &AthenaArgs) -> anyhow::Result<()> {
    let opts = DdlOptions::new(&a.location, a.database.as_deref(), &a.since)
        .map_err(|e| UsageError(e.to_string()))?;
    let ddl = all_tables(&opts).context("building DDL")?;
    std::io::stdout().lock().write_all(ddl.as_bytes()).context("writing DDL")?;
    Ok(())
}
