//! What crosses from one leg of a call to the other. A B2BUA copies only
//! the headers that describe the session (body, options, timers) and builds
//! everything that describes a leg's topology (Via, Route, Contact, tags,
//! Call-ID, CSeq) anew, so nothing of one side leaks into the other.

use rsip::headers::{self, UntypedHeader};
use rsip::{Header, Headers};

use crate::sip::parse::response_for;

/// Headers copied between legs, on requests and responses alike.
const PASSED: &[&str] = &[
    "Content-Type",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Allow",
    "Allow-Events",
    "Supported",
    "Require",
    "Unsupported",
    "Session-Expires",
    "Min-SE",
    "RSeq",
    "Event",
    "Subscription-State",
    "Reason",
    "Priority",
    "Subject",
    "Privacy",
    "Info-Package",
    "Recv-Info",
    "Retry-After",
    "Warning",
    "Date",
    "Alert-Info",
];

/// Name and value of any header, as rsip prints it.
fn name_value(h: &Header) -> Option<(String, String)> {
    let text = h.to_string();
    let (name, value) = text.split_once(':')?;
    Some((name.trim().to_owned(), value.trim().to_owned()))
}

/// The headers of `from` that cross to the other leg.
pub fn passed_headers(from: &Headers) -> Vec<Header> {
    from.iter()
        // Topology and hop-by-hop headers never cross; skipping them by
        // variant spares printing them just to read their name.
        .filter(|h| {
            !matches!(
                h,
                Header::Via(_)
                    | Header::From(_)
                    | Header::To(_)
                    | Header::CallId(_)
                    | Header::CSeq(_)
                    | Header::Contact(_)
                    | Header::Route(_)
                    | Header::RecordRoute(_)
                    | Header::MaxForwards(_)
                    | Header::ContentLength(_)
                    | Header::Authorization(_)
                    | Header::ProxyAuthorization(_)
                    | Header::UserAgent(_)
                    | Header::Server(_)
            )
        })
        .filter_map(|h| {
            let (name, _) = name_value(h)?;
            PASSED
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&name))
                .then(|| h.clone())
        })
        .collect()
}

