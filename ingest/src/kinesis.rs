//! A Kinesis Data Streams consumer (shared throughput, no KCL) through `aws-sdk-kinesis`.
//!
//! [`KinesisReader`] reads every shard of a stream: it starts each shard after its saved
//! sequence number (or at the start position for a shard never read), drains a parent shard
//! before its children (FORMATS.md 2.3), re-acquires expired iterators after the last record
//! it handed out; throttling and transient failures are retried by the SDK itself (standard
//! mode, with jitter, as the client is configured). It does not checkpoint: the caller saves
//! what [`Fetched`] reports once the data is durable, and passes the saved state back to
//! [`KinesisReader::open`] on the next run.

use std::collections::BTreeMap;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::DateTime as AwsDateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, Utc};

/// Records asked for per `GetRecords` call (the API's maximum).
const GET_LIMIT: i32 = 10_000;
/// Fresh iterators fetched for one shard in one call before giving up (an iterator expires
/// after five minutes unused; a second expiry in a row means something else is wrong).
const MAX_EXPIRED: u32 = 10;

/// Where to start a shard that has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest record still in the stream.
    TrimHorizon,
    /// Only records put after the reader starts.
    Latest,
    /// The first record at or after this time.
    AtTimestamp(DateTime<Utc>),
}

impl std::str::FromStr for StartPosition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "trim-horizon" => Ok(Self::TrimHorizon),
            "latest" => Ok(Self::Latest),
            _ => {
                let Some(t) = s.strip_prefix("at-timestamp:") else {
                    return Err(format!(
                        "{s:?} is not a start position: trim-horizon, latest or at-timestamp:RFC3339"
                    ));
                };
                DateTime::parse_from_rfc3339(t)
                    .map(|t| Self::AtTimestamp(t.with_timezone(&Utc)))
                    .map_err(|e| format!("at-timestamp:{t}: not an RFC 3339 time ({e})"))
            }
        }
    }
}

/// A Kinesis failure that retrying did not fix.
#[derive(Debug, thiserror::Error)]
#[error("Kinesis {operation} on {stream}{}: {detail}", shard.as_ref().map(|s| format!(" shard {s}")).unwrap_or_default())]
pub struct KinesisError {
    /// The API operation.
    pub operation: &'static str,
    /// The stream.
    pub stream: String,
    /// The shard, for shard operations.
    pub shard: Option<String>,
    /// What AWS said (code and message), or the transport error.
    pub detail: String,
}

/// The saved state of one shard, as the caller keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedShard {
    /// The last sequence number whose record is durable.
    pub sequence: Option<String>,
    /// Read to its end.
    pub finished: bool,
}

/// One record's data.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// Its sequence number (opaque).
    pub sequence: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// What one read of one shard returned.
#[derive(Debug)]
pub struct Fetched {
    /// The shard.
    pub shard: String,
    /// Records in shard order.
    pub records: Vec<StreamRecord>,
    /// The shard is closed and these were its last records.
    pub closed: bool,
    /// Nothing more to read right now (the reader is at the tip of an open shard).
    pub caught_up: bool,
}

#[derive(Debug, Default)]
struct Shard {
    parents: Vec<String>,
    iterator: Option<String>,
    /// Last sequence number handed out (not necessarily durable yet).
    last: Option<String>,
    finished: bool,
    /// Had no checkpoint and no parent when first listed: starts at the start position.
    root: bool,
}

/// Reads the shards of one stream.
pub struct KinesisReader {
    client: Client,
    stream: String,
    start: StartPosition,
    shards: BTreeMap<String, Shard>,
}

impl KinesisReader {
    /// A reader of `stream` (a name or an ARN) that resumes from `saved`.
    ///
    /// # Errors
    ///
    /// The shards cannot be listed.
    pub async fn open(
        client: Client,
        stream: &str,
        start: StartPosition,
        saved: &BTreeMap<String, SavedShard>,
    ) -> Result<Self, KinesisError> {
        let mut r = Self { client, stream: stream.to_owned(), start, shards: BTreeMap::new() };
        for (id, s) in saved {
            r.shards.insert(
                id.clone(),
                Shard { last: s.sequence.clone(), finished: s.finished, ..Shard::default() },
            );
        }
        r.refresh().await?;
        Ok(r)
    }

