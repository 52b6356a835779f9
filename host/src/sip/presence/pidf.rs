//! PIDF (RFC 3863): reading the basic status and note of a device's
//! published document, and writing the document composed per user.
//!
//! Handsets publish small, flat documents; a full XML parser is not needed
//! to read `<basic>` and `<note>`, but the reader still refuses anything that
//! is not a `<presence>` document so a bad PUBLISH gets a clear 400.

use std::fmt::Write as _;

/// Namespace of the switch's PIDF extension elements (reachability, push,
/// avatar timestamp).
pub const SS_NS: &str = "urn:softswitch:params:xml:ns:presence";

/// What a device said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    pub open: bool,
    pub note: Option<String>,
}

/// Why a published document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidfError {
    #[error("not a PIDF document (no <presence> element)")]
    NotPidf,
    #[error("PIDF document without a <basic> status")]
    NoBasic,
    #[error("PIDF basic status must be open or closed")]
    BadBasic,
    #[error("PIDF document is not UTF-8")]
    NotUtf8,
}

/// A user's state as the watchers see it (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// At least one device published `open`.
    Online,
    /// No device open, but one can be woken by a push notification.
    Push,
    Offline,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Online => "online",
            Reachability::Push => "push",
            Reachability::Offline => "offline",
        }
    }
}

/// The document composed per user from every device's publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPresence {
    pub reachability: Reachability,
    /// Whether the user has a device reachable by push at all.
    pub push_capable: bool,
    /// The newest status note any device published.
    pub note: Option<String>,
    /// Unix seconds of the avatar's last update (clients refresh stale avatars).
    pub avatar_updated_at: Option<i64>,
}

impl UserPresence {
    /// SPEC §8: any device open → open; none open but reachable by push →
    /// push; else closed. Devices are `(open, note, updated_at)`.
    pub fn compose(
        devices: &[(bool, Option<&str>, i64)],
        push_capable: bool,
        avatar_updated_at: Option<i64>,
    ) -> Self {
        let reachability = if devices.iter().any(|d| d.0) {
            Reachability::Online
        } else if push_capable {
            Reachability::Push
        } else {
            Reachability::Offline
        };
        let note = devices
            .iter()
            .filter(|d| d.1.is_some())
            .max_by_key(|d| d.2)
            .and_then(|d| d.1.map(str::to_string));
        UserPresence {
            reachability,
            push_capable,
            note,
            avatar_updated_at,
        }
    }

    /// The PIDF document for `entity` (`sip:login@domain`).
    pub fn to_pidf(&self, entity: &str, tuple_id: &str) -> String {
        let basic = if self.reachability == Reachability::Online {
            "open"
        } else {
            "closed"
        };
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:ss=\"{SS_NS}\" entity=\"{}\">\r\n\
             <tuple id=\"{}\">\r\n<status><basic>{basic}</basic></status>\r\n\
             <ss:reachability>{}</ss:reachability>\r\n<ss:push>{}</ss:push>\r\n",
            escape(entity),
            escape(tuple_id),
            self.reachability.as_str(),
            self.push_capable,
        );
        if let Some(ts) = self.avatar_updated_at {
            let _ = write!(out, "<ss:avatar-updated>{ts}</ss:avatar-updated>\r\n");
        }
        let _ = write!(out, "<contact>{}</contact>\r\n</tuple>\r\n", escape(entity));
        if let Some(note) = &self.note {
            let _ = write!(out, "<note>{}</note>\r\n", escape(note));
        }
        out.push_str("</presence>\r\n");
        out
    }
}

/// Reads the basic status (the first tuple's) and the first note.
pub fn parse_device_status(body: &[u8]) -> Result<DeviceStatus, PidfError> {
    let text = std::str::from_utf8(body).map_err(|_| PidfError::NotUtf8)?;
    if element_text(text, "presence").is_none() {
        return Err(PidfError::NotPidf);
    }
    let basic = element_text(text, "basic").ok_or(PidfError::NoBasic)?;
    let open = match unescape(basic.trim()).as_str() {
        "open" => true,
        "closed" => false,
        _ => return Err(PidfError::BadBasic),
    };
    let note = element_text(text, "note")
        .map(|n| unescape(n.trim()))
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(1024).collect());
    Ok(DeviceStatus { open, note })
}

