//! The one error type of the costs module and the location it names.

use std::fmt;

use chrono::NaiveDate;

/// What went wrong while asking for, reading or checking Cost Explorer costs.
///
/// Every message about a response names the place at fault (see [`Location`]), for example
/// `page 2, ResultsByTime[3] (2026-10-04), group Tier$premium: Amount "abc" is not a decimal`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CostError {
    /// The query cannot be sent: a field has a value Cost Explorer would refuse, or that this
    /// module cannot read back.
    #[error("invalid cost query: {field} {value:?} {reason}")]
    Query {
        /// The field of [`CostQuery`](super::CostQuery) at fault (`metric`, `tag_key`, ...).
        field: &'static str,
        /// The refused value, as given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// The costs file, or one page of it, is not JSON in the shape of a `GetCostAndUsage`
    /// response (the serde error says where, by line and column).
    #[error("{}", json_message(*.page))]
    Json {
        /// The 1-based page (element of the top-level array) at fault; `None` when the text
        /// is not JSON at all or is neither an object nor an array.
        page: Option<usize>,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// A response is well-formed JSON but its content is wrong: an amount that is not a
    /// decimal, a group key of another tag, a day outside the query, a duplicate row...
    #[error("{at}: {problem}")]
    Response {
        /// Where in the response(s).
        at: Location,
        /// What is wrong there.
        problem: String,
    },
    /// The `GetCostAndUsage` request failed.
    #[error(
        "Cost Explorer GetCostAndUsage failed on page {page}{}: {message}{}",
        .code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
        .hint.map(|h| format!("; {h}")).unwrap_or_default()
    )]
    Api {
        /// The 1-based page that was being requested.
        page: usize,
        /// The service's error code when the service answered (`AccessDeniedException`,
        /// `DataUnavailableException`, ...).
        code: Option<String>,
        /// The SDK error's display text with its causes.
        message: String,
        /// What to do about it, when that is known (missing credentials:
        /// [`CREDENTIALS_HINT`](super::CREDENTIALS_HINT)).
        hint: Option<&'static str>,
    },
}

fn json_message(page: Option<usize>) -> String {
    match page {
        Some(page) => format!("costs file, page {page}: not a GetCostAndUsage response"),
        None => "costs file: not JSON (one GetCostAndUsage response or an array of them)".into(),
    }
}

impl CostError {
    /// A [`CostError::Response`] at `at`.
    pub(crate) fn at(at: &Location, problem: impl Into<String>) -> Self {
        Self::Response { at: at.clone(), problem: problem.into() }
    }
}

/// A place in one or more `GetCostAndUsage` responses.
///
/// Displayed as `page 2, ResultsByTime[3] (2026-10-04), group Tier$premium`; parts that are
/// not known or do not apply are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// 1-based page: the n-th response fetched, or the n-th element of a file's array.
    pub page: usize,
    /// 0-based index into that page's `ResultsByTime`.
    pub result: Option<usize>,
    /// The day of that result, once its `TimePeriod.Start` was read.
    pub day: Option<NaiveDate>,
    /// The part of the result: one group or the `Total`.
    pub part: Option<Part>,
}

/// The part of one `ResultsByTime` entry a [`Location`] points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A group, by its key as Cost Explorer wrote it (`Tier$premium`).
    Group(String),
    /// The result's `Total`.
    Total,
}

impl Location {
    /// The location of a whole page.
    pub(crate) fn page(page: usize) -> Self {
        Self { page, result: None, day: None, part: None }
    }

    /// This page's `ResultsByTime[index]`.
    pub(crate) fn result(&self, index: usize) -> Self {
        Self { page: self.page, result: Some(index), day: None, part: None }
    }

    /// The same result, now known to be `day`.
    pub(crate) fn on(&self, day: NaiveDate) -> Self {
        Self { day: Some(day), ..self.clone() }
    }

    /// `part` of the same result.
    pub(crate) fn part(&self, part: Part) -> Self {
        Self { part: Some(part), ..self.clone() }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "page {}", self.page)?;
        if let Some(index) = self.result {
            write!(f, ", ResultsByTime[{index}]")?;
        }
        if let Some(day) = self.day {
            write!(f, " ({day})")?;
        }
        match &self.part {
            Some(Part::Group(key)) => write!(f, ", group {}", shown(key)),
            Some(Part::Total) => f.write_str(", Total"),
            None => Ok(()),
        }
    }
}

/// Shows an untrusted string: as is when it is short and printable, else escaped and cut.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX && !value.chars().any(char::is_control) {
        return value.to_owned();
    }
    let mut cut: String = value.chars().take(MAX).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// Quotes an untrusted string for a message (`"abc"`), escaped and cut when long.
pub(crate) fn quoted(value: &str) -> String {
    const MAX: usize = 80;
    let cut: String = value.chars().take(MAX).collect();
    if cut.len() < value.len() { format!("{cut:?}…") } else { format!("{cut:?}") }
}
