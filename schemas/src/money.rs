//! Money: exact decimals and the one rounding rule.
//!
//! Amounts are `rust_decimal::Decimal`, never binary floating point. Every amount that is
//! shown or summed on an invoice is rounded once, at a named point, to the cent with
//! [`round_cents`] (half away from zero); totals are sums of rounded amounts, so an invoice's
//! lines always add up to its total.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places of a cent.
pub const CENT_DP: u32 = 2;

/// The rounding rule: to the cent, half away from zero (`0.005` → `0.01`, `-0.005` →
/// `-0.01`).
pub fn round_cents(d: Decimal) -> Decimal {
    let mut r = d.round_dp_with_strategy(CENT_DP, RoundingStrategy::MidpointAwayFromZero);
    // Always two places, so "1" prints as "1.00".
    r.rescale(CENT_DP);
    r
}

/// A whole number of cents as a decimal amount.
pub fn from_cents(cents: i128) -> Option<Decimal> {
    i64::try_from(cents).ok().map(|c| Decimal::new(c, CENT_DP))
}

/// A cent-rounded amount as a whole number of cents.
pub fn to_cents(amount: Decimal) -> Option<i128> {
    let r = round_cents(amount);
    Some(r.mantissa())
}

/// One million, the unit of token prices ("per million tokens").
pub const MILLION: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn half_away_from_zero_to_the_cent() {
        for (x, want) in [
            ("0.005", "0.01"),
            ("0.015", "0.02"),
            ("0.025", "0.03"),
            ("-0.005", "-0.01"),
            ("1.004999", "1.00"),
            ("1", "1.00"),
            ("12.3456789", "12.35"),
        ] {
            assert_eq!(round_cents(d(x)).to_string(), want, "{x}");
        }
    }

    #[test]
    fn cents_round_trip() {
        assert_eq!(to_cents(d("12.345")), Some(1235));
        assert_eq!(from_cents(1235).unwrap().to_string(), "12.35");
        assert_eq!(MILLION, d("1000000"));
    }
}
