//! The client HTTPS API (SPEC §3): versioned JSON under `/v1/`, described by
//! `/v1/openapi.json`, errors as `{ "code", "message" }`.
//!
//! - [`listener`]: TLS on axum (same certificate logic as SIP TLS);
//! - [`error`]: the error answers and the JSON/query extractors that use them;
//! - [`phone`]: number normalisation (SPEC §4);
//! - [`phone_signup`]: sign-up by SMS code; [`login`]: public ID + password;
//! - [`phone_add`]: an account adding (or replacing) its phone by SMS code;
//! - [`sms_reports`]: the vendors' delivery-report webhook;
//! - [`profile`], [`avatar`], [`friends`]: the profile, its picture, and
//!   the search for other users;
//! - [`files`]: file sharing (upload with recipients, download, thumbnails).
//!
//! Abuse limits: a body-size cap on every request, and token buckets per
//! source address and per identity (phone number or public ID) on the
//! endpoints that cost something (SMS, password hashing).

pub mod answering;
pub mod avatar;
pub mod billing;
pub mod clock;
pub mod contacts;
pub mod dids;
pub mod error;
pub mod files;
pub mod friends;
pub mod history;
pub mod listener;
pub mod login;
pub mod password;
pub mod payments;
pub mod phone;
pub mod phone_add;
pub mod phone_signup;
pub mod plans;
pub mod profile;
pub mod push_tokens;
pub mod recordings;
pub mod sms_reports;
pub mod start;
pub mod token;
pub mod username_signup;
pub mod voicemail;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get, post, put};
use serde::{Deserialize, Serialize};

use crate::notify::email::{Mailer, Template};
use crate::ratelimit::RateLimiter;
use crate::sms::SmsService;
use crate::store::{AccountTemplate, Store};

pub use error::ApiError;

/// `[api]`: the client HTTPS API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// HTTPS listeners; empty disables the API.
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain and key; both empty means the SIP TLS
    /// certificate (`sip.tls_cert`), else the generated self-signed one.
    pub tls_cert: String,
    pub tls_key: String,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Costly requests (sign-up, code checks, login) one address may make in a burst ...
    pub address_burst: u32,
    /// ... and the seconds it takes to earn one more.
    pub address_refill_secs: u64,
    /// The same per identity (phone number or public ID), whatever the address.
    pub identity_burst: u32,
    pub identity_refill_secs: u64,
    /// Text of the code SMS; `[CODE]` is replaced by the code.
    pub code_sms_text: String,
    /// Code SMS per phone number and device (SPEC §3: 5).
    pub sms_per_device: u32,
    /// Seconds before a device may ask for the code again (SPEC §3: 60).
    pub resend_after_secs: u64,
    /// Wrong codes before the device is refused (SPEC §3: 3).
    pub code_attempts: u32,
    /// Test seam: a file holding seconds added to the clock of the sign-up
    /// rules. Empty (the default) means the system clock. Debug builds only:
    /// a release build refuses to start with it (`Config::validate`).
    pub clock_offset_file: String,
    /// Largest avatar upload, bytes.
    pub avatar_max_bytes: usize,
    /// Avatars are scaled down to fit a square of this many pixels.
    pub avatar_max_side: u32,
    /// Caller ID (From user part) of "call me" sign-up calls.
    pub call_me_caller_id: String,
    /// Largest shared file, bytes (SPEC §7: the seed's 96 MB).
    pub file_max_bytes: u64,
    /// Seconds a shared file is kept for recipients who have not
    /// downloaded it yet.
    pub file_keep_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8443))],
            tls_cert: String::new(),
            tls_key: String::new(),
            // Sign-up and login bodies are a few hundred bytes; 64 KiB bounds
            // what a client can make the switch buffer.
            max_body_bytes: 64 << 10,
            // A handset signing up makes a handful of these calls; a NAT of a
            // few hundred handsets still fits in 30 plus one every 2 s.
            address_burst: 30,
            address_refill_secs: 2,
            // Per phone or ID: enough for a user fumbling, not for guessing.
            identity_burst: 10,
            identity_refill_secs: 30,
            code_sms_text: "Your verification code is [CODE]".into(),
            sms_per_device: 5,
            resend_after_secs: 60,
            code_attempts: 3,
            clock_offset_file: String::new(),
            // Phones crop before uploading; 5 MiB still takes an uncropped
            // 12-megapixel JPEG.
            avatar_max_bytes: 5 << 20,
            // Sharp on a high-density phone screen at contact-list and
            // call-screen sizes; a JPEG of it is tens of KB.
            avatar_max_side: 512,
            call_me_caller_id: "verify".into(),
            file_max_bytes: 96 << 20,
            // A phone that was off for a holiday still finds its pictures.
            file_keep_secs: 30 * 86_400,
        }
    }
}

