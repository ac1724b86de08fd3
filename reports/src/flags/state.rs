//! Alert state: which flags are raised, persisted with the lake, so that each flag raises one
//! alert when it appears and one when it resolves, however often flags are evaluated.
//!
//! The state remembers the last evaluation time it has seen. A run only turns evaluation times
//! after it into transitions; re-evaluating a range already seen sends nothing again. Alerts
//! a sink could not take are kept ([`Pending`]) and retried by a later run that has the same
//! sink configured (their ids stay the same, so a receiver that saw one already can drop it),
//! until they are older than the maximum age ([`FlagState::expire`]).
//!
//! The state file never holds a sink as configured, which may carry credentials (a webhook's
//! user-info or `?token=`): a pending alert keeps the sink's redacted display form and a digest
//! of the configured form ([`AlertSink::key`]). State files written before that (with the
//! configured form in `sink`) are migrated when read ([`FlagState::from_json`]).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::engine::Evaluation;
use super::model::{Alert, Flag, Transition};
use crate::alerts::AlertSink;

/// A raised flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Raised {
    /// When it was raised (the evaluation time).
    pub raised_at: DateTime<Utc>,
    /// The flag as last evaluated.
    pub flag: Flag,
}

/// An alert a sink has not taken yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pending {
    /// The sink's display form ([`AlertSink`]'s `Display`: user-info and query redacted,
    /// fragment dropped), for reports and logs only.
    pub sink: String,
    /// [`AlertSink::key`] of the sink as configured: a later run retries the alert only to the
    /// configured sink with this key.
    pub sink_key: String,
    /// The alert.
    pub alert: Alert,
    /// When the alert was first kept for this sink (its first failure, or the run that held
    /// it back because the sink's circuit was open); the maximum age counts from here.
    pub first_failed_at: DateTime<Utc>,
    /// Requests (or publishes, or writes) made for it so far, over all runs.
    pub attempts: u32,
}

impl Pending {
    /// A pending alert for `sink`, kept since `now`.
    pub fn new(sink: &AlertSink, alert: Alert, now: DateTime<Utc>, attempts: u32) -> Self {
        Self { sink: sink.to_string(), sink_key: sink.key(), alert, first_failed_at: now, attempts }
    }

    /// Whether it is older than `max_age` at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>, max_age: TimeDelta) -> bool {
        now - self.first_failed_at > max_age
    }
}

/// The persisted state.
///
/// Written with `serde_json`; read with [`FlagState::from_json`], which also reads and migrates
/// the older format.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FlagState {
    /// The last evaluation time turned into transitions.
    pub evaluated_through: Option<DateTime<Utc>>,
    /// Flags raised and not resolved, by id.
    pub active: BTreeMap<String, Raised>,
    /// Deliveries to retry.
    pub pending: Vec<Pending>,
}

/// The state file as stored by any version.
#[derive(Deserialize)]
struct StoredState {
    evaluated_through: Option<DateTime<Utc>>,
    active: BTreeMap<String, Raised>,
    #[serde(default)]
    pending: Vec<StoredPending>,
}

/// A pending alert as stored by any version: before sink keys, `sink` was the sink as given
/// to `--alert` (credentials included) and there was no key, time or attempt count.
#[derive(Deserialize)]
struct StoredPending {
    sink: String,
    sink_key: Option<String>,
    alert: Alert,
    first_failed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    attempts: u32,
}

/// What an old-format sink that no longer parses is shown as (its text may hold credentials).
const UNRECOGNIZED_SINK: &str = "[unrecognized sink]";

impl StoredPending {
    fn migrate(self, now: DateTime<Utc>) -> Pending {
        let (sink, sink_key) = match self.sink_key {
            Some(key) => (self.sink, key),
            None => match self.sink.parse::<AlertSink>() {
                Ok(sink) => (sink.to_string(), sink.key()),
                // It can never match a configured sink again; it stays until it expires, and
                // its text is not kept.
                Err(_) => (UNRECOGNIZED_SINK.to_owned(), unrecognized_key(&self.sink)),
            },
        };
        Pending {
            sink,
            sink_key,
            alert: self.alert,
            // Older files did not record when; the migration counts as the first failure,
            // so no alert expires merely because the format changed.
            first_failed_at: self.first_failed_at.unwrap_or(now),
            attempts: self.attempts,
        }
    }
}

/// A key for a sink text that does not parse: a digest like [`AlertSink::key`]'s, of the
/// text, so that the text itself is not stored.
fn unrecognized_key(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"unrecognized\0");
    hash.update(text.as_bytes());
    hex::encode(hash.finalize())
}

