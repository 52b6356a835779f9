//! Passwords (SPEC §3): change from the app (the old password proves who
//! asks), and "forgot password": an e-mail with a reset link
//! (`/v1/password/reset?code=TOKEN`) to an HTML form that sets a new one.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, ApiJson};
use super::login::{bad_credentials, resolve};
use super::username_signup::page;
use super::{ApiState, token};
use crate::notify::email::html_escape;

/// Token purpose of reset links.
pub const RESET: &str = "reset";
/// A reset link works for an hour: it is asked for and used at once.
const RESET_TTL_SECS: i64 = 3600;

fn check_new(password: &str) -> Result<(), ApiError> {
    if password.len() < 8 || password.len() > 1024 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "weak-password",
            "the password needs 8 to 1024 characters",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    pub id: String,
    pub password: String,
    pub new_password: String,
    #[serde(default)]
    pub country_code: Option<String>,
}

/// `POST /v1/password/change`.
pub async fn change(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<ChangeRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.limit_address(peer)?;
    if req.id.is_empty() || req.id.len() > 255 || req.password.len() > 1024 {
        return Err(ApiError::invalid("id must be 1 to 255 characters"));
    }
    check_new(&req.new_password)?;
    state.limit_identity(&format!("id:{}", req.id))?;
    let Some(account) = resolve(&state, &req.id, req.country_code.as_deref()).await? else {
        return Err(bad_credentials());
    };
    if !state
        .store
        .verify_access_password(&account.login, &req.password)
        .await?
    {
        return Err(bad_credentials());
    }
    state
        .store
        .set_access_password(&account.login, Some(&req.new_password))
        .await?;
    tracing::info!(login = %account.login, "access password changed");
    Ok(Json(serde_json::json!({ "status": "changed" })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRequest {
    pub password: String,
}

/// `POST /v1/password/set` with the bearer token: the first access password
/// of an account made by phone sign-up (it has none, so "change" cannot
/// prove anything); 409 `password-already-set` once there is one.
pub async fn set_first(
    State(state): State<Arc<ApiState>>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<SetRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let login = state.authenticate(&headers)?;
    check_new(&req.password)?;
    if !state
        .store
        .set_first_access_password(&login, &req.password)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "password-already-set",
            "the account has an access password: change it with the old one",
        ));
    }
    tracing::info!(%login, "first access password set");
    Ok(Json(serde_json::json!({ "status": "set" })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    pub id: String,
    #[serde(default)]
    pub country_code: Option<String>,
}

/// `POST /v1/password/forgot`: always the same answer, so it tells nobody
/// which IDs exist or have an e-mail address.
pub async fn forgot(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<ForgotRequest>,
) -> Result<Response, ApiError> {
    state.limit_address(peer)?;
    if req.id.is_empty() || req.id.len() > 255 {
        return Err(ApiError::invalid("id must be 1 to 255 characters"));
    }
    state.limit_identity(&format!("id:{}", req.id))?;
    if !state.mailer.enabled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "email-unavailable",
            "this service sends no e-mail (no SMTP server configured)",
        ));
    }
    if let Some(account) = resolve(&state, &req.id, req.country_code.as_deref()).await?
        && let Some(email) = account.email.as_deref()
    {
        let code = token::sign(
            &state.token_key,
            RESET,
            &account.login,
            state.clock.now() + RESET_TTL_SECS,
        );
        let link = format!("{}/v1/password/reset?code={code}", state.link_base);
        match state
            .mailer
            .send(
                email,
                &state.reset_template,
                &[("USER_NAME", &account.login), ("LINK", &link), ("CODE", "")],
            )
            .await
        {
            Ok(()) => tracing::info!(login = %account.login, "password reset e-mail sent"),
            Err(e) => {
                tracing::warn!(login = %account.login, error = %e, "password reset e-mail not sent");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "email-unavailable",
                    "the e-mail could not be sent; try again later",
                ));
            }
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "reset-sent-if-known" })),
    )
        .into_response())
}

/// One `application/x-www-form-urlencoded` or query component, decoded.
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| form_decode(k) == name)
        .map(|(_, v)| form_decode(v))
}

fn reset_form(code: &str, note: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>Choose a new password</title></head>\
         <body><h1 id=\"result\">Choose a new password</h1><p>{note}</p>\
         <form method=\"post\" action=\"/v1/password/reset\">\
         <input type=\"hidden\" name=\"code\" value=\"{code}\">\
         <label>New password <input type=\"password\" name=\"password\" id=\"password\" minlength=\"8\" required></label>\
         <button type=\"submit\" id=\"submit\">Set password</button></form></body></html>\n",
        note = html_escape(note),
        code = html_escape(code)
    );
    Html(html).into_response()
}

/// `GET /v1/password/reset?code=`: the form, if the link is good.
pub async fn reset_page(State(state): State<Arc<ApiState>>, uri: axum::http::Uri) -> Response {
    let code = uri
        .query()
        .and_then(|q| form_field(q, "code"))
        .unwrap_or_default();
    match token::verify(&state.token_key, RESET, &code, state.clock.now()) {
        Ok(_) => reset_form(&code, "At least 8 characters."),
        Err(e) => page(
            StatusCode::BAD_REQUEST,
            "Password not changed",
            &format!("{e}. Ask for a new link from the app."),
        ),
    }
}

/// `POST /v1/password/reset` (the form): sets the new password.
pub async fn reset_submit(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    let body = String::from_utf8_lossy(&body);
    let code = form_field(&body, "code").unwrap_or_default();
    let password = form_field(&body, "password").unwrap_or_default();
    let login = match token::verify(&state.token_key, RESET, &code, state.clock.now()) {
        Ok(login) => login,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Password not changed",
                &format!("{e}. Ask for a new link from the app."),
            );
        }
    };
    if check_new(&password).is_err() {
        return reset_form(&code, "The password needs at least 8 characters.");
    }
    match state
        .store
        .set_access_password(&login, Some(&password))
        .await
    {
        Ok(true) => {
            tracing::info!(%login, "access password reset through the e-mailed link");
            page(
                StatusCode::OK,
                "Password changed",
                "Your new password works now. Log in from the app.",
            )
        }
        Ok(false) => page(
            StatusCode::NOT_FOUND,
            "Password not changed",
            "This account no longer exists.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "password reset failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Password not changed",
                "Something went wrong on our side; try again later.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields() {
        assert_eq!(
            form_field("code=a%2Eb.c&password=p+w%21", "password").as_deref(),
            Some("p w!")
        );
        assert_eq!(form_field("code=a%2Eb.c", "code").as_deref(), Some("a.b.c"));
        assert_eq!(form_field("x=1", "code"), None);
        assert_eq!(form_decode("%zz%4"), "%zz%4");
    }
}
