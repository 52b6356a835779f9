//! `{{crate}}`: an SMS provider guest for softswitch (world
//! `{{world_id}}`, in `wit/`).
//!
//! A provider guest only translates: the switch asks it for the HTTP request
//! that sends one SMS, performs the request itself (only to the hosts the
//! operator allowed), hands the answer back, and passes on the vendor's
//! delivery-report callbacks. Retries and back-off are the switch's.
//!
//! This one speaks to an imaginary JSON API:
//!
//! ```text
//! POST <url>
//! Authorization: Bearer <api_key>
//! Content-Type: application/json
//!
//! {"to": "+48600111222", "from": "Softswitch", "text": "...", "reference": "...",
//!  "unicode": false, "callback_url": "..."}
//! ```
//!
//! `unicode` comes from the message's `encoding`, which the switch works
//! out from the text (GSM 7-bit or UCS-2): most vendors ask for it, and a
//! text sent as Unicode when it need not be costs twice the parts.
//!
//! answered with `2xx {"id": "<message id>"}`; 429 and 5xx are retried after
//! `Retry-After` (else 30 s), anything else is refused for good. Delivery
//! reports come as `{"id": "...", "status": "delivered" | "failed" | ...}`.
//!
//! Configuration values (`config = { ... }` of `[sms.providers.<name>]`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `url` | (required) | the vendor's send endpoint |
//! | `api_key` | (required) | sent as `Authorization: Bearer <api_key>` |
//! | `from` | (none) | sender when the switch gives none (`sms.sender`) |
//! | `callback_url` | (set by the switch) | where delivery reports go, when `sms.callback_base_url` is set |
#![allow(
    clippy::too_many_arguments,
    reason = "in the code wit-bindgen generates"
)]

wit_bindgen::generate!({ world: "provider", path: "wit" });

// `Message`, `HttpRequest`, `HttpResponse`, `SendResult`, `Report` and
// `Error` are in scope through the world's `use`.
use softswitch::sms_provider::types::{DeliveryState, Encoding, Header};

/// The configuration values as the switch passes them.
pub type Config = Vec<(String, String)>;

/// Seconds before a retry when the vendor gives no `Retry-After`.
const DEFAULT_RETRY_SECS: u32 = 30;

/// A configuration value; an empty one counts as absent.
fn value<'a>(config: &'a Config, key: &str) -> Option<&'a str> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn header(headers: &[Header], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.clone())
}

/// The request that sends `message`.
pub fn build_send(message: Message, config: &Config) -> Result<HttpRequest, Error> {
    let url = value(config, "url").ok_or_else(|| Error::Config("url".into()))?;
    let api_key = value(config, "api_key").ok_or_else(|| Error::Config("api_key".into()))?;
    if message.to.is_empty() || !message.to.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid(format!(
            "recipient {:?} is not a number",
            message.to
        )));
    }
    let sender = if message.sender.is_empty() {
        value(config, "from").unwrap_or_default().to_string()
    } else {
        message.sender
    };
    let mut body = serde_json::json!({
        "to": format!("+{}", message.to),
        "from": sender,
        "text": message.text,
        "reference": message.reference,
        "unicode": matches!(message.encoding, Encoding::Ucs2),
    });
    if let Some(callback) = value(config, "callback_url") {
        body["callback_url"] = callback.into();
    }
    Ok(HttpRequest {
        method: "POST".into(),
        url: url.to_string(),
        headers: vec![
            Header {
                name: "Authorization".into(),
                value: format!("Bearer {api_key}"),
            },
            Header {
                name: "Content-Type".into(),
                value: "application/json".into(),
            },
        ],
        body: body.to_string().into_bytes(),
    })
}

/// What the vendor's answer means.
pub fn parse_send_response(response: &HttpResponse) -> SendResult {
    let text = String::from_utf8_lossy(&response.body);
    match response.status {
        200..=299 => {
            let id = serde_json::from_slice::<serde_json::Value>(&response.body)
                .ok()
                .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(String::from));
            match id {
                Some(id) if !id.is_empty() => SendResult::Accepted(id),
                _ => SendResult::Rejected(format!("no message id in {:?}", text.trim())),
            }
        }
        429 | 500..=599 => SendResult::RetryAfter(
            header(&response.headers, "retry-after")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_RETRY_SECS),
        ),
        status => SendResult::Rejected(format!("HTTP {status}: {}", text.trim())),
    }
}

