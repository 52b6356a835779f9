//! Salvaging enough of a broken request to answer it.
//!
//! RFC 3261 §8.2 wants a UAS to answer a malformed request with 400 when it
//! can; the response needs the request's Via (to route it back), From, To,
//! Call-ID and CSeq (so the client can match it). This scan reads those as
//! raw strings with none of the strictness of the real parser.

use std::fmt::Write as _;

use super::head::{self, Field, Mode};
use super::message::cseq_parts;
use super::syntax::split_top_level;

/// The headers of a broken request that a reply must echo, as raw strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyContext {
    /// Every Via header value, top first, each as written (a value may hold
    /// several comma-separated via-parms).
    pub vias: Vec<String>,
    /// The From value, when present.
    pub from: Option<String>,
    /// The To value, when present.
    pub to: Option<String>,
    /// The Call-ID value.
    pub call_id: String,
    /// The CSeq value.
    pub cseq: String,
}

/// Recovers Via, From, To, Call-ID and CSeq from a request too broken to
/// parse, reading folded lines, compact names and bare-LF line ends.
///
/// `None` means no reply is possible and the message is dropped: the start
/// line is a status line (responses are never answered) or not a request
/// line at all, the request is an ACK (which is never answered), or Via,
/// Call-ID or CSeq cannot be found.
pub fn lenient_headers(bytes: &[u8]) -> Option<ReplyContext> {
    let start = bytes.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let bytes = bytes.get(start..)?;
    let line_end = bytes
        .iter()
        .position(|&c| c == b'\n')
        .unwrap_or(bytes.len());
    let line = bytes.get(..line_end)?;
    // A request line starts with a method token and a space; a status line
    // starts with "SIP/" (which is a token too, so it is checked first).
    if line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return None;
    }
    let method_end = line.iter().position(|&c| c == b' ')?;
    let method = line.get(..method_end)?;
    if !head::is_token(method) || method == b"ACK" {
        return None;
    }

    let mut vias = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    let fields = bytes.get(line_end + 1..).unwrap_or_default();
    // Lenient mode never fails; the closure never does either.
    let _ = head::for_each_field(fields, Mode::Lenient, |Field { name, value }| {
        let value = sanitize(&value);
        if value.is_empty() {
            return Ok(());
        }
        if head::name_is(name, "Via") {
            vias.push(value);
        } else if head::name_is(name, "From") {
            from.get_or_insert(value);
        } else if head::name_is(name, "To") {
            to.get_or_insert(value);
        } else if head::name_is(name, "Call-ID") {
            call_id.get_or_insert(value);
        } else if head::name_is(name, "CSeq") {
            cseq.get_or_insert(value);
        }
        Ok(())
    });
    let (call_id, cseq) = (call_id?, cseq?);
    if vias.is_empty() {
        return None;
    }
    if cseq.split_whitespace().nth(1).is_some_and(|m| m == "ACK") {
        return None;
    }
    Some(ReplyContext {
        vias,
        from,
        to,
        call_id,
        cseq,
    })
}

/// Text fit to echo in a header value: lossy UTF-8, and no CR or LF left
/// that could end the header early (a bare CR survives a lenient line
/// split).
fn sanitize(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A reason phrase or header value with anything that could break the
/// message framing (CR, LF, other controls but HTAB) turned into spaces.
pub(crate) fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect()
}

/// Whether a From/To value already carries a `tag` parameter (outside the
/// URI: `<sip:a;tag=x>` does not count).
pub(crate) fn has_tag(value: &str) -> bool {
    // Header parameters start at the first ';' outside quotes and `<...>`;
    // for a bare addr-spec that is the first ';' at all (RFC 3261 §20.10).
    let mut in_quotes = false;
    let mut escaped = false;
    let mut in_angle = false;
    let mut params_at = None;
    for (i, c) in value.bytes().enumerate() {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_quotes = true,
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b';' if !in_angle => {
                params_at = Some(i);
                break;
            }
            _ => {}
        }
    }
    params_at
        .and_then(|i| value.get(i + 1..))
        .and_then(|params| split_top_level(params, b';'))
        .is_some_and(|params| {
            params.iter().any(|p| {
                p.split_once('=')
                    .map_or(*p, |(name, _)| name)
                    .trim()
                    .eq_ignore_ascii_case("tag")
            })
        })
}

