//! Phone sign-up (SPEC §3): phone + OS + device UDID → a 4-digit code by
//! SMS → the code → SIP credentials.
//!
//! The rules are the pure functions [`decide_start`] and [`decide_verify`];
//! the handlers read the request row, apply them and write the outcome with
//! conditional updates (see `store::phone_signups`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ApiQuery};
use super::phone::normalize;
use super::{ApiConfig, ApiState, CallOutRequest, SipCredentials};
use crate::store::phone_signups::PhoneSignup;
use crate::store::sms::{SmsPurpose, SmsStatus};
use crate::store::{NewAccount, StoreError};

/// Who is signing up.
#[derive(Debug, Deserialize)]
pub struct Device {
    /// As entered: national or international.
    pub phone: String,
    /// The user's country calling code (e.g. `48`), for national numbers.
    #[serde(default)]
    pub country_code: Option<String>,
    /// Stable device identifier.
    pub udid: String,
}

#[derive(Debug, Deserialize)]
pub struct StartRequest {
    #[serde(flatten)]
    pub device: Device,
    /// `android`, `ios`, ...
    pub os: String,
}

#[derive(Debug, Deserialize)]
pub struct VerifyRequest {
    #[serde(flatten)]
    pub device: Device,
    pub code: String,
}

#[derive(Debug, Serialize)]
struct CodeSent {
    status: &'static str,
    phone: String,
    sms_left: i64,
    resend_after_secs: u64,
}

/// What a start request leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartDecision {
    /// The device signed up with this number before: credentials at once.
    Reinstall,
    /// First request: new code, first SMS.
    SendFirst,
    /// Send the code again.
    Resend,
    /// The SMS allowance is spent.
    TooManySms,
    /// Too early to resend: seconds left.
    TooSoon(u64),
    /// Too many wrong codes: the device is refused.
    Refused,
}

/// The rules of a start request, given the device's row (if any), whether
/// the number has an account, and the time.
pub fn decide_start(
    row: Option<&PhoneSignup>,
    account_exists: bool,
    now: i64,
    rules: &ApiConfig,
) -> StartDecision {
    let Some(row) = row else {
        return StartDecision::SendFirst;
    };
    if row.completed_login.is_some() && account_exists {
        return StartDecision::Reinstall;
    }
    if row.attempts_left <= 0 {
        return StartDecision::Refused;
    }
    if row.sms_left <= 0 {
        return StartDecision::TooManySms;
    }
    let since = now.saturating_sub(row.last_sms_at).max(0) as u64;
    if since < rules.resend_after_secs {
        return StartDecision::TooSoon(rules.resend_after_secs - since);
    }
    StartDecision::Resend
}

/// What a code submission leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyDecision {
    Right,
    Wrong,
    Refused,
}

/// The rules of a code submission.
pub fn decide_verify(row: &PhoneSignup, code: &str) -> VerifyDecision {
    if row.attempts_left <= 0 {
        VerifyDecision::Refused
    } else if constant_time_eq(row.code.as_bytes(), code.trim().as_bytes()) {
        VerifyDecision::Right
    } else {
        VerifyDecision::Wrong
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn new_code() -> String {
    format!("{:04}", rand::random_range(0..10_000u32))
}

/// A random SIP password: 20 characters of [A-Za-z0-9], ~119 bits.
pub(crate) fn new_sip_password() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// Tells the books holding the new user's number (SPEC §5): stored first,
/// then delivered by the SIP service when it runs here. A failure is
/// logged: the account stands either way.
async fn announce_join(state: &ApiState, login: &str, phone: &str, os: &str) {
    match state
        .store
        .announce_join(login, Some(phone), phone, os)
        .await
    {
        Ok(messages) if messages.is_empty() => {}
        Ok(messages) => {
            tracing::info!(
                login,
                messages = messages.len(),
                "new user announced to the books holding the number"
            );
            if let Some(hook) = &state.on_user_joined {
                hook(messages);
            }
        }
        Err(e) => tracing::error!(login, error = %e, "new user not announced"),
    }
}

fn validate_device(d: &Device) -> Result<String, ApiError> {
    if d.udid.is_empty() || d.udid.len() > 255 || d.udid.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "udid must be 1 to 255 printable characters",
        ));
    }
    normalize(&d.phone, d.country_code.as_deref())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-phone", e.to_string()))
}

