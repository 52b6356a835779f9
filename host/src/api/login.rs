//! Login (SPEC §3): public ID (username or phone number) + access password →
//! the account's SIP credentials.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::{ApiError, ApiJson};
use super::phone::normalize;
use super::{ApiState, SipCredentials};
use crate::store::Account;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username, or a phone number (national numbers need `country_code`).
    pub id: String,
    pub password: String,
    #[serde(default)]
    pub country_code: Option<String>,
}

pub(crate) fn bad_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "bad-credentials",
        "unknown ID or wrong password",
    )
}

/// The account a public ID names: a username first, else a phone number.
pub(crate) async fn resolve(
    state: &ApiState,
    id: &str,
    country_code: Option<&str>,
) -> Result<Option<Account>, ApiError> {
    if let Some(a) = state.store.account_by_username(id).await? {
        return Ok(Some(a));
    }
    match normalize(id, country_code) {
        Ok(phone) => Ok(state.store.account_by_phone(&phone).await?),
        Err(_) => Ok(None),
    }
}

/// `POST /v1/login`.
pub async fn login(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<SipCredentials>, ApiError> {
    state.limit_address(peer)?;
    if req.id.is_empty() || req.id.len() > 255 || req.password.len() > 1024 {
        return Err(ApiError::invalid(
            "id must be 1 to 255 characters, password at most 1024",
        ));
    }
    state.limit_identity(&format!("id:{}", req.id))?;
    let Some(account) = resolve(&state, &req.id, req.country_code.as_deref()).await? else {
        return Err(bad_credentials());
    };
    if !state
        .store
        .verify_access_password(&account.login, &req.password)
        .await?
    {
        tracing::info!(login = %account.login, %peer, "login refused: wrong password");
        return Err(bad_credentials());
    }
    // Checked after the password, so the answer tells nothing about an
    // account to someone who does not know its password.
    if !account.active {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not-active",
            "account not active: follow the link in the activation e-mail",
        ));
    }
    let sip_password = state
        .store
        .sip_password(&account.login)
        .await?
        .ok_or_else(|| ApiError::internal("account without SIP password"))?;
    tracing::info!(login = %account.login, "login");
    Ok(Json(SipCredentials {
        token: state.session_token(&account.login),
        login: account.login,
        sip_password,
        sip_domain: state.sip_domain.clone(),
    }))
}
