//! Small accessors over rsip messages shared by the SIP handlers.

use rsip::Header;
use rsip::headers::UntypedHeader;

/// Every value of the header called `name` (case-insensitive long name; the
/// parser has already expanded compact forms).
pub fn header_values<'a>(
    headers: &'a rsip::Headers,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers.iter().filter_map(move |h| {
        let (n, v) = name_value(h)?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// The first value of a header.
pub fn header_value<'a>(headers: &'a rsip::Headers, name: &'a str) -> Option<&'a str> {
    header_values(headers, name).next()
}

/// Name and value of the headers the SIP core reads.
fn name_value(h: &Header) -> Option<(&str, &str)> {
    Some(match h {
        Header::Authorization(v) => ("Authorization", v.value()),
        Header::ProxyAuthorization(v) => ("Proxy-Authorization", v.value()),
        Header::Contact(v) => ("Contact", v.value()),
        Header::Expires(v) => ("Expires", v.value()),
        Header::From(v) => ("From", v.value()),
        Header::To(v) => ("To", v.value()),
        Header::CallId(v) => ("Call-ID", v.value()),
        Header::CSeq(v) => ("CSeq", v.value()),
        Header::ContentType(v) => ("Content-Type", v.value()),
        Header::UserAgent(v) => ("User-Agent", v.value()),
        Header::Via(v) => ("Via", v.value()),
        Header::Other(n, v) => (n.as_str(), v.as_str()),
        _ => return None,
    })
}

/// The user part of a name-addr or addr-spec header value
/// (`"Alice" <sip:alice@example.com>;tag=1` → `alice`).
pub fn user_of(value: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value),
    };
    let uri = uri.trim();
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let user = match rest.find('@') {
        Some(at) => &rest[..at],
        None if uri.starts_with("tel:") => rest.split(';').next().unwrap_or(rest),
        None => return None,
    };
    let user = user.split(':').next().unwrap_or(user);
    (!user.is_empty()).then(|| percent_decode(user))
}

/// The display name of a name-addr (`"Alice" <sip:...>` → `Alice`).
pub fn display_name_of(value: &str) -> Option<String> {
    let before = &value[..value.find('<')?];
    let name = before.trim().trim_matches('"').trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The `tag` parameter of a From/To value.
pub fn tag_of(value: &str) -> Option<&str> {
    let params = match value.rfind('>') {
        Some(end) => &value[end + 1..],
        None => value,
    };
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            )
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A fresh tag for a To or From header.
pub fn new_tag() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

/// A fresh Call-ID.
pub fn new_call_id(domain: &str) -> String {
    format!("{}@{domain}", hex::encode(rand::random::<[u8; 12]>()))
}

/// Splits a header value holding a comma-separated list (Contact) at the
/// commas that are outside quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut angle, mut escaped, mut start) = (false, false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_display_names_and_tags() {
        assert_eq!(
            user_of("\"Alice\" <sip:alice@example.com>;tag=1").as_deref(),
            Some("alice")
        );
        assert_eq!(
            user_of("sip:48600%31@h;user=phone").as_deref(),
            Some("486001")
        );
        assert_eq!(user_of("<sips:bob:secret@h:5061>").as_deref(), Some("bob"));
        assert_eq!(user_of("<sip:example.com>"), None);
        assert_eq!(user_of("<tel:+48600>").as_deref(), Some("+48600"));
        assert_eq!(
            display_name_of("\"Alice A\" <sip:a@h>").as_deref(),
            Some("Alice A")
        );
        assert_eq!(display_name_of("<sip:a@h>"), None);
        assert_eq!(tag_of("<sip:a@h;x=y>;tag=abc;foo"), Some("abc"));
        assert_eq!(tag_of("<sip:a@h>"), None);
    }

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        let v = r#"<sip:a@h;x=1,2>;expires=5, "B, b" <sip:b@h>;+sip.instance="<urn:uuid:1>""#;
        assert_eq!(split_list(v).len(), 2);
        assert_eq!(split_list("*"), vec!["*"]);
    }
}
