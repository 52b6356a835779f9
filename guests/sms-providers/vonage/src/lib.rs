//! SMS provider guest for the Vonage (formerly Nexmo) SMS API.
//!
//! Send: `POST https://rest.nexmo.com/sms/json`, form-encoded `api_key`,
//! `api_secret`, `from`, `to` (E.164 without `+`), `text`, `type=unicode`,
//! `client-ref`, and `callback` when the host has a public URL for reports.
//! The answer is JSON with a `messages` array; `status` `"0"` is success,
//! `"1"` (throttled) is retried, anything else is refused with `error-text`.
//!
//! Delivery receipts arrive as a GET query string (Vonage's default) or as a
//! POST with a JSON or form body, with `messageId` and `status` (`delivered`,
//! `expired`, `failed`, `rejected`, `accepted`, `buffered`, `unknown`).
//!
//! Configuration: `api_key`, `api_secret`, `from` (required); `url`
//! (default the Vonage endpoint; tests point it at a local stand-in);
//! `callback_url` is filled in by the host.
#![cfg_attr(target_arch = "wasm32", no_std)]
#![allow(
    clippy::too_many_arguments,
    reason = "in the code wit-bindgen generates"
)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use softswitch_guest_rt as _;

#[path = "../../common/common.rs"]
mod common;

wit_bindgen::generate!({ world: "provider", path: "../../../wit/sms-provider/0.1.0" });

// `message`, `http-request`, ... are in scope through the world's `use`.
use softswitch::sms_provider::types::{DeliveryState, Header};

type Config = Vec<(String, String)>;

const ENDPOINT: &str = "https://rest.nexmo.com/sms/json";
/// Vonage throttles at 30 requests/s per account by default; a second is
/// enough for the window to pass.
const THROTTLED_RETRY_SECS: u32 = 1;

fn required<'a>(config: &'a Config, key: &str) -> Result<&'a str, Error> {
    common::config(config, key).ok_or_else(|| Error::Config(key.into()))
}

fn build_send(message: Message, config: Config) -> Result<HttpRequest, Error> {
    let api_key = required(&config, "api_key")?;
    let api_secret = required(&config, "api_secret")?;
    let from = if message.sender.is_empty() {
        required(&config, "from")?.to_string()
    } else {
        message.sender.clone()
    };
    let mut fields: Vec<(&str, &str)> = alloc::vec![
        ("api_key", api_key),
        ("api_secret", api_secret),
        ("from", &from),
        // Vonage wants E.164 digits: a leading `+` is refused as invalid.
        ("to", message.to.trim_start_matches('+')),
        ("text", &message.text),
        ("type", "unicode"),
        ("client-ref", &message.reference),
    ];
    if let Some(cb) = common::config(&config, "callback_url") {
        fields.push(("callback", cb));
    }
    Ok(HttpRequest {
        method: "POST".into(),
        url: common::config(&config, "url")
            .unwrap_or(ENDPOINT)
            .to_string(),
        headers: alloc::vec![Header {
            name: "Content-Type".into(),
            value: "application/x-www-form-urlencoded".into(),
        }],
        body: common::form(&fields),
    })
}

fn parse_send_response(response: HttpResponse) -> SendResult {
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    if response.status == 429 || response.status >= 500 {
        return SendResult::RetryAfter(common::retry_after(&headers, 30));
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&response.body) else {
        return SendResult::Rejected(format!("HTTP {}: answer is not JSON", response.status));
    };
    let Some(first) = common::json_path(&v, "messages.0") else {
        return SendResult::Rejected(format!(
            "HTTP {}: no messages in the answer",
            response.status
        ));
    };
    let field = |k: &str| first.get(k).and_then(common::json_str).unwrap_or_default();
    match field("status").as_str() {
        "0" if !field("message-id").is_empty() => SendResult::Accepted(field("message-id")),
        "1" => SendResult::RetryAfter(THROTTLED_RETRY_SECS),
        status => SendResult::Rejected(format!("status {status}: {}", field("error-text"))),
    }
}

