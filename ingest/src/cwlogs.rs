//! Backfill from CloudWatch Logs through `FilterLogEvents` (`aws-sdk-cloudwatchlogs`).
//!
//! `logs://LOG_GROUP?start=T&end=T` names every event of a log group in `[start, end)`. The
//! events keep their CloudWatch event ids, so they deduplicate against the same events
//! delivered through a subscription (Kinesis, Firehose) and against an earlier backfill.

use aws_sdk_cloudwatchlogs::Client;
use chrono::{DateTime, NaiveDate, Utc};

/// A parsed `logs://` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsQuery {
    /// The log group name.
    pub group: String,
    /// First millisecond (inclusive).
    pub start_ms: i64,
    /// Last millisecond (exclusive).
    pub end_ms: i64,
}

fn parse_time(key: &str, value: &str) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis());
    }
    Err(format!("{key}={value}: not an RFC 3339 time or a YYYY-MM-DD date"))
}

impl LogsQuery {
    /// Parses `logs://GROUP?start=T&end=T` (`T`: RFC 3339 or `YYYY-MM-DD`, UTC midnight;
    /// `end` is exclusive and defaults to `now`).
    ///
    /// # Errors
    ///
    /// A message naming what is wrong.
    pub fn parse(uri: &str, now: DateTime<Utc>) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("logs://")
            .ok_or_else(|| format!("{uri}: a logs source starts with logs://"))?;
        let (group, query) = rest.split_once('?').unwrap_or((rest, ""));
        if group.is_empty() {
            return Err(format!("{uri}: no log group (logs://LOG_GROUP?start=...&end=...)"));
        }
        let (mut start, mut end) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "start" => start = Some(parse_time(k, v)?),
                "end" => end = Some(parse_time(k, v)?),
                other => {
                    return Err(format!("{uri}: unknown parameter {other:?} (start, end)"));
                }
            }
        }
        let start_ms = start
            .ok_or_else(|| format!("{uri}: start=... is required (RFC 3339 or YYYY-MM-DD)"))?;
        let end_ms = end.unwrap_or_else(|| now.timestamp_millis());
        if end_ms <= start_ms {
            return Err(format!("{uri}: end must be after start"));
        }
        Ok(Self { group: group.to_owned(), start_ms, end_ms })
    }
}

/// One event as the Logs API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLogEvent {
    /// CloudWatch event id.
    pub id: String,
    /// Log stream.
    pub stream: String,
    /// Event time, ms.
    pub timestamp_ms: i64,
    /// The message.
    pub message: String,
}

/// A CloudWatch Logs failure that retrying did not fix.
#[derive(Debug, thiserror::Error)]
#[error("CloudWatch Logs FilterLogEvents on {group}: {detail}")]
pub struct LogsError {
    /// The log group.
    pub group: String,
    /// What AWS said, or the transport error.
    pub detail: String,
}

/// Pages through `FilterLogEvents` for one query.
pub struct LogsReader {
    client: Client,
    query: LogsQuery,
    token: Option<String>,
    done: bool,
}

impl LogsReader {
    /// A reader of `query`.
    pub fn new(client: Client, query: LogsQuery) -> Self {
        Self { client, query, token: None, done: false }
    }

    /// The query.
    pub fn query(&self) -> &LogsQuery {
        &self.query
    }

    /// The next page of events, or `None` after the last page.
    ///
    /// # Errors
    ///
    /// The page cannot be fetched after every retry.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ApiLogEvent>>, LogsError> {
        if self.done {
            return Ok(None);
        }
        let mut req = self
            .client
            .filter_log_events()
            .log_group_name(&self.query.group)
            .start_time(self.query.start_ms)
            // The API's end time is inclusive.
            .end_time(self.query.end_ms - 1);
        if let Some(t) = &self.token {
            req = req.next_token(t);
        }
        let out = req.send().await.map_err(|e| LogsError {
            group: self.query.group.clone(),
            detail: crate::aws_error::describe(&e),
        })?;
        let events = out
            .events()
            .iter()
            .map(|e| ApiLogEvent {
                id: e.event_id().unwrap_or_default().to_owned(),
                stream: e.log_stream_name().unwrap_or_default().to_owned(),
                timestamp_ms: e.timestamp().unwrap_or_default(),
                message: e.message().unwrap_or_default().to_owned(),
            })
            .collect();
        match out.next_token() {
            // A repeated token would page forever.
            Some(t) if !t.is_empty() && self.token.as_deref() != Some(t) => {
                self.token = Some(t.to_owned());
            }
            _ => self.done = true,
        }
        Ok(Some(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_with_times_or_dates_and_errors_name_the_part() {
        let now: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
        let q = LogsQuery::parse(
            "logs:///aws/lambda/clinic-agent?start=2026-10-01&end=2026-10-02T12:00:00Z",
            now,
        )
        .unwrap();
        assert_eq!(q.group, "/aws/lambda/clinic-agent");
        assert_eq!(q.start_ms, 1_790_812_800_000);
        assert_eq!(q.end_ms, 1_790_812_800_000 + 36 * 3_600_000);
        let q = LogsQuery::parse("logs://g?start=2026-10-31", now).unwrap();
        assert_eq!(q.end_ms, now.timestamp_millis());
        let err = |u: &str| LogsQuery::parse(u, now).unwrap_err();
        assert!(err("logs://?start=2026-10-01").contains("no log group"));
        assert!(err("logs://g").contains("start=... is required"));
        assert!(err("logs://g?start=yesterday").contains("start=yesterday: not an RFC 3339"));
        assert!(err("logs://g?start=2026-10-02&end=2026-10-01").contains("end must be after"));
        assert!(err("logs://g?start=2026-10-01&limit=5").contains("unknown parameter \"limit\""));
    }
}
