//! DIDs in the client API (SPEC §10): the free numbers of the pool in the
//! account's currency, ordering one (setup fee and first period from the
//! balance; inbound calls to it ring the account at once), the account's
//! numbers, and releasing one (no refund). See [`crate::billing::dids`].

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::billing::billing_error;
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::billing::dids::DidChoice;
use crate::billing::fx::{FxTable, Round};
use crate::billing::money::format_in;
use crate::billing::number_digits;
use crate::store::did_pool::{DidError, PoolNumber};

/// Free numbers one answer lists at most.
const MAX_LIST: i64 = 200;

/// The API answer for a DID refusal: a stable code per case.
pub fn did_error(e: DidError) -> ApiError {
    match e {
        DidError::NotInPool(n) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-number",
            format!("number {n} is not for sale here"),
        ),
        DidError::Taken(n) => ApiError::new(
            StatusCode::CONFLICT,
            "did-taken",
            format!("number {n} is taken"),
        ),
        DidError::NoneFree => ApiError::new(
            StatusCode::NOT_FOUND,
            "no-free-number",
            "no free number of this country that your currency can pay (its own, or one with an exchange rate to it)",
        ),
        DidError::Held(n) => ApiError::new(
            StatusCode::CONFLICT,
            "did-held",
            format!("number {n} is held by an account"),
        ),
        DidError::Invalid(m) => ApiError::invalid(m),
        DidError::Billing(e) => billing_error(e),
    }
}

/// A number as clients see it.
#[derive(Debug, Serialize)]
pub struct DidView {
    /// E.164 digits.
    pub number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub description: String,
    pub currency: String,
    /// Per period (`billing.did_period_days`), decimal.
    pub monthly_fee: String,
    pub monthly_fee_micro: i64,
    /// Once, at the order.
    pub setup_fee: String,
    pub setup_fee_micro: i64,
    /// Unix seconds; the caller's numbers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered_at: Option<i64>,
    /// Unix seconds: the next period is charged then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid_until: Option<i64>,
    /// A number priced in another currency than the caller's: its fees in
    /// the caller's, at today's rate (the order converts at its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_your_currency: Option<Converted>,
}

/// Fees converted into the caller's currency.
#[derive(Debug, Serialize)]
pub struct Converted {
    pub currency: String,
    pub monthly_fee: String,
    pub monthly_fee_micro: i64,
    pub setup_fee: String,
    pub setup_fee_micro: i64,
}

impl DidView {
    /// With its fees in `to` too, when it is priced in another currency.
    fn for_account(d: &PoolNumber, fx: &FxTable, to: &str) -> Self {
        let mut view = DidView::from(d);
        if d.currency != to {
            let convert = |micro| fx.convert(micro, &d.currency, to, Round::Up);
            if let (Some(monthly), Some(setup)) =
                (convert(d.monthly_fee_micro), convert(d.setup_fee_micro))
            {
                view.in_your_currency = Some(Converted {
                    currency: to.to_owned(),
                    monthly_fee: format_in(monthly, to),
                    monthly_fee_micro: monthly,
                    setup_fee: format_in(setup, to),
                    setup_fee_micro: setup,
                });
            }
        }
        view
    }
}

impl From<&PoolNumber> for DidView {
    fn from(d: &PoolNumber) -> Self {
        let c = d.currency.as_str();
        DidView {
            number: d.number.clone(),
            country: d.country.clone(),
            description: d.description.clone(),
            currency: d.currency.clone(),
            monthly_fee: format_in(d.monthly_fee_micro, c),
            monthly_fee_micro: d.monthly_fee_micro,
            setup_fee: format_in(d.setup_fee_micro, c),
            setup_fee_micro: d.setup_fee_micro,
            ordered_at: d.login.as_ref().and(d.ordered_at),
            paid_until: d.login.as_ref().and(d.paid_until),
            in_your_currency: None,
        }
    }
}

/// `GET /v1/dids` and `GET /v1/dids/available` answer.
#[derive(Debug, Serialize)]
pub struct Dids {
    /// The account's currency.
    pub currency: String,
    /// Days one paid period lasts.
    pub period_days: u32,
    pub dids: Vec<DidView>,
}

fn country_code(text: &str) -> Result<String, ApiError> {
    if text.len() != 2 || !text.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ApiError::invalid(
            "country is an ISO 3166 alpha-2 code such as PL",
        ));
    }
    Ok(text.to_ascii_uppercase())
}

