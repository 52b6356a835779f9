//! Avatars (SPEC §2, §5): upload with the bearer token, download by login.
//!
//! An upload must be PNG, JPEG or WebP (sniffed from the bytes, not trusted
//! from the Content-Type), at most `api.avatar_max_bytes`, and decode within
//! bounded dimensions and memory. It is scaled down to fit a square of
//! `api.avatar_max_side` pixels and re-encoded (JPEG, or PNG when it has
//! transparency), which also drops any metadata the phone put in (GPS
//! position in EXIF, say). The result is stored in the database and the
//! profile's `avatar_updated_at` is set, which the presence documents carry
//! so watchers refresh their copy.

use std::io::Cursor;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use serde::Serialize;

use super::ApiState;
use super::error::ApiError;
use crate::store::avatars::Avatar;

/// Largest width or height an upload may declare: a 48-megapixel phone
/// photo fits, a decompression bomb does not.
const MAX_INPUT_SIDE: u32 = 8192;
/// Memory one decode may allocate (an 8192² RGBA picture is 256 MiB; an
/// 8000×6000 one fits). Decodes run at most [`ApiState::avatar_decoders`]
/// at a time, so this bounds the total too.
const MAX_DECODE_ALLOC: u64 = 200 << 20;
/// JPEG quality of re-encoded avatars: visually clean at avatar sizes while
/// a 512² picture stays around 30-60 KB.
const JPEG_QUALITY: u8 = 85;

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AvatarError {
    /// Not PNG, JPEG or WebP.
    #[error("the picture must be PNG, JPEG or WebP")]
    UnsupportedType,
    /// Larger than the configured limit (bytes) or than [`MAX_INPUT_SIDE`].
    #[error("{0}")]
    TooLarge(String),
    /// The bytes are not a picture of the type they claim to be.
    #[error("the picture cannot be decoded: {0}")]
    Undecodable(String),
    /// Re-encoding failed (a bug or resource exhaustion, not the client's fault).
    #[error("the picture cannot be re-encoded: {0}")]
    Encode(String),
}

/// A picture ready to store.
#[derive(Debug)]
pub struct Processed {
    pub content_type: &'static str,
    pub image: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// What avatars may be made of.
const AVATAR_SOURCES: &[ImageFormat] = &[ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP];

/// Decodes, checks, scales down to fit `max_side` and re-encodes `bytes`.
/// CPU-bound: call it off the async threads.
pub fn process(bytes: &[u8], max_side: u32) -> Result<Processed, AvatarError> {
    scale(bytes, AVATAR_SOURCES, max_side, max_side)
}

/// Decodes `bytes` (one of `formats`, sniffed), scales the picture down to
/// fit `max_width` × `max_height` keeping its aspect ratio (never up), and
/// re-encodes it: what avatars and shared pictures' thumbnails are made by.
/// CPU-bound: call it off the async threads.
pub fn scale(
    bytes: &[u8],
    formats: &[ImageFormat],
    max_width: u32,
    max_height: u32,
) -> Result<Processed, AvatarError> {
    let format = image::guess_format(bytes).map_err(|_| AvatarError::UnsupportedType)?;
    if !formats.contains(&format) {
        return Err(AvatarError::UnsupportedType);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_INPUT_SIDE);
    limits.max_image_height = Some(MAX_INPUT_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let picture = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => AvatarError::TooLarge(format!(
            "the picture is too large to process ({l}); at most {MAX_INPUT_SIDE} pixels a side"
        )),
        other => AvatarError::Undecodable(other.to_string()),
    })?;
    let picture = if picture.width() > max_width || picture.height() > max_height {
        // Keeps the aspect ratio; CatmullRom is sharp enough at these
        // sizes and a good deal cheaper than Lanczos3.
        picture.resize(
            max_width,
            max_height,
            image::imageops::FilterType::CatmullRom,
        )
    } else {
        picture
    };
    let (width, height) = (picture.width(), picture.height());
    let mut out = Vec::new();
    let content_type = if picture.color().has_alpha() {
        DynamicImage::ImageRgba8(picture.to_rgba8())
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .map_err(|e| AvatarError::Encode(e.to_string()))?;
        "image/png"
    } else {
        let rgb = picture.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
            .encode_image(&rgb)
            .map_err(|e| AvatarError::Encode(e.to_string()))?;
        "image/jpeg"
    };
    Ok(Processed {
        content_type,
        image: out,
        width,
        height,
    })
}

/// `PUT /v1/profile/avatar` answer.
#[derive(Debug, Serialize)]
pub struct AvatarInfo {
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
    pub bytes: usize,
    /// Unix seconds; also in the profile and in presence documents.
    pub avatar_updated_at: i64,
}

fn refused(e: AvatarError) -> ApiError {
    match e {
        AvatarError::UnsupportedType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-image-type",
            e.to_string(),
        ),
        AvatarError::TooLarge(_) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", e.to_string())
        }
        AvatarError::Undecodable(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad-image", e.to_string())
        }
        AvatarError::Encode(_) => ApiError::internal(e),
    }
}

