//! Which model a logged id is billed as, and at what prices over time.

use agentmeter_schemas::{ModelId, Tier};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::book::{ModelTable, PriceBook};
use super::model::{Coverage, ModelPrices, PlanPricing, PriceSegment, TimeRange, UnitPrices};
use super::profiles::{Route, application_profile_id};

/// The Bedrock resource types whose ARN's last path part is a model id: a foundation model or
/// a cross-region (system-defined) inference profile. An application inference profile's id
/// is opaque and is never matched (see [`application_profile_id`]).
const ARN_RESOURCE_TYPES: [&str; 2] = ["foundation-model", "inference-profile"];

/// The resource id of a Bedrock ARN in the commercial partition
/// (`arn:aws:bedrock:<region>:<account>:<type>/<resource>` with `<type>` one of
/// `foundation-model`, `inference-profile`): the part after the last `/`. `None` for anything
/// else, including application inference profiles, whose id is opaque.
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
    #[error(
        "model {model_id:?}{} is not in the price book (declare it, or add it as an alias)",
        via(.profile)
    )]
    UnknownModel {
        /// The id as logged, or the model its application inference profile routes to.
        model_id: String,
        /// The application inference profile id the usage was logged under, if any.
        profile: Option<String>,
    },
    /// The tier bills from a rate card that does not price the model.
    #[error("model {model_id:?}{} is not on rate card {rate_card:?} of tier {tier}", via(.profile))]
    NotInRateCard {
        /// The tier.
        tier: Tier,
        /// Its rate card.
        rate_card: String,
        /// The id as logged, or the model its application inference profile routes to.
        model_id: String,
        /// The application inference profile id the usage was logged under, if any.
        profile: Option<String>,
    },
    /// The model is known but has no price at the instant (before its first entry).
    #[error("model {model_id:?}{} has no price at {at}", via(.profile))]
    NoPriceAt {
        /// The id as logged, or the model its application inference profile routes to.
        model_id: String,
        /// The application inference profile id the usage was logged under, if any.
        profile: Option<String>,
        /// The instant.
        at: DateTime<Utc>,
    },
    /// The id is an application inference profile ARN that the book's profiles
    /// ([`PriceBook::with_inference_profiles`]) do not list. Its id is opaque, so it is never
    /// priced by it.
    #[error("application inference profile {profile_id} is not in --inference-profiles")]
    UnknownApplicationProfile {
        /// The profile id (after `application-inference-profile/`).
        profile_id: String,
    },
    /// The application inference profile routes its model to other Regions than its own: it
    /// was copied from a cross-region profile, which sets the price, and the listing does not
    /// say which.
    #[error(
        "application inference profile {profile_id} routes {model_id} to {} without naming the cross-region profile (us., eu., global., ...) it was copied from, which sets the price; in --inference-profiles, give that profile's ARN as its modelArn",
        region_list(.regions)
    )]
    CrossRegionProfile {
        /// The profile id.
        profile_id: String,
        /// Its foundation model id.
        model_id: String,
        /// The Regions of its models (`""`: Region-less, global).
        regions: Vec<String>,
    },
}

/// ` (application inference profile <id>)`, or nothing.
fn via(profile: &Option<String>) -> String {
    profile.as_ref().map(|p| format!(" (application inference profile {p})")).unwrap_or_default()
}

/// Regions in words: `us-east-1, us-west-2 and (no Region)`.
fn region_list(regions: &[String]) -> String {
    let shown: Vec<&str> =
        regions.iter().map(|r| if r.is_empty() { "(no Region)" } else { r.as_str() }).collect();
    match shown.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => shown.join(""),
    }
}

/// What a logged id is looked up as in the book's tables.
#[derive(Debug, Clone, Copy)]
struct Lookup<'a> {
    /// The id to resolve: the logged one, or the model its application profile routes to.
    id: &'a str,
    /// The application inference profile id it was logged under, if any.
    profile: Option<&'a str>,
}

