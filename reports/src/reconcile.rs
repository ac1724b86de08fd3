//! Token reconciliation: per day, tier and tenant, the tokens of the `inference_usage` logs
//! (`usage_hourly`, the billing source) against the tokens of the `chat` spans (`agent_spans`).
//!
//! Only `chat` spans are summed: they carry one model call each, while `invoke_agent` spans
//! repeat their children's sum (or an Agent object's lifetime total), so adding both would
//! double count. A `chat` span whose token attributes are all absent or zero is counted
//! apart as "usage unknown" (a stream that ended without a usage chunk), never as free.
//!
//! Input, output, cache-read and cache-write tokens are compared. `total_tokens` is not:
//! the logs state it either with or without the cache counts, so it is no independent check.
//!
//! A day is the UTC day of the log line's timestamp and of the chat span's start; an agent
//! call that straddles midnight can show as equal and opposite differences on two days.

use std::collections::BTreeMap;

use agentmeter_aggregate::{Error, Lake, Result};
use agentmeter_schemas::tables::{AGENT_SPANS, USAGE_HOURLY};
use agentmeter_schemas::{AgentSpan, TenantId, Tier, Tokens};
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
}

impl Status {
    /// The snake_case name used in the exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Match => "match",
            Status::Differs => "differs",
            Status::LogsOnly => "logs_only",
            Status::SpansOnly => "spans_only",
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
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = [
            "dt",
            "tier",
            "tenant_id",
            "status",
            "log_calls",
            "chat_spans",
            "chat_spans_without_usage",
        ]
        .map(str::to_owned)
        .to_vec();
        for m in MEASURES {
            header.extend([format!("log_{m}"), format!("span_{m}"), format!("difference_{m}")]);
        }
        w.write_record(&header)?;
        for l in &self.lines {
            let mut rec = vec![
                l.dt.to_string(),
                l.tier.as_str().to_owned(),
                l.tenant_id.as_str().to_owned(),
                l.status.as_str().to_owned(),
                l.log_calls.to_string(),
                l.chat_spans.to_string(),
                l.chat_spans_without_usage.to_string(),
            ];
            let (a, b, d) = (l.logs.values(), l.spans.values(), l.difference.values());
            for i in 0..MEASURES.len() {
                rec.extend([a[i].to_string(), b[i].to_string(), d[i].to_string()]);
            }
            w.write_record(&rec)?;
        }
        w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
    }
}

#[derive(Default)]
struct Acc {
    log_calls: i64,
    logs: TokenCounts,
    has_logs: bool,
    chat_spans: i64,
    without_usage: i64,
    spans: TokenCounts,
}

fn span_counts(s: &AgentSpan) -> TokenCounts {
    let t = s.tokens;
    TokenCounts {
        input: t.input.unwrap_or(0),
        output: t.output.unwrap_or(0),
        cache_read: t.cache_read.unwrap_or(0),
        cache_write: t.cache_write.unwrap_or(0),
    }
}

/// Reconciles the days in `[from, to]` (inclusive).
///
/// Spans are read a day at a time, each span once.
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
            if m.invocations == 0 && m.tokens == Tokens::default() {
                continue; // a row that only carries span measures
            }
            let a = acc.entry((dt, key.tier, key.tenant_id)).or_default();
            a.has_logs = true;
            a.log_calls = a.log_calls.checked_add(m.invocations).ok_or_else(overflow)?;
            a.logs = a.logs.checked_add(m.tokens.into()).ok_or_else(overflow)?;
        }
    }
    for dt in lake.partitions(AGENT_SPANS)?.into_iter().filter(in_range) {
        let overflow = || Error::Overflow { table: AGENT_SPANS, dt: dt.to_string() };
        // Each span once, however many writers stored it.
        for s in lake.records::<AgentSpan>(dt)?.iter().filter(|s| s.is_operation("chat")) {
            // The partition is the span's start day.
            let a = acc.entry((dt, s.tier.clone(), s.tenant_id.clone())).or_default();
            let c = span_counts(s);
            a.chat_spans += 1;
            if c.is_zero() {
                a.without_usage += 1;
            }
            a.spans = a.spans.checked_add(c).ok_or_else(overflow)?;
        }
    }
    let mut lines = Vec::with_capacity(acc.len());
    for ((dt, tier, tenant_id), a) in acc {
        let difference = a
            .spans
            .checked_sub(a.logs)
            .ok_or_else(|| Error::Overflow { table: AGENT_SPANS, dt: dt.to_string() })?;
        let status = match (a.has_logs, a.chat_spans > 0) {
            (true, false) => Status::LogsOnly,
            (false, _) => Status::SpansOnly,
            (true, true) if difference.is_zero() => Status::Match,
            (true, true) => Status::Differs,
        };
        lines.push(Line {
            dt,
            tier,
            tenant_id,
            status,
            log_calls: a.log_calls,
            chat_spans: a.chat_spans,
            chat_spans_without_usage: a.without_usage,
            logs: a.logs,
            spans: a.spans,
            difference,
        });
    }
    Ok(Reconciliation { lines })
}

#[cfg(test)]
mod tests;
