//! A user's answering rules by caller ID (SPEC §9): what calls from given
//! callers do, and a greeting of their own for those that reach voicemail.
//! Only the bearer's own rules; another user's rule id is answered like a
//! missing one.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiJson, path_id};
use crate::store::answering::{AnsweringRule, RuleAction};

/// Longest rule greeting, as for the user's own greeting.
const GREETING_MAX_SECS: usize = 120;
/// Its largest body: two minutes of 8 kHz 16-bit mono and a header.
pub const GREETING_MAX_BYTES: usize = GREETING_MAX_SECS * 16_000 + 1024;

#[derive(Debug, Serialize)]
pub struct RuleList {
    pub rules: Vec<AnsweringRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRule {
    /// A login or number, or a prefix ending in `*`.
    pub caller: String,
    pub action: RuleAction,
}

const RULE: &str = "answering rule";

fn no_such_rule() -> ApiError {
    ApiError::not_found(RULE)
}

fn rule_id(raw: &str) -> Result<i64, ApiError> {
    path_id(raw, RULE)
}

/// `GET /v1/answering-rules`.
pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<RuleList>, ApiError> {
    let login = state.authenticate(&headers)?;
    Ok(Json(RuleList {
        rules: state.store.answering_rules(&login).await?,
    }))
}

/// `PUT /v1/answering-rules` with `{"caller", "action"}`: sets (or
/// replaces) the rule for that caller; the rule.
pub async fn set(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetRule>,
) -> Result<Json<AnsweringRule>, ApiError> {
    let login = state.authenticate(&headers)?;
    let id = state
        .store
        .set_answering_rule(&login, &body.caller, body.action)
        .await?;
    tracing::info!(%login, id, action = body.action.as_str(), "answering rule set");
    let rule = state
        .store
        .answering_rules(&login)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(no_such_rule)?;
    Ok(Json(rule))
}

/// `DELETE /v1/answering-rules/{id}`.
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let login = state.authenticate(&headers)?;
    if !state
        .store
        .delete_answering_rule(&login, rule_id(&id)?)
        .await?
    {
        return Err(no_such_rule());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/answering-rules/{id}/greeting` with an 8 kHz mono 16-bit WAV
/// (at most two minutes) as the body.
pub async fn set_greeting(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let login = state.authenticate(&headers)?;
    let id = rule_id(&id)?;
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("a greeting is at most {GREETING_MAX_SECS} s"),
            )
        } else {
            ApiError::invalid(r.body_text())
        }
    })?;
    let samples = media::wav::read(&body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported-audio",
            e.to_string(),
        )
    })?;
    if samples.is_empty() || samples.len() > GREETING_MAX_SECS * 8000 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported-audio",
            format!("a greeting lasts more than nothing and at most {GREETING_MAX_SECS} s"),
        ));
    }
    // Stored as the switch writes WAVs, whatever else the file carried.
    let wav = media::wav::write(&samples).map_err(ApiError::internal)?;
    if !state
        .store
        .set_rule_greeting(&login, id, Some(&wav))
        .await?
    {
        return Err(no_such_rule());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/answering-rules/{id}/greeting`: the user's own (or the
/// default) greeting plays again for those callers.
pub async fn clear_greeting(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let login = state.authenticate(&headers)?;
    if !state
        .store
        .set_rule_greeting(&login, rule_id(&id)?, None)
        .await?
    {
        return Err(no_such_rule());
    }
    Ok(StatusCode::NO_CONTENT)
}
