//! A user's voicemail box (SPEC §9): list, download, mark heard, delete.
//!
//! Every request works on the box of the bearer token's login only: another
//! user's message id is answered exactly like an id that does not exist
//! (404), so ids reveal nothing. Heard and deleted messages change the MWI
//! counts, and subscribers are notified.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiQuery, path_id};
use super::recordings::{AudioFormat, FormatQuery, mp3_of};
use crate::store::mailbox::Voicemail;

/// Most messages one page lists.
const MAX_PAGE: i64 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct VoicemailList {
    /// Unheard messages in the box (all pages).
    pub new: i64,
    /// Heard (saved) messages in the box.
    pub heard: i64,
    /// This page: new first, oldest first within new and within heard.
    pub voicemails: Vec<Voicemail>,
}

const MESSAGE: &str = "voicemail in your mailbox";

fn no_such_message() -> ApiError {
    ApiError::not_found(MESSAGE)
}

/// The id in the path; anything else names no message.
fn message_id(raw: &str) -> Result<i64, ApiError> {
    path_id(raw, MESSAGE)
}

/// `GET /v1/voicemails?limit=&offset=`.
pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<VoicemailList>, ApiError> {
    let login = state.authenticate(&headers)?;
    let limit = page.limit.unwrap_or(50);
    let offset = page.offset.unwrap_or(0);
    if !(1..=MAX_PAGE).contains(&limit) || offset < 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            format!("limit must be 1 to {MAX_PAGE} and offset at least 0"),
        ));
    }
    let counts = state.store.mailbox_counts(&login).await?;
    let voicemails = state.store.voicemails(&login, limit, offset).await?;
    Ok(Json(VoicemailList {
        new: counts.new,
        heard: counts.old,
        voicemails,
    }))
}

/// `GET /v1/voicemails/{id}/audio?format=wav|mp3`: the recording as WAV
/// (8 kHz mono, the default) or MP3.
pub async fn audio(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> Result<Response, ApiError> {
    let login = state.authenticate(&headers)?;
    let id = message_id(&id)?;
    let wav = state
        .store
        .voicemail_audio(&login, id)
        .await?
        .ok_or_else(no_such_message)?;
    let (content_type, ext, body) = match q.format {
        AudioFormat::Wav => ("audio/wav", "wav", wav),
        AudioFormat::Mp3 => {
            // Stored by the switch, so always in the format it reads.
            let samples = media::wav::read(&wav)
                .map_err(|e| ApiError::internal(format!("stored voicemail {id}: {e}")))?;
            let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            ("audio/mpeg", "mp3", mp3_of(&pcm, 1).await?)
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"voicemail-{id}.{ext}\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeardBody {
    pub heard: bool,
}

/// `PATCH /v1/voicemails/{id}` with `{"heard": true|false}`.
pub async fn update(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    super::error::ApiJson(body): super::error::ApiJson<HeardBody>,
) -> Result<StatusCode, ApiError> {
    let login = state.authenticate(&headers)?;
    let id = message_id(&id)?;
    if !state
        .store
        .set_voicemail_heard(&login, id, body.heard)
        .await?
    {
        return Err(no_such_message());
    }
    state.mailbox_changed(&login);
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/voicemails/{id}`.
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let login = state.authenticate(&headers)?;
    let id = message_id(&id)?;
    if !state.store.delete_voicemail(&login, id).await? {
        return Err(no_such_message());
    }
    tracing::info!(%login, id, "voicemail deleted");
    state.mailbox_changed(&login);
    Ok(StatusCode::NO_CONTENT)
}
