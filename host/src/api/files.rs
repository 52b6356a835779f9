//! File sharing (SPEC §7): a client uploads a file with its recipients and
//! gets an id, then sends them a MESSAGE with a `file` system command
//! naming it; the sender and the recipients download it by id, a picture
//! also as a thumbnail (which is not a download). Once every recipient has
//! downloaded it the file is deleted; one nobody finished downloading
//! expires after `api.file_keep_secs`.
//!
//! The body streams into the database in 1 MiB chunks as it arrives, and a
//! download streams them out one at a time: no request holds a whole file
//! in memory (a thumbnail decodes its picture, up to
//! [`THUMBNAIL_SOURCE_MAX`]). The id is 128 random bits: knowing one is not
//! enough to read the file, but it is not guessable either.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use image::ImageFormat;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::avatar::{AvatarError, scale};
use super::error::{ApiError, ApiQuery};
use crate::store::Store;
use crate::store::files::{FileAccess, NewFile, SharedFile};

/// The types a file may have (SPEC §7, the seed's list).
pub const FILE_TYPES: &[&str] = &[
    "image/gif",
    "image/jpeg",
    "image/png",
    "audio/mpeg",
    "audio/aiff",
    "audio/3gpp",
    "audio/wav",
    "audio/amr",
    "video/mp4",
    "video/quicktime",
    "video/x-m4v",
    "video/3gpp",
];

/// Bytes per stored chunk: big enough that a 96 MB file is under a hundred
/// rows, small enough that a chunk is nothing in memory or in one packet to
/// MariaDB (its default `max_allowed_packet` is 16 MiB).
pub const CHUNK_BYTES: usize = 1 << 20;
/// Recipients one file may have.
pub const MAX_RECIPIENTS: usize = 100;
/// Largest picture a thumbnail is made of (it is decoded whole).
pub const THUMBNAIL_SOURCE_MAX: i64 = 32 << 20;
/// Largest thumbnail side asked for.
pub const THUMBNAIL_MAX_SIDE: u32 = 2048;
/// An upload that has not completed after this long was abandoned (its
/// node stopped during it): the sweep deletes it.
pub const ABANDONED_AFTER_SECS: i64 = 3600;

const FILE: &str = "file";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Recipients' logins, comma-separated.
    pub to: String,
    /// The file's name as the sender knows it (shown to recipients).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Uploaded {
    #[serde(flatten)]
    pub file: SharedFile,
    pub recipients: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadQuery {
    /// Both for a thumbnail of a picture, fitting width × height.
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("a file is at most {max} bytes"),
    )
}

/// The recipients of `to`: distinct logins, at least one.
fn recipients(to: &str) -> Result<Vec<String>, ApiError> {
    let mut logins: Vec<String> = to
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    logins.sort();
    logins.dedup();
    if logins.is_empty() || logins.len() > MAX_RECIPIENTS {
        return Err(ApiError::invalid(format!(
            "to is 1 to {MAX_RECIPIENTS} logins, comma-separated"
        )));
    }
    if logins.iter().any(|l| l.len() > 64) {
        return Err(ApiError::invalid("a login is at most 64 characters"));
    }
    Ok(logins)
}

fn file_name(name: Option<String>) -> Result<Option<String>, ApiError> {
    match name {
        Some(n) if n.chars().count() > 255 || n.chars().any(char::is_control) => {
            Err(ApiError::invalid("name is text of at most 255 characters"))
        }
        Some(n) if n.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// `POST /v1/files?to=bob,carol&name=cat.jpg`: the body is the file, its
/// Content-Type one of [`FILE_TYPES`].
pub async fn upload(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<UploadQuery>,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let login = state.authenticate(&headers)?;
    let content_type = super::media_type(&headers);
    if !FILE_TYPES.contains(&content_type.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-file-type",
            format!("a file is one of {}", FILE_TYPES.join(", ")),
        ));
    }
    let max = state.config.file_max_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let to = recipients(&q.to)?;
    let name = file_name(q.name)?;
    let id = hex::encode(rand::random::<[u8; 16]>());
    let now = state.clock.now();
    let keep = i64::try_from(state.config.file_keep_secs).unwrap_or(i64::MAX / 2);
    state
        .store
        .open_file(&NewFile {
            id: &id,
            sender: &login,
            content_type: &content_type,
            name: name.as_deref(),
            recipients: &to,
            created_at: now,
            expires_at: now.saturating_add(keep),
        })
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound(what) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown-recipient",
                format!("files go to service users only: no {what}"),
            ),
            other => other.into(),
        })?;
    // Whatever goes wrong from here, the half-written file goes with it.
    match receive(&state.store, &id, body, max).await {
        Ok(0) => {
            discard(&state.store, &id).await;
            Err(ApiError::invalid("the body must be the file"))
        }
        Ok(_) => {
            let file = state
                .store
                .complete_file(&id)
                .await?
                .ok_or_else(|| ApiError::internal("a completed file is not there"))?;
            tracing::info!(%login, id, size = file.size, content_type, recipients = to.len(), "file uploaded");
            Ok((
                StatusCode::CREATED,
                Json(Uploaded {
                    file,
                    recipients: to,
                }),
            ))
        }
        Err(e) => {
            discard(&state.store, &id).await;
            Err(e)
        }
    }
}

