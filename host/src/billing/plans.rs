//! Plans: bundles of call seconds to some prefixes, bought from the balance
//! and consumed by prepaid calls before it (SPEC §10).
//!
//! An operator keeps a catalogue of [`Plan`]s (price, currency, seconds per
//! period, the prefixes they cover, validity, renewal). A user buys one with
//! a `plan` ledger row; the terms are copied into an [`AccountPlan`], so a
//! later change of the catalogue applies to new purchases only.
//!
//! **Calls.** [`crate::billing::Billing::authorize`] takes the account's
//! active plan that covers the dialled number (the one expiring first) and
//! reserves its seconds beside the money reservation: the call may last the
//! plan's seconds plus what the balance pays after them. At the end the
//! answered seconds come off the plan first, per second; only the remainder
//! is charged to the balance, rated like a call of its own **without** the
//! tariff's free seconds (the plan already paid the start of the call) and
//! **with** its connection fee. A call that stays within the plan's
//! seconds costs nothing: no fee, no `call` ledger row, a call record
//! with cost 0. The tariff still has to price the number: a plan pays for
//! calls, it does not open destinations.
//!
//! **Periods.** A plan with `validity_days` ends that many days after it was
//! bought; a recurring one is then renewed — debited again (a `plan` row),
//! its seconds reset to a full period (unused ones are lost) — when the
//! balance pays, and ends otherwise. A plan without validity never expires.

use serde::Serialize;

use super::tariffs::validate_prefix;

/// Longest plan name.
pub const NAME_MAX: usize = 64;
/// Most prefixes one plan covers.
pub const PREFIXES_MAX: usize = 30;
/// Longest description.
pub const DESCRIPTION_MAX: usize = 255;
/// Most seconds a period holds: a month of talk.
pub const SECONDS_MAX: u32 = 31 * 86_400;
/// Longest period: ten years.
pub const VALIDITY_DAYS_MAX: u32 = 3_650;

/// A plan of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub name: String,
    pub description: String,
    /// Per purchase and per renewal.
    pub price_micro: i64,
    /// ISO 4217; accounts of another currency pay the price converted at
    /// the exchange rate ([`super::fx`]), or cannot buy it without one.
    pub currency: String,
    /// Call seconds per period.
    pub seconds: u32,
    /// Digit prefixes the seconds cover; empty: every number.
    pub prefixes: Vec<String>,
    /// Days a period lasts; 0: the seconds never expire.
    pub validity_days: u32,
    /// Renewed at the end of each period while the balance pays.
    pub recurring: bool,
    /// Offered to users (a plan withdrawn from sale runs on where bought).
    pub for_sale: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// A plan an account bought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountPlan {
    pub id: i64,
    pub login: String,
    /// The catalogue name it was bought as.
    pub plan: String,
    pub price_micro: i64,
    pub currency: String,
    /// Seconds of a full period.
    pub period_secs: u32,
    /// Left in this period, including those calls in progress hold.
    pub seconds_left: u32,
    /// Held by calls in progress.
    pub reserved_secs: u32,
    pub prefixes: Vec<String>,
    pub validity_days: u32,
    pub recurring: bool,
    /// `active`, `expired` or `cancelled`.
    pub status: String,
    pub bought_at: i64,
    /// End of the current period; `None`: never.
    pub expires_at: Option<i64>,
}

impl AccountPlan {
    /// Whether its seconds pay for calls to `digits`.
    pub fn covers(&self, digits: &str) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| digits.starts_with(p.as_str()))
    }

    /// Seconds a new call may take now.
    pub fn usable_secs(&self, now: i64) -> u32 {
        if self.status != "active" || self.expires_at.is_some_and(|e| e <= now) {
            return 0;
        }
        self.seconds_left.saturating_sub(self.reserved_secs)
    }
}

/// The plan seconds an authorised call holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlanHold {
    pub account_plan_id: i64,
    pub secs: u32,
}

/// What a call did with the plan seconds it held: `used_secs` (at most
/// `hold.secs`) come off the plan, the rest is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlanUse {
    pub hold: PlanHold,
    pub used_secs: u32,
}

/// Checks a plan name: it appears in URLs, so 1 to 64 letters, digits,
/// `.`, `_` and `-`; `mine` is taken by the client API's own plans.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > NAME_MAX
        || name == "mine"
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "plan name {name:?}: 1 to {NAME_MAX} letters, digits, '.', '_' or '-' (not \"mine\")"
        ));
    }
    Ok(())
}

impl Plan {
    /// Checks the terms (the currency is checked where it is parsed).
    pub fn validate(&self) -> Result<(), String> {
        validate_name(&self.name)?;
        if self.description.chars().count() > DESCRIPTION_MAX
            || self.description.chars().any(char::is_control)
        {
            return Err(format!(
                "description: at most {DESCRIPTION_MAX} characters, no control characters"
            ));
        }
        if self.price_micro <= 0 || self.price_micro > super::money::MAX_OPERATION_MICRO {
            return Err("price: positive, at most 1000000".into());
        }
        if !(1..=SECONDS_MAX).contains(&self.seconds) {
            return Err(format!("seconds: 1 to {SECONDS_MAX}"));
        }
        if self.prefixes.len() > PREFIXES_MAX {
            return Err(format!("at most {PREFIXES_MAX} prefixes"));
        }
        for p in &self.prefixes {
            validate_prefix(p)?;
        }
        if self.validity_days > VALIDITY_DAYS_MAX {
            return Err(format!("validity_days: 0 to {VALIDITY_DAYS_MAX}"));
        }
        if self.recurring && self.validity_days == 0 {
            return Err("a recurring plan needs validity_days (its period)".into());
        }
        Ok(())
    }
}

/// Prefixes as stored: comma-separated.
pub fn join_prefixes(prefixes: &[String]) -> String {
    prefixes.join(",")
}

/// Prefixes from their stored form.
pub fn split_prefixes(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            name: "pl-100".into(),
            description: "100 minutes to Poland".into(),
            price_micro: 5_000_000,
            currency: "EUR".into(),
            seconds: 6_000,
            prefixes: vec!["48".into()],
            validity_days: 30,
            recurring: true,
            for_sale: true,
            created_at: 0,
        }
    }

    #[test]
    fn terms_are_checked() {
        assert_eq!(plan().validate(), Ok(()));
        for bad in [
            Plan {
                name: "mine".into(),
                ..plan()
            },
            Plan {
                name: "a/b".into(),
                ..plan()
            },
            Plan {
                price_micro: 0,
                ..plan()
            },
            Plan {
                seconds: 0,
                ..plan()
            },
            Plan {
                prefixes: vec!["+48".into()],
                ..plan()
            },
            Plan {
                validity_days: 0,
                ..plan()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes_cover_numbers_and_round_trip() {
        let stored = join_prefixes(&["48".into(), "4420".into()]);
        assert_eq!(stored, "48,4420");
        let mut held = AccountPlan {
            id: 1,
            login: "a".into(),
            plan: "p".into(),
            price_micro: 1,
            currency: "EUR".into(),
            period_secs: 100,
            seconds_left: 100,
            reserved_secs: 40,
            prefixes: split_prefixes(&stored),
            validity_days: 0,
            recurring: false,
            status: "active".into(),
            bought_at: 0,
            expires_at: Some(50),
        };
        assert!(held.covers("48600100200") && held.covers("442071234567"));
        assert!(!held.covers("4410"));
        assert_eq!(held.usable_secs(49), 60);
        assert_eq!(held.usable_secs(50), 0, "expired");
        held.prefixes = split_prefixes("");
        assert!(held.covers("1"), "no prefixes: every number");
    }
}
