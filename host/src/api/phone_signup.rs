//! Phone sign-up (SPEC §3): phone + OS + device UDID → a 4-digit code by
//! SMS → the code → SIP credentials.
//!
//! The rules are the pure functions [`decide_start`] and [`decide_verify`];
//! the handlers read the request row, apply them and write the outcome with
//! conditional updates (see `store::phone_signups`). [`issue_code`] and
//! [`check_code`] apply them for sign-up and for an account adding a number
//! to itself (`phone_add`), which shares the rules, limits and error codes.

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
use crate::store::messages::StoredMessage;
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

/// The rules of a start request, given the device's row (if any), the
/// login of the number's account (if any), and the time. A re-install is a
/// device that signed up to that very account: one that signed up to an
/// account since deleted, or that has given the number up (replaced it),
/// proves the number again.
pub fn decide_start(
    row: Option<&PhoneSignup>,
    account: Option<&str>,
    now: i64,
    rules: &ApiConfig,
) -> StartDecision {
    let Some(row) = row else {
        return StartDecision::SendFirst;
    };
    if account.is_some() && row.completed_login.as_deref() == account {
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
/// then delivered by the SIP service when it runs here. `name` is the
/// sender name the messages carry. A failure is logged: the account stands
/// either way.
pub(super) async fn announce_join(
    state: &ApiState,
    login: &str,
    name: &str,
    phone: &str,
    os: &str,
) {
    let stored = state
        .store
        .announce_join(login, Some(name), phone, os)
        .await;
    deliver_announcement(state, login, "joined", stored);
}

/// Hands what an announcement (a join, or a number given up) stored to the
/// SIP service, when it runs here; the rest wait for a REGISTER.
pub(super) fn deliver_announcement(
    state: &ApiState,
    login: &str,
    what: &str,
    stored: Result<Vec<StoredMessage>, StoreError>,
) {
    match stored {
        Ok(messages) if messages.is_empty() => {}
        Ok(messages) => {
            tracing::info!(
                login,
                what,
                messages = messages.len(),
                "user announced to the books holding the number"
            );
            if let Some(hook) = &state.on_user_joined {
                hook(messages);
            }
        }
        Err(e) => tracing::error!(login, what, error = %e, "user not announced"),
    }
}

/// The device's UDID checked, and its number normalised with the request's
/// `country_code`, else `default_cc`.
pub(super) fn validate_device(d: &Device, default_cc: Option<&str>) -> Result<String, ApiError> {
    if d.udid.is_empty() || d.udid.len() > 255 || d.udid.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "udid must be 1 to 255 printable characters",
        ));
    }
    normalize(&d.phone, d.country_code.as_deref().or(default_cc))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-phone", e.to_string()))
}

/// An OS name, as the `contacts-add` commands pass it on.
pub(super) fn validate_os(os: &str) -> Result<(), ApiError> {
    if os.is_empty() || os.len() > 64 {
        return Err(ApiError::invalid("os must be 1 to 64 characters"));
    }
    Ok(())
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
pub(super) enum Channel {
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
    let phone = validate_device(&req.device, None)?;
    validate_os(&req.os)?;
    state.limit_identity(&format!("phone:{phone}"))?;
    let account = state.store.account_by_phone(&phone).await?.map(|a| a.login);
    let request = CodeRequest {
        phone: &phone,
        udid: &req.device.udid,
        for_login: "",
        os: Some(&req.os),
    };
    match issue_code(state, &request, account.as_deref(), channel).await? {
        Issued::Reinstall => {
            let login = account.unwrap_or_default();
            tracing::info!(phone, "phone sign-up: reinstall on a known device");
            Ok(Json(credentials(state, &login).await?).into_response())
        }
        Issued::Sent { sms_left } => Ok(code_sent(state, channel, phone, sms_left)),
    }
}

/// A code request: the number, the device, and the account adding the
/// number to itself (empty for a sign-up).
pub(super) struct CodeRequest<'a> {
    pub phone: &'a str,
    pub udid: &'a str,
    pub for_login: &'a str,
    /// The device's OS; `None` keeps the request's (empty on a new one).
    pub os: Option<&'a str>,
}

/// What [`issue_code`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Issued {
    /// The device signed up to `account` before (sign-up only).
    Reinstall,
    /// The code is on its way; `sms_left` more may be asked for.
    Sent { sms_left: i64 },
}

fn resend_too_soon(message: impl Into<String>, secs: u64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "resend-too-soon", message).retry_after(secs)
}

