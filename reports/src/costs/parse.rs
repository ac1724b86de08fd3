//! `GetCostAndUsage` responses, from a file or from the SDK, checked and turned into a
//! [`CostReport`].
//!
//! Both sources are first put in the same raw shape ([`RawPage`]) so that one [`Assembler`]
//! applies every rule, with the same messages, whichever way the costs arrived.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::amount::parse_amount;
use super::error::{Location, Part, quoted};
use super::{CostError, CostGroup, CostQuery, CostReport, DailyCost};

/// One `GetCostAndUsage` response, as much of it as is read (other fields are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RawPage {
    #[serde(rename = "ResultsByTime")]
    pub results: Vec<RawResult>,
    #[serde(rename = "NextPageToken", default)]
    pub next_page_token: Option<String>,
    #[serde(rename = "GroupDefinitions", default)]
    pub group_definitions: Vec<RawGroupDefinition>,
}

/// One `GroupDefinitions[]` entry.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawGroupDefinition {
    #[serde(rename = "Type", default)]
    pub kind: Option<String>,
    #[serde(rename = "Key", default)]
    pub key: Option<String>,
}

/// One `ResultsByTime[]` entry.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawResult {
    #[serde(rename = "TimePeriod")]
    pub period: RawPeriod,
    #[serde(rename = "Total", default)]
    pub total: BTreeMap<String, RawMetric>,
    #[serde(rename = "Groups", default)]
    pub groups: Vec<RawGroup>,
    /// Required in files: a missing flag must not turn a provisional day into a final one.
    #[serde(rename = "Estimated")]
    pub estimated: bool,
}

/// `TimePeriod`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawPeriod {
    #[serde(rename = "Start")]
    pub start: String,
    #[serde(rename = "End")]
    pub end: String,
}

/// One `Groups[]` entry.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawGroup {
    #[serde(rename = "Keys", default)]
    pub keys: Vec<String>,
    #[serde(rename = "Metrics", default)]
    pub metrics: BTreeMap<String, RawMetric>,
}

/// A `MetricValue`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct RawMetric {
    #[serde(rename = "Amount", default)]
    pub amount: Option<String>,
    #[serde(rename = "Unit", default)]
    pub unit: Option<String>,
}

/// Reads a costs file: one `GetCostAndUsage` response object as `aws ce get-cost-and-usage`
/// prints it, or a JSON array of such responses (the pages of one query, in order).
///
/// The responses must answer `query`: DAILY results inside `[start, end)`, grouped by the tag
/// `query.tag_key` alone, with `query.metric` in every group. See [`fetch`](super::fetch) for
/// how groups, totals, units and estimated days are read.
///
/// # Errors
///
/// [`CostError::Query`] when the query is invalid; [`CostError::Json`] when the text is not
/// one response or an array of them (the source says where, by line and column); a
/// [`CostError::Response`] naming the page, result and group at fault for anything else: an
/// amount that is not a decimal, a unit that differs from the first one, a group key of
/// another tag, a day outside the query or not one day long, a (day, group) given twice, or a
/// last page that still carries a `NextPageToken` (the file is incomplete).
pub fn parse_file(text: &str, query: &CostQuery) -> Result<CostReport, CostError> {
    query.validate()?;
    let current = Cell::new(0);
    let mut de = serde_json::Deserializer::from_str(text);
    let pages = Pages { current: &current }
        .deserialize(&mut de)
        .and_then(|pages| de.end().map(|()| pages))
        .map_err(|source| {
            let page = current.get();
            CostError::Json { page: (page > 0).then_some(page), source }
        })?;
    let mut assembler = Assembler::new(query);
    let mut next = None;
    for page in pages {
        next = assembler.push(page)?;
    }
    if let Some(token) = next {
        return Err(CostError::at(
            &Location::page(assembler.pages),
            format!(
                "NextPageToken {} is set but no page follows (the file is incomplete)",
                quoted(&token)
            ),
        ));
    }
    Ok(assembler.finish())
}

/// Deserializes an object (one page) or an array of objects (pages) and keeps, in `current`,
/// the 1-based page being read, so that an error can name it.
struct Pages<'a> {
    current: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for Pages<'_> {
    type Value = Vec<RawPage>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pages<'_> {
    type Value = Vec<RawPage>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GetCostAndUsage response object or an array of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.current.set(1);
        let page = RawPage::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.current.set(0);
        Ok(vec![page])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut pages = Vec::new();
        loop {
            self.current.set(pages.len() + 1);
            match seq.next_element::<RawPage>()? {
                Some(page) => pages.push(page),
                None => break,
            }
        }
        self.current.set(0);
        if pages.is_empty() {
            return Err(de::Error::custom("an empty array holds no GetCostAndUsage response"));
        }
        Ok(pages)
    }
}