/// Keys of the limiters kept at most (see `ratelimit` for the eviction).
const LIMITER_KEYS: usize = 100_000;

/// What every handler shares.
pub struct ApiState {
    pub config: ApiConfig,
    pub store: Store,
    pub sms: Arc<SmsService>,
    /// Push providers, for checking the tokens apps register.
    pub push: Option<Arc<crate::push::PushService>>,
    /// Calling code for the address-book numbers of users without a phone.
    pub default_country_code: String,
    pub template: AccountTemplate,
    /// SIP domain returned with credentials.
    pub sip_domain: String,
    pub clock: clock::Clock,
    /// E-mail for activation links.
    pub mailer: Arc<Mailer>,
    pub activation_template: Template,
    pub reset_template: Template,
    /// `https://host:port` that e-mailed links start with.
    pub link_base: String,
    /// Key of the signed tokens in e-mailed links.
    pub token_key: [u8; 32],
    /// Avatar decodes running at once (each may take up to 200 MiB).
    pub avatar_decoders: tokio::sync::Semaphore,
    /// Told the login whose presence-relevant profile data (the avatar)
    /// changed, so watchers get a fresh document.
    pub on_profile_changed: Option<ProfileChanged>,
    /// Told the login whose voicemail counts changed (MWI).
    pub on_mailbox_changed: Option<ProfileChanged>,
    /// Places "call me" calls (the SIP service, when it runs here).
    pub call_out: Option<CallOut>,
    /// Delivers what a new user's joining stored (the SIP service).
    pub on_user_joined: Option<UserJoined>,
    /// Tariffs, balances, vouchers, transfers.
    pub billing: Arc<crate::billing::Billing>,
    /// The self-care portal served beside the API (`/portal/`), if any.
    pub portal: Option<Arc<crate::portal::Portal>>,
    by_address: RateLimiter<IpAddr>,
    by_identity: RateLimiter<String>,
}

/// See [`ApiState::on_profile_changed`].
pub type ProfileChanged = Arc<dyn Fn(&str) + Send + Sync>;

/// A "call me" call to place: read `code` to `phone`, then record the
/// outcome on sign-up request `signup_id`.
#[derive(Debug, Clone)]
pub struct CallOutRequest {
    pub signup_id: i64,
    pub phone: String,
    pub code: String,
}

/// See [`ApiState::call_out`].
pub type CallOut = Arc<dyn Fn(CallOutRequest) + Send + Sync>;

/// See [`ApiState::on_user_joined`].
pub type UserJoined = Arc<dyn Fn(Vec<crate::store::messages::StoredMessage>) + Send + Sync>;

/// What [`ApiState`] is made of besides the configuration and the store.
pub struct ApiParts {
    pub sms: Arc<SmsService>,
    pub push: Option<Arc<crate::push::PushService>>,
    pub default_country_code: String,
    pub template: AccountTemplate,
    pub sip_domain: String,
    pub mailer: Arc<Mailer>,
    pub activation_template: Template,
    pub reset_template: Template,
    pub link_base: String,
    pub on_profile_changed: Option<ProfileChanged>,
    pub on_mailbox_changed: Option<ProfileChanged>,
    pub call_out: Option<CallOut>,
    pub on_user_joined: Option<UserJoined>,
    pub billing: Arc<crate::billing::Billing>,
    pub portal: Option<Arc<crate::portal::Portal>>,
}

impl ApiState {
    pub fn new(config: ApiConfig, store: Store, parts: ApiParts) -> Self {
        let token_key = store.secrets().derive("api-link-tokens");
        Self {
            by_address: RateLimiter::new(
                config.address_burst,
                Duration::from_secs(config.address_refill_secs),
                LIMITER_KEYS,
            ),
            by_identity: RateLimiter::new(
                config.identity_burst,
                Duration::from_secs(config.identity_refill_secs),
                LIMITER_KEYS,
            ),
            clock: clock::Clock::new(&config.clock_offset_file),
            config,
            store,
            sms: parts.sms,
            push: parts.push,
            default_country_code: parts.default_country_code,
            template: parts.template,
            sip_domain: parts.sip_domain,
            mailer: parts.mailer,
            activation_template: parts.activation_template,
            reset_template: parts.reset_template,
            link_base: parts.link_base,
            on_profile_changed: parts.on_profile_changed,
            on_mailbox_changed: parts.on_mailbox_changed,
            call_out: parts.call_out,
            on_user_joined: parts.on_user_joined,
            billing: parts.billing,
            portal: parts.portal,
            // One per core of the machines this runs on: a burst of uploads
            // queues instead of multiplying the decode memory.
            avatar_decoders: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            token_key,
        }
    }

