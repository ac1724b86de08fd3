//! Token reconciliation: per day, tier and tenant, the tokens of the `inference_usage` logs
//! (`usage_hourly`, the billing source) against the tokens of the `chat` spans (`agent_spans`).
//!
//! Only `chat` spans are summed: they carry one model call each, while `invoke_agent` spans
//! repeat their children's sum (or an Agent object's lifetime total), so adding both would
//! double count. A log line or a `chat` span whose input and total tokens are 0 (a stream
//! that ended without its usage chunk) is counted apart as "usage unknown", never as free,
//! and gives the day a status of its own. Both sides are read from `usage_hourly`, whose
//! rollups count each event and each span once.
//!
//! Input, output, cache-read and cache-write tokens are compared. `total_tokens` is not:
//! the logs state it either with or without the cache counts, so it is no independent check.
//!
//! A day is the UTC day of the log line's timestamp and of the chat span's start; an agent
//! call that straddles midnight can show as equal and opposite differences on two days.

use std::collections::BTreeMap;

use agentmeter_aggregate::{Error, Lake, Result};
use agentmeter_schemas::tables::USAGE_HOURLY;
use agentmeter_schemas::{TenantId, Tier, Tokens};
use chrono::NaiveDate;
use serde::Serialize;

/// Token measures that are compared, in column order.
const MEASURES: [&str; 4] =
    ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"];

/// The compared token counts of one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenCounts {
    /// Input tokens.
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Cache-read tokens.
    pub cache_read: i64,
    /// Cache-write tokens.
    pub cache_write: i64,
}

impl TokenCounts {
    fn values(self) -> [i64; 4] {
        [self.input, self.output, self.cache_read, self.cache_write]
    }

    fn checked_add(self, o: TokenCounts) -> Option<TokenCounts> {
        Some(TokenCounts {
            input: self.input.checked_add(o.input)?,
            output: self.output.checked_add(o.output)?,
            cache_read: self.cache_read.checked_add(o.cache_read)?,
            cache_write: self.cache_write.checked_add(o.cache_write)?,
        })
    }

    fn checked_sub(self, o: TokenCounts) -> Option<TokenCounts> {
        Some(TokenCounts {
            input: self.input.checked_sub(o.input)?,
            output: self.output.checked_sub(o.output)?,
            cache_read: self.cache_read.checked_sub(o.cache_read)?,
            cache_write: self.cache_write.checked_sub(o.cache_write)?,
        })
    }

    fn is_zero(self) -> bool {
        self.values() == [0; 4]
    }
}

impl From<Tokens> for TokenCounts {
    fn from(t: Tokens) -> Self {
        TokenCounts {
            input: t.input,
            output: t.output,
            cache_read: t.cache_read,
            cache_write: t.cache_write,
        }
    }
}

/// How one day of one tenant compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Logs and chat spans agree on every compared count.
    Match,
    /// Both sides are present and at least one count differs.
    Differs,
    /// Logs but no chat span (the tenant's agents are not traced, or the spans are missing).
    LogsOnly,
    /// Chat spans but no log line (the logs are missing: usage that would not be billed).
    SpansOnly,
    /// Some model call, logged or traced, reported no usage: its tokens are unknown, so the
    /// day cannot match and must not be billed as free.
    UsageUnknown,
}

impl Status {
    /// The snake_case name used in the exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Match => "match",
            Status::Differs => "differs",
            Status::LogsOnly => "logs_only",
            Status::SpansOnly => "spans_only",
            Status::UsageUnknown => "usage_unknown",
        }
    }
}

/// What most likely explains a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LikelyCause {
    /// The logs exceed the chat spans: an agent that logs its Agent object's lifetime usage
    /// (each line the running total) instead of each invocation's.
    CumulativeLogging,
    /// The chat spans exceed the logs: usage lines not written or not delivered.
    MissingLogLines,
}

impl LikelyCause {
    /// The snake_case name used in the exports.
    pub fn as_str(self) -> &'static str {
        match self {
            LikelyCause::CumulativeLogging => "cumulative_logging",
            LikelyCause::MissingLogLines => "missing_log_lines",
        }
    }

    /// A sentence for people.
    pub fn explain(self) -> &'static str {
        match self {
            LikelyCause::CumulativeLogging => {
                "the logs exceed the chat spans: an agent logging an Agent object's lifetime usage (cumulative lines) is the likely cause"
            }
            LikelyCause::MissingLogLines => {
                "the chat spans exceed the logs: usage lines not written or not delivered are the likely cause"
            }
        }
    }
}

/// One day of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// UTC day.
    pub dt: NaiveDate,
    /// Tier.
    pub tier: Tier,
    /// Tenant.
    pub tenant_id: TenantId,
    /// The comparison's outcome.
    pub status: Status,
    /// Inference calls logged.
    pub log_calls: i64,
    /// Of those, the ones without usage (input and total tokens 0).
    pub log_calls_without_usage: i64,
    /// Chat spans seen.
    pub chat_spans: i64,
    /// Of those, the ones without any token count (usage unknown).
    pub chat_spans_without_usage: i64,
    /// Tokens from the logs.
    pub logs: TokenCounts,
    /// Tokens from the chat spans.
    pub spans: TokenCounts,
    /// `spans - logs`, per count.
    pub difference: TokenCounts,
    /// For a difference, its most likely cause.
    pub likely_cause: Option<LikelyCause>,
}

