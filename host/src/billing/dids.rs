//! DIDs for sale (SPEC §10): the pool's CSV form, ordering a number, and
//! the renewal that charges each period. The tables and their transactions
//! are in [`crate::store::did_pool`].
//!
//! - **Order**: the setup fee and the first period are debited (one `did`
//!   ledger row) in the transaction that claims the number and routes it to
//!   the account through the `dids` table, so inbound carrier calls to it
//!   ring the account at once. A period is `billing.did_period_days` (30)
//!   days from the order, whatever the month.
//! - **Renewal**: every minute each node looks for held numbers whose
//!   period ended and charges the next one (period after period, from the
//!   old end: a late renewal gains no free days). If the balance does not
//!   pay it, the number keeps ringing for `billing.did_grace_days` (3) more
//!   days, tried again every minute (a top-up renews it); then it goes back
//!   to the pool and stops ringing. 0 days: released at once.
//!   A number whose routing row was deleted by hand (`did del`) is
//!   released at its renewal, not charged.
//! - **Release** by the holder: back to the pool at once, no refund of the
//!   period under way.

use std::sync::Arc;
use std::time::Duration;

use super::fx::Round;
use super::money::{self, parse_micro};
use super::tariffs::CsvTable;
use super::{Billing, number_digits};
use crate::store::StoreError;
use crate::store::billing::BillingError;
use crate::store::did_pool::{DidError, NewPoolNumber, OrderedDid, PoolNumber, Renewal};

/// The columns of a pool CSV file.
pub const CSV_HEADER: &str = "number,country,description,monthly_fee,setup_fee,currency";

/// How often each node looks for numbers to renew.
const RENEW_EVERY: Duration = Duration::from_secs(60);
/// Due numbers read per query.
const RENEW_PAGE: i64 = 200;
/// Free numbers an order "of a country" tries.
const CANDIDATES: i64 = 50;

