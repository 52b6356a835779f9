//! What the host makes of values that guests return: a routing guest's
//! `route-result` (`plugins::routing::from_wit_result`) and an SMS provider
//! guest's `build-send`, `parse-send-response` and `parse-delivery-report`
//! results (`plugins::sms`), and a push provider guest's `format` and
//! `parse-response` results (`plugins::push`). The guest is the fuzzer: it returns any value
//! the WIT types allow (the canonical ABI's own checks, UTF-8 and bounds,
//! are wasmtime's and not repeated here).
//!
//! Properties: nothing panics; a decision the host accepts can be put on
//! the wire: a rejection's SIP response, a gateway number in the outbound
//! INVITE's Request-URI and To, and a caller-id in the From header (built
//! as `sip::call` builds them) make a request or response that parses.
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use softswitch::plugins::routing::bindings::softswitch::routing::types as route;
use softswitch::plugins::routing::{RouteDecision, from_wit_result};
use softswitch::plugins::push::bindings::softswitch::push_provider::types as push;
use softswitch::plugins::push::{self as host_push, PushOutcome};
use softswitch::plugins::sms::bindings::softswitch::sms_provider::types as sms;
use softswitch::plugins::sms::{self as host_sms, MAX_BODY, SendOutcome};
use softswitch::sip::call::relay::name_addr;
use softswitch::sip::parse::{Inbound, encode, parse_datagram, response_for};

/// Strings from a few interesting ones, else arbitrary text.
fn text(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=7)? {
        0 => String::new(),
        1 => "+4930123456".into(),
        2 => "x".repeat(u.int_in_range(250..=260)?),
        3 => "a\r\nVia: injected".into(),
        _ => String::arbitrary(u)?,
    })
}

fn opt_text(u: &mut Unstructured<'_>) -> Result<Option<String>> {
    Ok(if bool::arbitrary(u)? {
        Some(text(u)?)
    } else {
        None
    })
}

fn route_result(u: &mut Unstructured<'_>) -> Result<route::RouteResult> {
    let decision = match u.int_in_range(0..=3)? {
        0 => route::Decision::ToUser(text(u)?),
        1 => route::Decision::ToGateway(route::GatewayTarget {
            gateway: text(u)?,
            number: text(u)?,
        }),
        2 => route::Decision::ToService(route::ServiceTarget {
            name: text(u)?,
            args: (0..u.int_in_range(0..=18)?)
                .map(|_| text(u))
                .collect::<Result<_>>()?,
        }),
        _ => route::Decision::Reject(route::Rejection {
            code: u16::arbitrary(u)?,
            reason: text(u)?,
        }),
    };
    let caller_id = if bool::arbitrary(u)? {
        Some(route::CallerId {
            display_name: opt_text(u)?,
            user: opt_text(u)?,
        })
    } else {
        None
    };
    Ok(route::RouteResult {
        decision,
        caller_id,
    })
}

fn sms_error(u: &mut Unstructured<'_>) -> Result<sms::Error> {
    Ok(match u.int_in_range(0..=2)? {
        0 => sms::Error::Config(text(u)?),
        1 => sms::Error::Invalid(text(u)?),
        _ => sms::Error::Other(text(u)?),
    })
}

fn http_request(u: &mut Unstructured<'_>) -> Result<sms::HttpRequest> {
    let body_len = match u.int_in_range(0..=3)? {
        0 => MAX_BODY + 1,
        1 => MAX_BODY,
        _ => u.int_in_range(0..=64)?,
    };
    Ok(sms::HttpRequest {
        method: text(u)?,
        url: text(u)?,
        headers: (0..u.int_in_range(0..=4)?)
            .map(|_| {
                Ok(sms::Header {
                    name: text(u)?,
                    value: text(u)?,
                })
            })
            .collect::<Result<_>>()?,
        body: vec![0x5a; body_len],
    })
}

/// A request from the calling phone, as the switch would have parsed it.
const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKfuzz\r\n\
From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: fuzz@192.0.2.9\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

fn invite() -> rsip::Request {
    match parse_datagram(INVITE) {
        Ok(Inbound::Message(rsip::SipMessage::Request(r))) => r,
        other => panic!("the fixed INVITE does not parse: {other:?}"),
    }
}

