//! A user's push tokens, one per device instance and kind (SPEC §9): the
//! app registers its token after login and re-sends it when it changes;
//! logging out deletes it. Only the bearer's own devices.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::store::push::{NewPushToken, PushToken, TokenKind, TokenSource};

/// A token as the API shows it.
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub instance: String,
    pub provider: String,
    pub token: String,
    pub app: String,
    pub sandbox: bool,
    pub kind: &'static str,
    /// `api` or `register` (RFC 8599 parameters of a REGISTER).
    pub source: String,
    pub updated_at: i64,
}

impl From<PushToken> for TokenView {
    fn from(t: PushToken) -> Self {
        Self {
            instance: t.instance,
            provider: t.provider,
            token: t.token,
            app: t.app,
            sandbox: t.sandbox,
            kind: t.kind.as_str(),
            source: t.source,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetToken {
    /// A `[push.providers]` name (`apns`, `fcm`, `webhook` ...).
    pub provider: String,
    pub token: String,
    /// Bundle id / topic (APNs) or project id (FCM).
    #[serde(default)]
    pub app: String,
    /// APNs development environment.
    #[serde(default)]
    pub sandbox: bool,
    /// `alert` (default) or `voip` (iOS PushKit).
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindQuery {
    #[serde(default)]
    pub kind: Option<String>,
}

fn kind(raw: Option<&str>) -> Result<Option<TokenKind>, ApiError> {
    raw.map(|k| TokenKind::parse(k).ok_or_else(|| ApiError::invalid("kind: \"alert\" or \"voip\"")))
        .transpose()
}

/// `GET /v1/push-tokens`.
pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<TokenList>, ApiError> {
    let login = state.authenticate(&headers)?;
    let tokens = state.store.push_tokens(&login).await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(TokenView::from).collect(),
    }))
}

/// `PUT /v1/push-tokens/{instance}`: registers or replaces the device's
/// token of that kind; the token.
pub async fn set(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(instance): Path<String>,
    ApiJson(body): ApiJson<SetToken>,
) -> Result<Json<TokenView>, ApiError> {
    let login = state.authenticate(&headers)?;
    let kind = kind(body.kind.as_deref())?.unwrap_or(TokenKind::Alert);
    if !state
        .push
        .as_ref()
        .is_some_and(|p| p.has_provider(&body.provider))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown-push-provider",
            format!("no push provider named {:?} is configured", body.provider),
        ));
    }
    let token = state
        .store
        .set_push_token(
            &login,
            &NewPushToken {
                instance,
                provider: body.provider,
                token: body.token,
                app: body.app,
                sandbox: body.sandbox,
                kind,
            },
            TokenSource::Api,
            crate::store::now_secs(),
        )
        .await?;
    // The token itself is the device's secret: never logged.
    tracing::info!(%login, instance = token.instance, provider = token.provider, kind = kind.as_str(), "push token registered");
    if let Some(hook) = &state.on_profile_changed {
        hook(&login);
    }
    Ok(Json(token.into()))
}

/// `DELETE /v1/push-tokens/{instance}[?kind=voip|alert]`.
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(instance): Path<String>,
    ApiQuery(query): ApiQuery<KindQuery>,
) -> Result<StatusCode, ApiError> {
    let login = state.authenticate(&headers)?;
    let kind = kind(query.kind.as_deref())?;
    if state
        .store
        .delete_push_tokens(&login, &instance, kind)
        .await?
        == 0
    {
        return Err(ApiError::not_found("push token"));
    }
    tracing::info!(%login, instance, "push token deleted");
    if let Some(hook) = &state.on_profile_changed {
        hook(&login);
    }
    Ok(StatusCode::NO_CONTENT)
}