impl Lookup<'_> {
    fn unknown(&self) -> Unpriced {
        Unpriced::UnknownModel {
            model_id: self.id.to_owned(),
            profile: self.profile.map(str::to_owned),
        }
    }
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
    /// What `model_id` is looked up as: an application inference profile of the book's
    /// profiles (by ARN or bare id) as the model it routes to; another application inference
    /// profile ARN is unpriced; any other id as itself.
    fn lookup<'a>(&'a self, model_id: &'a str) -> Result<Lookup<'a>, Unpriced> {
        if let Some(p) = self.profiles.get(model_id) {
            return match &p.route {
                Route::Model(id) => Ok(Lookup { id, profile: Some(&p.id) }),
                Route::CrossRegion { model, regions } => Err(Unpriced::CrossRegionProfile {
                    profile_id: p.id.clone(),
                    model_id: model.clone(),
                    regions: regions.clone(),
                }),
            };
        }
        match application_profile_id(model_id) {
            Some(id) => Err(Unpriced::UnknownApplicationProfile { profile_id: id.to_owned() }),
            None => Ok(Lookup { id: model_id, profile: None }),
        }
    }

    /// The list-price model a logged id is billed as.
    ///
    /// An application inference profile of the book's profiles (its ARN or bare id, see
    /// [`PriceBook::with_inference_profiles`]) resolves as the model it routes to; any other
    /// application inference profile ARN resolves to nothing. Otherwise an exact match on a
    /// model's `id` or one of its `aliases`; else, for a Bedrock ARN
    /// (`arn:aws:bedrock:<region>:<account>:(foundation-model|inference-profile)/<resource>`),
    /// an exact match on the resource part after the last `/`; else `None`. Geo prefixes
    /// (`us.`, `eu.`, `apac.`, `global.`) and version suffixes are never stripped: geo
    /// profiles can cost more, so every billed id is declared.
    pub fn resolve(&self, model_id: &str) -> Option<&ModelPrices> {
        self.list.resolve(self.lookup(model_id).ok()?.id)
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
    /// the plan's markup applied, or the rate card's model; and what `model_id` was looked up
    /// as (itself, or its application inference profile's model).
    fn billed_model<'s: 'l, 'm: 'l, 'l>(
        &'s self,
        tier: &Tier,
        model_id: &'m str,
    ) -> Result<(&'s ModelPrices, Lookup<'l>), Unpriced> {
        let entry = self.plans.get(tier).ok_or_else(|| Unpriced::NoPlan { tier: tier.clone() })?;
        let l = self.lookup(model_id)?;
        let model = match &entry.plan.pricing {
            PlanPricing::List => self.list.resolve(l.id).ok_or_else(|| l.unknown()),
            PlanPricing::Markup(_) => {
                entry.marked.as_ref().and_then(|t| t.resolve(l.id)).ok_or_else(|| l.unknown())
            }
            PlanPricing::RateCard(name) => {
                self.rate_cards.get(name).and_then(|t| t.resolve(l.id)).ok_or_else(|| {
                    Unpriced::NotInRateCard {
                        tier: tier.clone(),
                        rate_card: name.clone(),
                        model_id: l.id.to_owned(),
                        profile: l.profile.map(str::to_owned),
                    }
                })
            }
        }?;
        Ok((model, l))
    }

    /// The unit prices `tier` pays for `model_id` at `at`: list × (1 + markup), the rate
    /// card's price, or the list price. Not rounded.
    ///
    /// # Errors
    ///
    /// [`Unpriced`] if the tier has no plan, the id is an application inference profile ARN
    /// the book's profiles do not price, the model is unknown to the plan's prices (a model
    /// missing from a rate card never falls back to list), or `at` is before the model's
    /// first price.
    pub fn billed_prices(
        &self,
        tier: &Tier,
        model_id: &str,
        at: DateTime<Utc>,
    ) -> Result<&UnitPrices, Unpriced> {
        let (model, l) = self.billed_model(tier, model_id)?;
        model.price_at(at).ok_or_else(|| Unpriced::NoPriceAt {
            model_id: l.id.to_owned(),
            profile: l.profile.map(str::to_owned),
            at,
        })
    }

    /// The billed and list price segments of `model_id` for `tier` over `[from, to)`.
    ///
    /// # Errors
    ///
    /// [`Unpriced`] if the tier has no plan, the id is an application inference profile ARN
    /// the book's profiles do not price, or the model is unknown to the plan's prices. Parts of the interval before the first price are not an error: they are reported in
    /// [`BilledSegments::unbilled`] so the caller can list that usage as unpriced.
    pub fn billed_segments(
        &self,
        tier: &Tier,
        model_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BilledSegments, Unpriced> {
        let (billed_model, l) = self.billed_model(tier, model_id)?;
        let billed = billed_model.segments(from, to);
        let list_model = self.list.resolve(l.id);
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
