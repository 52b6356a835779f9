//! Call recordings in the client API (the owner's) and the admin API
//! (everyone's): list, download as WAV or MP3, delete.
//!
//! A client sees only recordings it owns (its account's flag or a gateway
//! recorded the call for it): any other id is answered like one that does
//! not exist (404).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiQuery, path_id};
use crate::store::Store;
use crate::store::recordings::CallRecording;

/// Most recordings one page lists.
const MAX_PAGE: i64 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    pub limit: Option<i64>,
    /// Recordings older than this id (the previous page's `next`).
    #[serde(default)]
    pub before: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct RecordingList {
    /// Newest first.
    pub recordings: Vec<CallRecording>,
    /// `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// How a recording is downloaded.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    #[default]
    Wav,
    Mp3,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    #[serde(default)]
    pub format: AudioFormat,
}

const RECORDING: &str = "recording";

fn no_such_recording() -> ApiError {
    ApiError::not_found(RECORDING)
}

fn recording_id(raw: &str) -> Result<i64, ApiError> {
    path_id(raw, RECORDING)
}

/// A page of `owner`'s recordings (everyone's for `None`).
pub async fn page(
    store: &Store,
    owner: Option<&str>,
    page: Page,
) -> Result<RecordingList, ApiError> {
    let limit = page.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) || page.before.is_some_and(|b| b < 1) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            format!("limit must be 1 to {MAX_PAGE} and before a recording id"),
        ));
    }
    let recordings = store.recordings(owner, page.before, limit).await?;
    let next = (recordings.len() as i64 == limit)
        .then(|| recordings.last().map(|r| r.id))
        .flatten();
    Ok(RecordingList { recordings, next })
}

/// The audio of recording `id` if `owner` (the admin: `None`) may have it.
pub async fn download(
    store: &Store,
    owner: Option<&str>,
    id: &str,
    format: AudioFormat,
) -> Result<Response, ApiError> {
    let id = recording_id(id)?;
    let rec = store
        .recording(id, owner)
        .await?
        .ok_or_else(no_such_recording)?;
    let pcm = store.recording_pcm(id).await?;
    let channels = rec.channels();
    let (content_type, body) = match format {
        AudioFormat::Wav => {
            let len = u32::try_from(pcm.len()).map_err(|_| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "too-large",
                    "the recording is over 4 GB: download it as MP3",
                )
            })?;
            let mut wav = Vec::with_capacity(44 + pcm.len());
            wav.extend_from_slice(&media::wav::header(channels, len));
            wav.extend_from_slice(&pcm);
            ("audio/wav", wav)
        }
        AudioFormat::Mp3 => ("audio/mpeg", mp3_of(&pcm, channels).await?),
    };
    let ext = if format == AudioFormat::Mp3 {
        "mp3"
    } else {
        "wav"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"recording-{id}.{ext}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Encodes little-endian PCM as MP3 off the async threads (LAME takes
/// about a second per hour of audio).
pub async fn mp3_of(pcm: &[u8], channels: u16) -> Result<Vec<u8>, ApiError> {
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    tokio::task::spawn_blocking(move || {
        crate::notify::mp3::encode_channels(&samples, channels, media::codec::SAMPLE_RATE)
    })
    .await
    .map_err(|e| ApiError::internal(format!("MP3 encoder task: {e}")))?
    .map_err(|e| ApiError::internal(format!("MP3 encoding: {e}")))
}

/// `GET /v1/recordings?limit=&before=`.
pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<Page>,
) -> Result<Json<RecordingList>, ApiError> {
    let login = state.authenticate(&headers)?;
    Ok(Json(page(&state.store, Some(&login), p).await?))
}

/// `GET /v1/recordings/{id}/audio?format=wav|mp3`.
pub async fn audio(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> Result<Response, ApiError> {
    let login = state.authenticate(&headers)?;
    download(&state.store, Some(&login), &id, q.format).await
}

/// `DELETE /v1/recordings/{id}`: the recording leaves the caller's list
/// (and the database once no owner is left).
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let login = state.authenticate(&headers)?;
    let id = recording_id(&id)?;
    if !state.store.delete_recording(id, Some(&login)).await? {
        return Err(no_such_recording());
    }
    tracing::info!(%login, id, "recording deleted");
    Ok(StatusCode::NO_CONTENT)
}