/// A row kept while pages are read, with where it came from.
struct Row {
    amount: Decimal,
    unit: String,
    at: Location,
}

/// Checks pages one at a time against a query and collects their rows.
pub(crate) struct Assembler<'q> {
    query: &'q CostQuery,
    rows: BTreeMap<(NaiveDate, CostGroup), Row>,
    estimated: BTreeSet<NaiveDate>,
    /// The first unit seen and where.
    unit: Option<(String, Location)>,
    /// Running sum of all amounts, so that [`CostReport::total`] cannot overflow later.
    total: Decimal,
    /// Pages pushed so far.
    pub(crate) pages: usize,
}

impl<'q> Assembler<'q> {
    /// An assembler for the responses to `query` (which must be valid).
    pub(crate) fn new(query: &'q CostQuery) -> Self {
        Self {
            query,
            rows: BTreeMap::new(),
            estimated: BTreeSet::new(),
            unit: None,
            total: Decimal::ZERO,
            pages: 0,
        }
    }

    /// Reads the next page; returns its `NextPageToken` (an empty token counts as none).
    pub(crate) fn push(&mut self, page: RawPage) -> Result<Option<String>, CostError> {
        self.pages += 1;
        let at = Location::page(self.pages);
        self.check_group_definitions(&page.group_definitions, &at)?;
        for (index, result) in page.results.into_iter().enumerate() {
            self.push_result(result, &at.result(index))?;
        }
        Ok(page.next_page_token.filter(|token| !token.is_empty()))
    }

    /// The response echoes the request's `GroupBy`; when it does, it must be ours.
    fn check_group_definitions(
        &self,
        definitions: &[RawGroupDefinition],
        at: &Location,
    ) -> Result<(), CostError> {
        let ours = |d: &RawGroupDefinition| {
            d.kind.as_deref() == Some("TAG") && d.key.as_deref() == Some(&self.query.tag_key)
        };
        match definitions {
            [] => Ok(()),
            [only] if ours(only) => Ok(()),
            _ => {
                let shown: Vec<String> = definitions
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {}",
                            d.kind.as_deref().unwrap_or("?"),
                            quoted(d.key.as_deref().unwrap_or_default())
                        )
                    })
                    .collect();
                Err(CostError::at(
                    at,
                    format!(
                        "GroupDefinitions [{}] are not the single GroupBy TAG {}",
                        shown.join(", "),
                        quoted(&self.query.tag_key)
                    ),
                ))
            }
        }
    }

    fn push_result(&mut self, result: RawResult, at: &Location) -> Result<(), CostError> {
        let day = parse_day(&result.period.start).ok_or_else(|| {
            CostError::at(
                at,
                format!(
                    "TimePeriod.Start {} is not a date (YYYY-MM-DD)",
                    quoted(&result.period.start)
                ),
            )
        })?;
        let at = at.on(day);
        if parse_day(&result.period.end) != day.succ_opt() {
            return Err(CostError::at(
                &at,
                format!(
                    "TimePeriod.End {} is not the day after Start (DAILY results expected)",
                    quoted(&result.period.end)
                ),
            ));
        }
        if day < self.query.start || day >= self.query.end {
            return Err(CostError::at(
                &at,
                format!(
                    "the day is outside the query's period {} to {} (end exclusive)",
                    self.query.start, self.query.end
                ),
            ));
        }
        if result.estimated {
            self.estimated.insert(day);
        }
        if result.groups.is_empty() {
            // With GroupBy, Total is `{}`; a day where nothing carries the tag may still come
            // back with no groups and only a Total. That cost is untagged.
            if result.total.is_empty() {
                return Ok(());
            }
            let at = at.part(Part::Total);
            let (amount, unit) = self.metric(&result.total, "Total", &at)?;
            if !amount.is_zero() {
                self.add(day, CostGroup::Untagged, amount, unit, at)?;
            }
            return Ok(());
        }
        // Groups are authoritative; a Total given beside them would only repeat their sum.
        for group in result.groups {
            let (key, at) = match group.keys.as_slice() {
                [key] => (key.clone(), at.part(Part::Group(key.clone()))),
                keys => {
                    return Err(CostError::at(
                        &at,
                        format!(
                            "a group has {} Keys; expected one (GroupBy a single TAG)",
                            keys.len()
                        ),
                    ));
                }
            };
            let Some(cost_group) = CostGroup::from_key(&self.query.tag_key, &key) else {
                return Err(CostError::at(
                    &at,
                    format!(
                        "the key is not of the tag {} (expected {})",
                        quoted(&self.query.tag_key),
                        quoted(&format!("{}$<value>", self.query.tag_key))
                    ),
                ));
            };
            let (amount, unit) = self.metric(&group.metrics, "Metrics", &at)?;
            self.add(day, cost_group, amount, unit, at)?;
        }
        Ok(())
    }

    /// The query's metric in `metrics` (a group's `Metrics` or a result's `Total`).
    fn metric(
        &mut self,
        metrics: &BTreeMap<String, RawMetric>,
        what: &str,
        at: &Location,
    ) -> Result<(Decimal, String), CostError> {
        let metric = &self.query.metric;
        let Some(value) = metrics.get(metric) else {
            let has: Vec<&str> = metrics.keys().map(String::as_str).collect();
            return Err(CostError::at(
                at,
                format!("{what} has no {metric} (it has: {})", has.join(", ")),
            ));
        };
        let Some(text) = &value.amount else {
            return Err(CostError::at(at, format!("{metric}.Amount is missing")));
        };
        let amount = parse_amount(text).map_err(|why| {
            CostError::at(at, format!("Amount {} {}", quoted(text), why.describe()))
        })?;
        let Some(unit) = &value.unit else {
            return Err(CostError::at(at, format!("{metric}.Unit is missing")));
        };
        match &self.unit {
            None => self.unit = Some((unit.clone(), at.clone())),
            Some((first, first_at)) if first != unit => {
                return Err(CostError::at(
                    at,
                    format!("Unit {} differs from {} at {first_at}", quoted(unit), quoted(first)),
                ));
            }
            Some(_) => {}
        }
        Ok((amount, unit.clone()))
    }

    fn add(
        &mut self,
        day: NaiveDate,
        group: CostGroup,
        amount: Decimal,
        unit: String,
        at: Location,
    ) -> Result<(), CostError> {
        if let Some(first) = self.rows.get(&(day, group.clone())) {
            return Err(CostError::at(
                &at,
                format!("the same day and group as {} (a duplicate row)", first.at),
            ));
        }
        self.total = self.total.checked_add(amount).ok_or_else(|| {
            CostError::at(&at, "the sum of the amounts so far overflows a decimal")
        })?;
        self.rows.insert((day, group), Row { amount, unit, at });
        Ok(())
    }

    /// The report of all pages pushed, rows sorted by day then group.
    pub(crate) fn finish(self) -> CostReport {
        let estimated = self.estimated;
        let days = self
            .rows
            .into_iter()
            .map(|((date, group), row)| DailyCost {
                date,
                group,
                amount: row.amount,
                unit: row.unit,
                estimated: estimated.contains(&date),
            })
            .collect();
        CostReport {
            metric: self.query.metric.clone(),
            tag_key: self.query.tag_key.clone(),
            days,
            pages: self.pages,
        }
    }
}

