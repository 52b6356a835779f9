//! Exchange rates: what one unit of a currency is worth in another, set by
//! the operator (`softswitch fx set EUR USD 1.0832`, `PUT
//! /exchange-rates/EUR/USD`), never fetched from anywhere.
//!
//! A rate is kept exactly, as billionths ("nano": 9 decimal places), and
//! money is converted in integer arithmetic. A pair set one way converts
//! both ways (the other way divides). Rounding never makes money: what an
//! account is **charged** (a converted price, a fee) rounds up to the next
//! micro unit, what it is **credited** (a payment, a voucher, a transfer
//! received) rounds down.
//!
//! Where conversion happens: a call or message priced by a tariff in
//! another currency than the account's (the tariff row is converted when it
//! is looked up, so the call is authorised, cut and settled in the
//! account's currency); rates shown to the client; payments, top-ups and
//! vouchers in another currency; plans and numbers priced in another
//! currency; transfers between accounts of different currencies. Without a
//! rate for the pair each of these is refused with `currency-mismatch`, as
//! before rates existed.

use std::collections::HashMap;

use serde::Serialize;

use super::money::unsigned_decimal;
use super::tariffs::TariffRate;

/// Billionths in one: a rate's precision.
pub const NANO: i128 = 1_000_000_000;

/// Largest rate accepted (one unit worth a billion of the other): above any
/// real pair (1 BTC-like unit in VND is ~10^9), far below overflow.
pub const MAX_RATE_NANO: i64 = 1_000_000_000 * 1_000_000_000;

/// One stored rate: 1 `base` = `rate_nano` / 10^9 `quote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExchangeRate {
    pub base: String,
    pub quote: String,
    /// The rate as a decimal string, such as `"1.0832"`.
    pub rate: String,
    pub rate_nano: i64,
    pub updated_at: i64,
}

/// Which way an amount rounds when it does not convert exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// A charge: the account pays the micro unit started.
    Up,
    /// A credit: the account gets only whole micro units.
    Down,
}

/// The rates in force, by pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FxTable {
    pairs: HashMap<(String, String), i64>,
}

impl FxTable {
    pub fn new(rates: impl IntoIterator<Item = (String, String, i64)>) -> FxTable {
        FxTable {
            pairs: rates
                .into_iter()
                .map(|(base, quote, nano)| ((base, quote), nano))
                .collect(),
        }
    }

    /// `micro` of `from` in `to`; the same amount when the currencies are
    /// the same; `None` without a rate for the pair (either way) or when the
    /// result would be absurd (past `i64`).
    pub fn convert(&self, micro: i64, from: &str, to: &str, round: Round) -> Option<i64> {
        if from == to {
            return Some(micro);
        }
        if let Some(&nano) = self.pairs.get(&(from.to_owned(), to.to_owned())) {
            return scale(micro, i128::from(nano), NANO, round);
        }
        let &nano = self.pairs.get(&(to.to_owned(), from.to_owned()))?;
        scale(micro, NANO, i128::from(nano), round)
    }