/// Streams `body` into file `id`'s chunks; the bytes taken.
async fn receive(store: &Store, id: &str, body: Body, max: u64) -> Result<u64, ApiError> {
    let mut stream = body.into_data_stream();
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK_BYTES);
    let mut seq = 0i64;
    let mut total = 0u64;
    while let Some(frame) = stream.next().await {
        let mut data: Bytes =
            frame.map_err(|e| ApiError::invalid(format!("the upload broke off: {e}")))?;
        total += data.len() as u64;
        if total > max {
            return Err(too_large(max));
        }
        while !data.is_empty() {
            let take = data.len().min(CHUNK_BYTES - chunk.len());
            chunk.extend_from_slice(&data.split_to(take));
            if chunk.len() == CHUNK_BYTES {
                store.append_file_chunk(id, seq, &chunk).await?;
                seq += 1;
                chunk.clear();
            }
        }
    }
    if !chunk.is_empty() {
        store.append_file_chunk(id, seq, &chunk).await?;
    }
    Ok(total)
}

async fn discard(store: &Store, id: &str) {
    if let Err(e) = store.delete_file(id).await {
        // The sweep takes it after ABANDONED_AFTER_SECS.
        tracing::warn!(id, error = %e, "a failed upload was not deleted");
    }
}

/// `GET /v1/files/{id}` (the file; a recipient's whole download counts) or
/// `GET /v1/files/{id}?width=W&height=H` (a picture's thumbnail: never
/// counted).
pub async fn download(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> Result<Response, ApiError> {
    let login = state.authenticate(&headers)?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found(FILE));
    }
    let (file, counts) = match state.store.file_access(&id, &login).await? {
        FileAccess::Missing => return Err(ApiError::not_found(FILE)),
        FileAccess::Forbidden => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only the sender and the recipients of a file may download it",
            ));
        }
        FileAccess::Sender(file) => (file, false),
        FileAccess::Recipient(file) => (file, true),
    };
    match (q.width, q.height) {
        (None, None) => Ok(stream_file(&state, file, login, counts)),
        (Some(w), Some(h))
            if (1..=THUMBNAIL_MAX_SIDE).contains(&w) && (1..=THUMBNAIL_MAX_SIDE).contains(&h) =>
        {
            thumbnail(&state, &file, w, h).await
        }
        _ => Err(ApiError::invalid(format!(
            "a thumbnail takes both width and height, 1 to {THUMBNAIL_MAX_SIDE}"
        ))),
    }
}

/// A download under way: the chunk to read next and the bytes handed to
/// the connection so far.
struct Reading {
    store: Store,
    clock: super::clock::Clock,
    id: String,
    login: String,
    size: i64,
    next: i64,
    sent: i64,
    /// A recipient's download (the sender's are not recorded).
    counts: bool,
}

impl Drop for Reading {
    /// The connection is done with the body. With a known length hyper
    /// stops asking once it has every byte, so "the last byte was handed
    /// over" is known here, not at an end-of-stream poll; a client that
    /// went away earlier left bytes unsent and nothing is recorded.
    fn drop(&mut self) {
        if !self.counts || self.sent != self.size {
            return;
        }
        let (store, id, login, now) = (
            self.store.clone(),
            std::mem::take(&mut self.id),
            std::mem::take(&mut self.login),
            self.clock.now(),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                match store.file_downloaded(&id, &login, now).await {
                    Ok(deleted) => tracing::info!(%login, id, deleted, "file downloaded"),
                    Err(e) => tracing::error!(%login, id, error = %e, "download not recorded"),
                }
            });
        }
    }
}