fn refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "device-refused",
        "too many wrong codes: this device may not sign up with this number",
    )
}

fn too_many_sms() -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-sms",
        "Too many SMSes: no more codes for this number on this device",
    )
}

async fn credentials(state: &ApiState, login: &str) -> Result<SipCredentials, ApiError> {
    let password = state
        .store
        .sip_password(login)
        .await?
        .ok_or_else(|| ApiError::internal(format!("account {login} vanished")))?;
    Ok(SipCredentials {
        token: state.session_token(login),
        login: login.to_string(),
        sip_password: password,
        sip_domain: state.sip_domain.clone(),
    })
}

async fn queue_code(
    state: &ApiState,
    row_id: i64,
    phone: &str,
    code: &str,
) -> Result<(), ApiError> {
    let text = state.config.code_sms_text.replace("[CODE]", code);
    let sms_id = state
        .store
        .queue_sms_message(
            &state.sms.config.provider,
            phone,
            &state.sms.config.sender,
            &text,
            SmsPurpose::SignupCode,
            crate::store::now_secs(),
        )
        .await?;
    state.store.set_signup_sms(row_id, sms_id).await?;
    state.sms.wake.notify_one();
    tracing::info!(phone, sms = sms_id, "sign-up code queued");
    Ok(())
}

/// How the code reaches the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Sms,
    /// A voice call that reads it out (SPEC §3 "call me").
    Call,
}

/// `POST /v1/signup/phone`.
pub async fn start(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<Response, ApiError> {
    send_code(&state, peer, &req, Channel::Sms).await
}

/// `POST /v1/signup/phone/call-me`: the same request, the code read out
/// twice by a voice call through the gateway that serves the number. It
/// counts against the same allowance and spacing as the SMS.
pub async fn call_me(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<Response, ApiError> {
    send_code(&state, peer, &req, Channel::Call).await
}

async fn send_code(
    state: &Arc<ApiState>,
    peer: SocketAddr,
    req: &StartRequest,
    channel: Channel,
) -> Result<Response, ApiError> {
    state.limit_address(peer)?;
    let phone = validate_device(&req.device)?;
    if req.os.is_empty() || req.os.len() > 64 {
        return Err(ApiError::invalid("os must be 1 to 64 characters"));
    }
    state.limit_identity(&format!("phone:{phone}"))?;
    let udid = &req.device.udid;
    let now = state.clock.now();
    let row = state.store.phone_signup(&phone, udid).await?;
    let account = state.store.account_by_phone(&phone).await?;
    let decision = decide_start(row.as_ref(), account.is_some(), now, &state.config);
    if matches!(decision, StartDecision::SendFirst | StartDecision::Resend) {
        match channel {
            Channel::Sms if !state.sms.enabled() => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "sms-unavailable",
                    "this service sends no SMS (no provider configured)",
                ));
            }
            Channel::Call if state.call_out.is_none() => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "call-me-not-available",
                    "this service places no calls (no SIP service running)",
                ));
            }
            _ => {}
        }
    }
    let deliver = async |row_id: i64, code: &str| match channel {
        Channel::Sms => queue_code(state, row_id, &phone, code).await,
        Channel::Call => place_call(state, row_id, &phone, code).await,
    };
    let sms_left = match (decision, row) {
        (StartDecision::Reinstall, _) => {
            let login = account.map(|a| a.login).unwrap_or_default();
            tracing::info!(phone, "phone sign-up: reinstall on a known device");
            return Ok(Json(credentials(state, &login).await?).into_response());
        }
        (StartDecision::Refused, _) => return Err(refused()),
        (StartDecision::TooManySms, _) => return Err(too_many_sms()),
        (StartDecision::TooSoon(secs), _) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "resend-too-soon",
                format!("a new code may be asked for in {secs} s"),
            )
            .retry_after(secs));
        }
        (StartDecision::SendFirst, _) => {
            let code = new_code();
            let first_left = i64::from(state.config.sms_per_device) - 1;
            let row = match state
                .store
                .insert_phone_signup(
                    &phone,
                    udid,
                    &req.os,
                    &code,
                    first_left,
                    i64::from(state.config.code_attempts),
                    now,
                )
                .await
            {
                Ok(row) => row,
                // The same device asked twice at once: the other request sends.
                Err(StoreError::Conflict(_)) => {
                    return Err(ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "resend-too-soon",
                        "a code is already on its way",
                    )
                    .retry_after(state.config.resend_after_secs));
                }
                Err(e) => return Err(e.into()),
            };
            deliver(row.id, &code).await?;
            row.sms_left
        }
        (StartDecision::Resend, Some(row)) => {
            if !state.store.spend_signup_sms(&row, &req.os, now).await? {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "resend-too-soon",
                    "a code is already on its way",
                )
                .retry_after(state.config.resend_after_secs));
            }
            deliver(row.id, &row.code).await?;
            row.sms_left - 1
        }
        // decide_start resends only existing rows; answer rather than panic.
        (StartDecision::Resend, None) => {
            return Err(ApiError::internal("resend decided without a sign-up row"));
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(CodeSent {
            status: match channel {
                Channel::Sms => "code-sent",
                Channel::Call => "calling",
            },
            phone,
            sms_left,
            resend_after_secs: state.config.resend_after_secs,
        }),
    )
        .into_response())
}

