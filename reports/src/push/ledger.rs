//! The push ledger of one system and day: what was sent per key, and the events recorded as
//! about to be sent. Replaced only from the version read, so concurrent runs never lose an
//! entry; two runs sending the same pending event send the same identifier.

use std::collections::BTreeMap;

use agentmeter_aggregate::Lake;
use agentmeter_aggregate::layout;
use agentmeter_aggregate::store::{Condition, Put};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::systems::System;
use super::{PushError, UsageKey};

/// Attempts at replacing a ledger another run keeps replacing.
const CAS_ATTEMPTS: usize = 8;

/// One key's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The quantity acknowledged by the system, in all.
    pub quantity: i64,
    /// Events recorded for the key (sent or pending): the next one's sequence number.
    pub events: u32,
}

/// An event recorded before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEntry {
    /// The key (`tenant/hour/model/component`).
    pub key: String,
    /// The event's identifier, fixed once recorded.
    pub identifier: String,
    /// The quantity it carries.
    pub quantity: i64,
}

/// The ledger's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    /// Per key.
    pub sent: BTreeMap<String, Sent>,
    /// Events recorded but not yet acknowledged.
    pub pending: Vec<PendingEntry>,
}

/// An event to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// What it bills.
    pub key: UsageKey,
    /// Its identifier (the system's idempotency key).
    pub identifier: String,
    /// The quantity.
    pub quantity: i64,
    /// Recorded by an earlier run that did not see it acknowledged.
    pub earlier_run: bool,
}

/// The identifier of a key's `n`th event to `system`: stable, so a resend is recognized.
pub fn identifier(system: System, key: &str, n: u32) -> String {
    let digest = blake3::hash(format!("{}\n{key}", system.name()).as_bytes()).to_hex();
    format!("am-{}-{n}", &digest[..32])
}

fn read(lake: &Lake, key: &str) -> Result<(Ledger, Option<String>), PushError> {
    match lake.store().get(key)? {
        None => Ok((Ledger::default(), None)),
        Some(o) => {
            let l: Ledger = serde_json::from_slice(&o.bytes).map_err(|e| PushError::Corrupt {
                uri: lake.store().uri_of(key),
                why: e.to_string(),
            })?;
            Ok((l, Some(o.etag)))
        }
    }
}

fn write(lake: &Lake, key: &str, l: &Ledger, read: Option<&str>) -> Result<bool, PushError> {
    let mut bytes = serde_json::to_vec_pretty(l)
        .map_err(|e| PushError::Corrupt { uri: lake.store().uri_of(key), why: e.to_string() })?;
    bytes.push(b'\n');
    Ok(matches!(
        lake.store().put(key, bytes.into(), Condition::replacing(read))?,
        Put::Written { .. }
    ))
}

/// What a day needs sent.
pub struct Plan {
    /// Pending events: the earlier runs' first, then the new differences (now recorded).
    pub pending: Vec<Pending>,
    /// Keys whose usage is below what was sent.
    pub decreased: usize,
}

/// Records the differences between `usage` and what was sent as pending events, and returns
/// every pending event of the day.
///
/// # Errors
///
/// The ledger cannot be read or written.
pub fn plan(
    lake: &Lake,
    system: System,
    day: NaiveDate,
    usage: &BTreeMap<UsageKey, i64>,
) -> Result<Plan, PushError> {
    let key = layout::push_ledger(system.name(), day);
    let by_text: BTreeMap<String, &UsageKey> = usage.keys().map(|k| (k.text(), k)).collect();
    for _ in 0..CAS_ATTEMPTS {
        let (mut ledger, etag) = read(lake, &key)?;
        let earlier: Vec<PendingEntry> = ledger.pending.clone();
        let mut decreased = 0;
        let mut fresh = Vec::new();
        for (text, k) in &by_text {
            let total = usage[*k];
            let recorded = ledger.sent.get(text).cloned().unwrap_or_default();
            let waiting: i64 =
                ledger.pending.iter().filter(|p| &p.key == text).map(|p| p.quantity).sum();
            let diff = total - recorded.quantity - waiting;
            if diff < 0 {
                decreased += 1;
            }
            if diff <= 0 {
                continue;
            }
            let entry = ledger.sent.entry(text.clone()).or_default();
            let p = PendingEntry {
                key: text.clone(),
                identifier: identifier(system, text, entry.events),
                quantity: diff,
            };
            entry.events += 1;
            fresh.push(p.clone());
            ledger.pending.push(p);
        }
        if !fresh.is_empty() && !write(lake, &key, &ledger, etag.as_deref())? {
            continue;
        }
        let to_pending = |p: &PendingEntry, earlier_run: bool| -> Option<Pending> {
            let k = by_text.get(&p.key).map(|k| (*k).clone()).or_else(|| parse_key(&p.key))?;
            Some(Pending {
                key: k,
                identifier: p.identifier.clone(),
                quantity: p.quantity,
                earlier_run,
            })
        };
        let mut pending: Vec<Pending> =
            earlier.iter().filter_map(|p| to_pending(p, true)).collect();
        pending.extend(fresh.iter().filter_map(|p| to_pending(p, false)));
        return Ok(Plan { pending, decreased });
    }
    Err(PushError::Busy { day })
}

/// A ledger key back into a [`UsageKey`] (a pending event whose usage is no longer read).
pub(crate) fn parse_key(text: &str) -> Option<UsageKey> {
    let (tenant, rest) = text.split_once('/')?;
    let (hour, rest) = rest.split_once('/')?;
    let (model, component) = rest.rsplit_once('/')?;
    Some(UsageKey {
        tenant_id: agentmeter_schemas::TenantId::new(tenant).ok()?,
        hour: chrono::DateTime::parse_from_rfc3339(hour).ok()?.with_timezone(&chrono::Utc),
        model_id: model.to_owned(),
        component: super::COMPONENTS.iter().find(|c| **c == component)?,
    })
}

/// Moves the acknowledged events from pending to sent.
///
/// # Errors
///
/// The ledger cannot be read or written.
pub fn mark_sent(
    lake: &Lake,
    system: System,
    day: NaiveDate,
    identifiers: &[String],
) -> Result<(), PushError> {
    if identifiers.is_empty() {
        return Ok(());
    }
    let key = layout::push_ledger(system.name(), day);
    for _ in 0..CAS_ATTEMPTS {
        let (mut ledger, etag) = read(lake, &key)?;
        let (done, kept): (Vec<PendingEntry>, Vec<PendingEntry>) =
            ledger.pending.drain(..).partition(|p| identifiers.contains(&p.identifier));
        ledger.pending = kept;
        if done.is_empty() {
            // Another run marked them first.
            return Ok(());
        }
        for p in done {
            ledger.sent.entry(p.key).or_default().quantity += p.quantity;
        }
        if write(lake, &key, &ledger, etag.as_deref())? {
            return Ok(());
        }
    }
    Err(PushError::Busy { day })
}
