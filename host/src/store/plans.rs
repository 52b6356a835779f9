//! Plan tables: the catalogue (`plans`) and the plans accounts bought
//! (`account_plans`); see [`crate::billing::plans`].
//!
//! The money side follows [`super::billing`]: a purchase or renewal debits
//! the balance with its `plan` ledger row in the transaction that grants
//! the seconds, and plan seconds are taken by conditional updates
//! (`... WHERE seconds_left - reserved_secs >= n`), so concurrent calls
//! never hold more seconds than a plan has. A renewal is claimed by a
//! conditional update on the period's end, so of several nodes sweeping at
//! once only one renews (and charges) a plan.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::billing::{BillingError, LedgerEntry, LedgerKind, Movement, debit_on};
use super::error::{Result as StoreResult, StoreError, unique_violation};
use super::exchange_rates::in_account_currency;
use super::{Store, now};
use crate::billing::fx::Round;
use crate::billing::plans::{AccountPlan, Plan, join_prefixes, split_prefixes};

type Result<T, E = BillingError> = std::result::Result<T, E>;

/// Plans one account's listing shows, newest first.
pub const LISTED_MAX: i64 = 50;
/// Renewals one sweep makes; the rest wait for the next one.
const SWEEP_BATCH: i64 = 200;

const PLAN_COLUMNS: &str = "name, description, price_micro, currency, seconds, prefixes, \
     validity_days, recurring, for_sale, created_at";

const ACCOUNT_PLAN_COLUMNS: &str = "id, login, plan, price_micro, currency, period_secs, \
     seconds_left, reserved_secs, prefixes, validity_days, recurring, status, bought_at, expires_at";

fn u32_of(row: &AnyRow, column: &str) -> StoreResult<u32> {
    u32::try_from(row.try_get::<i64, _>(column)?)
        .map_err(|_| StoreError::Corrupt(format!("plans: {column} out of range")))
}

