//! Account administration (issue 7, item 7): create from the account
//! template, update, delete, set the balance, list registrations.
//!
//! Every action is logged at info level with structured fields (`action`,
//! `login`, `peer`, and which fields changed), never with a password. Errors
//! use the client API's `{ "code", "message" }` answers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::api::error::{ApiError, ApiJson};
use crate::api::phone_signup::new_sip_password;
use crate::store::location::Binding;
use crate::store::profiles_api::ProfileUpdate;
use crate::store::{Account, AccountSettings, NewAccount, StoreError};

/// `POST /accounts` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub login: String,
    /// Generated (and returned once) when absent.
    #[serde(default)]
    pub sip_password: Option<String>,
    #[serde(default)]
    pub access_password: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the account may log in and register at once (default true).
    #[serde(default)]
    pub active: Option<bool>,
}

/// `POST /accounts` answer: the account, and the SIP password when the
/// switch generated it (the only time it is shown).
#[derive(Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub account: Account,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_password: Option<String>,
}

/// `PATCH /accounts/{login}` body: every field optional. Applied in field
/// order (passwords, profile, settings, then `active`, so an account is
/// re-enabled only after the rest went through); a value the store refuses
/// answers 400 and leaves the fields before it applied.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    pub active: Option<bool>,
    pub sip_password: Option<String>,
    pub access_password: Option<String>,
    pub display_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub tariff: Option<String>,
    pub currency: Option<String>,
    pub dialplan_rule: Option<String>,
    /// `""` removes the plan.
    pub plan: Option<String>,
    /// Ringing time before the no-answer re-route: `null` goes back to the
    /// switch-wide `calls.no_answer_secs`, 0 never, else 5 to 600 seconds.
    #[serde(default, deserialize_with = "crate::store::accounts::present")]
    pub no_answer_secs: Option<Option<u32>>,
    /// Record the account's calls: `"mixed"`, `"stereo"`; `null` stops.
    #[serde(default, deserialize_with = "crate::store::accounts::present")]
    pub recording: Option<Option<String>>,
}

impl UpdateAccount {
    /// Names of the fields given, for the log (values stay out of it).
    fn changed(&self) -> Vec<&'static str> {
        let flags = [
            ("active", self.active.is_some()),
            ("sip_password", self.sip_password.is_some()),
            ("access_password", self.access_password.is_some()),
            ("display_name", self.display_name.is_some()),
            ("first_name", self.first_name.is_some()),
            ("last_name", self.last_name.is_some()),
            ("email", self.email.is_some()),
            ("tariff", self.tariff.is_some()),
            ("currency", self.currency.is_some()),
            ("dialplan_rule", self.dialplan_rule.is_some()),
            ("plan", self.plan.is_some()),
            ("no_answer_secs", self.no_answer_secs.is_some()),
            ("recording", self.recording.is_some()),
        ];
        flags.iter().filter(|f| f.1).map(|f| f.0).collect()
    }
}

/// `PUT /accounts/{login}/balance` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBalance {
    /// Millionths of the account's currency unit.
    pub balance_micro: i64,
}

/// One registration as the admin API shows it.
#[derive(Serialize)]
pub struct Registration {
    pub contact: String,
    pub instance: Option<String>,
    pub reg_id: Option<i64>,
    pub transport: String,
    /// `ip:port` the device registered from.
    pub source: String,
    /// Switch node holding the device's flow.
    pub node: String,
    pub user_agent: Option<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

impl From<Binding> for Registration {
    fn from(b: Binding) -> Self {
        Self {
            contact: b.contact,
            instance: b.instance,
            reg_id: b.reg_id,
            transport: b.transport,
            source: b.source,
            node: b.node,
            user_agent: b.user_agent,
            expires_at: b.expires_at,
        }
    }
}

fn no_such_account(login: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-such-account",
        format!("no account {login:?}"),
    )
}

/// Store errors as admin answers: conflicts name what is taken.
fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(what) => {
            let code = match what.as_str() {
                "login" => "login-taken",
                "phone" => "phone-taken",
                "username" => "username-taken",
                _ => "conflict",
            };
            ApiError::new(StatusCode::CONFLICT, code, format!("{what} already exists"))
        }
        StoreError::NotFound(what) => ApiError::new(StatusCode::NOT_FOUND, "no-such-account", what),
        other => other.into(),
    }
}

async fn account_or_404(state: &AdminState, login: &str) -> Result<Account, ApiError> {
    state
        .store
        .account_by_login(login)
        .await?
        .ok_or_else(|| no_such_account(login))
}

/// `GET /accounts?limit=&offset=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default = "default_limit")]
    pub limit: u32,
    #[serde(default)]
    pub offset: u32,
}

