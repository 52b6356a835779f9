//! Push provider guest for Firebase Cloud Messaging, HTTP v1 API.
//!
//! Request (Firebase, REST reference `projects.messages.send`):
//! `POST https://fcm.googleapis.com/v1/projects/{project_id}/messages:send`
//! with `Authorization: Bearer <OAuth 2.0 access token>` for the scope
//! `https://www.googleapis.com/auth/firebase.messaging`, and a JSON body
//! `{"message": Message}`. The guest asks the host for the token with
//! `credentials.oauth2-token(key, scope)`: the host holds the service-account
//! key and caches the token.
//!
//! The message is a data message (the app builds the notification it shows,
//! so an incoming call can ring): `token` is the device's registration token,
//! `data` a map of strings (keys must not be FCM's reserved `from`,
//! `message_type` or start with `google`/`gcm`, hence `from_login`), and
//! `android` an `AndroidConfig` with `priority` `HIGH` for incoming calls
//! (delivered at once, waking the device) and `NORMAL` otherwise, `ttl`
//! `"30s"` for incoming calls (a call nobody can pick up any more is not
//! worth delivering), and `collapse_key` (the notification id, so a retried
//! push replaces the first) for everything but calls.
//!
//! Data sent: `type` (the WIT kind: `incoming-call`, `missed-call`, `text`,
//! `picture`, `video`, `audio`, `file`, `voicemail`), `from_login`, `name`
//! (display name), `book_name` (when the user has one for the caller), `ts`
//! (UNIX seconds), `id`, `badge`, `call_id` (when there is one), `excerpt`.
//!
//! Answers: 200 with the sent `Message`, whose `name` is
//! `projects/{project_id}/messages/{message_id}`. Errors are
//! `{"error": {"code", "message", "status", "details": [{"@type":
//! "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode"}]}}`
//! (Firebase, "FCM error codes"): 404 / `UNREGISTERED`, and 400
//! `INVALID_ARGUMENT` about the registration token, mean the token is no
//! longer valid; 429 (`QUOTA_EXCEEDED`), 500 (`INTERNAL`) and 503
//! (`UNAVAILABLE`) are retried after `Retry-After`, else 10 s; 401 is
//! retried after 1 s (the access token was refused: the host fetches a new
//! one), except `THIRD_PARTY_AUTH_ERROR` (the project's APNs or web push
//! credentials are wrong), which fails like every other answer.
//!
//! Configuration:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `project_id` | the device's `app` | the Firebase project id |
//! | `key` | `fcm` | name of the host key (`[push.keys.NAME]`, the service account) |
//! | `base_url` | `https://fcm.googleapis.com` | endpoint (tests point it at a stand-in) |
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

const BASE_URL: &str = "https://fcm.googleapis.com";
/// The OAuth 2.0 scope of the HTTP v1 API.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Seconds to wait when a throttled or failing FCM gives no `Retry-After`.
const DEFAULT_RETRY_SECS: u32 = 10;

/// The `data` map: every value a string, as FCM requires.
fn data(n: &Notification) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    let mut put = |k: &str, v: String| {
        data.insert(k.into(), serde_json::Value::String(v));
    };
    put("type", common::kind_name(n.kind).into());
    put("from_login", n.from_login.clone());
    put("name", n.from_display_name.clone());
    if let Some(book) = n.from_book_name.as_ref().filter(|b| !b.is_empty()) {
        put("book_name", book.clone());
    }
    put("ts", n.timestamp.to_string());
    put("id", n.id.clone());
    put("badge", n.badge.to_string());
    if let Some(call_id) = &n.call_id {
        put("call_id", call_id.clone());
    }
    put("excerpt", n.excerpt.clone());
    data
}

