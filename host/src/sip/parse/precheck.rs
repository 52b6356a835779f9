//! The checks a UAS makes on a parsed request before any processing
//! (RFC 3261 §8.2.1-8.2.2, plus the Max-Forwards check of §16.3).

use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request, Response, Scheme};
use thiserror::Error;

use super::message::cseq_parts;
use super::response::response_for;

/// Why a request is refused before processing: the response to send.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code} {reason}")]
pub struct Rejection {
    /// The status code.
    pub code: u16,
    /// The reason phrase.
    pub reason: String,
    /// Headers the response must carry (`Allow` with 501, `Unsupported`
    /// with 420).
    pub headers: Vec<(String, String)>,
}

impl Rejection {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// The response to `req` carrying this rejection (see [`response_for`]).
    pub fn response(&self, req: &Request, to_tag: Option<&str>) -> Response {
        response_for(req, self.code, &self.reason, to_tag, &self.headers)
    }
}

/// Checks `req` in the order of RFC 3261 §8.2:
///
/// 1. a method not in `supported_methods` → 501 with `Allow`;
/// 2. `Max-Forwards: 0` → 483, except on OPTIONS, which the switch answers
///    itself (RFC 4475 `zeromf`);
/// 3. a Request-URI scheme other than sip or sips → 416 (tel too: rsip 0.4
///    cannot represent it, see `uri_scheme_supported`);
/// 4. a `Require` option tag not in `supported_extensions` → 420 with
///    `Unsupported` (not for ACK, which is never answered, nor CANCEL, which
///    must reach its INVITE and carries no Require of its own, §9.1);
/// 5. To, From, Call-ID, CSeq or Via missing → 400 naming them
///    (Max-Forwards may be absent: RFC 2543 clients, RFC 4475 `inv2543`);
/// 6. the CSeq method differs from the request method → 400.
///
/// An ACK is never answered: a rejected ACK is only logged and dropped.
pub fn precheck(
    req: &Request,
    supported_methods: &[Method],
    supported_extensions: &[&str],
) -> Result<(), Rejection> {
    if !supported_methods.contains(&req.method) {
        let allow = supported_methods
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut r = Rejection::new(501, "Not Implemented");
        r.headers.push(("Allow".into(), allow));
        return Err(r);
    }

    let zero_hops = req.headers.iter().any(|h| match h {
        // The parser has checked the value is 0-255 digits.
        Header::MaxForwards(mf) => mf.value().bytes().all(|c| c == b'0'),
        _ => false,
    });
    if zero_hops && req.method != Method::Options {
        return Err(Rejection::new(483, "Too Many Hops"));
    }

    if !uri_scheme_supported(&req.uri) {
        return Err(Rejection::new(416, "Unsupported URI Scheme"));
    }

    if !matches!(req.method, Method::Ack | Method::Cancel) {
        let unsupported: Vec<&str> = req
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::Require(r) => Some(r.value()),
                _ => None,
            })
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|tag| {
                !tag.is_empty()
                    && !supported_extensions
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(tag))
            })
            .collect();
        if !unsupported.is_empty() {
            let mut r = Rejection::new(420, "Bad Extension");
            r.headers
                .push(("Unsupported".into(), unsupported.join(", ")));
            return Err(r);
        }
    }

    let has = |f: fn(&Header) -> bool| req.headers.iter().any(f);
    let missing: Vec<&str> = [
        ("Via", has(|h| matches!(h, Header::Via(_)))),
        ("From", has(|h| matches!(h, Header::From(_)))),
        ("To", has(|h| matches!(h, Header::To(_)))),
        ("Call-ID", has(|h| matches!(h, Header::CallId(_)))),
        ("CSeq", has(|h| matches!(h, Header::CSeq(_)))),
    ]
    .into_iter()
    .filter_map(|(name, present)| (!present).then_some(name))
    .collect();
    if !missing.is_empty() {
        return Err(Rejection::new(
            400,
            format!("Bad Request - missing {}", missing.join(", ")),
        ));
    }

    let method = req.method.to_string();
    let cseq_matches = req.headers.iter().any(|h| match h {
        Header::CSeq(c) => cseq_parts(c.value()).is_some_and(|(_, m)| m == method),
        _ => false,
    });
    if !cseq_matches {
        return Err(Rejection::new(400, "Bad Request - CSeq method mismatch"));
    }
    Ok(())
}