/// The value of `name` among `headers`, whatever variant rsip parsed it into.
pub fn any_header(headers: &Headers, name: &str) -> Option<String> {
    headers.iter().find_map(|h| {
        let (n, v) = name_value(h)?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// A response to `req` (the request on this side) carrying what `resp` (the
/// other side's answer) said: status and session headers, with `body` (its
/// body as this side gets it), this side's tag and this node's Contact on
/// dialog-creating responses.
pub fn response_across(
    req: &rsip::Request,
    resp: &rsip::Response,
    to_tag: Option<&str>,
    contact: &str,
    body: Vec<u8>,
) -> rsip::Response {
    let code = resp.status_code.code();
    let reason = match &resp.status_code {
        rsip::StatusCode::Other(_, r) => r.clone(),
        _ => String::new(),
    };
    let mut out = response_for(req, code, &reason, to_tag, &[]);
    // The other side's headers are already parsed: cloned across as they
    // are, not printed and parsed again. `encode` writes Content-Length last
    // whatever the order.
    for h in passed_headers(&resp.headers) {
        out.headers.push(h);
    }
    if (101..300).contains(&code) {
        out.headers
            .push(Header::Contact(headers::Contact::new(contact.to_owned())));
    }
    out.body = body;
    out
}

/// The RAck of a PRACK (RFC 3262 §7.2: `rseq cseq method`) with the CSeq
/// number of the INVITE on the other leg.
pub fn rack_across(rack: &str, invite_cseq: u32) -> Option<Header> {
    let mut parts = rack.split_whitespace();
    let rseq = parts.next()?;
    let _cseq = parts.next()?;
    let method = parts.next()?;
    Some(Header::Other(
        "RAck".into(),
        format!("{rseq} {invite_cseq} {method}"),
    ))
}

/// Max-Forwards for the other leg: one less than received (70 when absent);
/// `None` when it ran out (483).
pub fn max_forwards_across(headers: &Headers) -> Option<Header> {
    let mf = headers
        .iter()
        .find_map(|h| match h {
            Header::MaxForwards(mf) => mf.value().trim().parse::<u32>().ok(),
            _ => None,
        })
        .unwrap_or(70);
    (mf > 0).then(|| Header::MaxForwards(headers::MaxForwards::new((mf - 1).to_string())))
}

/// The Session-Expires interval of a message, seconds (RFC 4028 §4).
pub fn session_expires(headers: &Headers) -> Option<u64> {
    // "x" is the compact form.
    any_header(headers, "Session-Expires")
        .or_else(|| any_header(headers, "x"))
        .and_then(|v| v.split(';').next()?.trim().parse().ok())
}

/// A name-addr for From: display name (quoted) and URI.
pub fn name_addr(display: Option<&str>, uri: &str) -> String {
    match display.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => {
            let quoted: String = d
                .chars()
                .filter(|c| !c.is_control())
                .flat_map(|c| match c {
                    '"' | '\\' => vec!['\\', c],
                    _ => vec![c],
                })
                .collect();
            format!("\"{quoted}\" <{uri}>")
        }
        None => format!("<{uri}>"),
    }
}

/// The CANCEL of a client INVITE (§9.1): its Request-URI, Via, From, To,
/// Call-ID, Max-Forwards and Route, with CSeq `1 CANCEL`.
pub fn cancel_of(invite: &rsip::Request) -> rsip::Request {
    let keep: Vec<Header> = invite
        .headers
        .iter()
        .filter(|h| {
            matches!(
                h,
                Header::Via(_)
                    | Header::From(_)
                    | Header::To(_)
                    | Header::CallId(_)
                    | Header::MaxForwards(_)
                    | Header::Route(_)
            )
        })
        .cloned()
        .chain([Header::CSeq(headers::CSeq::new("1 CANCEL"))])
        .collect();
    rsip::Request {
        method: rsip::Method::Cancel,
        uri: invite.uri.clone(),
        version: rsip::Version::V2,
        headers: keep.into(),
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse::{Inbound, encode, parse_datagram};

    fn parse(text: &str) -> rsip::SipMessage {
        match parse_datagram(text.replace('\n', "\r\n").as_bytes()).unwrap() {
            Inbound::Message(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_session_headers_cross_and_topology_stays_behind() {
        let rsip::SipMessage::Request(req) = parse(
            "INVITE sip:bob@a SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx1
From: <sip:alice@a>;tag=1
To: <sip:bob@a>
Call-ID: leg-a
CSeq: 1 INVITE
Contact: <sip:alice@10.0.0.1>
Max-Forwards: 70
Content-Length: 0

",
        ) else {
            panic!()
        };
        let rsip::SipMessage::Response(resp) = parse(
            "SIP/2.0 183 Session Progress
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb2
Record-Route: <sip:secret-proxy.carrier;lr>
From: <sip:alice@a>;tag=x
To: <sip:bob@a>;tag=bobtag
Call-ID: leg-b
CSeq: 1 INVITE
Contact: <sip:bob@192.168.9.9:5080>
Server: CarrierSwitch 9
Require: 100rel
RSeq: 1
Content-Type: application/sdp
Content-Length: 4

v=0
",
        ) else {
            panic!()
        };
        let out = response_across(
            &req,
            &resp,
            Some("atag"),
            "<sip:127.0.0.1:5060>",
            resp.body.clone(),
        );
        let text = String::from_utf8(encode(&out)).unwrap();
        assert!(
            text.starts_with("SIP/2.0 183 Session Progress\r\n"),
            "{text}"
        );
        assert!(text.contains("Call-ID: leg-a\r\n"));
        assert!(text.contains("To: <sip:bob@a>;tag=atag\r\n"));
        assert!(text.contains("Require: 100rel\r\n"));
        assert!(text.contains("RSeq: 1\r\n"));
        assert!(text.contains("Contact: <sip:127.0.0.1:5060>\r\n"));
        assert_eq!(out.body, resp.body);
        assert!(text.contains("Content-Type: application/sdp\r\n"));
        for leak in [
            "secret-proxy",
            "192.168.9.9",
            "leg-b",
            "bobtag",
            "CarrierSwitch",
        ] {
            assert!(!text.contains(leak), "{leak} leaked: {text}");
        }
    }

    #[test]
    fn rack_and_max_forwards_are_mapped() {
        let rack = rack_across("4 17 INVITE", 1).unwrap();
        assert_eq!(rack.to_string(), "RAck: 4 1 INVITE");
        assert!(rack_across("4", 1).is_none());
        let headers: Headers = vec![Header::MaxForwards(headers::MaxForwards::new("1"))].into();
        assert_eq!(
            max_forwards_across(&headers).unwrap().to_string(),
            "Max-Forwards: 0"
        );
        let headers: Headers = vec![Header::MaxForwards(headers::MaxForwards::new("0"))].into();
        assert!(max_forwards_across(&headers).is_none());
    }

    #[test]
    fn display_names_are_quoted() {
        assert_eq!(
            name_addr(Some("A \"B\""), "sip:a@b"),
            "\"A \\\"B\\\"\" <sip:a@b>"
        );
        assert_eq!(name_addr(None, "sip:a@b"), "<sip:a@b>");
    }
}