/// The content of the first element whose local name is `name` (any
/// namespace prefix), or `None`. `<x/>` has empty content.
fn element_text<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut pos = 0;
    while let Some(rel) = text[pos..].find('<') {
        let start = pos + rel;
        let rest = &text[start + 1..];
        let end_of_tag = rest.find('>')?;
        let tag = &rest[..end_of_tag];
        pos = start + 1 + end_of_tag + 1;
        if tag.starts_with(['/', '?', '!']) {
            continue;
        }
        let qname = tag
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        let local = qname.rsplit(':').next().unwrap_or(qname);
        if local != name {
            continue;
        }
        if tag.ends_with('/') {
            return Some("");
        }
        let close = format!("</{qname}>");
        let content_end = text[pos..].find(&close)?;
        return Some(&text[pos..pos + content_end]);
    }
    None
}

/// XML character data and attribute escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARESIP: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:bob@localhost">
  <dm:person id="p1"><rpid:activities/></dm:person>
  <tuple id="t1"><status><basic>open</basic></status></tuple>
  <dm:note>At work &amp; busy</dm:note>
</presence>"#;

    #[test]
    fn reads_basic_and_note_with_prefixes() {
        let s = parse_device_status(BARESIP.as_bytes()).unwrap();
        assert!(s.open);
        assert_eq!(s.note.as_deref(), Some("At work & busy"));
        let closed = parse_device_status(
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple id='a'><status><basic>closed</basic></status></tuple></presence>",
        )
        .unwrap();
        assert_eq!(
            closed,
            DeviceStatus {
                open: false,
                note: None
            }
        );
    }

    #[test]
    fn refuses_what_is_not_pidf() {
        assert_eq!(parse_device_status(b"hello"), Err(PidfError::NotPidf));
        assert_eq!(
            parse_device_status(b"<presence></presence>"),
            Err(PidfError::NoBasic)
        );
        assert_eq!(
            parse_device_status(b"<presence><basic>maybe</basic></presence>"),
            Err(PidfError::BadBasic)
        );
        assert_eq!(parse_device_status(&[0xff, 0xfe]), Err(PidfError::NotUtf8));
        // Unterminated and odd markup must not panic.
        for junk in [
            "<",
            "<presence",
            "<presence><basic>",
            "<<<>>>",
            "<presence/><basic/>",
        ] {
            let _ = parse_device_status(junk.as_bytes());
        }
    }

    #[test]
    fn composition_follows_spec_8() {
        let open = UserPresence::compose(&[(false, None, 1), (true, Some("hi"), 2)], true, Some(7));
        assert_eq!(open.reachability, Reachability::Online);
        assert_eq!(open.note.as_deref(), Some("hi"));
        let push = UserPresence::compose(&[(false, Some("old"), 1)], true, None);
        assert_eq!(push.reachability, Reachability::Push);
        let off = UserPresence::compose(&[], false, None);
        assert_eq!(off.reachability, Reachability::Offline);
        let newest =
            UserPresence::compose(&[(false, Some("a"), 5), (false, Some("b"), 9)], false, None);
        assert_eq!(newest.note.as_deref(), Some("b"));
    }

    #[test]
    fn composed_document_reads_back() {
        let p = UserPresence {
            reachability: Reachability::Push,
            push_capable: true,
            note: Some("<on the road>".into()),
            avatar_updated_at: Some(1_700_000_000),
        };
        let doc = p.to_pidf("sip:bob@localhost", "bob");
        assert!(doc.contains("<basic>closed</basic>"));
        assert!(doc.contains("<ss:reachability>push</ss:reachability>"));
        assert!(doc.contains("<ss:avatar-updated>1700000000</ss:avatar-updated>"));
        let back = parse_device_status(doc.as_bytes()).unwrap();
        assert_eq!(back.note.as_deref(), Some("<on the road>"));
        assert!(!back.open);
    }
}