/// Applies [`decide_start`] to the request's row and sends the code by
/// `channel`: a new request's, or the same code again. `account` is the
/// login of the number's account (a sign-up's re-install); `None` never
/// re-installs.
pub(super) async fn issue_code(
    state: &Arc<ApiState>,
    req: &CodeRequest<'_>,
    account: Option<&str>,
    channel: Channel,
) -> Result<Issued, ApiError> {
    let (phone, udid) = (req.phone, req.udid);
    let now = state.clock.now();
    let row = state
        .store
        .phone_request(phone, udid, req.for_login)
        .await?;
    let decision = decide_start(row.as_ref(), account, now, &state.config);
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
        Channel::Sms => queue_code(state, row_id, phone, code).await,
        Channel::Call => place_call(state, row_id, phone, code).await,
    };
    let sms_left = match (decision, row) {
        (StartDecision::Reinstall, _) => return Ok(Issued::Reinstall),
        (StartDecision::Refused, _) => return Err(refused()),
        (StartDecision::TooManySms, _) => return Err(too_many_sms()),
        (StartDecision::TooSoon(secs), _) => {
            return Err(resend_too_soon(
                format!("a new code may be asked for in {secs} s"),
                secs,
            ));
        }
        (StartDecision::SendFirst, _) => {
            let code = new_code();
            let first_left = i64::from(state.config.sms_per_device) - 1;
            let row = match state
                .store
                .insert_phone_signup(
                    phone,
                    udid,
                    req.for_login,
                    req.os.unwrap_or_default(),
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
                    return Err(resend_too_soon(
                        "a code is already on its way",
                        state.config.resend_after_secs,
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            deliver(row.id, &code).await?;
            row.sms_left
        }
        (StartDecision::Resend, Some(row)) => {
            let os = req.os.unwrap_or(&row.os);
            if !state.store.spend_signup_sms(&row, os, now).await? {
                return Err(resend_too_soon(
                    "a code is already on its way",
                    state.config.resend_after_secs,
                ));
            }
            deliver(row.id, &row.code).await?;
            row.sms_left - 1
        }
        // decide_start resends only existing rows; answer rather than panic.
        (StartDecision::Resend, None) => {
            return Err(ApiError::internal("resend decided without a sign-up row"));
        }
    };
    Ok(Issued::Sent { sms_left })
}

/// The 202 answer of a code sent.
pub(super) fn code_sent(
    state: &ApiState,
    channel: Channel,
    phone: String,
    sms_left: i64,
) -> Response {
    (
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
        .into_response()
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

/// Applies [`decide_verify`] to the request of `phone`, `udid` and
/// `for_login` (empty: the sign-up's): its row when `code` is right, else
/// the error to answer (a wrong code spends an attempt).
pub(super) async fn check_code(
    state: &ApiState,
    phone: &str,
    udid: &str,
    for_login: &str,
    code: &str,
) -> Result<PhoneSignup, ApiError> {
    let now = state.clock.now();
    let Some(row) = state.store.phone_request(phone, udid, for_login).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no-signup",
            "no code was sent to this number for this device",
        ));
    };
    match decide_verify(&row, code) {
        VerifyDecision::Refused => Err(refused()),
        VerifyDecision::Wrong => {
            state.store.spend_signup_attempt(&row, now).await?;
            let left = (row.attempts_left - 1).max(0);
            tracing::info!(phone, attempts_left = left, "phone code: wrong code");
            if left == 0 {
                return Err(refused());
            }
            let mut e = ApiError::new(StatusCode::BAD_REQUEST, "wrong-code", "wrong code");
            e.attempts_left = Some(left);
            Err(e)
        }
        VerifyDecision::Right => Ok(row),
    }
}

/// `POST /v1/signup/phone/verify`.
pub async fn verify(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    state.limit_address(peer)?;
    let phone = validate_device(&req.device, None)?;
    state.limit_identity(&format!("phone:{phone}"))?;
    let row = check_code(&state, &phone, &req.device.udid, "", &req.code).await?;
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
                    announce_join(&state, &a.login, &phone, &phone, &row.os).await;
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
        .complete_phone_signup(row.id, &login, state.clock.now())
        .await?;
    Ok((StatusCode::OK, Json(credentials(&state, &login).await?)).into_response())
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
    let phone = validate_device(&device, None)?;
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
            for_login: String::new(),
        }
    }

    #[test]
    fn start_rules() {
        let rules = ApiConfig::default();
        let d = |r: Option<&PhoneSignup>, acct, now| decide_start(r, acct, now, &rules);
        let own = Some("48600100200");
        assert_eq!(d(None, None, 0), StartDecision::SendFirst);
        assert_eq!(
            d(None, own, 0),
            StartDecision::SendFirst,
            "a new device of a known number"
        );
        assert_eq!(
            d(Some(&row(4, 3, 100, true)), own, 101),
            StartDecision::Reinstall
        );
        assert_eq!(
            d(Some(&row(4, 3, 100, false)), None, 101),
            StartDecision::TooSoon(59)
        );
        assert_eq!(
            d(Some(&row(4, 3, 100, false)), None, 160),
            StartDecision::Resend
        );
        assert_eq!(
            d(Some(&row(0, 3, 100, false)), None, 1000),
            StartDecision::TooManySms
        );
        assert_eq!(
            d(Some(&row(4, 0, 100, false)), None, 1000),
            StartDecision::Refused
        );
    }

    #[test]
    fn a_device_reinstalls_only_into_the_account_it_signed_up_to() {
        let rules = ApiConfig::default();
        let d = |acct, now| decide_start(Some(&row(4, 3, 100, true)), acct, now, &rules);
        // The account it made was deleted: the number is proven again.
        assert_eq!(d(None, 101), StartDecision::TooSoon(59));
        assert_eq!(d(None, 160), StartDecision::Resend);
        // The number has moved to another account (its old one gave it up,
        // another one added it): no credentials without a code.
        assert_eq!(d(Some("bob"), 160), StartDecision::Resend);
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
