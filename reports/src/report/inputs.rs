//! Reading what the caller passes in besides the lake: an invoice run's `margin.json` and a
//! `flags.jsonl` file. Pure: the caller reads the files.

use super::data::ReportError;
use crate::flags::Flag;
use crate::invoice::export::MarginSummary;

/// Parses a margin summary (`margin.json` of an invoice run).
///
/// # Errors
///
/// [`ReportError::Input`] when the text is not a margin summary.
pub fn parse_margin(json: &str) -> Result<MarginSummary, ReportError> {
    serde_json::from_str(json)
        .map_err(|source| ReportError::Input { what: "margin summary".into(), source })
}

/// Parses `flags.jsonl`: one flag per line; blank lines are skipped.
///
/// # Errors
///
/// [`ReportError::Input`] naming the first line that is not a flag.
pub fn parse_flags(jsonl: &str) -> Result<Vec<Flag>, ReportError> {
    let mut out = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let flag = serde_json::from_str(line).map_err(|source| ReportError::Input {
            what: format!("flags line {}", i + 1),
            source,
        })?;
        out.push(flag);
    }
    Ok(out)
}
