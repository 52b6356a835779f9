//! Push provider guest for UnifiedPush endpoints and operator webhooks.
//!
//! UnifiedPush (unifiedpush.org, "Server-side specification"): the device's
//! distributor gives the app an endpoint URL, which the app registers as its
//! token; the application server delivers a push by POSTing the message to
//! that URL, as in the Web Push protocol (RFC 8030 §5): `TTL` (seconds the
//! push service may keep the message, §5.2), `Urgency` (`very-low`, `low`,
//! `normal`, `high`, §5.3) and the message as the body (at most 4096 bytes).
//! A 201 Created answer carries the message's `Location` (§5); 404 and 410
//! mean the endpoint is gone (the app was uninstalled or unregistered); 429
//! asks the sender to slow down.
//!
//! The body is the notification as JSON: `type` (the WIT kind:
//! `incoming-call`, `missed-call`, `text`, `picture`, `video`, `audio`,
//! `file`, `voicemail`), `from` (login), `name` (display name), `book_name`
//! (when the user has one for the caller), `ts` (UNIX seconds), `id`, `badge`,
//! `call_id` (when there is one), `excerpt`, and `login` (the device's user).
//! Incoming calls live 30 s with urgency `high`; missed calls are `high` too
//! (they should show at once); the rest are `normal` and live a day.
//!
//! With the `url` value set, the request goes to that URL instead (an
//! operator's own push gateway) and the body also carries the device's
//! `token`, `app`, `sandbox` and `voip`, so the gateway knows whom to reach.
//!
//! Answers: 2xx is delivered (with `Location` when given); 404 and 410 mean
//! the token is no longer valid; 429, 500 and 503 are retried after
//! `Retry-After`, else 10 s; the rest fail.
//!
//! Configuration:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `url` | (none: the token is the endpoint) | an operator gateway to POST every notification to |
//! | `header.<Name>` | | extra request headers (e.g. `header.Authorization`) |
#![cfg_attr(target_arch = "wasm32", no_std)]
#![allow(
    clippy::too_many_arguments,
    reason = "in the code wit-bindgen generates"
)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::json;
use softswitch_guest_rt as _;

#[path = "../../common/common.rs"]
mod common;

wit_bindgen::generate!({ world: "provider", path: "../../../wit/push-provider/0.1.0" });

// `notification`, `device`, `http-request`, ... are in scope through the
// world's `use`.
use common::{Config, header};
use softswitch::push_provider::types::NotificationKind;

/// `TTL` of an incoming call: after that nobody can pick it up.
const CALL_TTL_SECS: u32 = 30;
/// `TTL` of everything else.
const TTL_SECS: u32 = 86_400;
/// Seconds to wait when a throttled or failing service gives no `Retry-After`.
const DEFAULT_RETRY_SECS: u32 = 10;

/// The JSON body: the notification, for the app (or the gateway) to show.
fn payload(n: &Notification, device: &Device, gateway: bool) -> serde_json::Value {
    let mut body = json!({
        "type": common::kind_name(n.kind),
        "from": n.from_login,
        "name": n.from_display_name,
        "ts": n.timestamp,
        "id": n.id,
        "badge": n.badge,
        "excerpt": n.excerpt,
        "login": device.login,
    });
    if let Some(fields) = body.as_object_mut() {
        if let Some(book) = n.from_book_name.as_deref().filter(|b| !b.is_empty()) {
            fields.insert("book_name".into(), book.into());
        }
        if let Some(call_id) = &n.call_id {
            fields.insert("call_id".into(), call_id.as_str().into());
        }
        if gateway {
            fields.insert("token".into(), device.token.as_str().into());
            fields.insert("app".into(), device.app.as_str().into());
            fields.insert("sandbox".into(), device.sandbox.into());
            fields.insert("voip".into(), device.voip.into());
        }
    }
    body
}

