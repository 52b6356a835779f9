//! The caller's history (SPEC §7, the seed's "offline history"): their
//! calls, and the messages of one conversation, newest first, paged by id
//! (`before` = the previous page's `next`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiQuery};

/// Most entries one page lists.
const MAX_PAGE: i64 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub before: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// The other party's login.
    pub with: String,
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub before: Option<i64>,
}

fn page(limit: Option<i64>, before: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) || before.is_some_and(|b| b < 1) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {MAX_PAGE} and before an id"
        )));
    }
    Ok(limit)
}

fn next_of(ids: &[i64], limit: i64) -> Option<i64> {
    (ids.len() as i64 == limit)
        .then(|| ids.last().copied())
        .flatten()
}

#[derive(Debug, Serialize)]
pub struct CallEntry {
    pub id: i64,
    pub call_id: String,
    /// `outgoing` (the caller placed it) or `incoming`.
    pub direction: &'static str,
    /// The other party: a login, or a number for carrier calls.
    pub peer: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: i64,
    pub duration_secs: i64,
    /// answered, busy, no-answer, cancelled, failed.
    pub outcome: &'static str,
}

#[derive(Debug, Serialize)]
pub struct CallPage {
    pub calls: Vec<CallEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// `GET /v1/history/calls[?limit&before]`.
pub async fn calls(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CallsQuery>,
) -> Result<Json<CallPage>, ApiError> {
    let login = state.authenticate(&headers)?;
    let limit = page(q.limit, q.before)?;
    let rows = state.store.call_history(&login, q.before, limit).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let calls = rows
        .into_iter()
        .map(|r| {
            let outgoing = r.cdr.caller == login;
            CallEntry {
                id: r.id,
                direction: if outgoing { "outgoing" } else { "incoming" },
                peer: if outgoing {
                    r.cdr.callee.clone()
                } else {
                    r.cdr.caller.clone()
                },
                duration_secs: r.cdr.duration_secs(),
                outcome: r.cdr.disposition.as_str(),
                call_id: r.cdr.call_id,
                started_at: r.cdr.started_at,
                answered_at: r.cdr.answered_at,
                ended_at: r.cdr.ended_at,
            }
        })
        .collect();
    Ok(Json(CallPage {
        calls,
        next: next_of(&ids, limit),
    }))
}

#[derive(Debug, Serialize)]
pub struct MessageEntry {
    pub id: i64,
    /// `sent` by the caller, or `received`.
    pub direction: &'static str,
    pub content_type: String,
    /// The body as text for `text/*`, else base64 in `body_base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// deferred, delivered, failed.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
}

#[derive(Debug, Serialize)]
pub struct MessagePage {
    pub messages: Vec<MessageEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// `GET /v1/history/messages?with=LOGIN[&limit&before]`.
pub async fn messages(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let login = state.authenticate(&headers)?;
    let limit = page(q.limit, q.before)?;
    if q.with.is_empty() || q.with.len() > 128 {
        return Err(ApiError::invalid("with: the other party's login"));
    }
    let rows = state
        .store
        .conversation(&login, &q.with, q.before, limit)
        .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let messages = rows
        .into_iter()
        .map(|r| {
            let m = r.message;
            let text = m
                .content_type
                .to_ascii_lowercase()
                .starts_with("text/")
                .then(|| String::from_utf8(m.body.clone()).ok())
                .flatten();
            MessageEntry {
                id: r.id,
                direction: if m.sender == login {
                    "sent"
                } else {
                    "received"
                },
                body_base64: text
                    .is_none()
                    .then(|| base64::engine::general_purpose::STANDARD.encode(&m.body)),
                text,
                content_type: m.content_type,
                status: r.status.as_str().to_string(),
                created_at: r.created_at,
            }
        })
        .collect();
    Ok(Json(MessagePage {
        messages,
        next: next_of(&ids, limit),
    }))
}
