//! Plans in the client API (SPEC §10): the plans on sale (priced in the
//! account's currency, at the exchange rate for others) and the account's own, buying one from the balance, ending
//! one. See [`crate::billing::plans`] for how calls use them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;

use super::ApiState;
use super::billing::billing_error;
use super::error::{ApiError, path_id};
use crate::billing::BillingError;
use crate::billing::fx::Round;
use crate::billing::money::format_in;
use crate::billing::plans::{AccountPlan, Plan, validate_name};

/// A catalogue plan as shown to users and operators.
#[derive(Debug, Serialize)]
pub struct PlanView {
    pub name: String,
    pub description: String,
    /// Decimal, per purchase and per renewal.
    pub price: String,
    pub price_micro: i64,
    pub currency: String,
    /// Call seconds per period (`minutes`, rounded down, beside them).
    pub seconds: u32,
    pub minutes: u32,
    /// Digit prefixes the seconds cover; empty: every number.
    pub prefixes: Vec<String>,
    /// 0: the seconds never expire.
    pub validity_days: u32,
    pub recurring: bool,
    pub for_sale: bool,
}

impl From<&Plan> for PlanView {
    fn from(p: &Plan) -> Self {
        PlanView {
            name: p.name.clone(),
            description: p.description.clone(),
            price: format_in(p.price_micro, &p.currency),
            price_micro: p.price_micro,
            currency: p.currency.clone(),
            seconds: p.seconds,
            minutes: p.seconds / 60,
            prefixes: p.prefixes.clone(),
            validity_days: p.validity_days,
            recurring: p.recurring,
            for_sale: p.for_sale,
        }
    }
}

/// A plan the account bought.
#[derive(Debug, Serialize)]
pub struct AccountPlanView {
    pub id: i64,
    /// The catalogue name it was bought as.
    pub plan: String,
    /// `active`, `expired` or `cancelled`.
    pub status: String,
    /// Left in this period (calls in progress included).
    pub seconds_left: u32,
    /// A full period's seconds.
    pub period_seconds: u32,
    pub prefixes: Vec<String>,
    pub price: String,
    pub price_micro: i64,
    pub currency: String,
    pub validity_days: u32,
    /// Renewed (and charged) at `expires_at`.
    pub recurring: bool,
    pub bought_at: i64,
    /// End of the current period; null: never.
    pub expires_at: Option<i64>,
}

impl From<&AccountPlan> for AccountPlanView {
    fn from(p: &AccountPlan) -> Self {
        AccountPlanView {
            id: p.id,
            plan: p.plan.clone(),
            status: p.status.clone(),
            seconds_left: p.seconds_left,
            period_seconds: p.period_secs,
            prefixes: p.prefixes.clone(),
            price: format_in(p.price_micro, &p.currency),
            price_micro: p.price_micro,
            currency: p.currency.clone(),
            validity_days: p.validity_days,
            recurring: p.recurring,
            bought_at: p.bought_at,
            expires_at: p.expires_at,
        }
    }
}

/// 404 `unknown-plan`.
pub fn unknown_plan(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown-plan",
        format!("no plan {name:?} is for sale"),
    )
}

/// `GET /v1/plans` answer.
#[derive(Debug, Serialize)]
pub struct Plans {
    pub currency: String,
    pub balance: String,
    pub balance_micro: i64,
    pub available: String,
    pub available_micro: i64,
    /// On sale, by name, priced in the account's currency.
    pub for_sale: Vec<PlanView>,
    /// The account's own, newest first.
    pub mine: Vec<AccountPlanView>,
}

/// `GET /v1/plans`.
pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Plans>, ApiError> {
    let login = state.authenticate(&headers)?;
    let money = state
        .store
        .account_money(&login)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    // A plan in another currency shows its price in the account's, as
    // buying it charges; without an exchange rate it is not offered.
    let fx = state.billing.fx().await?;
    let for_sale = state
        .store
        .plans()
        .await?
        .into_iter()
        .filter(|p| p.for_sale)
        .filter_map(|p| {
            let price_micro = fx.convert(p.price_micro, &p.currency, &money.currency, Round::Up)?;
            Some(PlanView::from(&Plan {
                price_micro,
                currency: money.currency.clone(),
                ..p
            }))
        })
        .collect();
    let mine = state
        .store
        .account_plans(&login)
        .await?
        .iter()
        .map(AccountPlanView::from)
        .collect();
    let c = money.currency.as_str();
    Ok(Json(Plans {
        balance: format_in(money.balance_micro, c),
        balance_micro: money.balance_micro,
        available: format_in(money.available_micro(), c),
        available_micro: money.available_micro(),
        currency: money.currency.clone(),
        for_sale,
        mine,
    }))
}

/// `POST /v1/plans/{name}/buy` answer.
#[derive(Debug, Serialize)]
pub struct Bought {
    pub plan: AccountPlanView,
    /// The balance after the purchase.
    pub balance: String,
    pub balance_micro: i64,
    /// The `plan` ledger row.
    pub ledger_id: i64,
}

/// `POST /v1/plans/{name}/buy`: debits the price and grants the plan, in
/// one transaction. Refused with 409 `plan-active` while the account holds
/// an active plan of that name with seconds left, so a repeated request
/// does not pay twice.
pub async fn buy(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Bought>), ApiError> {
    let login = state.authenticate(&headers)?;
    if validate_name(&name).is_err() {
        return Err(unknown_plan(&name));
    }
    let (plan, entry) = state
        .store
        .buy_plan(&login, &name)
        .await
        .map_err(|e| match e {
            BillingError::UnknownPlan(_) => unknown_plan(&name),
            BillingError::NoAccount(_) => ApiError::not_found("account"),
            other => billing_error(other),
        })?;
    tracing::info!(action = "plan.buy", %login, plan = %name, id = plan.id, amount_micro = plan.price_micro, "billing");
    Ok((
        StatusCode::CREATED,
        Json(Bought {
            plan: AccountPlanView::from(&plan),
            balance: format_in(entry.balance_after_micro, &entry.currency),
            balance_micro: entry.balance_after_micro,
            ledger_id: entry.id,
        }),
    ))
}

/// `DELETE /v1/plans/mine/{id}`: no refund. A recurring plan stops
/// renewing and stays usable to the end of its period; a plan that does not
/// renew (or no longer does) ends now. The plan as it is then.
pub async fn cancel(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<AccountPlanView>, ApiError> {
    let login = state.authenticate(&headers)?;
    let id = path_id(&id, "plan")?;
    let plan = state
        .store
        .cancel_account_plan(&login, id)
        .await?
        .ok_or_else(|| ApiError::not_found("plan"))?;
    tracing::info!(action = "plan.cancel", %login, id, status = %plan.status, recurring = plan.recurring, "billing");
    Ok(Json(AccountPlanView::from(&plan)))
}
