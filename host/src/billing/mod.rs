//! Billing (SPEC §10): tariffs, rating, prepaid balances, vouchers and
//! transfers — the money side the call path charges through.
//!
//! - [`dids`]: numbers for sale, ordered and renewed from the balance;
//! - [`money`]: exact amounts (micro units, decimal strings, ISO 4217);
//! - [`plans`]: bundles of call seconds bought from the balance;
//! - [`rating`]: what a call costs and how long a balance lasts (pure);
//! - [`tariffs`]: tariff rows, their CSV form, the in-memory prefix tables;
//! - [`Billing`]: the service the call path and the APIs use; the tables
//!   and the ledger are in [`crate::store::billing`].
//!
//! # Charging a call: reserve, then settle
//!
//! [`Billing::authorize`] finds the rate (longest prefix of the dialled
//! number in the account's tariff), works out the longest call the
//! available money pays for ([`rating::max_secs`], capped by
//! `billing.max_call_secs`) and **reserves** its cost: one conditional
//! update adds it to `accounts.reserved_micro` only if `balance -
//! reserved` still covers it. A second call of the same account therefore
//! only gets what the first left, and no interleaving of calls, SMS,
//! transfers and top-ups can spend money twice. The call path cuts the call
//! at `max_secs`. [`Billing::settle`] then debits the real cost of the
//! billed seconds (never more than the reservation) with its `call` ledger
//! row and frees the reservation, in one transaction;
//! [`Billing::release`] frees it without a charge (the call was not
//! answered). A reservation nobody settled (its node died) is released
//! `billing.reservation_grace_secs` after the call's latest end.
//!
//! An account's [`plans`] pay before the balance: the reservation also
//! holds seconds of the plan covering the number, and the settlement takes
//! the answered seconds off the plan first.

pub mod dids;
pub mod fx;
pub mod money;
pub mod plans;
pub mod rating;
pub mod tariffs;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

pub use crate::store::billing::{
    AccountMoney, BillingError, LedgerEntry, LedgerKind, Movement, Redeemed,
};
use crate::store::messages::OffnetSms;
use crate::store::{Store, StoreError};
use fx::FxTable;
use tariffs::{TariffRate, TariffSet};

/// `[billing]`: limits and timers of the money side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    /// Largest user-to-user transfer, micro units of the sender's currency.
    pub transfer_max_micro: i64,
    /// Longest call one authorisation covers, seconds: it caps what is
    /// reserved for a call, and the call path cuts the call then.
    pub max_call_secs: u32,
    /// How often a node checks whether a tariff changed, seconds.
    pub tariff_poll_secs: u64,
    /// How long after a call's latest possible end an unsettled
    /// reservation is released, seconds.
    pub reservation_grace_secs: u64,
    /// Days a voucher is valid when its batch says nothing.
    pub voucher_days: u32,
    /// Prepaid OFFNET calls: a call from an account to a gateway is
    /// authorised against the account's tariff and balance (refused with
    /// 402 or 403 otherwise), cut when the money runs out, and charged at
    /// its end. Off by default: a fresh switch has no tariffs.
    pub prepaid_calls: bool,
    /// Prepaid OFFNET messages: a MESSAGE from an account to a number the
    /// routing sends to the SMS provider is charged at its tariff row's SMS
    /// price before it is accepted (refused with 402 or 403 otherwise), and
    /// refunded if the vendor never takes it. Off by default.
    pub prepaid_sms: bool,
    /// Shared secret of the payment page's webhook (`POST
    /// /v1/payments/webhook`, HMAC-SHA256 signed); empty: no webhook.
    pub payment_webhook_secret: String,
    /// Days one paid period of an ordered DID lasts (at least 1): the
    /// order pays the first, each renewal the next ([`dids`]).
    pub did_period_days: u32,
    /// Days an ordered DID keeps ringing after its period ended unpaid,
    /// before it goes back to the pool (0: at once).
    pub did_grace_days: u32,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            // Enough to share credit with family; small enough that a stolen
            // session cannot empty a large balance at once.
            transfer_max_micro: 50 * money::MICRO,
            // calls.max_duration_secs' default: four hours.
            max_call_secs: 14_400,
            // Other nodes see a changed tariff within seconds, for one tiny
            // query per poll.
            tariff_poll_secs: 5,
            // A settle arrives right after the call; an hour covers a
            // database outage at the end of the call.
            reservation_grace_secs: 3_600,
            voucher_days: 365,
            prepaid_calls: false,
            prepaid_sms: false,
            payment_webhook_secret: String::new(),
            // "Monthly": the same length every time, whatever the month.
            did_period_days: 30,
            // A top-up a few days late keeps a number the user may have
            // handed out; it cannot be got back once someone else orders it.
            did_grace_days: 3,
        }
    }
}

