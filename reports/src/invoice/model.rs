//! What an invoice run produces: invoices with their lines, cost allocations, and the
//! problems that make a run incomplete.

use agentmeter_schemas::{ModelId, ServiceTier, TenantId, Tier};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::prices::UsageSource;

/// A pool of AWS cost and the driver that splits it across a tier's tenants.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CostPool {
    /// Bedrock model inference: split by list-price token usage.
    #[default]
    Inference,
    /// AgentCore Runtime: split by agent duration (`invoke_agent` spans).
    AgentRuntime,
    /// AgentCore Gateway: split by tool calls (`execute_tool` spans).
    AgentGateway,
}

impl CostPool {
    /// The snake_case name used in the exports.
    pub fn as_str(self) -> &'static str {
        match self {
            CostPool::Inference => "inference",
            CostPool::AgentRuntime => "agent_runtime",
            CostPool::AgentGateway => "agent_gateway",
        }
    }

    /// What splits the pool, in words.
    pub fn driver(self) -> &'static str {
        match self {
            CostPool::Inference => "list-price usage",
            CostPool::AgentRuntime => "agent duration",
            CostPool::AgentGateway => "tool calls",
        }
    }

    /// The AWS service the pool's cost is billed under.
    pub fn service(self) -> &'static str {
        match self {
            CostPool::Inference => "Amazon Bedrock",
            CostPool::AgentRuntime | CostPool::AgentGateway => "Amazon Bedrock AgentCore",
        }
    }

    /// The unit of the driver's quantity.
    pub fn unit(self) -> &'static str {
        match self {
            CostPool::Inference => "Tokens",
            CostPool::AgentRuntime => "Milliseconds",
            CostPool::AgentGateway => "Calls",
        }
    }
}

/// A billing period: a calendar month in UTC, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    /// First day.
    pub start: NaiveDate,
    /// First day of the next month.
    pub end: NaiveDate,
}

impl Period {
    /// Parses `YYYY-MM`.
    ///
    /// # Errors
    ///
    /// A message naming the value when it is not a month.
    pub fn parse(s: &str) -> Result<Self, String> {
        let start = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
            .ok()
            .filter(|_| s.len() == 7)
            .ok_or_else(|| format!("period {s:?} is not a YYYY-MM month"))?;
        Ok(Self::containing(start))
    }

    /// The month containing `day`.
    pub fn containing(day: NaiveDate) -> Self {
        let start = day.with_day(1).unwrap_or(day);
        let end = if start.month() == 12 {
            NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)
        }
        .unwrap_or(start);
        Self { start, end }
    }

    /// `YYYY-MM`.
    pub fn label(&self) -> String {
        self.start.format("%Y-%m").to_string()
    }

    /// The start as an instant.
    pub fn start_time(&self) -> DateTime<Utc> {
        self.start.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// The end as an instant.
    pub fn end_time(&self) -> DateTime<Utc> {
        self.end.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// Every day of the period.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.start.iter_days().take_while(|d| *d < self.end)
    }
}

/// What an invoice line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Input tokens, per million.
    InputTokens,
    /// Output tokens, per million.
    OutputTokens,
    /// Prompt-cache read tokens, per million.
    CacheReadTokens,
    /// Prompt-cache write tokens with the 5-minute lifetime, per million.
    CacheWriteTokens,
    /// Prompt-cache write tokens with a 1-hour lifetime, per million.
    #[serde(rename = "cache_write_1h_tokens")]
    CacheWrite1hTokens,
    /// Tool calls, per call.
    ToolCalls,
    /// The plan's monthly base fee.
    PlanFee,
    /// The credit for usage included in the base fee (negative).
    IncludedUsage,
}

impl Component {
    /// The snake_case name used in every output.
    pub fn code(self) -> &'static str {
        match self {
            Component::InputTokens => "input_tokens",
            Component::OutputTokens => "output_tokens",
            Component::CacheReadTokens => "cache_read_tokens",
            Component::CacheWriteTokens => "cache_write_tokens",
            Component::CacheWrite1hTokens => "cache_write_1h_tokens",
            Component::ToolCalls => "tool_calls",
            Component::PlanFee => "plan_fee",
            Component::IncludedUsage => "included_usage",
        }
    }

    /// Unit of the line's quantity.
    pub fn unit(self) -> &'static str {
        match self {
            Component::InputTokens
            | Component::OutputTokens
            | Component::CacheReadTokens
            | Component::CacheWriteTokens
            | Component::CacheWrite1hTokens => "tokens",
            Component::ToolCalls => "calls",
            Component::PlanFee => "month",
            Component::IncludedUsage => "credit",
        }
    }

    /// The unit of a price and of the quantity in the finance exports: `1M tokens`, `call`,
    /// `month` or `credit`.
    pub fn billing_unit(self) -> &'static str {
        match self {
            Component::ToolCalls => "call",
            Component::PlanFee => "month",
            Component::IncludedUsage => "credit",
            _ => "1M tokens",
        }
    }

    /// True for components priced per million units.
    pub fn per_million(self) -> bool {
        self.unit() == "tokens"
    }
}

