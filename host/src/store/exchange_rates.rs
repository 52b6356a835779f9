//! The `exchange_rates` table (see [`crate::billing::fx`]): set, listed and
//! deleted by the operator; read whole (it holds a few pairs) by the
//! billing tables' reload and inside the money transactions that convert.

use sqlx::{AnyConnection, Row};

use super::billing::{BillingError, bump_tariff_version};
use super::error::{Result as StoreResult, StoreError};
use super::{Store, now};
use crate::billing::fx::{ExchangeRate, FxTable, MAX_RATE_NANO, Round, format_rate};
use crate::billing::money::{currency, format_in};

/// The currency code `code` names, upper case, if it is ISO 4217.
fn iso(code: &str) -> StoreResult<&'static str> {
    currency(code).map(|c| c.code).ok_or_else(|| {
        StoreError::Invalid(format!(
            "{code:?} is not an ISO 4217 currency code such as EUR"
        ))
    })
}

/// Every rate, on `conn` (inside the caller's transaction when it converts).
pub(super) async fn fx_on(conn: &mut AnyConnection) -> StoreResult<FxTable> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT base, quote, rate_nano FROM exchange_rates")
            .fetch_all(&mut *conn)
            .await?;
    Ok(FxTable::new(rows))
}

/// An amount converted into an account's currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InAccountCurrency {
    pub micro: i64,
    /// What was converted (`"10.00 USD"`), for the ledger row's reference;
    /// `None` when nothing was.
    pub from: Option<String>,
}

impl InAccountCurrency {
    /// `reference` with the conversion noted after it.
    pub fn reference(&self, reference: Option<&str>) -> Option<String> {
        match (&self.from, reference) {
            (None, r) => r.map(str::to_owned),
            (Some(from), None) => Some(format!("from {from}")),
            (Some(from), Some(r)) => Some(format!("{r} (from {from})")),
        }
    }
}

/// `micro` of `code` in `login`'s currency, on `conn` (the caller's
/// transaction, so the rate and the money change agree). `NoAccount`, or
/// `CurrencyMismatch` when no rate converts the pair.
pub(super) async fn in_account_currency(
    conn: &mut AnyConnection,
    login: &str,
    micro: i64,
    code: &str,
    round: Round,
) -> Result<InAccountCurrency, BillingError> {
    let account: String = sqlx::query_scalar("SELECT currency FROM accounts WHERE login = ?")
        .bind(login)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| BillingError::NoAccount(login.to_owned()))?;
    if account == code {
        return Ok(InAccountCurrency { micro, from: None });
    }
    let converted = fx_on(conn)
        .await?
        .convert(micro, code, &account, round)
        .ok_or_else(|| BillingError::CurrencyMismatch {
            account: account.clone(),
            other: code.to_owned(),
        })?;
    Ok(InAccountCurrency {
        micro: converted,
        from: Some(format!("{} {code}", format_in(micro, code))),
    })
}

