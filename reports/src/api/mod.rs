//! The tenant usage API, served beside the OTLP receiver by `serve` and `run`:
//!
//! - `GET /v1/usage?tenant=T&from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=day|model|user`: the
//!   tenant's usage over `[from, to)` (default: this month to date), one row per group, and
//!   the totals ([`usage::UsageAnswer`]);
//! - `GET /v1/invoices/preview?tenant=T&period=YYYY-MM`: the tenant's invoice for the period
//!   as it stands (default: this month), priced like `invoice --preview`.
//!
//! Every request carries `Authorization: Bearer <token>`; the token file ([`tokens`]) scopes
//! each token to one tenant or to all. No token or an unknown one is 401; a tenant's token
//! asking for another tenant is 403, the same answer whether that tenant exists or not. The
//! answers come from the rollups, never from the events. Errors are JSON `{"error": "..."}`;
//! a failure to read the lake is logged in full and answered without detail.

pub mod tokens;
pub mod usage;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use agentmeter_aggregate::Lake;
use agentmeter_schemas::TenantId;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Datelike, NaiveDate, Utc};
use serde::Serialize;

use crate::invoice::roster::Roster;
use crate::invoice::{Period, reprice};
use crate::prices::PriceBook;
pub use tokens::{ApiTokens, Scope};
pub use usage::GroupBy;
/// The routes a server merges with its own.
pub type Routes = Router;

/// The longest range one usage request may ask for.
pub const MAX_DAYS: i64 = 366;

/// What the API reads.
pub struct ApiConfig {
    /// The lake.
    pub lake: Lake,
    /// Who may read what.
    pub tokens: ApiTokens,
    /// The price book of invoice previews (none: previews are off).
    pub prices: Option<PriceBook>,
    /// The roster of invoice previews (tiers of tenants without usage, bill-to details).
    pub roster: Roster,
}

/// An answer that is not a 200.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
        }
        let mut r = json(self.0, &Body { error: &self.1 });
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut r = (status, bytes).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn bad(msg: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, msg.into())
}

/// The token's scope, then the tenant asked for, checked against it.
fn authorize(
    cfg: &ApiConfig,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
) -> Result<TenantId, Failure> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(scope) = cfg.tokens.scope(auth) else {
        return Err(Failure(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (Authorization: Bearer <token>)".into(),
        ));
    };
    let Some(raw) = params.get("tenant") else {
        return Err(bad("the tenant parameter is required (tenant=<tenant id>)"));
    };
    let tenant = TenantId::new(raw).map_err(|e| bad(format!("tenant: {e}")))?;
    if !scope.allows(&tenant) {
        return Err(Failure(StatusCode::FORBIDDEN, "this token may not read that tenant".into()));
    }
    Ok(tenant)
}

fn only(params: &BTreeMap<String, String>, known: &[&str]) -> Result<(), Failure> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "unknown parameter {:?}; expected {}",
            k.chars().take(40).collect::<String>(),
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn date(params: &BTreeMap<String, String>, name: &str) -> Result<Option<NaiveDate>, Failure> {
    params
        .get(name)
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| bad(format!("{name}: expected a date, YYYY-MM-DD")))
        })
        .transpose()
}

/// Runs a lake read off the async workers; a failure is logged and answered as a 500.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Failure> {
    let internal = || {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} failed; the server's log says why"),
        )
    };
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "Usage API: {what} failed.");
            Err(internal())
        }
        Err(e) => {
            tracing::error!(error = %e, "Usage API: {what} panicked.");
            Err(internal())
        }
    }
}

async fn get_usage(
    State(cfg): State<Arc<ApiConfig>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, Failure> {
    let tenant = authorize(&cfg, &headers, &params)?;
    only(&params, &["tenant", "from", "to", "group_by"])?;
    let today = Utc::now().date_naive();
    let from = date(&params, "from")?.unwrap_or_else(|| today.with_day(1).unwrap_or(today));
    let to = date(&params, "to")?.unwrap_or_else(|| today.succ_opt().unwrap_or(today));
    if to <= from {
        return Err(bad("to must be after from (to is exclusive: the day after the last)"));
    }
    if (to - from).num_days() > MAX_DAYS {
        return Err(bad(format!("at most {MAX_DAYS} days per request")));
    }
    let group_by: GroupBy =
        params.get("group_by").map_or(Ok(GroupBy::Day), |s| s.parse()).map_err(bad)?;
    let answer = blocking("reading usage", move || {
        usage::usage(&cfg.lake, &tenant, from, to, group_by).map_err(|e| e.to_string())
    })
    .await?;
    Ok(json(StatusCode::OK, &answer))
}

async fn get_preview(
    State(cfg): State<Arc<ApiConfig>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, Failure> {
    let tenant = authorize(&cfg, &headers, &params)?;
    only(&params, &["tenant", "period"])?;
    let period = match params.get("period") {
        Some(p) => Period::parse(p).map_err(|e| bad(format!("period: {e}")))?,
        None => Period::containing(Utc::now().date_naive()),
    };
    if cfg.prices.is_none() {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            "invoice previews are off: the server was started without a price book (--prices)"
                .into(),
        ));
    }
    let who = tenant.clone();
    let inv = blocking("pricing the period", move || {
        let Some(book) = cfg.prices.as_ref() else { return Ok(None) };
        reprice::tenant_invoice(&cfg.lake, book, &cfg.roster, &who, period)
            .map_err(|e| e.to_string())
    })
    .await?;
    match inv {
        Some(inv) => Ok(json(StatusCode::OK, &inv)),
        None => Err(Failure(
            StatusCode::NOT_FOUND,
            format!("{tenant} has no usage in {} and is not on the roster", period.label()),
        )),
    }
}

/// The API's routes, to merge with the receiver's; none when the API is off.
pub fn routes(cfg: Option<ApiConfig>) -> Router {
    cfg.map_or_else(Router::new, router)
}

/// The API's routes.
pub fn router(cfg: ApiConfig) -> Router {
    Router::new()
        .route("/v1/usage", get(get_usage))
        .route("/v1/invoices/preview", get(get_preview))
        .with_state(Arc::new(cfg))
}