fn default_limit() -> u32 {
    100
}

/// Largest page: an operator's listing, not a dump.
const MAX_PAGE: u32 = 1000;

pub async fn list(
    State(state): State<Arc<AdminState>>,
    crate::api::error::ApiQuery(page): crate::api::error::ApiQuery<Page>,
) -> Result<Json<Vec<Account>>, ApiError> {
    let accounts = state
        .store
        .list_accounts(page.limit.min(MAX_PAGE), page.offset)
        .await?;
    Ok(Json(accounts))
}

pub async fn show(
    State(state): State<Arc<AdminState>>,
    Path(login): Path<String>,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(account_or_404(&state, &login).await?))
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<CreateAccount>,
) -> Result<Response, ApiError> {
    let generated = req.sip_password.is_none().then(new_sip_password);
    let new = NewAccount {
        login: req.login.clone(),
        sip_password: req
            .sip_password
            .clone()
            .or_else(|| generated.clone())
            .unwrap_or_default(),
        access_password: req.access_password,
        phone: req.phone,
        username: req.username,
        display_name: req.display_name,
        email: req.email,
        template: state.template.clone(),
    };
    let mut account = state.store.add_account(&new).await.map_err(store_error)?;
    if req.active == Some(false) {
        state
            .store
            .set_account_active(&account.login, false)
            .await?;
        account.active = false;
    }
    tracing::info!(
        action = "account.create",
        login = %account.login,
        %peer,
        phone = account.phone.as_deref().unwrap_or(""),
        username = account.username.as_deref().unwrap_or(""),
        sip_password_generated = generated.is_some(),
        "admin action"
    );
    Ok((
        StatusCode::CREATED,
        Json(Created {
            account,
            sip_password: generated,
        }),
    )
        .into_response())
}

pub async fn update(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(login): Path<String>,
    ApiJson(req): ApiJson<UpdateAccount>,
) -> Result<Json<Account>, ApiError> {
    account_or_404(&state, &login).await?;
    let store = &state.store;
    if let Some(pw) = &req.sip_password {
        store.set_sip_password(&login, pw).await?;
    }
    if let Some(pw) = &req.access_password {
        // "" removes the access password (the account then cannot log in to
        // the apps until a new one is set).
        store
            .set_access_password(&login, (!pw.is_empty()).then_some(pw.as_str()))
            .await?;
    }
    let profile = ProfileUpdate {
        display_name: req.display_name.clone(),
        first_name: req.first_name.clone(),
        last_name: req.last_name.clone(),
        email: req.email.clone(),
        ..Default::default()
    };
    if profile != ProfileUpdate::default() {
        store
            .update_profile(&login, &profile)
            .await
            .map_err(store_error)?;
    }
    let settings = AccountSettings {
        tariff: req.tariff.clone(),
        currency: req.currency.clone(),
        dialplan_rule: req.dialplan_rule.clone(),
        plan: req.plan.clone(),
        no_answer_secs: req.no_answer_secs,
        recording: req.recording.clone(),
    };
    if settings != AccountSettings::default() {
        store.update_account_settings(&login, &settings).await?;
    }
    if let Some(active) = req.active {
        store.set_account_active(&login, active).await?;
    }
    tracing::info!(
        action = "account.update",
        %login,
        %peer,
        fields = ?req.changed(),
        "admin action"
    );
    Ok(Json(account_or_404(&state, &login).await?))
}

pub async fn delete(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(login): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.remove_account(&login).await? {
        return Err(no_such_account(&login));
    }
    tracing::info!(action = "account.delete", %login, %peer, "admin action");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn set_balance(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(login): Path<String>,
    ApiJson(req): ApiJson<SetBalance>,
) -> Result<Json<Account>, ApiError> {
    let before = account_or_404(&state, &login).await?;
    if !state.store.set_balance(&login, req.balance_micro).await? {
        return Err(no_such_account(&login));
    }
    tracing::info!(
        action = "account.set-balance",
        %login,
        %peer,
        previous_micro = before.balance_micro,
        balance_micro = req.balance_micro,
        currency = %before.currency,
        "admin action"
    );
    Ok(Json(account_or_404(&state, &login).await?))
}

pub async fn registrations(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(login): Path<String>,
) -> Result<Json<Vec<Registration>>, ApiError> {
    account_or_404(&state, &login).await?;
    // The database, not this node's registrar cache: in a cluster the
    // account's devices may be registered on other nodes.
    let bindings = state
        .store
        .bindings_of(&login, crate::store::now_secs())
        .await?;
    tracing::info!(
        action = "account.registrations",
        %login,
        %peer,
        count = bindings.len(),
        "admin action"
    );
    Ok(Json(bindings.into_iter().map(Registration::from).collect()))
}
