//! `{{crate}}`: a push provider guest for softswitch (world
//! `softswitch:push-provider/provider@0.1.0`, in `wit/`).
//!
//! A push guest only translates: the switch asks it for the HTTP request(s)
//! that wake one device for one notification (incoming call, missed call,
//! text, voicemail ...), performs them itself (only to the hosts the operator
//! allowed), and hands each answer back. The outbox, retries and every
//! signing key stay in the switch; a guest that needs a signed token asks the
//! `credentials` import for one by the key's name (this one does not).
//!
//! This one POSTs every notification as JSON to one webhook (an operator's
//! own push gateway):
//!
//! ```text
//! POST <url>
//! Authorization: <authorization>          (when configured)
//! Content-Type: application/json
//!
//! {"kind": "incoming-call", "login": "alice", "token": "<device token>",
//!  "app": "...", "sandbox": false, "voip": true, "from": "bob", "title": "Bob",
//!  "excerpt": "", "badge": 2, "ts": 1700000000, "id": "...", "call_id": "..."}
//! ```
//!
//! Answers: 2xx is delivered, 404 and 410 mean the token is no longer valid
//! (the switch deletes it), 429 and 5xx are retried after `Retry-After` (else
//! 10 s), anything else fails.
//!
//! Configuration values (`config = { ... }` of `[push.providers.<name>]`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `url` | (required) | the webhook |
//! | `authorization` | (none) | value of an `Authorization` header |
#![allow(
    clippy::too_many_arguments,
    reason = "in the code wit-bindgen generates"
)]

wit_bindgen::generate!({ world: "provider", path: "wit" });

// `Notification`, `Device`, `HttpRequest`, `HttpResponse`, `Outcome` and
// `Error` are in scope through the world's `use`.
use softswitch::push_provider::types::{Header, NotificationKind};

/// The configuration values as the switch passes them.
pub type Config = Vec<(String, String)>;

/// Seconds before a retry when the service gives no `Retry-After`.
const DEFAULT_RETRY_SECS: u32 = 10;

/// A configuration value; an empty one counts as absent.
fn value<'a>(config: &'a Config, key: &str) -> Option<&'a str> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

/// The kind as the WIT spells it.
pub fn kind_name(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::IncomingCall => "incoming-call",
        NotificationKind::MissedCall => "missed-call",
        NotificationKind::Text => "text",
        NotificationKind::Picture => "picture",
        NotificationKind::Video => "video",
        NotificationKind::Audio => "audio",
        NotificationKind::File => "file",
        NotificationKind::Voicemail => "voicemail",
    }
}

/// The name an alert should show: the user's own address-book name for the
/// other party, else their display name, else their login.
fn title(n: &Notification) -> &str {
    [
        n.from_book_name.as_deref(),
        Some(n.from_display_name.as_str()),
    ]
    .into_iter()
    .flatten()
    .find(|s| !s.is_empty())
    .unwrap_or(&n.from_login)
}

/// The request that delivers `n` to `device`.
pub fn format(
    n: &Notification,
    device: &Device,
    config: &Config,
) -> Result<Vec<HttpRequest>, Error> {
    let url = value(config, "url").ok_or_else(|| Error::Config("url".into()))?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::Config("url".into()));
    }
    let body = serde_json::json!({
        "kind": kind_name(n.kind),
        "login": device.login,
        "token": device.token,
        "app": device.app,
        "sandbox": device.sandbox,
        "voip": device.voip,
        "from": n.from_login,
        "title": title(n),
        "excerpt": n.excerpt,
        "badge": n.badge,
        "ts": n.timestamp,
        "id": n.id,
        "call_id": n.call_id,
    });
    let mut headers = vec![header("Content-Type", "application/json")];
    if let Some(auth) = value(config, "authorization") {
        headers.push(header("Authorization", auth));
    }
    Ok(vec![HttpRequest {
        method: "POST".into(),
        url: url.to_string(),
        headers,
        body: body.to_string().into_bytes(),
    }])
}

