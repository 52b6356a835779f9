//! Push provider guest for the Apple Push Notification service (APNs), with
//! token-based (JWT) authentication.
//!
//! Request (Apple, "Sending notification requests to APNs"):
//! `POST https://api.push.apple.com/3/device/{device token}` over HTTP/2
//! (`https://api.sandbox.push.apple.com` for development builds) with the
//! headers `authorization: bearer <provider token>`, `apns-push-type`,
//! `apns-topic` (the bundle id; `<bundle id>.voip` for VoIP pushes),
//! `apns-priority` (10: deliver immediately), `apns-expiration` (UNIX seconds;
//! 0: deliver once or not at all) and `apns-collapse-id` (at most 64 bytes),
//! and a JSON body whose `aps` dictionary APNs interprets; the other keys go
//! to the app as they are.
//!
//! The provider token (Apple, "Establishing a token-based connection to
//! APNs") is an ES256 JWT with `kid` (the key id) in its header and `iss`
//! (the team id) and `iat` in its claims, refreshed no more often than every
//! 20 minutes and no less often than every hour. The guest asks the host for
//! it with `credentials.sign-jwt(key, {"iss": team_id}, 1800)`: the host holds
//! the `.p8` key and adds `kid` and `iat`.
//!
//! An incoming call to a VoIP (PushKit) token is a `voip` push with an empty
//! `aps`, which the app must report to CallKit at once (Apple, "Responding to
//! VoIP notifications from PushKit"); it expires 30 s after the call arrived.
//! Every other notification, and an incoming call to a regular token, is an
//! `alert` push showing the caller's name and a short text. A VoIP token
//! takes incoming calls only (an alert would be refused with
//! `DeviceTokenNotForTopic`, and a VoIP push that reports no call gets the
//! app terminated), so other kinds for it are `invalid`.
//!
//! Answers (Apple, "Handling notification responses from APNs"): 200 with an
//! `apns-id` header; errors carry `{"reason": "..."}` (410 adds `timestamp`).
//! 410 (`Unregistered`, `ExpiredToken`) and 400 `BadDeviceToken` /
//! `DeviceTokenNotForTopic` mean the token is no longer valid; 429, 500 and
//! 503 are retried (after `Retry-After`, else 30 s for 429 and 5 s for 5xx);
//! 403 `ExpiredProviderToken` is retried after 1 s with a fresh token; the
//! rest fail.
//!
//! Configuration:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `team_id` | (required) | the Apple developer team id, the JWT's `iss` |
//! | `key` | `apns` | name of the host key (`[push.keys.NAME]`, the `.p8` key) |
//! | `topic` | the device's `app` | the app's bundle id |
//! | `base_url` | `https://api.push.apple.com` | production endpoint |
//! | `sandbox_url` | `https://api.sandbox.push.apple.com` | for `sandbox` devices |
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
use common::{Config, Credentials, header};
use softswitch::push_provider::types::NotificationKind;

const BASE_URL: &str = "https://api.push.apple.com";
const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// How long the host may reuse a provider token (APNs: 20 to 60 minutes).
const TOKEN_MAX_AGE_SECS: u32 = 1800;
/// How long an incoming call stays worth delivering.
const CALL_EXPIRY_SECS: i64 = 30;
/// APNs refuses longer `apns-collapse-id` values.
const COLLAPSE_ID_MAX_BYTES: usize = 64;

/// The alert's text for each kind.
fn alert_body(n: &Notification) -> &str {
    match n.kind {
        NotificationKind::Text if n.excerpt.is_empty() => "New message",
        NotificationKind::Text => &n.excerpt,
        NotificationKind::Picture => "Photo",
        NotificationKind::Video => "Video",
        NotificationKind::Audio => "Audio message",
        NotificationKind::File => "File",
        NotificationKind::Voicemail => "New voice message",
        NotificationKind::MissedCall => "Missed call",
        NotificationKind::IncomingCall => "Incoming call",
    }
}

