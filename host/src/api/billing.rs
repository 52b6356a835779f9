//! Money in the client API (SPEC §10): balance and ledger, rates, voucher
//! redemption, user-to-user transfers. Amounts go in and out as exact
//! decimal strings (`"12.50"`), with the integer micro amounts beside them
//! in answers; see [`crate::billing`].
//!
//! Rates are shown in the account's currency: a tariff in another one is
//! converted at the operator's exchange rate ([`crate::billing::fx`]), as
//! calls are charged; without a rate for the pair it lists nothing (and
//! would not let a call through either).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::billing::money::{format_in, parse_payment};
use crate::billing::tariffs::{RateView, TariffRate};
use crate::billing::{BillingError, LedgerEntry, number_digits};
use crate::store::billing::AccountMoney;

/// Ledger rows one page holds at most.
const MAX_PAGE: i64 = 200;

/// The API answer for a billing refusal: a stable code per case.
pub fn billing_error(e: BillingError) -> ApiError {
    if let BillingError::Store(e) = e {
        return e.into();
    }
    let (status, code) = match &e {
        BillingError::NoAccount(_) => (StatusCode::NOT_FOUND, "no-such-account"),
        BillingError::InsufficientFunds { .. } => {
            (StatusCode::PAYMENT_REQUIRED, "insufficient-funds")
        }
        BillingError::CurrencyMismatch { .. } => (StatusCode::CONFLICT, "currency-mismatch"),
        BillingError::BalanceLimit => (StatusCode::UNPROCESSABLE_ENTITY, "balance-limit"),
        BillingError::TransferLimit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "transfer-limit"),
        BillingError::SameAccount => (StatusCode::BAD_REQUEST, "transfer-to-self"),
        BillingError::VoucherUnknown => (StatusCode::NOT_FOUND, "unknown-voucher"),
        BillingError::VoucherRedeemed => (StatusCode::CONFLICT, "voucher-redeemed"),
        BillingError::VoucherExpired => (StatusCode::GONE, "voucher-expired"),
        BillingError::UnknownPlan(_) => (StatusCode::NOT_FOUND, "unknown-plan"),
        BillingError::PlanActive(_) => (StatusCode::CONFLICT, "plan-active"),
        _ => (StatusCode::BAD_REQUEST, "invalid-request"),
    };
    ApiError::new(status, code, e.to_string())
}

/// 400 `invalid-amount`.
pub fn invalid_amount(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-amount", message)
}

/// 400 `unknown-currency`.
pub fn unknown_currency(code: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "unknown-currency",
        format!("{code:?} is not an ISO 4217 currency code such as EUR"),
    )
}

/// A ledger row as clients see it.
#[derive(Debug, Serialize)]
pub struct LedgerView {
    pub id: i64,
    /// topup, voucher, transfer-in, transfer-out, call, sms, plan, did, adjust.
    pub kind: String,
    /// Signed decimal: credits positive, debits negative.
    pub amount: String,
    pub amount_micro: i64,
    pub balance_after: String,
    pub balance_after_micro: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<&LedgerEntry> for LedgerView {
    fn from(e: &LedgerEntry) -> Self {
        LedgerView {
            id: e.id,
            kind: e.kind.clone(),
            amount: format_in(e.amount_micro, &e.currency),
            amount_micro: e.amount_micro,
            balance_after: format_in(e.balance_after_micro, &e.currency),
            balance_after_micro: e.balance_after_micro,
            reference: e.reference.clone(),
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    pub limit: Option<i64>,
    /// Rows older than this id (the previous page's `next`).
    #[serde(default)]
    pub before: Option<i64>,
}

/// `GET /v1/balance` answer.
#[derive(Debug, Serialize)]
pub struct Balance {
    pub login: String,
    pub currency: String,
    pub balance: String,
    pub balance_micro: i64,
    /// The balance less what calls in progress set aside.
    pub available: String,
    pub available_micro: i64,
    /// Newest first.
    pub ledger: Vec<LedgerView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

async fn my_money(state: &ApiState, login: &str) -> Result<AccountMoney, ApiError> {
    state
        .store
        .account_money(login)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))
}

/// A page of `login`'s ledger with its balance (also the admin's view).
pub async fn balance_page(
    store: &crate::store::Store,
    money: AccountMoney,
    page: Page,
) -> Result<Balance, ApiError> {
    let limit = page.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) || page.before.is_some_and(|b| b < 1) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {MAX_PAGE} and before a ledger id"
        )));
    }
    let rows = store.ledger(&money.login, page.before, limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let c = money.currency.as_str();
    Ok(Balance {
        login: money.login.clone(),
        currency: money.currency.clone(),
        balance: format_in(money.balance_micro, c),
        balance_micro: money.balance_micro,
        available: format_in(money.available_micro(), c),
        available_micro: money.available_micro(),
        ledger: rows.iter().map(LedgerView::from).collect(),
        next,
    })
}

