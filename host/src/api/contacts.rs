//! The user's address book (SPEC §5): uploads in chunks under a token,
//! discovery of the entries that are service users, and the stored book.
//! Numbers are normalised with the owner's country code (SPEC §4); a number
//! that is not one is skipped and counted, never stored.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiJson};
use crate::store::contact_uploads::{Discovered, UploadStatus, UploadedNumber};
use crate::store::contacts::{country_code_of, normalize_number};

/// Entries one chunk may carry.
pub const CHUNK_MAX_ENTRIES: usize = 1000;
/// Largest chunk body: a thousand entries with long names and a few numbers.
pub const CHUNK_MAX_BYTES: usize = 1 << 20;
/// Numbers one entry may carry.
const ENTRY_MAX_NUMBERS: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUpload {
    /// The upload is the whole book: entries not in it leave the stored one.
    #[serde(default)]
    pub replace: bool,
}

#[derive(Debug, Serialize)]
pub struct UploadToken {
    pub token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The entry's id on the handset.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub numbers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Serialize)]
pub struct ChunkTaken {
    /// Numbers the upload holds so far.
    pub numbers: i64,
    /// Numbers of this chunk that are not phone numbers (skipped).
    pub rejected: usize,
}

#[derive(Debug, Serialize)]
pub struct UploadView {
    pub status: UploadStatus,
    pub numbers: i64,
    /// When done: the entries that are service users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<Discovered>>,
}

fn new_token() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

fn no_upload() -> ApiError {
    ApiError::not_found("upload")
}

/// The calling code `login`'s numbers are read with: their own phone's,
/// else the configured default.
async fn country_code(state: &ApiState, login: &str) -> Result<String, ApiError> {
    let phone = state.store.phone_of(login).await?;
    Ok(phone
        .as_deref()
        .and_then(country_code_of)
        .unwrap_or(&state.default_country_code)
        .to_string())
}

/// `POST /v1/contacts/uploads` with `{"replace": bool}`: 201 and the token.
pub async fn open(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewUpload>,
) -> Result<(StatusCode, Json<UploadToken>), ApiError> {
    let login = state.authenticate(&headers)?;
    let token = new_token();
    state
        .store
        .open_contact_upload(&login, &token, body.replace)
        .await?;
    Ok((StatusCode::CREATED, Json(UploadToken { token })))
}

/// `POST /v1/contacts/uploads/{token}` with `{"entries": [...]}`: a chunk.
pub async fn chunk(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<Chunk>,
) -> Result<Json<ChunkTaken>, ApiError> {
    let login = state.authenticate(&headers)?;
    if body.entries.len() > CHUNK_MAX_ENTRIES {
        return Err(ApiError::invalid(format!(
            "a chunk carries at most {CHUNK_MAX_ENTRIES} entries"
        )));
    }
    let cc = country_code(&state, &login).await?;
    let mut numbers = Vec::new();
    let mut rejected = 0;
    for e in body.entries {
        if e.id.is_empty() || e.id.len() > 128 || e.id.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "an entry id is 1 to 128 printable characters",
            ));
        }
        if e.numbers.len() > ENTRY_MAX_NUMBERS {
            return Err(ApiError::invalid(format!(
                "an entry has at most {ENTRY_MAX_NUMBERS} numbers"
            )));
        }
        let name = e.name.filter(|n| !n.is_empty()).map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(255)
                .collect::<String>()
        });
        for raw in &e.numbers {
            match normalize_number(raw, &cc) {
                Some(number) => numbers.push(UploadedNumber {
                    contact_id: e.id.clone(),
                    name: name.clone(),
                    number,
                }),
                None => rejected += 1,
            }
        }
    }
    let total = state
        .store
        .add_upload_chunk(&login, &token, &numbers)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound(_) => no_upload(),
            other => other.into(),
        })?;
    Ok(Json(ChunkTaken {
        numbers: total,
        rejected,
    }))
}

/// `POST /v1/contacts/uploads/{token}/done`: 202; the book is applied and
/// searched in the background (poll the token).
pub async fn done(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<(StatusCode, Json<UploadView>), ApiError> {
    let login = state.authenticate(&headers)?;
    if !state.store.close_contact_upload(&login, &token).await? {
        return Err(no_upload());
    }
    let numbers = state
        .store
        .contact_upload(&login, &token)
        .await?
        .map_or(0, |u| u.entries);
    spawn_apply(state.store.clone(), token);
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadView {
            status: UploadStatus::Pending,
            numbers,
            users: None,
        }),
    ))
}

/// Applies an upload in the background; logged, never lost: a pending
/// upload is applied again at the next start.
pub fn spawn_apply(store: crate::store::Store, token: String) {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match store.apply_contact_upload(&token).await {
            Ok(Some(found)) => tracing::info!(
                users = found.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "address book applied and searched"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "address book not applied; retried at the next start")
            }
        }
    });
}

/// `GET /v1/contacts/uploads/{token}`: pending, or done with the users found.
pub async fn status(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Json<UploadView>, ApiError> {
    let login = state.authenticate(&headers)?;
    let upload = state
        .store
        .contact_upload(&login, &token)
        .await?
        .ok_or_else(no_upload)?;
    Ok(Json(UploadView {
        status: upload.status,
        numbers: upload.entries,
        users: upload.result,
    }))
}

#[derive(Debug, Serialize)]
pub struct BookEntry {
    pub id: String,
    pub name: Option<String>,
    pub number: String,
    /// The service user with this number, if any.
    pub login: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Book {
    pub contacts: Vec<BookEntry>,
}

/// `GET /v1/contacts`: the stored book, one row per number.
pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Book>, ApiError> {
    let login = state.authenticate(&headers)?;
    let contacts = state
        .store
        .list_contacts(&login)
        .await?
        .into_iter()
        .map(|c| BookEntry {
            id: c.contact_id,
            name: c.name,
            number: c.number,
            login: c.login,
        })
        .collect();
    Ok(Json(Book { contacts }))
}

#[derive(Debug, Serialize)]
pub struct Dialplan {
    /// Prefix → SIP server; the longest prefix of a login or number wins,
    /// the empty prefix is the default.
    pub entries: Vec<crate::store::dialplan::DialplanEntry>,
}

/// `GET /v1/dialplan`: the local dialing plan clients route by (SPEC §6).
pub async fn dialplan(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Dialplan>, ApiError> {
    state.authenticate(&headers)?;
    Ok(Json(Dialplan {
        entries: state.store.list_dialplan().await?,
    }))
}
