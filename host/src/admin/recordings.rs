//! Call recordings for the operator: every recording, whoever owns it.
//! Deletions are logged with the admin client's address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::AdminState;
use crate::api::error::{ApiError, ApiQuery, path_id};
use crate::api::recordings::{self, FormatQuery, Page, RecordingList};

/// `GET /recordings?limit=&before=`.
pub async fn list(
    State(state): State<Arc<AdminState>>,
    ApiQuery(p): ApiQuery<Page>,
) -> Result<Json<RecordingList>, ApiError> {
    Ok(Json(recordings::page(&state.store, None, p).await?))
}

/// `GET /recordings/{id}/audio?format=wav|mp3`.
pub async fn audio(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> Result<Response, ApiError> {
    recordings::download(&state.store, None, &id, q.format).await
}

/// `DELETE /recordings/{id}`: gone for every owner.
pub async fn remove(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, "recording")?;
    if !state.store.delete_recording(id, None).await? {
        return Err(ApiError::not_found("recording"));
    }
    tracing::info!(action = "recording.delete", id, %peer, "admin action");
    Ok(StatusCode::NO_CONTENT)
}