fn parse_delivery_report(request: HttpRequest) -> Result<Report, Error> {
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let mut fields = common::parse_form(common::query_of(&request.url));
    if common::is_json(common::header(&headers, "content-type")) {
        let v: serde_json::Value = serde_json::from_slice(&request.body)
            .map_err(|e| Error::Invalid(format!("receipt is not JSON: {e}")))?;
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                if let Some(s) = common::json_str(&v) {
                    fields.push((k, s));
                }
            }
        }
    } else {
        fields.extend(common::parse_form(&String::from_utf8_lossy(&request.body)));
    }
    let id = common::form_get(&fields, "messageId")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Invalid("receipt without messageId".into()))?;
    let status = common::form_get(&fields, "status")
        .ok_or_else(|| Error::Invalid("receipt without status".into()))?;
    let state = match status {
        "delivered" => DeliveryState::Delivered,
        "expired" | "failed" | "rejected" => DeliveryState::Failed,
        _ => DeliveryState::Pending,
    };
    let detail = match common::form_get(&fields, "err-code") {
        Some(code) if code != "0" => format!("{status} (err-code {code})"),
        _ => status.to_string(),
    };
    Ok(Report {
        provider_id: id.to_string(),
        state,
        detail: Some(detail),
    })
}

struct Vonage;

impl Guest for Vonage {
    fn build_send(message: Message, config: Config) -> Result<HttpRequest, Error> {
        build_send(message, config)
    }
    fn parse_send_response(response: HttpResponse, _config: Config) -> SendResult {
        parse_send_response(response)
    }
    fn parse_delivery_report(request: HttpRequest, _config: Config) -> Result<Report, Error> {
        parse_delivery_report(request)
    }
}

export!(Vonage);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        [
            ("api_key", "abcd1234"),
            ("api_secret", "s3cr3t"),
            ("from", "Switch"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn send_request_is_the_documented_form() {
        let req = build_send(
            Message {
                to: "447700900000".into(),
                sender: String::new(),
                text: "Code 1234".into(),
                reference: "ref-1".into(),
            },
            cfg(),
        )
        .unwrap();
        assert_eq!(req.url, ENDPOINT);
        assert_eq!(
            String::from_utf8(req.body).unwrap(),
            "api_key=abcd1234&api_secret=s3cr3t&from=Switch&to=447700900000&text=Code+1234&type=unicode&client-ref=ref-1"
        );
    }

    #[test]
    fn documented_answers() {
        let resp = |body: &str| HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        let ok = r#"{"message-count":"1","messages":[{"to":"447700900000","message-id":"0A0000000123ABCD1","status":"0","remaining-balance":"3.14159265","message-price":"0.03330000","network":"12345"}]}"#;
        assert!(
            matches!(parse_send_response(resp(ok)), SendResult::Accepted(id) if id == "0A0000000123ABCD1")
        );
        let throttled =
            r#"{"message-count":"1","messages":[{"status":"1","error-text":"Throttled"}]}"#;
        assert!(matches!(
            parse_send_response(resp(throttled)),
            SendResult::RetryAfter(1)
        ));
        let bad =
            r#"{"message-count":"1","messages":[{"status":"4","error-text":"Bad Credentials"}]}"#;
        assert!(
            matches!(parse_send_response(resp(bad)), SendResult::Rejected(r) if r.contains("Bad Credentials"))
        );
    }

    #[test]
    fn receipts_by_get_and_json() {
        let get = HttpRequest {
            method: "GET".into(),
            url: "/v1/sms/reports/vonage?msisdn=447700900000&to=Switch&network-code=12345&messageId=0A0000000123ABCD1&price=0.03330000&status=delivered&scts=2001011400&err-code=0".into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        let r = parse_delivery_report(get).unwrap();
        assert_eq!(
            (r.provider_id.as_str(), r.state),
            ("0A0000000123ABCD1", DeliveryState::Delivered)
        );
        let json = HttpRequest {
            method: "POST".into(),
            url: "/v1/sms/reports/vonage".into(),
            headers: alloc::vec![Header {
                name: "Content-Type".into(),
                value: "application/json".into()
            }],
            body: br#"{"messageId":"X9","status":"failed","err-code":"6"}"#.to_vec(),
        };
        let r = parse_delivery_report(json).unwrap();
        assert_eq!(r.state, DeliveryState::Failed);
        assert_eq!(r.detail.as_deref(), Some("failed (err-code 6)"));
    }
}
