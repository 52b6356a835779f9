//! Billing tables: tariffs, the ledger, vouchers and balance reservations.
//!
//! **The ledger invariant.** `accounts.balance_micro` only changes together
//! with a `ledger` row (who, why, signed amount, balance after), in the same
//! transaction: an account's balance is the sum of its ledger.
//!
//! **No overspending.** A debit is one conditional statement, `UPDATE
//! accounts SET balance_micro = balance_micro - ? WHERE login = ? AND
//! balance_micro - reserved_micro >= ?`: the database serialises concurrent
//! debits of a row, and the loser finds the condition false instead of
//! driving the balance below zero. `reserved_micro` is money set aside for
//! calls in progress (see [`Store::reserve`]); it is not a ledger movement.
//!
//! Every transaction here writes before it reads, or takes the write lock
//! when it begins ([`Store::begin_write`]: `BEGIN IMMEDIATE` on SQLite):
//! on SQLite a transaction that reads first and then writes fails with
//! SQLITE_BUSY under concurrency instead of waiting for the lock. Those
//! that convert a currency read the account's currency and the rate first. Reservations and
//! settlements, two per prepaid call, go through that writer
//! ([`super::money_writer`]): concurrent ones share a transaction. Two-account transfers
//! update the rows in login order, so two opposite transfers on MariaDB
//! cannot deadlock.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::error::{Result as StoreResult, StoreError, unique_violation};
use super::exchange_rates::{InAccountCurrency, in_account_currency};
use super::messages::OffnetSms;
use super::{Store, now};
use crate::billing::fx::Round;
use crate::billing::money::MAX_BALANCE_MICRO;
use crate::billing::plans::{PlanHold, PlanUse};
use crate::billing::rating::Rate;
use crate::billing::tariffs::{TariffRate, validate_name, validate_prefix};

/// Why a money operation did not happen. The store's own failures are
/// [`BillingError::Store`]; the rest are answers about the request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BillingError {
    /// No such account.
    #[error("no account {0:?}")]
    NoAccount(String),
    /// The balance less what calls in progress reserved is below the amount.
    #[error("insufficient funds: {available_micro} micro available")]
    InsufficientFunds { available_micro: i64 },
    /// The money is in another currency than the account's, and no
    /// exchange rate converts it.
    #[error(
        "the account's currency is {account}, not {other}, and no exchange rate converts {other}"
    )]
    CurrencyMismatch { account: String, other: String },
    /// The credit would take the balance past the largest one allowed.
    #[error("the balance would exceed its limit")]
    BalanceLimit,
    /// A transfer over `billing.transfer_max_micro`.
    #[error("at most {max_micro} micro per transfer")]
    TransferLimit { max_micro: i64 },
    /// A transfer to the sender's own account.
    #[error("a transfer needs two different accounts")]
    SameAccount,
    /// No voucher has this PIN.
    #[error("no voucher has this PIN")]
    VoucherUnknown,
    /// The voucher was redeemed already.
    #[error("the voucher was redeemed already")]
    VoucherRedeemed,
    /// The voucher expired.
    #[error("the voucher expired")]
    VoucherExpired,
    /// The reservation was settled, released or expired already.
    #[error("no such reservation (settled, released or expired already)")]
    UnknownReservation,
    /// No plan of this name is for sale.
    #[error("no plan {0:?} is for sale")]
    UnknownPlan(String),
    /// The account holds an active plan of this name with seconds left
    /// (a repeated purchase would pay twice).
    #[error("plan {0:?} is active and has seconds left")]
    PlanActive(String),
    /// The plan's seconds were taken, or it ended, since it was read.
    #[error("the plan's seconds were taken meanwhile")]
    PlanTaken,
    /// Bad input (an amount, a tariff row).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for BillingError {
    fn from(e: sqlx::Error) -> Self {
        BillingError::Store(StoreError::Db(e))
    }
}

type Result<T, E = BillingError> = std::result::Result<T, E>;

/// Why a ledger row exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LedgerKind {
    Topup,
    Voucher,
    TransferIn,
    TransferOut,
    Call,
    Sms,
    Plan,
    Did,
    /// An operator set the balance (admin `PUT .../balance`), or an
    /// account's opening balance.
    Adjust,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Topup => "topup",
            LedgerKind::Voucher => "voucher",
            LedgerKind::TransferIn => "transfer-in",
            LedgerKind::TransferOut => "transfer-out",
            LedgerKind::Call => "call",
            LedgerKind::Sms => "sms",
            LedgerKind::Plan => "plan",
            LedgerKind::Did => "did",
            LedgerKind::Adjust => "adjust",
        }
    }
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub login: String,
    /// One of [`LedgerKind`]'s names.
    pub kind: String,
    /// Signed: credits positive, debits negative.
    pub amount_micro: i64,
    pub balance_after_micro: i64,
    pub currency: String,
    pub reference: Option<String>,
    pub actor: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

fn entry_from_row(row: &AnyRow) -> StoreResult<LedgerEntry> {
    Ok(LedgerEntry {
        id: row.try_get("id")?,
        login: row.try_get("login")?,
        kind: row.try_get("kind")?,
        amount_micro: row.try_get("amount_micro")?,
        balance_after_micro: row.try_get("balance_after_micro")?,
        currency: row.try_get("currency")?,
        reference: row.try_get("reference")?,
        actor: row.try_get("actor")?,
        created_at: row.try_get("created_at")?,
    })
}

const LEDGER_COLUMNS: &str =
    "id, login, kind, amount_micro, balance_after_micro, currency, reference, actor, created_at";

/// A balance change to make: `amount_micro` is positive, its sign comes
/// from the operation (credit or debit).
#[derive(Debug, Clone, Copy)]
pub struct Movement<'a> {
    pub login: &'a str,
    pub kind: LedgerKind,
    pub amount_micro: i64,
    pub reference: Option<&'a str>,
    pub actor: Option<&'a str>,
}

/// The money side of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountMoney {
    pub login: String,
    pub active: bool,
    pub tariff: String,
    pub currency: String,
    pub balance_micro: i64,
    /// Set aside for calls in progress.
    pub reserved_micro: i64,
}

impl AccountMoney {
    /// What a debit may take now.
    pub fn available_micro(&self) -> i64 {
        self.balance_micro.saturating_sub(self.reserved_micro)
    }
}

/// A redeemed voucher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redeemed {
    pub batch: String,
    pub value_micro: i64,
    pub currency: String,
    pub entry: LedgerEntry,
}

/// A tariff's name, currency and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TariffSummary {
    pub name: String,
    pub currency: String,
    pub rows: i64,
}

/// A batch of vouchers as stored (their PINs are not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoucherBatch {
    pub batch: String,
    pub count: i64,
    pub redeemed: i64,
    pub value_micro: i64,
    pub currency: String,
    pub expires_at: i64,
}

/// Rows inserted per statement on import: 11 values each stays far under
/// both SQLite's and MariaDB's placeholder limits.
const INSERT_BATCH: usize = 500;

const RATE_COLUMNS: &str = "tariff, prefix, description, country, currency, price_micro, \
     connection_fee_micro, first_increment, next_increment, free_seconds, sms_price_micro";

fn rate_from_row(row: &AnyRow) -> StoreResult<TariffRate> {
    let secs = |c: &str| -> StoreResult<u32> {
        u32::try_from(row.try_get::<i64, _>(c)?)
            .map_err(|_| StoreError::Corrupt(format!("tariff_rates.{c} out of range")))
    };
    Ok(TariffRate {
        tariff: row.try_get("tariff")?,
        prefix: row.try_get("prefix")?,
        description: row.try_get("description")?,
        country: row.try_get("country")?,
        currency: row.try_get("currency")?,
        rate: Rate {
            price_micro: row.try_get("price_micro")?,
            connection_fee_micro: row.try_get("connection_fee_micro")?,
            first_increment: secs("first_increment")?,
            next_increment: secs("next_increment")?,
            free_seconds: secs("free_seconds")?,
        },
        sms_price_micro: row.try_get("sms_price_micro")?,
    })
}