    /// The currencies an amount converts to `to` from: `to` itself and
    /// every currency with a rate to or from it, sorted.
    pub fn convertible_to(&self, to: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .pairs
            .keys()
            .filter_map(|(a, b)| match (a == to, b == to) {
                (true, false) => Some(b.clone()),
                (false, true) => Some(a.clone()),
                _ => None,
            })
            .chain(std::iter::once(to.to_owned()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A tariff row with its prices in `to` (rounded up: the account never
    /// pays less than the tariff's price); `None` without a rate.
    pub fn convert_rate(&self, row: &TariffRate, to: &str) -> Option<TariffRate> {
        if row.currency == to {
            return Some(row.clone());
        }
        let price = |micro| self.convert(micro, &row.currency, to, Round::Up);
        let mut converted = row.clone();
        converted.rate.price_micro = price(row.rate.price_micro)?;
        converted.rate.connection_fee_micro = price(row.rate.connection_fee_micro)?;
        converted.sms_price_micro = match row.sms_price_micro {
            Some(p) => Some(price(p)?),
            None => None,
        };
        converted.currency = to.to_owned();
        Some(converted)
    }
}

/// `micro × num / den`, rounded as asked, if it fits an `i64`.
fn scale(micro: i64, num: i128, den: i128, round: Round) -> Option<i64> {
    let product = i128::from(micro).checked_mul(num)?;
    let (q, r) = (product.div_euclid(den), product.rem_euclid(den));
    let rounded = match round {
        Round::Up if r != 0 => q + 1,
        _ => q,
    };
    i64::try_from(rounded).ok()
}

/// Parses a rate such as `"1.0832"` or `"0.000061"`: positive, at most 9
/// decimal places, at most [`MAX_RATE_NANO`].
pub fn parse_rate(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a rate such as 1.0832 (a positive decimal)");
    let (int, frac) = unsigned_decimal(text.trim()).ok_or_else(bad)?;
    if frac.len() > 9 {
        return Err(format!("{text:?} has more than 9 decimal places"));
    }
    if int.len() > 10 {
        return Err(format!("{text:?} is too large"));
    }
    let whole: i128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let fraction: i128 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    let nano = whole * NANO + fraction;
    if nano <= 0 {
        return Err(format!("{text:?}: a rate must be above 0"));
    }
    i64::try_from(nano)
        .ok()
        .filter(|n| *n <= MAX_RATE_NANO)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A rate written back as a decimal (`1083200000` → `"1.0832"`).
pub fn format_rate(nano: i64) -> String {
    let (int, frac) = (nano / NANO as i64, nano % NANO as i64);
    let frac = format!("{frac:09}");
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::rating::Rate;

    fn table() -> FxTable {
        FxTable::new([
            (
                "EUR".to_owned(),
                "USD".to_owned(),
                parse_rate("1.0832").unwrap(),
            ),
            (
                "USD".to_owned(),
                "JPY".to_owned(),
                parse_rate("151.25").unwrap(),
            ),
        ])
    }

    #[test]
    fn a_currency_is_payable_from_those_with_a_rate_either_way() {
        let t = table();
        assert_eq!(t.convertible_to("USD"), ["EUR", "JPY", "USD"]);
        assert_eq!(t.convertible_to("EUR"), ["EUR", "USD"], "no chaining");
        assert_eq!(t.convertible_to("PLN"), ["PLN"]);
    }

    #[test]
    fn rates_parse_exactly_and_print_back() {
        for (text, nano, back) in [
            ("1.0832", 1_083_200_000, "1.0832"),
            ("151.25", 151_250_000_000, "151.25"),
            ("0.000000001", 1, "0.000000001"),
            ("2", 2_000_000_000, "2"),
            ("007.50", 7_500_000_000, "7.5"),
        ] {
            assert_eq!(parse_rate(text), Ok(nano), "{text}");
            assert_eq!(format_rate(nano), back);
        }
        for bad in [
            "",
            ".",
            "1.",
            "-1",
            "0",
            "0.0000000001",
            "1e3",
            "abc",
            "1,5",
            "99999999999",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn conversion_goes_both_ways_and_rounds_against_nobody() {
        let fx = table();
        // 10.00 EUR = 10.832 USD exactly.
        assert_eq!(
            fx.convert(10_000_000, "EUR", "USD", Round::Up),
            Some(10_832_000)
        );
        // Back: 10.832 USD / 1.0832 = 10 EUR exactly.
        assert_eq!(
            fx.convert(10_832_000, "USD", "EUR", Round::Down),
            Some(10_000_000)
        );
        // 1.00 USD = 0.923190546... EUR: a charge rounds up, a credit down.
        assert_eq!(
            fx.convert(1_000_000, "USD", "EUR", Round::Up),
            Some(923_191)
        );
        assert_eq!(
            fx.convert(1_000_000, "USD", "EUR", Round::Down),
            Some(923_190)
        );
        assert_eq!(fx.convert(5, "EUR", "EUR", Round::Up), Some(5));
        // No chaining through USD: EUR→JPY needs its own rate.
        assert_eq!(fx.convert(1_000_000, "EUR", "JPY", Round::Up), None);
        assert_eq!(
            fx.convert(i64::MAX, "USD", "JPY", Round::Up),
            None,
            "overflow"
        );
    }

    #[test]
    fn a_tariff_row_converts_with_every_price_rounded_up() {
        let row = TariffRate {
            tariff: "t".into(),
            prefix: "48".into(),
            description: "Poland".into(),
            country: Some("PL".into()),
            currency: "USD".into(),
            rate: Rate {
                price_micro: 100_000,
                connection_fee_micro: 1,
                first_increment: 60,
                next_increment: 6,
                free_seconds: 0,
            },
            sms_price_micro: Some(50_000),
        };
        let eur = table().convert_rate(&row, "EUR").unwrap();
        assert_eq!(eur.currency, "EUR");
        assert_eq!(eur.rate.price_micro, 92_320, "0.1 / 1.0832 = 0.0923190… up");
        assert_eq!(eur.rate.connection_fee_micro, 1, "never rounded to free");
        assert_eq!(eur.sms_price_micro, Some(46_160));
        assert_eq!((eur.rate.first_increment, eur.prefix.as_str()), (60, "48"));
        assert!(table().convert_rate(&row, "GBP").is_none());
    }
}
