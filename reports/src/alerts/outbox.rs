//! One run's alerts against the alert state: the pending alerts of each configured sink are
//! retried before the new ones, and whatever a sink does not take is kept in the state.

use std::fmt;

use chrono::{DateTime, Utc};

use super::deliver::deliver_queues;
use super::{AlertSink, DeliveryFailure, DeliveryOptions};
use crate::flags::Alert;
use crate::flags::state::{FlagState, Pending};

/// What [`deliver_with_state`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxReport {
    /// Deliveries that succeeded, pending and new, over all sinks.
    pub delivered: usize,
    /// Every alert a sink failed in this run (kept in the state).
    pub failures: Vec<DeliveryFailure>,
    /// The sinks whose circuit opened with alerts left unattempted, in the order given.
    pub circuits_open: Vec<CircuitOpen>,
}

/// A sink whose circuit opened in this run: one alert failed after its retries, so the rest
/// were not attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    /// The sink's display form (no credentials).
    pub sink: String,
    /// Its alerts kept for the next run: the failed one and those not attempted.
    pub kept: usize,
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.kept == 1 { "" } else { "s" };
        write!(
            f,
            "circuit open for {}: {} alert{plural} kept for the next run",
            self.sink, self.kept
        )
    }
}

/// Delivers, to each configured sink, first its pending alerts from `state` (oldest first),
/// then `new_alerts` (those not already pending for it), with [`deliver`](super::deliver)'s
/// retries and per-sink circuit breaker; then puts back into `state` every alert a sink did
/// not take.
///
/// A pending alert is retried only to the configured sink whose [`AlertSink::key`] it carries;
/// pending alerts of sinks not configured here are left as they are (see
/// [`FlagState::backlog`]). A sink given twice is served once. An alert that fails again keeps
/// its first failure time and adds this run's attempts; a new alert that fails, or is not
/// attempted because its sink's circuit opened, is kept since `now`.
pub async fn deliver_with_state(
    state: &mut FlagState,
    new_alerts: &[Alert],
    sinks: &[AlertSink],
    opts: &DeliveryOptions,
    now: DateTime<Utc>,
) -> OutboxReport {
    let keys: Vec<String> = sinks.iter().map(AlertSink::key).collect();
    let served: Vec<usize> = (0..sinks.len()).filter(|&i| !keys[..i].contains(&keys[i])).collect();
    let mut retry: Vec<Vec<Pending>> = vec![Vec::new(); sinks.len()];
    let mut untouched = Vec::new();
    for p in std::mem::take(&mut state.pending) {
        match keys.iter().position(|k| *k == p.sink_key) {
            Some(i) => retry[i].push(p),
            None => untouched.push(p),
        }
    }
    state.pending = untouched;

    let queues: Vec<Vec<Alert>> = served
        .iter()
        .map(|&i| {
            let pending = &retry[i];
            let fresh = new_alerts
                .iter()
                .filter(|a| !pending.iter().any(|p| p.alert.alert_id == a.alert_id));
            pending.iter().map(|p| p.alert.clone()).chain(fresh.cloned()).collect()
        })
        .collect();
    let borrowed: Vec<(&AlertSink, &[Alert])> =
        served.iter().zip(&queues).map(|(&i, q)| (&sinks[i], q.as_slice())).collect();
    let outcomes = deliver_queues(&borrowed, opts).await;

    let mut report = OutboxReport::default();
    for ((&i, queue), outcome) in served.iter().zip(queues).zip(outcomes) {
        let sink = &sinks[i];
        let mut earlier = std::mem::take(&mut retry[i]);
        report.delivered += outcome.delivered;
        for alert in queue {
            let failed = outcome.failures.iter().find(|f| f.alert_id == alert.alert_id);
            let held = outcome.held.contains(&alert.alert_id);
            let attempts = match (failed, held) {
                (Some(f), _) => f.attempts,
                (None, true) => 0,
                (None, false) => continue,
            };
            match earlier.iter().position(|p| p.alert.alert_id == alert.alert_id) {
                Some(at) => {
                    let mut p = earlier.swap_remove(at);
                    p.attempts = p.attempts.saturating_add(attempts);
                    state.pending.push(p);
                }
                None => state.pending.push(Pending::new(sink, alert, now, attempts)),
            }
        }
        if !outcome.held.is_empty() {
            report.circuits_open.push(CircuitOpen {
                sink: sink.to_string(),
                kept: outcome.failures.len() + outcome.held.len(),
            });
        }
        report.failures.extend(outcome.failures);
    }
    report
}