    /// Calls the profile-change hook, if any.
    pub fn profile_changed(&self, login: &str) {
        if let Some(hook) = &self.on_profile_changed {
            hook(login);
        }
    }

    /// Calls the mailbox-change hook, if any.
    pub fn mailbox_changed(&self, login: &str) {
        if let Some(hook) = &self.on_mailbox_changed {
            hook(login);
        }
    }

    /// Spends one token of the address's bucket.
    pub fn limit_address(&self, peer: SocketAddr) -> Result<(), ApiError> {
        if self
            .by_address
            .check(&peer.ip().to_canonical(), Instant::now())
        {
            Ok(())
        } else {
            tracing::info!(%peer, "API rate limit hit (address)");
            Err(ApiError::rate_limited().retry_after(self.config.address_refill_secs))
        }
    }

    /// Spends one token of the identity's bucket.
    pub fn limit_identity(&self, identity: &str) -> Result<(), ApiError> {
        if self
            .by_identity
            .check(&identity.to_string(), Instant::now())
        {
            Ok(())
        } else {
            tracing::info!(identity, "API rate limit hit (identity)");
            Err(ApiError::rate_limited().retry_after(self.config.identity_refill_secs))
        }
    }
}

/// SIP credentials as returned by sign-up and login.
#[derive(Debug, Serialize)]
pub struct SipCredentials {
    pub login: String,
    pub sip_password: String,
    pub sip_domain: String,
    /// Bearer token for the account's own resources (`/v1/profile`).
    pub token: String,
}

/// Token purpose of API bearer tokens.
pub const SESSION: &str = "session";
/// Bearer tokens last 30 days; the app gets a new one at each login. They are
/// stateless (signed, not stored), so they end only by expiring or by
/// replacing the secret key.
const SESSION_TTL_SECS: i64 = 30 * 86_400;

impl ApiState {
    /// A bearer token for `login`.
    pub fn session_token(&self, login: &str) -> String {
        token::sign(
            &self.token_key,
            SESSION,
            login,
            self.clock.now() + SESSION_TTL_SECS,
        )
    }

    /// The login a request's `Authorization: Bearer` token was issued for.
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing-token",
                    "an Authorization: Bearer token from login or sign-up is required",
                )
            })?;
        token::verify(&self.token_key, SESSION, presented, self.clock.now())
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "bad-token", e.to_string()))
    }
}

/// A request's media type, lower-cased, without parameters (`""` when
/// there is none): what uploads are checked against.
pub(crate) fn media_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The API router (without the listener), with the portal's routes
/// (`/portal/`) when it is configured.
pub fn router(state: Arc<ApiState>) -> Router {
    let portal = state.portal.clone();
    let api = api_router(state);
    match portal {
        Some(portal) => api.merge(crate::portal::router(portal)),
        None => api,
    }
}