/// Deletes the rate between `a` and `b`, set either way; whether there was one.
async fn delete_pair(conn: &mut AnyConnection, a: &str, b: &str) -> StoreResult<bool> {
    let done = sqlx::query(
        "DELETE FROM exchange_rates WHERE (base = ? AND quote = ?) OR (base = ? AND quote = ?)",
    )
    .bind(a)
    .bind(b)
    .bind(b)
    .bind(a)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

impl Store {
    /// Sets 1 `base` = `rate_nano` / 10^9 `quote`, replacing the pair in
    /// either direction; every node reloads it with the tariffs.
    pub async fn set_exchange_rate(
        &self,
        base: &str,
        quote: &str,
        rate_nano: i64,
    ) -> StoreResult<ExchangeRate> {
        let (base, quote) = (iso(base)?, iso(quote)?);
        if base == quote {
            return Err(StoreError::Invalid(format!(
                "{base} to {base}: a rate converts between two currencies"
            )));
        }
        if !(1..=MAX_RATE_NANO).contains(&rate_nano) {
            return Err(StoreError::Invalid(format!(
                "rate {rate_nano} nano: above 0 and at most {MAX_RATE_NANO}"
            )));
        }
        let updated_at = now();
        let mut tx = self.pool.begin().await?;
        delete_pair(&mut tx, base, quote).await?;
        sqlx::query(
            "INSERT INTO exchange_rates (base, quote, rate_nano, updated_at) VALUES (?, ?, ?, ?)",
        )
        .bind(base)
        .bind(quote)
        .bind(rate_nano)
        .bind(updated_at)
        .execute(&mut *tx)
        .await?;
        bump_tariff_version(&mut tx).await?;
        tx.commit().await?;
        Ok(ExchangeRate {
            base: base.to_owned(),
            quote: quote.to_owned(),
            rate: format_rate(rate_nano),
            rate_nano,
            updated_at,
        })
    }

    /// Deletes the rate between `a` and `b` (set either way); whether there
    /// was one.
    pub async fn delete_exchange_rate(&self, a: &str, b: &str) -> StoreResult<bool> {
        let (a, b) = (iso(a)?, iso(b)?);
        let mut tx = self.pool.begin().await?;
        let deleted = delete_pair(&mut tx, a, b).await?;
        if deleted {
            bump_tariff_version(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Every rate, by pair.
    pub async fn exchange_rates(&self) -> StoreResult<Vec<ExchangeRate>> {
        let rows = sqlx::query(
            "SELECT base, quote, rate_nano, updated_at FROM exchange_rates ORDER BY base, quote",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let rate_nano: i64 = r.try_get("rate_nano")?;
                Ok(ExchangeRate {
                    base: r.try_get("base")?,
                    quote: r.try_get("quote")?,
                    rate: format_rate(rate_nano),
                    rate_nano,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// The rates as a conversion table.
    pub async fn fx_table(&self) -> StoreResult<FxTable> {
        fx_on(&mut *self.pool.acquire().await?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::fx::parse_rate;
    use crate::store::testutil::test_store;

    #[tokio::test]
    async fn a_rate_is_set_replaced_either_way_listed_and_deleted() {
        let store = test_store().await;
        // The test database is shared by the tests that convert: this one
        // uses its own pair.
        let v0 = store.tariff_version().await.unwrap();
        let set = store
            .set_exchange_rate("chf", "SEK", parse_rate("11.9").unwrap())
            .await
            .unwrap();
        assert_eq!(
            (set.base.as_str(), set.quote.as_str(), set.rate.as_str()),
            ("CHF", "SEK", "11.9")
        );
        assert!(
            store.tariff_version().await.unwrap() > v0,
            "nodes reload rates"
        );
        // The other way round replaces it.
        store
            .set_exchange_rate("SEK", "CHF", parse_rate("0.084").unwrap())
            .await
            .unwrap();
        let mine: Vec<ExchangeRate> = store
            .exchange_rates()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| [r.base.as_str(), r.quote.as_str()].contains(&"SEK"))
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(
            (mine[0].base.as_str(), mine[0].rate.as_str()),
            ("SEK", "0.084")
        );
        let fx = store.fx_table().await.unwrap();
        assert_eq!(fx.convert(1_000_000, "SEK", "CHF", Round::Up), Some(84_000));

        for (base, quote, nano) in [("EUR", "EUR", 1), ("XXY", "EUR", 1), ("EUR", "USD", 0)] {
            assert!(
                matches!(
                    store.set_exchange_rate(base, quote, nano).await,
                    Err(StoreError::Invalid(_))
                ),
                "{base}/{quote} {nano}"
            );
        }
        assert!(store.delete_exchange_rate("CHF", "SEK").await.unwrap());
        assert!(!store.delete_exchange_rate("CHF", "SEK").await.unwrap());
    }
}
