//! The DID pool (SPEC §10): numbers an operator imported, ordered by
//! accounts for a setup fee and a fee per period, renewed from the balance,
//! released back to the pool.
//!
//! A held number is routed by the `dids` table ([`super::calls`]), the one
//! the call path looks inbound carrier calls up in: ordering writes that
//! row and releasing deletes it, in the same transaction as the pool row
//! (and, when money moves, the debit with its `did` ledger row). So a
//! number rings its holder exactly while it is held, and a held number has
//! always been paid for.
//!
//! **Races.** Ordering claims the free row with one conditional statement
//! (`UPDATE ... WHERE number = ? AND login IS NULL`): of two orders of the
//! same number the database lets one match, the other finds it held. A
//! renewal claims its period with `UPDATE ... WHERE paid_until = ?` (the
//! value it read): of several nodes renewing the same number only one
//! moves it, so a period is charged once. As in [`super::billing`], every
//! transaction writes before it reads (SQLite), and rows are locked in the
//! order pool row, account, then `dids`/`ledger` (MariaDB: no deadlock).

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::billing::{BillingError, LedgerEntry, LedgerKind, Movement, debit_on};
use super::error::{Result as StoreResult, StoreError, is_foreign_key_violation, unique_violation};
use super::exchange_rates::in_account_currency;
use super::{Store, now, validate};
use crate::billing::fx::Round;
use crate::billing::money;
use crate::billing::tariffs::{DESCRIPTION_MAX, PRICE_MAX_MICRO};

/// Why a DID operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DidError {
    /// The pool has no such number.
    #[error("number {0} is not in the pool")]
    NotInPool(String),
    /// Another account holds the number (or ordered it a moment before),
    /// or it is routed outside the pool (`did add`).
    #[error("number {0} is taken")]
    Taken(String),
    /// No free number matches (country, the account's currency).
    #[error("no free number matches")]
    NoneFree,
    /// An account holds the number: it cannot leave the pool.
    #[error("number {0} is held by an account")]
    Held(String),
    /// Bad input (an imported row).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Money: no account, insufficient funds, another currency; or the
    /// database failed ([`BillingError::Store`]).
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl From<StoreError> for DidError {
    fn from(e: StoreError) -> Self {
        DidError::Billing(BillingError::Store(e))
    }
}

impl From<sqlx::Error> for DidError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e).into()
    }
}

type Result<T, E = DidError> = std::result::Result<T, E>;

/// A number of the pool as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolNumber {
    /// E.164 digits.
    pub number: String,
    pub country: Option<String>,
    pub description: String,
    pub currency: String,
    pub monthly_fee_micro: i64,
    pub setup_fee_micro: i64,
    /// The holder; `None`: free.
    pub login: Option<String>,
    /// Unix seconds (while held).
    pub ordered_at: Option<i64>,
    /// Unix seconds: paid up to here; the renewal charges the next period.
    pub paid_until: Option<i64>,
    pub created_at: i64,
}

/// A row to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPoolNumber {
    pub number: String,
    pub country: Option<String>,
    pub description: String,
    pub currency: String,
    pub monthly_fee_micro: i64,
    pub setup_fee_micro: i64,
}

impl NewPoolNumber {
    /// Checks every field (what an import refuses).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = &self.number;
        validate::phone(n).map_err(|e| e.to_string())?;
        if let Some(c) = &self.country
            && (c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(format!(
                "number {n}: country {c:?} is not an ISO 3166 alpha-2 code such as PL"
            ));
        }
        if self.description.chars().count() > DESCRIPTION_MAX
            || self.description.chars().any(char::is_control)
        {
            return Err(format!(
                "number {n}: the description has over {DESCRIPTION_MAX} characters or control characters"
            ));
        }
        let Some(currency) = money::currency(&self.currency).filter(|c| c.code == self.currency)
        else {
            return Err(format!(
                "number {n}: currency {:?} is not an ISO 4217 code such as EUR",
                self.currency
            ));
        };
        // Fees are charged as they are: whole minor units, as a payment.
        let minor = 10i64.pow(6 - currency.exponent.min(6));
        for (what, fee) in [
            ("monthly fee", self.monthly_fee_micro),
            ("setup fee", self.setup_fee_micro),
        ] {
            if !(0..=PRICE_MAX_MICRO).contains(&fee) || fee % minor != 0 {
                return Err(format!(
                    "number {n}: the {what} must be 0 to {} in whole minor units of {currency}",
                    money::format_micro(PRICE_MAX_MICRO, 0)
                ));
            }
        }
        Ok(())
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoolImport {
    pub added: usize,
    pub updated: usize,
}

/// An order that went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderedDid {
    pub did: PoolNumber,
    /// Setup fee and the first period.
    pub charged_micro: i64,
    /// The `did` ledger row; none when nothing was charged.
    pub entry: Option<LedgerEntry>,
}

