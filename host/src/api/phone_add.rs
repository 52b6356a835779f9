//! Adding a phone number to an existing account (issue 18, the seed's
//! "Adding phone number"): an account made by username sign-up (or one
//! without a phone, or one replacing its number) proves a number with the
//! phone sign-up's 4-digit SMS code — the same rules, limits, store rows and
//! error codes (`phone_signup::issue_code` / `check_code`; its requests are
//! keyed by the account as well) — and the number becomes the account's
//! phone: it logs in with it, and the books holding it are told as for a
//! new user (`contacts-add` plus the "user joined" text, SPEC §5).
//!
//! - A number another account holds: 409 `phone-taken`, at start and again
//!   at verify, where the unique index on the profile's phone decides
//!   (one conditional update; nothing else is written before it).
//! - The account's own number: 409 `phone-already-yours` at start; a right
//!   code for it at verify answers 200 (a retried verify), announcing
//!   nothing again.
//! - Replacing a number frees the old one, and the books holding it get
//!   `contacts-del`, as when an account is removed: the old number is no
//!   service user any more, and may be given to someone else.
//! - Presence's buddy lists follow: the books holding either number are
//!   recorded as changed with the phone (`Store::replace_account_phone`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiJson};
use super::phone_signup::{
    Channel, CodeRequest, Device, Issued, announce_join, check_code, code_sent,
    deliver_announcement, issue_code, validate_device, validate_os,
};
use crate::store::contacts::country_code_of;
use crate::store::{Account, StoreError};

#[derive(Debug, Deserialize)]
pub struct AddRequest {
    #[serde(flatten)]
    pub device: Device,
    /// `android`, `ios`, ...: passed on in the `contacts-add` commands.
    #[serde(default)]
    pub os: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AddVerifyRequest {
    #[serde(flatten)]
    pub device: Device,
    pub code: String,
}

/// The answer of a verified number.
#[derive(Debug, Serialize)]
struct PhoneSet {
    login: String,
    /// E.164 without `+`.
    phone: String,
}

/// Who holds the number an account asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Nobody,
    /// The asking account itself.
    Caller,
    Other,
}

/// The holder of a number, given the asking login and the login of the
/// account that has the number (if any).
pub fn holder(login: &str, holder: Option<&str>) -> Holder {
    match holder {
        None => Holder::Nobody,
        Some(h) if h == login => Holder::Caller,
        Some(_) => Holder::Other,
    }
}

/// The calling code a national number is completed with when the request
/// names none: the account's own phone's, else the switch's default (the
/// one its address book is read with, `api::contacts`).
pub fn default_country_code<'a>(own_phone: Option<&'a str>, default: &'a str) -> &'a str {
    own_phone.and_then(country_code_of).unwrap_or(default)
}

fn phone_taken() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "phone-taken",
        "this number belongs to another account",
    )
}

async fn own_account(state: &ApiState, login: &str) -> Result<Account, ApiError> {
    state
        .store
        .account_by_login(login)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such account"))
}

/// The account behind the token, and the request's number normalised.
async fn prepare(
    state: &ApiState,
    peer: SocketAddr,
    headers: &HeaderMap,
    device: &Device,
) -> Result<(Account, String), ApiError> {
    let login = state.authenticate(headers)?;
    state.limit_address(peer)?;
    let account = own_account(state, &login).await?;
    let cc = default_country_code(account.phone.as_deref(), &state.default_country_code);
    let phone = validate_device(device, Some(cc))?;
    state.limit_identity(&format!("phone:{phone}"))?;
    Ok((account, phone))
}