async fn my_currency(state: &ApiState, login: &str) -> Result<String, ApiError> {
    Ok(state
        .store
        .account_money(login)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?
        .currency)
}

/// `GET /v1/dids`: the caller's numbers.
pub async fn mine(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Dids>, ApiError> {
    let login = state.authenticate(&headers)?;
    let currency = my_currency(&state, &login).await?;
    let dids = state.store.dids_of(&login).await?;
    Ok(Json(Dids {
        currency,
        period_days: state.billing.config().did_period_days.max(1),
        dids: dids.iter().map(DidView::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailableQuery {
    /// ISO 3166-1 alpha-2.
    #[serde(default)]
    pub country: Option<String>,
    /// 1 to 200 (50).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// `GET /v1/dids/available?country=PL&limit=`: free numbers the caller can
/// pay: priced in its currency, or in one with an exchange rate to it (then
/// with the fees converted too).
pub async fn available(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<AvailableQuery>,
) -> Result<Json<Dids>, ApiError> {
    let login = state.authenticate(&headers)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIST}")));
    }
    let country = q.country.as_deref().map(country_code).transpose()?;
    let currency = my_currency(&state, &login).await?;
    let fx = state.store.fx_table().await?;
    let dids = state
        .store
        .free_dids(&fx.convertible_to(&currency), country.as_deref(), limit)
        .await?;
    Ok(Json(Dids {
        period_days: state.billing.config().did_period_days.max(1),
        dids: dids
            .iter()
            .map(|d| DidView::for_account(d, &fx, &currency))
            .collect(),
        currency,
    }))
}

/// `POST /v1/dids` body: a number, or a country to take any free one of.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
}

/// `POST /v1/dids` answer.
#[derive(Debug, Serialize)]
pub struct Ordered {
    pub did: DidView,
    /// Setup fee and the first period, in the caller's currency.
    pub charged: String,
    pub charged_micro: i64,
    /// The caller's balance after it.
    pub balance: String,
    pub balance_micro: i64,
    /// The `did` ledger row; absent when nothing was charged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_id: Option<i64>,
}

/// `POST /v1/dids`.
pub async fn order(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<OrderRequest>,
) -> Result<(StatusCode, Json<Ordered>), ApiError> {
    let login = state.authenticate(&headers)?;
    let (number, country);
    let choice = match (&req.number, &req.country) {
        (Some(n), None) => {
            number = number_digits(n).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-phone",
                    "number is the digits of a phone number (E.164, + allowed)",
                )
            })?;
            DidChoice::Number(&number)
        }
        (None, Some(c)) => {
            country = country_code(c)?;
            DidChoice::Country(&country)
        }
        _ => return Err(ApiError::invalid("give either number or country")),
    };
    let ordered = state
        .billing
        .order_did(&login, choice)
        .await
        .map_err(did_error)?;
    tracing::info!(action = "did.order", %login, number = %ordered.did.number, charged_micro = ordered.charged_micro, "billing");
    // The charge and the balance are in the account's currency, whatever
    // the number's.
    let money = state.store.account_money(&login).await?;
    let balance_micro = match (&ordered.entry, &money) {
        (Some(e), _) => e.balance_after_micro,
        (None, money) => money.as_ref().map_or(0, |m| m.balance_micro),
    };
    let c = money
        .as_ref()
        .map_or(ordered.did.currency.as_str(), |m| m.currency.as_str());
    Ok((
        StatusCode::CREATED,
        Json(Ordered {
            charged: format_in(ordered.charged_micro, c),
            charged_micro: ordered.charged_micro,
            balance: format_in(balance_micro, c),
            balance_micro,
            ledger_id: ordered.entry.as_ref().map(|e| e.id),
            did: DidView::from(&ordered.did),
        }),
    ))
}

/// `DELETE /v1/dids/{number}`: the number goes back to the pool and stops
/// ringing the caller; the period under way is not refunded.
pub async fn release(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    let login = state.authenticate(&headers)?;
    let Some(number) = number_digits(&number) else {
        return Err(ApiError::not_found("number of yours"));
    };
    if !state
        .store
        .release_did(&login, &number)
        .await
        .map_err(did_error)?
    {
        return Err(ApiError::not_found("number of yours"));
    }
    tracing::info!(action = "did.release", %login, %number, "billing");
    Ok(StatusCode::NO_CONTENT)
}