/// Starts the call that reads `code` to `phone`; its outcome becomes the
/// request's delivery status.
async fn place_call(
    state: &Arc<ApiState>,
    row_id: i64,
    phone: &str,
    code: &str,
) -> Result<(), ApiError> {
    let Some(call_out) = &state.call_out else {
        return Err(ApiError::internal("call-me without a SIP service"));
    };
    state.store.set_signup_call(row_id, "pending").await?;
    call_out(CallOutRequest {
        signup_id: row_id,
        phone: phone.to_owned(),
        code: code.to_owned(),
    });
    tracing::info!(phone, "sign-up code call placed");
    Ok(())
}

/// `POST /v1/signup/phone/verify`.
pub async fn verify(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    state.limit_address(peer)?;
    let phone = validate_device(&req.device)?;
    state.limit_identity(&format!("phone:{phone}"))?;
    let now = state.clock.now();
    let Some(row) = state.store.phone_signup(&phone, &req.device.udid).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no-signup",
            "no code was sent to this number for this device",
        ));
    };
    match decide_verify(&row, &req.code) {
        VerifyDecision::Refused => Err(refused()),
        VerifyDecision::Wrong => {
            state.store.spend_signup_attempt(&row, now).await?;
            let left = (row.attempts_left - 1).max(0);
            tracing::info!(phone, attempts_left = left, "phone sign-up: wrong code");
            if left == 0 {
                return Err(refused());
            }
            let mut e = ApiError::new(StatusCode::BAD_REQUEST, "wrong-code", "wrong code");
            e.attempts_left = Some(left);
            Err(e)
        }
        VerifyDecision::Right => {
            let login = match state.store.account_by_phone(&phone).await? {
                // Another device of the same number: the account is shared.
                Some(a) => a.login,
                None => {
                    let new = NewAccount {
                        login: phone.clone(),
                        sip_password: new_sip_password(),
                        phone: Some(phone.clone()),
                        display_name: Some(phone.clone()),
                        template: state.template.clone(),
                        ..Default::default()
                    };
                    match state.store.add_account(&new).await {
                        Ok(a) => {
                            tracing::info!(login = %a.login, "account created by phone sign-up");
                            announce_join(&state, &a.login, &phone, &row.os).await;
                            a.login
                        }
                        // Two devices verified at once: the other one created it.
                        Err(StoreError::Conflict(_)) => state
                            .store
                            .account_by_phone(&phone)
                            .await?
                            .map(|a| a.login)
                            .ok_or_else(|| ApiError::internal("phone conflict without account"))?,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            state
                .store
                .complete_phone_signup(row.id, &login, now)
                .await?;
            Ok((StatusCode::OK, Json(credentials(&state, &login).await?)).into_response())
        }
    }
}

#[derive(Debug, Serialize)]
struct DeliveryStatus {
    /// `pending`, `delivered` or `failed`.
    delivery: &'static str,
}

/// `GET /v1/signup/phone/status?phone=&country_code=&udid=`.
pub async fn status(
    State(state): State<Arc<ApiState>>,
    ApiQuery(device): ApiQuery<Device>,
) -> Result<Response, ApiError> {
    let phone = validate_device(&device)?;
    let no_signup = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no-signup",
            "no code was sent to this number for this device",
        )
    };
    let row = state
        .store
        .phone_signup(&phone, &device.udid)
        .await?
        .ok_or_else(no_signup)?;
    let sms = match row.sms_id {
        Some(id) => state.store.sms_message(id).await?,
        None => None,
    };
    let delivery = match (row.call_status.as_deref(), sms.map(|m| m.status)) {
        (Some("answered"), _) => "delivered",
        (Some("failed"), _) => "failed",
        (Some(_), _) => "pending",
        (None, Some(SmsStatus::Delivered)) => "delivered",
        (None, Some(SmsStatus::Failed)) => "failed",
        _ => "pending",
    };
    Ok(Json(DeliveryStatus { delivery }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sms_left: i64, attempts_left: i64, last_sms_at: i64, done: bool) -> PhoneSignup {
        PhoneSignup {
            id: 1,
            phone: "48600100200".into(),
            udid: "d".into(),
            os: "android".into(),
            code: "0421".into(),
            sms_left,
            attempts_left,
            last_sms_at,
            sms_id: None,
            completed_login: done.then(|| "48600100200".into()),
            call_status: None,
        }
    }

    #[test]
    fn start_rules() {
        let rules = ApiConfig::default();
        let d = |r: Option<&PhoneSignup>, acct, now| decide_start(r, acct, now, &rules);
        assert_eq!(d(None, false, 0), StartDecision::SendFirst);
        assert_eq!(
            d(None, true, 0),
            StartDecision::SendFirst,
            "a new device of a known number"
        );
        assert_eq!(
            d(Some(&row(4, 3, 100, true)), true, 101),
            StartDecision::Reinstall
        );
        assert_eq!(
            d(Some(&row(4, 3, 100, false)), false, 101),
            StartDecision::TooSoon(59)
        );
        assert_eq!(
            d(Some(&row(4, 3, 100, false)), false, 160),
            StartDecision::Resend
        );
        assert_eq!(
            d(Some(&row(0, 3, 100, false)), false, 1000),
            StartDecision::TooManySms
        );
        assert_eq!(
            d(Some(&row(4, 0, 100, false)), false, 1000),
            StartDecision::Refused
        );
    }

    #[test]
    fn verify_rules() {
        assert_eq!(
            decide_verify(&row(4, 3, 0, false), "0421"),
            VerifyDecision::Right
        );
        assert_eq!(
            decide_verify(&row(4, 3, 0, false), " 0421 "),
            VerifyDecision::Right
        );
        assert_eq!(
            decide_verify(&row(4, 3, 0, false), "421"),
            VerifyDecision::Wrong
        );
        assert_eq!(
            decide_verify(&row(4, 0, 0, false), "0421"),
            VerifyDecision::Refused
        );
    }

    #[test]
    fn codes_and_passwords() {
        for _ in 0..100 {
            let c = new_code();
            assert!(c.len() == 4 && c.bytes().all(|b| b.is_ascii_digit()));
        }
        let p = new_sip_password();
        assert_eq!(p.len(), 20);
        assert_ne!(p, new_sip_password());
    }
}
