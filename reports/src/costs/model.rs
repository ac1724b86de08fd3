//! What is asked of Cost Explorer and what comes back, as plain values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{Datelike, Days, Months, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::CostError;

/// The metrics `GetCostAndUsage` accepts (FORMATS.md section 5).
pub const METRICS: [&str; 7] = [
    "AmortizedCost",
    "BlendedCost",
    "NetAmortizedCost",
    "NetUnblendedCost",
    "NormalizedUsageAmount",
    "UnblendedCost",
    "UsageQuantity",
];

/// The metric asked for when none is configured: what AWS bills before discounts and credits
/// are spread.
pub const DEFAULT_METRIC: &str = "UnblendedCost";

/// The cost-allocation tag the Bedrock Projects carry, one project per tier.
pub const DEFAULT_TAG_KEY: &str = "Tier";

/// Longest tag key AWS allows.
const MAX_TAG_KEY_LEN: usize = 128;

/// Daily costs to ask Cost Explorer for: one metric over `[start, end)`, grouped by one
/// cost-allocation tag, optionally restricted to some values of a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostQuery {
    /// First day, inclusive.
    pub start: NaiveDate,
    /// Day after the last day (exclusive), as Cost Explorer's `TimePeriod.End`.
    pub end: NaiveDate,
    /// One of [`METRICS`]; default [`DEFAULT_METRIC`].
    pub metric: String,
    /// The tag the costs are grouped by (`GroupBy` `TAG`); default [`DEFAULT_TAG_KEY`].
    pub tag_key: String,
    /// Only costs whose tag `key` has one of `values` (Cost Explorer's `Filter.Tags`).
    pub filter: Option<TagFilter>,
}

/// A restriction to resources whose tag `key` has one of `values` (values are OR'd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagFilter {
    /// The tag key, for example `CostCenter`.
    pub key: String,
    /// Accepted values; at least one.
    pub values: Vec<String>,
}

impl CostQuery {
    /// Days `[start, end)` with the default metric and tag and no filter.
    pub fn new(start: NaiveDate, end: NaiveDate) -> Self {
        Self {
            start,
            end,
            metric: DEFAULT_METRIC.to_owned(),
            tag_key: DEFAULT_TAG_KEY.to_owned(),
            filter: None,
        }
    }

    /// The calendar month that contains `period` (normally its first day), with the default
    /// metric and tag and no filter: `start` is the 1st, `end` the 1st of the next month.
    pub fn month(period: NaiveDate) -> Self {
        // Neither fallback can happen for a real month; they keep this total without a panic.
        let start = period.checked_sub_days(Days::new(u64::from(period.day0()))).unwrap_or(period);
        let end = start.checked_add_months(Months::new(1)).unwrap_or(NaiveDate::MAX);
        Self::new(start, end)
    }