/// A delivery report the vendor sent to the switch.
pub fn parse_delivery_report(request: &HttpRequest) -> Result<Report, Error> {
    let v: serde_json::Value = serde_json::from_slice(&request.body)
        .map_err(|e| Error::Invalid(format!("report body is not JSON: {e}")))?;
    let field = |name: &str| {
        v.get(name)
            .and_then(|f| f.as_str())
            .filter(|f| !f.is_empty())
    };
    let id = field("id").ok_or_else(|| Error::Invalid("report without \"id\"".into()))?;
    let status =
        field("status").ok_or_else(|| Error::Invalid("report without \"status\"".into()))?;
    let state = match status {
        "delivered" => DeliveryState::Delivered,
        "failed" | "undelivered" | "rejected" | "expired" => DeliveryState::Failed,
        _ => DeliveryState::Pending,
    };
    Ok(Report {
        provider_id: id.to_string(),
        state,
        detail: Some(status.to_string()),
    })
}

struct Provider;

impl Guest for Provider {
    fn build_send(message: Message, config: Config) -> Result<HttpRequest, Error> {
        build_send(message, &config)
    }

    fn parse_send_response(response: HttpResponse, _config: Config) -> SendResult {
        parse_send_response(&response)
    }

    fn parse_delivery_report(request: HttpRequest, _config: Config) -> Result<Report, Error> {
        parse_delivery_report(&request)
    }
}

export!(Provider);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn message(sender: &str) -> Message {
        Message {
            to: "48600111222".into(),
            sender: sender.into(),
            text: "Your code is 1234".into(),
            reference: "r-1".into(),
            encoding: Encoding::Gsm7,
        }
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_request_carries_key_number_and_text() {
        let cfg = config(&[
            ("url", "https://sms.example/v1/send"),
            ("api_key", "k-123"),
            ("from", "Softswitch"),
            ("callback_url", "https://switch.example/v1/sms/reports/demo"),
        ]);
        let req = build_send(message(""), &cfg).unwrap();
        assert_eq!(
            (req.method.as_str(), req.url.as_str()),
            ("POST", "https://sms.example/v1/send")
        );
        assert_eq!(
            header(&req.headers, "authorization").unwrap(),
            "Bearer k-123"
        );
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["to"], "+48600111222");
        assert_eq!(body["from"], "Softswitch");
        assert_eq!(body["text"], "Your code is 1234");
        assert_eq!(body["unicode"], false);
        assert_eq!(
            body["callback_url"],
            "https://switch.example/v1/sms/reports/demo"
        );
        let req = build_send(message("Shop"), &cfg).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["from"], "Shop");
        let polish = Message {
            text: "Twój kod: 1234".into(),
            encoding: Encoding::Ucs2,
            ..message("")
        };
        let body: serde_json::Value =
            serde_json::from_slice(&build_send(polish, &cfg).unwrap().body).unwrap();
        assert_eq!(body["unicode"], true);
    }

    #[test]
    fn missing_settings_are_named() {
        let missing = |cfg: &[(&str, &str)]| match build_send(message(""), &config(cfg)) {
            Err(Error::Config(key)) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(missing(&[("api_key", "k")]), "url");
        assert_eq!(
            missing(&[("url", "https://sms.example"), ("api_key", "")]),
            "api_key"
        );
    }

    #[test]
    fn answers_are_accepted_retried_or_refused() {
        match parse_send_response(&response(201, &[], r#"{"id":"m-42"}"#)) {
            SendResult::Accepted(id) => assert_eq!(id, "m-42"),
            other => panic!("{other:?}"),
        }
        match parse_send_response(&response(429, &[("Retry-After", "7")], "")) {
            SendResult::RetryAfter(secs) => assert_eq!(secs, 7),
            other => panic!("{other:?}"),
        }
        match parse_send_response(&response(503, &[], "")) {
            SendResult::RetryAfter(secs) => assert_eq!(secs, DEFAULT_RETRY_SECS),
            other => panic!("{other:?}"),
        }
        match parse_send_response(&response(400, &[], "bad number")) {
            SendResult::Rejected(reason) => assert_eq!(reason, "HTTP 400: bad number"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_send_response(&response(200, &[], "{}")),
            SendResult::Rejected(_)
        ));
    }

    #[test]
    fn delivery_reports_are_read() {
        let report = |body: &str| {
            parse_delivery_report(&HttpRequest {
                method: "POST".into(),
                url: "/v1/sms/reports/demo".into(),
                headers: vec![],
                body: body.as_bytes().to_vec(),
            })
        };
        let r = report(r#"{"id":"m-42","status":"delivered"}"#).unwrap();
        assert_eq!(r.provider_id, "m-42");
        assert!(matches!(r.state, DeliveryState::Delivered));
        let r = report(r#"{"id":"m-42","status":"expired"}"#).unwrap();
        assert!(matches!(r.state, DeliveryState::Failed));
        let r = report(r#"{"id":"m-42","status":"queued"}"#).unwrap();
        assert!(matches!(r.state, DeliveryState::Pending));
        assert!(matches!(report("not json"), Err(Error::Invalid(_))));
        assert!(matches!(
            report(r#"{"status":"delivered"}"#),
            Err(Error::Invalid(_))
        ));
    }
}