/// A response streaming `file`'s chunks; once a recipient's connection has
/// taken every byte the download is recorded (and the file deleted when it
/// was the last recipient's).
fn stream_file(state: &Arc<ApiState>, file: SharedFile, login: String, counts: bool) -> Response {
    let reading = Reading {
        store: state.store.clone(),
        clock: state.clock.clone(),
        id: file.id.clone(),
        login,
        size: file.size,
        next: 0,
        sent: 0,
        counts,
    };
    let chunks = futures_util::stream::unfold(reading, |mut r| async move {
        if r.sent >= r.size {
            return None;
        }
        match r.store.file_chunk(&r.id, r.next).await {
            Ok(Some(data)) => {
                r.next += 1;
                r.sent += data.len() as i64;
                Some((Ok(Bytes::from(data)), r))
            }
            Ok(None) => {
                // Deleted meanwhile (the last recipient's download, or the
                // expiry): the response breaks off short of its length.
                r.counts = false;
                r.sent = r.size;
                Some((Err(std::io::Error::other("file deleted meanwhile")), r))
            }
            Err(e) => {
                tracing::error!(id = r.id, error = %e, "file chunk unreadable");
                r.counts = false;
                r.sent = r.size;
                Some((Err(std::io::Error::other("storage error")), r))
            }
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&file.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    if let Some(v) = file.name.as_deref().and_then(|n| {
        HeaderValue::from_str(&format!(
            "attachment; filename=\"{}\"",
            n.replace(['"', '\\'], "_")
        ))
        .ok()
    }) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// A thumbnail of picture `file` fitting `width` × `height`.
async fn thumbnail(
    state: &Arc<ApiState>,
    file: &SharedFile,
    width: u32,
    height: u32,
) -> Result<Response, ApiError> {
    if !file.content_type.starts_with("image/") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not-a-picture",
            "only pictures have thumbnails",
        ));
    }
    if file.size > THUMBNAIL_SOURCE_MAX {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too-large",
            format!("thumbnails are made of pictures up to {THUMBNAIL_SOURCE_MAX} bytes"),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(file.size).unwrap_or(0));
    let mut seq = 0;
    while let Some(chunk) = state.store.file_chunk(&file.id, seq).await? {
        bytes.extend_from_slice(&chunk);
        seq += 1;
    }
    let picture = {
        // The same decoders, one per core, as avatars: a burst queues.
        let _permit = state
            .avatar_decoders
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || {
            scale(
                &bytes,
                &[ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Gif],
                width,
                height,
            )
        })
        .await
        .map_err(ApiError::internal)?
    }
    .map_err(|e| match e {
        AvatarError::Encode(_) => ApiError::internal(e),
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-image",
            format!("no thumbnail: {other}"),
        ),
    })?;
    Ok((
        [(header::CONTENT_TYPE, picture.content_type)],
        picture.image,
    )
        .into_response())
}

/// Deletes expired files and abandoned uploads now and then, for as long as
/// the switch runs (every node does; a delete is idempotent).
pub fn spawn_sweep(
    store: Store,
    clock: super::clock::Clock,
    keep_secs: u64,
) -> tokio::task::JoinHandle<()> {
    // Often enough that a file outlives its time by at most a minute (or
    // half its keep time, when that is short), rarely enough to cost nothing.
    let every = Duration::from_secs((keep_secs / 2).clamp(1, 60));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = clock.now();
            match store.sweep_files(now, now - ABANDONED_AFTER_SECS).await {
                Ok(swept) if swept.expired + swept.abandoned > 0 => {
                    tracing::info!(
                        expired = swept.expired,
                        abandoned = swept.abandoned,
                        "files swept"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "file sweep failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_distinct_logins() {
        assert_eq!(recipients("bob, carol,bob,").unwrap(), ["bob", "carol"]);
        assert!(recipients(" , ").is_err());
        let many = (0..=MAX_RECIPIENTS)
            .map(|i| format!("u{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(recipients(&many).is_err());
        assert!(recipients(&"x".repeat(65)).is_err());
    }

    #[test]
    fn names_are_short_plain_text() {
        assert_eq!(
            file_name(Some("cat.jpg".into())).unwrap().as_deref(),
            Some("cat.jpg")
        );
        assert_eq!(file_name(Some("  ".into())).unwrap(), None);
        assert!(file_name(Some("a\nb".into())).is_err());
        assert!(file_name(Some("é".repeat(256))).is_err());
    }
}