/// The reconciliation of a range of days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// One line per day, tier and tenant with logs or chat spans, in that order.
    pub lines: Vec<Line>,
}

impl Reconciliation {
    /// The lines that do not match.
    pub fn differences(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|l| l.status != Status::Match)
    }

    /// Number of lines per status.
    pub fn counts(&self) -> BTreeMap<Status, usize> {
        let mut out = BTreeMap::new();
        for l in &self.lines {
            *out.entry(l.status).or_insert(0) += 1;
        }
        out
    }

    /// The lines as CSV, with a header row.
    ///
    /// # Errors
    ///
    /// Only if writing to memory fails, which would be a bug.
    pub fn to_csv(&self) -> std::result::Result<Vec<u8>, csv::Error> {
        let mut w = crate::export_csv::Writer::new();
        let mut header: Vec<String> = [
            "dt",
            "tier",
            "tenant_id",
            "status",
            "log_calls",
            "log_calls_without_usage",
            "chat_spans",
            "chat_spans_without_usage",
        ]
        .map(str::to_owned)
        .to_vec();
        for m in MEASURES {
            header.extend([format!("log_{m}"), format!("span_{m}"), format!("difference_{m}")]);
        }
        header.push("likely_cause".into());
        w.row(&header)?;
        for l in &self.lines {
            let mut rec = vec![
                l.dt.to_string(),
                l.tier.as_str().to_owned(),
                l.tenant_id.as_str().to_owned(),
                l.status.as_str().to_owned(),
                l.log_calls.to_string(),
                l.log_calls_without_usage.to_string(),
                l.chat_spans.to_string(),
                l.chat_spans_without_usage.to_string(),
            ];
            let (a, b, d) = (l.logs.values(), l.spans.values(), l.difference.values());
            for i in 0..MEASURES.len() {
                rec.extend([a[i].to_string(), b[i].to_string(), d[i].to_string()]);
            }
            rec.push(l.likely_cause.map_or("", LikelyCause::as_str).to_owned());
            w.row(&rec)?;
        }
        w.finish()
    }
}

#[derive(Default)]
struct Acc {
    log_calls: i64,
    log_without_usage: i64,
    logs: TokenCounts,
    chat_spans: i64,
    without_usage: i64,
    spans: TokenCounts,
}

/// Reconciles the days in `[from, to]` (inclusive), from `usage_hourly` (call
/// `Lake::ensure_rollups` first, as the commands do).
///
/// # Errors
///
/// The lake cannot be read, or a sum overflows.
pub fn reconcile(lake: &Lake, from: NaiveDate, to: NaiveDate) -> Result<Reconciliation> {
    let mut acc: BTreeMap<(NaiveDate, Tier, TenantId), Acc> = BTreeMap::new();
    let in_range = |dt: &NaiveDate| *dt >= from && *dt <= to;
    for dt in lake.partitions(USAGE_HOURLY)?.into_iter().filter(in_range) {
        let overflow = || Error::Overflow { table: USAGE_HOURLY, dt: dt.to_string() };
        for (key, m) in lake.hourly(dt)? {
            if m.invocations == 0 && m.chat.calls == 0 {
                continue; // a row that only carries agent and tool measures
            }
            // A chat span's hour (and day) is its start's.
            let a = acc.entry((dt, key.tier, key.tenant_id)).or_default();
            a.log_calls = a.log_calls.checked_add(m.invocations).ok_or_else(overflow)?;
            a.log_without_usage =
                a.log_without_usage.checked_add(m.usage_unknown).ok_or_else(overflow)?;
            a.logs = a.logs.checked_add(m.tokens.into()).ok_or_else(overflow)?;
            a.chat_spans = a.chat_spans.checked_add(m.chat.calls).ok_or_else(overflow)?;
            a.without_usage =
                a.without_usage.checked_add(m.chat.usage_unknown).ok_or_else(overflow)?;
            a.spans = a.spans.checked_add(m.chat.tokens.into()).ok_or_else(overflow)?;
        }
    }
    let mut lines = Vec::with_capacity(acc.len());
    for ((dt, tier, tenant_id), a) in acc {
        let difference = a
            .spans
            .checked_sub(a.logs)
            .ok_or_else(|| Error::Overflow { table: USAGE_HOURLY, dt: dt.to_string() })?;
        let status = match (a.log_calls > 0, a.chat_spans > 0) {
            _ if a.log_without_usage > 0 || a.without_usage > 0 => Status::UsageUnknown,
            (true, false) => Status::LogsOnly,
            (false, _) => Status::SpansOnly,
            (true, true) if difference.is_zero() => Status::Match,
            (true, true) => Status::Differs,
        };
        let d = difference.values();
        let likely_cause = match status {
            Status::Differs if d.iter().all(|v| *v <= 0) => Some(LikelyCause::CumulativeLogging),
            Status::Differs if d.iter().all(|v| *v >= 0) => Some(LikelyCause::MissingLogLines),
            Status::SpansOnly => Some(LikelyCause::MissingLogLines),
            _ => None,
        };
        lines.push(Line {
            dt,
            tier,
            tenant_id,
            status,
            log_calls: a.log_calls,
            log_calls_without_usage: a.log_without_usage,
            chat_spans: a.chat_spans,
            chat_spans_without_usage: a.without_usage,
            logs: a.logs,
            spans: a.spans,
            difference,
            likely_cause,
        });
    }
    Ok(Reconciliation { lines })
}

#[cfg(test)]
mod tests;