/// The JSON payload: `aps` plus the notification's own fields for the app.
fn payload(n: &Notification, voip: bool) -> serde_json::Value {
    let aps = if voip {
        json!({})
    } else {
        let mut alert = serde_json::Map::new();
        let title = common::shown_name(n);
        if !title.is_empty() {
            alert.insert("title".into(), title.into());
        }
        alert.insert("body".into(), alert_body(n).into());
        json!({ "alert": alert, "badge": n.badge, "sound": "default" })
    };
    let mut body = json!({
        "aps": aps,
        "type": common::kind_name(n.kind),
        "from": n.from_login,
        "name": n.from_display_name,
        "ts": n.timestamp,
        "id": n.id,
    });
    if let Some(fields) = body.as_object_mut() {
        if let Some(book) = n.from_book_name.as_deref().filter(|b| !b.is_empty()) {
            fields.insert("book_name".into(), book.into());
        }
        if let Some(call_id) = &n.call_id {
            fields.insert("call_id".into(), call_id.as_str().into());
        }
    }
    body
}

fn format_requests(
    n: Notification,
    device: Device,
    config: &Config,
    credentials: &impl Credentials,
) -> Result<Vec<HttpRequest>, Error> {
    let team_id =
        common::config(config, "team_id").ok_or_else(|| Error::Config("team_id".into()))?;
    let topic = common::config(config, "topic")
        .or(Some(device.app.as_str()).filter(|a| !a.is_empty()))
        .ok_or_else(|| Error::Config("topic".into()))?;
    let key = common::config(config, "key").unwrap_or("apns");
    if device.token.is_empty() || !device.token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid(
            "an APNs device token is a hexadecimal string".into(),
        ));
    }
    let call = n.kind == NotificationKind::IncomingCall;
    if device.voip && !call {
        return Err(Error::Invalid(format!(
            "a VoIP (PushKit) token takes incoming calls only, not {}",
            common::kind_name(n.kind)
        )));
    }
    let voip = call && device.voip;
    let base = if device.sandbox {
        common::config(config, "sandbox_url").unwrap_or(SANDBOX_URL)
    } else {
        common::config(config, "base_url").unwrap_or(BASE_URL)
    };

    let claims = json!({ "iss": team_id }).to_string();
    let jwt = credentials
        .sign_jwt(key, &claims, TOKEN_MAX_AGE_SECS)
        .map_err(Error::Credentials)?;

    let expiration = if call {
        n.timestamp.saturating_add(CALL_EXPIRY_SECS)
    } else {
        0
    };
    let mut headers = alloc::vec![
        header("authorization", format!("bearer {jwt}")),
        header("apns-push-type", if voip { "voip" } else { "alert" }),
        header(
            "apns-topic",
            if voip {
                format!("{topic}.voip")
            } else {
                topic.to_string()
            },
        ),
        header("apns-priority", "10"),
        header("apns-expiration", expiration.to_string()),
    ];
    let collapse_id = common::truncate_bytes(&n.id, COLLAPSE_ID_MAX_BYTES);
    if !voip && !collapse_id.is_empty() {
        headers.push(header("apns-collapse-id", collapse_id));
    }
    Ok(alloc::vec![HttpRequest {
        method: "POST".into(),
        url: format!("{}/3/device/{}", base.trim_end_matches('/'), device.token),
        headers,
        body: common::json_body(&payload(&n, voip))?,
    }])
}

fn parse_response(response: HttpResponse) -> Outcome {
    let reason = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v.get("reason")?.as_str().map(String::from))
        .unwrap_or_default();
    match response.status {
        200 => {
            Outcome::Delivered(common::header_value(&response.headers, "apns-id").map(String::from))
        }
        410 if reason.is_empty() => Outcome::TokenInvalid("Unregistered".into()),
        410 => Outcome::TokenInvalid(reason),
        400 if reason == "BadDeviceToken" || reason == "DeviceTokenNotForTopic" => {
            Outcome::TokenInvalid(reason)
        }
        403 if reason == "ExpiredProviderToken" => Outcome::RetryAfter(1),
        429 => Outcome::RetryAfter(common::retry_after(&response.headers, 30)),
        500 | 503 => Outcome::RetryAfter(common::retry_after(&response.headers, 5)),
        status => {
            let why = if reason.is_empty() {
                common::body_text(&response.body)
            } else {
                reason
            };
            Outcome::Failed(format!("HTTP {status} {why}").trim_end().to_string())
        }
    }
}