fn format_requests(
    n: Notification,
    device: Device,
    config: &Config,
) -> Result<Vec<HttpRequest>, Error> {
    let gateway = common::config(config, "url");
    let url = match gateway {
        Some(url) if common::is_http_url(url) => url,
        Some(_) => return Err(Error::Config("url".into())),
        None if common::is_http_url(&device.token) => device.token.as_str(),
        None => {
            return Err(Error::Invalid(
                "a UnifiedPush token is an http:// or https:// endpoint URL".into(),
            ));
        }
    };
    let (ttl, urgency) = match n.kind {
        NotificationKind::IncomingCall => (CALL_TTL_SECS, "high"),
        NotificationKind::MissedCall => (TTL_SECS, "high"),
        _ => (TTL_SECS, "normal"),
    };
    let mut headers = alloc::vec![
        header("TTL", ttl.to_string()),
        header("Urgency", urgency),
        header("Content-Type", "application/json"),
    ];
    for (k, v) in config {
        if let Some(name) = k.strip_prefix("header.").filter(|n| !n.is_empty()) {
            headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
            headers.push(header(name, v.as_str()));
        }
    }
    Ok(alloc::vec![HttpRequest {
        method: "POST".into(),
        url: url.to_string(),
        headers,
        body: common::json_body(&payload(&n, &device, gateway.is_some()))?,
    }])
}

fn parse_response(response: HttpResponse) -> Outcome {
    match response.status {
        200..=299 => Outcome::Delivered(
            common::header_value(&response.headers, "location").map(String::from),
        ),
        404 | 410 => Outcome::TokenInvalid(
            format!(
                "HTTP {} {}",
                response.status,
                common::body_text(&response.body)
            )
            .trim_end()
            .to_string(),
        ),
        429 | 500 | 503 => {
            Outcome::RetryAfter(common::retry_after(&response.headers, DEFAULT_RETRY_SECS))
        }
        status => Outcome::Failed(
            format!("HTTP {status} {}", common::body_text(&response.body))
                .trim_end()
                .to_string(),
        ),
    }
}

struct Webhook;

impl Guest for Webhook {
    fn format(
        notification: Notification,
        device: Device,
        config: Config,
    ) -> Result<Vec<HttpRequest>, Error> {
        format_requests(notification, device, &config)
    }
    fn parse_response(response: HttpResponse, _config: Config) -> Outcome {
        parse_response(response)
    }
}

