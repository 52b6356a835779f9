//! Building responses to parsed requests and putting messages on the wire.

use rsip::headers::{self, UntypedHeader};
use rsip::{Header, Headers, Request, Response, SipMessage, StatusCode};

use super::lenient::{has_tag, header_safe};

/// The answer when the database failed or cannot be reached: 503 with
/// Retry-After, so the client tries again later (or another node) and
/// nothing it was told was accepted is lost (RFC 3261 §21.5.4).
pub fn database_unavailable(req: &Request, to_tag: Option<&str>) -> Response {
    response_for(
        req,
        503,
        "Service Unavailable - database",
        to_tag,
        &[("Retry-After".into(), "5".into())],
    )
}

/// A response to `req` (RFC 3261 §8.2.6.2): every Via in order, From, To
/// (with `;tag=<to_tag>` added when given and the To has none), Call-ID and
/// CSeq copied, then `extra` headers, then `Content-Length: 0`.
///
/// A `reason` that is empty or the standard phrase gives rsip's named
/// status (`StatusCode::BadRequest`…); any other phrase is kept in
/// `StatusCode::Other(code, reason)`, so compare responses with
/// `status_code.code()`, not by variant. Control characters in `reason` and
/// `extra` become spaces, so nothing can be injected through them.
pub fn response_for(
    req: &Request,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(String, String)],
) -> Response {
    let mut out: Vec<Header> = Vec::with_capacity(8 + extra.len());
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for h in req.headers.iter() {
        match h {
            Header::Via(_) => out.push(h.clone()),
            Header::From(_) => {
                from.get_or_insert(h);
            }
            Header::To(_) => {
                to.get_or_insert(h);
            }
            Header::CallId(_) => {
                call_id.get_or_insert(h);
            }
            Header::CSeq(_) => {
                cseq.get_or_insert(h);
            }
            _ => {}
        }
    }
    out.extend(from.cloned());
    if let Some(Header::To(to)) = to {
        let tag = to_tag.map(header_safe);
        let value = match tag.as_deref().map(str::trim) {
            Some(tag) if !tag.is_empty() && !has_tag(to.value()) => {
                format!("{};tag={tag}", to.value())
            }
            _ => to.value().to_owned(),
        };
        out.push(Header::To(headers::To::new(value)));
    }
    out.extend(call_id.cloned());
    out.extend(cseq.cloned());
    out.extend(extra.iter().map(|(name, value)| make_header(name, value)));
    out.push(Header::ContentLength(headers::ContentLength::from(0)));

    Response {
        status_code: status_code(code, reason),
        version: rsip::Version::V2,
        headers: Headers::from(out),
        body: Vec::new(),
    }
}

/// rsip's named status when `reason` adds nothing to it, else `Other`.
fn status_code(code: u16, reason: &str) -> StatusCode {
    let reason = header_safe(reason);
    let reason = reason.trim();
    match StatusCode::from(code) {
        StatusCode::Other(..) if reason.is_empty() => {
            StatusCode::Other(code, standard_reason(code).to_owned())
        }
        named if reason.is_empty() || reason == standard_reason(code) => named,
        _ => StatusCode::Other(code, reason.to_owned()),
    }
}

/// A header from a name and value, as rsip would have parsed it, so that an
/// `Allow` added here is a `Header::Allow` like one that came off the wire.
fn make_header(name: &str, value: &str) -> Header {
    let name = header_safe(name);
    let name = name.trim();
    let value = header_safe(value);
    let value = value.trim();
    // rsip's name → variant table lives in its header tokenizer (public but
    // doc-hidden); Other is what it yields for unknown names anyway.
    let tokenizer = headers::header::Tokenizer::from((name.as_bytes(), value.as_bytes()));
    tokenizer
        .try_into()
        .unwrap_or_else(|_| Header::Other(name.to_owned(), value.to_owned()))
}