/// Why a call or message is refused before it starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No such account.
    #[error("no such account")]
    UnknownAccount,
    /// The account is disabled.
    #[error("the account is not active")]
    Inactive,
    /// The account's tariff prices nothing for this number (for an SMS: no
    /// SMS price), or the number is not digits.
    #[error("no rate for this number")]
    NoRate,
    /// The rate is in another currency than the account's balance, and no
    /// exchange rate converts it.
    #[error("the rate is in {rate}, the balance in {account}, and no exchange rate converts it")]
    CurrencyMismatch { account: String, rate: String },
    /// The money available does not pay the fee and the first increment
    /// (for an SMS: its price).
    #[error("insufficient funds ({available_micro} micro available)")]
    NoBalance { available_micro: i64 },
    /// The database failed: the caller decides whether to let it through.
    #[error("billing unavailable: {0}")]
    Failed(BillingError),
}

impl Refusal {
    /// The SIP answer a call or MESSAGE refused for this reason gets: 402
    /// when money is short, 403 when nothing would ever sell it, 503 when
    /// billing cannot tell (the client may try again later).
    pub fn sip_status(&self) -> (u16, &'static str) {
        match self {
            Refusal::NoBalance { .. } => (402, "Payment Required - insufficient funds"),
            Refusal::NoRate => (403, "Forbidden - no rate for this number"),
            Refusal::CurrencyMismatch { .. } => (403, "Forbidden - rate in another currency"),
            Refusal::Inactive | Refusal::UnknownAccount => (403, "Forbidden"),
            Refusal::Failed(_) => (503, "Service Unavailable - billing unavailable"),
        }
    }
}

/// A call the balance pays for: what [`Billing::settle`] needs at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authorization {
    pub reservation_id: i64,
    pub login: String,
    /// The dialled number (digits).
    pub number: String,
    /// The tariff row that prices it.
    pub rate: TariffRate,
    /// Cut the call after this many seconds.
    pub max_secs: u32,
    /// Set aside: the cost of `max_secs` (less the plan's seconds).
    pub reserved_micro: i64,
    /// The plan seconds that pay for the start of the call, before the
    /// balance ([`plans`]).
    pub plan: Option<plans::PlanHold>,
}

impl Authorization {
    /// How the balance prices the seconds after the plan's: with a plan,
    /// the free seconds are gone (the plan paid the start of the call).
    fn balance_rate(&self) -> rating::Rate {
        balance_rate(&self.rate.rate, self.plan.is_some())
    }
}

fn balance_rate(rate: &rating::Rate, after_plan: bool) -> rating::Rate {
    if after_plan {
        rating::Rate {
            free_seconds: 0,
            ..*rate
        }
    } else {
        *rate
    }
}

/// A settled call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settlement {
    /// Seconds charged (the billed ones, at most `max_secs`).
    pub secs: u32,
    /// Of them, the seconds a plan paid.
    pub plan_secs: u32,
    /// What the balance paid for the rest.
    pub cost_micro: i64,
    /// The `call` ledger row; none for a cost of 0.
    pub entry: Option<LedgerEntry>,
}

/// A charged message, queued for the SMS provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmsCharge {
    /// Its row in the SMS outbox.
    pub outbox_id: i64,
    pub rate: TariffRate,
    pub cost_micro: i64,
    /// None for a price of 0.
    pub entry: Option<LedgerEntry>,
}

/// A new batch of vouchers with their PINs (shown once: only a keyed hash
/// of each is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewVouchers {
    pub batch: String,
    pub value_micro: i64,
    pub currency: String,
    pub expires_at: i64,
    pub pins: Vec<String>,
}

/// Digits of a voucher PIN: 10^16 PINs, so guessing one of even a million
/// live vouchers takes ~10^10 tries, against a rate limit of a few a minute.
pub const PIN_DIGITS: usize = 16;
/// Most vouchers one batch may hold.
pub const MAX_BATCH: u32 = 10_000;