/// One invoice line. `amount` is rounded to the cent (the one rounding point of a line);
/// `unit_price` is exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// What it charges for.
    pub component: Component,
    /// The model, for usage lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<ModelId>,
    /// The model's display name from the price book, when it gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// The tier whose plan priced the line.
    pub tier: Tier,
    /// Quantity in `unit`s.
    pub quantity: i64,
    /// Unit of the quantity.
    pub unit: &'static str,
    /// Price per unit (per million tokens for token components).
    pub unit_price: Decimal,
    /// Amount, rounded to the cent.
    pub amount: Decimal,
    /// The closed period (`YYYY-MM`) whose late usage this line bills, at that period's
    /// prices; `None` for the period's own usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjusts_period: Option<String>,
    /// Start of the price's validity (usage lines). Internal: in `invoices.csv` and the
    /// `invoice_lines` table, not in the document a customer receives.
    #[serde(skip)]
    pub price_effective_from: Option<DateTime<Utc>>,
    /// End of the price's validity, if it ends. Internal, as `price_effective_from`.
    #[serde(skip)]
    pub price_effective_to: Option<DateTime<Utc>>,
    /// The price class of a usage line: the service tier its calls ran in (omitted in JSON
    /// when standard) and whether they were priced at long-context prices (omitted when not).
    #[serde(flatten)]
    pub class: Option<LineClass>,
}

/// The price class of a usage line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LineClass {
    /// The Bedrock service tier of the calls.
    #[serde(skip_serializing_if = "is_standard")]
    pub service_tier: ServiceTier,
    /// True when their prompts exceeded the model's long-context threshold.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub long_context: bool,
}

impl LineClass {
    /// The class in words (`priority tier, long context`), or `None` for standard calls.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.service_tier != ServiceTier::Standard {
            parts.push(format!("{} tier", self.service_tier));
        }
        if self.long_context {
            parts.push("long context".to_owned());
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

fn is_standard(t: &ServiceTier) -> bool {
    *t == ServiceTier::Standard
}

/// Usage that could not be billed: the run is incomplete until the price book covers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The tenant whose usage it is.
    pub tenant_id: TenantId,
    /// Tier.
    pub tier: Tier,
    /// Model, when a model or price is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<ModelId>,
    /// Tokens left unbilled.
    pub tokens: i64,
    /// Tool calls left unbilled.
    pub tool_calls: i64,
    /// Model calls that reported no usage (usage unknown), left unbilled.
    pub usage_unknown: i64,
    /// What is missing.
    pub reason: String,
}

impl Problem {
    /// The unbilled quantities in words (`1234 tokens, 5 tool calls`), with `number`
    /// formatting each count; empty when there are none (a missing plan).
    pub fn quantities(&self, number: impl Fn(i64) -> String) -> String {
        let mut parts = Vec::new();
        if self.tokens != 0 {
            parts.push(format!("{} tokens", number(self.tokens)));
        }
        if self.tool_calls != 0 {
            parts.push(format!("{} tool calls", number(self.tool_calls)));
        }
        if self.usage_unknown != 0 {
            parts.push(format!("{} calls without usage", number(self.usage_unknown)));
        }
        parts.join(", ")
    }
}

/// What a document is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// An invoice (a replacement invoice names the one it replaces in `references`).
    #[default]
    Invoice,
    /// A credit note: the negated lines of the invoice it cancels (`references`).
    CreditNote,
}

/// Where a document stands.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    /// The open period priced to date: not numbered, not recorded.
    Preview,
    /// The open period's invoice as of this run: numbered, may still change.
    #[default]
    Draft,
    /// Issued when the period was closed: recorded in the lake, never re-priced.
    Issued,
}

/// Whether a billing period can still change (FOCUS 1.4 `BillingPeriodStatus`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum PeriodStatus {
    /// Usage may still be added and invoices are drafts.
    #[default]
    Open,
    /// Invoices issued; late usage is billed in a later period.
    Closed,
}

impl PeriodStatus {
    /// `Open` or `Closed`, as FOCUS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodStatus::Open => "Open",
            PeriodStatus::Closed => "Closed",
        }
    }
}

/// Who issues the invoices (the `[issuer]` table of the roster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// Legal name.
    pub name: String,
    /// Postal address, one line each.
    #[serde(default)]
    pub address: Vec<String>,
    /// Billing contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Tax or VAT registration number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_id: Option<String>,
    /// Days from the issue date to the due date.
    #[serde(default = "default_payment_terms_days")]
    pub payment_terms_days: u32,
    /// How to pay (bank details, a payment link), printed on the invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_instructions: Option<String>,
}

