//! The JSONL file sink and the stdout sink.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::flags::Alert;

/// Appends `bytes` (whole JSON lines) to `path` in one write, creating the parent
/// directories, then flushes and syncs the file. Runs on the blocking pool.
///
/// # Errors
///
/// The step that failed and the I/O error (the sink's display form names the path).
pub(crate) async fn append(path: &Path, bytes: Vec<u8>) -> Result<(), String> {
    let path: PathBuf = path.to_owned();
    tokio::task::spawn_blocking(move || append_blocking(&path, &bytes))
        .await
        .map_err(|e| format!("the file write task failed: {e}"))?
}

fn append_blocking(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create directory {}: {e}", parent.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open for appending: {e}"))?;
    file.write_all(bytes).map_err(|e| format!("cannot append: {e}"))?;
    file.flush().map_err(|e| format!("cannot flush: {e}"))?;
    file.sync_data().map_err(|e| format!("cannot sync to disk: {e}"))
}

/// Writes one summary line per alert ([`Alert::summary`], control characters replaced by
/// spaces so each alert stays on one line), flushing after each; one result per alert.
pub(crate) fn write_summaries(out: &mut impl Write, alerts: &[Alert]) -> Vec<io::Result<()>> {
    alerts
        .iter()
        .map(|alert| {
            let line: String =
                alert.summary().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            writeln!(out, "{line}")?;
            out.flush()
        })
        .collect()
}
