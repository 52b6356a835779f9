//! Exact money: amounts are `i64` millionths of the currency unit ("micro"),
//! parsed from and written as decimal strings, never through floats; the
//! ISO 4217 currencies with their minor units.

use std::fmt;

/// Micro units in one currency unit.
pub const MICRO: i64 = 1_000_000;

/// Largest amount one operation (a top-up, a voucher, a transfer) may move:
/// a million units. Far above any real recharge, far below `i64` overflow.
pub const MAX_OPERATION_MICRO: i64 = 1_000_000 * MICRO;

/// Largest balance an account may reach, a billion units: credits past it
/// are refused, so `balance_micro + amount` can never overflow (SQLite
/// would turn an overflowing integer into a float).
pub const MAX_BALANCE_MICRO: i64 = 1_000_000_000 * MICRO;

/// Why a decimal string is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{0:?} is not a decimal amount such as 12.50")]
    Syntax(String),
    #[error("{0:?} has more than {1} decimal places")]
    Precision(String, u32),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses `"12"`, `"12.5"`, `"0.0123"`, `"-3.20"` into micro units, exactly.
/// At most `max_decimals` (≤ 6) digits after the point and 12 before it.
pub fn parse_micro(text: &str, max_decimals: u32) -> Result<i64, AmountError> {
    let s = text.trim();
    let syntax = || AmountError::Syntax(text.to_owned());
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = unsigned_decimal(digits).ok_or_else(syntax)?;
    if frac.len() > max_decimals.min(6) as usize {
        return Err(AmountError::Precision(text.to_owned(), max_decimals.min(6)));
    }
    if int.len() > 12 {
        return Err(AmountError::TooLarge(text.to_owned()));
    }
    let whole: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| syntax())?
    };
    let mut fraction: i64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        fraction += i64::from(b - b'0') * 10i64.pow(5 - i as u32);
    }
    let micro = whole * MICRO + fraction;
    Ok(if negative { -micro } else { micro })
}

/// The digits before and after the point of an unsigned decimal such as
/// `"012.50"` (`("12", "5")`: leading zeros of the whole part and trailing
/// zeros of the fraction dropped), or `None` when `digits` is not one.
pub(crate) fn unsigned_decimal(digits: &str) -> Option<(&str, &str)> {
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let well_formed = !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && frac.is_empty());
    well_formed.then(|| (int.trim_start_matches('0'), frac.trim_end_matches('0')))
}

/// `micro` as a decimal string with at least `min_decimals` and at most six
/// decimal places: `format_micro(12_500_000, 2)` is `"12.50"`,
/// `format_micro(12_300, 2)` is `"0.0123"`.
pub fn format_micro(micro: i64, min_decimals: u32) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let abs = micro.unsigned_abs();
    let whole = abs / MICRO as u64;
    let mut frac = format!("{:06}", abs % MICRO as u64);
    while frac.len() > min_decimals.min(6) as usize && frac.ends_with('0') {
        frac.pop();
    }
    if frac.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac}")
    }
}

/// An ISO 4217 currency this switch knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    pub code: &'static str,
    /// Digits of its minor unit (2 for EUR, 0 for JPY, 3 for KWD).
    pub exponent: u32,
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// Active ISO 4217 currencies and their minor units. Codes not here are
/// refused wherever a currency is given (tariffs, vouchers).
#[rustfmt::skip]
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2),
    ("AUD", 2), ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2),
    ("BHD", 3), ("BIF", 0), ("BMD", 2), ("BND", 2), ("BOB", 2), ("BRL", 2), ("BSD", 2),
    ("BTN", 2), ("BWP", 2), ("BYN", 2), ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHF", 2),
    ("CLP", 0), ("CNY", 2), ("COP", 2), ("CRC", 2), ("CUP", 2), ("CVE", 2), ("CZK", 2),
    ("DJF", 0), ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2),
    ("EUR", 2), ("FJD", 2), ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2),
    ("GMD", 2), ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2),
    ("HUF", 2), ("IDR", 2), ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0),
    ("JMD", 2), ("JOD", 3), ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0),
    ("KPW", 2), ("KRW", 0), ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2),
    ("LKR", 2), ("LRD", 2), ("LSL", 2), ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2),
    ("MKD", 2), ("MMK", 2), ("MNT", 2), ("MOP", 2), ("MRU", 2), ("MUR", 2), ("MVR", 2),
    ("MWK", 2), ("MXN", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2), ("NGN", 2), ("NIO", 2),
    ("NOK", 2), ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2), ("PGK", 2),
    ("PHP", 2), ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2),
    ("RUB", 2), ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2),
    ("SGD", 2), ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2),
    ("SVC", 2), ("SYP", 2), ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3),
    ("TOP", 2), ("TRY", 2), ("TTD", 2), ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0),
    ("USD", 2), ("UYU", 2), ("UZS", 2), ("VES", 2), ("VND", 0), ("VUV", 0), ("WST", 2),
    ("XAF", 0), ("XCD", 2), ("XOF", 0), ("XPF", 0), ("YER", 2), ("ZAR", 2), ("ZMW", 2),
    ("ZWL", 2),
];

