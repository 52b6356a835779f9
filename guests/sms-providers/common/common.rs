//! Helpers shared by the SMS provider guests: configuration look-up, URL and
//! form encoding, header and JSON access.
//!
//! Included into each guest with `#[path = "../../common/common.rs"] mod common;`
//! (like the routing glue): the WIT bindings must expand in the component crate,
//! and these helpers take plain Rust types so they stay independent of them.

#![allow(dead_code, reason = "each guest uses part of the helpers")]

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// The value of `key` in the guest's configuration.
pub fn config<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `application/x-www-form-urlencoded` encoding of one component.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A form body from pairs, in the given order.
pub fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form/query component (`+` is a space, `%XX` a byte).
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Pairs of a form body or query string.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(kv), String::new()),
        })
        .collect()
}

/// The first value of `key` in form pairs.
pub fn form_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The query string of a URL or path (after `?`), if any.
pub fn query_of(url: &str) -> &str {
    url.split_once('?').map_or("", |(_, q)| q)
}

/// A header's value, by case-insensitive name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether a content type is JSON.
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| c.to_ascii_lowercase().contains("json"))
}

/// A JSON value as a string: strings as they are, numbers in decimal.
pub fn json_str(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The value at a dotted path (`data.id`, `messages.0.id`) in a JSON document.
pub fn json_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = match cur {
            serde_json::Value::Object(m) => m.get(part)?,
            serde_json::Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Seconds from a `Retry-After` header (delta-seconds form only), else `default`.
pub fn retry_after(headers: &[(String, String)], default: u32) -> u32 {
    header(headers, "retry-after")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(default)
}

/// Standard base64 (for HTTP Basic authentication).
pub fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(TABLE[(n >> 18) as usize & 63] as char);
        out.push(TABLE[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            TABLE[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            TABLE[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_round_trip() {
        let body = form(&[("To", "+48 600"), ("Body", "Code: 1234 & more")]);
        let text = String::from_utf8(body).unwrap();
        assert_eq!(text, "To=%2B48+600&Body=Code%3A+1234+%26+more");
        let pairs = parse_form(&text);
        assert_eq!(form_get(&pairs, "To"), Some("+48 600"));
        assert_eq!(form_get(&pairs, "Body"), Some("Code: 1234 & more"));
        assert_eq!(url_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn base64_of_basic_credentials() {
        assert_eq!(base64(b"AC123:tok"), "QUMxMjM6dG9r");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn json_paths() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"messages":[{"message-id":"X1","status":"0"}]}"#).unwrap();
        assert_eq!(
            json_path(&v, "messages.0.message-id").and_then(json_str),
            Some("X1".into())
        );
        assert!(json_path(&v, "messages.1").is_none());
    }
}