/// `POST /v1/phone` with the bearer token: sends the code (202, as sign-up).
pub async fn start(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AddRequest>,
) -> Result<Response, ApiError> {
    if let Some(os) = &req.os {
        validate_os(os)?;
    }
    let (account, phone) = prepare(&state, peer, &headers, &req.device).await?;
    let current = state.store.account_by_phone(&phone).await?.map(|a| a.login);
    match holder(&account.login, current.as_deref()) {
        Holder::Other => return Err(phone_taken()),
        Holder::Caller => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "phone-already-yours",
                "this number is already the account's phone",
            ));
        }
        Holder::Nobody => {}
    }
    let request = CodeRequest {
        phone: &phone,
        udid: &req.device.udid,
        for_login: &account.login,
        os: req.os.as_deref(),
    };
    match issue_code(&state, &request, None, Channel::Sms).await? {
        Issued::Sent { sms_left } => {
            tracing::info!(login = %account.login, phone, "phone add: code sent");
            Ok(code_sent(&state, Channel::Sms, phone, sms_left))
        }
        Issued::Reinstall => Err(ApiError::internal("phone add decided a re-install")),
    }
}

/// `POST /v1/phone/verify` with the bearer token: the code; 200 and the
/// account's new phone.
pub async fn verify(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AddVerifyRequest>,
) -> Result<Response, ApiError> {
    let (mut account, phone) = prepare(&state, peer, &headers, &req.device).await?;
    let login = account.login.clone();
    let row = check_code(&state, &phone, &req.device.udid, &login, &req.code).await?;
    let answer = || {
        Json(PhoneSet {
            login: login.clone(),
            phone: phone.clone(),
        })
    };
    // The phone is set only if it is still what was read: a concurrent
    // change (the same verify twice, two numbers at once) is read again.
    let mut tries = 0;
    let old = loop {
        if account.phone.as_deref() == Some(phone.as_str()) {
            // Verified before (a retry): nothing more to tell anyone.
            return Ok(answer().into_response());
        }
        match state
            .store
            .replace_account_phone(&login, account.phone.as_deref(), &phone)
            .await
        {
            Ok(true) => break account.phone,
            Ok(false) if tries < 3 => {
                tries += 1;
                account = own_account(&state, &login).await?;
            }
            Ok(false) => return Err(ApiError::internal("the account's phone keeps changing")),
            Err(StoreError::Conflict(_)) => return Err(phone_taken()),
            Err(e) => return Err(e.into()),
        }
    };
    tracing::info!(%login, phone, replaced = ?old, "phone added to the account");
    state
        .store
        .complete_phone_signup(row.id, &login, state.clock.now())
        .await?;
    if let Some(old) = &old {
        let stored = state.store.announce_leave(&login, old).await;
        deliver_announcement(&state, &login, "gave up a number", stored);
    }
    let name = account.display_name.as_deref().unwrap_or(&phone);
    announce_join(&state, &login, name, &phone, &row.os).await;
    Ok(answer().into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_holds_the_number() {
        assert_eq!(holder("alice", None), Holder::Nobody);
        assert_eq!(holder("alice", Some("alice")), Holder::Caller);
        assert_eq!(holder("alice", Some("bob")), Holder::Other);
    }

    #[test]
    fn national_numbers_take_the_accounts_calling_code() {
        assert_eq!(default_country_code(Some("48600100200"), "1"), "48");
        assert_eq!(default_country_code(Some("15551234567"), "48"), "1");
        assert_eq!(default_country_code(None, "44"), "44");
        let device = |phone: &str, cc: Option<&str>| Device {
            phone: phone.into(),
            country_code: cc.map(str::to_string),
            udid: "d".into(),
        };
        // The request's code wins over the account's.
        assert_eq!(
            validate_device(&device("0600 100 200", None), Some("48")).unwrap(),
            "48600100200"
        );
        assert_eq!(
            validate_device(&device("0600 100 200", Some("44")), Some("48")).unwrap(),
            "44600100200"
        );
        assert_eq!(
            validate_device(&device("+1 555 123 4567", None), Some("48")).unwrap(),
            "15551234567"
        );
        let bad = validate_device(&device("call me", None), Some("48")).unwrap_err();
        assert_eq!(
            (bad.status, bad.code),
            (StatusCode::BAD_REQUEST, "invalid-phone")
        );
    }
}
