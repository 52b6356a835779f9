//! Username sign-up (SPEC §3): username + access password + e-mail +
//! country → an inactive account and an activation e-mail whose link
//! (a signed, expiring token) activates it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ApiQuery};
use super::{ApiState, token};
use crate::notify::email::html_escape;
use crate::store::{NewAccount, StoreError};

/// Token purpose of activation links.
pub const ACTIVATE: &str = "activate";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsernameSignup {
    pub username: String,
    pub password: String,
    pub email: String,
    /// ISO 3166 alpha-2, e.g. `PL`.
    pub country: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsernameQuery {
    pub username: String,
}

#[derive(Debug, Serialize)]
struct Availability {
    available: bool,
}

/// Usernames: 3 to 32 letters, digits, `.`, `_` or `-`, not all digits
/// (those would collide with phone-number logins in generic mode).
pub fn valid_username(u: &str) -> bool {
    (3..=32).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !u.bytes().all(|b| b.is_ascii_digit())
}

fn invalid_username() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid-username",
        "a username has 3 to 32 letters, digits, '.', '_' or '-', and is not a number",
    )
}

/// `GET /v1/signup/username/available?username=`.
pub async fn available(
    State(state): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<UsernameQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !valid_username(&q.username) {
        return Err(invalid_username());
    }
    let taken = state.store.username_taken(&q.username).await?;
    Ok(Json(serde_json::json!(Availability { available: !taken })))
}

fn new_sip_password() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// `POST /v1/signup/username`.
pub async fn start(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<UsernameSignup>,
) -> Result<Response, ApiError> {
    state.limit_address(peer)?;
    if !valid_username(&req.username) {
        return Err(invalid_username());
    }
    if req.password.len() < 8 || req.password.len() > 1024 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "weak-password",
            "the password needs 8 to 1024 characters",
        ));
    }
    if req.email.len() > 254
        || !req.email.contains('@')
        || req.email.parse::<lettre::Address>().is_err()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-email",
            "not an e-mail address",
        ));
    }
    if req.country.len() != 2 || !req.country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ApiError::invalid(
            "country is an ISO 3166 alpha-2 code, e.g. PL",
        ));
    }
    state.limit_identity(&format!("id:{}", req.username))?;
    if !state.mailer.enabled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "email-unavailable",
            "this service sends no e-mail (no SMTP server configured)",
        ));
    }
    if state.store.username_taken(&req.username).await? {
        return Err(taken());
    }
    let new = NewAccount {
        login: req.username.clone(),
        sip_password: new_sip_password(),
        access_password: Some(req.password.clone()),
        username: Some(req.username.clone()),
        display_name: Some(req.username.clone()),
        email: Some(req.email.clone()),
        template: state.template.clone(),
        ..Default::default()
    };
    let account = match state.store.add_account(&new).await {
        Ok(a) => a,
        Err(StoreError::Conflict(_)) => return Err(taken()),
        Err(e) => return Err(e.into()),
    };
    // Inactive until the link is followed; login says "not active" meanwhile.
    state
        .store
        .set_account_active(&account.login, false)
        .await?;
    state
        .store
        .set_profile_country(&account.login, &req.country.to_ascii_uppercase())
        .await?;
    let expires = state.clock.now() + state.mailer.config().activation_ttl_secs as i64;
    let token = token::sign(&state.token_key, ACTIVATE, &account.login, expires);
    let link = format!("{}/v1/activate?token={token}", state.link_base);
    if let Err(e) = state
        .mailer
        .send(
            &req.email,
            &state.activation_template,
            &[("USER_NAME", &account.login), ("LINK", &link), ("CODE", "")],
        )
        .await
    {
        // Without the e-mail the account could never be activated: undo it so
        // the user can simply try again.
        tracing::warn!(login = %account.login, error = %e, "activation e-mail not sent; account removed");
        state.store.delete_account(&account.login).await?;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "email-unavailable",
            "the activation e-mail could not be sent; try again later",
        ));
    }
    tracing::info!(login = %account.login, "username sign-up: activation e-mail sent");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "status": "activation-sent", "login": account.login })),
    )
        .into_response())
}

fn taken() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "username-taken",
        "this username is taken",
    )
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    pub token: String,
}

pub(crate) fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title></head>\
         <body><h1 id=\"result\">{t}</h1><p>{x}</p></body></html>\n",
        t = html_escape(title),
        x = html_escape(text)
    );
    (status, Html(html)).into_response()
}

/// `GET /v1/activate?token=`: an HTML page saying whether it worked.
pub async fn activate(
    State(state): State<Arc<ApiState>>,
    query: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else {
        return page(
            StatusCode::BAD_REQUEST,
            "Activation failed",
            "The link is incomplete.",
        );
    };
    let login = match token::verify(&state.token_key, ACTIVATE, &q.token, state.clock.now()) {
        Ok(login) => login,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Activation failed",
                &format!(
                    "{}. Sign up again to get a new link.",
                    capitalise(&e.to_string())
                ),
            );
        }
    };
    match state.store.set_account_active(&login, true).await {
        Ok(true) => {
            tracing::info!(%login, "account activated");
            page(
                StatusCode::OK,
                "Account activated",
                &format!("Your account {login} is active. You can log in now."),
            )
        }
        Ok(false) => page(
            StatusCode::NOT_FOUND,
            "Activation failed",
            "This account no longer exists.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "activation failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Activation failed",
                "Something went wrong on our side; try the link again later.",
            )
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::valid_username;

    #[test]
    fn usernames() {
        for ok in ["bob", "alice.smith", "a_b-c", "user2024"] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["ab", "12345", "has space", "a@b", "ünï", &"x".repeat(33)] {
            assert!(!valid_username(bad), "{bad}");
        }
    }
}
