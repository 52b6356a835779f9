//! Find friends (SPEC §5): search active users by username or first/last
//! name, with the bearer token. Answers carry public fields only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiQuery};
use crate::store::profiles_api::FoundUser;

/// Hits per answer unless the client asks for fewer: a screenful. The cap
/// keeps a search from becoming a way to list every user.
pub const DEFAULT_RESULTS: u32 = 20;
pub const MAX_RESULTS: u32 = 50;
/// Shortest query: one letter would match a large share of all users.
pub const MIN_QUERY_CHARS: usize = 2;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Words, each the start of a username, first name or last name.
    pub q: String,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct SearchResult {
    pub users: Vec<FoundUser>,
}

/// `GET /v1/users/search?q=...&limit=...`.
pub async fn search(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResult>, ApiError> {
    let login = state.authenticate(&headers)?;
    state.limit_address(peer)?;
    let q = query.q.trim();
    let chars = q.chars().count();
    if !(MIN_QUERY_CHARS..=64).contains(&chars) || q.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "q must be {MIN_QUERY_CHARS} to 64 printable characters"
        )));
    }
    let limit = query.limit.unwrap_or(DEFAULT_RESULTS);
    if limit == 0 || limit > MAX_RESULTS {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {MAX_RESULTS}"
        )));
    }
    let users = state.store.search_users(q, &login, limit).await?;
    Ok(Json(SearchResult { users }))
}