    /// The same query, restricted to resources whose tag `key` has one of `values`.
    #[must_use]
    pub fn with_filter(
        mut self,
        key: impl Into<String>,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.filter = Some(TagFilter {
            key: key.into(),
            values: values.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Checks the query without any I/O.
    ///
    /// # Errors
    ///
    /// [`CostError::Query`] naming the field when `start` is not before `end`, the metric is
    /// not one of [`METRICS`], a tag key is empty, longer than 128 characters or contains `$`
    /// (which would make group keys ambiguous), or the filter has no values.
    pub fn validate(&self) -> Result<(), CostError> {
        if self.start >= self.end {
            return Err(CostError::Query {
                field: "end",
                value: self.end.to_string(),
                reason: format!("is not after start {} (end is exclusive)", self.start),
            });
        }
        if !METRICS.contains(&self.metric.as_str()) {
            return Err(CostError::Query {
                field: "metric",
                value: self.metric.clone(),
                reason: format!("is not a Cost Explorer metric (one of {})", METRICS.join(", ")),
            });
        }
        check_tag_key("tag_key", &self.tag_key)?;
        if let Some(filter) = &self.filter {
            check_tag_key("filter.key", &filter.key)?;
            if filter.values.is_empty() {
                return Err(CostError::Query {
                    field: "filter.values",
                    value: String::new(),
                    reason: "is empty (give at least one tag value)".to_owned(),
                });
            }
        }
        Ok(())
    }
}

fn check_tag_key(field: &'static str, key: &str) -> Result<(), CostError> {
    let reason = if key.is_empty() {
        "is empty"
    } else if key.chars().count() > MAX_TAG_KEY_LEN {
        "is longer than 128 characters"
    } else if key.contains('$') {
        "contains `$`, which Cost Explorer uses to join the tag key and value"
    } else {
        return Ok(());
    };
    Err(CostError::Query { field, value: key.to_owned(), reason: reason.to_owned() })
}

/// The group a cost belongs to: one value of the grouping tag, or untagged.
///
/// Ordered with tagged values first (by value), then untagged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CostGroup {
    /// Resources whose tag has this value, exactly as Cost Explorer gives it (`premium`,
    /// `Premium`; case and any `$` kept). Never empty.
    Tagged(String),
    /// Resources without the tag: Cost Explorer's key `Tier$` (empty value).
    Untagged,
}

impl CostGroup {
    /// Reads a group key such as `Tier$premium` for tag `tag_key`: the value is everything
    /// after the first `$`; an empty value means untagged. `None` when the key does not start
    /// with `<tag_key>$`.
    pub fn from_key(tag_key: &str, key: &str) -> Option<Self> {
        let value = key.strip_prefix(tag_key)?.strip_prefix('$')?;
        Some(if value.is_empty() { Self::Untagged } else { Self::Tagged(value.to_owned()) })
    }

    /// The group key Cost Explorer uses for this group and tag: `Tier$premium`, `Tier$`.
    pub fn key(&self, tag_key: &str) -> String {
        format!("{tag_key}${}", self.tag_value().unwrap_or_default())
    }

    /// The tag value, `None` when untagged.
    pub fn tag_value(&self) -> Option<&str> {
        match self {
            Self::Tagged(value) => Some(value),
            Self::Untagged => None,
        }
    }
}

impl fmt::Display for CostGroup {
    /// The tag value, or `(untagged)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag_value().unwrap_or("(untagged)"))
    }
}

/// The cost of one group on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyCost {
    /// The UTC day (Cost Explorer's `TimePeriod.Start`).
    pub date: NaiveDate,
    /// The tag value the cost is grouped under.
    pub group: CostGroup,
    /// The metric's amount, exactly as Cost Explorer wrote it; negative for credits.
    pub amount: Decimal,
    /// The amount's unit (`USD` for cost metrics); the same on every row of a report.
    pub unit: String,
    /// Cost Explorer marked the day `Estimated`: the amount may still change (provisional).
    pub estimated: bool,
}

/// Daily costs per tag value over a query's period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostReport {
    /// The metric the amounts are of.
    pub metric: String,
    /// The tag the groups are values of.
    pub tag_key: String,
    /// One row per (day, group) that Cost Explorer reported, sorted by day then group; at most
    /// one row per pair. Days without any cost have no row.
    pub days: Vec<DailyCost>,
    /// How many responses were read (`GetCostAndUsage` requests made, or pages in the file).
    pub pages: usize,
}

impl CostReport {
    /// The sum of every row's amount.
    ///
    /// # Panics
    ///
    /// When the sum overflows [`Decimal`]. Reports from [`parse_file`](super::parse_file) and
    /// [`fetch`](super::fetch) are checked for that when they are built, so this can only
    /// happen to a report whose rows were changed afterwards; use
    /// [`checked_total`](Self::checked_total) for those.
    pub fn total(&self) -> Decimal {
        match self.checked_total() {
            Some(total) => total,
            None => panic!("the cost report's total overflows a decimal"),
        }
    }

    /// The sum of every row's amount, `None` on overflow.
    pub fn checked_total(&self) -> Option<Decimal> {
        self.days.iter().try_fold(Decimal::ZERO, |sum, row| sum.checked_add(row.amount))
    }

    /// Days that have at least one estimated (provisional) row.
    pub fn estimated_days(&self) -> BTreeSet<NaiveDate> {
        self.days.iter().filter(|row| row.estimated).map(|row| row.date).collect()
    }

    /// The sum per group over all days, `None` on overflow.
    pub fn totals_by_group(&self) -> Option<BTreeMap<CostGroup, Decimal>> {
        let mut totals = BTreeMap::new();
        for row in &self.days {
            let sum: &mut Decimal = totals.entry(row.group.clone()).or_default();
            *sum = sum.checked_add(row.amount)?;
        }
        Some(totals)
    }
}
