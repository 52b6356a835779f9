//! `POST /v1/payments/webhook`: a payment page (the operator's, or a
//! payment provider's hosted one) reports a completed payment and the
//! switch credits the account.
//!
//! The request is signed like the big providers' webhooks: header
//! `Softswitch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `"<t>.<raw body>"` with `billing.payment_webhook_secret`. A signature
//! older or newer than [`TOLERANCE_SECS`] is refused (a captured request
//! cannot be replayed later), and the payment id is credited once (a
//! provider delivering the same event again gets the first answer back).
//! No secret configured: the endpoint does not exist (404).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::billing::{billing_error, invalid_amount, unknown_currency};
use super::error::ApiError;
use crate::billing::money::{currency, format_in, parse_payment};
use crate::billing::{LedgerKind, Movement};

/// Largest difference between the signature's time and ours, seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "softswitch-signature";

/// A completed payment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    /// The payment's id at the provider (1 to 128 printable characters):
    /// the key that makes a repeated delivery harmless.
    pub id: String,
    /// The account paid for.
    pub login: String,
    /// Decimal string, such as `"10.00"`.
    pub amount: String,
    /// ISO 4217: the amount's. Another than the account's is credited at
    /// the operator's exchange rate (rounded down), or refused
    /// (`currency-mismatch`) without one.
    pub currency: String,
}

/// The answer: the credit, first time or again.
#[derive(Debug, Serialize)]
pub struct Credited {
    pub id: String,
    pub login: String,
    /// What was credited, in the account's currency (`currency`).
    pub amount: String,
    pub amount_micro: i64,
    pub currency: String,
    pub balance: String,
    pub balance_micro: i64,
    pub ledger_id: i64,
    /// True when this payment was credited by an earlier delivery.
    pub repeated: bool,
}

/// `"t=…,v1=…"` checked against `secret` and `body` at `now`.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), &'static str> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let t = t.ok_or("no timestamp (t=) in the signature header")?;
    if (now - t).abs() > TOLERANCE_SECS {
        return Err("the signature's timestamp is too old or in the future");
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let signed = signed_payload(t, body);
    // ring compares in constant time; several v1 values allow a secret to
    // be rolled over.
    if signatures
        .iter()
        .any(|s| hmac::verify(&key, &signed, s).is_ok())
    {
        Ok(())
    } else {
        Err("no v1 signature matches")
    }
}

/// The header value a payment page sends for `body` at `t` (for pages
/// written in Rust, and the tests).
pub fn sign(secret: &str, body: &[u8], t: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let signed = signed_payload(t, body);
    format!("t={t},v1={}", hex::encode(hmac::sign(&key, &signed)))
}

/// What the signature covers: `"<t>.<raw body>"`.
fn signed_payload(t: i64, body: &[u8]) -> Vec<u8> {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    signed
}

/// `POST /v1/payments/webhook`.
pub async fn webhook(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Credited>), ApiError> {
    let secret = &state.billing.config().payment_webhook_secret;
    if secret.is_empty() {
        return Err(ApiError::not_found(
            "payment webhook (billing.payment_webhook_secret)",
        ));
    }
    let header = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Err(why) = verify(secret, header, &body, crate::store::now_secs()) {
        tracing::warn!(why, "payment webhook refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad-signature",
            why,
        ));
    }
    let payment: Payment = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-request", e.to_string()))?;
    let id = payment.id.trim();
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "id: 1 to 128 printable characters",
        ));
    }
    let code = currency(&payment.currency)
        .ok_or_else(|| unknown_currency(&payment.currency))?
        .code;
    let amount = parse_payment(&payment.amount, code).map_err(invalid_amount)?;
    let reference = format!("payment {id}");
    let (entry, repeated) = state
        .store
        .credit_payment(
            id,
            &Movement {
                login: &payment.login,
                kind: LedgerKind::Topup,
                amount_micro: amount,
                reference: Some(&reference),
                actor: Some("payment-webhook"),
            },
            code,
        )
        .await
        .map_err(billing_error)?;
    tracing::info!(action = "payment", login = %payment.login, payment = id, amount_micro = entry.amount_micro, repeated, "billing");
    Ok((
        if repeated {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(Credited {
            id: id.to_owned(),
            login: entry.login.clone(),
            amount: format_in(entry.amount_micro, &entry.currency),
            amount_micro: entry.amount_micro,
            balance: format_in(entry.balance_after_micro, &entry.currency),
            currency: entry.currency.clone(),
            balance_micro: entry.balance_after_micro,
            ledger_id: entry.id,
            repeated,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_for_key_body_and_time() {
        let body = br#"{"id":"p1"}"#;
        let header = sign("s3cret", body, 1_000);
        assert_eq!(verify("s3cret", &header, body, 1_100), Ok(()));
        assert!(verify("other", &header, body, 1_100).is_err(), "key");
        assert!(verify("s3cret", &header, b"{}", 1_100).is_err(), "body");
        assert!(verify("s3cret", &header, body, 1_301).is_err(), "too old");
        assert!(verify("s3cret", &header, body, 699).is_err(), "future");
        assert!(verify("s3cret", "v1=00", body, 1_000).is_err(), "no time");
        assert!(verify("s3cret", "t=1000,v1=zz", body, 1_000).is_err());
        // A rolled-over secret: either signature passes.
        let v1 = header.split_once(",v1=").unwrap().1;
        let two = format!("t=1000,v1=00ff,v1={v1}");
        assert_eq!(verify("s3cret", &two, body, 1_000), Ok(()));
    }
}