struct Apns;

impl Guest for Apns {
    fn format(
        notification: Notification,
        device: Device,
        config: Config,
    ) -> Result<Vec<HttpRequest>, Error> {
        format_requests(notification, device, &config, &common::Host)
    }
    fn parse_response(response: HttpResponse, _config: Config) -> Outcome {
        parse_response(response)
    }
}

export!(Apns);

#[cfg(test)]
mod tests {
    use super::*;
    use common::FakeCredentials;
    use common::test_util::{body_json, cfg, notification, only_header, response};

    const TOKEN: &str = "7a3c0f9e";

    fn device(voip: bool, sandbox: bool) -> Device {
        Device {
            token: TOKEN.into(),
            app: "com.example.phone".into(),
            sandbox,
            voip,
            login: "bob".into(),
        }
    }

    fn config() -> Config {
        cfg(&[("team_id", "TEAM123")])
    }

    fn one(
        n: Notification,
        device: Device,
        config: &Config,
        fake: &FakeCredentials,
    ) -> HttpRequest {
        let mut reqs = format_requests(n, device, config, fake).unwrap();
        assert_eq!(reqs.len(), 1);
        reqs.remove(0)
    }

    fn call() -> Notification {
        Notification {
            call_id: Some("c1@sw".into()),
            ..notification(NotificationKind::IncomingCall)
        }
    }

    #[test]
    fn voip_incoming_call() {
        let fake = FakeCredentials::default();
        let req = one(call(), device(true, false), &config(), &fake);
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.url,
            format!("https://api.push.apple.com/3/device/{TOKEN}")
        );
        assert_eq!(only_header(&req, "authorization"), Some("bearer h.c.s"));
        assert_eq!(only_header(&req, "apns-push-type"), Some("voip"));
        assert_eq!(
            only_header(&req, "apns-topic"),
            Some("com.example.phone.voip")
        );
        assert_eq!(only_header(&req, "apns-priority"), Some("10"));
        assert_eq!(only_header(&req, "apns-expiration"), Some("1700000030"));
        assert_eq!(only_header(&req, "apns-collapse-id"), None);
        assert_eq!(
            body_json(&req),
            json!({
                "aps": {},
                "type": "incoming-call",
                "from": "alice",
                "name": "Alice A.",
                "call_id": "c1@sw",
                "ts": 1_700_000_000,
                "id": "n-42",
            })
        );
        assert_eq!(
            *fake.asked.borrow(),
            [r#"sign-jwt apns {"iss":"TEAM123"} 1800"#]
        );
    }

    #[test]
    fn incoming_call_to_a_regular_token_is_an_alert() {
        let fake = FakeCredentials::default();
        let req = one(call(), device(false, false), &config(), &fake);
        assert_eq!(only_header(&req, "apns-push-type"), Some("alert"));
        assert_eq!(only_header(&req, "apns-topic"), Some("com.example.phone"));
        assert_eq!(only_header(&req, "apns-expiration"), Some("1700000030"));
        assert_eq!(only_header(&req, "apns-collapse-id"), Some("n-42"));
        assert_eq!(
            body_json(&req),
            json!({
                "aps": {
                    "alert": { "title": "Alice A.", "body": "Incoming call" },
                    "badge": 3,
                    "sound": "default",
                },
                "type": "incoming-call",
                "from": "alice",
                "name": "Alice A.",
                "call_id": "c1@sw",
                "ts": 1_700_000_000,
                "id": "n-42",
            })
        );
    }

