//! Billing administration: tariffs (CSV import, listing, deletion),
//! top-ups and the ledger of an account, voucher batches, exchange rates.
//!
//! Tariff bodies are CSV files (see [`crate::billing::tariffs::parse_csv`]),
//! up to [`TARIFF_MAX_BYTES`]; a change is live on this node at once and on
//! the others within `billing.tariff_poll_secs`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::api::billing::{
    Balance, LedgerView, Page, balance_page, billing_error, invalid_amount, unknown_currency,
};
use crate::api::error::{ApiError, ApiJson, ApiQuery};
use crate::billing::fx::{ExchangeRate, parse_rate};
use crate::billing::money::{self, format_in, parse_payment};
use crate::billing::tariffs::{RateView, parse_csv, validate_prefix};
use crate::billing::{LedgerKind, Movement};
use crate::store::billing::{TariffSummary, VoucherBatch};

/// Largest tariff file: 50,000 rows of ~100 bytes with room to spare.
pub const TARIFF_MAX_BYTES: usize = 32 << 20;

fn unknown_tariff(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown-tariff",
        format!("no tariff {name:?}"),
    )
}

fn bad_tariff(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-tariff", message)
}

/// Makes a change visible on this node now (others poll).
async fn reload(state: &AdminState) {
    if let Err(e) = state.billing.refresh().await {
        tracing::warn!(error = %e, "tariff reload after a change failed; the next poll retries");
    }
}