fn format_requests(
    n: Notification,
    device: Device,
    config: &Config,
    credentials: &impl Credentials,
) -> Result<Vec<HttpRequest>, Error> {
    let project = common::config(config, "project_id")
        .or(Some(device.app.as_str()).filter(|a| !a.is_empty()))
        .ok_or_else(|| Error::Config("project_id".into()))?;
    let key = common::config(config, "key").unwrap_or("fcm");
    let base = common::config(config, "base_url").unwrap_or(BASE_URL);
    if device.token.is_empty() {
        return Err(Error::Invalid("empty FCM registration token".into()));
    }

    let access_token = credentials
        .oauth2_token(key, SCOPE)
        .map_err(Error::Credentials)?;

    let incoming = n.kind == NotificationKind::IncomingCall;
    let call = matches!(
        n.kind,
        NotificationKind::IncomingCall | NotificationKind::MissedCall
    );
    let mut android = serde_json::Map::new();
    android.insert(
        "priority".into(),
        if incoming { "HIGH" } else { "NORMAL" }.into(),
    );
    if incoming {
        android.insert("ttl".into(), "30s".into());
    }
    if !call && !n.id.is_empty() {
        android.insert("collapse_key".into(), n.id.as_str().into());
    }
    let body = json!({
        "message": {
            "token": device.token,
            "data": data(&n),
            "android": android,
        }
    });
    Ok(alloc::vec![HttpRequest {
        method: "POST".into(),
        url: format!(
            "{}/v1/projects/{}/messages:send",
            base.trim_end_matches('/'),
            common::path_segment(project)
        ),
        headers: alloc::vec![
            header("authorization", format!("Bearer {access_token}")),
            header("content-type", "application/json; charset=UTF-8"),
        ],
        body: common::json_body(&body)?,
    }])
}

fn parse_response(response: HttpResponse) -> Outcome {
    let v = serde_json::from_slice::<serde_json::Value>(&response.body).ok();
    if response.status == 200 {
        return Outcome::Delivered(
            v.as_ref()
                .and_then(|v| v.get("name")?.as_str())
                .map(String::from),
        );
    }
    let error = v.as_ref().and_then(|v| v.get("error"));
    let field = |k: &str| error.and_then(|e| e.get(k)?.as_str()).unwrap_or("");
    let (status, message) = (field("status"), field("message"));
    // The FcmError detail's `errorCode` (google.firebase.fcm.v1.FcmError).
    let code = error
        .and_then(|e| e.get("details")?.as_array())
        .into_iter()
        .flatten()
        .find_map(|d| d.get("errorCode")?.as_str())
        .unwrap_or("");
    let about_token = message.to_ascii_lowercase().contains("registration token");
    match response.status {
        404 => Outcome::TokenInvalid(if code.is_empty() { "NOT_FOUND" } else { code }.into()),
        _ if code == "UNREGISTERED" || status == "UNREGISTERED" => {
            Outcome::TokenInvalid("UNREGISTERED".into())
        }
        400 if (status == "INVALID_ARGUMENT" || code == "INVALID_ARGUMENT") && about_token => {
            Outcome::TokenInvalid(message.into())
        }
        401 if code != "THIRD_PARTY_AUTH_ERROR" => Outcome::RetryAfter(1),
        429 | 500 | 503 => {
            Outcome::RetryAfter(common::retry_after(&response.headers, DEFAULT_RETRY_SECS))
        }
        s => {
            let what = if !code.is_empty() { code } else { status };
            let text = match (what.is_empty(), message.is_empty()) {
                (true, true) => common::body_text(&response.body),
                (true, false) => message.to_string(),
                (false, true) => what.to_string(),
                (false, false) => format!("{what}: {message}"),
            };
            Outcome::Failed(format!("HTTP {s} {text}").trim_end().to_string())
        }
    }
}

struct Fcm;

impl Guest for Fcm {
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

export!(Fcm);

#[cfg(test)]
mod tests {
    use super::*;
    use common::FakeCredentials;
    use common::test_util::{body_json, cfg, notification, only_header, response};

    const TOKEN: &str = "bk3RNwTe3H0:CI2k_HHwgIpoDKCIZvvDMExUdFQ3P1";

