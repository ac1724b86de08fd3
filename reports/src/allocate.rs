//! Splitting an amount across shares so that the parts add up to it exactly.
//!
//! Cost Explorer reports one amount per day and tier; each tenant of the tier gets a part in
//! proportion to its list-price cost of usage that day. Parts are whole cents by the
//! largest-remainder rule: every part is its exact quota rounded down, then the cents left
//! over go one each to the largest remainders (ties to the earlier share). So the parts sum to
//! the amount exactly, none is negative (for a non-negative amount), and each is within one
//! cent of its exact quota.

use agentmeter_schemas::money::CENT_DP;
use rust_decimal::Decimal;

/// Why an amount could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocationError {
    /// The amount has fractions of a cent.
    #[error("amount {0} is not a whole number of cents")]
    NotCents(Decimal),
    /// A share is negative.
    #[error("share {index} is negative: {weight}")]
    NegativeWeight {
        /// Position of the share.
        index: usize,
        /// Its weight.
        weight: Decimal,
    },
    /// No share has weight, so there is nothing to split in proportion to.
    #[error("no share has a positive weight")]
    NoWeight,
    /// The numbers are too large for exact integer arithmetic.
    #[error("amount or weights too large to split exactly")]
    Overflow,
}

/// Weights are compared at this many decimal places (list costs are exact to far fewer).
const WEIGHT_DP: u32 = 12;

/// Splits `amount` (whole cents, may be negative for a credit) across shares in proportion to
/// `weights` (non-negative, at least one positive). The result has one part per weight, in
/// cents, summing exactly to `amount`.
///
/// # Errors
///
/// See [`AllocationError`].
pub fn allocate_cents(
    amount: Decimal,
    weights: &[Decimal],
) -> Result<Vec<Decimal>, AllocationError> {
    if amount.normalize().scale() > CENT_DP {
        return Err(AllocationError::NotCents(amount));
    }
    let mut cents_dec = amount;
    cents_dec.rescale(CENT_DP);
    let total_cents = cents_dec.mantissa();
    let mut w = Vec::with_capacity(weights.len());
    for (index, &weight) in weights.iter().enumerate() {
        if weight.is_sign_negative() && !weight.is_zero() {
            return Err(AllocationError::NegativeWeight { index, weight });
        }
        let mut x = weight.round_dp(WEIGHT_DP);
        x.rescale(WEIGHT_DP);
        w.push(x.mantissa());
    }
    let sum: i128 =
        w.iter().try_fold(0i128, |a, &x| a.checked_add(x)).ok_or(AllocationError::Overflow)?;
    if sum == 0 {
        return Err(AllocationError::NoWeight);
    }
    let negative = total_cents < 0;
    let c = total_cents.abs();
    let mut parts = Vec::with_capacity(w.len());
    let mut remainders = Vec::with_capacity(w.len());
    let mut given: i128 = 0;
    for (i, &x) in w.iter().enumerate() {
        let p = c.checked_mul(x).ok_or(AllocationError::Overflow)?;
        parts.push(p / sum);
        remainders.push((p % sum, i));
        given += p / sum;
    }
    let left = usize::try_from(c - given).map_err(|_| AllocationError::Overflow)?;
    // Largest remainder first; ties to the earlier share, so the split is deterministic.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take(left) {
        parts[i] += 1;
    }
    parts
        .into_iter()
        .map(|p| {
            let cents = if negative { -p } else { p };
            i64::try_from(cents)
                .map(|c| Decimal::new(c, CENT_DP))
                .map_err(|_| AllocationError::Overflow)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn strings(v: &[Decimal]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn thirds_and_ties() {
        let parts = allocate_cents(d("10.00"), &[d("1"), d("1"), d("1")]).unwrap();
        assert_eq!(strings(&parts), ["3.34", "3.33", "3.33"]);
        let parts = allocate_cents(d("0.01"), &[d("5"), d("5")]).unwrap();
        assert_eq!(strings(&parts), ["0.01", "0.00"]);
    }

    #[test]
    fn proportional_with_zero_shares_and_credits() {
        let parts = allocate_cents(d("100"), &[d("0"), d("0.75"), d("0.25")]).unwrap();
        assert_eq!(strings(&parts), ["0.00", "75.00", "25.00"]);
        let parts = allocate_cents(d("-7.00"), &[d("2"), d("1")]).unwrap();
        assert_eq!(strings(&parts), ["-4.67", "-2.33"]);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            allocate_cents(d("1.001"), &[d("1")]),
            Err(AllocationError::NotCents(d("1.001")))
        );
        assert_eq!(allocate_cents(d("1"), &[d("0"), d("0")]), Err(AllocationError::NoWeight));
        assert_eq!(allocate_cents(d("1"), &[]), Err(AllocationError::NoWeight));
        assert_eq!(
            allocate_cents(d("1"), &[d("1"), d("-1")]),
            Err(AllocationError::NegativeWeight { index: 1, weight: d("-1") })
        );
        // Trailing zeros are not fractions of a cent.
        assert!(allocate_cents(d("1.5000"), &[d("1")]).is_ok());
    }

    fn weight() -> impl Strategy<Value = Decimal> {
        (0u64..2_000_000_000, 0u32..10).prop_map(|(m, s)| Decimal::new(m as i64, s))
    }

    proptest! {
        #[test]
        fn parts_sum_exactly_and_none_is_negative(
            cents in -10_000_000_000i64..10_000_000_000,
            mut weights in prop::collection::vec(weight(), 1..40),
        ) {
            if weights.iter().all(|w| w.is_zero()) {
                weights[0] = Decimal::ONE;
            }
            let amount = Decimal::new(cents, 2);
            let parts = allocate_cents(amount, &weights).unwrap();
            prop_assert_eq!(parts.len(), weights.len());
            let sum: Decimal = parts.iter().sum();
            prop_assert_eq!(sum, amount);
            let total: Decimal = weights.iter().sum();
            for (p, w) in parts.iter().zip(&weights) {
                if cents >= 0 {
                    prop_assert!(!p.is_sign_negative() || p.is_zero());
                } else {
                    prop_assert!(p.is_sign_negative() || p.is_zero());
                }
                // Within one cent of the exact quota.
                let quota = amount * *w / total;
                prop_assert!((*p - quota).abs() < Decimal::new(1, 2) + Decimal::new(1, 9));
                if w.is_zero() {
                    prop_assert!(p.is_zero());
                }
            }
        }
    }
}
