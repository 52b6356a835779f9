//! Rating: what a call of N seconds costs under a tariff row, and how long
//! a call a balance pays for. Pure functions over integers.
//!
//! The rules, for an answered call of `secs` seconds:
//!
//! 1. a call of 0 seconds (not answered) costs nothing;
//! 2. the connection fee is charged once for every answered call;
//! 3. the first `free_seconds` are not billed;
//! 4. the rest, if any, is billed as the first increment whole, then whole
//!    next increments (60/60: per started minute; 1/1: per second; 30/6:
//!    30 s, then per started 6 s);
//! 5. billed seconds × price per minute / 60, rounded **up** to the micro
//!    unit (a millionth of the currency unit), plus the fee.
//!
//! Example: 0.0123 per minute, 30/6, fee 0.01, 5 free seconds, a 47 s call:
//! 42 s to bill → 30 + 2 × 6 = 42 s → 42 × 12 300 / 60 = 8 610 micro, plus
//! the fee 10 000 = 18 610 micro (0.01861).

use serde::{Deserialize, Serialize};

/// The money side of one tariff row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Price of one minute, micro units.
    pub price_micro: i64,
    /// Charged once per answered call, micro units.
    pub connection_fee_micro: i64,
    /// Seconds billed whole at the start (≥ 1).
    pub first_increment: u32,
    /// Seconds billed whole after the first increment (≥ 1).
    pub next_increment: u32,
    /// Seconds at the start of each call that are not billed.
    pub free_seconds: u32,
}

/// Seconds billed for `billable` seconds of talk (after the free ones):
/// the first increment whole, then whole next increments.
pub fn billed_seconds(rate: &Rate, billable: u64) -> u64 {
    if billable == 0 {
        return 0;
    }
    let first = u64::from(rate.first_increment.max(1));
    let next = u64::from(rate.next_increment.max(1));
    if billable <= first {
        first
    } else {
        first + (billable - first).div_ceil(next) * next
    }
}

/// Micro units for `billed` seconds at `price_micro` a minute, rounded up.
fn time_cost(price_micro: i64, billed: u64) -> i128 {
    let product = i128::from(price_micro.max(0)) * i128::from(billed);
    // Rounded up: the house never loses the fraction of a micro unit.
    (product + 59) / 60
}

/// What an answered call of `secs` seconds costs, micro units (rules in
/// the module documentation). Saturates at `i64::MAX`.
pub fn cost(rate: &Rate, secs: u32) -> i64 {
    if secs == 0 {
        return 0;
    }
    let billable = u64::from(secs.saturating_sub(rate.free_seconds));
    let total = i128::from(rate.connection_fee_micro.max(0))
        + time_cost(rate.price_micro, billed_seconds(rate, billable));
    i64::try_from(total).unwrap_or(i64::MAX)
}

