//! The four APIs: how an event is written for each, and one sender with retries.
//!
//! | system | request | idempotency key | customer |
//! |---|---|---|---|
//! | Stripe | `POST /v1/billing/meter_events`, form-encoded, one event each (`event_name`, `payload[stripe_customer_id]`, `payload[value]`, `identifier`, `timestamp`) | `identifier`, and the `Idempotency-Key` header | `customer_ids.stripe` (`cus_…`), required |
//! | Lago | `POST /api/v1/events/batch`, JSON `{"events": [...]}`, 100 at most (`transaction_id`, `external_subscription_id`, `code`, `timestamp`, `properties`) | `transaction_id` | `customer_ids.lago` (the external subscription id), else the tenant id |
//! | OpenMeter | `POST /api/v1/events`, `application/cloudevents-batch+json`, 100 at most (CloudEvents 1.0: `id`, `source`, `type`, `subject`, `time`, `data`) | `id` (with `source`) | `customer_ids.openmeter` (the subject), else the tenant id |
//! | Metronome | `POST /v1/ingest`, a JSON array, 100 at most (`transaction_id`, `customer_id`, `event_type`, `timestamp`, `properties`) | `transaction_id` | `customer_ids.metronome` (id or ingest alias), else the tenant id |
//!
//! Every request carries `Authorization: Bearer <token>`. Connection errors, timeouts, 429
//! and 5xx are retried with exponential backoff (`Retry-After` honoured, at most 30 s); other
//! answers fail at once. An answer saying the event already exists (a resend) is success.

use std::time::Duration;

use agentmeter_schemas::TenantId;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{PushError, PushOptions};
use crate::invoice::roster::Roster;

/// A billing system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum System {
    /// Stripe Billing meter events.
    Stripe,
    /// Lago.
    Lago,
    /// OpenMeter.
    OpenMeter,
    /// Metronome.
    Metronome,
}

impl System {
    /// Every system.
    pub const ALL: [System; 4] =
        [System::Stripe, System::Lago, System::OpenMeter, System::Metronome];

    /// The lowercase name (the roster's `customer_ids` key, the ledger's directory).
    pub fn name(self) -> &'static str {
        match self {
            System::Stripe => "stripe",
            System::Lago => "lago",
            System::OpenMeter => "openmeter",
            System::Metronome => "metronome",
        }
    }

    /// The official API's base URL.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            System::Stripe => "https://api.stripe.com",
            System::Lago => "https://api.getlago.com",
            System::OpenMeter => "https://openmeter.cloud",
            System::Metronome => "https://api.metronome.com",
        }
    }

    /// Events per request.
    pub fn batch_size(self) -> usize {
        match self {
            System::Stripe => 1,
            _ => 100,
        }
    }

    /// The customer a tenant's events go to, from the roster's `customer_ids`; Stripe
    /// needs one, the others default to the tenant id.
    pub fn customer(self, roster: &Roster, tenant: &TenantId) -> Option<String> {
        let given =
            roster.bill_to.get(tenant).and_then(|b| b.customer_ids.get(self.name())).cloned();
        match self {
            System::Stripe => given,
            _ => Some(given.unwrap_or_else(|| tenant.to_string())),
        }
    }
}

impl std::str::FromStr for System {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        System::ALL.into_iter().find(|x| x.name() == s).ok_or_else(|| {
            format!("{s:?} is not a billing system: stripe, lago, openmeter or metronome")
        })
    }
}

/// One event as every system gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    /// The idempotency key.
    pub identifier: String,
    /// The customer in the system.
    pub customer: String,
    /// Meter event name, metric code or event type.
    pub event_name: String,
    /// The hour the usage is of (the event time).
    pub hour: DateTime<Utc>,
    /// The model.
    pub model_id: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The quantity.
    pub quantity: i64,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The request of a batch: path, content type and body.