fn money_from_row(r: &AnyRow) -> StoreResult<AccountMoney> {
    Ok(AccountMoney {
        login: r.try_get("login")?,
        active: r.try_get::<i64, _>("active")? != 0,
        tariff: r.try_get("tariff")?,
        currency: r.try_get("currency")?,
        balance_micro: r.try_get("balance_micro")?,
        reserved_micro: r.try_get("reserved_micro")?,
    })
}

/// Writes the ledger row of a balance change made on `conn` just before,
/// reading the balance it left.
async fn record(
    conn: &mut AnyConnection,
    login: &str,
    kind: LedgerKind,
    signed_micro: i64,
    reference: Option<&str>,
    actor: Option<&str>,
) -> Result<LedgerEntry> {
    let row = sqlx::query("SELECT balance_micro, currency FROM accounts WHERE login = ?")
        .bind(login)
        .fetch_one(&mut *conn)
        .await?;
    let balance: i64 = row.try_get("balance_micro")?;
    let currency: String = row.try_get("currency")?;
    let created_at = now();
    let reference = reference.map(|r| clip(r, 255));
    let actor = actor.map(|a| clip(a, 64));
    let sql = format!(
        "INSERT INTO ledger (login, kind, amount_micro, balance_after_micro, currency, \
         reference, actor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?){}",
        super::messages::returning_id(conn)
    );
    let insert = sqlx::query(&sql)
        .bind(login)
        .bind(kind.as_str())
        .bind(signed_micro)
        .bind(balance)
        .bind(&currency)
        .bind(&reference)
        .bind(&actor)
        .bind(created_at);
    let id = super::messages::insert_id(conn, insert).await?;
    Ok(LedgerEntry {
        id,
        login: login.to_owned(),
        kind: kind.as_str().to_owned(),
        amount_micro: signed_micro,
        balance_after_micro: balance,
        currency,
        reference,
        actor,
        created_at,
    })
}

/// Adds `m.amount_micro` to the balance on `conn` (a transaction the caller
/// commits), with its ledger row. `currency`, when given, is the amount's:
/// another than the account's is converted at the stored rate (rounded
/// down, noted in the ledger row's reference), or refused without one.
async fn credit_on(
    conn: &mut AnyConnection,
    m: &Movement<'_>,
    currency: Option<&str>,
) -> Result<LedgerEntry> {
    check_amount(m.amount_micro)?;
    let converted = match currency {
        Some(c) => in_account_currency(conn, m.login, m.amount_micro, c, Round::Down).await?,
        None => InAccountCurrency {
            micro: m.amount_micro,
            from: None,
        },
    };
    if converted.micro <= 0 {
        return Err(BillingError::Invalid(format!(
            "{} is worth nothing in the account's currency",
            converted.from.as_deref().unwrap_or("the amount")
        )));
    }
    let done = sqlx::query(
        "UPDATE accounts SET balance_micro = balance_micro + ? \
         WHERE login = ? AND balance_micro <= ?",
    )
    .bind(converted.micro)
    .bind(m.login)
    .bind(MAX_BALANCE_MICRO.saturating_sub(converted.micro))
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM accounts WHERE login = ?")
            .bind(m.login)
            .fetch_optional(&mut *conn)
            .await?;
        return Err(match exists {
            None => BillingError::NoAccount(m.login.to_owned()),
            Some(_) => BillingError::BalanceLimit,
        });
    }
    let reference = converted.reference(m.reference);
    record(
        conn,
        m.login,
        m.kind,
        converted.micro,
        reference.as_deref(),
        m.actor,
    )
    .await
}

/// Takes `m.amount_micro` from the balance on `conn` (a transaction the
/// caller commits) if that much is available (balance less reservations),
/// with its ledger row.
pub(super) async fn debit_on(conn: &mut AnyConnection, m: &Movement<'_>) -> Result<LedgerEntry> {
    check_amount(m.amount_micro)?;
    let done = sqlx::query(
        "UPDATE accounts SET balance_micro = balance_micro - ? \
         WHERE login = ? AND balance_micro - reserved_micro >= ?",
    )
    .bind(m.amount_micro)
    .bind(m.login)
    .bind(m.amount_micro)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        let available: Option<i64> = sqlx::query_scalar(
            "SELECT balance_micro - reserved_micro FROM accounts WHERE login = ?",
        )
        .bind(m.login)
        .fetch_optional(&mut *conn)
        .await?;
        return Err(match available {
            Some(available_micro) => BillingError::InsufficientFunds { available_micro },
            None => BillingError::NoAccount(m.login.to_owned()),
        });
    }
    record(conn, m.login, m.kind, -m.amount_micro, m.reference, m.actor).await
}

/// Gives back a charge on `conn` (a transaction the caller commits): the
/// service it paid for was not delivered. No balance cap applies, the money
/// was the account's a moment ago. None when the account is gone.
pub(super) async fn refund_on(
    conn: &mut AnyConnection,
    m: &Movement<'_>,
) -> StoreResult<Option<LedgerEntry>> {
    let done = sqlx::query("UPDATE accounts SET balance_micro = balance_micro + ? WHERE login = ?")
        .bind(m.amount_micro)
        .bind(m.login)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    match record(conn, m.login, m.kind, m.amount_micro, m.reference, m.actor).await {
        Ok(entry) => Ok(Some(entry)),
        Err(BillingError::Store(e)) => Err(e),
        Err(e) => Err(StoreError::Corrupt(e.to_string())),
    }
}

/// At most `max` characters (ledger references are informative).
pub(super) fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn check_amount(amount: i64) -> Result<()> {
    if amount <= 0 || amount > crate::billing::money::MAX_OPERATION_MICRO {
        return Err(BillingError::Invalid(format!(
            "amount {amount} micro: positive and at most {}",
            crate::billing::money::MAX_OPERATION_MICRO
        )));
    }
    Ok(())
}

