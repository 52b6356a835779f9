//! The plan catalogue (SPEC §10): what users can buy from their balance.
//! A change applies to new purchases; plans bought keep their terms.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::AdminState;
use crate::api::billing::{invalid_amount, unknown_currency};
use crate::api::error::{ApiError, ApiJson};
use crate::api::plans::PlanView;
use crate::billing::money::{self, parse_payment};
use crate::billing::plans::{Plan, SECONDS_MAX, validate_name};
use crate::store::StoreError;

fn unknown_plan(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown-plan",
        format!("no plan {name:?}"),
    )
}

fn bad_plan(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-plan", message)
}

/// `GET /plans`: the catalogue, withdrawn plans included.
pub async fn list(State(state): State<Arc<AdminState>>) -> Result<Json<Vec<PlanView>>, ApiError> {
    Ok(Json(
        state
            .store
            .plans()
            .await?
            .iter()
            .map(PlanView::from)
            .collect(),
    ))
}

/// `GET /plans/{name}`.
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<PlanView>, ApiError> {
    state
        .store
        .plan(&name)
        .await?
        .map(|p| Json(PlanView::from(&p)))
        .ok_or_else(|| unknown_plan(&name))
}

/// `PUT /plans/{name}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    #[serde(default)]
    pub description: String,
    /// Decimal string in `currency`, such as `"5.00"`.
    pub price: String,
    /// ISO 4217.
    pub currency: String,
    /// Call minutes per period.
    pub minutes: u32,
    /// Digit prefixes the minutes cover; none: every number.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Days a period lasts; 0 (the default): the minutes never expire.
    #[serde(default)]
    pub validity_days: u32,
    /// Renewed at the end of each period while the balance pays.
    #[serde(default)]
    pub recurring: bool,
    #[serde(default = "for_sale")]
    pub for_sale: bool,
}

fn for_sale() -> bool {
    true
}

/// `PUT /plans/{name}`: creates (201) or replaces (200) a plan.
pub async fn put(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PlanRequest>,
) -> Result<(StatusCode, Json<PlanView>), ApiError> {
    validate_name(&name).map_err(bad_plan)?;
    let currency = money::currency(&req.currency).ok_or_else(|| unknown_currency(&req.currency))?;
    let price = parse_payment(&req.price, currency.code).map_err(invalid_amount)?;
    if req.minutes == 0 || req.minutes > SECONDS_MAX / 60 {
        return Err(bad_plan(format!("minutes: 1 to {}", SECONDS_MAX / 60)));
    }
    let plan = Plan {
        name,
        description: req.description,
        price_micro: price,
        currency: currency.code.to_owned(),
        seconds: req.minutes * 60,
        prefixes: req.prefixes,
        validity_days: req.validity_days,
        recurring: req.recurring,
        for_sale: req.for_sale,
        created_at: crate::store::now_secs(),
    };
    let created = state.store.put_plan(&plan).await.map_err(|e| match e {
        StoreError::Invalid(m) => bad_plan(m),
        other => other.into(),
    })?;
    tracing::info!(action = "plan.put", plan = %plan.name, created, price_micro = price, %peer, "admin action");
    let stored = state.store.plan(&plan.name).await?.unwrap_or(plan);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(PlanView::from(&stored))))
}

/// `DELETE /plans/{name}`: no more purchases; the plans bought as it stop
/// renewing and run to the end of their period.
pub async fn remove(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete_plan(&name).await? {
        return Err(unknown_plan(&name));
    }
    tracing::info!(action = "plan.delete", plan = %name, %peer, "admin action");
    Ok(StatusCode::NO_CONTENT)
}