fn api_router(state: Arc<ApiState>) -> Router {
    let max_body = state.config.max_body_bytes;
    let max_avatar = state.config.avatar_max_bytes;
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/signup/phone", post(phone_signup::start))
        .route("/v1/signup/phone/verify", post(phone_signup::verify))
        .route("/v1/signup/phone/status", get(phone_signup::status))
        .route("/v1/signup/phone/call-me", post(phone_signup::call_me))
        .route("/v1/phone", post(phone_add::start))
        .route("/v1/phone/verify", post(phone_add::verify))
        .route("/v1/signup/username", post(username_signup::start))
        .route(
            "/v1/signup/username/available",
            get(username_signup::available),
        )
        .route("/v1/activate", get(username_signup::activate))
        .route("/v1/login", post(login::login))
        .route("/v1/password/change", post(password::change))
        .route("/v1/password/set", post(password::set_first))
        .route(
            "/v1/profile",
            get(profile::get_profile).patch(profile::update_profile),
        )
        .route(
            "/v1/profile/avatar",
            put(avatar::upload)
                .delete(avatar::remove)
                .layer(DefaultBodyLimit::max(max_avatar)),
        )
        .route("/v1/users/search", get(friends::search))
        .route("/v1/voicemails", get(voicemail::list))
        .route(
            "/v1/voicemails/{id}",
            axum::routing::patch(voicemail::update).delete(voicemail::remove),
        )
        .route("/v1/voicemails/{id}/audio", get(voicemail::audio))
        .route(
            "/v1/answering-rules",
            get(answering::list).put(answering::set),
        )
        .route(
            "/v1/answering-rules/{id}",
            axum::routing::delete(answering::remove),
        )
        .route(
            "/v1/answering-rules/{id}/greeting",
            put(answering::set_greeting)
                .delete(answering::clear_greeting)
                .layer(DefaultBodyLimit::max(answering::GREETING_MAX_BYTES)),
        )
        .route("/v1/contacts", get(contacts::list))
        .route("/v1/dialplan", get(contacts::dialplan))
        .route("/v1/history/calls", get(history::calls))
        .route("/v1/history/messages", get(history::messages))
        .route("/v1/contacts/uploads", post(contacts::open))
        .route(
            "/v1/contacts/uploads/{token}",
            get(contacts::status)
                .post(contacts::chunk)
                .layer(DefaultBodyLimit::max(contacts::CHUNK_MAX_BYTES)),
        )
        .route("/v1/contacts/uploads/{token}/done", post(contacts::done))
        .route("/v1/push-tokens", get(push_tokens::list))
        .route(
            "/v1/push-tokens/{instance}",
            put(push_tokens::set).delete(push_tokens::remove),
        )
        .route(
            "/v1/files",
            // The body streams into storage with its own limit
            // (`file_max_bytes`), never buffered.
            post(files::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{id}", get(files::download))
        .route("/v1/recordings", get(recordings::list))
        .route(
            "/v1/recordings/{id}",
            axum::routing::delete(recordings::remove),
        )
        .route("/v1/recordings/{id}/audio", get(recordings::audio))
        .route("/v1/users/{login}/avatar", get(avatar::download))
        .route("/v1/balance", get(billing::balance))
        .route("/v1/rates", get(billing::rates))
        .route("/v1/vouchers/redeem", post(billing::redeem))
        .route("/v1/transfers", post(billing::transfer))
        .route("/v1/plans", get(plans::list))
        .route("/v1/plans/{name}/buy", post(plans::buy))
        .route("/v1/plans/mine/{id}", axum::routing::delete(plans::cancel))
        .route("/v1/payments/webhook", post(payments::webhook))
        .route("/v1/dids", get(dids::mine).post(dids::order))
        .route("/v1/dids/available", get(dids::available))
        .route("/v1/dids/{number}", axum::routing::delete(dids::release))
        .route("/v1/password/forgot", post(password::forgot))
        .route(
            "/v1/password/reset",
            get(password::reset_page).post(password::reset_submit),
        )
        .route("/v1/sms/reports/{provider}", any(sms_reports::report))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "method not allowed on this resource",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: listener::TlsListener, state: Arc<ApiState>) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    axum::serve(
        // tap_io gives the listener axum's ConnectInfo<SocketAddr> support.
        listener.tap_io(|_| {}),
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_document_is_json_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        for path in [
            "/v1/signup/phone",
            "/v1/signup/phone/verify",
            "/v1/signup/phone/status",
            "/v1/signup/phone/call-me",
            "/v1/phone",
            "/v1/phone/verify",
            "/v1/login",
            "/v1/signup/username",
            "/v1/signup/username/available",
            "/v1/activate",
            "/v1/password/change",
            "/v1/profile",
            "/v1/profile/avatar",
            "/v1/users/search",
            "/v1/users/{login}/avatar",
            "/v1/voicemails",
            "/v1/voicemails/{id}",
            "/v1/voicemails/{id}/audio",
            "/v1/answering-rules",
            "/v1/answering-rules/{id}",
            "/v1/answering-rules/{id}/greeting",
            "/v1/contacts",
            "/v1/dialplan",
            "/v1/history/calls",
            "/v1/history/messages",
            "/v1/contacts/uploads",
            "/v1/contacts/uploads/{token}",
            "/v1/contacts/uploads/{token}/done",
            "/v1/push-tokens",
            "/v1/push-tokens/{instance}",
            "/v1/recordings",
            "/v1/recordings/{id}",
            "/v1/recordings/{id}/audio",
            "/v1/password/forgot",
            "/v1/password/set",
            "/v1/password/reset",
            "/v1/sms/reports/{provider}",
            "/v1/openapi.json",
            "/v1/balance",
            "/v1/rates",
            "/v1/vouchers/redeem",
            "/v1/transfers",
            "/v1/plans",
            "/v1/plans/{name}/buy",
            "/v1/plans/mine/{id}",
            "/v1/dids",
            "/v1/dids/available",
            "/v1/dids/{number}",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} undocumented");
        }
    }
}