fn plan_from_row(row: &AnyRow) -> StoreResult<Plan> {
    Ok(Plan {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price_micro: row.try_get("price_micro")?,
        currency: row.try_get("currency")?,
        seconds: u32_of(row, "seconds")?,
        prefixes: split_prefixes(&row.try_get::<String, _>("prefixes")?),
        validity_days: u32_of(row, "validity_days")?,
        recurring: row.try_get::<i64, _>("recurring")? != 0,
        for_sale: row.try_get::<i64, _>("for_sale")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

fn account_plan_from_row(row: &AnyRow) -> StoreResult<AccountPlan> {
    Ok(AccountPlan {
        id: row.try_get("id")?,
        login: row.try_get("login")?,
        plan: row.try_get("plan")?,
        price_micro: row.try_get("price_micro")?,
        currency: row.try_get("currency")?,
        period_secs: u32_of(row, "period_secs")?,
        seconds_left: u32_of(row, "seconds_left")?,
        reserved_secs: u32_of(row, "reserved_secs")?,
        prefixes: split_prefixes(&row.try_get::<String, _>("prefixes")?),
        validity_days: u32_of(row, "validity_days")?,
        recurring: row.try_get::<i64, _>("recurring")? != 0,
        status: row.try_get("status")?,
        bought_at: row.try_get("bought_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// The end of a period that starts at `from`; `None` without validity.
fn period_end(from: i64, validity_days: u32) -> Option<i64> {
    (validity_days > 0).then(|| from + i64::from(validity_days) * 86_400)
}

/// Whether `login` holds an active plan `name` with seconds left at `at`.
async fn holds(conn: &mut AnyConnection, login: &str, name: &str, at: i64) -> StoreResult<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM account_plans WHERE login = ? AND plan = ? AND status = 'active' \
         AND seconds_left > 0 AND (expires_at IS NULL OR expires_at > ?)",
    )
    .bind(login)
    .bind(name)
    .bind(at)
    .fetch_one(&mut *conn)
    .await?;
    Ok(n > 0)
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanSweep {
    /// Plans that ended (not recurring, or the balance did not pay).
    pub expired: u64,
    /// Recurring plans renewed and charged.
    pub renewed: u64,
}

impl Store {
    // ---- the catalogue ----

    /// Creates or replaces catalogue plan `p.name`; whether it was new.
    /// Plans already bought keep their terms.
    pub async fn put_plan(&self, p: &Plan) -> StoreResult<bool> {
        p.validate().map_err(StoreError::Invalid)?;
        let update = || {
            sqlx::query(
                "UPDATE plans SET description = ?, price_micro = ?, currency = ?, seconds = ?, \
                 prefixes = ?, validity_days = ?, recurring = ?, for_sale = ? WHERE name = ?",
            )
            .bind(&p.description)
            .bind(p.price_micro)
            .bind(&p.currency)
            .bind(i64::from(p.seconds))
            .bind(join_prefixes(&p.prefixes))
            .bind(i64::from(p.validity_days))
            .bind(i64::from(p.recurring))
            .bind(i64::from(p.for_sale))
            .bind(&p.name)
        };
        // MariaDB counts an update that changes nothing as 0 rows: a
        // duplicate insert then says the plan was there.
        if update().execute(&self.pool).await?.rows_affected() > 0 {
            return Ok(false);
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO plans ({PLAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.price_micro)
        .bind(&p.currency)
        .bind(i64::from(p.seconds))
        .bind(join_prefixes(&p.prefixes))
        .bind(i64::from(p.validity_days))
        .bind(i64::from(p.recurring))
        .bind(i64::from(p.for_sale))
        .bind(now())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if unique_violation(&e).is_some() => {
                update().execute(&self.pool).await?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Catalogue plan `name`.
    pub async fn plan(&self, name: &str) -> StoreResult<Option<Plan>> {
        let row = sqlx::query(&format!("SELECT {PLAN_COLUMNS} FROM plans WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(plan_from_row).transpose()
    }

    /// The catalogue by name (withdrawn plans too).
    pub async fn plans(&self) -> StoreResult<Vec<Plan>> {
        let rows = sqlx::query(&format!("SELECT {PLAN_COLUMNS} FROM plans ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(plan_from_row).collect()
    }

    /// Removes catalogue plan `name`; false if there was none. The plans
    /// bought as it stop renewing and run to the end of their period.
    pub async fn delete_plan(&self, name: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM plans WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE account_plans SET recurring = 0 WHERE plan = ? AND status = 'active' AND recurring <> 0",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---- plans bought ----

    /// Buys catalogue plan `name` for `login`: the price debited with a
    /// `plan` ledger row and the plan granted, in one transaction. A plan
    /// priced in another currency costs its converted price. `UnknownPlan`
    /// when it is not for sale, `CurrencyMismatch` when no exchange rate
    /// converts its currency, `InsufficientFunds`, and `PlanActive` while
    /// the account holds an active plan of that name with seconds left (so
    /// a repeated request does not buy twice).
    pub async fn buy_plan(&self, login: &str, name: &str) -> Result<(AccountPlan, LedgerEntry)> {
        let plan = self
            .plan(name)
            .await?
            .filter(|p| p.for_sale)
            .ok_or_else(|| BillingError::UnknownPlan(name.to_owned()))?;
        let at = now();
        // Asked before the debit too, so that a repeated purchase is told
        // so even when the balance could not pay it again.
        if holds(&mut *self.pool.acquire().await?, login, name, at).await? {
            return Err(BillingError::PlanActive(name.to_owned()));
        }
        let mut tx = self.begin_write().await?;
        // A plan priced in another currency costs its price at the rate of
        // the day (rounded up).
        let price =
            in_account_currency(&mut tx, login, plan.price_micro, &plan.currency, Round::Up)
                .await?;
        // The debit first: it locks the account's row, which serialises two
        // purchases of one account, so the check below sees the other's.
        let entry = debit_on(
            &mut tx,
            &Movement {
                login,
                kind: LedgerKind::Plan,
                amount_micro: price.micro,
                reference: price.reference(Some(&format!("plan {name}"))).as_deref(),
                actor: Some(login),
            },
        )
        .await?;
        if holds(&mut tx, login, name, at).await? {
            return Err(BillingError::PlanActive(name.to_owned()));
        }
        let expires_at = period_end(at, plan.validity_days);
        let done = sqlx::query(
            "INSERT INTO account_plans (login, plan, price_micro, currency, period_secs, \
             seconds_left, reserved_secs, prefixes, validity_days, recurring, status, bought_at, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, 'active', ?, ?)",
        )
        .bind(login)
        .bind(name)
        .bind(plan.price_micro)
        .bind(&plan.currency)
        .bind(i64::from(plan.seconds))
        .bind(i64::from(plan.seconds))
        .bind(join_prefixes(&plan.prefixes))
        .bind(i64::from(plan.validity_days))
        .bind(i64::from(plan.recurring))
        .bind(at)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        let id = super::messages::last_insert_id(&mut tx, &done).await?;
        tx.commit().await?;
        Ok((
            AccountPlan {
                id,
                login: login.to_owned(),
                plan: plan.name,
                price_micro: plan.price_micro,
                currency: plan.currency,
                period_secs: plan.seconds,
                seconds_left: plan.seconds,
                reserved_secs: 0,
                prefixes: plan.prefixes,
                validity_days: plan.validity_days,
                recurring: plan.recurring,
                status: "active".into(),
                bought_at: at,
                expires_at,
            },
            entry,
        ))
    }

    /// `login`'s plans, newest first ([`LISTED_MAX`] at most).
    pub async fn account_plans(&self, login: &str) -> StoreResult<Vec<AccountPlan>> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_PLAN_COLUMNS} FROM account_plans WHERE login = ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(login)
        .bind(LISTED_MAX)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_plan_from_row).collect()
    }

    /// Plan `id` of `login`.
    pub async fn account_plan(&self, login: &str, id: i64) -> StoreResult<Option<AccountPlan>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_PLAN_COLUMNS} FROM account_plans WHERE id = ? AND login = ?"
        ))
        .bind(id)
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_plan_from_row).transpose()
    }

    /// The user ends plan `id`, without refund: a recurring plan stops
    /// renewing and runs to the end of its period; one that does not renew
    /// (or no longer does) is cancelled now and its seconds are lost. The
    /// plan as it is then; `None` if `login` has no such plan.
    pub async fn cancel_account_plan(
        &self,
        login: &str,
        id: i64,
    ) -> StoreResult<Option<AccountPlan>> {
        let stopped = sqlx::query(
            "UPDATE account_plans SET recurring = 0 \
             WHERE id = ? AND login = ? AND status = 'active' AND recurring <> 0",
        )
        .bind(id)
        .bind(login)
        .execute(&self.pool)
        .await?;
        if stopped.rows_affected() == 0 {
            sqlx::query(
                "UPDATE account_plans SET status = 'cancelled' \
                 WHERE id = ? AND login = ? AND status = 'active' AND recurring = 0",
            )
            .bind(id)
            .bind(login)
            .execute(&self.pool)
            .await?;
        }
        self.account_plan(login, id).await
    }

    /// The plan a call of `login` to `digits` draws on at `at`: of the
    /// active ones covering the number with seconds free, the one that
    /// expires first (its seconds would be lost first).
    pub async fn plan_for_call(
        &self,
        login: &str,
        digits: &str,
        at: i64,
    ) -> StoreResult<Option<AccountPlan>> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_PLAN_COLUMNS} FROM account_plans WHERE login = ? AND status = 'active' \
             AND seconds_left > reserved_secs AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(login)
        .bind(at)
        .fetch_all(&self.pool)
        .await?;
        let mut plans = rows
            .iter()
            .map(account_plan_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        plans.retain(|p| p.covers(digits) && p.usable_secs(at) > 0);
        plans.sort_by_key(|p| (p.expires_at.unwrap_or(i64::MAX), p.id));
        Ok(plans.into_iter().next())
    }

    /// Ends the plans whose period is over at `at`: a recurring one is
    /// renewed if its balance pays (a `plan` ledger row, the seconds reset
    /// to a full period), every other one expires.
    pub async fn sweep_plans(&self, at: i64) -> StoreResult<PlanSweep> {
        let done = sqlx::query(
            "UPDATE account_plans SET status = 'expired' WHERE status = 'active' AND recurring = 0 \
             AND expires_at IS NOT NULL AND expires_at <= ?",
        )
        .bind(at)
        .execute(&self.pool)
        .await?;
        let mut sweep = PlanSweep {
            expired: done.rows_affected(),
            renewed: 0,
        };
        let due = sqlx::query(&format!(
            "SELECT {ACCOUNT_PLAN_COLUMNS} FROM account_plans WHERE status = 'active' \
             AND recurring <> 0 AND expires_at IS NOT NULL AND expires_at <= ? LIMIT ?"
        ))
        .bind(at)
        .bind(SWEEP_BATCH)
        .fetch_all(&self.pool)
        .await?;
        for row in &due {
            let p = account_plan_from_row(row)?;
            match self.renew_plan(&p, at).await {
                Ok(true) => sweep.renewed += 1,
                // Another node took it.
                Ok(false) => {}
                Err(BillingError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::info!(login = p.login, plan = p.plan, id = p.id, reason = %e, "plan not renewed: it ends");
                    let ended = sqlx::query(
                        "UPDATE account_plans SET status = 'expired' \
                         WHERE id = ? AND status = 'active' AND expires_at = ?",
                    )
                    .bind(p.id)
                    .bind(p.expires_at)
                    .execute(&self.pool)
                    .await?;
                    sweep.expired += ended.rows_affected();
                }
            }
        }
        Ok(sweep)
    }

    /// Renews `p` (read when its period was over): false when another
    /// sweep renewed or ended it first.
    async fn renew_plan(&self, p: &AccountPlan, at: i64) -> Result<bool> {
        let Some(old_end) = p.expires_at else {
            return Ok(false);
        };
        // A node down for longer than a period charges one period, from now.
        let end = period_end(old_end, p.validity_days)
            .filter(|e| *e > at)
            .or_else(|| period_end(at, p.validity_days));
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE account_plans SET seconds_left = period_secs, expires_at = ? \
             WHERE id = ? AND status = 'active' AND recurring <> 0 AND expires_at = ?",
        )
        .bind(end)
        .bind(p.id)
        .bind(old_end)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(false);
        }
        let price =
            in_account_currency(&mut tx, &p.login, p.price_micro, &p.currency, Round::Up).await?;
        debit_on(
            &mut tx,
            &Movement {
                login: &p.login,
                kind: LedgerKind::Plan,
                amount_micro: price.micro,
                reference: price
                    .reference(Some(&format!("plan {} renewal", p.plan)))
                    .as_deref(),
                actor: Some("system"),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::billing::tariffs::parse_csv;
    use crate::billing::{Billing, BillingConfig, Refusal};
    use crate::store::testutil::{checked_balance, money_account, test_store, unique};

    fn plan(name: &str, seconds: u32, prefixes: &[&str]) -> Plan {
        Plan {
            name: name.into(),
            description: "test".into(),
            price_micro: 2_000_000,
            currency: "EUR".into(),
            seconds,
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            validity_days: 30,
            recurring: false,
            for_sale: true,
            created_at: 0,
        }
    }

    async fn tariff(store: &Store) -> String {
        // 0.10 a minute per started minute with a fee of 0.01 and 5 free
        // seconds to 48; 0.02 per second-billed minute to 1.
        let name = unique("tar");
        let rows = parse_csv(
            &name,
            "prefix,currency,price_per_minute,connection_fee,increments,free_seconds\n\
             48,EUR,0.10,0.01,60/60,5\n1,EUR,0.02,0,1/1,0\n",
        )
        .unwrap();
        store.replace_tariff(&name, &rows).await.unwrap();
        name
    }

    fn billing(store: &Store, max_call_secs: u32) -> Arc<Billing> {
        Billing::new(
            store.clone(),
            BillingConfig {
                max_call_secs,
                ..Default::default()
            },
        )
    }

    async fn held(store: &Store, login: &str, id: i64) -> AccountPlan {
        store.account_plan(login, id).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn plans_are_kept_bought_once_and_cancelled() {
        let store = test_store().await;
        let name = unique("p");
        assert!(store.put_plan(&plan(&name, 600, &["48"])).await.unwrap());
        let mut changed = plan(&name, 6_000, &["48", "44"]);
        changed.recurring = true;
        assert!(!store.put_plan(&changed).await.unwrap(), "replaced");
        assert!(!store.put_plan(&changed).await.unwrap(), "unchanged");
        let stored = store.plan(&name).await.unwrap().unwrap();
        assert_eq!((stored.seconds, stored.prefixes.len()), (6_000, 2));
        assert!(store.plans().await.unwrap().iter().any(|p| p.name == name));
        assert!(matches!(
            store.put_plan(&plan("mine", 1, &[])).await,
            Err(StoreError::Invalid(_))
        ));

        let login = money_account(&store, "plan", "t", "EUR", 3_000_000).await;
        let (bought, entry) = store.buy_plan(&login, &name).await.unwrap();
        assert_eq!(
            (
                entry.kind.as_str(),
                entry.amount_micro,
                entry.balance_after_micro
            ),
            ("plan", -2_000_000, 1_000_000)
        );
        assert_eq!(
            (bought.seconds_left, bought.status.as_str()),
            (6_000, "active")
        );
        assert_eq!(bought.expires_at, Some(bought.bought_at + 30 * 86_400));
        assert_eq!(held(&store, &login, bought.id).await, bought);
        for (who, what, want) in [
            (login.as_str(), name.as_str(), "PlanActive"),
            (login.as_str(), "no-such-plan", "UnknownPlan"),
            ("nobody-here", name.as_str(), "NoAccount"),
        ] {
            let err = store.buy_plan(who, what).await.unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{err:?}");
        }
        let usd = money_account(&store, "plan", "t", "USD", 5_000_000).await;
        assert!(matches!(
            store.buy_plan(&usd, &name).await,
            Err(BillingError::CurrencyMismatch { .. })
        ));
        assert_eq!(
            checked_balance(&store, &usd).await,
            5_000_000,
            "rolled back"
        );
        let poor = money_account(&store, "plan", "t", "EUR", 1_999_999).await;
        assert!(matches!(
            store.buy_plan(&poor, &name).await,
            Err(BillingError::InsufficientFunds { .. })
        ));
        assert!(store.account_plans(&poor).await.unwrap().is_empty());

        // Cancelling: first the renewal stops, then the plan ends.
        let p = store
            .cancel_account_plan(&login, bought.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((p.recurring, p.status.as_str()), (false, "active"));
        let p = store
            .cancel_account_plan(&login, bought.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.status, "cancelled");
        assert!(
            store
                .cancel_account_plan(&usd, bought.id)
                .await
                .unwrap()
                .is_none()
        );
        // Cancelled: it may be bought again.
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
        store.buy_plan(&login, &name).await.unwrap();
        assert_eq!(store.account_plans(&login).await.unwrap().len(), 2);
        assert_eq!(checked_balance(&store, &login).await, 0);

        // Withdrawn from sale, then deleted: no more purchases, and the
        // plans bought stop renewing.
        changed.for_sale = false;
        store.put_plan(&changed).await.unwrap();
        assert!(matches!(
            store.buy_plan(&usd, &name).await,
            Err(BillingError::UnknownPlan(_))
        ));
        assert!(store.delete_plan(&name).await.unwrap());
        assert!(!store.delete_plan(&name).await.unwrap());
        assert!(store.plan(&name).await.unwrap().is_none());
        let newest = &store.account_plans(&login).await.unwrap()[0];
        assert!(!newest.recurring && newest.status == "active");
    }

    #[tokio::test]
    async fn calls_use_the_plan_before_the_balance() {
        let store = test_store().await;
        let tariff = tariff(&store).await;
        let name = unique("p");
        store.put_plan(&plan(&name, 90, &["48"])).await.unwrap();
        let login = money_account(&store, "plan", &tariff, "EUR", 2_500_000).await;
        let (bought, _) = store.buy_plan(&login, &name).await.unwrap();
        let billing = billing(&store, 14_400);

        // 90 plan seconds, then the 0.50 left pays the fee and 4 minutes.
        let auth = billing.authorize(&login, "48600100200").await.unwrap();
        assert_eq!(auth.plan.map(|p| p.secs), Some(90));
        assert_eq!(auth.max_secs, 90 + 240);
        assert_eq!(auth.reserved_micro, 410_000);
        assert_eq!(held(&store, &login, bought.id).await.reserved_secs, 90);
        // Within the plan: no money, no fee, the seconds used.
        let done = billing.settle(&auth, 30).await.unwrap();
        assert_eq!((done.plan_secs, done.cost_micro, done.entry), (30, 0, None));
        let p = held(&store, &login, bought.id).await;
        assert_eq!((p.seconds_left, p.reserved_secs), (60, 0));
        assert_eq!(checked_balance(&store, &login).await, 500_000);

        // Past the plan: its 60 seconds, then 61 s at the balance (the fee
        // and two started minutes, no free seconds).
        let auth = billing.authorize(&login, "48600100200").await.unwrap();
        let done = billing.settle(&auth, 121).await.unwrap();
        assert_eq!((done.plan_secs, done.cost_micro), (60, 210_000));
        assert_eq!(held(&store, &login, bought.id).await.seconds_left, 0);
        assert_eq!(checked_balance(&store, &login).await, 290_000);

        // Not covered by the plan: the balance only, free seconds and all.
        let auth = billing.authorize(&login, "12125550100").await.unwrap();
        assert_eq!(auth.plan, None);
        billing.release(&auth).await.unwrap();

        // Released and expired reservations give the seconds back.
        let other = unique("p");
        store.put_plan(&plan(&other, 100, &[])).await.unwrap();
        let rich = money_account(&store, "plan", &tariff, "EUR", 2_000_000).await;
        let (all, _) = store.buy_plan(&rich, &other).await.unwrap();
        let auth = billing.authorize(&rich, "12125550100").await.unwrap();
        assert_eq!(auth.plan.map(|p| p.secs), Some(100));
        assert_eq!(auth.max_secs, 100, "no money left for more");
        billing.release(&auth).await.unwrap();
        let auth = billing.authorize(&rich, "12125550100").await.unwrap();
        assert_eq!(held(&store, &rich, all.id).await.reserved_secs, 100);
        assert!(matches!(
            billing.authorize(&rich, "12125550100").await,
            Err(Refusal::NoBalance { .. })
        ));
        // Past its expiry (tests share a MariaDB database: the others'
        // reservations are not touched).
        sqlx::query("UPDATE balance_reservations SET expires_at = ? WHERE id = ?")
            .bind(crate::store::now_secs() - 10)
            .bind(auth.reservation_id)
            .execute(&store.pool)
            .await
            .unwrap();
        store
            .release_expired_reservations(crate::store::now_secs())
            .await
            .unwrap();
        let p = held(&store, &rich, all.id).await;
        assert_eq!((p.seconds_left, p.reserved_secs), (100, 0));
        assert!(matches!(
            billing.settle(&auth, 10).await,
            Err(BillingError::UnknownReservation)
        ));
        assert_eq!(checked_balance(&store, &rich).await, 0);
    }

    #[tokio::test]
    async fn twenty_concurrent_calls_never_hold_more_seconds_than_the_plan_has() {
        let store = test_store().await;
        let tariff = tariff(&store).await;
        let name = unique("p");
        store.put_plan(&plan(&name, 300, &["48"])).await.unwrap();
        let login = money_account(&store, "plan", &tariff, "EUR", 2_000_000).await;
        let (bought, _) = store.buy_plan(&login, &name).await.unwrap();
        // No money left: only the plan pays, a minute a call at most.
        let capped = billing(&store, 60);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (billing, login) = (capped.clone(), login.clone());
                tokio::spawn(async move {
                    let auth = billing.authorize(&login, "48600").await?;
                    tokio::task::yield_now().await;
                    billing.settle(&auth, 3_600).await.map_err(Refusal::Failed)
                })
            })
            .collect();
        let mut used = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(s) => {
                    assert_eq!(s.cost_micro, 0);
                    used += s.plan_secs;
                }
                Err(Refusal::NoBalance { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(used <= 300 && used > 0, "{used}");
        let p = held(&store, &login, bought.id).await;
        assert_eq!((p.seconds_left, p.reserved_secs), (300 - used, 0));
        assert_eq!(checked_balance(&store, &login).await, 0);
    }

    #[tokio::test]
    async fn periods_end_and_recurring_plans_renew_while_the_balance_pays() {
        let store = test_store().await;
        let once = unique("p");
        let monthly = unique("p");
        store.put_plan(&plan(&once, 60, &[])).await.unwrap();
        store
            .put_plan(&Plan {
                recurring: true,
                ..plan(&monthly, 60, &[])
            })
            .await
            .unwrap();
        let login = money_account(&store, "plan", "t", "EUR", 8_000_000).await;
        let (a, _) = store.buy_plan(&login, &once).await.unwrap();
        let (b, _) = store.buy_plan(&login, &monthly).await.unwrap();
        // Their periods are over (moved back rather than sweeping in the
        // future: tests share a MariaDB database).
        let end = crate::store::now_secs() - 10;
        let over = |id: i64, left: i64| {
            sqlx::query("UPDATE account_plans SET seconds_left = ?, expires_at = ? WHERE id = ?")
                .bind(left)
                .bind(end)
                .bind(id)
                .execute(&store.pool)
        };
        over(a.id, 60).await.unwrap();
        over(b.id, 7).await.unwrap();
        let now = crate::store::now_secs();
        // Two sweeps at once (two nodes): one renewal, one charge.
        let (s1, s2) = tokio::join!(store.sweep_plans(now), store.sweep_plans(now));
        let (s1, s2) = (s1.unwrap(), s2.unwrap());
        // (Counts, not equalities: a shared MariaDB database may hold other
        // runs' plans; the balance shows the one charge.)
        assert!(s1.renewed + s2.renewed >= 1);
        assert!(s1.expired + s2.expired >= 1);
        assert_eq!(held(&store, &login, a.id).await.status, "expired");
        let renewed = held(&store, &login, b.id).await;
        assert_eq!(renewed.seconds_left, 60);
        assert_eq!(renewed.expires_at, Some(end + 30 * 86_400));
        assert_eq!(checked_balance(&store, &login).await, 2_000_000);
        let rows = store.ledger(&login, None, 1).await.unwrap();
        assert_eq!(
            (rows[0].kind.as_str(), rows[0].amount_micro),
            ("plan", -2_000_000)
        );

        // A day after the next end, with one micro unit of the 2.00 held
        // by a call: not paid, so it ends.
        store.reserve(&login, 1, None, i64::MAX).await.unwrap();
        over(b.id, 60).await.unwrap();
        let late = crate::store::now_secs();
        let s = store.sweep_plans(late).await.unwrap();
        assert!(s.expired >= 1);
        assert_eq!(held(&store, &login, b.id).await.status, "expired");
        assert_eq!(checked_balance(&store, &login).await, 2_000_000);
        assert!(
            store
                .plan_for_call(&login, "48", late)
                .await
                .unwrap()
                .is_none()
        );
    }
}