/// The digits of a dialled number (`+` and separators dropped), if it is
/// one.
pub fn number_digits(number: &str) -> Option<String> {
    let digits: String = number
        .trim()
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    (!digits.is_empty()
        && digits.len() <= tariffs::PREFIX_MAX
        && digits.bytes().all(|b| b.is_ascii_digit()))
    .then_some(digits)
}

/// The billing service: one per process, shared by the call path and the
/// APIs ([`crate::app::App::billing`]).
pub struct Billing {
    store: Store,
    config: BillingConfig,
    tariffs: ArcSwap<TariffSet>,
    /// The exchange rates, reloaded with the tariffs (a change bumps the
    /// same version).
    fx: ArcSwap<FxTable>,
    /// One reload at a time.
    reload: tokio::sync::Mutex<()>,
    pin_key: hmac::Key,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing")
            .field("config", &self.config)
            .field("tariff_version", &self.tariffs.load().version)
            .finish_non_exhaustive()
    }
}

impl Billing {
    pub fn new(store: Store, config: BillingConfig) -> Arc<Billing> {
        let pin_key = hmac::Key::new(hmac::HMAC_SHA256, &store.secrets().derive("voucher-pins"));
        Arc::new(Billing {
            store,
            config,
            tariffs: ArcSwap::from_pointee(TariffSet::unloaded()),
            fx: ArcSwap::from_pointee(FxTable::default()),
            reload: tokio::sync::Mutex::new(()),
            pin_key,
        })
    }

