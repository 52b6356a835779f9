//! The delivery-report webhook: `/v1/sms/reports/{provider}`, any method
//! (vendors call back with GET query strings or POST bodies). The request is
//! handed to the named provider guest to parse; the outcome updates the SMS
//! and with it the sign-up delivery status.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};

use super::ApiState;
use super::error::ApiError;
use crate::plugins::sms::{DeliveryState, HttpMessage};
use crate::store::sms::SmsStatus;

/// Handles one report. A report for a message id the switch does not know
/// (yet: a fast vendor may report before the acceptance is recorded) answers
/// 404 `unknown-message`, and a guest failure 503, so the vendor retries.
pub async fn report(
    State(state): State<Arc<ApiState>>,
    Path(provider): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(guest) = state.sms.provider(&provider) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-provider",
            "no SMS provider by that name",
        ));
    };
    let request = HttpMessage {
        method: method.to_string(),
        url: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |p| p.to_string()),
        status: 0,
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    let report = match guest.parse_delivery_report(&request).await {
        Ok(Ok(r)) => r,
        Ok(Err(why)) => {
            tracing::info!(provider = %provider, reason = %why, "delivery report refused by its guest");
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-report", why));
        }
        Err(failure) => {
            tracing::warn!(provider = %provider, error = %failure, "SMS provider guest failed on a delivery report");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider-failed",
                "the provider guest could not read the report; retry later",
            ));
        }
    };
    let status = match report.state {
        DeliveryState::Delivered => SmsStatus::Delivered,
        DeliveryState::Failed => SmsStatus::Failed,
        DeliveryState::Pending => SmsStatus::Sent,
    };
    let updated = state
        .store
        .sms_report(
            &provider,
            &report.provider_id,
            status,
            report.detail.as_deref(),
            crate::store::now_secs(),
        )
        .await?;
    match updated {
        Some(m) => {
            tracing::info!(sms = m.id, provider = %provider, state = %m.status, "delivery report");
            Ok(Json(serde_json::json!({ "status": "ok" })))
        }
        None => {
            tracing::info!(provider = %provider, provider_id = %report.provider_id, "delivery report for an unknown message");
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown-message",
                "no message with this id was sent through this provider",
            ))
        }
    }
}
