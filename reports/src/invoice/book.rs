//! The price book as the engine's [`Pricing`].

use std::collections::BTreeSet;

use agentmeter_schemas::Tier;
use chrono::{DateTime, Utc};

use super::compute::{PlanTerms, PriceSpan, Pricing, Spans};
use crate::prices::{PriceBook, PriceSegment};

impl Pricing for PriceBook {
    fn version(&self) -> String {
        PriceBook::version(self)
    }

    fn currency(&self) -> String {
        PriceBook::currency(self).to_owned()
    }

    fn tiers(&self) -> Vec<Tier> {
        self.plans().map(|(t, _)| t.clone()).collect()
    }

    fn model_name(&self, model_id: &str) -> Option<String> {
        self.resolve(model_id).and_then(|m| m.name()).map(str::to_owned)
    }

    fn plan(&self, tier: &Tier) -> Option<PlanTerms> {
        PriceBook::plan(self, tier).map(|p| PlanTerms {
            base_fee: p.base_fee,
            included_usage: p.included_usage,
            usage_source: p.usage_source,
        })
    }

    /// Cuts `[from, to)` at every change of the billed or the list price. Where the list does
    /// not price a model that a rate card does, the billed price weighs its cost allocation.
    fn spans(&self, tier: &Tier, model_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Spans {
        let b = match self.billed_segments(tier, model_id, from, to) {
            Ok(b) => b,
            Err(why) => {
                return Spans { priced: Vec::new(), uncovered: vec![(from, to, why.to_string())] };
            }
        };
        let mut cuts: BTreeSet<DateTime<Utc>> = [from, to].into_iter().collect();
        let bounds = |s: &PriceSegment| [s.from, s.to];
        cuts.extend(b.billed.iter().flat_map(bounds));
        cuts.extend(b.list.iter().flat_map(bounds));
        let cuts: Vec<_> = cuts.into_iter().filter(|t| *t >= from && *t <= to).collect();
        let mut out = Spans::default();
        for w in cuts.windows(2) {
            let (a, z) = (w[0], w[1]);
            let Some(billed) = b.billed_at(a) else {
                out.uncovered.push((a, z, format!("no price for model {model_id}")));
                continue;
            };
            let list = b.list_at(a).unwrap_or(billed);
            let span = PriceSpan {
                from: a,
                to: z,
                billed: billed.prices.clone(),
                list: list.prices.clone(),
                effective_from: Some(billed.effective_from),
                effective_to: billed.effective_to,
            };
            // Merge with the previous span when nothing changed at the cut.
            match out.priced.last_mut() {
                Some(prev)
                    if prev.to == a
                        && prev.billed == span.billed
                        && prev.list == span.list
                        && prev.effective_from == span.effective_from =>
                {
                    prev.to = z;
                }
                _ => out.priced.push(span),
            }
        }
        out
    }
}
