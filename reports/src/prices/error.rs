//! Why a price book could not be loaded, or a LiteLLM price map not imported.

use std::io;
use std::path::PathBuf;

/// Why a price book (or a LiteLLM import) was refused.
///
/// Messages are written for the person editing the file: each names the location in the
/// book the way the TOML spells it, with array indices counted from 0 and the model id in
/// parentheses, e.g. `models[3] (anthropic.claude-haiku-4-5-20251001-v1:0).prices[1].input_per_million`.
/// Each message is complete on its own (no `#[source]` chain to print).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PriceBookError {
    /// The file could not be read.
    #[error("cannot read price book {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: io::Error,
    },
    /// The file is larger than any plausible price book.
    #[error("price book {} is larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// An error in a file, wrapped with the file's path.
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        error: Box<PriceBookError>,
    },
    /// TOML syntax, an unknown key, a missing key or a value of the wrong type; the message
    /// is toml's own, with the line and column.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// A value that breaks a rule of its own, said in `detail`.
    #[error("{at}: {detail}")]
    Invalid {
        /// Where.
        at: String,
        /// What is wrong.
        detail: String,
    },
    /// An amount is not a decimal string.
    #[error("{at}: {value:?} is not a decimal")]
    NotADecimal {
        /// Location.
        at: String,
        /// The value as written.
        value: String,
    },
    /// An amount (or date) was written as a bare TOML value instead of a quoted string.
    #[error(
        "{at}: {shown} is a TOML {kind}; write it as a quoted string, \"{shown}\", so it is read exactly"
    )]
    NotQuoted {
        /// Location.
        at: String,
        /// The value as TOML shows it.
        shown: String,
        /// The TOML type found (`float`, `integer`, ...).
        kind: &'static str,
    },
    /// A value has the wrong TOML type.
    #[error("{at}: expected {expected}, found a TOML {found}")]
    WrongType {
        /// Location.
        at: String,
        /// The TOML type found.
        found: &'static str,
        /// What is expected there.
        expected: &'static str,
    },
    /// An amount is below zero.
    #[error("{at}: {value:?} is negative")]
    Negative {
        /// Location.
        at: String,
        /// The value as written.
        value: String,
    },
    /// An amount has more decimal places than the book allows.
    #[error("{at}: {value:?} has more than {max} decimal places")]
    TooPrecise {
        /// Location.
        at: String,
        /// The value as written.
        value: String,
        /// The limit.
        max: u32,
    },
    /// A markup would make prices negative.
    #[error("{at}: {value:?} is below -1 (a markup of -1 already makes every price zero)")]
    MarkupBelowMinusOne {
        /// Location.
        at: String,
        /// The value as written.
        value: String,
    },
    /// A date or instant could not be read.
    #[error(
        "{at}: {value:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant with an offset \
         (YYYY-MM-DDTHH:00:00Z)"
    )]
    NotAnInstant {
        /// Location.
        at: String,
        /// The value as written.
        value: String,
    },
    /// A price change does not start on a whole UTC hour.
    #[error(
        "{at}: {value:?} is not on a whole UTC hour (usage is aggregated by hour, so a price \
         can only change at the start of an hour)"
    )]
    NotOnTheHour {
        /// Location.
        at: String,
        /// The value as written.
        value: String,
    },
    /// Price entries of a model are not in strictly increasing order of `effective_from`.
    #[error(
        "{at}: {value} is not after {previous_at} {previous}; list prices in increasing order of effective_from"
    )]
    NotIncreasing {
        /// Location of the offending entry's `effective_from`.
        at: String,
        /// Its instant, RFC 3339.
        value: String,
        /// Location of the previous entry's `effective_from`.
        previous_at: String,
        /// The previous entry's instant, RFC 3339.
        previous: String,
    },
    /// A model has no price entries.
    #[error("{at}: a model needs at least one [[...prices]] entry")]
    NoPrices {
        /// Location of the model's `prices`.
        at: String,
    },
    /// A model id, alias or plan name is not a valid identifier.
    #[error("{at}: {error}")]
    InvalidId {
        /// Location.
        at: String,
        /// The rule broken.
        error: agentmeter_schemas::IdError,
    },
    /// An id or alias is declared twice.
    #[error("{at}: {id:?} is already declared by {first}")]
    DuplicateId {
        /// Location of the second declaration.
        at: String,
        /// The id.
        id: String,
        /// The model that declared it first (location and id).
        first: String,
    },
    /// An id or alias is an application inference profile ARN, which is priced as the
    /// profile's model (`--inference-profiles`), never by a declaration.
    #[error(
        "{at}: {id:?} is an application inference profile ARN; its usage is priced as the profile's model, given by --inference-profiles, never by a declaration in the book"
    )]
    ApplicationProfileId {
        /// Location of the declaration.
        at: String,
        /// The ARN.
        id: String,
    },
    /// A plan names a rate card that the book does not define.
    #[error("{at}: rate_card {name:?} is not defined")]
    UnknownRateCard {
        /// Location of the plan.
        at: String,
        /// The name referenced.
        name: String,
    },
    /// A plan sets both a markup and a rate card.
    #[error("{at}: markup and rate_card are both set; a plan uses one or the other")]
    MarkupAndRateCard {
        /// Location of the plan.
        at: String,
    },
    /// A currency other than the supported one.
    #[error("{at}: {value:?} is not supported; the only currency is \"USD\"")]
    Currency {
        /// Location.
        at: String,
        /// The currency given.
        value: String,
    },
    /// The book's version label is unusable.
    #[error("version: {value:?} {why}")]
    BadVersion {
        /// The label given.
        value: String,
        /// What rule it broke.
        why: &'static str,
    },
    /// A rate card's name is unusable.
    #[error("{at}: the name {value:?} must be 1 to 64 characters from A-Z a-z 0-9 - _")]
    BadName {
        /// Location.
        at: String,
        /// The name.
        value: String,
    },
    /// Applying a plan's markup to a list price gives a number that cannot be represented
    /// exactly.
    #[error(
        "{at}: applying markup {markup} to {price_at} ({price}) overflows exact decimal arithmetic"
    )]
    MarkupOverflow {
        /// Location of the plan's markup.
        at: String,
        /// The markup.
        markup: String,
        /// Location of the list price.
        price_at: String,
        /// The list price.
        price: String,
    },
    /// A `usage_source` that is not one of the sources.
    #[error("{at}: {value:?} is not a usage source (logs or chat_spans)")]
    UsageSource {
        /// Location.
        at: String,
        /// The value given.
        value: String,
    },
    /// A rate limit or quota is zero.
    #[error("{at}: must be at least 1 (leave it out for no limit)")]
    ZeroLimit {
        /// Location.
        at: String,
    },
    /// The LiteLLM price map is not valid JSON.
    #[error("LiteLLM price map: {0}")]
    LiteLlmJson(serde_json::Error),
    /// An import option is unusable.
    #[error("import option {option}: {why}")]
    ImportOption {
        /// The option.
        option: &'static str,
        /// What is wrong.
        why: String,
    },
}