/// Bumps the tariff version (in the transaction that changed a tariff).
pub(super) async fn bump_tariff_version(conn: &mut AnyConnection) -> StoreResult<()> {
    sqlx::query("UPDATE tariff_version SET version = version + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_rates(conn: &mut AnyConnection, rows: &[TariffRate]) -> StoreResult<()> {
    for chunk in rows.chunks(INSERT_BATCH) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO tariff_rates ({RATE_COLUMNS}) VALUES {values}");
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(&r.tariff)
                .bind(&r.prefix)
                .bind(&r.description)
                .bind(&r.country)
                .bind(&r.currency)
                .bind(r.rate.price_micro)
                .bind(r.rate.connection_fee_micro)
                .bind(i64::from(r.rate.first_increment))
                .bind(i64::from(r.rate.next_increment))
                .bind(i64::from(r.rate.free_seconds))
                .bind(r.sms_price_micro);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn check_rows(name: &str, rows: &[TariffRate]) -> StoreResult<()> {
    validate_name(name).map_err(StoreError::Invalid)?;
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        if r.tariff != name {
            return Err(StoreError::Invalid(format!(
                "a row of tariff {:?} given for {name:?}",
                r.tariff
            )));
        }
        r.validate().map_err(StoreError::Invalid)?;
        if !seen.insert(r.prefix.as_str()) {
            return Err(StoreError::Invalid(format!(
                "prefix {} is given twice",
                r.prefix
            )));
        }
    }
    if let Some(first) = rows.first()
        && let Some(other) = rows.iter().find(|r| r.currency != first.currency)
    {
        return Err(StoreError::Invalid(format!(
            "currencies {} and {} in one tariff",
            first.currency, other.currency
        )));
    }
    Ok(())
}

impl Store {
    // ---- tariffs ----

    /// Replaces every row of tariff `name` by `rows` (an empty list removes
    /// the tariff), in one transaction; the number of rows.
    pub async fn replace_tariff(&self, name: &str, rows: &[TariffRate]) -> StoreResult<usize> {
        check_rows(name, rows)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM tariff_rates WHERE tariff = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        insert_rates(&mut tx, rows).await?;
        bump_tariff_version(&mut tx).await?;
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Adds `rows` to tariff `name`, replacing the rows of the same
    /// prefixes; refused if the tariff's currency would then be mixed.
    pub async fn merge_tariff(&self, name: &str, rows: &[TariffRate]) -> StoreResult<usize> {
        check_rows(name, rows)?;
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(INSERT_BATCH) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("DELETE FROM tariff_rates WHERE tariff = ? AND prefix IN ({marks})");
            let mut q = sqlx::query(&sql).bind(name);
            for r in chunk {
                q = q.bind(&r.prefix);
            }
            q.execute(&mut *tx).await?;
        }
        insert_rates(&mut tx, rows).await?;
        let currencies: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT currency FROM tariff_rates WHERE tariff = ?")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
        if currencies.len() > 1 {
            // Dropping the transaction rolls it back.
            return Err(StoreError::Invalid(format!(
                "tariff {name:?} would mix currencies {}",
                currencies.join(" and ")
            )));
        }
        bump_tariff_version(&mut tx).await?;
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Removes one row; false if there was none.
    pub async fn delete_tariff_rate(&self, name: &str, prefix: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM tariff_rates WHERE tariff = ? AND prefix = ?")
            .bind(name)
            .bind(prefix)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        bump_tariff_version(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The rows of tariff `name`, by prefix.
    pub async fn tariff_rates(&self, name: &str) -> StoreResult<Vec<TariffRate>> {
        let rows = sqlx::query(&format!(
            "SELECT {RATE_COLUMNS} FROM tariff_rates WHERE tariff = ? ORDER BY prefix"
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rate_from_row).collect()
    }

    /// Every row of every tariff (what a node loads into memory).
    pub async fn all_tariff_rates(&self) -> StoreResult<Vec<TariffRate>> {
        let rows = sqlx::query(&format!("SELECT {RATE_COLUMNS} FROM tariff_rates"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rate_from_row).collect()
    }

    /// The tariffs there are, by name.
    pub async fn tariffs(&self) -> StoreResult<Vec<TariffSummary>> {
        let rows = sqlx::query(
            "SELECT tariff, MIN(currency) AS currency, COUNT(*) AS n FROM tariff_rates \
             GROUP BY tariff ORDER BY tariff",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TariffSummary {
                    name: r.try_get("tariff")?,
                    currency: r.try_get("currency")?,
                    rows: r.try_get("n")?,
                })
            })
            .collect()
    }

    /// The tariff version: moves with every tariff change.
    pub async fn tariff_version(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT version FROM tariff_version WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    // ---- balances and the ledger ----

    /// The money side of account `login`.
    pub async fn account_money(&self, login: &str) -> StoreResult<Option<AccountMoney>> {
        let row = sqlx::query(
            "SELECT login, active, tariff, currency, balance_micro, reserved_micro \
             FROM accounts WHERE login = ?",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(money_from_row).transpose()
    }

    /// [`Store::account_money`] and whether the account holds an active
    /// plan, in one read: a call's authorisation looks for a plan that
    /// covers the number only then.
    pub async fn call_money(&self, login: &str) -> StoreResult<Option<(AccountMoney, bool)>> {
        let row = sqlx::query(
            "SELECT login, active, tariff, currency, balance_micro, reserved_micro, \
             (SELECT COUNT(*) FROM account_plans p WHERE p.login = accounts.login \
             AND p.status = 'active') AS plans FROM accounts WHERE login = ?",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((money_from_row(&r)?, r.try_get::<i64, _>("plans")? > 0)))
            .transpose()
    }

    async fn money_or_missing(&self, login: &str) -> Result<AccountMoney> {
        self.account_money(login)
            .await?
            .ok_or_else(|| BillingError::NoAccount(login.to_owned()))
    }

    /// Adds `m.amount_micro` to the balance, with its ledger row.
    /// `currency`, when given, must be the account's.
    pub async fn credit(&self, m: &Movement<'_>, currency: Option<&str>) -> Result<LedgerEntry> {
        let mut tx = self.begin_write().await?;
        let entry = credit_on(&mut tx, m, currency).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Credits a payment reported by a payment page (a `topup` row naming
    /// the payment), once per payment id: the payment's row and the credit
    /// share a transaction, so a webhook delivered again changes nothing
    /// and gets the first credit back, with `true` (a repeat).
    pub async fn credit_payment(
        &self,
        payment_id: &str,
        m: &Movement<'_>,
        currency: &str,
    ) -> Result<(LedgerEntry, bool)> {
        let mut tx = self.begin_write().await?;
        let entry = credit_on(&mut tx, m, Some(currency)).await?;
        let inserted = sqlx::query(
            "INSERT INTO payments (id, login, amount_micro, currency, ledger_id, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(payment_id)
        .bind(m.login)
        .bind(m.amount_micro)
        .bind(currency)
        .bind(entry.id)
        .bind(entry.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                Ok((entry, false))
            }
            Err(e) if unique_violation(&e).is_some() => {
                drop(tx);
                let first = sqlx::query(&format!(
                    "SELECT {LEDGER_COLUMNS} FROM ledger WHERE id = \
                     (SELECT ledger_id FROM payments WHERE id = ?)"
                ))
                .bind(payment_id)
                .fetch_optional(&self.pool)
                .await?;
                match first {
                    Some(row) => Ok((entry_from_row(&row)?, true)),
                    // Its account was deleted since.
                    None => Err(BillingError::NoAccount(m.login.to_owned())),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes `m.amount_micro` from the balance if that much is available
    /// (balance less reservations), with its ledger row.
    pub async fn debit(&self, m: &Movement<'_>) -> Result<LedgerEntry> {
        let mut tx = self.pool.begin().await?;
        let entry = debit_on(&mut tx, m).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Charges an OFFNET SMS and queues it for the SMS provider in one
    /// transaction: no message leaves unpaid, no payment without its
    /// message. Returns the outbox id and the `sms` ledger row.
    pub async fn queue_charged_sms(
        &self,
        sms: &OffnetSms<'_>,
        charge: &Movement<'_>,
    ) -> Result<(i64, LedgerEntry)> {
        let mut tx = self.pool.begin().await?;
        let entry = debit_on(&mut tx, charge).await?;
        let id = super::messages::insert_outbox(&mut tx, sms, charge.amount_micro).await?;
        tx.commit().await?;
        Ok((id, entry))
    }

    /// Moves `amount_micro` (in `from`'s currency, from what `from` has
    /// available) to `to`: a `transfer-out` and a `transfer-in` row in one
    /// transaction. Between accounts of different currencies the recipient
    /// gets the amount at the stored rate (rounded down; `CurrencyMismatch`
    /// without one). Returns (sender's row, recipient's row).
    pub async fn transfer(
        &self,
        from: &str,
        to: &str,
        amount_micro: i64,
        actor: Option<&str>,
    ) -> Result<(LedgerEntry, LedgerEntry)> {
        check_amount(amount_micro)?;
        if from == to {
            return Err(BillingError::SameAccount);
        }
        let sender = self.money_or_missing(from).await?;
        let mut tx = self.begin_write().await?;
        // Also refuses a recipient that does not exist (`NoAccount`).
        let received =
            in_account_currency(&mut tx, to, amount_micro, &sender.currency, Round::Down).await?;
        if received.micro <= 0 {
            return Err(BillingError::Invalid(format!(
                "{} is worth nothing in {to}'s currency",
                received.from.as_deref().unwrap_or("the amount")
            )));
        }
        // Rows in login order: opposite transfers lock them in the same
        // order and cannot deadlock.
        let mut done = true;
        for debit in if from < to {
            [true, false]
        } else {
            [false, true]
        } {
            let q = if debit {
                sqlx::query(
                    "UPDATE accounts SET balance_micro = balance_micro - ? \
                     WHERE login = ? AND currency = ? AND balance_micro - reserved_micro >= ?",
                )
                .bind(amount_micro)
                .bind(from)
                .bind(&sender.currency)
                .bind(amount_micro)
            } else {
                sqlx::query(
                    "UPDATE accounts SET balance_micro = balance_micro + ? \
                     WHERE login = ? AND balance_micro <= ?",
                )
                .bind(received.micro)
                .bind(to)
                .bind(MAX_BALANCE_MICRO.saturating_sub(received.micro))
            };
            if q.execute(&mut *tx).await?.rows_affected() == 0 {
                done = false;
                break;
            }
        }
        if !done {
            drop(tx);
            let now_sender = self.money_or_missing(from).await?;
            return Err(if now_sender.currency != sender.currency {
                BillingError::CurrencyMismatch {
                    account: now_sender.currency,
                    other: sender.currency,
                }
            } else if now_sender.available_micro() < amount_micro {
                BillingError::InsufficientFunds {
                    available_micro: now_sender.available_micro(),
                }
            } else {
                BillingError::BalanceLimit
            });
        }
        let out = record(
            &mut tx,
            from,
            LedgerKind::TransferOut,
            -amount_micro,
            Some(to),
            actor,
        )
        .await?;
        let into = record(
            &mut tx,
            to,
            LedgerKind::TransferIn,
            received.micro,
            received.reference(Some(from)).as_deref(),
            actor,
        )
        .await?;
        tx.commit().await?;
        Ok((out, into))
    }

    /// Sets the balance to `balance_micro` through an `adjust` ledger row
    /// of the difference (none when it does not change). `NoAccount` when
    /// there is no such account.
    pub async fn set_balance_recorded(
        &self,
        login: &str,
        balance_micro: i64,
        actor: Option<&str>,
        reference: Option<&str>,
    ) -> Result<Option<LedgerEntry>> {
        if balance_micro.unsigned_abs() > MAX_BALANCE_MICRO.unsigned_abs() {
            return Err(BillingError::BalanceLimit);
        }
        // Compare-and-set on the balance read: a debit landing in between
        // makes the update match nothing, and the difference is read again.
        for _ in 0..10 {
            let before = self.money_or_missing(login).await?.balance_micro;
            if before == balance_micro {
                return Ok(None);
            }
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(
                "UPDATE accounts SET balance_micro = ? WHERE login = ? AND balance_micro = ?",
            )
            .bind(balance_micro)
            .bind(login)
            .bind(before)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            let entry = record(
                &mut tx,
                login,
                LedgerKind::Adjust,
                balance_micro - before,
                reference,
                actor,
            )
            .await?;
            tx.commit().await?;
            return Ok(Some(entry));
        }
        Err(BillingError::Store(StoreError::Busy(format!(
            "the balance of {login:?} kept changing"
        ))))
    }

    /// `login`'s ledger, newest first: `limit` rows with ids below `before`.
    pub async fn ledger(
        &self,
        login: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger WHERE login = ? AND id < ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(login)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The sum of `login`'s ledger (equal to its balance: the invariant).
    pub async fn ledger_total(&self, login: &str) -> StoreResult<i64> {
        // Summed here: SUM() of a BIGINT is a DECIMAL on MariaDB, which
        // sqlx's Any driver cannot decode.
        let amounts: Vec<i64> =
            sqlx::query_scalar("SELECT amount_micro FROM ledger WHERE login = ?")
                .bind(login)
                .fetch_all(&self.pool)
                .await?;
        Ok(amounts.iter().sum())
    }

    // ---- reservations ----

    /// Sets `amount_micro` of `login`'s available money aside until
    /// [`Store::settle_reservation`] or [`Store::release_reservation`] (or
    /// `expires_at`). `InsufficientFunds` when less is available.
    pub async fn reserve(
        &self,
        login: &str,
        amount_micro: i64,
        reference: Option<&str>,
        expires_at: i64,
    ) -> Result<i64> {
        self.reserve_call(login, amount_micro, None, reference, expires_at)
            .await
    }

    /// [`Store::reserve`] that also holds `plan.secs` seconds of one of
    /// `login`'s plans (if its free seconds still cover them: `PlanTaken`
    /// otherwise), in the same transaction (shared with the reservations and
    /// settlements made at the same moment).
    pub async fn reserve_call(
        &self,
        login: &str,
        amount_micro: i64,
        plan: Option<PlanHold>,
        reference: Option<&str>,
        expires_at: i64,
    ) -> Result<i64> {
        self.write_reservation(super::money_writer::NewReservation {
            login: login.to_owned(),
            amount_micro,
            plan,
            reference: reference.map(str::to_owned),
            expires_at,
        })
        .await
    }

    /// Ends reservation `id` of `amount_micro` and debits `cost_micro`
    /// (at most the reservation) with a ledger row of `kind`; no row for a
    /// cost of 0. `UnknownReservation` if it was ended already. With `cdr`,
    /// the call's record (which carries the cost) is written in the same
    /// transaction (shared with the reservations and settlements made at
    /// the same moment): a charged call always has its record, and a recorded
    /// charged call its debit. `plan`: the plan seconds the reservation
    /// holds and how many of them the call used (taken off the plan, the
    /// rest freed).
    pub async fn settle_reservation(
        &self,
        id: i64,
        m: &Movement<'_>,
        reserved_micro: i64,
        plan: Option<PlanUse>,
        cdr: Option<&super::calls::Cdr>,
    ) -> Result<Option<LedgerEntry>> {
        self.write_settlement(super::money_writer::Settling {
            id,
            login: m.login.to_owned(),
            kind: m.kind,
            cost_micro: m.amount_micro,
            reference: m.reference.map(str::to_owned),
            actor: m.actor.map(str::to_owned),
            reserved_micro,
            plan,
            cdr: cdr.cloned(),
        })
        .await
    }

    /// Ends reservation `id` without charging anything (its plan seconds,
    /// if any, freed unused).
    pub async fn release_reservation(
        &self,
        id: i64,
        login: &str,
        reserved_micro: i64,
        plan: Option<PlanHold>,
    ) -> Result<()> {
        let m = Movement {
            login,
            kind: LedgerKind::Call,
            amount_micro: 0,
            reference: None,
            actor: None,
        };
        let plan = plan.map(|hold| PlanUse { hold, used_secs: 0 });
        self.settle_reservation(id, &m, reserved_micro, plan, None)
            .await
            .map(|_| ())
    }

    /// Releases reservations past their expiry (their call was never
    /// settled: its node died); how many.
    pub async fn release_expired_reservations(&self, now: i64) -> StoreResult<u64> {
        let rows = sqlx::query(
            "SELECT id, login, amount_micro, account_plan_id, plan_secs FROM balance_reservations \
             WHERE expires_at < ? LIMIT 500",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut released = 0;
        for r in rows {
            let (id, login, amount): (i64, String, i64) = (
                r.try_get("id")?,
                r.try_get("login")?,
                r.try_get("amount_micro")?,
            );
            let plan = match r.try_get::<Option<i64>, _>("account_plan_id")? {
                Some(account_plan_id) => Some(PlanHold {
                    account_plan_id,
                    secs: u32::try_from(r.try_get::<i64, _>("plan_secs")?).map_err(|_| {
                        StoreError::Corrupt("balance_reservations.plan_secs out of range".into())
                    })?,
                }),
                None => None,
            };
            match self.release_reservation(id, &login, amount, plan).await {
                Ok(()) => released += 1,
                // Settled meanwhile.
                Err(BillingError::UnknownReservation) => {}
                Err(BillingError::Store(e)) => return Err(e),
                Err(e) => return Err(StoreError::Invalid(e.to_string())),
            }
        }
        Ok(released)
    }

    // ---- vouchers ----

    /// Stores a batch of vouchers by the keyed hashes of their PINs.
    pub async fn create_vouchers(
        &self,
        batch: &str,
        pin_hashes: &[String],
        value_micro: i64,
        currency: &str,
        expires_at: i64,
    ) -> Result<()> {
        check_amount(value_micro)?;
        let created_at = now();
        let mut tx = self.pool.begin().await?;
        for chunk in pin_hashes.chunks(INSERT_BATCH) {
            let values = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO vouchers (pin_hash, batch, value_micro, currency, created_at, expires_at) \
                 VALUES {values}"
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q
                    .bind(h)
                    .bind(batch)
                    .bind(value_micro)
                    .bind(currency)
                    .bind(created_at)
                    .bind(expires_at);
            }
            q.execute(&mut *tx).await.map_err(|e| {
                if unique_violation(&e).is_some() {
                    BillingError::Store(StoreError::Conflict("voucher PIN".into()))
                } else {
                    e.into()
                }
            })?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Redeems the voucher whose PIN hashes to `pin_hash` for `login`, once:
    /// the voucher is marked and the balance credited in one transaction,
    /// and of two concurrent redemptions only one marks it.
    pub async fn redeem_voucher(&self, pin_hash: &str, login: &str, at: i64) -> Result<Redeemed> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE vouchers SET redeemed_by = ?, redeemed_at = ? \
             WHERE pin_hash = ? AND redeemed_by IS NULL AND expires_at > ?",
        )
        .bind(login)
        .bind(at)
        .bind(pin_hash)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            drop(tx);
            let row = sqlx::query("SELECT redeemed_by FROM vouchers WHERE pin_hash = ?")
                .bind(pin_hash)
                .fetch_optional(&self.pool)
                .await?;
            return Err(match row {
                None => BillingError::VoucherUnknown,
                Some(r) if r.try_get::<Option<String>, _>("redeemed_by")?.is_some() => {
                    BillingError::VoucherRedeemed
                }
                Some(_) => BillingError::VoucherExpired,
            });
        }
        let row =
            sqlx::query("SELECT batch, value_micro, currency FROM vouchers WHERE pin_hash = ?")
                .bind(pin_hash)
                .fetch_one(&mut *tx)
                .await?;
        let batch: String = row.try_get("batch")?;
        let value: i64 = row.try_get("value_micro")?;
        let currency: String = row.try_get("currency")?;
        // A voucher in another currency is worth its value at the rate of
        // the day; any error rolls back, and the voucher stays unredeemed.
        let entry = credit_on(
            &mut tx,
            &Movement {
                login,
                kind: LedgerKind::Voucher,
                amount_micro: value,
                reference: Some(&format!("voucher batch {batch}")),
                actor: Some(login),
            },
            Some(&currency),
        )
        .await?;
        tx.commit().await?;
        Ok(Redeemed {
            batch,
            value_micro: value,
            currency,
            entry,
        })
    }

    /// A batch's size and how much of it was redeemed; `None` if unknown.
    pub async fn voucher_batch(&self, batch: &str) -> StoreResult<Option<VoucherBatch>> {
        let rows = sqlx::query(
            "SELECT value_micro, currency, expires_at, redeemed_by FROM vouchers WHERE batch = ?",
        )
        .bind(batch)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut redeemed = 0;
        for r in &rows {
            if r.try_get::<Option<String>, _>("redeemed_by")?.is_some() {
                redeemed += 1;
            }
        }
        Ok(Some(VoucherBatch {
            batch: batch.to_owned(),
            count: rows.len() as i64,
            redeemed,
            value_micro: first.try_get("value_micro")?,
            currency: first.try_get("currency")?,
            expires_at: first.try_get("expires_at")?,
        }))
    }
}

/// Checks a prefix for `tariff del` (1 to 32 digits).
pub fn check_prefix(prefix: &str) -> StoreResult<()> {
    validate_prefix(prefix).map_err(StoreError::Invalid)
}

/// Checks a settlement before it writes anything: the cost within the
/// reservation, the plan seconds used within those held.
pub(super) fn check_settling(cost: i64, reserved_micro: i64, plan: Option<PlanUse>) -> Result<()> {
    if !(0..=reserved_micro).contains(&cost) {
        return Err(BillingError::Invalid(format!(
            "cost {cost} outside the reservation of {reserved_micro}"
        )));
    }
    if let Some(p) = plan
        && p.used_secs > p.hold.secs
    {
        return Err(BillingError::Invalid(format!(
            "{} plan seconds used of {} held",
            p.used_secs, p.hold.secs
        )));
    }
    Ok(())
}

/// Takes the seconds a settled call used off its plan and frees the rest
/// of those it held.
pub(super) async fn use_plan(conn: &mut AnyConnection, p: PlanUse) -> StoreResult<()> {
    sqlx::query(
        "UPDATE account_plans SET seconds_left = seconds_left - ?, \
         reserved_secs = reserved_secs - ? WHERE id = ?",
    )
    .bind(i64::from(p.used_secs))
    .bind(i64::from(p.hold.secs))
    .bind(p.hold.account_plan_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::billing::tariffs::parse_csv;
    use crate::billing::{Billing, BillingConfig, Refusal};
    use crate::store::testutil::{checked_balance, money_account, test_store, unique};

    fn movement(login: &str, kind: LedgerKind, amount_micro: i64) -> Movement<'_> {
        Movement {
            login,
            kind,
            amount_micro,
            reference: Some("test"),
            actor: Some("test"),
        }
    }

    #[tokio::test]
    async fn tariffs_are_replaced_merged_listed_and_versioned() {
        let store = test_store().await;
        let name = unique("tar");
        let v0 = store.tariff_version().await.unwrap();
        let rows = parse_csv(
            &name,
            "prefix,description,country,currency,price_per_minute,connection_fee,increments,free_seconds,sms_price\n\
             48,Poland,PL,EUR,0.0123,0,60/60,0,0.05\n\
             48600,\"Poland, mobile\",PL,EUR,0.05,0.01,30/6,5,\n",
        )
        .unwrap();
        assert_eq!(store.replace_tariff(&name, &rows).await.unwrap(), 2);
        assert!(store.tariff_version().await.unwrap() > v0);
        assert_eq!(store.tariff_rates(&name).await.unwrap(), rows);
        let summary = store.tariffs().await.unwrap();
        let mine = summary.iter().find(|t| t.name == name).unwrap();
        assert_eq!((mine.currency.as_str(), mine.rows), ("EUR", 2));

        // Merge: a new prefix and a changed one.
        let more = parse_csv(
            &name,
            "prefix,currency,price_per_minute\n48600,EUR,0.04\n44,EUR,0.02\n",
        )
        .unwrap();
        store.merge_tariff(&name, &more).await.unwrap();
        let now = store.tariff_rates(&name).await.unwrap();
        assert_eq!(now.len(), 3);
        let mobile = now.iter().find(|r| r.prefix == "48600").unwrap();
        assert_eq!(mobile.rate.price_micro, 40_000);
        assert_eq!(
            mobile.country, None,
            "a merged row replaces the old one whole"
        );
        assert_eq!(now[0].sms_price_micro, None);

        // A currency that would mix is refused and changes nothing.
        let usd = parse_csv(&name, "prefix,currency,price_per_minute\n1,USD,0.01\n").unwrap();
        let err = store.merge_tariff(&name, &usd).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert_eq!(store.tariff_rates(&name).await.unwrap().len(), 3);

        assert!(store.delete_tariff_rate(&name, "44").await.unwrap());
        assert!(!store.delete_tariff_rate(&name, "44").await.unwrap());
        assert!(
            store
                .all_tariff_rates()
                .await
                .unwrap()
                .iter()
                .any(|r| r.tariff == name)
        );
        store.replace_tariff(&name, &[]).await.unwrap();
        assert!(store.tariff_rates(&name).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn every_balance_change_is_a_ledger_row() {
        let store = test_store().await;
        let login = money_account(&store, "bill", "t", "EUR", 2_500_000).await;
        assert_eq!(
            checked_balance(&store, &login).await,
            2_500_000,
            "opening row"
        );

        let top = store
            .credit(&movement(&login, LedgerKind::Topup, 5_000_000), Some("EUR"))
            .await
            .unwrap();
        assert_eq!(
            (top.amount_micro, top.balance_after_micro),
            (5_000_000, 7_500_000)
        );
        let err = store
            .credit(&movement(&login, LedgerKind::Topup, 1), Some("USD"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, BillingError::CurrencyMismatch { .. }),
            "{err}"
        );
        let sms = store
            .debit(&movement(&login, LedgerKind::Sms, 500_000))
            .await
            .unwrap();
        assert_eq!(
            (sms.amount_micro, sms.balance_after_micro),
            (-500_000, 7_000_000)
        );
        let err = store
            .debit(&movement(&login, LedgerKind::Sms, 7_000_001))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                BillingError::InsufficientFunds {
                    available_micro: 7_000_000
                }
            ),
            "{err}"
        );
        for bad in [0, -1, crate::billing::money::MAX_OPERATION_MICRO + 1] {
            assert!(matches!(
                store.debit(&movement(&login, LedgerKind::Sms, bad)).await,
                Err(BillingError::Invalid(_))
            ));
        }
        let err = store
            .debit(&movement("nobody-here", LedgerKind::Sms, 1))
            .await
            .unwrap_err();
        assert!(matches!(err, BillingError::NoAccount(_)), "{err}");

        // The admin's balance setter goes through the ledger as well.
        assert!(store.set_balance(&login, 1_000_000).await.unwrap());
        assert!(!store.set_balance("nobody-here", 1).await.unwrap());
        assert!(matches!(
            store.set_balance(&login, i64::MIN).await,
            Err(StoreError::Invalid(_))
        ));
        let rows = store.ledger(&login, None, 10).await.unwrap();
        assert_eq!(rows[0].kind, "adjust");
        assert_eq!(rows[0].amount_micro, -6_000_000);
        assert_eq!(rows[0].actor.as_deref(), Some("admin"));
        assert_eq!(rows.len(), 4);
        let page = store.ledger(&login, Some(rows[1].id), 10).await.unwrap();
        assert_eq!(page[0].id, rows[2].id, "paged by id");
        assert_eq!(checked_balance(&store, &login).await, 1_000_000);
        store.delete_account(&login).await.unwrap();
        assert!(store.ledger(&login, None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn transfers_move_money_between_two_accounts_of_one_currency() {
        let store = test_store().await;
        let (a, b) = (
            money_account(&store, "bill", "t", "EUR", 10_000_000).await,
            money_account(&store, "bill", "t", "EUR", 0).await,
        );
        let usd = money_account(&store, "bill", "t", "USD", 0).await;
        let (out, into) = store.transfer(&a, &b, 2_500_000, Some(&a)).await.unwrap();
        assert_eq!(
            (out.kind.as_str(), out.amount_micro),
            ("transfer-out", -2_500_000)
        );
        assert_eq!(out.reference.as_deref(), Some(b.as_str()));
        assert_eq!(
            (into.kind.as_str(), into.balance_after_micro),
            ("transfer-in", 2_500_000)
        );
        for (to, amount, want) in [
            (a.as_str(), 1, "SameAccount"),
            (usd.as_str(), 1, "CurrencyMismatch"),
            (b.as_str(), 7_500_001, "InsufficientFunds"),
            ("nobody-here", 1, "NoAccount"),
        ] {
            let err = store.transfer(&a, to, amount, None).await.unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{err:?}");
        }
        assert_eq!(checked_balance(&store, &a).await, 7_500_000);
        assert_eq!(checked_balance(&store, &b).await, 2_500_000);
    }

    #[tokio::test]
    async fn fifty_concurrent_debits_and_transfers_never_overspend() {
        let store = test_store().await;
        // 30 units; 50 debits of 1 unit race: exactly 30 succeed.
        let login = money_account(&store, "bill", "t", "EUR", 30_000_000).await;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (store, login) = (store.store.clone(), login.clone());
                tokio::spawn(async move {
                    store
                        .debit(&Movement {
                            login: &login,
                            kind: LedgerKind::Call,
                            amount_micro: 1_000_000,
                            reference: None,
                            actor: None,
                        })
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(BillingError::InsufficientFunds { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 30);
        assert_eq!(checked_balance(&store, &login).await, 0);

        // 50 transfers both ways between two accounts holding 10 units
        // together: no account goes below zero, none is created or lost.
        let a = money_account(&store, "bill", "t", "EUR", 5_000_000).await;
        let b = money_account(&store, "bill", "t", "EUR", 5_000_000).await;
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.store.clone();
                let (from, to) = if i % 2 == 0 {
                    (a.clone(), b.clone())
                } else {
                    (b.clone(), a.clone())
                };
                tokio::spawn(async move { store.transfer(&from, &to, 700_000, None).await })
            })
            .collect();
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) | Err(BillingError::InsufficientFunds { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let total = checked_balance(&store, &a).await + checked_balance(&store, &b).await;
        assert_eq!(total, 10_000_000);
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

    async fn tariff(store: &Store, body: &str) -> String {
        let name = unique("tar");
        let rows = parse_csv(&name, &format!("prefix,currency,price_per_minute,connection_fee,increments,free_seconds,sms_price\n{body}")).unwrap();
        store.replace_tariff(&name, &rows).await.unwrap();
        name
    }

    /// A charged OFFNET SMS the vendor never takes is refunded once; one it
    /// takes stays charged.
    #[tokio::test]
    async fn a_charged_sms_that_fails_is_refunded_once() {
        // A private SQLite file even when the suite runs on MariaDB: the
        // hand-over drains the whole shared outbox, other tests' rows too.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let secrets = Arc::new(crate::secrets::Secrets::generate().unwrap());
        let store = Store::open(&url, secrets).await.unwrap();
        let name = tariff(&store, "48,EUR,0.10,0,60/60,0,0.07\n").await;
        let login = money_account(&store, "bill", &name, "EUR", 200_000).await;
        let billing = billing(&store, 14_400);
        let provider = unique("prov");
        for text in [&b"fails"[..], b"goes"] {
            billing
                .queue_sms(&OffnetSms {
                    sender: &login,
                    number: "48600100200",
                    gateway: "carrier",
                    body: text,
                })
                .await
                .unwrap();
        }
        assert_eq!(checked_balance(&store, &login).await, 60_000);
        let now = crate::store::now_secs();
        store
            .hand_over_offnet_sms(&provider, 100, now)
            .await
            .unwrap();
        let mine = store.due_sms(now, 100).await.unwrap();
        assert_eq!(mine.len(), 2);
        for m in &mine {
            assert!(store.claim_sms(m, now + 60, now).await.unwrap());
        }
        let (failing, going) = if mine[0].body == "fails" {
            (&mine[0], &mine[1])
        } else {
            (&mine[1], &mine[0])
        };
        store.sms_accepted(going.id, "v-1", now).await.unwrap();
        store.sms_failed(failing.id, "refused", now).await.unwrap();
        store.sms_failed(failing.id, "refused", now).await.unwrap();
        assert_eq!(
            checked_balance(&store, &login).await,
            130_000,
            "the failed one refunded once"
        );
        let ledger = store.ledger(&login, None, 10).await.unwrap();
        assert_eq!(ledger[0].kind, "sms");
        assert_eq!(ledger[0].amount_micro, 70_000);
    }

    #[tokio::test]
    async fn a_call_is_reserved_then_settled_and_concurrent_calls_share_the_balance() {
        let store = test_store().await;
        // 0.10 a minute per started minute, a fee of 0.01; SMS 0.05 to 48.
        let name = tariff(
            &store,
            "48,EUR,0.10,0.01,60/60,0,0.05\n1,EUR,0.02,0,1/1,0,\n",
        )
        .await;
        let login = money_account(&store, "bill", &name, "EUR", 1_000_000).await;
        let billing = billing(&store, 14_400);

        let auth = billing.authorize(&login, "+48 600 100 200").await.unwrap();
        assert_eq!(auth.rate.prefix, "48");
        assert_eq!(auth.max_secs, 540, "1.00 - 0.01 fee pays 9 whole minutes");
        assert_eq!(auth.reserved_micro, 910_000);
        let money = store.account_money(&login).await.unwrap().unwrap();
        assert_eq!(
            (money.balance_micro, money.reserved_micro),
            (1_000_000, 910_000)
        );
        // A second call gets only what the first left: not a minute.
        let second = billing.authorize(&login, "48600100201").await.unwrap_err();
        assert!(
            matches!(
                second,
                Refusal::NoBalance {
                    available_micro: 90_000
                }
            ),
            "{second}"
        );
        // An SMS takes only unreserved money: 0.05 of the 0.09 left.
        let sms = |number| OffnetSms {
            sender: &login,
            number,
            gateway: "carrier",
            body: b"hi",
        };
        let charged = billing.queue_sms(&sms("48600100200")).await.unwrap();
        assert_eq!(charged.cost_micro, 50_000);
        let queued = store.sms_outbox(10_000).await.unwrap();
        let entry = queued.iter().find(|e| e.id == charged.outbox_id).unwrap();
        assert_eq!(
            (entry.sender.as_str(), entry.charge_micro),
            (login.as_str(), 50_000)
        );
        assert!(
            matches!(
                billing.queue_sms(&sms("12125550100")).await,
                Err(Refusal::NoRate)
            ),
            "no SMS price on prefix 1"
        );
        // Another message would not be paid for by the 0.04 left: refused,
        // and nothing is queued for it.
        assert!(matches!(
            billing.queue_sms(&sms("48600100201")).await,
            Err(Refusal::NoBalance {
                available_micro: 40_000
            })
        ));
        let mine = |q: &[crate::store::messages::SmsOutboxEntry]| {
            q.iter().filter(|e| e.sender == login).count()
        };
        assert_eq!(
            mine(&store.sms_outbox(10_000).await.unwrap()),
            mine(&queued)
        );

        let done = billing.settle(&auth, 61).await.unwrap();
        assert_eq!((done.secs, done.cost_micro), (61, 210_000));
        assert_eq!(
            done.entry.as_ref().unwrap().reference.as_deref(),
            Some("48600100200")
        );
        assert!(
            matches!(
                billing.settle(&auth, 61).await,
                Err(BillingError::UnknownReservation)
            ),
            "never charged twice"
        );
        let money = store.account_money(&login).await.unwrap().unwrap();
        assert_eq!((money.balance_micro, money.reserved_micro), (740_000, 0));

        // Not answered: released, nothing charged.
        let auth = billing.authorize(&login, "12125550100").await.unwrap();
        assert_eq!(auth.rate.prefix, "1");
        billing.release(&auth).await.unwrap();
        // Longer than authorised: charged as max_secs.
        let auth = billing.authorize(&login, "12125550100").await.unwrap();
        let done = billing.settle(&auth, auth.max_secs + 100).await.unwrap();
        assert_eq!(done.secs, auth.max_secs);
        assert_eq!(
            checked_balance(&store, &login).await,
            740_000 - done.cost_micro
        );

        for (number, want) in [("44123", "NoRate"), ("alice", "NoRate")] {
            let err = billing.authorize(&login, number).await.unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{number}: {err:?}");
        }
        assert!(matches!(
            billing.authorize("nobody-here", "48").await,
            Err(Refusal::UnknownAccount)
        ));
        let usd = money_account(&store, "bill", &name, "USD", 1_000_000).await;
        assert!(matches!(
            billing.authorize(&usd, "48600").await,
            Err(Refusal::CurrencyMismatch { .. })
        ));
        store.set_account_active(&usd, false).await.unwrap();
        assert!(matches!(
            billing.authorize(&usd, "48600").await,
            Err(Refusal::Inactive)
        ));

        // Twenty calls at once, each capped at one minute (0.11 with the
        // fee) on a balance of 1.00: nine get through, all are settled at
        // their longest, and the balance ends at 0.01, never below.
        let capped = self::billing(&store, 60);
        let rich = money_account(&store, "bill", &name, "EUR", 1_000_000).await;
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (billing, rich) = (capped.clone(), rich.clone());
                tokio::spawn(async move {
                    let auth = billing.authorize(&rich, "48600").await?;
                    tokio::task::yield_now().await;
                    billing.settle(&auth, 3_600).await.map_err(Refusal::Failed)
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(s) => {
                    assert_eq!(s.cost_micro, 110_000);
                    ok += 1;
                }
                Err(Refusal::NoBalance { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 9);
        assert_eq!(checked_balance(&store, &rich).await, 10_000);
    }

    #[tokio::test]
    async fn expired_reservations_are_released() {
        let store = test_store().await;
        let login = money_account(&store, "bill", "t", "EUR", 1_000_000).await;
        let id = store
            .reserve(&login, 400_000, Some("48"), 100)
            .await
            .unwrap();
        assert!(matches!(
            store.reserve(&login, 600_001, None, i64::MAX).await,
            Err(BillingError::InsufficientFunds {
                available_micro: 600_000
            })
        ));
        assert!(store.release_expired_reservations(101).await.unwrap() >= 1);
        let money = store.account_money(&login).await.unwrap().unwrap();
        assert_eq!(money.reserved_micro, 0);
        assert!(matches!(
            store.release_reservation(id, &login, 400_000, None).await,
            Err(BillingError::UnknownReservation)
        ));
    }

    #[tokio::test]
    async fn a_voucher_is_redeemed_once_even_by_racing_users() {
        let store = test_store().await;
        let billing = billing(&store, 14_400);
        let batch = billing
            .create_vouchers(3, 5_000_000, "eur", Some(30))
            .await
            .unwrap();
        assert_eq!(batch.pins.len(), 3);
        assert_eq!(batch.currency, "EUR");
        let users: Vec<String> = futures_util::future::join_all(
            (0..10).map(|_| money_account(&store, "bill", "t", "EUR", 0)),
        )
        .await;
        let pin = batch.pins[0].clone();
        let tasks: Vec<_> = users
            .iter()
            .map(|u| {
                let (billing, u, pin) = (billing.clone(), u.clone(), pin.clone());
                tokio::spawn(async move { billing.redeem(&u, &pin).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    assert_eq!(
                        (r.value_micro, r.entry.kind.as_str()),
                        (5_000_000, "voucher")
                    );
                    ok += 1;
                }
                Err(BillingError::VoucherRedeemed) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 1);
        let mut total = 0;
        for u in &users {
            total += checked_balance(&store, u).await;
        }
        assert_eq!(total, 5_000_000);

        // Another currency: refused, and the voucher stays good.
        let usd = money_account(&store, "bill", "t", "USD", 0).await;
        let spaced = format!("{} {}", &batch.pins[1][..8], &batch.pins[1][8..]);
        assert!(matches!(
            billing.redeem(&usd, &spaced).await,
            Err(BillingError::CurrencyMismatch { .. })
        ));
        billing.redeem(&users[0], &spaced).await.unwrap();
        assert!(matches!(
            billing.redeem(&users[0], "1234567890123456").await,
            Err(BillingError::VoucherUnknown)
        ));
        assert!(matches!(
            billing.redeem(&users[0], "12").await,
            Err(BillingError::VoucherUnknown)
        ));
        // Expired: redeemed "in a year".
        let hash = billing.pin_hash(&batch.pins[2]);
        assert!(matches!(
            store
                .redeem_voucher(&hash, &users[0], batch.expires_at)
                .await,
            Err(BillingError::VoucherExpired)
        ));
        let summary = store.voucher_batch(&batch.batch).await.unwrap().unwrap();
        assert_eq!((summary.count, summary.redeemed), (3, 2));
        for (count, value, currency) in [
            (0, 1, "EUR"),
            (10_001, 1, "EUR"),
            (1, 1, "EUR"),
            (1, 1_000_000, "XXX"),
        ] {
            assert!(
                matches!(
                    billing.create_vouchers(count, value, currency, None).await,
                    Err(BillingError::Invalid(_))
                ),
                "{count} {value} {currency}"
            );
        }
    }

    #[tokio::test]
    async fn the_service_sees_tariff_changes_after_a_refresh() {
        let store = test_store().await;
        let billing = billing(&store, 14_400);
        let name = tariff(&store, "48,EUR,0.10,0,60/60,0,\n").await;
        assert_eq!(
            billing.rate(&name, "4860").await.unwrap().unwrap().prefix,
            "48"
        );
        let rows = parse_csv(&name, "prefix,currency,price_per_minute\n486,EUR,0.2\n").unwrap();
        store.merge_tariff(&name, &rows).await.unwrap();
        assert_eq!(
            billing.rate(&name, "4860").await.unwrap().unwrap().prefix,
            "48",
            "stale until refreshed"
        );
        assert!(billing.refresh().await.unwrap());
        assert!(!billing.refresh().await.unwrap(), "nothing new");
        assert_eq!(
            billing.rate(&name, "4860").await.unwrap().unwrap().prefix,
            "486"
        );
    }

    /// Calls, messages, credits, vouchers, transfers, plans and numbers in
    /// another currency than the account's convert at the operator's rate,
    /// and are refused as before without one.
    #[tokio::test]
    async fn money_in_another_currency_converts_at_the_operators_rate() {
        use crate::billing::fx::parse_rate;
        use crate::billing::plans::Plan;
        use crate::store::did_pool::NewPoolNumber;
        use crate::store::testutil::unique_digits;

        let store = test_store().await;
        // GBP and PLN belong to this test alone: the MariaDB test database
        // is shared, and the others expect no rate between their currencies.
        let prefix = format!("44{}", unique_digits(6));
        let name = tariff(&store, &format!("{prefix},PLN,0.50,0.10,1/1,0,0.25\n")).await;
        let gbp = money_account(&store, "fx", &name, "GBP", 1_000_000).await;
        let billing = billing(&store, 14_400);
        let number = format!("{prefix}123");
        assert!(
            matches!(
                billing.authorize(&gbp, &number).await,
                Err(Refusal::CurrencyMismatch { .. })
            ),
            "no rate yet"
        );
        assert!(matches!(
            store
                .credit(&movement(&gbp, LedgerKind::Topup, 1_000_000), Some("PLN"))
                .await,
            Err(BillingError::CurrencyMismatch { .. })
        ));

        store
            .set_exchange_rate("GBP", "PLN", parse_rate("5").unwrap())
            .await
            .unwrap();
        billing.refresh().await.unwrap();

        // A call: priced, cut and charged in GBP (0.50 PLN a minute = 0.10
        // GBP, the 0.10 PLN fee = 0.02 GBP).
        let auth = billing.authorize(&gbp, &number).await.unwrap();
        assert_eq!(auth.rate.currency, "GBP");
        assert_eq!(
            (
                auth.rate.rate.price_micro,
                auth.rate.rate.connection_fee_micro
            ),
            (100_000, 20_000)
        );
        assert_eq!(auth.max_secs, 588, "0.98 after the fee pays 588 s");
        let done = billing.settle(&auth, 60).await.unwrap();
        assert_eq!(done.cost_micro, 120_000);
        assert_eq!(done.entry.unwrap().currency, "GBP");
        assert_eq!(checked_balance(&store, &gbp).await, 880_000);

        // A top-up in PLN: 2.00 PLN = 0.40 GBP, the conversion noted.
        let entry = store
            .credit(
                &Movement {
                    reference: Some("pay-1"),
                    ..movement(&gbp, LedgerKind::Topup, 2_000_000)
                },
                Some("PLN"),
            )
            .await
            .unwrap();
        assert_eq!(
            (entry.amount_micro, entry.currency.as_str()),
            (400_000, "GBP")
        );
        assert_eq!(entry.reference.as_deref(), Some("pay-1 (from 2.00 PLN)"));
        // No rate between GBP and USD: refused, nothing credited.
        assert!(matches!(
            store
                .credit(&movement(&gbp, LedgerKind::Topup, 1_000_000), Some("USD"))
                .await,
            Err(BillingError::CurrencyMismatch { .. })
        ));
        assert_eq!(checked_balance(&store, &gbp).await, 1_280_000);

        // A voucher of 5.00 PLN redeemed by the GBP account: 1.00 GBP.
        let made = billing
            .create_vouchers(1, 5_000_000, "PLN", None)
            .await
            .unwrap();
        let redeemed = billing.redeem(&gbp, &made.pins[0]).await.unwrap();
        assert_eq!(
            (redeemed.value_micro, redeemed.currency.as_str()),
            (5_000_000, "PLN")
        );
        assert_eq!(redeemed.entry.amount_micro, 1_000_000);
        assert_eq!(checked_balance(&store, &gbp).await, 2_280_000);

        // Transfers both ways: 1.00 GBP arrives as 5.00 PLN; 0.03 PLN as
        // 0.006 GBP.
        let pln = money_account(&store, "fx", &name, "PLN", 0).await;
        let (out, into) = store.transfer(&gbp, &pln, 1_000_000, None).await.unwrap();
        assert_eq!(
            (out.amount_micro, into.amount_micro),
            (-1_000_000, 5_000_000)
        );
        assert_eq!(into.reference, Some(format!("{gbp} (from 1.00 GBP)")));
        let (_, into) = store.transfer(&pln, &gbp, 30_000, None).await.unwrap();
        assert_eq!(into.amount_micro, 6_000);
        assert_eq!(checked_balance(&store, &gbp).await, 1_286_000);
        assert_eq!(checked_balance(&store, &pln).await, 4_970_000);

        // A plan priced 2.50 PLN costs 0.50 GBP.
        let plan = unique("fxplan");
        store
            .put_plan(&Plan {
                name: plan.clone(),
                description: String::new(),
                price_micro: 2_500_000,
                currency: "PLN".into(),
                seconds: 600,
                prefixes: vec![],
                validity_days: 30,
                recurring: false,
                for_sale: true,
                created_at: 0,
            })
            .await
            .unwrap();
        let (_, entry) = store.buy_plan(&gbp, &plan).await.unwrap();
        assert_eq!(entry.amount_micro, -500_000);
        assert_eq!(
            entry.reference,
            Some(format!("plan {plan} (from 2.50 PLN)"))
        );

        // A number with fees in PLN (0.50 setup, 2.00 a month): 0.50 GBP.
        let did = format!("48{}", unique_digits(9));
        store
            .import_did_pool(&[NewPoolNumber {
                number: did.clone(),
                country: Some("PL".into()),
                description: "Warsaw".into(),
                currency: "PLN".into(),
                monthly_fee_micro: 2_000_000,
                setup_fee_micro: 500_000,
            }])
            .await
            .unwrap();
        let ordered = store.order_did(&gbp, &did, now() + 86_400).await.unwrap();
        assert_eq!(ordered.charged_micro, 500_000);
        assert_eq!(
            checked_balance(&store, &gbp).await,
            1_286_000 - 500_000 - 500_000
        );

        // The rate deleted: refused again, on this node at its next reload.
        assert!(store.delete_exchange_rate("PLN", "GBP").await.unwrap());
        billing.refresh().await.unwrap();
        assert!(matches!(
            billing.authorize(&gbp, &number).await,
            Err(Refusal::CurrencyMismatch { .. })
        ));
    }
}