/// What the webhook's answer means.
pub fn parse_response(response: &HttpResponse) -> Outcome {
    let text = String::from_utf8_lossy(&response.body).trim().to_string();
    match response.status {
        200..=299 => Outcome::Delivered(None),
        404 | 410 => Outcome::TokenInvalid(format!("HTTP {} {text}", response.status)),
        429 | 500..=599 => Outcome::RetryAfter(
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
                .and_then(|h| h.value.trim().parse().ok())
                .unwrap_or(DEFAULT_RETRY_SECS),
        ),
        status => Outcome::Failed(format!("HTTP {status} {text}")),
    }
}

struct Webhook;

impl Guest for Webhook {
    fn format(
        notification: Notification,
        device: Device,
        config: Config,
    ) -> Result<Vec<HttpRequest>, Error> {
        format(&notification, &device, &config)
    }

    fn parse_response(response: HttpResponse, _config: Config) -> Outcome {
        parse_response(&response)
    }
}

export!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(kind: NotificationKind) -> Notification {
        Notification {
            kind,
            from_login: "bob".into(),
            from_display_name: "Bob B.".into(),
            from_book_name: Some("Bobby".into()),
            timestamp: 1_700_000_000,
            call_id: Some("c-1@switch".into()),
            excerpt: String::new(),
            badge: 2,
            id: "n-7".into(),
        }
    }

    fn device() -> Device {
        Device {
            token: "tok-abc".into(),
            app: "net.example.app".into(),
            sandbox: false,
            voip: true,
            login: "alice".into(),
        }
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn response(status: u16, retry_after: Option<&str>) -> HttpResponse {
        HttpResponse {
            status,
            headers: retry_after
                .map(|v| header("Retry-After", v))
                .into_iter()
                .collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn one_json_post_to_the_webhook() {
        let cfg = config(&[
            ("url", "https://push.example/hook"),
            ("authorization", "Bearer s3"),
        ]);
        let requests = format(
            &notification(NotificationKind::IncomingCall),
            &device(),
            &cfg,
        )
        .unwrap();
        assert_eq!(requests.len(), 1);
        let req = &requests[0];
        assert_eq!(
            (req.method.as_str(), req.url.as_str()),
            ("POST", "https://push.example/hook")
        );
        assert!(
            req.headers
                .iter()
                .any(|h| h.name == "Authorization" && h.value == "Bearer s3")
        );
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["kind"], "incoming-call");
        assert_eq!(body["login"], "alice");
        assert_eq!(body["token"], "tok-abc");
        assert_eq!(body["title"], "Bobby");
        assert_eq!(body["call_id"], "c-1@switch");
        assert_eq!(body["badge"], 2);
    }

    #[test]
    fn the_title_falls_back_to_display_name_then_login() {
        let mut n = notification(NotificationKind::Text);
        n.from_book_name = None;
        assert_eq!(title(&n), "Bob B.");
        n.from_display_name.clear();
        assert_eq!(title(&n), "bob");
    }

    #[test]
    fn a_missing_or_odd_url_is_a_config_error() {
        for cfg in [config(&[]), config(&[("url", "ftp://x")])] {
            match format(&notification(NotificationKind::Text), &device(), &cfg) {
                Err(Error::Config(key)) => assert_eq!(key, "url"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn answers() {
        assert!(matches!(
            parse_response(&response(202, None)),
            Outcome::Delivered(None)
        ));
        assert!(matches!(
            parse_response(&response(410, None)),
            Outcome::TokenInvalid(_)
        ));
        assert!(matches!(
            parse_response(&response(429, Some("3"))),
            Outcome::RetryAfter(3)
        ));
        assert!(matches!(
            parse_response(&response(503, None)),
            Outcome::RetryAfter(DEFAULT_RETRY_SECS)
        ));
        assert!(matches!(
            parse_response(&response(400, None)),
            Outcome::Failed(_)
        ));
    }
}