/// `PUT /v1/profile/avatar`: the body is the picture.
pub async fn upload(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AvatarInfo>, ApiError> {
    let login = state.authenticate(&headers)?;
    let declared = super::media_type(&headers);
    if !matches!(declared.as_str(), "image/png" | "image/jpeg" | "image/webp") {
        return Err(refused(AvatarError::UnsupportedType));
    }
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!(
                    "an avatar is at most {} bytes",
                    state.config.avatar_max_bytes
                ),
            )
        } else {
            ApiError::invalid(r.body_text())
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::invalid("the body must be the picture"));
    }
    let max_side = state.config.avatar_max_side;
    let processed = {
        let _permit = state
            .avatar_decoders
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || process(&body, max_side))
            .await
            .map_err(ApiError::internal)?
            .map_err(refused)?
    };
    let avatar = Avatar {
        content_type: processed.content_type.to_string(),
        width: processed.width,
        height: processed.height,
        updated_at: state.clock.now(),
        image: processed.image,
    };
    state.store.set_avatar(&login, &avatar).await?;
    tracing::info!(%login, bytes = avatar.image.len(), width = avatar.width, height = avatar.height, "avatar updated");
    state.profile_changed(&login);
    Ok(Json(AvatarInfo {
        content_type: processed.content_type,
        width: avatar.width,
        height: avatar.height,
        bytes: avatar.image.len(),
        avatar_updated_at: avatar.updated_at,
    }))
}

fn no_avatar() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-avatar",
        "this account has no avatar",
    )
}

/// `DELETE /v1/profile/avatar`.
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let login = state.authenticate(&headers)?;
    if !state.store.delete_avatar(&login, state.clock.now()).await? {
        return Err(no_avatar());
    }
    tracing::info!(%login, "avatar removed");
    state.profile_changed(&login);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/users/{login}/avatar`: any signed-in user may fetch any avatar.
/// The ETag is the last-update time, so a client revalidates with
/// `If-None-Match` and gets 304 while its copy is current.
pub async fn download(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(login): Path<String>,
) -> Result<Response, ApiError> {
    state.authenticate(&headers)?;
    let avatar = state.store.avatar(&login).await?.ok_or_else(no_avatar)?;
    let etag = format!("\"{}\"", avatar.updated_at);
    let etag_value = HeaderValue::from_str(&etag).map_err(ApiError::internal)?;
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let content_type = HeaderValue::from_str(&avatar.content_type).map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::ETAG, etag_value),
            // Private: only signed-in users may read it; no-cache: revalidate
            // (cheap, a 304) so a new avatar shows at once.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            ),
        ],
        avatar.image,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    #[test]
    fn large_pictures_are_scaled_to_fit_and_re_encoded() {
        let photo = DynamicImage::ImageRgb8(RgbImage::from_fn(1200, 600, |x, _| {
            Rgb([(x % 256) as u8, 40, 200])
        }));
        let p = process(&encode(photo, ImageFormat::Png), 512).unwrap();
        assert_eq!(
            (p.width, p.height, p.content_type),
            (512, 256, "image/jpeg")
        );
        assert_eq!(image::guess_format(&p.image).unwrap(), ImageFormat::Jpeg);

        // Transparency survives as PNG; small pictures keep their size.
        let icon = DynamicImage::ImageRgba8(RgbaImage::from_pixel(64, 48, Rgba([1, 2, 3, 100])));
        let p = process(&encode(icon, ImageFormat::Png), 512).unwrap();
        assert_eq!((p.width, p.height, p.content_type), (64, 48, "image/png"));

        // WebP in (the image crate encodes lossless WebP), JPEG out.
        let webp = DynamicImage::ImageRgb8(RgbImage::from_pixel(800, 800, Rgb([9, 9, 9])));
        let p = process(&encode(webp, ImageFormat::WebP), 256).unwrap();
        assert_eq!((p.width, p.height), (256, 256));
    }

    #[test]
    fn other_types_garbage_and_bombs_are_refused() {
        assert!(matches!(
            process(b"GIF89a\x01\x00\x01\x00", 512),
            Err(AvatarError::UnsupportedType)
        ));
        assert!(matches!(
            process(b"hello", 512),
            Err(AvatarError::UnsupportedType)
        ));
        // A PNG signature followed by garbage.
        let mut broken = b"\x89PNG\r\n\x1a\n".to_vec();
        broken.extend_from_slice(&[0u8; 64]);
        assert!(matches!(
            process(&broken, 512),
            Err(AvatarError::Undecodable(_))
        ));
        // A tiny file declaring 20000×20000 pixels.
        let huge = DynamicImage::ImageLuma8(image::GrayImage::new(1, 1));
        let mut png = encode(huge, ImageFormat::Png);
        // IHDR width/height sit at bytes 16..24, its CRC at 29..33 (over the
        // chunk type and data, bytes 12..29).
        png[16..20].copy_from_slice(&20_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&20_000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(
            matches!(process(&png, 512), Err(AvatarError::TooLarge(_))),
            "{:?}",
            process(&png, 512)
        );
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