/// Alerts kept for a sink that is not configured in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// The sink's display form.
    pub sink: String,
    /// Alerts kept for it.
    pub alerts: usize,
}

/// The idempotency key of an alert: a digest of the flag id, the transition and the time the
/// flag was raised.
pub fn alert_id(flag_id: &str, transition: Transition, raised_at: DateTime<Utc>) -> String {
    let t = match transition {
        Transition::Raised => "raised",
        Transition::Resolved => "resolved",
    };
    let text = format!("{flag_id}|{t}|{}", raised_at.to_rfc3339());
    agentmeter_schemas::content_digest_hex(text.as_bytes())
}

impl FlagState {
    /// Reads a state file, in the current format or the one before sink keys. Pending alerts
    /// of the older format get their sink's key and redacted form (so the configured form,
    /// which may carry credentials, is gone when the state is written back) and `now` as
    /// their first failure.
    ///
    /// # Errors
    ///
    /// The JSON error when the bytes are not a state file.
    pub fn from_json(bytes: &[u8], now: DateTime<Utc>) -> serde_json::Result<Self> {
        let stored: StoredState = serde_json::from_slice(bytes)?;
        Ok(Self {
            evaluated_through: stored.evaluated_through,
            active: stored.active,
            pending: stored.pending.into_iter().map(|p| p.migrate(now)).collect(),
        })
    }

    /// Drops the pending alerts older than `max_age` at `now`, logs a warning for each (sink
    /// and alert id), and returns them.
    pub fn expire(&mut self, now: DateTime<Utc>, max_age: TimeDelta) -> Vec<Pending> {
        let (expired, kept) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.is_expired(now, max_age));
        self.pending = kept;
        for p in &expired {
            warn!(sink = %p.sink, alert_id = %p.alert.alert_id,
                first_failed_at = %p.first_failed_at.to_rfc3339(), attempts = p.attempts,
                "Pending alert older than the maximum age; dropped without delivery.");
        }
        expired
    }

    /// The pending alerts for sinks other than `sinks`, by sink in order of first appearance:
    /// a run leaves them alone (they wait for a run with their sink, or expire).
    pub fn backlog(&self, sinks: &[AlertSink]) -> Vec<Backlog> {
        let configured: Vec<String> = sinks.iter().map(AlertSink::key).collect();
        let mut out: Vec<(String, Backlog)> = Vec::new();
        for p in self.pending.iter().filter(|p| !configured.contains(&p.sink_key)) {
            match out.iter_mut().find(|(key, _)| *key == p.sink_key) {
                Some((_, b)) => b.alerts += 1,
                None => out.push((p.sink_key.clone(), Backlog { sink: p.sink.clone(), alerts: 1 })),
            }
        }
        out.into_iter().map(|(_, b)| b).collect()
    }

    /// Applies the evaluations after `evaluated_through`, in order, and returns the alerts of
    /// their transitions.
    pub fn advance(&mut self, evaluations: &[Evaluation]) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for e in evaluations {
            if self.evaluated_through.is_some_and(|t| e.at <= t) {
                continue;
            }
            let here: BTreeMap<&str, &Flag> = e.flags.iter().map(|f| (f.id.as_str(), f)).collect();
            let gone: Vec<String> =
                self.active.keys().filter(|id| !here.contains_key(id.as_str())).cloned().collect();
            for id in gone {
                if let Some(r) = self.active.remove(&id) {
                    // A budget level holds until its period ends: nothing to resolve, and
                    // each level alerts once per period.
                    if r.flag.kind == super::model::FlagKind::BudgetThreshold {
                        continue;
                    }
                    let mut flag = r.flag;
                    flag.status = super::model::FlagStatus::Resolved;
                    alerts.push(Alert {
                        alert_id: alert_id(&id, Transition::Resolved, r.raised_at),
                        transition: Transition::Resolved,
                        at: e.at,
                        flag,
                    });
                }
            }
            for (id, f) in here {
                match self.active.get_mut(id) {
                    Some(r) => r.flag = f.clone(),
                    None => {
                        self.active
                            .insert(id.to_owned(), Raised { raised_at: e.at, flag: f.clone() });
                        alerts.push(Alert {
                            alert_id: alert_id(id, Transition::Raised, e.at),
                            transition: Transition::Raised,
                            at: e.at,
                            flag: f.clone(),
                        });
                    }
                }
            }
            self.evaluated_through = Some(e.at);
        }
        alerts
    }
}