    pub fn config(&self) -> &BillingConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Polls the tariff version every `tariff_poll_secs` (reloading the
    /// tables when it moved), releases expired reservations, and ends or
    /// renews plans at the end of their period.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let billing = Arc::downgrade(self);
        let every = Duration::from_secs(self.config.tariff_poll_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(billing) = billing.upgrade() else {
                    return;
                };
                if let Err(e) = billing.refresh().await {
                    tracing::warn!(error = %e, "tariff reload failed; the loaded tariffs stay");
                }
                match billing
                    .store
                    .release_expired_reservations(crate::store::now_secs())
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        released = n,
                        "balance reservations of calls never settled were released"
                    ),
                    Err(e) => tracing::warn!(error = %e, "releasing expired reservations failed"),
                }
                match billing.store.sweep_plans(crate::store::now_secs()).await {
                    Ok(s) if s.expired + s.renewed > 0 => {
                        tracing::info!(
                            expired = s.expired,
                            renewed = s.renewed,
                            "plans at the end of their period"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "ending or renewing plans failed"),
                }
            }
        })
    }

    /// Reloads the tariffs if their version moved; whether it did.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        let _one = self.reload.lock().await;
        let version = self.store.tariff_version().await?;
        if version == self.tariffs.load().version {
            return Ok(false);
        }
        // Version first, rows second: a change in between is loaded now
        // and again at the next poll, never missed.
        let rows = self.store.all_tariff_rates().await?;
        let fx = self.store.fx_table().await?;
        let set = TariffSet::build(version, rows);
        tracing::info!(version, rows = set.len(), "tariffs loaded");
        // Rates first: whoever sees the new tariffs sees their rates.
        self.fx.store(Arc::new(fx));
        self.tariffs.store(Arc::new(set));
        Ok(true)
    }

    /// The tariffs in memory (loaded on first use).
    pub async fn tariffs(&self) -> Result<Arc<TariffSet>, StoreError> {
        let current = self.tariffs.load_full();
        if current.version >= 0 {
            return Ok(current);
        }
        self.refresh().await?;
        Ok(self.tariffs.load_full())
    }

    /// The exchange rates in memory (those loaded with the tariffs).
    pub async fn fx(&self) -> Result<Arc<FxTable>, StoreError> {
        self.tariffs().await?;
        Ok(self.fx.load_full())
    }

    /// The row of `tariff` with the longest prefix of `number`.
    pub async fn rate(&self, tariff: &str, number: &str) -> Result<Option<TariffRate>, StoreError> {
        let Some(digits) = number_digits(number) else {
            return Ok(None);
        };
        Ok(self.tariffs().await?.lookup(tariff, &digits).cloned())
    }

    /// The account (and whether it holds an active plan), its rate for
    /// `number`, checked against each other.
    async fn priced(
        &self,
        login: &str,
        number: &str,
    ) -> Result<(AccountMoney, bool, TariffRate, String), Refusal> {
        let (account, plans) = self
            .store
            .call_money(login)
            .await
            .map_err(|e| Refusal::Failed(e.into()))?
            .ok_or(Refusal::UnknownAccount)?;
        if !account.active {
            return Err(Refusal::Inactive);
        }
        let digits = number_digits(number).ok_or(Refusal::NoRate)?;
        let failed = |e: StoreError| Refusal::Failed(e.into());
        let mut rate = self
            .tariffs()
            .await
            .map_err(failed)?
            .lookup(&account.tariff, &digits)
            .cloned();
        // A miss may be a tariff imported since the last poll (on this node
        // or another): one look at the version row, and the new table.
        if rate.is_none() && self.refresh().await.map_err(failed)? {
            rate = self
                .tariffs()
                .await
                .map_err(failed)?
                .lookup(&account.tariff, &digits)
                .cloned();
        }
        let rate = rate.ok_or(Refusal::NoRate)?;
        // A tariff in another currency prices in the account's at the
        // stored rate (prices rounded up), so the call is authorised, cut
        // and settled in the account's currency.
        let rate = if rate.currency == account.currency {
            rate
        } else {
            let Some(converted) = self.fx.load().convert_rate(&rate, &account.currency) else {
                return Err(Refusal::CurrencyMismatch {
                    account: account.currency,
                    rate: rate.currency,
                });
            };
            converted
        };
        Ok((account, plans, rate, digits))
    }

    /// Authorises a call from `login` to `number` (E.164 digits): the rate,
    /// the longest call the available money pays for, and a reservation of
    /// its cost (see the module documentation).
    pub async fn authorize(&self, login: &str, number: &str) -> Result<Authorization, Refusal> {
        let mut available = 0;
        // A concurrent debit between the read and the reservation makes the
        // reservation fail; the second look sees the new balance.
        // Likewise a concurrent call taking the plan's seconds.
        for _ in 0..5 {
            let (account, plans, rate, digits) = self.priced(login, number).await?;
            available = account.available_micro();
            let now = crate::store::now_secs();
            let cap = self.config.max_call_secs;
            let plan = if plans {
                self.store
                    .plan_for_call(login, &digits, now)
                    .await
                    .map_err(|e| Refusal::Failed(e.into()))?
            } else {
                None
            };
            let plan = plan
                .map(|p| plans::PlanHold {
                    account_plan_id: p.id,
                    secs: p.usable_secs(now).min(cap),
                })
                .filter(|h| h.secs > 0);
            let plan_secs = plan.map_or(0, |h| h.secs);
            let money_rate = balance_rate(&rate.rate, plan.is_some());
            let money_secs = rating::max_secs(&money_rate, available, cap - plan_secs);
            let max_secs = plan_secs + money_secs;
            if max_secs == 0 {
                return Err(Refusal::NoBalance {
                    available_micro: available,
                });
            }
            let reserved = rating::cost(&money_rate, money_secs);
            let expires_at = now
                + i64::from(max_secs)
                + i64::try_from(self.config.reservation_grace_secs).unwrap_or(i64::MAX / 4);
            match self
                .store
                .reserve_call(login, reserved, plan, Some(&digits), expires_at)
                .await
            {
                Ok(reservation_id) => {
                    return Ok(Authorization {
                        reservation_id,
                        login: login.to_owned(),
                        number: digits,
                        rate,
                        max_secs,
                        reserved_micro: reserved,
                        plan,
                    });
                }
                Err(BillingError::InsufficientFunds { .. } | BillingError::PlanTaken) => continue,
                Err(BillingError::NoAccount(_)) => return Err(Refusal::UnknownAccount),
                Err(e) => return Err(Refusal::Failed(e)),
            }
        }
        Err(Refusal::NoBalance {
            available_micro: available,
        })
    }

    /// Ends an authorised call that lasted `billed_secs` seconds (answered;
    /// more than `max_secs` is charged as `max_secs`): debits its cost with
    /// a `call` ledger row referencing the number and frees the rest of the
    /// reservation, in one transaction. `UnknownReservation` if it was
    /// settled or released already (nothing is charged twice).
    pub async fn settle(
        &self,
        auth: &Authorization,
        billed_secs: u32,
    ) -> Result<Settlement, BillingError> {
        self.charge(auth, billed_secs, None).await
    }

    /// [`Billing::settle`] for a call through the switch: its call record,
    /// carrying the cost, is written in the debit's transaction, and the
    /// ledger row names the call's Call-ID.
    pub async fn settle_call(
        &self,
        auth: &Authorization,
        billed_secs: u32,
        cdr: &crate::store::calls::Cdr,
    ) -> Result<Settlement, BillingError> {
        self.charge(auth, billed_secs, Some(cdr)).await
    }

    async fn charge(
        &self,
        auth: &Authorization,
        billed_secs: u32,
        cdr: Option<&crate::store::calls::Cdr>,
    ) -> Result<Settlement, BillingError> {
        let secs = billed_secs.min(auth.max_secs);
        // The plan's seconds first, per second; the balance pays the rest.
        let plan = auth.plan.map(|hold| plans::PlanUse {
            hold,
            used_secs: secs.min(hold.secs),
        });
        let plan_secs = plan.map_or(0, |p| p.used_secs);
        let cost = rating::cost(&auth.balance_rate(), secs - plan_secs).min(auth.reserved_micro);
        let cdr = cdr.map(|cdr| crate::store::calls::Cdr {
            cost_micro: Some(cost),
            ..cdr.clone()
        });
        let reference = cdr.as_ref().map_or(&auth.number, |c| &c.call_id);
        let entry = self
            .store
            .settle_reservation(
                auth.reservation_id,
                &Movement {
                    login: &auth.login,
                    kind: LedgerKind::Call,
                    amount_micro: cost,
                    reference: Some(reference),
                    actor: Some("system"),
                },
                auth.reserved_micro,
                plan,
                cdr.as_ref(),
            )
            .await?;
        Ok(Settlement {
            secs,
            plan_secs,
            cost_micro: cost,
            entry,
        })
    }

    /// Frees an authorised call's reservation without a charge (it was
    /// never answered).
    pub async fn release(&self, auth: &Authorization) -> Result<(), BillingError> {
        self.store
            .release_reservation(
                auth.reservation_id,
                &auth.login,
                auth.reserved_micro,
                auth.plan,
            )
            .await
    }

    /// Queues an OFFNET message of `login` for the SMS provider and charges
    /// it at its rate row's `sms_price_micro` (rows without one do not sell
    /// messages: [`Refusal::NoRate`]), with an `sms` ledger row, if the
    /// available money covers it: both in one transaction. A message the
    /// vendor never accepts is refunded when it fails
    /// ([`Store::sms_failed`]).
    pub async fn queue_sms(&self, sms: &OffnetSms<'_>) -> Result<SmsCharge, Refusal> {
        let (_, _, rate, digits) = self.priced(sms.sender, sms.number).await?;
        let price = rate.sms_price_micro.ok_or(Refusal::NoRate)?;
        if price == 0 {
            let outbox_id = self
                .store
                .queue_sms(sms)
                .await
                .map_err(|e| Refusal::Failed(e.into()))?;
            return Ok(SmsCharge {
                outbox_id,
                rate,
                cost_micro: 0,
                entry: None,
            });
        }
        let movement = Movement {
            login: sms.sender,
            kind: LedgerKind::Sms,
            amount_micro: price,
            reference: Some(&digits),
            actor: Some("system"),
        };
        match self.store.queue_charged_sms(sms, &movement).await {
            Ok((outbox_id, entry)) => Ok(SmsCharge {
                outbox_id,
                rate,
                cost_micro: price,
                entry: Some(entry),
            }),
            Err(BillingError::InsufficientFunds { available_micro }) => {
                Err(Refusal::NoBalance { available_micro })
            }
            Err(BillingError::NoAccount(_)) => Err(Refusal::UnknownAccount),
            Err(e) => Err(Refusal::Failed(e)),
        }
    }

    /// The keyed hash a PIN is stored as.
    pub fn pin_hash(&self, pin: &str) -> String {
        hex::encode(hmac::sign(&self.pin_key, pin.as_bytes()).as_ref())
    }

    /// Creates `count` vouchers worth `value_micro` of `currency` (ISO
    /// 4217, whole minor units), valid for `days` days (the configured
    /// default when `None`).
    pub async fn create_vouchers(
        &self,
        count: u32,
        value_micro: i64,
        currency: &str,
        days: Option<u32>,
    ) -> Result<NewVouchers, BillingError> {
        let currency = money::currency(currency).ok_or_else(|| {
            BillingError::Invalid(format!("{currency:?} is not an ISO 4217 currency"))
        })?;
        if !(1..=MAX_BATCH).contains(&count) {
            return Err(BillingError::Invalid(format!(
                "count {count}: 1 to {MAX_BATCH} vouchers a batch"
            )));
        }
        let days = days.unwrap_or(self.config.voucher_days);
        if !(1..=3650).contains(&days) {
            return Err(BillingError::Invalid(format!("{days} days: 1 to 3650")));
        }
        let minor = 10i64.pow(6 - currency.exponent);
        if value_micro % minor != 0 {
            return Err(BillingError::Invalid(format!(
                "a voucher in {currency} is worth whole minor units"
            )));
        }
        let rng = SystemRandom::new();
        let mut pins = Vec::with_capacity(count as usize);
        let mut seen = std::collections::HashSet::new();
        while pins.len() < count as usize {
            let pin = random_pin(&rng)?;
            if seen.insert(pin.clone()) {
                pins.push(pin);
            }
        }
        let hashes: Vec<String> = pins.iter().map(|p| self.pin_hash(p)).collect();
        let mut batch_id = [0u8; 8];
        rng.fill(&mut batch_id)
            .map_err(|_| BillingError::Invalid("no randomness".into()))?;
        let batch = hex::encode(batch_id);
        let expires_at = crate::store::now_secs() + i64::from(days) * 86_400;
        self.store
            .create_vouchers(&batch, &hashes, value_micro, currency.code, expires_at)
            .await?;
        Ok(NewVouchers {
            batch,
            value_micro,
            currency: currency.code.to_owned(),
            expires_at,
            pins,
        })
    }

    /// Redeems a PIN (spaces and dashes ignored) for `login`, once.
    pub async fn redeem(&self, login: &str, pin: &str) -> Result<Redeemed, BillingError> {
        let digits: String = pin.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.len() != PIN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BillingError::VoucherUnknown);
        }
        self.store
            .redeem_voucher(&self.pin_hash(&digits), login, crate::store::now_secs())
            .await
    }

    /// A user's transfer of `amount_micro` to another account, within
    /// `billing.transfer_max_micro`.
    pub async fn transfer(
        &self,
        from: &str,
        to: &str,
        amount_micro: i64,
    ) -> Result<(LedgerEntry, LedgerEntry), BillingError> {
        if amount_micro > self.config.transfer_max_micro {
            return Err(BillingError::TransferLimit {
                max_micro: self.config.transfer_max_micro,
            });
        }
        self.store
            .transfer(from, to, amount_micro, Some(from))
            .await
    }
}