/// `GET /tariffs`.
pub async fn list(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<TariffSummary>>, ApiError> {
    Ok(Json(state.store.tariffs().await?))
}

#[derive(Serialize)]
pub struct TariffRates {
    pub tariff: String,
    pub rates: Vec<RateView>,
}

/// `GET /tariffs/{name}`.
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<TariffRates>, ApiError> {
    let rows = state.store.tariff_rates(&name).await?;
    if rows.is_empty() {
        return Err(unknown_tariff(&name));
    }
    Ok(Json(TariffRates {
        tariff: name,
        rates: rows.iter().map(RateView::from).collect(),
    }))
}

#[derive(Serialize)]
pub struct Imported {
    pub tariff: String,
    /// Rows in the file.
    pub rows: usize,
}

async fn import(
    state: &AdminState,
    peer: SocketAddr,
    name: String,
    body: Bytes,
    replace: bool,
) -> Result<Json<Imported>, ApiError> {
    let text =
        std::str::from_utf8(&body).map_err(|_| bad_tariff("the CSV file is not UTF-8".into()))?;
    let rows = parse_csv(&name, text).map_err(bad_tariff)?;
    if rows.is_empty() {
        return Err(bad_tariff(
            "the file has no rows (DELETE removes a tariff)".into(),
        ));
    }
    let n = if replace {
        state.store.replace_tariff(&name, &rows).await
    } else {
        state.store.merge_tariff(&name, &rows).await
    }
    .map_err(|e| match e {
        crate::store::StoreError::Invalid(m) => bad_tariff(m),
        other => other.into(),
    })?;
    reload(state).await;
    tracing::info!(action = if replace { "tariff.replace" } else { "tariff.merge" }, tariff = %name, rows = n, %peer, "admin action");
    Ok(Json(Imported {
        tariff: name,
        rows: n,
    }))
}

/// `PUT /tariffs/{name}`: the CSV body becomes the whole tariff.
pub async fn replace(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Imported>, ApiError> {
    import(&state, peer, name, body, true).await
}

/// `POST /tariffs/{name}`: the CSV body's rows are added, replacing rows of
/// the same prefixes.
pub async fn merge(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Imported>, ApiError> {
    import(&state, peer, name, body, false).await
}

/// `DELETE /tariffs/{name}`.
pub async fn remove(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.tariff_rates(&name).await?.is_empty() {
        return Err(unknown_tariff(&name));
    }
    state.store.replace_tariff(&name, &[]).await?;
    reload(&state).await;
    tracing::info!(action = "tariff.delete", tariff = %name, %peer, "admin action");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /tariffs/{name}/rates/{prefix}`.
pub async fn remove_rate(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((name, prefix)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    validate_prefix(&prefix).map_err(|_| ApiError::not_found("rate"))?;
    if !state.store.delete_tariff_rate(&name, &prefix).await? {
        return Err(ApiError::not_found("rate"));
    }
    reload(&state).await;
    tracing::info!(action = "tariff.delete-rate", tariff = %name, %prefix, %peer, "admin action");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /accounts/{login}/topup` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topup {
    /// Decimal string in the account's currency, such as `"10.00"`.
    pub amount: String,
    /// Why (a payment id, a note); kept in the ledger row.
    #[serde(default)]
    pub reference: Option<String>,
    /// ISO 4217 code of `amount` (default: the account's). Another is
    /// credited at the stored exchange rate (rounded down), or refused
    /// with `currency-mismatch` without one.
    #[serde(default)]
    pub currency: Option<String>,
}

/// `POST /accounts/{login}/topup` answer.
#[derive(Serialize)]
pub struct ToppedUp {
    pub login: String,
    /// The account's currency: what was credited (`amount`) and the
    /// balance are in it.
    pub currency: String,
    pub amount: String,
    pub amount_micro: i64,
    pub balance: String,
    pub balance_micro: i64,
    pub entry: LedgerView,
}

fn no_such_account(login: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-such-account",
        format!("no account {login:?}"),
    )
}

/// `POST /accounts/{login}/topup`.
pub async fn topup(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(login): Path<String>,
    ApiJson(req): ApiJson<Topup>,
) -> Result<Json<ToppedUp>, ApiError> {
    let money = state
        .store
        .account_money(&login)
        .await?
        .ok_or_else(|| no_such_account(&login))?;
    let paid_in = match &req.currency {
        Some(code) => money::currency(code)
            .ok_or_else(|| unknown_currency(code))?
            .code
            .to_owned(),
        None => money.currency.clone(),
    };
    let amount = parse_payment(&req.amount, &paid_in).map_err(invalid_amount)?;
    let entry = state
        .store
        .credit(
            &Movement {
                login: &login,
                kind: LedgerKind::Topup,
                amount_micro: amount,
                reference: req.reference.as_deref(),
                actor: Some("admin"),
            },
            Some(&paid_in),
        )
        .await
        .map_err(billing_error)?;
    tracing::info!(action = "account.topup", %login, %peer, amount_micro = amount, paid_in = %paid_in, credited_micro = entry.amount_micro, balance_micro = entry.balance_after_micro, currency = %entry.currency, "admin action");
    let c = entry.currency.clone();
    Ok(Json(ToppedUp {
        login,
        amount: format_in(entry.amount_micro, &c),
        amount_micro: entry.amount_micro,
        balance: format_in(entry.balance_after_micro, &c),
        balance_micro: entry.balance_after_micro,
        entry: LedgerView::from(&entry),
        currency: c,
    }))
}

/// `GET /accounts/{login}/ledger?limit=&before=`.
pub async fn ledger(
    State(state): State<Arc<AdminState>>,
    Path(login): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Balance>, ApiError> {
    let money = state
        .store
        .account_money(&login)
        .await?
        .ok_or_else(|| no_such_account(&login))?;
    Ok(Json(balance_page(&state.store, money, page).await?))
}

/// `POST /vouchers` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVouchers {
    /// 1 to 10,000.
    pub count: u32,
    /// Decimal string, such as `"5.00"`.
    pub value: String,
    /// ISO 4217.
    pub currency: String,
    /// Days until they expire (`billing.voucher_days` when absent).
    #[serde(default)]
    pub expires_days: Option<u32>,
}

/// `POST /vouchers` answer: the PINs, shown this once.
#[derive(Serialize)]
pub struct CreatedVouchers {
    pub batch: String,
    pub count: usize,
    pub value: String,
    pub value_micro: i64,
    pub currency: String,
    pub expires_at: i64,
    pub pins: Vec<String>,
}

/// `POST /vouchers`.
pub async fn create_vouchers(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<CreateVouchers>,
) -> Result<(StatusCode, Json<CreatedVouchers>), ApiError> {
    let currency = money::currency(&req.currency).ok_or_else(|| unknown_currency(&req.currency))?;
    let value = parse_payment(&req.value, currency.code).map_err(invalid_amount)?;
    let made = state
        .billing
        .create_vouchers(req.count, value, currency.code, req.expires_days)
        .await
        .map_err(billing_error)?;
    // The PINs never reach the log.
    tracing::info!(action = "voucher.create", batch = %made.batch, count = made.pins.len(), value_micro = value, currency = %made.currency, %peer, "admin action");
    Ok((
        StatusCode::CREATED,
        Json(CreatedVouchers {
            batch: made.batch,
            count: made.pins.len(),
            value: format_in(value, &made.currency),
            value_micro: value,
            currency: made.currency,
            expires_at: made.expires_at,
            pins: made.pins,
        }),
    ))
}

/// `GET /vouchers/{batch}`.
pub async fn voucher_batch(
    State(state): State<Arc<AdminState>>,
    Path(batch): Path<String>,
) -> Result<Json<VoucherBatch>, ApiError> {
    state
        .store
        .voucher_batch(&batch)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("voucher batch"))
}

/// `GET /exchange-rates`.
pub async fn exchange_rates(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<ExchangeRate>>, ApiError> {
    Ok(Json(state.store.exchange_rates().await?))
}

/// `PUT /exchange-rates/{base}/{quote}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetExchangeRate {
    /// What one `base` is worth in `quote`, a decimal such as `"1.0832"`
    /// (at most 9 decimal places).
    pub rate: String,
}

/// The ISO 4217 code `code` names, or 400 `unknown-currency`.
fn iso_code(code: &str) -> Result<&'static str, ApiError> {
    Ok(money::currency(code)
        .ok_or_else(|| unknown_currency(code))?
        .code)
}

/// `PUT /exchange-rates/{base}/{quote}`: sets the pair (replacing it in
/// either direction); live on this node at once, on the others within
/// `billing.tariff_poll_secs`.
pub async fn set_exchange_rate(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((base, quote)): Path<(String, String)>,
    ApiJson(req): ApiJson<SetExchangeRate>,
) -> Result<Json<ExchangeRate>, ApiError> {
    let (base, quote) = (iso_code(&base)?, iso_code(&quote)?);
    let nano = parse_rate(&req.rate)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid-rate", m))?;
    let set = state.store.set_exchange_rate(base, quote, nano).await?;
    reload(&state).await;
    tracing::info!(action = "exchange-rate.set", %base, %quote, rate = %set.rate, %peer, "admin action");
    Ok(Json(set))
}

/// `DELETE /exchange-rates/{base}/{quote}` (either direction).
pub async fn remove_exchange_rate(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((base, quote)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (base, quote) = (iso_code(&base)?, iso_code(&quote)?);
    if !state.store.delete_exchange_rate(base, quote).await? {
        return Err(ApiError::not_found("exchange rate"));
    }
    reload(&state).await;
    tracing::info!(action = "exchange-rate.delete", %base, %quote, %peer, "admin action");
    Ok(StatusCode::NO_CONTENT)
}