pub fn request(system: System, events: &[UsageEvent]) -> (&'static str, &'static str, Vec<u8>) {
    match system {
        System::Stripe => {
            let e = &events[0];
            let form = [
                ("event_name", e.event_name.clone()),
                ("identifier", e.identifier.clone()),
                ("timestamp", e.hour.timestamp().to_string()),
                ("payload[stripe_customer_id]", e.customer.clone()),
                ("payload[value]", e.quantity.to_string()),
                ("payload[model]", e.model_id.clone()),
            ];
            // The URL library's form encoder (application/x-www-form-urlencoded).
            let mut url = reqwest::Url::parse("form:").unwrap_or_else(|_| unreachable!());
            url.query_pairs_mut().extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())));
            let body = url.query().unwrap_or_default().to_owned();
            ("/v1/billing/meter_events", "application/x-www-form-urlencoded", body.into_bytes())
        }
        System::Lago => {
            let events: Vec<Value> = events
                .iter()
                .map(|e| {
                    json!({
                        "transaction_id": e.identifier,
                        "external_subscription_id": e.customer,
                        "code": e.event_name,
                        "timestamp": e.hour.timestamp(),
                        "properties": {"value": e.quantity, "model": e.model_id, "tenant_id": e.tenant_id.as_str()},
                    })
                })
                .collect();
            (
                "/api/v1/events/batch",
                "application/json",
                json!({ "events": events }).to_string().into_bytes(),
            )
        }
        System::OpenMeter => {
            let events: Vec<Value> = events
                .iter()
                .map(|e| {
                    json!({
                        "specversion": "1.0",
                        "id": e.identifier,
                        "source": "agentmeter",
                        "type": e.event_name,
                        "subject": e.customer,
                        "time": rfc3339(e.hour),
                        "datacontenttype": "application/json",
                        "data": {"value": e.quantity, "model": e.model_id, "tenant_id": e.tenant_id.as_str()},
                    })
                })
                .collect();
            (
                "/api/v1/events",
                "application/cloudevents-batch+json",
                Value::Array(events).to_string().into_bytes(),
            )
        }
        System::Metronome => {
            let events: Vec<Value> = events
                .iter()
                .map(|e| {
                    json!({
                        "transaction_id": e.identifier,
                        "customer_id": e.customer,
                        "event_type": e.event_name,
                        "timestamp": rfc3339(e.hour),
                        "properties": {"value": e.quantity, "model": e.model_id, "tenant_id": e.tenant_id.as_str()},
                    })
                })
                .collect();
            ("/v1/ingest", "application/json", Value::Array(events).to_string().into_bytes())
        }
    }
}

/// Whether a refusal says the event is already there: a resend of an event the system took.
fn already_there(status: StatusCode, body: &str) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY
    ) && (body.contains("already exist") || body.contains("value_already_exist"))
}

/// Sends batches with retries, on its own runtime (the engine around it is synchronous).
pub(crate) struct Sender {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    opts: PushOptions,
}

impl Sender {
    pub(crate) fn new(opts: &PushOptions) -> Result<Self, PushError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PushError::Client(e.to_string()))?;
        let client = reqwest::Client::builder()
            .timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PushError::Client(e.to_string()))?;
        Ok(Self { rt, client, opts: opts.clone() })
    }

    /// Sends one batch; `Err` names the system and the last answer (never the token).
    pub(crate) fn send(&self, events: &[UsageEvent]) -> Result<(), String> {
        let system = self.opts.system;
        let (path, content_type, body) = request(system, events);
        let url = format!("{}{path}", self.opts.endpoint.trim_end_matches('/'));
        let mut wait = self.opts.initial_backoff;
        let mut last = String::new();
        for attempt in 1..=self.opts.max_attempts.max(1) {
            let mut req = self
                .client
                .post(&url)
                .bearer_auth(&self.opts.token)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone());
            if system == System::Stripe {
                req = req.header("Idempotency-Key", &events[0].identifier);
            }
            let outcome = self.rt.block_on(async {
                match req.send().await {
                    Ok(r) => {
                        let status = r.status();
                        let retry_after = r
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok());
                        let text = r.text().await.unwrap_or_default();
                        Ok((status, retry_after, text))
                    }
                    Err(e) => Err(e.without_url().to_string()),
                }
            });
            let retry = match outcome {
                Ok((status, _, _)) if status.is_success() => return Ok(()),
                Ok((status, _, text)) if already_there(status, &text) => return Ok(()),
                Ok((status, retry_after, text)) => {
                    let snippet: String = text.chars().take(300).collect();
                    last = format!("{} answered {status}: {snippet}", system.name());
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        if let Some(s) = retry_after {
                            wait = Duration::from_secs(s.min(30));
                        }
                        true
                    } else {
                        false
                    }
                }
                Err(e) => {
                    last = format!("{}: {e}", system.name());
                    true
                }
            };
            if !retry || attempt == self.opts.max_attempts.max(1) {
                break;
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        Err(last)
    }
}
