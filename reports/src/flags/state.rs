//! Alert state: which flags are raised, persisted with the lake, so that each flag raises one
//! alert when it appears and one when it resolves, however often flags are evaluated.
//!
//! The state remembers the last evaluation time it has seen. A run only turns evaluation times
//! after it into transitions; re-evaluating a range already seen sends nothing again. Alerts
//! a sink could not take are kept and retried by the next run (their ids stay the same, so a
//! receiver that saw one already can drop it).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::engine::Evaluation;
use super::model::{Alert, Flag, Transition};

/// A raised flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Raised {
    /// When it was raised (the evaluation time).
    pub raised_at: DateTime<Utc>,
    /// The flag as last evaluated.
    pub flag: Flag,
}

/// An alert a sink has not taken yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// The sink, as given to `--alert`.
    pub sink: String,
    /// The alert.
    pub alert: Alert,
}

/// The persisted state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlagState {
    /// The last evaluation time turned into transitions.
    pub evaluated_through: Option<DateTime<Utc>>,
    /// Flags raised and not resolved, by id.
    pub active: BTreeMap<String, Raised>,
    /// Deliveries to retry.
    #[serde(default)]
    pub pending: Vec<Pending>,
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