    #[test]
    fn text_alert() {
        let fake = FakeCredentials::default();
        let n = Notification {
            excerpt: "See you at \"8\" \u{1F600}".into(),
            from_book_name: Some("Mum".into()),
            ..notification(NotificationKind::Text)
        };
        let req = one(n, device(false, false), &config(), &fake);
        assert_eq!(
            req.url,
            format!("https://api.push.apple.com/3/device/{TOKEN}")
        );
        assert_eq!(only_header(&req, "authorization"), Some("bearer h.c.s"));
        assert_eq!(only_header(&req, "apns-push-type"), Some("alert"));
        assert_eq!(only_header(&req, "apns-topic"), Some("com.example.phone"));
        assert_eq!(only_header(&req, "apns-priority"), Some("10"));
        assert_eq!(only_header(&req, "apns-expiration"), Some("0"));
        assert_eq!(only_header(&req, "apns-collapse-id"), Some("n-42"));
        assert_eq!(
            body_json(&req),
            json!({
                "aps": {
                    "alert": { "title": "Mum", "body": "See you at \"8\" \u{1F600}" },
                    "badge": 3,
                    "sound": "default",
                },
                "type": "text",
                "from": "alice",
                "name": "Alice A.",
                "book_name": "Mum",
                "ts": 1_700_000_000,
                "id": "n-42",
            })
        );
    }

    #[test]
    fn alert_texts_and_kinds() {
        let cases = [
            (NotificationKind::Picture, "picture", "Photo"),
            (NotificationKind::Video, "video", "Video"),
            (NotificationKind::Audio, "audio", "Audio message"),
            (NotificationKind::File, "file", "File"),
            (
                NotificationKind::Voicemail,
                "voicemail",
                "New voice message",
            ),
            (NotificationKind::MissedCall, "missed-call", "Missed call"),
        ];
        for (kind, name, text) in cases {
            let fake = FakeCredentials::default();
            let req = one(notification(kind), device(false, false), &config(), &fake);
            let body = body_json(&req);
            assert_eq!(body["type"], name);
            assert_eq!(body["aps"]["alert"]["body"], text, "{name}");
            assert_eq!(only_header(&req, "apns-expiration"), Some("0"));
        }
        let mut n = notification(NotificationKind::MissedCall);
        n.call_id = Some("c2@sw".into());
        let req = one(
            n,
            device(false, false),
            &config(),
            &FakeCredentials::default(),
        );
        assert_eq!(body_json(&req)["call_id"], "c2@sw");
    }

    #[test]
    fn sandbox_and_configured_endpoints() {
        let fake = FakeCredentials::default();
        let req = one(call(), device(true, true), &config(), &fake);
        assert_eq!(
            req.url,
            format!("https://api.sandbox.push.apple.com/3/device/{TOKEN}")
        );
        let c = cfg(&[
            ("team_id", "TEAM123"),
            ("key", "apns-dev"),
            ("topic", "org.other.app"),
            ("base_url", "http://127.0.0.1:9000/"),
            ("sandbox_url", "http://127.0.0.1:9001"),
        ]);
        let req = one(call(), device(true, true), &c, &fake);
        assert_eq!(req.url, format!("http://127.0.0.1:9001/3/device/{TOKEN}"));
        assert_eq!(only_header(&req, "apns-topic"), Some("org.other.app.voip"));
        let req = one(call(), device(false, false), &c, &fake);
        assert_eq!(req.url, format!("http://127.0.0.1:9000/3/device/{TOKEN}"));
        assert_eq!(
            fake.asked.borrow()[1],
            r#"sign-jwt apns-dev {"iss":"TEAM123"} 1800"#
        );
    }

    #[test]
    fn long_collapse_ids_are_cut_to_64_bytes() {
        let mut n = notification(NotificationKind::Text);
        n.id = "é".repeat(40);
        let req = one(
            n,
            device(false, false),
            &config(),
            &FakeCredentials::default(),
        );
        let id = only_header(&req, "apns-collapse-id").unwrap();
        assert_eq!(id, "é".repeat(32));
        assert!(id.len() <= 64);
    }

