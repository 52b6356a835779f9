//! One UDP datagram through the SIP front door, as the UDP transport
//! handles it: `parse_datagram`, then `precheck` and a response for a
//! request, or `lenient_headers` and `reply_from_context` for bytes that do
//! not parse.
//!
//! Properties: nothing panics; a parsed message re-encoded with `encode`
//! frames on a stream as exactly one message of those bytes (`encode`'s
//! promise), parses again, and encodes again to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use softswitch::sip::parse::{
    self, DEFAULT_MAX_MESSAGE_SIZE, Frame, Inbound, StreamFramer, encode, lenient_headers,
    precheck, reply_from_context, response_for,
};

const METHODS: &[rsip::Method] = &[
    rsip::Method::Register,
    rsip::Method::Invite,
    rsip::Method::Ack,
    rsip::Method::Bye,
    rsip::Method::Cancel,
    rsip::Method::Options,
    rsip::Method::Message,
    rsip::Method::Subscribe,
    rsip::Method::Notify,
    rsip::Method::Publish,
];

fuzz_target!(|data: &[u8]| {
    match parse::parse_datagram(data) {
        Ok(Inbound::Message(msg)) => {
            if let rsip::SipMessage::Request(req) = &msg {
                let refusal = precheck(req, METHODS, &["path", "outbound", "gruu"]);
                if let Err(r) = refusal {
                    let _ = encode(&r.response(req, Some("fz")));
                }
                let _ = encode(&response_for(req, 200, "OK", Some("fz"), &[]));
            }
            round_trip(&msg);
        }
        Ok(Inbound::KeepAlive) => {
            assert!(data.iter().all(|&c| c == b'\r' || c == b'\n'));
        }
        Ok(Inbound::Stun) => assert!(data[0] <= 3),
        Err(e) => {
            if let Some(ctx) = lenient_headers(data) {
                let reply =
                    reply_from_context(&ctx, e.status_code(), &e.reason_phrase(), "fz", &[]);
                // The reply echoes the request's (maybe malformed) headers,
                // so it need not parse; it must still be one framed message
                // with the status line asked for.
                let status = format!("SIP/2.0 {} ", e.status_code());
                assert!(reply.starts_with(status.as_bytes()));
                assert_one_frame(&reply);
            }
        }
    }
});

fn round_trip(msg: &rsip::SipMessage) {
    let wire = encode(msg);
    assert_one_frame(&wire);
    let again = parse::parse_frame(&wire, DEFAULT_MAX_MESSAGE_SIZE * 2).unwrap_or_else(|e| {
        panic!(
            "encoded message no longer parses ({e:?}): {:?}",
            String::from_utf8_lossy(&wire)
        )
    });
    assert_eq!(
        encode(&again),
        wire,
        "encode is not a fixpoint after one parse"
    );
}

/// `wire` cut by the stream framer is exactly one message: itself.
fn assert_one_frame(wire: &[u8]) {
    let mut framer = StreamFramer::new(DEFAULT_MAX_MESSAGE_SIZE * 2);
    framer.push(wire);
    match framer.next() {
        Some(Ok(Frame::Message(m))) => assert_eq!(m, wire, "framed differently"),
        other => panic!(
            "did not frame ({other:?}): {:?}",
            String::from_utf8_lossy(wire)
        ),
    }
    assert!(framer.next().is_none(), "framed as more than one message");
}