/// An outbound INVITE with these Request-URI, From and To, as the call
/// layer writes one toward a gateway.
fn outbound(uri: &str, from: &str, to: &str) -> Vec<u8> {
    format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKout\r\n\
         From: {from};tag=b2\r\nTo: {to}\r\nCall-ID: out@192.0.2.1\r\nCSeq: 1 INVITE\r\n\
         Max-Forwards: 69\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn check_route(r: route::RouteResult) {
    let Ok((decision, caller_id)) = from_wit_result(r) else {
        return;
    };
    match &decision {
        RouteDecision::Reject { code, reason } => {
            assert!((400..=699).contains(code));
            let wire = encode(&response_for(&invite(), *code, reason, Some("t1"), &[]));
            match parse_datagram(&wire) {
                Ok(Inbound::Message(rsip::SipMessage::Response(resp))) => {
                    assert_eq!(resp.status_code.code(), *code);
                }
                other => panic!(
                    "the rejection does not make a response ({other:?}): {:?}",
                    String::from_utf8_lossy(&wire)
                ),
            }
        }
        RouteDecision::ToGateway { number, .. } => {
            let uri = format!("sip:{number}@192.0.2.1:5060;transport=tcp");
            let to = format!("<sip:{number}@192.0.2.1:5060>");
            let wire = outbound(&uri, "<sip:alice@example.com>", &to);
            assert!(
                matches!(parse_datagram(&wire), Ok(Inbound::Message(_))),
                "gateway number {number:?} breaks the outbound INVITE: {:?}",
                parse_datagram(&wire)
            );
        }
        RouteDecision::ToUser { login } => assert!(!login.is_empty()),
        RouteDecision::ToService { name, args } => {
            assert!(!name.is_empty() && args.len() <= 16);
        }
    }
    if let Some(c) = caller_id {
        let user = c.user.as_deref().unwrap_or("alice");
        let from = name_addr(
            c.display_name.as_deref(),
            &format!("sip:{user}@example.com"),
        );
        let wire = outbound("sip:bob@example.com", &from, "<sip:bob@example.com>");
        assert!(
            matches!(parse_datagram(&wire), Ok(Inbound::Message(_))),
            "caller-id {c:?} breaks the From header {from:?}: {:?}",
            parse_datagram(&wire)
        );
    }
}

fn check_sms(u: &mut Unstructured<'_>) -> Result<()> {
    let built = if bool::arbitrary(u)? {
        Ok(http_request(u)?)
    } else {
        Err(sms_error(u)?)
    };
    if let Ok(req) = host_sms::send_request(built) {
        assert!(req.body.len() <= MAX_BODY);
    }
    let outcome = match u.int_in_range(0..=2)? {
        0 => sms::SendResult::Accepted(text(u)?),
        1 => sms::SendResult::Rejected(text(u)?),
        _ => sms::SendResult::RetryAfter(u32::arbitrary(u)?),
    };
    if let Ok(SendOutcome::Accepted { provider_id }) = host_sms::send_outcome(outcome) {
        assert!(!provider_id.is_empty() && provider_id.len() <= 255);
    }
    let report = if bool::arbitrary(u)? {
        Ok(sms::Report {
            provider_id: text(u)?,
            state: match u.int_in_range(0..=2)? {
                0 => sms::DeliveryState::Delivered,
                1 => sms::DeliveryState::Failed,
                _ => sms::DeliveryState::Pending,
            },
            detail: opt_text(u)?,
        })
    } else {
        Err(sms_error(u)?)
    };
    if let Ok(r) = host_sms::delivery_report(report) {
        assert!(!r.provider_id.is_empty() && r.provider_id.len() <= 255);
    }
    Ok(())
}

fn check_push(u: &mut Unstructured<'_>) -> Result<()> {
    let requests: Vec<push::HttpRequest> = (0..u.int_in_range(0..=6)?)
        .map(|_| {
            let r = http_request(u)?;
            let body_len = match u.int_in_range(0..=3)? {
                0 => host_push::MAX_BODY + 1,
                1 => host_push::MAX_BODY,
                _ => r.body.len(),
            };
            Ok(push::HttpRequest {
                method: r.method,
                url: r.url,
                headers: r
                    .headers
                    .into_iter()
                    .map(|h| push::Header {
                        name: h.name,
                        value: h.value,
                    })
                    .collect(),
                body: vec![0x5a; body_len],
            })
        })
        .collect::<Result<_>>()?;
    if let Ok(reqs) = host_push::push_requests(requests) {
        assert!((1..=host_push::MAX_REQUESTS).contains(&reqs.len()));
        assert!(reqs.iter().all(|r| r.body.len() <= host_push::MAX_BODY));
    }
    let outcome = match u.int_in_range(0..=3)? {
        0 => push::Outcome::Delivered(opt_text(u)?),
        1 => push::Outcome::TokenInvalid(text(u)?),
        2 => push::Outcome::RetryAfter(u32::arbitrary(u)?),
        _ => push::Outcome::Failed(text(u)?),
    };
    if let Ok(PushOutcome::Delivered { id: Some(id) }) = host_push::push_outcome(outcome) {
        assert!(id.len() <= 255);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(r) = route_result(&mut u) {
        check_route(r);
    }
    let _ = check_sms(&mut u);
    let _ = check_push(&mut u);
});