/// The currency `code` names (case ignored), or `None` if it is not ISO 4217.
pub fn currency(code: &str) -> Option<Currency> {
    let upper = code.trim().to_ascii_uppercase();
    CURRENCIES
        .binary_search_by(|(c, _)| (*c).cmp(upper.as_str()))
        .ok()
        .map(|i| Currency {
            code: CURRENCIES[i].0,
            exponent: CURRENCIES[i].1,
        })
}

/// Decimal places to show for amounts in `code`: its minor unit, 2 for a
/// code this switch does not know (an account's currency is free text).
pub fn display_decimals(code: &str) -> u32 {
    currency(code).map_or(2, |c| c.exponent)
}

/// `micro` written for `code` (`"12.50"` in EUR, `"0.0123"` for a price).
pub fn format_in(micro: i64, code: &str) -> String {
    format_micro(micro, display_decimals(code))
}

/// Parses an amount of money that is paid or moved in `code` (a top-up, a
/// voucher, a transfer): positive, whole minor units (cents for EUR, yen for
/// JPY), at most [`MAX_OPERATION_MICRO`].
pub fn parse_payment(text: &str, code: &str) -> Result<i64, String> {
    let exponent = display_decimals(code);
    let micro = parse_micro(text, exponent).map_err(|e| match e {
        AmountError::Precision(..) => {
            format!("{text:?}: amounts in {code} have at most {exponent} decimal places")
        }
        other => other.to_string(),
    })?;
    if micro <= 0 {
        return Err(format!("{text:?}: the amount must be positive"));
    }
    if micro > MAX_OPERATION_MICRO {
        return Err(format!(
            "{text:?}: at most {} at once",
            format_micro(MAX_OPERATION_MICRO, 0)
        ));
    }
    Ok(micro)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_strings_exactly() {
        assert_eq!(parse_micro("0.0123", 6), Ok(12_300));
        assert_eq!(parse_micro("12", 6), Ok(12_000_000));
        assert_eq!(parse_micro("12.5", 2), Ok(12_500_000));
        assert_eq!(parse_micro(".5", 2), Ok(500_000));
        assert_eq!(parse_micro("-3.20", 2), Ok(-3_200_000));
        assert_eq!(parse_micro("1.000000", 0), Ok(1_000_000), "trailing zeros");
        assert_eq!(parse_micro("0.000001", 6), Ok(1));
        // 0.1 + 0.2 style drift cannot happen: no float is involved.
        assert_eq!(parse_micro("0.30", 6), Ok(300_000));
        assert!(matches!(
            parse_micro("1.234", 2),
            Err(AmountError::Precision(..))
        ));
        assert!(matches!(
            parse_micro("0.0000001", 6),
            Err(AmountError::Precision(..))
        ));
        for bad in [
            "", ".", "1.", "abc", "1,5", "1e3", "--1", "1.2.3", " . ", "NaN",
        ] {
            assert!(parse_micro(bad, 6).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_micro("9999999999999", 6),
            Err(AmountError::TooLarge(_))
        ));
        assert_eq!(
            parse_micro("999999999999.999999", 6),
            Ok(999_999_999_999_999_999)
        );
    }

    #[test]
    fn formats_with_the_minor_unit_and_no_more_than_needed() {
        assert_eq!(format_micro(12_500_000, 2), "12.50");
        assert_eq!(format_micro(12_300, 2), "0.0123");
        assert_eq!(format_micro(-1, 2), "-0.000001");
        assert_eq!(format_micro(5_000_000, 0), "5");
        assert_eq!(format_micro(0, 2), "0.00");
        assert_eq!(format_in(1_500_000, "JPY"), "1.5");
        assert_eq!(format_in(1_000_000, "KWD"), "1.000");
        for micro in [0, 1, 12_345_678, -98_765, MAX_BALANCE_MICRO] {
            assert_eq!(parse_micro(&format_micro(micro, 2), 6), Ok(micro));
        }
    }

    #[test]
    fn currencies_are_iso_4217_with_their_minor_units() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        assert_eq!(currency("eur").map(|c| c.exponent), Some(2));
        assert_eq!(currency("JPY").map(|c| c.exponent), Some(0));
        assert_eq!(currency("BHD").map(|c| c.exponent), Some(3));
        assert_eq!(currency("XYZ"), None);
        assert_eq!(currency("EURO"), None);
    }

    #[test]
    fn payments_are_positive_whole_minor_units_within_bounds() {
        assert_eq!(parse_payment("5.00", "EUR"), Ok(5_000_000));
        assert_eq!(parse_payment("500", "JPY"), Ok(500_000_000));
        assert!(parse_payment("5.001", "EUR").is_err());
        assert!(parse_payment("5.5", "JPY").is_err());
        assert!(parse_payment("0", "EUR").is_err());
        assert!(parse_payment("-1", "EUR").is_err());
        assert!(parse_payment("1000000.01", "EUR").is_err());
        assert_eq!(parse_payment("1000000", "EUR"), Ok(MAX_OPERATION_MICRO));
    }
}