    fn device() -> Device {
        Device {
            token: TOKEN.into(),
            app: "my-project".into(),
            sandbox: false,
            voip: false,
            login: "bob".into(),
        }
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

    #[test]
    fn incoming_call_is_a_high_priority_data_message() {
        let fake = FakeCredentials::default();
        let n = Notification {
            call_id: Some("c1@sw".into()),
            from_book_name: Some("Mum".into()),
            ..notification(NotificationKind::IncomingCall)
        };
        let req = one(n, device(), &cfg(&[]), &fake);
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.url,
            "https://fcm.googleapis.com/v1/projects/my-project/messages:send"
        );
        assert_eq!(
            only_header(&req, "authorization"),
            Some("Bearer ya29.token")
        );
        assert_eq!(
            only_header(&req, "content-type"),
            Some("application/json; charset=UTF-8")
        );
        assert_eq!(
            body_json(&req),
            json!({
                "message": {
                    "token": TOKEN,
                    "data": {
                        "type": "incoming-call",
                        "from_login": "alice",
                        "name": "Alice A.",
                        "book_name": "Mum",
                        "ts": "1700000000",
                        "id": "n-42",
                        "badge": "3",
                        "call_id": "c1@sw",
                        "excerpt": "",
                    },
                    "android": { "priority": "HIGH", "ttl": "30s" },
                }
            })
        );
        assert_eq!(
            *fake.asked.borrow(),
            ["oauth2-token fcm https://www.googleapis.com/auth/firebase.messaging"]
        );
    }

    #[test]
    fn text_message() {
        let fake = FakeCredentials::default();
        let n = Notification {
            excerpt: "Hi \"Bob\" \u{1F600}".into(),
            ..notification(NotificationKind::Text)
        };
        let req = one(n, device(), &cfg(&[]), &fake);
        assert_eq!(
            body_json(&req),
            json!({
                "message": {
                    "token": TOKEN,
                    "data": {
                        "type": "text",
                        "from_login": "alice",
                        "name": "Alice A.",
                        "ts": "1700000000",
                        "id": "n-42",
                        "badge": "3",
                        "excerpt": "Hi \"Bob\" \u{1F600}",
                    },
                    "android": { "priority": "NORMAL", "collapse_key": "n-42" },
                }
            })
        );
        // No reserved data keys.
        let body = body_json(&req);
        let data = body["message"]["data"].as_object().unwrap();
        assert!(data.keys().all(|k| k != "from"
            && k != "message_type"
            && !k.starts_with("google")
            && !k.starts_with("gcm")));
    }

    #[test]
    fn missed_call_and_other_kinds() {
        let fake = FakeCredentials::default();
        let n = Notification {
            call_id: Some("c2@sw".into()),
            ..notification(NotificationKind::MissedCall)
        };
        let body = body_json(&one(n, device(), &cfg(&[]), &fake));
        assert_eq!(body["message"]["android"], json!({ "priority": "NORMAL" }));
        assert_eq!(body["message"]["data"]["type"], "missed-call");
        assert_eq!(body["message"]["data"]["call_id"], "c2@sw");
        for (kind, name) in [
            (NotificationKind::Picture, "picture"),
            (NotificationKind::Video, "video"),
            (NotificationKind::Audio, "audio"),
            (NotificationKind::File, "file"),
            (NotificationKind::Voicemail, "voicemail"),
        ] {
            let body = body_json(&one(notification(kind), device(), &cfg(&[]), &fake));
            assert_eq!(body["message"]["data"]["type"], name);
            assert_eq!(body["message"]["android"]["collapse_key"], "n-42");
        }
    }

    #[test]
    fn configured_project_key_and_endpoint() {
        let fake = FakeCredentials::default();
        let c = cfg(&[
            ("project_id", "other-project"),
            ("key", "fcm-prod"),
            ("base_url", "http://127.0.0.1:9002/"),
        ]);
        // The sandbox flag is APNs'; FCM has one endpoint.
        let mut d = device();
        d.sandbox = true;
        let req = one(notification(NotificationKind::Text), d, &c, &fake);
        assert_eq!(
            req.url,
            "http://127.0.0.1:9002/v1/projects/other-project/messages:send"
        );
        assert_eq!(
            *fake.asked.borrow(),
            ["oauth2-token fcm-prod https://www.googleapis.com/auth/firebase.messaging"]
        );
    }

