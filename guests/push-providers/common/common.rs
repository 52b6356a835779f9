//! Helpers shared by the push provider guests: configuration look-up, headers,
//! `Retry-After`, the notification's wording, and the `credentials` imports
//! behind a trait so the formatting logic can be tested natively.
//!
//! Included into each guest with `#[path = "../../common/common.rs"] mod common;`
//! (like the routing glue and the SMS helpers): the WIT bindings must expand in
//! the component crate. Unlike the SMS helpers these use the bindings' types
//! (`Notification`, `Header`, ...), so the including crate must generate the
//! `softswitch:push-provider` world at its root, which every push guest does.

#![allow(dead_code, reason = "each guest uses part of the helpers")]

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::softswitch::push_provider::types::{Header, NotificationKind};
use crate::{Error, Notification};

/// The operator's configuration values for a guest.
pub type Config = Vec<(String, String)>;

/// The value of `key` in the guest's configuration (an empty value counts as
/// absent).
pub fn config<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A request or response header.
pub fn header(name: &str, value: impl Into<String>) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

/// A header's value, by case-insensitive name.
pub fn header_value<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Seconds from a `Retry-After` header (delta-seconds form only, RFC 9110
/// §10.2.3), else `default`.
pub fn retry_after(headers: &[Header], default: u32) -> u32 {
    header_value(headers, "retry-after")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(default)
}

/// A JSON request body.
pub fn json_body(value: &serde_json::Value) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Other(e.to_string()))
}

/// The kind as spelled in the WIT (`incoming-call`, `missed-call`, `text`, ...),
/// which is also how the payloads name it.
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

/// The name an alert shows for the other party: the receiving user's own
/// address-book name, else the display name, else the login.
pub fn shown_name(n: &Notification) -> &str {
    [
        n.from_book_name.as_deref().unwrap_or(""),
        n.from_display_name.as_str(),
        n.from_login.as_str(),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or("")
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
pub fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A response body as text for an error message: trimmed, at most 200 bytes.
pub fn body_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    truncate_bytes(text.trim(), 200).to_string()
}

/// Percent-encoding of one URL path segment (RFC 3986 unreserved characters
/// pass through).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Whether `url` is an absolute `http://` or `https://` URL with a host.
pub fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && !r
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    })
}

/// The signed tokens a guest may ask the host for: the `credentials` imports,
/// or a fake in unit tests (the imports cannot be called natively).
pub trait Credentials {
    /// `credentials.sign-jwt`: a compact JWS over `claims` signed with `key`.
    fn sign_jwt(&self, key: &str, claims: &str, max_age_secs: u32) -> Result<String, String>;
    /// `credentials.oauth2-token`: an OAuth 2.0 access token for `scope`.
    fn oauth2_token(&self, key: &str, scope: &str) -> Result<String, String>;
}

/// The host's `credentials` imports.
pub struct Host;

impl Credentials for Host {
    fn sign_jwt(&self, key: &str, claims: &str, max_age_secs: u32) -> Result<String, String> {
        crate::softswitch::push_provider::credentials::sign_jwt(key, claims, max_age_secs)
    }

    fn oauth2_token(&self, key: &str, scope: &str) -> Result<String, String> {
        crate::softswitch::push_provider::credentials::oauth2_token(key, scope)
    }
}

/// A stand-in for the host in unit tests: records what it was asked for and
/// answers with fixed tokens (or refuses, when `refuse` is set).
#[cfg(test)]
#[derive(Default)]
pub struct FakeCredentials {
    /// `sign-jwt <key> <claims> <max-age>` or `oauth2-token <key> <scope>`.
    pub asked: core::cell::RefCell<Vec<String>>,
    pub refuse: bool,
}

#[cfg(test)]
impl Credentials for FakeCredentials {
    fn sign_jwt(&self, key: &str, claims: &str, max_age_secs: u32) -> Result<String, String> {
        self.asked
            .borrow_mut()
            .push(format!("sign-jwt {key} {claims} {max_age_secs}"));
        if self.refuse {
            return Err(format!("no key {key:?}"));
        }
        Ok("h.c.s".into())
    }

    fn oauth2_token(&self, key: &str, scope: &str) -> Result<String, String> {
        self.asked
            .borrow_mut()
            .push(format!("oauth2-token {key} {scope}"));
        if self.refuse {
            return Err(format!("no key {key:?}"));
        }
        Ok("ya29.token".into())
    }
}

#[cfg(test)]
pub mod test_util {
    use super::*;

    /// Configuration pairs from string slices.
    pub fn cfg(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A notification from `alice` (display name `Alice A.`) at 1700000000.
    pub fn notification(kind: NotificationKind) -> Notification {
        Notification {
            kind,
            from_login: "alice".into(),
            from_display_name: "Alice A.".into(),
            from_book_name: None,
            timestamp: 1_700_000_000,
            call_id: None,
            excerpt: String::new(),
            badge: 3,
            id: "n-42".into(),
        }
    }

    /// A response with the given status, headers and body.
    pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> crate::HttpResponse {
        crate::HttpResponse {
            status,
            headers: headers.iter().map(|(k, v)| header(k, *v)).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// The value of request header `name`, which must appear exactly once.
    pub fn only_header<'a>(req: &'a crate::HttpRequest, name: &str) -> Option<&'a str> {
        let found: Vec<&Header> = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .collect();
        assert!(
            found.len() <= 1,
            "header {name} appears {} times",
            found.len()
        );
        found.first().map(|h| h.value.as_str())
    }

    /// The request body as JSON.
    pub fn body_json(req: &crate::HttpRequest) -> serde_json::Value {
        serde_json::from_slice(&req.body).expect("JSON body")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_name_prefers_the_address_book() {
        let mut n = test_util::notification(NotificationKind::Text);
        assert_eq!(shown_name(&n), "Alice A.");
        n.from_book_name = Some("Mum".into());
        assert_eq!(shown_name(&n), "Mum");
        n.from_book_name = Some(String::new());
        n.from_display_name.clear();
        assert_eq!(shown_name(&n), "alice");
    }

    #[test]
    fn helpers() {
        assert_eq!(truncate_bytes("żółw", 3), "ż");
        assert_eq!(truncate_bytes("abc", 64), "abc");
        assert_eq!(path_segment("my-app.1"), "my-app.1");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert!(is_http_url("https://up.example/UP?x=1"));
        assert!(is_http_url("http://10.0.0.1:8080/p"));
        assert!(!is_http_url("https://"));
        assert!(!is_http_url("ftp://x"));
        assert!(!is_http_url("abc123"));
        let h = [header("Retry-After", " 12 ")];
        assert_eq!(retry_after(&h, 5), 12);
        let h = [header("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")];
        assert_eq!(retry_after(&h, 5), 5);
        assert_eq!(kind_name(NotificationKind::MissedCall), "missed-call");
    }
}