    /// The stream as given.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn error(&self, operation: &'static str, shard: Option<&str>, detail: String) -> KinesisError {
        KinesisError {
            operation,
            stream: self.stream.clone(),
            shard: shard.map(str::to_owned),
            detail,
        }
    }

    fn is_arn(&self) -> bool {
        self.stream.starts_with("arn:")
    }

    /// Lists the shards again (every page), adding new ones (children after a reshard).
    ///
    /// # Errors
    ///
    /// `ListShards` keeps failing.
    pub async fn refresh(&mut self) -> Result<(), KinesisError> {
        let mut token: Option<String> = None;
        let mut listed = Vec::new();
        loop {
            let out = self
                .send("ListShards", None, || {
                    let mut req = self.client.list_shards();
                    req = match &token {
                        Some(t) => req.next_token(t),
                        None if self.is_arn() => req.stream_arn(&self.stream),
                        None => req.stream_name(&self.stream),
                    };
                    req.send()
                })
                .await?;
            for s in out.shards() {
                let parents: Vec<String> = [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .map(str::to_owned)
                    .collect();
                listed.push((s.shard_id().to_owned(), parents));
            }
            match out.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        let first = self.shards.values().all(|s| s.parents.is_empty() && s.iterator.is_none());
        let known: Vec<String> = listed.iter().map(|(id, _)| id.clone()).collect();
        for (id, parents) in listed {
            let fresh = !self.shards.contains_key(&id);
            let shard = self.shards.entry(id).or_default();
            // A parent no longer listed has expired: its children are free to go.
            let live: Vec<String> = parents.iter().filter(|p| known.contains(p)).cloned().collect();
            if fresh && first && live.is_empty() && shard.last.is_none() {
                shard.root = true;
            }
            shard.parents = live;
        }
        Ok(())
    }

    /// Shards to read now: not finished, with every listed parent finished.
    pub fn readable(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter(|(_, s)| !s.finished)
            .filter(|(_, s)| {
                s.parents.iter().all(|p| self.shards.get(p).is_none_or(|ps| ps.finished))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// True when every listed shard is read to its end (a deleted or fully resharded stream).
    pub fn all_finished(&self) -> bool {
        self.shards.values().all(|s| s.finished)
    }

    async fn iterator(&self, id: &str) -> Result<String, KinesisError> {
        let shard = &self.shards[id];
        let (kind, seq, at) = match (&shard.last, shard.root, self.start) {
            (Some(seq), _, _) => (ShardIteratorType::AfterSequenceNumber, Some(seq.clone()), None),
            (None, true, StartPosition::Latest) => (ShardIteratorType::Latest, None, None),
            (None, true, StartPosition::AtTimestamp(t)) => {
                (ShardIteratorType::AtTimestamp, None, Some(t))
            }
            // A child shard (or a root read from the start) begins at its first record.
            (None, _, _) => (ShardIteratorType::TrimHorizon, None, None),
        };
        let out = self
            .send("GetShardIterator", Some(id), || {
                let mut req =
                    self.client.get_shard_iterator().shard_id(id).shard_iterator_type(kind.clone());
                req = if self.is_arn() {
                    req.stream_arn(&self.stream)
                } else {
                    req.stream_name(&self.stream)
                };
                if let Some(s) = &seq {
                    req = req.starting_sequence_number(s);
                }
                if let Some(t) = at {
                    req = req.timestamp(AwsDateTime::from_millis(t.timestamp_millis()));
                }
                req.send()
            })
            .await?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| self.error("GetShardIterator", Some(id), "no iterator returned".into()))
    }

    /// Reads the next records of shard `id` (at most 10,000).
    ///
    /// # Errors
    ///
    /// The shard cannot be read after every retry.
    pub async fn fetch(&mut self, id: &str) -> Result<Fetched, KinesisError> {
        let mut expired = 0;
        loop {
            let iterator = match self.shards.get(id).and_then(|s| s.iterator.clone()) {
                Some(it) => it,
                None => {
                    let it = self.iterator(id).await?;
                    if let Some(s) = self.shards.get_mut(id) {
                        s.iterator = Some(it.clone());
                    }
                    it
                }
            };
            let result = self
                .send_unless_expired("GetRecords", Some(id), || {
                    let mut req =
                        self.client.get_records().shard_iterator(&iterator).limit(GET_LIMIT);
                    if self.is_arn() {
                        req = req.stream_arn(&self.stream);
                    }
                    req.send()
                })
                .await?;
            let Some(out) = result else {
                // Expired (over 5 minutes idle): a fresh one after the last record read.
                expired += 1;
                if expired > MAX_EXPIRED {
                    return Err(self.error(
                        "GetRecords",
                        Some(id),
                        "iterator keeps expiring".into(),
                    ));
                }
                if let Some(s) = self.shards.get_mut(id) {
                    s.iterator = None;
                }
                continue;
            };
            let records: Vec<StreamRecord> = out
                .records()
                .iter()
                .map(|r| StreamRecord {
                    sequence: r.sequence_number().to_owned(),
                    data: r.data().as_ref().to_vec(),
                })
                .collect();
            let next = out.next_shard_iterator().map(str::to_owned);
            let closed = next.is_none();
            let caught_up =
                closed || (records.is_empty() && out.millis_behind_latest().unwrap_or(0) == 0);
            let shard = self.shards.entry(id.to_owned()).or_default();
            shard.iterator = next;
            if let Some(r) = records.last() {
                shard.last = Some(r.sequence.clone());
            }
            if closed {
                shard.finished = true;
            }
            return Ok(Fetched { shard: id.to_owned(), records, closed, caught_up });
        }
    }

    /// Runs `call` once (the SDK has retried throttling and transient failures).
    async fn send<T, E, F, Fut>(
        &self,
        operation: &'static str,
        shard: Option<&str>,
        call: F,
    ) -> Result<T, KinesisError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match self.send_unless_expired(operation, shard, call).await? {
            Some(v) => Ok(v),
            None => Err(self.error(operation, shard, "expired iterator".into())),
        }
    }

    /// As [`Self::send`], but `Ok(None)` when the iterator has expired.
    async fn send_unless_expired<T, E, F, Fut>(
        &self,
        operation: &'static str,
        shard: Option<&str>,
        call: F,
    ) -> Result<Option<T>, KinesisError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match call().await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some("ExpiredIteratorException") => Ok(None),
            Err(e) => Err(self.error(operation, shard, crate::aws_error::describe(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!("trim-horizon".parse(), Ok(StartPosition::TrimHorizon));
        assert_eq!("latest".parse(), Ok(StartPosition::Latest));
        assert_eq!(
            "at-timestamp:2026-10-01T00:00:00Z".parse::<StartPosition>().unwrap(),
            StartPosition::AtTimestamp("2026-10-01T00:00:00Z".parse().unwrap())
        );
        let err = "oldest".parse::<StartPosition>().unwrap_err();
        assert!(err.contains("trim-horizon, latest or at-timestamp:RFC3339"), "{err}");
        let err = "at-timestamp:yesterday".parse::<StartPosition>().unwrap_err();
        assert!(err.contains("not an RFC 3339 time"), "{err}");
    }
}