    #[test]
    fn configuration_and_input_errors() {
        let fake = FakeCredentials::default();
        let n = || notification(NotificationKind::Text);
        let mut no_app = device();
        no_app.app.clear();
        assert!(matches!(
            format_requests(n(), no_app, &cfg(&[]), &fake),
            Err(Error::Config(k)) if k == "project_id"
        ));
        let mut no_token = device();
        no_token.token.clear();
        assert!(matches!(
            format_requests(n(), no_token, &cfg(&[]), &fake),
            Err(Error::Invalid(_))
        ));
        assert!(fake.asked.borrow().is_empty());
        let refusing = FakeCredentials {
            refuse: true,
            ..Default::default()
        };
        assert!(matches!(
            format_requests(n(), device(), &cfg(&[]), &refusing),
            Err(Error::Credentials(e)) if e.contains("fcm")
        ));
    }

    fn fcm_error(code: u16, status: &str, message: &str, error_code: Option<&str>) -> String {
        let mut e = json!({ "error": { "code": code, "message": message, "status": status } });
        if let Some(c) = error_code {
            e["error"]["details"] = json!([{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": c,
            }]);
        }
        e.to_string()
    }

    #[test]
    fn documented_answers() {
        assert!(matches!(
            parse_response(response(200, &[], r#"{"name":"projects/my-project/messages/0:1500415314455276%31bd1c9631bd1c96"}"#)),
            Outcome::Delivered(Some(n)) if n == "projects/my-project/messages/0:1500415314455276%31bd1c9631bd1c96"
        ));
        let unregistered = fcm_error(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            Some("UNREGISTERED"),
        );
        assert!(matches!(
            parse_response(response(404, &[], &unregistered)),
            Outcome::TokenInvalid(r) if r == "UNREGISTERED"
        ));
        assert!(matches!(
            parse_response(response(404, &[], "")),
            Outcome::TokenInvalid(r) if r == "NOT_FOUND"
        ));
        let bad_token = fcm_error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            Some("INVALID_ARGUMENT"),
        );
        assert!(matches!(
            parse_response(response(400, &[], &bad_token)),
            Outcome::TokenInvalid(r) if r.contains("registration token")
        ));
        let bad_payload = fcm_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.data[0].value' (TYPE_STRING), 1",
            Some("INVALID_ARGUMENT"),
        );
        assert!(matches!(
            parse_response(response(400, &[], &bad_payload)),
            Outcome::Failed(r) if r.starts_with("HTTP 400 INVALID_ARGUMENT: Invalid value")
        ));
        let quota = fcm_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded",
            Some("QUOTA_EXCEEDED"),
        );
        assert!(matches!(
            parse_response(response(429, &[], &quota)),
            Outcome::RetryAfter(10)
        ));
        assert!(matches!(
            parse_response(response(429, &[("Retry-After", "60")], &quota)),
            Outcome::RetryAfter(60)
        ));
        let internal = fcm_error(500, "INTERNAL", "Internal error", Some("INTERNAL"));
        assert!(matches!(
            parse_response(response(500, &[], &internal)),
            Outcome::RetryAfter(10)
        ));
        let unavailable = fcm_error(
            503,
            "UNAVAILABLE",
            "The service is unavailable",
            Some("UNAVAILABLE"),
        );
        assert!(matches!(
            parse_response(response(503, &[("retry-after", "3")], &unavailable)),
            Outcome::RetryAfter(3)
        ));
        let unauthenticated = fcm_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            None,
        );
        assert!(matches!(
            parse_response(response(401, &[], &unauthenticated)),
            Outcome::RetryAfter(1)
        ));
        let apns_auth = fcm_error(
            401,
            "UNAUTHENTICATED",
            "Auth error from APNS or Web Push Service",
            Some("THIRD_PARTY_AUTH_ERROR"),
        );
        assert!(matches!(
            parse_response(response(401, &[], &apns_auth)),
            Outcome::Failed(r) if r == "HTTP 401 THIRD_PARTY_AUTH_ERROR: Auth error from APNS or Web Push Service"
        ));
        let mismatch = fcm_error(
            403,
            "PERMISSION_DENIED",
            "SenderId mismatch",
            Some("SENDER_ID_MISMATCH"),
        );
        assert!(matches!(
            parse_response(response(403, &[], &mismatch)),
            Outcome::Failed(r) if r == "HTTP 403 SENDER_ID_MISMATCH: SenderId mismatch"
        ));
        assert!(matches!(
            parse_response(response(502, &[], "<html>Bad gateway</html>")),
            Outcome::Failed(r) if r == "HTTP 502 <html>Bad gateway</html>"
        ));
    }
}
