//! The caller's own profile (SPEC §2): `GET` and `PATCH /v1/profile` with the
//! bearer token from login or sign-up. The service ID (username) is set once.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::ApiState;
use super::error::{ApiError, ApiJson};
use super::username_signup::valid_username;
use crate::store::StoreError;
use crate::store::profiles_api::{Profile, ProfileUpdate};

/// `GET /v1/profile`.
pub async fn get_profile(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Profile>, ApiError> {
    let login = state.authenticate(&headers)?;
    state
        .store
        .profile(&login)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such account"))
}

/// `PATCH /v1/profile`: the fields given are changed, the others kept.
pub async fn update_profile(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiJson(update): ApiJson<ProfileUpdate>,
) -> Result<Json<Profile>, ApiError> {
    let login = state.authenticate(&headers)?;
    if let Some(u) = &update.username
        && !valid_username(u)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-username",
            "a username has 3 to 32 letters, digits, '.', '_' or '-', and is not a number",
        ));
    }
    match state.store.update_profile(&login, &update).await {
        Ok(()) => {}
        Err(StoreError::Conflict(what)) if what == "username set" => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "username-already-set",
                "the service ID is set once and never changed",
            ));
        }
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "username-taken",
                "this username is taken",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(%login, "profile updated");
    get_profile(State(state), headers).await
}