/// Parses a pool CSV file. The first line names the columns (any order):
/// `number`, `monthly_fee` and `currency` are required; `country`,
/// `description` and `setup_fee` (0) are optional. Numbers are E.164 (`+`,
/// spaces and dashes dropped); fees are decimal strings in whole minor
/// units of the row's currency (`1.99`). A bad value, an unknown column, a
/// number given twice: an error naming the line, and nothing is imported.
pub fn parse_pool_csv(text: &str) -> Result<Vec<NewPoolNumber>, String> {
    let table = CsvTable::parse(text, CSV_HEADER, &["number", "monthly_fee", "currency"])?;
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for record in table.records() {
        let at = |e: String| record.at(e);
        let get = |c: &str| record.get(c);
        let number = number_digits(get("number"))
            .ok_or_else(|| at(format!("number {:?} is not a phone number", get("number"))))?;
        let currency = money::currency(get("currency")).ok_or_else(|| {
            at(format!(
                "currency {:?} is not an ISO 4217 code such as EUR",
                get("currency")
            ))
        })?;
        let fee = |c: &str| -> Result<i64, String> {
            match get(c) {
                "" if c == "setup_fee" => Ok(0),
                text => parse_micro(text, currency.exponent).map_err(|e| at(format!("{c}: {e}"))),
            }
        };
        let row = NewPoolNumber {
            number,
            country: Some(get("country").to_ascii_uppercase()).filter(|c| !c.is_empty()),
            description: get("description").to_owned(),
            currency: currency.code.to_owned(),
            monthly_fee_micro: fee("monthly_fee")?,
            setup_fee_micro: fee("setup_fee")?,
        };
        row.validate().map_err(at)?;
        if !seen.insert(row.number.clone()) {
            return Err(at(format!("number {} is given twice", row.number)));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Which number an order takes.
#[derive(Debug, Clone, Copy)]
pub enum DidChoice<'a> {
    /// This one (E.164 digits).
    Number(&'a str),
    /// Any free one of this country (ISO 3166 alpha-2, upper case) the
    /// account can pay (its currency, or one with an exchange rate to it),
    /// the cheapest in the account's currency first.
    Country(&'a str),
}

/// What one renewal pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DidRenewals {
    pub renewed: u64,
    pub waiting: u64,
    pub released: u64,
}

impl Billing {
    /// `billing.did_period_days` in seconds (at least a day).
    pub fn did_period_secs(&self) -> i64 {
        i64::from(self.config.did_period_days.max(1)) * 86_400
    }

    fn did_grace_secs(&self) -> i64 {
        i64::from(self.config.did_grace_days) * 86_400
    }

    /// `login` orders a number, paying its setup fee and first period (see
    /// the module documentation).
    pub async fn order_did(
        &self,
        login: &str,
        choice: DidChoice<'_>,
    ) -> Result<OrderedDid, DidError> {
        let paid_until = crate::store::now_secs() + self.did_period_secs();
        let country = match choice {
            DidChoice::Number(number) => {
                return self.store.order_did(login, number, paid_until).await;
            }
            DidChoice::Country(country) => country,
        };
        let account = self
            .store
            .account_money(login)
            .await?
            .ok_or_else(|| BillingError::NoAccount(login.to_owned()))?;
        let fx = self.store.fx_table().await?;
        let currencies = fx.convertible_to(&account.currency);
        // What the order would charge; the order itself converts again, at
        // the rate of its transaction.
        let price = |d: &PoolNumber| {
            fx.convert(
                d.setup_fee_micro + d.monthly_fee_micro,
                &d.currency,
                &account.currency,
                Round::Up,
            )
            .unwrap_or(i64::MAX)
        };
        // Others may take the candidates first: a few rounds.
        for _ in 0..3 {
            let mut candidates = self
                .store
                .free_dids(&currencies, Some(country), CANDIDATES)
                .await?;
            if candidates.is_empty() {
                break;
            }
            // Random among equals, so concurrent orders rarely collide.
            let start = rand::random_range(0..candidates.len());
            candidates.rotate_left(start);
            candidates.sort_by_key(price);
            for d in candidates {
                match self.store.order_did(login, &d.number, paid_until).await {
                    Err(DidError::Taken(_) | DidError::NotInPool(_)) => continue,
                    // The cheapest is unaffordable: all are.
                    other => return other,
                }
            }
        }
        Err(DidError::NoneFree)
    }

    /// Renews or releases every held number whose period ended by `now`.
    pub async fn renew_dids(&self, now: i64) -> Result<DidRenewals, StoreError> {
        let (period, grace) = (self.did_period_secs(), self.did_grace_secs());
        let mut done = DidRenewals::default();
        let mut after: Option<(i64, String)> = None;
        loop {
            let page = self
                .store
                .due_dids(
                    now,
                    after.as_ref().map(|(t, n)| (*t, n.as_str())),
                    RENEW_PAGE,
                )
                .await?;
            for due in &page {
                match self.store.renew_did(due, period, grace, now).await {
                    Ok(Renewal::Renewed { .. }) => done.renewed += 1,
                    Ok(Renewal::Waiting) => done.waiting += 1,
                    Ok(Renewal::Released) => {
                        tracing::info!(number = %due.number, login = %due.login, "DID released: its period was not paid");
                        done.released += 1;
                    }
                    Ok(Renewal::Skipped) => {}
                    Err(DidError::Billing(BillingError::Store(e))) => return Err(e),
                    Err(e) => {
                        tracing::warn!(number = %due.number, error = %e, "DID renewal failed");
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == RENEW_PAGE => {
                    after = Some((last.paid_until, last.number.clone()));
                }
                _ => return Ok(done),
            }
        }
    }

    /// Runs [`Billing::renew_dids`] every minute for as long as the switch
    /// runs (every node does; a period is charged once whoever gets it).
    pub fn spawn_did_renewal(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let billing = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(billing) = billing.upgrade() else {
                    return;
                };
                match billing.renew_dids(crate::store::now_secs()).await {
                    Ok(done) if done != DidRenewals::default() => tracing::info!(
                        renewed = done.renewed,
                        waiting = done.waiting,
                        released = done.released,
                        "DID renewals"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "DID renewal pass failed"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::BillingConfig;
    use crate::store::accounts::{AccountTemplate, NewAccount};
    use crate::store::testutil::{test_store, unique, unique_digits};

    #[tokio::test(flavor = "multi_thread")]
    async fn an_order_by_country_takes_the_cheapest_and_the_pass_renews_what_is_due() {
        let store = test_store().await;
        let billing = Billing::new(
            store.store.clone(),
            BillingConfig {
                did_period_days: 30,
                did_grace_days: 0,
                ..Default::default()
            },
        );
        // A country no other test uses (the MariaDB database is shared).
        let country = "QZ";
        let row = |monthly_fee_micro| NewPoolNumber {
            number: unique_digits(14),
            country: Some(country.into()),
            description: String::new(),
            currency: "EUR".into(),
            monthly_fee_micro,
            setup_fee_micro: 0,
        };
        let (dear, cheap, cheaper) = (row(3_000_000), row(2_000_000), row(1_000_000));
        store
            .import_did_pool(&[dear.clone(), cheap.clone(), cheaper.clone()])
            .await
            .unwrap();
        let login = unique("didc");
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "pw".into(),
                template: AccountTemplate {
                    currency: "EUR".into(),
                    balance_micro: 4_500_000,
                    ..Default::default()
                },
                ..Default::default()
            })
            .await
            .unwrap();
        let first = billing
            .order_did(&login, DidChoice::Country(country))
            .await
            .unwrap();
        assert_eq!(first.did.number, cheaper.number);
        let second = billing
            .order_did(&login, DidChoice::Country(country))
            .await
            .unwrap();
        assert_eq!(second.did.number, cheap.number);
        // 1.50 left: the dear one is not affordable.
        assert!(matches!(
            billing.order_did(&login, DidChoice::Country(country)).await,
            Err(DidError::Billing(BillingError::InsufficientFunds { .. }))
        ));
        assert!(matches!(
            billing.order_did(&login, DidChoice::Country("QY")).await,
            Err(DidError::NoneFree)
        ));
        assert_eq!(
            first.did.paid_until,
            Some(first.did.ordered_at.unwrap() + 30 * 86_400)
        );

        // Both periods end now: the pass renews the cheaper one (1.00 of
        // the 1.50) and, no grace, releases the other.
        sqlx::query("UPDATE did_pool SET paid_until = ? WHERE login = ?")
            .bind(crate::store::now_secs() - 1)
            .bind(&login)
            .execute(store.pool())
            .await
            .unwrap();
        let done = billing.renew_dids(crate::store::now_secs()).await.unwrap();
        assert!(done.renewed >= 1 && done.released >= 1, "{done:?}");
        let mine = store.dids_of(&login).await.unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].number, cheaper.number);
        assert_eq!(store.did_owner(&cheap.number).await.unwrap(), None);
        let money = store.account_money(&login).await.unwrap().unwrap();
        assert_eq!(money.balance_micro, 500_000);
        assert_eq!(store.ledger_total(&login).await.unwrap(), 500_000);

        store.delete_account(&login).await.unwrap();
        for n in [&dear, &cheap, &cheaper] {
            store.remove_pool_number(&n.number).await.unwrap();
        }
    }

    #[test]
    fn a_pool_file_parses_exactly() {
        let rows = parse_pool_csv(
            "\u{feff}number,country,description,monthly_fee,setup_fee,currency\n\
             # a comment\n\
             +48 22 555 0100,pl,\"Warsaw, centre\",1.99,5,eur\n\
             12125550100,,,0.5,,USD\n",
        )
        .unwrap();
        assert_eq!(
            rows,
            [
                NewPoolNumber {
                    number: "48225550100".into(),
                    country: Some("PL".into()),
                    description: "Warsaw, centre".into(),
                    currency: "EUR".into(),
                    monthly_fee_micro: 1_990_000,
                    setup_fee_micro: 5_000_000,
                },
                NewPoolNumber {
                    number: "12125550100".into(),
                    country: None,
                    description: String::new(),
                    currency: "USD".into(),
                    monthly_fee_micro: 500_000,
                    setup_fee_micro: 0,
                },
            ]
        );
        // Columns in any order; only the required ones.
        let rows = parse_pool_csv("currency,monthly_fee,number\nJPY,500,81312345678\n").unwrap();
        assert_eq!(rows[0].monthly_fee_micro, 500_000_000);
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let head = "number,country,description,monthly_fee,setup_fee,currency\n";
        for (body, want) in [
            (
                "4822,PL,,1,,EUR\n4822,PL,,1,,EUR\n",
                "line 3: number 4822 is given twice",
            ),
            ("4822,PL,,1.999,,EUR\n", "line 2: monthly_fee"),
            ("4822,PL,,1,x,EUR\n", "line 2: setup_fee"),
            ("4822,PL,,,,EUR\n", "line 2: monthly_fee"),
            ("4822,POL,,1,,EUR\n", "line 2: number 4822: country"),
            ("4822,PL,,1,,EURO\n", "line 2: currency"),
            ("abc,PL,,1,,EUR\n", "line 2: number \"abc\""),
            ("1234567890123456,PL,,1,,EUR\n", "line 2:"),
            ("4822,PL,,-1,,EUR\n", "line 2: number 4822: the monthly fee"),
            ("4822,PL,,1,,EUR,x\n", "line 2: 7 fields"),
            ("4822,PL,\"open,1,,EUR\n", "line 2: a quoted field"),
        ] {
            let err = parse_pool_csv(&format!("{head}{body}")).unwrap_err();
            assert!(err.starts_with(want), "{body}: {err}");
        }
        for (file, want) in [
            ("", "no header"),
            ("number,currency\n", "column \"monthly_fee\" is missing"),
            ("number,monthly_fee,currency,price\n", "unknown column"),
            (
                "number,number,monthly_fee,currency\n",
                "column \"number\" is given twice",
            ),
        ] {
            let err = parse_pool_csv(file).unwrap_err();
            assert!(err.starts_with(want), "{file}: {err}");
        }
    }
}
