//! The loaded price book: construction, identity and plain accessors.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use agentmeter_schemas::Tier;

use super::error::PriceBookError;
use super::model::{ModelPrices, Plan};
use super::profiles::InferenceProfiles;
use super::raw::RawBook;
use super::validate;

/// Largest price book file [`PriceBook::load`] reads (a book with every Bedrock model is a
/// few hundred kilobytes).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Hex digits of the file digest shown in [`PriceBook::version`].
const DIGEST_HEX: usize = 12;

/// A validated price book: list prices per model, rate cards, and plan terms per tier.
///
/// Built only by [`PriceBook::from_toml_str`] or [`PriceBook::load`], which check everything
/// described in the [module docs](super); a `PriceBook` is therefore always consistent:
/// every id resolves to one model, every model has a strictly increasing price history,
/// every plan's rate card exists and every marked-up price is exact.
#[derive(Debug, Clone)]
pub struct PriceBook {
    pub(super) label: String,
    pub(super) digest: String,
    pub(super) currency: String,
    pub(super) list: ModelTable,
    pub(super) plans: BTreeMap<Tier, PlanEntry>,
    pub(super) rate_cards: BTreeMap<String, ModelTable>,
    /// Application inference profiles and the model each is priced as (none by default).
    pub(super) profiles: InferenceProfiles,
}

/// Models with an index from every id and alias to its model.
#[derive(Debug, Clone, Default)]
pub(super) struct ModelTable {
    pub models: Vec<ModelPrices>,
    pub index: HashMap<String, usize>,
}

/// A plan and, for a markup plan, the list table with the markup applied.
#[derive(Debug, Clone)]
pub(super) struct PlanEntry {
    pub plan: Plan,
    pub marked: Option<ModelTable>,
}

impl PriceBook {
    /// Parses and validates a price book from its TOML text.
    ///
    /// # Errors
    ///
    /// [`PriceBookError::Toml`] for syntax errors, unknown keys, missing keys and wrong
    /// types (with toml's line and column); another variant, naming the location, for every
    /// other rule in the [module docs](super).
    pub fn from_toml_str(text: &str) -> Result<PriceBook, PriceBookError> {
        let raw: RawBook = toml::from_str(text)?;
        let hex = blake3::hash(text.as_bytes()).to_hex();
        let digest = hex.as_str().get(..DIGEST_HEX).unwrap_or_default().to_owned();
        validate::build(raw, digest)
    }

    /// Reads, parses and validates the price book at `path`.
    ///
    /// # Errors
    ///
    /// [`PriceBookError::Io`] or [`PriceBookError::TooLarge`] if the file cannot be read
    /// (it must be UTF-8 and at most [`MAX_FILE_BYTES`]); otherwise the errors of
    /// [`PriceBook::from_toml_str`], wrapped in [`PriceBookError::InFile`] with the path.
    pub fn load(path: &Path) -> Result<PriceBook, PriceBookError> {
        let io = |error| PriceBookError::Io { path: path.to_owned(), error };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(io)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(PriceBookError::TooLarge { path: path.to_owned(), limit: MAX_FILE_BYTES });
        }
        PriceBook::from_toml_str(&text)
            .map_err(|e| PriceBookError::InFile { path: path.to_owned(), error: Box::new(e) })
    }

    /// The book's identity for invoices: the declared `version`, `+`, and the first 12 hex
    /// digits of the BLAKE3 digest of the file's bytes, e.g. `2026-10-01+1a2b3c4d5e6f`.
    ///
    /// Two files with the same declared version but different content (a price edited
    /// without bumping the label) therefore never share a version. With an inference profiles
    /// file, which changes what usage is priced as, its digest follows:
    /// `2026-10-01+1a2b3c4d5e6f+profiles-0a1b2c3d4e5f`.
    pub fn version(&self) -> String {
        match self.profiles.digest() {
            Some(p) => format!("{}+{}+profiles-{p}", self.label, self.digest),
            None => format!("{}+{}", self.label, self.digest),
        }
    }

    /// The version label as declared in the file.
    pub fn declared_version(&self) -> &str {
        &self.label
    }

    /// The currency of every amount in the book (`USD`).
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The list-price models, in file order.
    pub fn models(&self) -> &[ModelPrices] {
        &self.list.models
    }

    /// The plan of `tier`, if the book defines one.
    pub fn plan(&self, tier: &Tier) -> Option<&Plan> {
        self.plans.get(tier).map(|p| &p.plan)
    }

    /// Every plan, by tier.
    pub fn plans(&self) -> impl Iterator<Item = (&Tier, &Plan)> {
        self.plans.iter().map(|(t, p)| (t, &p.plan))
    }

    /// This book, pricing each application inference profile of `profiles` (by ARN or bare
    /// id) as the model it routes to, resolved by the book's rules like any logged id; the
    /// profiles replace any given before.
    ///
    /// Without profiles, and for a profile ARN not among them, usage under an application
    /// inference profile ARN is unpriced ([`Unpriced::UnknownApplicationProfile`]): its id is
    /// opaque, so it is never priced by it.
    ///
    /// [`Unpriced::UnknownApplicationProfile`]: super::Unpriced::UnknownApplicationProfile
    pub fn with_inference_profiles(mut self, profiles: InferenceProfiles) -> PriceBook {
        self.profiles = profiles;
        self
    }

    /// The application inference profiles the book prices through.
    pub fn inference_profiles(&self) -> &InferenceProfiles {
        &self.profiles
    }

    /// The models of the rate card `name`, in file order, if it exists.
    pub fn rate_card(&self, name: &str) -> Option<&[ModelPrices]> {
        self.rate_cards.get(name).map(|t| t.models.as_slice())
    }
}