fn default_payment_terms_days() -> u32 {
    30
}

/// Who an invoice is billed to (a tenant's table in the roster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillTo {
    /// Legal name.
    pub name: String,
    /// Postal address, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<String>,
    /// Billing contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The customer's ids in other systems (`stripe = "cus_…"`), by system.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub customer_ids: std::collections::BTreeMap<String, String>,
}

/// One tenant's invoice (or credit note) for one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invoice {
    /// `AM-<YYYYMM>-<tenant>`; a replacement adds `-R<n>`, a credit note `-C<n>`; empty for a
    /// preview (not numbered). Never reused: revisions only count up.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub invoice_number: String,
    /// Invoice or credit note.
    pub document: DocumentKind,
    /// Preview, draft or issued.
    pub status: DocumentStatus,
    /// The number of the document this one credits or replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
    /// Date of issue (issued documents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issue_date: Option<NaiveDate>,
    /// Payment due (issue date + the issuer's payment terms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_date: Option<NaiveDate>,
    /// Who issues it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Issuer>,
    /// Who it is billed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bill_to: Option<BillTo>,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The tier whose plan fee applies (the tier of the tenant's latest usage).
    pub tier: Tier,
    /// `YYYY-MM`.
    pub period: String,
    /// Which record of the model calls the tokens were billed from (the plan's
    /// `usage_source`).
    pub usage_source: UsageSource,
    /// Currency code.
    pub currency: String,
    /// The price book version (label and content digest).
    pub price_book_version: String,
    /// The lines; `total` is exactly their sum.
    pub lines: Vec<Line>,
    /// Sum of the lines' amounts.
    pub total: Decimal,
    /// The tenant's share of the AWS cost (Cost Explorer), allocated by list-price usage.
    /// Internal (margin files), never in the customer's document.
    #[serde(skip)]
    pub allocated_cost: Decimal,
    /// `total - allocated_cost`. Internal.
    #[serde(skip)]
    pub margin: Decimal,
    /// True if any allocated cost comes from a day Cost Explorer marks estimated: the internal
    /// margin view is provisional; the customer's charges do not depend on it. Internal.
    #[serde(skip)]
    pub provisional: bool,
    /// False if some usage could not be billed (see `problems`).
    pub complete: bool,
    /// Usage that could not be billed.
    pub problems: Vec<Problem>,
}

impl Invoice {
    /// An empty draft invoice of `tenant` for `period`: no number, no line, complete.
    pub fn empty(
        tenant: TenantId,
        tier: Tier,
        period: &Period,
        currency: &str,
        price_book_version: &str,
    ) -> Self {
        Self {
            invoice_number: String::new(),
            document: DocumentKind::Invoice,
            status: DocumentStatus::Draft,
            references: None,
            issue_date: None,
            due_date: None,
            issuer: None,
            bill_to: None,
            tenant_id: tenant,
            tier,
            period: period.label(),
            usage_source: UsageSource::Logs,
            currency: currency.to_owned(),
            price_book_version: price_book_version.to_owned(),
            lines: Vec::new(),
            total: Decimal::ZERO,
            allocated_cost: Decimal::ZERO,
            margin: Decimal::ZERO,
            provisional: false,
            complete: true,
            problems: Vec::new(),
        }
    }
}

/// AWS cost that no tenant carries: untagged, of a tier without usage that day, or of a tag
/// value that matches no tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unallocated {
    /// The cost pool.
    pub pool: CostPool,
    /// Day.
    pub date: NaiveDate,
    /// Tier, when the tag matched one.
    pub tier: Option<Tier>,
    /// The tag value as Cost Explorer gave it (empty when untagged).
    pub tag_value: String,
    /// Amount, rounded to the cent.
    pub amount: Decimal,
    /// Why it is unallocated.
    pub reason: String,
    /// True if Cost Explorer marks the day estimated.
    pub provisional: bool,
}

/// One tenant's share of one day's cost of its tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allocation {
    /// The cost pool.
    pub pool: CostPool,
    /// Day.
    pub date: NaiveDate,
    /// Tier.
    pub tier: Tier,
    /// Tenant.
    pub tenant_id: TenantId,
    /// The share, in cents.
    pub amount: Decimal,
    /// The tenant's list-price cost of usage that day (the weight), exact.
    pub list_cost: Decimal,
    /// The tenant's tokens that day in that tier.
    pub tokens: i64,
    /// The driver's quantity the share was weighed by: tokens (inference), agent duration in
    /// milliseconds (AgentCore Runtime) or tool calls (AgentCore Gateway).
    pub driver: i64,
    /// True if the day is estimated.
    pub provisional: bool,
    /// The models whose usage weighed an inference share, in id order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelId>,
}