/// sip or sips. rsip 0.4 has no tel scheme: it reads `tel:+1234` as host
/// `tel`, port `1234` and no scheme (the `+` lost), so a tel Request-URI
/// that got this far is refused rather than routed on a changed number.
fn uri_scheme_supported(uri: &rsip::Uri) -> bool {
    matches!(uri.scheme, Some(Scheme::Sip | Scheme::Sips))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse::{Inbound, parse_datagram};

    const METHODS: &[Method] = &[
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Options,
        Method::Register,
    ];

    fn req(method: &str, uri: &str, extra: &str) -> Request {
        let text = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n\
             From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n\
             Call-ID: c1\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(text.as_bytes()) {
            Ok(Inbound::Message(rsip::SipMessage::Request(r))) => r,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn accepts_a_plain_request() {
        assert_eq!(
            precheck(&req("INVITE", "sip:b@example.com", ""), METHODS, &[]),
            Ok(())
        );
        assert_eq!(
            precheck(&req("INVITE", "sips:b@example.com", ""), METHODS, &[]),
            Ok(())
        );
    }

    #[test]
    fn unsupported_method_is_501_with_allow() {
        let r = precheck(&req("MESSAGE", "sip:b@example.com", ""), METHODS, &[]).unwrap_err();
        assert_eq!(r.code, 501);
        assert_eq!(
            r.headers,
            vec![(
                "Allow".to_owned(),
                "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER".to_owned()
            )]
        );
    }

    #[test]
    fn zero_max_forwards() {
        let invite = req("INVITE", "sip:b@example.com", "Max-Forwards: 00\r\n");
        assert_eq!(precheck(&invite, METHODS, &[]).unwrap_err().code, 483);
        let options = req("OPTIONS", "sip:b@example.com", "Max-Forwards: 0\r\n");
        assert_eq!(precheck(&options, METHODS, &[]), Ok(()));
        let ten = req("INVITE", "sip:b@example.com", "Max-Forwards: 10\r\n");
        assert_eq!(precheck(&ten, METHODS, &[]), Ok(()));
    }

    #[test]
    fn foreign_scheme_is_416() {
        let r = precheck(
            &req("OPTIONS", "soap.beep://192.0.2.103:3002", ""),
            METHODS,
            &[],
        );
        assert_eq!(r.unwrap_err().code, 416);
        let r = precheck(&req("OPTIONS", "foo:123", ""), METHODS, &[]);
        assert_eq!(r.unwrap_err().code, 416);
        // rsip mangles tel:+1234 into host "tel", port 1234: refused, not
        // routed on a number that lost its '+'.
        let r = precheck(&req("INVITE", "tel:+1234", ""), METHODS, &[]);
        assert_eq!(r.unwrap_err().code, 416);
        // A longer number does not even parse; the parser says 416 itself.
        let text = b"INVITE tel:+4912345 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        let err = parse_datagram(text).unwrap_err();
        assert_eq!(
            err,
            crate::sip::parse::ParseError::UnsupportedUriScheme("tel".into())
        );
        assert_eq!(err.status_code(), 416);
    }

    #[test]
    fn unknown_require_is_420_with_unsupported() {
        let r = req(
            "INVITE",
            "sip:b@example.com",
            "Require: timer, foo\r\nRequire: bar\r\n",
        );
        let rej = precheck(&r, METHODS, &["timer", "100rel"]).unwrap_err();
        assert_eq!(rej.code, 420);
        assert_eq!(
            rej.headers,
            vec![("Unsupported".to_owned(), "foo, bar".to_owned())]
        );
        let r = req("INVITE", "sip:b@example.com", "Require: Timer\r\n");
        assert_eq!(precheck(&r, METHODS, &["timer"]), Ok(()));
        // CANCEL is never refused for Require.
        let r = req("CANCEL", "sip:b@example.com", "Require: foo\r\n");
        assert_eq!(precheck(&r, METHODS, &[]), Ok(()));
    }

    #[test]
    fn missing_headers_and_cseq_mismatch() {
        let text = b"INVITE sip:b@example.com SIP/2.0\r\nCSeq: 1 INVITE\r\n\
            Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
        let Ok(Inbound::Message(rsip::SipMessage::Request(r))) = parse_datagram(text) else {
            panic!()
        };
        let rej = precheck(&r, METHODS, &[]).unwrap_err();
        assert_eq!(
            (rej.code, rej.reason.as_str()),
            (400, "Bad Request - missing From, To, Call-ID")
        );

        let mut r = req("OPTIONS", "sip:b@example.com", "");
        for h in r.headers.iter_mut() {
            if let Header::CSeq(c) = h {
                *c = rsip::headers::CSeq::new("1 INVITE");
            }
        }
        let rej = precheck(&r, METHODS, &[]).unwrap_err();
        assert_eq!(
            (rej.code, rej.reason.as_str()),
            (400, "Bad Request - CSeq method mismatch")
        );
        let resp = rej.response(&r, Some("x"));
        assert_eq!(resp.status_code.code(), 400);
    }
}
