//! Fixtures shared by the transaction tests: messages and a fake clock made
//! of `Instant`s the tests advance by hand.

use std::time::{Duration, Instant};

use rsip::headers::UntypedHeader;

use super::Action;
use super::message::{Name, first};

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A point on the fake clock, `n` milliseconds after `t0`.
pub(crate) fn at(t0: Instant, n: u64) -> Instant {
    t0 + ms(n)
}

pub(crate) fn req(raw: &str) -> rsip::Request {
    rsip::Request::try_from(raw).expect("fixture parses")
}

pub(crate) fn invite() -> rsip::Request {
    req("INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds8\r\n\
         Via: SIP/2.0/UDP origin.example.com;branch=z9hG4bKorigin\r\n\
         Route: <sip:proxy1.example.com;lr>\r\n\
         Route: <sip:proxy2.example.com;lr>\r\n\
         Max-Forwards: 70\r\n\
         To: Bob <sip:bob@biloxi.example.com>\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
         CSeq: 314159 INVITE\r\n\
         Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: 4\r\n\r\nv=0\n")
}

pub(crate) fn message() -> rsip::Request {
    req("MESSAGE sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKmsg1\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:bob@biloxi.example.com>\r\n\
         From: <sip:alice@atlanta.example.com>;tag=49583\r\n\
         Call-ID: asd88asd77a@1.2.3.4\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: 5\r\n\r\nhello")
}

pub(crate) fn ack() -> rsip::Request {
    req("ACK sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds8\r\n\
         Max-Forwards: 70\r\n\
         To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
         CSeq: 314159 ACK\r\n\
         Content-Length: 0\r\n\r\n")
}

/// A response to `request` as a UAS would build it (§8.2.6): Via, From,
/// Call-ID and CSeq copied, To copied with `to_tag` added.
pub(crate) fn response(request: &rsip::Request, code: u16, to_tag: Option<&str>) -> rsip::Response {
    let mut headers: Vec<rsip::Header> = request
        .headers
        .iter()
        .filter(|h| {
            [Name::Via, Name::From, Name::CallId, Name::CSeq]
                .iter()
                .any(|n| n.is(h))
        })
        .cloned()
        .collect();
    let to = first(&request.headers, Name::To).expect("fixture has To");
    let to = match to_tag {
        Some(tag) => format!("{to};tag={tag}"),
        None => to.to_owned(),
    };
    headers.push(rsip::Header::To(rsip::headers::To::new(to)));
    headers.push(rsip::Header::ContentLength(
        rsip::headers::ContentLength::new("0"),
    ));
    rsip::Response {
        status_code: code.into(),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    }
}

/// The bytes of every `Send` in `actions`.
pub(crate) fn sent(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

/// Every `Deliver` in `actions`.
pub(crate) fn delivered(actions: &[Action]) -> Vec<rsip::SipMessage> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The status code of the single response sent in `actions`.
pub(crate) fn sent_status(actions: &[Action]) -> u16 {
    let bytes = sent(actions);
    assert_eq!(bytes.len(), 1, "exactly one message sent: {actions:?}");
    match rsip::SipMessage::try_from(bytes[0].clone()).expect("sent bytes parse") {
        rsip::SipMessage::Response(r) => r.status_code.code(),
        other => panic!("sent a request: {other}"),
    }
}

/// Drives `on_timer` at each deadline the machine reports, up to `until_ms`
/// after `t0` (or termination), and returns the instants, in ms after `t0`,
/// at which something was sent.
pub(crate) fn send_times<T: super::Transaction>(
    tx: &mut T,
    t0: Instant,
    until_ms: u64,
) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(deadline) = tx.next_deadline() {
        let offset = u64::try_from((deadline - t0).as_millis()).expect("fits");
        if offset > until_ms {
            break;
        }
        let actions = tx.on_timer(deadline);
        if !sent(&actions).is_empty() {
            out.push(offset);
        }
        if tx.is_terminated() {
            break;
        }
    }
    out
}
