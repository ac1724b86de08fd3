//! Which model a logged id is billed as, and at what prices over time.

use agentmeter_schemas::{ModelId, Tier};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::book::{ModelTable, PriceBook};
use super::model::{Coverage, ModelPrices, PlanPricing, PriceSegment, TimeRange, UnitPrices};

/// The Bedrock resource types whose ARN's last path part is a model or profile id.
const ARN_RESOURCE_TYPES: [&str; 3] =
    ["foundation-model", "inference-profile", "application-inference-profile"];

/// The resource id of a Bedrock ARN in the commercial partition
/// (`arn:aws:bedrock:<region>:<account>:<type>/<resource>` with `<type>` one of
/// `foundation-model`, `inference-profile`, `application-inference-profile`): the part after
/// the last `/`. `None` for anything else.
///
/// Other partitions (`aws-us-gov`, `aws-cn`) are deliberately not matched: their prices
/// differ, so such ids must be declared in full.
pub fn bedrock_arn_resource(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("arn:aws:bedrock:")?;
    let mut parts = rest.splitn(3, ':');
    let region = parts.next()?;
    let _account = parts.next()?;
    let resource = parts.next()?;
    if region.is_empty() {
        return None;
    }
    let (kind, path) = resource.split_once('/')?;
    if !ARN_RESOURCE_TYPES.contains(&kind) {
        return None;
    }
    let last = path.rsplit('/').next()?;
    (!last.is_empty()).then_some(last)
}

impl ModelTable {
    /// Exact id or alias match, else the resource part of a Bedrock ARN by exact match.
    pub(super) fn resolve(&self, id: &str) -> Option<&ModelPrices> {
        let i = match self.index.get(id) {
            Some(&i) => i,
            None => *self.index.get(bedrock_arn_resource(id)?)?,
        };
        self.models.get(i)
    }
}

/// Why usage of a model cannot be billed for a tier. The invoicer lists these in the run's
/// summary and output; such usage is never billed at zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unpriced {
    /// The book has no plan for the tier.
    #[error("tier {tier} has no plan in the price book")]
    NoPlan {
        /// The tier.
        tier: Tier,
    },
    /// The model id resolves to no model of the book's list prices.
    #[error("model {model_id:?} is not in the price book (declare it, or add it as an alias)")]
    UnknownModel {
        /// The id as logged.
        model_id: String,
    },
    /// The tier bills from a rate card that does not price the model.
    #[error("model {model_id:?} is not on rate card {rate_card:?} of tier {tier}")]
    NotInRateCard {
        /// The tier.
        tier: Tier,
        /// Its rate card.
        rate_card: String,
        /// The id as logged.
        model_id: String,
    },
    /// The model is known but has no price at the instant (before its first entry).
    #[error("model {model_id:?} has no price at {at}")]
    NoPriceAt {
        /// The id as logged.
        model_id: String,
        /// The instant.
        at: DateTime<Utc>,
    },
}

/// The prices of one model for one tier over a queried interval `[from, to)`.
///
/// `billed` holds the prices the tenant pays (list, marked up, or the rate card's) and
/// `list` the list prices (the weights for allocating AWS cost). The two may change at
/// different instants (a rate card has its own dates), so each is its own tiling: `billed`
/// and `unbilled` together tile `[from, to)`, as do `list` and `unlisted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BilledSegments {
    /// The canonical id of the model as billed (the rate card's model for a rate-card plan).
    pub model: ModelId,
    /// The canonical id of the list-price model, if the list prices it.
    pub list_model: Option<ModelId>,
    /// Billed prices, in time order.
    pub billed: Vec<PriceSegment>,
    /// Parts of the interval without a billed price: this usage cannot be invoiced.
    pub unbilled: Vec<TimeRange>,
    /// List prices, in time order.
    pub list: Vec<PriceSegment>,
    /// Parts of the interval without a list price (all of it when the list does not price
    /// the model).
    pub unlisted: Vec<TimeRange>,
}

impl BilledSegments {
    /// The billed segment containing `at`.
    pub fn billed_at(&self, at: DateTime<Utc>) -> Option<&PriceSegment> {
        self.billed.iter().find(|s| s.contains(at))
    }