/// The longest call, in seconds and at most `cap`, whose [`cost`] fits in
/// `available` micro units: the free seconds plus whole increments
/// (rounded down). 0 when not even the connection fee (or the first
/// increment, with no free seconds) is covered.
pub fn max_secs(rate: &Rate, available: i64, cap: u32) -> u32 {
    if cap == 0 || available < rate.connection_fee_micro.max(0) || available < 0 {
        return 0;
    }
    if rate.price_micro <= 0 {
        return cap;
    }
    let left = i128::from(available - rate.connection_fee_micro.max(0));
    // Billed seconds B are affordable while ceil(B × price / 60) ≤ left,
    // that is B × price ≤ left × 60.
    let affordable = left * 60 / i128::from(rate.price_micro);
    let first = i128::from(rate.first_increment.max(1));
    let next = i128::from(rate.next_increment.max(1));
    let billed = if affordable < first {
        0
    } else {
        first + (affordable - first) / next * next
    };
    let secs = i128::from(rate.free_seconds) + billed;
    u32::try_from(secs.min(i128::from(cap))).unwrap_or(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(price: i64, fee: i64, first: u32, next: u32, free: u32) -> Rate {
        Rate {
            price_micro: price,
            connection_fee_micro: fee,
            first_increment: first,
            next_increment: next,
            free_seconds: free,
        }
    }

    /// max_secs is the last second whose cost fits, when not capped.
    fn check_max(r: &Rate, available: i64) {
        let cap = 1_000_000;
        let m = max_secs(r, available, cap);
        if m > 0 {
            assert!(cost(r, m) <= available, "{r:?} {available}: {m}");
        }
        if m < cap {
            assert!(
                cost(r, m + 1) > available,
                "{r:?} {available}: {m} + 1 fits"
            );
        }
    }

    #[test]
    fn per_started_minute_60_60() {
        let r = rate(100_000, 0, 60, 60, 0); // 0.10 a minute
        assert_eq!(cost(&r, 0), 0, "not answered");
        assert_eq!(cost(&r, 1), 100_000);
        assert_eq!(cost(&r, 60), 100_000);
        assert_eq!(cost(&r, 61), 200_000);
        assert_eq!(cost(&r, 3600), 6_000_000);
        assert_eq!(max_secs(&r, 250_000, 10_000), 120, "two whole minutes");
        assert_eq!(max_secs(&r, 99_999, 10_000), 0, "not a minute");
        check_max(&r, 250_000);
    }

    #[test]
    fn per_second_1_1_rounds_up_to_the_micro_unit() {
        let r = rate(12_300, 0, 1, 1, 0); // 0.0123 a minute
        assert_eq!(cost(&r, 1), 205, "12300 / 60 = 205");
        assert_eq!(cost(&r, 7), 1_435);
        let odd = rate(10_001, 0, 1, 1, 0);
        assert_eq!(cost(&odd, 1), 167, "166.68 rounds up");
        assert_eq!(cost(&odd, 60), 10_001);
        assert_eq!(max_secs(&r, 1_435, 10_000), 7);
        assert_eq!(max_secs(&r, 1_434, 10_000), 6);
        for available in [0, 1, 204, 205, 206, 1_000_000] {
            check_max(&r, available);
            check_max(&odd, available);
        }
    }

    #[test]
    fn thirty_then_six_30_6() {
        let r = rate(60_000, 0, 30, 6, 0); // 0.06 a minute: 1 000 a second
        assert_eq!(cost(&r, 1), 30_000, "the first 30 s whole");
        assert_eq!(cost(&r, 30), 30_000);
        assert_eq!(cost(&r, 31), 36_000, "then per started 6 s");
        assert_eq!(cost(&r, 36), 36_000);
        assert_eq!(cost(&r, 37), 42_000);
        assert_eq!(
            max_secs(&r, 41_999, 10_000),
            36,
            "whole increments, rounded down"
        );
        assert_eq!(max_secs(&r, 29_999, 10_000), 0, "not the first increment");
        for available in [0, 29_999, 30_000, 35_999, 36_000, 1_000_000] {
            check_max(&r, available);
        }
    }

    #[test]
    fn free_seconds_are_not_billed_but_the_fee_is() {
        let r = rate(60_000, 10_000, 30, 6, 5);
        assert_eq!(cost(&r, 3), 10_000, "within the free seconds: the fee only");
        assert_eq!(cost(&r, 5), 10_000);
        assert_eq!(cost(&r, 6), 40_000, "then the first increment");
        assert_eq!(cost(&r, 47), 10_000 + 42_000);
        assert_eq!(
            max_secs(&r, 10_000, 10_000),
            5,
            "the fee buys the free seconds"
        );
        assert_eq!(max_secs(&r, 40_000, 10_000), 35);
        for available in [0, 9_999, 10_000, 39_999, 40_000, 52_000, 1_000_000] {
            check_max(&r, available);
        }
        // The module's worked example.
        let doc = rate(12_300, 10_000, 30, 6, 5);
        assert_eq!(cost(&doc, 47), 18_610);
    }

    #[test]
    fn a_fee_larger_than_the_balance_allows_no_call() {
        let r = rate(1_000, 500_000, 60, 60, 0);
        assert_eq!(max_secs(&r, 499_999, 10_000), 0);
        assert_eq!(max_secs(&r, 500_000, 10_000), 0, "the fee but no minute");
        assert_eq!(max_secs(&r, 501_000, 10_000), 60);
        let free = rate(1_000, 500_000, 60, 60, 10);
        assert_eq!(
            max_secs(&free, 499_999, 10_000),
            0,
            "free seconds need the fee"
        );
        assert_eq!(max_secs(&free, -5, 10_000), 0, "a negative balance");
    }

    #[test]
    fn zero_price_is_capped_only_by_the_limit() {
        let r = rate(0, 0, 60, 60, 0);
        assert_eq!(cost(&r, 100_000), 0);
        assert_eq!(max_secs(&r, 0, 14_400), 14_400);
        assert_eq!(max_secs(&r, -1, 14_400), 0, "never on a negative balance");
        let fee_only = rate(0, 20_000, 1, 1, 0);
        assert_eq!(cost(&fee_only, 3_000), 20_000);
        assert_eq!(max_secs(&fee_only, 20_000, 14_400), 14_400);
        assert_eq!(max_secs(&fee_only, 19_999, 14_400), 0);
    }

    #[test]
    fn the_cap_bounds_long_calls_and_huge_prices_saturate() {
        let r = rate(1, 0, 1, 1, 0);
        assert_eq!(max_secs(&r, i64::MAX, 14_400), 14_400);
        let dear = rate(i64::MAX, i64::MAX, 1, 1, 0);
        assert_eq!(cost(&dear, u32::MAX), i64::MAX);
        assert_eq!(max_secs(&dear, i64::MAX, 14_400), 0);
    }
}