/// Builds the bytes of a `code` response to the request `ctx` came from:
/// Vias, From, To (with `;tag=<to_tag>` added when it has none), Call-ID and
/// CSeq echoed, then `extra` headers, then `Content-Length: 0`.
///
/// `reason` and `extra` are cleaned of control characters so no header can
/// be injected through them.
pub fn reply_from_context(
    ctx: &ReplyContext,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(String, String)],
) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    // Writing to a String cannot fail.
    let _ = write!(out, "SIP/2.0 {code} {}\r\n", header_safe(reason).trim());
    for via in &ctx.vias {
        let _ = write!(out, "Via: {via}\r\n");
    }
    if let Some(from) = &ctx.from {
        let _ = write!(out, "From: {from}\r\n");
    }
    if let Some(to) = &ctx.to {
        let tag = header_safe(to_tag);
        if has_tag(to) || tag.trim().is_empty() {
            let _ = write!(out, "To: {to}\r\n");
        } else {
            let _ = write!(out, "To: {to};tag={}\r\n", tag.trim());
        }
    }
    let _ = write!(out, "Call-ID: {}\r\n", ctx.call_id);
    let _ = write!(out, "CSeq: {}\r\n", ctx.cseq);
    for (name, value) in extra {
        let name = header_safe(name);
        let _ = write!(out, "{}: {}\r\n", name.trim(), header_safe(value).trim());
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// The 400 for a request that could not be parsed, e.g.
/// `bad_request(&ctx, &err.reason_phrase(), &new_tag())`.
pub fn bad_request(ctx: &ReplyContext, reason: &str, to_tag: &str) -> Vec<u8> {
    reply_from_context(ctx, 400, reason, to_tag, &[])
}

impl ReplyContext {
    /// The CSeq sequence number and method, when the raw value reads as
    /// `<number> <method>`.
    pub fn cseq_parts(&self) -> Option<(u32, &str)> {
        cseq_parts(&self.cseq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROKEN: &[u8] = b"INVITE  sip:user@example.com  SIP/2.0\n\
        v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n SIP/2.0/UDP b.example.com\r\n\
        Via : SIP/2.0/TCP c.example.com;branch=z9hG4bK2\r\n\
        f: <sip:caller@example.net>;tag=1\r\n\
        t: \"Bob\" <sip:bob@example.com>\r\n\
        i: abc@host\r\n\
        CSeq: 8\r\n INVITE\r\n\
        \r\n\
        Via: SIP/2.0/UDP body.example.com\r\n";

    #[test]
    fn recovers_from_a_broken_request() {
        let ctx = lenient_headers(BROKEN).unwrap();
        assert_eq!(
            ctx.vias,
            vec![
                "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com",
                "SIP/2.0/TCP c.example.com;branch=z9hG4bK2",
            ]
        );
        assert_eq!(ctx.from.as_deref(), Some("<sip:caller@example.net>;tag=1"));
        assert_eq!(ctx.to.as_deref(), Some("\"Bob\" <sip:bob@example.com>"));
        assert_eq!(ctx.call_id, "abc@host");
        assert_eq!(ctx.cseq_parts(), Some((8, "INVITE")));

        let reply = bad_request(&ctx, "Bad Request - malformed\r\nX: y", "t42");
        let text = String::from_utf8(reply.clone()).unwrap();
        assert!(text.starts_with("SIP/2.0 400 Bad Request - malformed  X: y\r\n"));
        assert!(text.contains("To: \"Bob\" <sip:bob@example.com>;tag=t42\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        let parsed = rsip::SipMessage::try_from(reply.as_slice()).unwrap();
        let rsip::SipMessage::Response(r) = parsed else {
            panic!("not a response")
        };
        assert_eq!(r.status_code.code(), 400);
    }

    #[test]
    fn no_context_when_no_reply_is_possible() {
        assert_eq!(lenient_headers(b""), None);
        assert_eq!(
            lenient_headers(b"SIP/2.0 200 OK\r\nVia: x\r\ni: a\r\nCSeq: 1 A\r\n"),
            None
        );
        assert_eq!(
            lenient_headers(b"ACK sip:a SIP/2.0\r\nVia: x\r\ni: a\r\nCSeq: 1 ACK\r\n"),
            None
        );
        assert_eq!(
            lenient_headers(b"FOO sip:a SIP/2.0\r\nVia: x\r\ni: a\r\nCSeq: 1 ACK\r\n"),
            None
        );
        assert_eq!(
            lenient_headers(b"INVITE sip:a SIP/2.0\r\ni: a\r\nCSeq: 1 INVITE\r\n"),
            None
        );
        assert_eq!(
            lenient_headers(b"INVITE sip:a SIP/2.0\r\nVia: x\r\nCSeq: 1 INVITE\r\n"),
            None
        );
        assert_eq!(
            lenient_headers(b"INVITE sip:a SIP/2.0\r\nVia: x\r\ni: a\r\n"),
            None
        );
        assert_eq!(
            lenient_headers(b"\x00\x01 garbage\r\nVia: x\r\ni: a\r\nCSeq: 1 B\r\n"),
            None
        );
    }

    #[test]
    fn tag_detection() {
        assert!(has_tag("<sip:a@b>;tag=1"));
        assert!(has_tag("sip:a@b ; TAG = 1"));
        assert!(has_tag("\"x>y\" <sip:a@b>;tag=1"));
        assert!(!has_tag("<sip:a@b;tag=1>"));
        assert!(!has_tag("sip:a@b"));
        assert!(!has_tag("<sip:a@b>;tagx=1"));
        assert!(!has_tag("\"a;tag=1\" <sip:a@b>"));
        assert!(!has_tag("<sip:a@b>;x=\"q;tag=1\""));
        assert!(has_tag("sip:a@b;user=phone;tag=9"));
    }

    #[test]
    fn to_without_tag_param_gets_none_when_tag_is_empty() {
        let ctx = ReplyContext {
            vias: vec!["SIP/2.0/UDP h".into()],
            from: None,
            to: Some("<sip:a@b>".into()),
            call_id: "c".into(),
            cseq: "1 OPTIONS".into(),
        };
        let text = String::from_utf8(reply_from_context(
            &ctx,
            501,
            "Not Implemented",
            "",
            &[("Allow".into(), "INVITE, ACK".into())],
        ))
        .unwrap();
        assert_eq!(
            text,
            "SIP/2.0 501 Not Implemented\r\nVia: SIP/2.0/UDP h\r\nTo: <sip:a@b>\r\n\
             Call-ID: c\r\nCSeq: 1 OPTIONS\r\nAllow: INVITE, ACK\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
