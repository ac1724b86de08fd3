//! Cost Explorer's `Amount` strings as exact decimals.
//!
//! Cost Explorer writes amounts as decimal strings: plain (`"0.0101516483"`), with many
//! decimals, negative for credits, and sometimes in scientific notation
//! (`"-1.4210854715202004E-14"`, floating-point dust of its own sums). They are read without
//! any binary floating point: exactly when [`Decimal`] can hold the value (28 decimal places,
//! 28 to 29 significant digits), otherwise rounded half away from zero at that limit, which
//! changes the amount by less than 1e-28 USD. Magnitudes too large for a `Decimal`
//! (about 7.9e28) are refused.

use std::str::FromStr;

use rust_decimal::Decimal;

/// Longest `Amount` string accepted; real ones are about 25 characters.
const MAX_LEN: usize = 100;

/// Why an amount was refused; displayed after the quoted amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AmountError {
    /// Not in the grammar `[+-]digits[.digits][(e|E)[+-]digits]`.
    NotDecimal,
    /// Larger in magnitude than a `Decimal` holds.
    OutOfRange,
}

impl AmountError {
    /// The message that follows `Amount "<text>"`.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::NotDecimal => "is not a decimal",
            Self::OutOfRange => "is out of range for a decimal",
        }
    }
}

/// Parses one `Amount` string (see the module docs for the rules).
pub(crate) fn parse_amount(text: &str) -> Result<Decimal, AmountError> {
    if text.len() > MAX_LEN {
        return Err(AmountError::NotDecimal);
    }
    let bytes = text.as_bytes();
    let (negative, rest) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let (mantissa, exponent) = match rest.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, &mantissa[mantissa.len()..]),
    };
    let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    if int_part.is_empty() && frac_part.is_empty()
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(AmountError::NotDecimal);
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(exp) => {
            let (sign, digits) = match exp.first() {
                Some(b'-') => (-1, &exp[1..]),
                Some(b'+') => (1, &exp[1..]),
                _ => (1, exp),
            };
            if digits.is_empty() || digits.len() > 6 || !all_digits(digits) {
                return Err(AmountError::NotDecimal);
            }
            let magnitude = digits.iter().fold(0_i64, |n, &d| n * 10 + i64::from(d - b'0'));
            sign * magnitude
        }
    };

    // All significant digits, and where the decimal point falls among them.
    let digits: Vec<u8> = int_part.iter().chain(frac_part).copied().collect();
    let Some(first) = digits.iter().position(|&d| d != b'0') else {
        return Ok(Decimal::ZERO);
    };
    let digits = &digits[first..];
    // Point position relative to the first significant digit (may be negative).
    let point = i64::try_from(int_part.len()).map_err(|_| AmountError::NotDecimal)?
        - i64::try_from(first).map_err(|_| AmountError::NotDecimal)?
        + exponent;
    if point > 29 {
        return Err(AmountError::OutOfRange);
    }
    if point < -40 {
        // Below 1e-40: zero at the precision a Decimal has.
        return Ok(Decimal::ZERO);
    }

    let mut plain = String::with_capacity(digits.len() + 48);
    if negative {
        plain.push('-');
    }
    let digit_chars = digits.iter().map(|&d| char::from(d));
    if point <= 0 {
        plain.push_str("0.");
        plain.extend(std::iter::repeat_n('0', usize::try_from(-point).unwrap_or(0)));
        plain.extend(digit_chars);
    } else {
        let point = usize::try_from(point).unwrap_or(0);
        if digits.len() <= point {
            plain.extend(digit_chars);
            plain.extend(std::iter::repeat_n('0', point - digits.len()));
        } else {
            plain.extend(digit_chars.clone().take(point));
            plain.push('.');
            plain.extend(digit_chars.skip(point));
        }
    }
    // `plain` is now `-?\d+(\.\d+)?` without underscores, which both parsers read the same
    // way; `from_str` only differs by rounding digits beyond what a Decimal holds.
    Decimal::from_str_exact(&plain)
        .or_else(|_| Decimal::from_str(&plain))
        .map_err(|_| AmountError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn plain_amounts_are_exact() {
        for (text, want) in [
            ("0.0101516483", dec!(0.0101516483)),
            ("12.3400", dec!(12.3400)),
            ("-3.75", dec!(-3.75)),
            ("+1", dec!(1)),
            ("0", dec!(0)),
            ("-0.000", dec!(0)),
            (".5", dec!(0.5)),
            ("5.", dec!(5)),
            ("0000123.4500", dec!(123.45)),
            ("79228162514264337593543950335", Decimal::MAX),
        ] {
            assert_eq!(parse_amount(text), Ok(want), "{text}");
        }
        assert_eq!(parse_amount("12.3400").unwrap().scale(), 4);
    }

    #[test]
    fn scientific_notation_is_exact() {
        for (text, want) in [
            ("1.5E2", dec!(150)),
            ("1.5e+2", dec!(150)),
            ("-1.4210854715202E-14", dec!(-0.000000000000014210854715202)),
            ("2.5E-7", dec!(0.00000025)),
            ("123E-2", dec!(1.23)),
            ("0E10", dec!(0)),
            ("1e28", dec!(10000000000000000000000000000)),
        ] {
            assert_eq!(parse_amount(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn digits_beyond_decimal_precision_round_half_away_from_zero() {
        assert_eq!(
            parse_amount("0.12345678901234567890123456785"),
            Ok(dec!(0.1234567890123456789012345679))
        );
        assert_eq!(
            parse_amount("-0.12345678901234567890123456785"),
            Ok(dec!(-0.1234567890123456789012345679))
        );
        // Cost Explorer's floating-point dust needs 30 decimal places: rounded at 28.
        assert_eq!(
            parse_amount("-1.4210854715202004E-14"),
            Ok(dec!(-0.0000000000000142108547152020))
        );
        assert_eq!(parse_amount("1e-29"), Ok(dec!(0)));
        assert_eq!(parse_amount("-7E-1000"), Ok(dec!(0)));
    }

    #[test]
    fn non_decimals_and_huge_values_are_refused() {
        for text in [
            "",
            "abc",
            "-",
            ".",
            "1.2.3",
            "1_000",
            "1,5",
            " 1",
            "1 ",
            "NaN",
            "inf",
            "0x10",
            "1e",
            "1e+",
            "e5",
            "1e1.5",
            "--1",
            "1e1234567",
            "١",
        ] {
            assert_eq!(parse_amount(text), Err(AmountError::NotDecimal), "{text:?}");
        }
        for text in ["1e29", "79228162514264337593543950336", "-1E+40"] {
            assert_eq!(parse_amount(text), Err(AmountError::OutOfRange), "{text:?}");
        }
        assert_eq!(parse_amount(&"1".repeat(101)), Err(AmountError::NotDecimal));
    }
}