    #[test]
    fn configuration_and_input_errors() {
        let fake = FakeCredentials::default();
        let n = || notification(NotificationKind::Text);
        assert!(matches!(
            format_requests(n(), device(false, false), &cfg(&[]), &fake),
            Err(Error::Config(k)) if k == "team_id"
        ));
        let mut no_app = device(false, false);
        no_app.app.clear();
        assert!(matches!(
            format_requests(n(), no_app.clone(), &config(), &fake),
            Err(Error::Config(k)) if k == "topic"
        ));
        let c = cfg(&[("team_id", "TEAM123"), ("topic", "com.example.phone")]);
        assert!(format_requests(n(), no_app, &c, &fake).is_ok());
        let mut bad = device(false, false);
        bad.token = "../x".into();
        assert!(matches!(
            format_requests(n(), bad, &config(), &fake),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            format_requests(n(), device(true, false), &config(), &fake),
            Err(Error::Invalid(_))
        ));
        // Only the valid request asked for a token.
        assert_eq!(fake.asked.borrow().len(), 1);
        let refusing = FakeCredentials {
            refuse: true,
            ..Default::default()
        };
        assert!(matches!(
            format_requests(n(), device(false, false), &config(), &refusing),
            Err(Error::Credentials(e)) if e.contains("apns")
        ));
    }

    #[test]
    fn documented_answers() {
        assert!(matches!(
            parse_response(response(200, &[("apns-id", "EC1BF194-B3B2-424A-89A9-5A918A6E6B5D")], "")),
            Outcome::Delivered(Some(id)) if id == "EC1BF194-B3B2-424A-89A9-5A918A6E6B5D"
        ));
        assert!(matches!(
            parse_response(response(200, &[], "")),
            Outcome::Delivered(None)
        ));
        assert!(matches!(
            parse_response(response(410, &[], r#"{"reason":"Unregistered","timestamp":1700000000000}"#)),
            Outcome::TokenInvalid(r) if r == "Unregistered"
        ));
        assert!(matches!(
            parse_response(response(410, &[], "")),
            Outcome::TokenInvalid(r) if r == "Unregistered"
        ));
        for reason in ["BadDeviceToken", "DeviceTokenNotForTopic"] {
            assert!(matches!(
                parse_response(response(400, &[], &format!(r#"{{"reason":"{reason}"}}"#))),
                Outcome::TokenInvalid(r) if r == reason
            ));
        }
        assert!(matches!(
            parse_response(response(403, &[], r#"{"reason":"ExpiredProviderToken"}"#)),
            Outcome::RetryAfter(1)
        ));
        assert!(matches!(
            parse_response(response(429, &[], r#"{"reason":"TooManyRequests"}"#)),
            Outcome::RetryAfter(30)
        ));
        assert!(matches!(
            parse_response(response(429, &[("Retry-After", "120")], "")),
            Outcome::RetryAfter(120)
        ));
        assert!(matches!(
            parse_response(response(500, &[], r#"{"reason":"InternalServerError"}"#)),
            Outcome::RetryAfter(5)
        ));
        assert!(matches!(
            parse_response(response(
                503,
                &[("retry-after", "9")],
                r#"{"reason":"ServiceUnavailable"}"#
            )),
            Outcome::RetryAfter(9)
        ));
        assert!(matches!(
            parse_response(response(403, &[], r#"{"reason":"InvalidProviderToken"}"#)),
            Outcome::Failed(r) if r == "HTTP 403 InvalidProviderToken"
        ));
        assert!(matches!(
            parse_response(response(400, &[], r#"{"reason":"PayloadEmpty"}"#)),
            Outcome::Failed(r) if r == "HTTP 400 PayloadEmpty"
        ));
        assert!(matches!(
            parse_response(response(413, &[], "")),
            Outcome::Failed(r) if r == "HTTP 413"
        ));
    }
}