/// `GET /v1/balance?limit=&before=`.
pub async fn balance(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Balance>, ApiError> {
    let login = state.authenticate(&headers)?;
    let money = my_money(&state, &login).await?;
    Ok(Json(balance_page(&state.store, money, page).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesQuery {
    /// ISO 3166-1 alpha-2: the tariff's rows marked with this country.
    #[serde(default)]
    pub country: Option<String>,
    /// A dialled number: the row with its longest prefix.
    #[serde(default)]
    pub number: Option<String>,
}

/// `GET /v1/rates` answer.
#[derive(Debug, Serialize)]
pub struct Rates {
    pub currency: String,
    pub rates: Vec<RateView>,
}

/// `GET /v1/rates?country=PL` or `?number=48600100200`.
pub async fn rates(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<RatesQuery>,
) -> Result<Json<Rates>, ApiError> {
    let login = state.authenticate(&headers)?;
    let money = my_money(&state, &login).await?;
    let tariffs = state.billing.tariffs().await?;
    let fx = state.billing.fx().await?;
    let tariff = tariffs.tariff(&money.tariff);
    // In the account's currency, as calls are charged; nothing without a
    // rate for the tariff's currency.
    let shown = |r: &TariffRate| {
        fx.convert_rate(r, &money.currency)
            .map(|r| RateView::from(&r))
    };
    let rates = match (&q.country, &q.number) {
        (Some(country), None) => {
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ApiError::invalid(
                    "country is an ISO 3166 alpha-2 code such as PL",
                ));
            }
            tariff
                .map(|t| {
                    t.by_country(country)
                        .into_iter()
                        .filter_map(shown)
                        .collect()
                })
                .unwrap_or_default()
        }
        (None, Some(number)) => {
            let digits = number_digits(number).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-phone",
                    "number is the digits of a phone number (E.164, + allowed)",
                )
            })?;
            tariff
                .and_then(|t| t.lookup(&digits))
                .and_then(shown)
                .into_iter()
                .collect()
        }
        _ => return Err(ApiError::invalid("give either country or number")),
    };
    Ok(Json(Rates {
        currency: money.currency,
        rates,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    pub pin: String,
}

/// What a redemption or transfer left.
#[derive(Debug, Serialize)]
pub struct Moved {
    /// Transfers: the recipient's login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub amount: String,
    pub amount_micro: i64,
    pub currency: String,
    /// The caller's balance after it.
    pub balance: String,
    pub balance_micro: i64,
    /// The caller's ledger row.
    pub ledger_id: i64,
}

/// `POST /v1/vouchers/redeem`: rate limited per address and per account
/// on every attempt, so PINs cannot be guessed at speed.
pub async fn redeem(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> Result<Json<Moved>, ApiError> {
    let login = state.authenticate(&headers)?;
    state.limit_address(peer)?;
    state.limit_identity(&format!("voucher:{login}"))?;
    let r = state
        .billing
        .redeem(&login, &req.pin)
        .await
        .map_err(billing_error)?;
    tracing::info!(action = "voucher.redeem", %login, batch = %r.batch, value_micro = r.value_micro, voucher_currency = %r.currency, credited_micro = r.entry.amount_micro, "billing");
    // What was credited, in the account's currency (a voucher in another
    // is converted).
    let c = r.entry.currency.as_str();
    Ok(Json(Moved {
        to: None,
        amount: format_in(r.entry.amount_micro, c),
        amount_micro: r.entry.amount_micro,
        currency: c.to_owned(),
        balance: format_in(r.entry.balance_after_micro, c),
        balance_micro: r.entry.balance_after_micro,
        ledger_id: r.entry.id,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The recipient: a login, username or phone number.
    pub to: String,
    /// Decimal string in the sender's currency, such as `"2.50"`.
    pub amount: String,
}

/// `POST /v1/transfers`.
pub async fn transfer(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<TransferRequest>,
) -> Result<(StatusCode, Json<Moved>), ApiError> {
    let login = state.authenticate(&headers)?;
    state.limit_address(peer)?;
    state.limit_identity(&format!("transfer:{login}"))?;
    let money = my_money(&state, &login).await?;
    let amount = parse_payment(&req.amount, &money.currency).map_err(invalid_amount)?;
    let store = &state.store;
    let to = req.to.trim();
    let recipient = match store.account_by_login(to).await? {
        Some(a) => Some(a),
        None => match store.account_by_username(to).await? {
            Some(a) => Some(a),
            None => match number_digits(to) {
                Some(phone) => store.account_by_phone(&phone).await?,
                None => None,
            },
        },
    }
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown-recipient",
            format!("no user {to:?}"),
        )
    })?;
    let (out, _) = state
        .billing
        .transfer(&login, &recipient.login, amount)
        .await
        .map_err(|e| match e {
            BillingError::NoAccount(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown-recipient",
                "the recipient is gone",
            ),
            other => billing_error(other),
        })?;
    tracing::info!(action = "transfer", from = %login, to = %recipient.login, amount_micro = amount, "billing");
    let c = out.currency.as_str();
    Ok((
        StatusCode::CREATED,
        Json(Moved {
            to: Some(recipient.login.clone()),
            amount: format_in(amount, c),
            amount_micro: amount,
            currency: out.currency.clone(),
            balance: format_in(out.balance_after_micro, c),
            balance_micro: out.balance_after_micro,
            ledger_id: out.id,
        }),
    ))
}