/// A `YYYY-MM-DD` day, strictly (ten characters).
fn parse_day(text: &str) -> Option<NaiveDate> {
    if text.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Writes `report` back as one `GetCostAndUsage` response in the shape `aws ce
/// get-cost-and-usage` prints (DAILY, grouped by `TAG` `report.tag_key`), which
/// [`parse_file`] reads back into the same rows.
///
/// Each day with rows becomes one `ResultsByTime` entry with an empty `Total`, one group per
/// row (`Tier$premium`, `Tier$` for untagged) and amounts as decimal strings with their scale
/// kept. A day is `Estimated` when any of its rows is.
pub fn to_response_json(report: &CostReport) -> Value {
    let mut by_day: BTreeMap<NaiveDate, Vec<&DailyCost>> = BTreeMap::new();
    for row in &report.days {
        by_day.entry(row.date).or_default().push(row);
    }
    let results: Vec<Value> = by_day
        .into_iter()
        .map(|(day, rows)| {
            let groups: Vec<Value> = rows
                .iter()
                .map(|row| {
                    json!({
                        "Keys": [row.group.key(&report.tag_key)],
                        "Metrics": {
                            report.metric.as_str(): {
                                "Amount": row.amount.to_string(),
                                "Unit": row.unit,
                            }
                        }
                    })
                })
                .collect();
            // `NaiveDate::MAX` has no next day; such a report cannot have come from Cost
            // Explorer, and parse_file will refuse the result.
            let end = day.succ_opt().unwrap_or(day);
            json!({
                "TimePeriod": { "Start": day.to_string(), "End": end.to_string() },
                "Total": {},
                "Groups": groups,
                "Estimated": rows.iter().any(|row| row.estimated),
            })
        })
        .collect();
    json!({
        "GroupDefinitions": [{ "Type": "TAG", "Key": report.tag_key }],
        "ResultsByTime": results,
        "DimensionValueAttributes": [],
    })
}
