//! The admin endpoint: health, Prometheus metrics, guests and their reload,
//! and account administration ([`accounts`]).
//!
//! Plain HTTP on loopback by default. Every request must come from an allowed
//! network; everything but `/health` also needs the bearer token.

pub mod accounts;
pub mod billing;
pub mod dids;
pub mod plans;
pub mod recordings;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ipnet::IpNet;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::plugins::{GuestRegistry, PluginError};
use crate::store::{AccountTemplate, Store};

/// Shared state of the admin handlers.
pub struct AdminState {
    pub registry: Arc<GuestRegistry>,
    pub metrics: Metrics,
    pub allow: Vec<IpNet>,
    pub store: Store,
    /// What accounts created here start with.
    pub template: AccountTemplate,
    /// Tariffs and vouchers.
    pub billing: Arc<crate::billing::Billing>,
    token_digest: [u8; 32],
}

/// What the admin endpoint needs besides its access rules.
pub struct AdminParts {
    pub registry: Arc<GuestRegistry>,
    pub metrics: Metrics,
    pub store: Store,
    pub template: AccountTemplate,
    pub billing: Arc<crate::billing::Billing>,
}

impl AdminState {
    pub fn new(parts: AdminParts, allow: Vec<IpNet>, token: &str) -> Self {
        Self {
            registry: parts.registry,
            metrics: parts.metrics,
            store: parts.store,
            template: parts.template,
            billing: parts.billing,
            allow,
            token_digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    fn token_matches(&self, presented: &str) -> bool {
        // Comparing digests keeps the comparison's timing independent of how many
        // leading bytes of the real token an attacker guessed.
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest
            .iter()
            .zip(self.token_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// A JSON error with a stable code.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

/// The admin router (without the listener), for tests and for `serve`.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/guests", get(guests))
        .route("/guests/{name}/reload", post(reload))
        .route("/guests/{name}/history", get(history))
        .route("/accounts", get(accounts::list).post(accounts::create))
        .route(
            "/accounts/{login}",
            get(accounts::show)
                .patch(accounts::update)
                .delete(accounts::delete),
        )
        .route("/accounts/{login}/balance", put(accounts::set_balance))
        .route(
            "/accounts/{login}/registrations",
            get(accounts::registrations),
        )
        .route("/accounts/{login}/topup", post(billing::topup))
        .route("/accounts/{login}/ledger", get(billing::ledger))
        .route("/tariffs", get(billing::list))
        .route(
            "/tariffs/{name}",
            get(billing::show)
                .put(billing::replace)
                .post(billing::merge)
                .delete(billing::remove)
                .layer(axum::extract::DefaultBodyLimit::max(
                    billing::TARIFF_MAX_BYTES,
                )),
        )
        .route(
            "/tariffs/{name}/rates/{prefix}",
            axum::routing::delete(billing::remove_rate),
        )
        .route("/exchange-rates", get(billing::exchange_rates))
        .route(
            "/exchange-rates/{base}/{quote}",
            put(billing::set_exchange_rate).delete(billing::remove_exchange_rate),
        )
        .route("/vouchers", post(billing::create_vouchers))
        .route("/vouchers/{batch}", get(billing::voucher_batch))
        .route("/plans", get(plans::list))
        .route(
            "/plans/{name}",
            get(plans::show).put(plans::put).delete(plans::remove),
        )
        .route(
            "/did-pool",
            get(dids::list)
                .post(dids::import)
                .layer(axum::extract::DefaultBodyLimit::max(dids::POOL_MAX_BYTES)),
        )
        .route("/did-pool/{number}", axum::routing::delete(dids::remove))
        .route("/recordings", get(recordings::list))
        .route(
            "/recordings/{id}",
            axum::routing::delete(recordings::remove),
        )
        .route("/recordings/{id}/audio", get(recordings::audio))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .merge(protected)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such admin resource")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "method not allowed on this admin resource",
            )
        })
        // Admin bodies are small JSON objects.
        .layer(axum::extract::DefaultBodyLimit::max(64 << 10))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_allowed_address,
        ))
        .with_state(state)
}

/// Serves the admin endpoint on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

async fn require_allowed_address(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let ip = peer.ip().to_canonical();
    if !state.allow.iter().any(|net| net.contains(&ip)) {
        tracing::warn!(%peer, method = %request.method(), path = %request.uri().path(), "admin request refused: address outside the allow-list");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "address-not-allowed",
            "source address not allowed",
        )
        .into_response();
    }
    next.run(request).await
}

async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if state.token_matches(token.trim()) => next.run(request).await,
        Some(_) => {
            tracing::warn!(method = %request.method(), path = %request.uri().path(), "admin request refused: wrong token");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad-token",
                "bearer token refused",
            )
            .into_response()
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing-token",
            "an Authorization: Bearer token is required",
        )
        .into_response(),
    }
}

/// The admin API's own OpenAPI document (the client API has its own at
/// `/v1/openapi.json` on the HTTPS listener).
const OPENAPI: &str = include_str!("admin/openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    guests: usize,
}

async fn health(State(state): State<Arc<AdminState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        guests: state.registry.list().len(),
    })
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn guests(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    Json(state.registry.list())
}

async fn history(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    match state.registry.history(&name) {
        Some(entries) => Json(entries).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-guest",
            format!("no guest named {name:?}"),
        )
        .into_response(),
    }
}

async fn reload(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    tracing::info!(guest = %name, "admin: guest reload requested");
    match state.registry.reload(&name).await {
        Ok(info) => Json(info).into_response(),
        Err(PluginError::UnknownGuest(name)) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-guest",
            format!("no guest named {name:?}"),
        )
        .into_response(),
        Err(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "guest-load-failed",
            e.to_string(),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_document_is_json_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        for (path, methods) in [
            ("/health", &["get"][..]),
            ("/openapi.json", &["get"]),
            ("/metrics", &["get"]),
            ("/guests", &["get"]),
            ("/guests/{name}/reload", &["post"]),
            ("/guests/{name}/history", &["get"]),
            ("/accounts", &["get", "post"]),
            ("/accounts/{login}", &["get", "patch", "delete"]),
            ("/accounts/{login}/balance", &["put"]),
            ("/accounts/{login}/registrations", &["get"]),
            ("/recordings", &["get"]),
            ("/recordings/{id}", &["delete"]),
            ("/accounts/{login}/topup", &["post"]),
            ("/accounts/{login}/ledger", &["get"]),
            ("/tariffs", &["get"]),
            ("/tariffs/{name}", &["get", "put", "post", "delete"]),
            ("/tariffs/{name}/rates/{prefix}", &["delete"]),
            ("/exchange-rates", &["get"]),
            ("/exchange-rates/{base}/{quote}", &["put", "delete"]),
            ("/vouchers", &["post"]),
            ("/vouchers/{batch}", &["get"]),
            ("/plans", &["get"]),
            ("/plans/{name}", &["get", "put", "delete"]),
            ("/did-pool", &["get", "post"]),
            ("/did-pool/{number}", &["delete"]),
            ("/recordings/{id}/audio", &["get"]),
        ] {
            for m in methods {
                assert!(
                    doc["paths"][path].get(m).is_some(),
                    "{m} {path} undocumented"
                );
            }
        }
    }
}
