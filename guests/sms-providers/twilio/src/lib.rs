//! SMS provider guest for the Twilio Programmable Messaging API.
//!
//! Send: `POST https://api.twilio.com/2010-04-01/Accounts/{AccountSid}/Messages.json`
//! with HTTP Basic authentication (`AccountSid:AuthToken`) and a form body
//! `To` (`+E.164`), `From` (or `MessagingServiceSid`), `Body`, and
//! `StatusCallback` when the host has a public URL for reports. A 201 answer
//! carries the message `sid`; 429 and 5xx are retried; other errors carry
//! Twilio's `code` and `message`.
//!
//! Status callbacks are form-encoded POSTs with `MessageSid` and
//! `MessageStatus` (`queued`, `sending`, `sent`, `delivered`, `undelivered`,
//! `failed`, ...).
//!
//! Configuration: `account_sid`, `auth_token`, and `from` or
//! `messaging_service_sid` (required); `base_url` (default
//! `https://api.twilio.com`; tests point it at a local stand-in).
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

const BASE_URL: &str = "https://api.twilio.com";

fn required<'a>(config: &'a Config, key: &str) -> Result<&'a str, Error> {
    common::config(config, key).ok_or_else(|| Error::Config(key.into()))
}

fn build_send(message: Message, config: Config) -> Result<HttpRequest, Error> {
    let sid = required(&config, "account_sid")?;
    let token = required(&config, "auth_token")?;
    let base = common::config(&config, "base_url").unwrap_or(BASE_URL);
    let to = format!("+{}", message.to.trim_start_matches('+'));
    let mut fields: Vec<(&str, &str)> = alloc::vec![("To", to.as_str())];
    let from;
    if let Some(service) = common::config(&config, "messaging_service_sid") {
        fields.push(("MessagingServiceSid", service));
    } else {
        from = if message.sender.is_empty() {
            required(&config, "from")?.to_string()
        } else {
            message.sender.clone()
        };
        fields.push(("From", &from));
    }
    fields.push(("Body", &message.text));
    if let Some(cb) = common::config(&config, "callback_url") {
        fields.push(("StatusCallback", cb));
    }
    Ok(HttpRequest {
        method: "POST".into(),
        url: format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            base.trim_end_matches('/'),
            common::url_encode(sid)
        ),
        headers: alloc::vec![
            Header {
                name: "Content-Type".into(),
                value: "application/x-www-form-urlencoded".into(),
            },
            Header {
                name: "Authorization".into(),
                value: format!(
                    "Basic {}",
                    common::base64(format!("{sid}:{token}").as_bytes())
                ),
            },
        ],
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
    let v = serde_json::from_slice::<serde_json::Value>(&response.body).ok();
    let get = |k: &str| v.as_ref().and_then(|v| v.get(k)).and_then(common::json_str);
    if (200..300).contains(&response.status)
        && let Some(sid) = get("sid").filter(|s| !s.is_empty())
    {
        return SendResult::Accepted(sid);
    }
    SendResult::Rejected(format!(
        "HTTP {}: {} {}",
        response.status,
        get("code").unwrap_or_default(),
        get("message").unwrap_or_default()
    ))
}

fn parse_delivery_report(request: HttpRequest) -> Result<Report, Error> {
    let fields = common::parse_form(&String::from_utf8_lossy(&request.body));
    let sid = common::form_get(&fields, "MessageSid")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Invalid("callback without MessageSid".into()))?;
    let status = common::form_get(&fields, "MessageStatus")
        .ok_or_else(|| Error::Invalid("callback without MessageStatus".into()))?;
    let state = match status {
        "delivered" | "read" => DeliveryState::Delivered,
        "undelivered" | "failed" | "canceled" => DeliveryState::Failed,
        _ => DeliveryState::Pending,
    };
    let detail = match common::form_get(&fields, "ErrorCode") {
        Some(code) if !code.is_empty() => format!("{status} (ErrorCode {code})"),
        _ => status.to_string(),
    };
    Ok(Report {
        provider_id: sid.to_string(),
        state,
        detail: Some(detail),
    })
}

struct Twilio;

impl Guest for Twilio {
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

export!(Twilio);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        [
            ("account_sid", "AC123"),
            ("auth_token", "tok"),
            ("from", "+15005550006"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn send_request_is_the_documented_form() {
        let req = build_send(
            Message {
                to: "48600100200".into(),
                sender: String::new(),
                text: "Code 1234".into(),
                reference: "r".into(),
            },
            cfg(),
        )
        .unwrap();
        assert_eq!(
            req.url,
            "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
        );
        assert!(
            req.headers
                .iter()
                .any(|h| h.name == "Authorization" && h.value == "Basic QUMxMjM6dG9r")
        );
        assert_eq!(
            String::from_utf8(req.body).unwrap(),
            "To=%2B48600100200&From=%2B15005550006&Body=Code+1234"
        );
    }

    #[test]
    fn documented_answers() {
        let resp = |status, body: &str| HttpResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        assert!(
            matches!(parse_send_response(resp(201, r#"{"sid":"SM1","status":"queued"}"#)), SendResult::Accepted(s) if s == "SM1")
        );
        let err = r#"{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}"#;
        assert!(
            matches!(parse_send_response(resp(400, err)), SendResult::Rejected(r) if r.contains("21211"))
        );
        assert!(matches!(
            parse_send_response(resp(429, "")),
            SendResult::RetryAfter(30)
        ));
    }

    #[test]
    fn status_callbacks() {
        let cb = |body: &str| HttpRequest {
            method: "POST".into(),
            url: "/v1/sms/reports/twilio".into(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        let r = parse_delivery_report(cb(
            "MessageSid=SM1&MessageStatus=delivered&AccountSid=AC123",
        ))
        .unwrap();
        assert_eq!(
            (r.provider_id.as_str(), r.state),
            ("SM1", DeliveryState::Delivered)
        );
        let r = parse_delivery_report(cb(
            "MessageSid=SM2&MessageStatus=undelivered&ErrorCode=30003",
        ))
        .unwrap();
        assert_eq!(r.state, DeliveryState::Failed);
        assert!(parse_delivery_report(cb("MessageStatus=sent")).is_err());
    }
}
