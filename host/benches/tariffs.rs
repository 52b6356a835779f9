//! Longest-prefix tariff look-up on a 50,000-row tariff (issue 19's goal:
//! at most 2 µs a look-up), and the rating of a call.
//!
//! `cargo bench -p softswitch --bench tariffs`. Criterion reports the time
//! per look-up; the numbers looked up are a mix of ones the tariff prices
//! at various prefix lengths and ones it does not.

use std::hint::black_box;

use criterion::Criterion;
use softswitch::billing::rating::{self, Rate};
use softswitch::billing::tariffs::{TariffRate, TariffSet};

/// A deterministic pseudo-random sequence (no RNG dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// 50,000 rows shaped like a carrier's price list: country codes of 1 to 3
/// digits, each with breakouts 1 to 7 digits longer.
fn rows(n: usize) -> Vec<TariffRate> {
    let mut rng = Lcg(7);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let cc = match rng.next() % 3 {
            0 => format!("{}", 1 + rng.next() % 9),
            1 => format!("{}", 20 + rng.next() % 80),
            _ => format!("{}", 200 + rng.next() % 800),
        };
        let extra = (rng.next() % 8) as usize;
        let mut prefix = cc;
        for _ in 0..extra {
            prefix.push(char::from(b'0' + (rng.next() % 10) as u8));
        }
        if !seen.insert(prefix.clone()) {
            continue;
        }
        out.push(TariffRate {
            tariff: "big".into(),
            prefix,
            description: "breakout".into(),
            country: None,
            currency: "EUR".into(),
            rate: Rate {
                price_micro: 1_000 + (rng.next() % 500_000) as i64,
                connection_fee_micro: 0,
                first_increment: 30,
                next_increment: 6,
                free_seconds: 0,
            },
            sms_price_micro: None,
        });
    }
    out
}

fn numbers(n: usize) -> Vec<String> {
    let mut rng = Lcg(11);
    (0..n)
        .map(|_| {
            // One in eight starts with 0: no row prices it, and a miss
            // probes every prefix length (the slowest case).
            let mut s = if rng.next().is_multiple_of(8) {
                "0".to_string()
            } else {
                format!("{}", 1 + rng.next() % 999)
            };
            while s.len() < 11 {
                s.push(char::from(b'0' + (rng.next() % 10) as u8));
            }
            s
        })
        .collect()
}

fn main() {
    let set = TariffSet::build(1, rows(50_000));
    let numbers = numbers(4096);
    let found = numbers
        .iter()
        .filter(|n| set.lookup("big", n).is_some())
        .count();
    println!(
        "50,000 rows; {found} of {} numbers have a rate",
        numbers.len()
    );
    let mut c = Criterion::default().configure_from_args();
    let mut i = 0usize;
    c.bench_function("tariff lookup, 50k rows", |b| {
        b.iter(|| {
            i = (i + 1) % numbers.len();
            black_box(set.lookup("big", black_box(&numbers[i])))
        })
    });
    let rate = set.lookup("big", &numbers[0]).map_or(
        Rate {
            price_micro: 12_300,
            connection_fee_micro: 0,
            first_increment: 30,
            next_increment: 6,
            free_seconds: 0,
        },
        |r| r.rate,
    );
    c.bench_function("rating: cost and max duration", |b| {
        b.iter(|| {
            black_box(rating::cost(&rate, black_box(187)));
            black_box(rating::max_secs(&rate, black_box(5_000_000), 14_400))
        })
    });
    c.final_summary();
}