/// Something [`encode`] can serialise.
pub trait Encode: sealed::Sealed {
    #[doc(hidden)]
    fn start_line(&self) -> String;
    #[doc(hidden)]
    fn parts(&self) -> (&Headers, &[u8]);
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for rsip::Request {}
    impl Sealed for rsip::Response {}
    impl Sealed for rsip::SipMessage {}
}

impl Encode for Request {
    fn start_line(&self) -> String {
        format!("{} {} SIP/2.0\r\n", self.method, self.uri)
    }
    fn parts(&self) -> (&Headers, &[u8]) {
        (&self.headers, &self.body)
    }
}

impl Encode for Response {
    fn start_line(&self) -> String {
        let code = self.status_code.code();
        // Sanitised before the emptiness test: a phrase of control
        // characters alone would otherwise go out as blanks, and come back
        // as the standard phrase when re-parsed (found by fuzzing).
        let safe = match &self.status_code {
            StatusCode::Other(_, reason) => header_safe(reason),
            _ => String::new(),
        };
        let reason = match &self.status_code {
            // rsip's `From<u16>` leaves the placeholder "Other" for codes it
            // has no name for (202 among them: rsip calls 201 "Accepted").
            StatusCode::Other(_, reason) if !safe.trim().is_empty() && reason != "Other" => {
                safe.trim().to_owned()
            }
            _ => standard_reason(code).to_owned(),
        };
        format!("SIP/2.0 {code} {reason}\r\n")
    }
    fn parts(&self) -> (&Headers, &[u8]) {
        (&self.headers, &self.body)
    }
}

impl Encode for SipMessage {
    fn start_line(&self) -> String {
        match self {
            SipMessage::Request(r) => r.start_line(),
            SipMessage::Response(r) => r.start_line(),
        }
    }
    fn parts(&self) -> (&Headers, &[u8]) {
        match self {
            SipMessage::Request(r) => r.parts(),
            SipMessage::Response(r) => r.parts(),
        }
    }
}