    /// The list segment containing `at`.
    pub fn list_at(&self, at: DateTime<Utc>) -> Option<&PriceSegment> {
        self.list.iter().find(|s| s.contains(at))
    }
}

impl PriceBook {
    /// The list-price model a logged id is billed as.
    ///
    /// An exact match on a model's `id` or one of its `aliases`; else, for a Bedrock ARN
    /// (`arn:aws:bedrock:<region>:<account>:(foundation-model|inference-profile|application-inference-profile)/<resource>`),
    /// an exact match on the resource part after the last `/`; else `None`. Geo prefixes
    /// (`us.`, `eu.`, `apac.`, `global.`) and version suffixes are never stripped: geo
    /// profiles can cost more, so every billed id is declared.
    pub fn resolve(&self, model_id: &str) -> Option<&ModelPrices> {
        self.list.resolve(model_id)
    }

    /// The list prices of a logged id over `[from, to)`, or `None` if the id is unknown.
    pub fn segments(
        &self,
        model_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<Coverage> {
        self.resolve(model_id).map(|m| m.segments(from, to))
    }

    /// The model whose prices `tier` pays for `model_id`: the list model, the list model with
    /// the plan's markup applied, or the rate card's model.
    fn billed_model(&self, tier: &Tier, model_id: &str) -> Result<&ModelPrices, Unpriced> {
        let entry = self.plans.get(tier).ok_or_else(|| Unpriced::NoPlan { tier: tier.clone() })?;
        let unknown = || Unpriced::UnknownModel { model_id: model_id.to_owned() };
        match &entry.plan.pricing {
            PlanPricing::List => self.list.resolve(model_id).ok_or_else(unknown),
            PlanPricing::Markup(_) => {
                entry.marked.as_ref().and_then(|t| t.resolve(model_id)).ok_or_else(unknown)
            }
            PlanPricing::RateCard(name) => {
                self.rate_cards.get(name).and_then(|t| t.resolve(model_id)).ok_or_else(|| {
                    Unpriced::NotInRateCard {
                        tier: tier.clone(),
                        rate_card: name.clone(),
                        model_id: model_id.to_owned(),
                    }
                })
            }
        }
    }

    /// The unit prices `tier` pays for `model_id` at `at`: list × (1 + markup), the rate
    /// card's price, or the list price. Not rounded.
    ///
    /// # Errors
    ///
    /// [`Unpriced`] if the tier has no plan, the model is unknown to the plan's prices (a
    /// model missing from a rate card never falls back to list), or `at` is before the
    /// model's first price.
    pub fn billed_prices(
        &self,
        tier: &Tier,
        model_id: &str,
        at: DateTime<Utc>,
    ) -> Result<&UnitPrices, Unpriced> {
        self.billed_model(tier, model_id)?
            .price_at(at)
            .ok_or_else(|| Unpriced::NoPriceAt { model_id: model_id.to_owned(), at })
    }

    /// The billed and list price segments of `model_id` for `tier` over `[from, to)`.
    ///
    /// # Errors
    ///
    /// [`Unpriced`] if the tier has no plan or the model is unknown to the plan's prices.
    /// Parts of the interval before the first price are not an error: they are reported in
    /// [`BilledSegments::unbilled`] so the caller can list that usage as unpriced.
    pub fn billed_segments(
        &self,
        tier: &Tier,
        model_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BilledSegments, Unpriced> {
        let billed_model = self.billed_model(tier, model_id)?;
        let billed = billed_model.segments(from, to);
        let list_model = self.list.resolve(model_id);
        let list = match list_model {
            Some(m) => m.segments(from, to),
            None if from < to => {
                Coverage { segments: Vec::new(), uncovered: vec![TimeRange { from, to }] }
            }
            None => Coverage::default(),
        };
        Ok(BilledSegments {
            model: billed_model.id().clone(),
            list_model: list_model.map(|m| m.id().clone()),
            billed: billed.segments,
            unbilled: billed.uncovered,
            list: list.segments,
            unlisted: list.uncovered,
        })
    }
}