/// A held number whose period ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDid {
    pub number: String,
    pub login: String,
    pub paid_until: i64,
}

/// What a renewal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// The next period is paid (`entry` is none for a fee of 0).
    Renewed {
        paid_until: i64,
        entry: Option<LedgerEntry>,
    },
    /// The balance does not pay it; the number stays until the grace ends.
    Waiting,
    /// The grace ended unpaid: the number is back in the pool, unrouted.
    Released,
    /// Renewed or released meanwhile (by another node, or its holder).
    Skipped,
}

const POOL_COLUMNS: &str = "number, country, description, currency, monthly_fee_micro, \
     setup_fee_micro, login, ordered_at, paid_until, created_at";

fn pool_from_row(row: &AnyRow) -> StoreResult<PoolNumber> {
    Ok(PoolNumber {
        number: row.try_get("number")?,
        country: row.try_get("country")?,
        description: row.try_get("description")?,
        currency: row.try_get("currency")?,
        monthly_fee_micro: row.try_get("monthly_fee_micro")?,
        setup_fee_micro: row.try_get("setup_fee_micro")?,
        login: row.try_get("login")?,
        ordered_at: row.try_get("ordered_at")?,
        paid_until: row.try_get("paid_until")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Most numbers one import may hold.
pub const IMPORT_MAX: usize = 100_000;

/// Frees `number` (held by `login`) and deletes its routing row, on `conn`.
async fn free_on(conn: &mut sqlx::AnyConnection, number: &str, login: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE did_pool SET login = NULL, ordered_at = NULL, paid_until = NULL \
         WHERE number = ? AND login = ?",
    )
    .bind(number)
    .bind(login)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    // Only the holder's row: a number routed by hand to someone else stays.
    sqlx::query("DELETE FROM dids WHERE number = ? AND login = ?")
        .bind(number)
        .bind(login)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

impl Store {
    /// Adds `rows` to the pool; numbers already there get the new country,
    /// description, fees and currency (a held number's next renewal charges
    /// the new monthly fee). A held number cannot change currency: the
    /// import is refused whole. One transaction.
    pub async fn import_did_pool(&self, rows: &[NewPoolNumber]) -> Result<PoolImport> {
        if rows.len() > IMPORT_MAX {
            return Err(DidError::Invalid(format!(
                "at most {IMPORT_MAX} numbers per import"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for r in rows {
            r.validate().map_err(DidError::Invalid)?;
            if !seen.insert(r.number.as_str()) {
                return Err(DidError::Invalid(format!(
                    "number {} is given twice",
                    r.number
                )));
            }
        }
        let created_at = now();
        let mut report = PoolImport {
            added: 0,
            updated: 0,
        };
        let mut tx = self.pool.begin().await?;
        for r in rows {
            let done = sqlx::query(
                "UPDATE did_pool SET country = ?, description = ?, currency = ?, \
                 monthly_fee_micro = ?, setup_fee_micro = ? \
                 WHERE number = ? AND (login IS NULL OR currency = ?)",
            )
            .bind(&r.country)
            .bind(&r.description)
            .bind(&r.currency)
            .bind(r.monthly_fee_micro)
            .bind(r.setup_fee_micro)
            .bind(&r.number)
            .bind(&r.currency)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 {
                report.updated += 1;
                continue;
            }
            let inserted = sqlx::query(&format!(
                "INSERT INTO did_pool ({POOL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)"
            ))
            .bind(&r.number)
            .bind(&r.country)
            .bind(&r.description)
            .bind(&r.currency)
            .bind(r.monthly_fee_micro)
            .bind(r.setup_fee_micro)
            .bind(created_at)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => report.added += 1,
                // There, and the update did not match: held in another currency.
                Err(e) if unique_violation(&e).is_some() => {
                    return Err(DidError::Invalid(format!(
                        "number {} is held by an account: its currency stays",
                        r.number
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// The whole pool (of `country` only, when given), by number.
    pub async fn did_pool(&self, country: Option<&str>) -> StoreResult<Vec<PoolNumber>> {
        let rows = sqlx::query(&format!(
            "SELECT {POOL_COLUMNS} FROM did_pool WHERE (? IS NULL OR country = ?) ORDER BY number"
        ))
        .bind(country)
        .bind(country)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pool_from_row).collect()
    }

    /// One number of the pool.
    pub async fn pool_number(&self, number: &str) -> StoreResult<Option<PoolNumber>> {
        let row = sqlx::query(&format!(
            "SELECT {POOL_COLUMNS} FROM did_pool WHERE number = ?"
        ))
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pool_from_row).transpose()
    }

    /// Up to `limit` free numbers priced in one of `currencies` (of
    /// `country`, when given), by number. Numbers routed outside the pool
    /// are not offered.
    pub async fn free_dids(
        &self,
        currencies: &[String],
        country: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<PoolNumber>> {
        if currencies.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; currencies.len()].join(", ");
        let sql = format!(
            "SELECT {POOL_COLUMNS} FROM did_pool WHERE login IS NULL AND currency IN ({marks}) \
             AND (? IS NULL OR country = ?) \
             AND NOT EXISTS (SELECT 1 FROM dids WHERE dids.number = did_pool.number) \
             ORDER BY number LIMIT ?"
        );
        let mut query = sqlx::query(&sql);
        for c in currencies {
            query = query.bind(c);
        }
        let rows = query
            .bind(country)
            .bind(country)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(pool_from_row).collect()
    }

    /// The numbers `login` holds, by number.
    pub async fn dids_of(&self, login: &str) -> StoreResult<Vec<PoolNumber>> {
        let rows = sqlx::query(&format!(
            "SELECT {POOL_COLUMNS} FROM did_pool WHERE login = ? ORDER BY number"
        ))
        .bind(login)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pool_from_row).collect()
    }

    /// `login` orders `number`, paid until `paid_until`: in one transaction
    /// the free row is claimed, its setup fee and first period debited
    /// with a `did` ledger row, and the number routed to the account.
    /// `Taken` when another account has it (of racing orders one wins),
    /// `NotInPool`, and the money refusals of [`BillingError`] (fees in
    /// another currency are converted at the stored rate, or refused with
    /// `CurrencyMismatch` without one).
    pub async fn order_did(
        &self,
        login: &str,
        number: &str,
        paid_until: i64,
    ) -> Result<OrderedDid> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE did_pool SET login = ?, ordered_at = ?, paid_until = ? \
             WHERE number = ? AND login IS NULL",
        )
        .bind(login)
        .bind(at)
        .bind(paid_until)
        .bind(number)
        .execute(&mut *tx)
        .await;
        let claimed = match claimed {
            Ok(done) => done.rows_affected() > 0,
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(BillingError::NoAccount(login.to_owned()).into());
            }
            Err(e) => return Err(e.into()),
        };
        if !claimed {
            drop(tx);
            return Err(match self.pool_number(number).await? {
                None => DidError::NotInPool(number.to_owned()),
                Some(_) => DidError::Taken(number.to_owned()),
            });
        }
        let row = sqlx::query(&format!(
            "SELECT {POOL_COLUMNS} FROM did_pool WHERE number = ?"
        ))
        .bind(number)
        .fetch_one(&mut *tx)
        .await?;
        let did = pool_from_row(&row)?;
        // Both bounded by PRICE_MAX_MICRO on import: no overflow. A number
        // priced in another currency costs its fees at the rate of the day.
        let fees = did.setup_fee_micro + did.monthly_fee_micro;
        let price = in_account_currency(&mut tx, login, fees, &did.currency, Round::Up).await?;
        let charged = price.micro;
        let entry = if charged > 0 {
            Some(
                debit_on(
                    &mut tx,
                    &Movement {
                        login,
                        kind: LedgerKind::Did,
                        amount_micro: charged,
                        reference: price.reference(Some(number)).as_deref(),
                        actor: Some(login),
                    },
                )
                .await?,
            )
        } else {
            None
        };
        let routed = sqlx::query("INSERT INTO dids (number, login, created_at) VALUES (?, ?, ?)")
            .bind(number)
            .bind(login)
            .bind(at)
            .execute(&mut *tx)
            .await;
        match routed {
            Ok(_) => {}
            // Routed by hand (`did add`) to someone: not for sale.
            Err(e) if unique_violation(&e).is_some() => {
                return Err(DidError::Taken(number.to_owned()));
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(OrderedDid {
            did,
            charged_micro: charged,
            entry,
        })
    }

    /// `login` gives `number` back: free again, no longer routed. Nothing
    /// is refunded. False if `login` does not hold it.
    pub async fn release_did(&self, login: &str, number: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !free_on(&mut tx, number, login).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Takes a free number out of the pool: `Held` if an account holds
    /// it, false if there is no such number.
    pub async fn remove_pool_number(&self, number: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM did_pool WHERE number = ? AND login IS NULL")
            .bind(number)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        match self.pool_number(number).await? {
            Some(_) => Err(DidError::Held(number.to_owned())),
            None => Ok(false),
        }
    }

    /// Up to `limit` held numbers paid until `now` or before, oldest
    /// first, after `after` (the last one of the previous page).
    pub async fn due_dids(
        &self,
        now: i64,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<DueDid>> {
        let (after_until, after_number) = after.unwrap_or((i64::MIN, ""));
        let rows = sqlx::query(
            "SELECT number, login, paid_until FROM did_pool \
             WHERE login IS NOT NULL AND paid_until <= ? \
             AND (paid_until > ? OR (paid_until = ? AND number > ?)) \
             ORDER BY paid_until, number LIMIT ?",
        )
        .bind(now)
        .bind(after_until)
        .bind(after_until)
        .bind(after_number)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDid {
                    number: r.try_get("number")?,
                    login: r.try_get("login")?,
                    paid_until: r.try_get("paid_until")?,
                })
            })
            .collect()
    }

    /// Charges the next period of `due` (`period_secs` from its old end),
    /// with a `did` ledger row, if the balance pays it. If not, the number
    /// waits until `grace_secs` after the old end (a top-up in between
    /// renews it at the next attempt), then goes back to the pool,
    /// unrouted. Only one of several nodes renewing at once charges.
    pub async fn renew_did(
        &self,
        due: &DueDid,
        period_secs: i64,
        grace_secs: i64,
        now: i64,
    ) -> Result<Renewal> {
        let paid_until = due.paid_until.saturating_add(period_secs.max(1));
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE did_pool SET paid_until = ? WHERE number = ? AND login = ? AND paid_until = ?",
        )
        .bind(paid_until)
        .bind(&due.number)
        .bind(&due.login)
        .bind(due.paid_until)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(Renewal::Skipped);
        }
        let routed_to: Option<String> =
            sqlx::query_scalar("SELECT login FROM dids WHERE number = ?")
                .bind(&due.number)
                .fetch_optional(&mut *tx)
                .await?;
        if routed_to.as_deref() != Some(due.login.as_str()) {
            // Its routing was removed by hand (`did del`): the holder no
            // longer gets its calls, so the next period is not charged.
            free_on(&mut tx, &due.number, &due.login).await?;
            tx.commit().await?;
            return Ok(Renewal::Released);
        }
        let row = sqlx::query("SELECT monthly_fee_micro, currency FROM did_pool WHERE number = ?")
            .bind(&due.number)
            .fetch_optional(&mut *tx)
            .await?;
        let fee = match row {
            None => None,
            Some(row) => {
                let fee: i64 = row.try_get("monthly_fee_micro")?;
                let currency: String = row.try_get("currency")?;
                match in_account_currency(&mut tx, &due.login, fee, &currency, Round::Up).await {
                    Ok(fee) => Some(fee),
                    // The account is gone, or its currency changed since
                    // the order to one no rate converts: the fee cannot be
                    // taken from this balance.
                    Err(BillingError::NoAccount(_) | BillingError::CurrencyMismatch { .. }) => None,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let paid = match fee {
            None => None,
            Some(fee) => {
                if fee.micro == 0 {
                    Some(None)
                } else {
                    let reference = fee.reference(Some(&due.number));
                    let m = Movement {
                        login: &due.login,
                        kind: LedgerKind::Did,
                        amount_micro: fee.micro,
                        reference: reference.as_deref(),
                        actor: Some("system"),
                    };
                    match debit_on(&mut tx, &m).await {
                        Ok(entry) => Some(Some(entry)),
                        Err(
                            BillingError::InsufficientFunds { .. } | BillingError::NoAccount(_),
                        ) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        };
        if let Some(entry) = paid {
            tx.commit().await?;
            return Ok(Renewal::Renewed { paid_until, entry });
        }
        if now < due.paid_until.saturating_add(grace_secs) {
            // Rolled back: the period stays unpaid, tried again later.
            drop(tx);
            return Ok(Renewal::Waiting);
        }
        free_on(&mut tx, &due.number, &due.login).await?;
        tx.commit().await?;
        Ok(Renewal::Released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::{checked_balance, money_account, test_store, unique_digits};

    fn number(country: &str, currency: &str, monthly: i64, setup: i64) -> NewPoolNumber {
        NewPoolNumber {
            number: unique_digits(13),
            country: Some(country.into()),
            description: "Warsaw".into(),
            currency: currency.into(),
            monthly_fee_micro: monthly,
            setup_fee_micro: setup,
        }
    }

    const DAY: i64 = 86_400;

    #[tokio::test]
    async fn numbers_are_imported_ordered_listed_and_released() {
        let store = test_store().await;
        let a = number("PL", "EUR", 2_000_000, 500_000);
        let b = number("PL", "USD", 1_000_000, 0);
        let imported = store
            .import_did_pool(&[a.clone(), b.clone()])
            .await
            .unwrap();
        assert_eq!((imported.added, imported.updated), (2, 0));
        // Imported again with a new fee: updated in place.
        let dearer = NewPoolNumber {
            monthly_fee_micro: 3_000_000,
            ..a.clone()
        };
        let imported = store.import_did_pool(&[dearer]).await.unwrap();
        assert_eq!((imported.added, imported.updated), (0, 1));

        let login = money_account(&store, "did", "default", "EUR", 10_000_000).await;
        let free = store
            .free_dids(&["EUR".into()], Some("PL"), 1000)
            .await
            .unwrap();
        assert!(free.iter().any(|d| d.number == a.number));
        assert!(!free.iter().any(|d| d.number == b.number), "USD");

        let paid_until = now() + 30 * DAY;
        let ordered = store
            .order_did(&login, &a.number, paid_until)
            .await
            .unwrap();
        assert_eq!(ordered.charged_micro, 3_500_000);
        let entry = ordered.entry.unwrap();
        assert_eq!(
            (
                entry.kind.as_str(),
                entry.amount_micro,
                entry.reference.as_deref()
            ),
            ("did", -3_500_000, Some(a.number.as_str()))
        );
        assert_eq!(checked_balance(&store, &login).await, 6_500_000);
        assert_eq!(
            store.did_owner(&a.number).await.unwrap().as_deref(),
            Some(login.as_str()),
            "the inbound routing rings the holder"
        );
        let mine = store.dids_of(&login).await.unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].paid_until, Some(paid_until));
        assert!(
            !store
                .free_dids(&["EUR".into()], Some("PL"), 1000)
                .await
                .unwrap()
                .iter()
                .any(|d| d.number == a.number)
        );

        // Refusals: held, not in the pool, another currency, no money.
        let other = money_account(&store, "did", "default", "EUR", 100_000_000).await;
        for (n, want) in [
            (a.number.as_str(), "Taken"),
            ("999", "NotInPool"),
            (b.number.as_str(), "Billing(CurrencyMismatch"),
        ] {
            let err = store.order_did(&other, n, paid_until).await.unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{n}: {err:?}");
        }
        let poor = money_account(&store, "did", "default", "USD", 999_999).await;
        assert!(matches!(
            store.order_did(&poor, &b.number, paid_until).await,
            Err(DidError::Billing(BillingError::InsufficientFunds {
                available_micro: 999_999
            }))
        ));
        assert_eq!(
            store.pool_number(&b.number).await.unwrap().unwrap().login,
            None,
            "a refused order leaves the number free"
        );
        assert_eq!(store.did_owner(&b.number).await.unwrap(), None);
        // A held number keeps its currency on import; the pool keeps it.
        let usd = NewPoolNumber {
            currency: "USD".into(),
            ..a.clone()
        };
        assert!(matches!(
            store.import_did_pool(&[usd]).await,
            Err(DidError::Invalid(_))
        ));
        assert!(matches!(
            store.remove_pool_number(&a.number).await,
            Err(DidError::Held(_))
        ));

        // Released: free again, unrouted, nothing refunded.
        assert!(!store.release_did(&other, &a.number).await.unwrap());
        assert!(store.release_did(&login, &a.number).await.unwrap());
        assert_eq!(store.did_owner(&a.number).await.unwrap(), None);
        assert!(store.dids_of(&login).await.unwrap().is_empty());
        assert_eq!(checked_balance(&store, &login).await, 6_500_000);
        assert!(store.remove_pool_number(&a.number).await.unwrap());
        assert!(!store.remove_pool_number(&a.number).await.unwrap());
        assert!(store.remove_pool_number(&b.number).await.unwrap());

        // A number routed by hand is neither offered nor sold.
        let c = number("PL", "EUR", 0, 0);
        store
            .import_did_pool(std::slice::from_ref(&c))
            .await
            .unwrap();
        store.add_did(&c.number, &login).await.unwrap();
        assert!(
            !store
                .free_dids(&["EUR".into()], None, 100_000)
                .await
                .unwrap()
                .iter()
                .any(|d| d.number == c.number)
        );
        assert!(matches!(
            store.order_did(&other, &c.number, paid_until).await,
            Err(DidError::Taken(_))
        ));
        assert_eq!(
            store.did_owner(&c.number).await.unwrap().as_deref(),
            Some(login.as_str())
        );
        store.delete_did(&c.number).await.unwrap();
        // Free of charge: no ledger row.
        let free = store
            .order_did(&other, &c.number, paid_until)
            .await
            .unwrap();
        assert_eq!((free.charged_micro, free.entry), (0, None));
        // A deleted account's numbers go back to the pool.
        store.delete_account(&other).await.unwrap();
        assert_eq!(
            store.pool_number(&c.number).await.unwrap().unwrap().login,
            None
        );
        assert_eq!(store.did_owner(&c.number).await.unwrap(), None);
        store.remove_pool_number(&c.number).await.unwrap();

        // Bad rows are refused whole.
        for bad in [
            NewPoolNumber {
                number: "+48".into(),
                ..number("PL", "EUR", 0, 0)
            },
            number("POL", "EUR", 0, 0),
            number("PL", "EURO", 0, 0),
            number("PL", "EUR", -1, 0),
            number("PL", "EUR", 1_000_001, 1),
            number("PL", "EUR", 10_001_000_000, 0),
        ] {
            assert!(
                matches!(
                    store.import_did_pool(std::slice::from_ref(&bad)).await,
                    Err(DidError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        let twice = number("PL", "EUR", 0, 0);
        assert!(matches!(
            store.import_did_pool(&[twice.clone(), twice.clone()]).await,
            Err(DidError::Invalid(_))
        ));
        assert_eq!(store.pool_number(&twice.number).await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn of_ten_accounts_ordering_one_number_exactly_one_wins() {
        let store = test_store().await;
        let n = number("DE", "EUR", 1_000_000, 1_000_000);
        store
            .import_did_pool(std::slice::from_ref(&n))
            .await
            .unwrap();
        let mut logins = Vec::new();
        for _ in 0..10 {
            logins.push(money_account(&store, "did", "default", "EUR", 5_000_000).await);
        }
        let tasks: Vec<_> = logins
            .iter()
            .map(|login| {
                let (store, login, number) = (store.store.clone(), login.clone(), n.number.clone());
                tokio::spawn(
                    async move { store.order_did(&login, &number, now() + 30 * DAY).await },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for (t, login) in tasks.into_iter().zip(&logins) {
            match t.await.unwrap() {
                Ok(o) => {
                    assert_eq!(o.charged_micro, 2_000_000);
                    winners.push(login.clone());
                }
                Err(DidError::Taken(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let mut total = 0;
        for login in &logins {
            total += checked_balance(&store, login).await;
        }
        assert_eq!(total, 10 * 5_000_000 - 2_000_000, "charged once");
        assert_eq!(
            store.did_owner(&n.number).await.unwrap().as_deref(),
            Some(winners[0].as_str())
        );
        assert!(store.release_did(&winners[0], &n.number).await.unwrap());
        store.remove_pool_number(&n.number).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn renewals_charge_each_period_once_and_release_unpaid_numbers_after_the_grace() {
        let store = test_store().await;
        let n = number("PL", "EUR", 2_000_000, 0);
        store
            .import_did_pool(std::slice::from_ref(&n))
            .await
            .unwrap();
        // Pays the first month and one renewal, not a second.
        let login = money_account(&store, "did", "default", "EUR", 5_000_000).await;
        let start = now();
        store
            .order_did(&login, &n.number, start + 30 * DAY)
            .await
            .unwrap();
        let due_at = |t: i64| {
            let store = store.store.clone();
            let number = n.number.clone();
            async move {
                store
                    .due_dids(t, None, 100_000)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|d| d.number == number)
            }
        };
        assert_eq!(due_at(start + 30 * DAY - 1).await, None, "not due yet");
        let due = due_at(start + 30 * DAY).await.unwrap();
        assert_eq!(due.login, login);

        // Several nodes renewing at once: one charges.
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let (store, due) = (store.store.clone(), due.clone());
                tokio::spawn(async move {
                    store
                        .renew_did(&due, 30 * DAY, 3 * DAY, due.paid_until)
                        .await
                })
            })
            .collect();
        let mut renewed = 0;
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Renewal::Renewed { paid_until, entry } => {
                    assert_eq!(paid_until, start + 60 * DAY);
                    assert_eq!(entry.unwrap().amount_micro, -2_000_000);
                    renewed += 1;
                }
                Renewal::Skipped => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(renewed, 1);
        assert_eq!(checked_balance(&store, &login).await, 1_000_000);
        assert_eq!(
            store.dids_of(&login).await.unwrap()[0].paid_until,
            Some(start + 60 * DAY)
        );

        // The next period is not paid: it waits out the grace, still routed.
        let due = due_at(start + 60 * DAY).await.unwrap();
        assert_eq!(
            store
                .renew_did(&due, 30 * DAY, 3 * DAY, start + 61 * DAY)
                .await
                .unwrap(),
            Renewal::Waiting
        );
        assert_eq!(
            store.did_owner(&n.number).await.unwrap().as_deref(),
            Some(login.as_str())
        );
        assert_eq!(
            checked_balance(&store, &login).await,
            1_000_000,
            "nothing taken"
        );
        // A top-up within the grace: renewed from the old end, no free days.
        store
            .credit(
                &Movement {
                    login: &login,
                    kind: LedgerKind::Topup,
                    amount_micro: 1_000_000,
                    reference: None,
                    actor: None,
                },
                None,
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .renew_did(&due, 30 * DAY, 3 * DAY, start + 62 * DAY)
                .await
                .unwrap(),
            Renewal::Renewed { paid_until, .. } if paid_until == start + 90 * DAY
        ));
        assert_eq!(checked_balance(&store, &login).await, 0);

        // Unpaid past the grace: released, unrouted, free again.
        let due = due_at(start + 90 * DAY).await.unwrap();
        assert_eq!(
            store
                .renew_did(&due, 30 * DAY, 3 * DAY, start + 93 * DAY)
                .await
                .unwrap(),
            Renewal::Released
        );
        assert_eq!(store.did_owner(&n.number).await.unwrap(), None);
        assert!(store.dids_of(&login).await.unwrap().is_empty());
        assert_eq!(due_at(start + 1000 * DAY).await, None);
        assert_eq!(
            store
                .renew_did(&due, 30 * DAY, 0, start + 93 * DAY)
                .await
                .unwrap(),
            Renewal::Skipped,
            "released already"
        );
        assert_eq!(checked_balance(&store, &login).await, 0);

        // Unrouted by hand (`did del`): released at its end, not charged.
        store
            .credit(
                &Movement {
                    login: &login,
                    kind: LedgerKind::Topup,
                    amount_micro: 5_000_000,
                    reference: None,
                    actor: None,
                },
                None,
            )
            .await
            .unwrap();
        store
            .order_did(&login, &n.number, start + 30 * DAY)
            .await
            .unwrap();
        assert!(store.delete_did(&n.number).await.unwrap());
        let due = due_at(start + 30 * DAY).await.unwrap();
        assert_eq!(
            store
                .renew_did(&due, 30 * DAY, 3 * DAY, start + 30 * DAY)
                .await
                .unwrap(),
            Renewal::Released
        );
        assert!(store.dids_of(&login).await.unwrap().is_empty());
        assert_eq!(checked_balance(&store, &login).await, 3_000_000);
        store.remove_pool_number(&n.number).await.unwrap();
    }
}