/// The wire bytes of a message.
///
/// Use this rather than rsip's `Display`/`Into<Vec<u8>>`, which turn a
/// binary body into lossy UTF-8 and print status codes as Rust identifiers
/// (`400 BadRequest`). Any Content-Length in the headers is replaced by one
/// matching the body, written last, so the result always frames correctly on
/// a stream. Header values are written as held, with any CR/LF (which only
/// code, never the parser, could have put there) turned into spaces.
pub fn encode(msg: &impl Encode) -> Vec<u8> {
    use std::fmt::Write;
    let (headers, body) = msg.parts();
    // Headers are written straight into one buffer (no String per header);
    // 1 KiB holds the head of a typical request or response.
    let mut out = String::with_capacity(1024 + body.len());
    out.push_str(&msg.start_line());
    for h in headers.iter() {
        if matches!(h, Header::ContentLength(_)) {
            continue;
        }
        let start = out.len();
        let _ = write!(out, "{h}");
        if out[start..].contains(['\r', '\n']) {
            let safe = header_safe(&out[start..]);
            out.truncate(start);
            out.push_str(&safe);
        }
        out.push_str("\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The reason phrase RFC 3261 §21 (and later RFCs) give `code`, or a phrase
/// naming its class for a code no RFC defines.
pub fn standard_reason(code: u16) -> &'static str {
    named_reason(code).unwrap_or(match code {
        100..=199 => "Provisional",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Global Failure",
    })
}

fn named_reason(code: u16) -> Option<&'static str> {
    Some(match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        424 => "Bad Location Information",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse::{Inbound, parse_datagram};

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
        Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@biloxi.example.com>\r\n\
        From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
        Content-Type: application/octet-stream\r\n\
        Content-Length: 4\r\n\r\n\x00\xff\x80\x01";

    #[test]
    fn a_reason_phrase_of_control_characters_encodes_as_the_standard_one() {
        // Fuzz target sip_datagram: it went out as blanks, then came back
        // as "Provisional", so encoding was not stable.
        let wire = b"SIP/2.0 120 \x00\x00\x05\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let Ok(Inbound::Message(msg)) = parse_datagram(wire) else {
            panic!("does not parse");
        };
        let once = encode(&msg);
        assert!(once.starts_with(b"SIP/2.0 120 Provisional\r\n"));
        let Ok(Inbound::Message(again)) = parse_datagram(&once) else {
            panic!("encoded response does not parse");
        };
        assert_eq!(encode(&again), once);
    }

    fn request() -> Request {
        match parse_datagram(INVITE) {
            Ok(Inbound::Message(SipMessage::Request(r))) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_copies_the_dialog_headers() {
        let req = request();
        let resp = response_for(
            &req,
            486,
            "Busy Here",
            Some("as83kd9bs"),
            &[("Retry-After".into(), "60".into())],
        );
        assert_eq!(resp.status_code, StatusCode::BusyHere);
        let text = String::from_utf8(encode(&resp)).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 486 Busy Here\r\n\
             Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
             Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1\r\n\
             From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
             To: Bob <sip:bob@biloxi.example.com>;tag=as83kd9bs\r\n\
             Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
             CSeq: 314159 INVITE\r\n\
             Retry-After: 60\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert!(matches!(
            parse_datagram(text.as_bytes()),
            Ok(Inbound::Message(SipMessage::Response(_)))
        ));
    }

    #[test]
    fn custom_reason_and_typed_extra_headers() {
        let req = request();
        let resp = response_for(
            &req,
            501,
            "Not Implemented\r\nX-Evil: 1",
            None,
            &[("Allow".into(), "INVITE, ACK, BYE".into())],
        );
        assert_eq!(resp.status_code.code(), 501);
        assert!(resp.headers.iter().any(|h| matches!(h, Header::Allow(_))));
        let text = String::from_utf8(encode(&resp)).unwrap();
        assert!(
            text.starts_with("SIP/2.0 501 Not Implemented  X-Evil: 1\r\n"),
            "{text}"
        );
        assert!(text.contains("To: Bob <sip:bob@biloxi.example.com>\r\n"));
    }

    #[test]
    fn existing_to_tag_is_kept() {
        let mut req = request();
        for h in req.headers.iter_mut() {
            if let Header::To(to) = h {
                *to = headers::To::new("<sip:bob@biloxi.example.com>;tag=old");
            }
        }
        let resp = response_for(&req, 200, "OK", Some("new"), &[]);
        let text = String::from_utf8(encode(&resp)).unwrap();
        assert!(text.contains("To: <sip:bob@biloxi.example.com>;tag=old\r\n"));
    }

    #[test]
    fn encode_keeps_binary_bodies_and_fixes_content_length() {
        let mut req = request();
        req.headers
            .push(Header::ContentLength(headers::ContentLength::from(999)));
        let bytes = encode(&req);
        assert!(bytes.ends_with(b"Content-Length: 4\r\n\r\n\x00\xff\x80\x01"));
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.matches("Content-Length").count(), 1);
        assert!(text.starts_with("INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"));
        let again = match parse_datagram(&bytes) {
            Ok(Inbound::Message(SipMessage::Request(r))) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(again.body, req.body);
    }

    #[test]
    fn standard_reasons() {
        assert_eq!(standard_reason(200), "OK");
        assert_eq!(standard_reason(420), "Bad Extension");
        assert_eq!(standard_reason(499), "Client Error");
        assert_eq!(
            status_code(202, ""),
            StatusCode::Other(202, "Accepted".into())
        );
        assert_eq!(status_code(400, "Bad Request"), StatusCode::BadRequest);
        assert_eq!(
            status_code(400, "Nope"),
            StatusCode::Other(400, "Nope".into())
        );
        let placeholder = Response {
            status_code: StatusCode::from(202),
            version: rsip::Version::V2,
            headers: Headers::default(),
            body: Vec::new(),
        };
        assert!(encode(&placeholder).starts_with(b"SIP/2.0 202 Accepted\r\n"));
        let resp = Response {
            status_code: StatusCode::BadRequest,
            version: rsip::Version::V2,
            headers: Headers::default(),
            body: Vec::new(),
        };
        assert_eq!(
            encode(&resp),
            b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