/// A uniformly random PIN of [`PIN_DIGITS`] digits.
fn random_pin(rng: &SystemRandom) -> Result<String, BillingError> {
    const SPAN: u64 = 10_000_000_000_000_000; // 10^16
    // Rejection sampling: the largest multiple of SPAN below 2^64 keeps
    // every PIN equally likely.
    const LIMIT: u64 = u64::MAX - u64::MAX % SPAN;
    loop {
        let mut bytes = [0u8; 8];
        rng.fill(&mut bytes)
            .map_err(|_| BillingError::Invalid("no randomness".into()))?;
        let n = u64::from_le_bytes(bytes);
        if n < LIMIT {
            return Ok(format!("{:016}", n % SPAN));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_sixteen_random_digits() {
        let rng = SystemRandom::new();
        let pins: std::collections::HashSet<String> =
            (0..1000).map(|_| random_pin(&rng).unwrap()).collect();
        assert_eq!(pins.len(), 1000);
        assert!(
            pins.iter()
                .all(|p| p.len() == PIN_DIGITS && p.bytes().all(|b| b.is_ascii_digit()))
        );
    }

    #[test]
    fn dialled_numbers_become_digits() {
        assert_eq!(
            number_digits("+48 600-100 200").as_deref(),
            Some("48600100200")
        );
        assert_eq!(number_digits("(0048) 600.1").as_deref(), Some("00486001"));
        assert_eq!(number_digits(""), None);
        assert_eq!(number_digits("alice"), None);
        assert_eq!(number_digits(&"1".repeat(33)), None);
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let c = BillingConfig::default();
        assert_eq!(c.transfer_max_micro, 50_000_000);
        assert_eq!(c.max_call_secs, 14_400);
    }
}