export!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use common::test_util::{body_json, cfg, notification, only_header, response};

    const ENDPOINT: &str = "https://ntfy.example/upAbC123?up=1";

    fn device(token: &str) -> Device {
        Device {
            token: token.into(),
            app: "org.example.phone".into(),
            sandbox: false,
            voip: false,
            login: "bob".into(),
        }
    }

    fn one(n: Notification, device: Device, config: &Config) -> HttpRequest {
        let mut reqs = format_requests(n, device, config).unwrap();
        assert_eq!(reqs.len(), 1);
        reqs.remove(0)
    }

    #[test]
    fn incoming_call_to_a_unifiedpush_endpoint() {
        let n = Notification {
            call_id: Some("c1@sw".into()),
            from_book_name: Some("Mum".into()),
            ..notification(NotificationKind::IncomingCall)
        };
        let req = one(n, device(ENDPOINT), &cfg(&[]));
        assert_eq!(req.method, "POST");
        assert_eq!(req.url, ENDPOINT);
        assert_eq!(only_header(&req, "TTL"), Some("30"));
        assert_eq!(only_header(&req, "Urgency"), Some("high"));
        assert_eq!(only_header(&req, "Content-Type"), Some("application/json"));
        assert_eq!(only_header(&req, "Authorization"), None);
        assert_eq!(
            body_json(&req),
            json!({
                "type": "incoming-call",
                "from": "alice",
                "name": "Alice A.",
                "book_name": "Mum",
                "ts": 1_700_000_000,
                "id": "n-42",
                "badge": 3,
                "call_id": "c1@sw",
                "excerpt": "",
                "login": "bob",
            })
        );
    }

    #[test]
    fn text_message() {
        let n = Notification {
            excerpt: "Hi \"Bob\"\n\u{1F600}".into(),
            ..notification(NotificationKind::Text)
        };
        let req = one(n, device("http://10.0.0.2:8080/UP?token=x"), &cfg(&[]));
        assert_eq!(req.url, "http://10.0.0.2:8080/UP?token=x");
        assert_eq!(only_header(&req, "TTL"), Some("86400"));
        assert_eq!(only_header(&req, "Urgency"), Some("normal"));
        assert_eq!(
            body_json(&req),
            json!({
                "type": "text",
                "from": "alice",
                "name": "Alice A.",
                "ts": 1_700_000_000,
                "id": "n-42",
                "badge": 3,
                "excerpt": "Hi \"Bob\"\n\u{1F600}",
                "login": "bob",
            })
        );
    }

    #[test]
    fn urgency_and_ttl_per_kind() {
        for (kind, name, ttl, urgency) in [
            (NotificationKind::MissedCall, "missed-call", "86400", "high"),
            (NotificationKind::Picture, "picture", "86400", "normal"),
            (NotificationKind::Video, "video", "86400", "normal"),
            (NotificationKind::Audio, "audio", "86400", "normal"),
            (NotificationKind::File, "file", "86400", "normal"),
            (NotificationKind::Voicemail, "voicemail", "86400", "normal"),
        ] {
            let req = one(notification(kind), device(ENDPOINT), &cfg(&[]));
            assert_eq!(body_json(&req)["type"], name);
            assert_eq!(only_header(&req, "TTL"), Some(ttl));
            assert_eq!(only_header(&req, "Urgency"), Some(urgency), "{name}");
        }
    }

    #[test]
    fn operator_gateway_with_headers() {
        let c = cfg(&[
            ("url", "https://push-gw.example/v1/notify"),
            ("header.Authorization", "Bearer s3cret"),
            ("header.content-type", "application/vnd.gw+json"),
        ]);
        let mut d = device("7a3c0f9e");
        d.sandbox = true;
        d.voip = true;
        let req = one(notification(NotificationKind::Voicemail), d, &c);
        assert_eq!(req.url, "https://push-gw.example/v1/notify");
        assert_eq!(only_header(&req, "Authorization"), Some("Bearer s3cret"));
        assert_eq!(
            only_header(&req, "Content-Type"),
            Some("application/vnd.gw+json")
        );
        assert_eq!(
            body_json(&req),
            json!({
                "type": "voicemail",
                "from": "alice",
                "name": "Alice A.",
                "ts": 1_700_000_000,
                "id": "n-42",
                "badge": 3,
                "excerpt": "",
                "login": "bob",
                "token": "7a3c0f9e",
                "app": "org.example.phone",
                "sandbox": true,
                "voip": true,
            })
        );
    }

    #[test]
    fn configuration_and_input_errors() {
        let n = || notification(NotificationKind::Text);
        for token in ["", "7a3c0f9e", "ftp://x/y", "https://", "https:// x"] {
            assert!(
                matches!(
                    format_requests(n(), device(token), &cfg(&[])),
                    Err(Error::Invalid(_))
                ),
                "{token:?}"
            );
        }
        assert!(matches!(
            format_requests(n(), device(ENDPOINT), &cfg(&[("url", "push-gw.example")])),
            Err(Error::Config(k)) if k == "url"
        ));
    }

    #[test]
    fn documented_answers() {
        assert!(matches!(
            parse_response(response(201, &[("Location", "https://ntfy.example/m/1")], "")),
            Outcome::Delivered(Some(l)) if l == "https://ntfy.example/m/1"
        ));
        assert!(matches!(
            parse_response(response(200, &[], "{}")),
            Outcome::Delivered(None)
        ));
        assert!(matches!(
            parse_response(response(404, &[], "")),
            Outcome::TokenInvalid(r) if r == "HTTP 404"
        ));
        assert!(matches!(
            parse_response(response(410, &[], "Gone")),
            Outcome::TokenInvalid(r) if r == "HTTP 410 Gone"
        ));
        assert!(matches!(
            parse_response(response(429, &[], "")),
            Outcome::RetryAfter(10)
        ));
        assert!(matches!(
            parse_response(response(503, &[("Retry-After", "4")], "")),
            Outcome::RetryAfter(4)
        ));
        assert!(matches!(
            parse_response(response(500, &[], "")),
            Outcome::RetryAfter(10)
        ));
        assert!(matches!(
            parse_response(response(413, &[], "Payload Too Large")),
            Outcome::Failed(r) if r == "HTTP 413 Payload Too Large"
        ));
        assert!(matches!(
            parse_response(response(301, &[], "")),
            Outcome::Failed(r) if r == "HTTP 301"
        ));
    }
}
