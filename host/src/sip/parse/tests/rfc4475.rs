//! The SIP torture test messages of RFC 4475 §3, byte-exact from
//! `tests/data/rfc4475/msgs` (the repository's copy of the published data).
//!
//! Each message gets the outcome the RFC's commentary asks of a UAS, or,
//! where rsip 0.4 cannot give it, the outcome we give today with the reason
//! in a comment, so that a change either way shows up here.

use std::path::PathBuf;

use rsip::headers::{ToTypedHeader, UntypedHeader};
use rsip::{Header, SipMessage};

use super::{EXTENSIONS, methods, request};
use crate::sip::parse::{
    Inbound, ParseError, encode, lenient_headers, parse_datagram, parse_via, precheck,
    reply_from_context,
};

/// In the repository, so that any clone runs these tests.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/rfc4475/msgs");

fn load(name: &str) -> Vec<u8> {
    let path = PathBuf::from(DIR).join(format!("{name}.dat"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "RFC 4475 torture message {} is missing ({e}); the conformance data must sit at \
             <repo>/tests/data/rfc4475/msgs — these tests never skip",
            path.display()
        )
    })
}

/// What a UAS must make of a message.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A request that parses and passes the pre-checks.
    Accept,
    /// A request that parses and that the pre-checks refuse with this code.
    Reject(u16),
    /// A request the parser refuses with this status code, answerable from
    /// `lenient_headers`.
    Refuse(u16),
    /// A response that parses.
    Response,
    /// A response the parser refuses; it is dropped.
    DropResponse,
}

use Expect::*;

/// Every message of RFC 4475 §3 (valid, invalid, transaction-layer,
/// application-layer and backward-compatibility cases).
const CASES: &[(&str, Expect)] = &[
    // §3.1.1 Valid messages.
    ("wsinv", Accept),
    // Valid, but rsip's `Method` is a closed enum, so an unknown method
    // cannot be represented: it comes back as ParseError::UnknownMethod,
    // which a UAS answers 501 (RFC 3261 §8.2.1) — what the RFC expects of an
    // element that does not implement the method.
    ("intmeth", Refuse(501)),
    ("esc01", Accept),
    ("escnull", Accept),
    // `RE%47IST%45R` is not REGISTER (methods are not unescaped): an
    // unknown method, 501, as the RFC says.
    ("esc02", Refuse(501)),
    ("lwsdisp", Accept),
    ("longreq", Accept),
    // Only the first request of the datagram counts (Content-Length: 0).
    ("dblreq", Accept),
    // Valid, but rsip's URI parser ends the user part at ';' and then fails
    // on `@example.com`: refused as a malformed Request-URI (400). An rsip
    // limitation, kept visible here.
    ("semiuri", Refuse(400)),
    ("transports", Accept),
    ("mpart01", Accept),
    ("unreason", Response),
    ("noreason", Response),
    // §3.1.2 Invalid messages.
    ("badinv01", Refuse(400)),
    ("clerr", Refuse(400)),
    ("ncl", Refuse(400)),
    ("scalar02", Refuse(400)),
    ("scalarlg", DropResponse),
    ("quotbal", Refuse(400)),
    ("ltgtruri", Refuse(400)),
    ("lwsruri", Refuse(400)),
    ("lwsstart", Refuse(400)),
    ("trws", Refuse(400)),
    ("escruri", Refuse(400)),
    // A non-GMT Date: the RFC allows taking it as-is; Date means nothing
    // to the switch.
    ("baddate", Accept),
    ("regbadct", Refuse(400)),
    ("badaspec", Refuse(400)),
    ("baddn", Refuse(400)),
    ("badvers", Refuse(505)),
    ("mismatch01", Reject(400)),
    // Unknown method and CSeq mismatch: the RFC prefers 501.
    ("mismatch02", Refuse(501)),
    ("bigcode", DropResponse),
    // §3.2 Transaction layer: a bare magic cookie as branch is still a
    // well-formed message; what to make of it is the transaction layer's.
    ("badbranch", Accept),
    // §3.3 Application layer.
    // insuf lacks To, From and Call-ID: 400 from the pre-checks. Without a
    // Call-ID `lenient_headers` would find no reply context, but the message
    // parses, so `Rejection::response` answers with what is there.
    ("insuf", Reject(400)),
    // The parser reads the scheme before rsip fails on the opaque URI.
    ("unkscm", Refuse(416)),
    ("novelsc", Reject(416)),
    // Well-formed per the RFC, which expects a registrar to answer 400
    // because the To is no SIP AOR. rsip's typed To cannot read
    // `isbn:2983792873` at all (it takes the digits for a port), so the
    // parser already answers 400 ("malformed To").
    ("unksm2", Refuse(400)),
    ("bext01", Reject(420)),
    // 415 and 406 are the application's (SDP handling), not this layer's.
    ("invut", Accept),
    // 401 for an unknown scheme is the registrar's.
    ("regaut01", Accept),
    ("multi01", Refuse(400)),
    ("mcl01", Refuse(400)),
    // A response; not forwarding to a broadcast Via is a proxy's concern.
    ("bcast", Response),
    // OPTIONS with Max-Forwards 0 is answered by the UAS itself.
    ("zeromf", Accept),
    ("cparam01", Accept),
    ("cparam02", Accept),
    ("regescrt", Accept),
    ("sdp01", Accept),
    // §3.4 Backward compatibility: RFC 2543 syntax, no Max-Forwards, no
    // branch.
    ("inv2543", Accept),
];

#[test]
fn corpus_is_present_and_complete() {
    let present = std::fs::read_dir(DIR).unwrap_or_else(|e| {
        panic!(
            "RFC 4475 conformance folder {DIR} is missing ({e}); it must sit at \
             <repo>/tests/data/rfc4475/msgs — these tests never skip"
        )
    });
    let mut names: Vec<String> = present
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".dat"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    let mut covered: Vec<String> = CASES.iter().map(|(n, _)| (*n).to_owned()).collect();
    covered.sort();
    assert_eq!(
        names, covered,
        "every torture message needs an expectation here"
    );
}

fn check(name: &str, expect: Expect) {
    let bytes = load(name);
    let parsed = parse_datagram(&bytes);
    let context = lenient_headers(&bytes);
    match expect {
        Accept | Reject(_) => {
            let Ok(Inbound::Message(SipMessage::Request(req))) = &parsed else {
                panic!("{name}: expected a request, got {parsed:?}");
            };
            let verdict = precheck(req, &methods(), EXTENSIONS);
            match (expect, &verdict) {
                (Accept, Ok(())) => {}
                (Reject(code), Err(r)) if r.code == code => {
                    let reply = encode(&r.response(req, Some("t4475")));
                    let Ok(Inbound::Message(SipMessage::Response(resp))) = parse_datagram(&reply)
                    else {
                        panic!("{name}: our own {code} does not parse");
                    };
                    assert_eq!(resp.status_code.code(), code, "{name}");
                }
                _ => panic!("{name}: expected {expect:?}, pre-check said {verdict:?}"),
            }
            // What we parse, we can write back and read again.
            let again = parse_datagram(&encode(req));
            assert!(
                matches!(again, Ok(Inbound::Message(SipMessage::Request(_)))),
                "{name}: re-encoded request does not parse: {again:?}"
            );
        }
        Refuse(code) => {
            let Err(e) = &parsed else {
                panic!("{name}: expected a refusal, got {parsed:?}");
            };
            assert_eq!(e.status_code(), code, "{name}: {e:?}");
            let Some(ctx) = context else {
                panic!("{name}: a {code} needs a reply context");
            };
            let reply = reply_from_context(&ctx, code, &e.reason_phrase(), "t4475", &[]);
            // The reply echoes the request's own (possibly malformed) Via,
            // so rsip, not our stricter parser, is the judge of framing.
            let resp = match SipMessage::try_from(reply.as_slice()) {
                Ok(SipMessage::Response(resp)) => resp,
                other => panic!("{name}: reply does not parse: {other:?}"),
            };
            assert_eq!(resp.status_code.code(), code, "{name}");
            let call_id = resp.headers.iter().find_map(|h| match h {
                Header::CallId(c) => Some(c.value().to_owned()),
                _ => None,
            });
            assert_eq!(call_id.as_deref(), Some(ctx.call_id.as_str()), "{name}");
        }
        Response => {
            assert!(
                matches!(parsed, Ok(Inbound::Message(SipMessage::Response(_)))),
                "{name}: {parsed:?}"
            );
            assert_eq!(context, None, "{name}: responses are never answered");
        }
        DropResponse => {
            assert!(parsed.is_err(), "{name}: {parsed:?}");
            assert_eq!(context, None, "{name}: responses are never answered");
        }
    }
}

#[test]
fn every_torture_message_gets_its_outcome() {
    let mut failures = Vec::new();
    for &(name, expect) in CASES {
        // One report for all messages rather than stopping at the first.
        if let Err(panic) = std::panic::catch_unwind(|| check(name, expect)) {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{name}: {text}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// The refusals whose exact reason matters, beyond the status code.

#[test]
fn invalid_messages_fail_for_the_right_reason() {
    let cases: &[(&str, ParseError)] = &[
        ("badinv01", ParseError::MalformedHeader("Via")),
        (
            "clerr",
            ParseError::ContentLengthTooLarge {
                declared: 9999,
                available: 154,
            },
        ),
        ("ncl", ParseError::BadContentLength),
        ("scalar02", ParseError::MalformedHeader("CSeq")),
        ("scalarlg", ParseError::MalformedHeader("CSeq")),
        ("quotbal", ParseError::MalformedHeader("To")),
        ("ltgtruri", ParseError::MalformedRequestUri),
        ("lwsruri", ParseError::MalformedStartLine),
        ("lwsstart", ParseError::MalformedStartLine),
        ("trws", ParseError::MalformedStartLine),
        ("escruri", ParseError::MalformedRequestUri),
        ("regbadct", ParseError::MalformedHeader("Contact")),
        ("badaspec", ParseError::MalformedHeader("To")),
        ("baddn", ParseError::MalformedHeader("From")),
        ("badvers", ParseError::UnsupportedVersion("SIP/7.0".into())),
        ("mismatch02", ParseError::UnknownMethod("NEWMETHOD".into())),
        ("bigcode", ParseError::MalformedStartLine),
        ("multi01", ParseError::DuplicateHeader("To")),
        ("mcl01", ParseError::DuplicateHeader("Content-Length")),
        (
            "unkscm",
            ParseError::UnsupportedUriScheme("nobodyKnowsThisScheme".into()),
        ),
        // rsip limitations on valid messages, see CASES.
        ("semiuri", ParseError::MalformedRequestUri),
        ("unksm2", ParseError::MalformedHeader("To")),
        (
            "intmeth",
            ParseError::UnknownMethod("!interesting-Method0123456789_*+`.%indeed'~".into()),
        ),
        ("esc02", ParseError::UnknownMethod("RE%47IST%45R".into())),
    ];
    for (name, want) in cases {
        assert_eq!(
            parse_datagram(&load(name)).as_ref().err(),
            Some(want),
            "{name}"
        );
    }
    assert_eq!(
        ParseError::ContentLengthTooLarge {
            declared: 1,
            available: 0
        }
        .reason_phrase(),
        "Bad Request - Content-Length larger than body"
    );
    assert_eq!(
        ParseError::MalformedHeader("Via").reason_phrase(),
        "Bad Request - malformed Via"
    );
}

#[test]
fn wsinv_is_read_in_full() {
    let req = request(&load("wsinv"));
    let vias: Vec<_> = req
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Via(v) => Some(parse_via(v.value()).unwrap()),
            _ => None,
        })
        .flatten()
        .collect();
    let hosts: Vec<_> = vias.iter().map(|v| v.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    );
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    let to = req.headers.iter().find_map(|h| match h {
        Header::To(t) => t.typed().ok(),
        _ => None,
    });
    assert_eq!(
        to.and_then(|t| t.tag().map(|t| t.to_string())).as_deref(),
        Some("1918181833n")
    );
    let from = req.headers.iter().find_map(|h| match h {
        Header::From(f) => f.typed().ok(),
        _ => None,
    });
    assert_eq!(
        from.and_then(|f| f.tag().map(|t| t.to_string())).as_deref(),
        Some("98asjd8")
    );
    // `s :` and `m:` are compact Subject and Contact; `v:` a compact Via.
    assert!(req.headers.iter().any(|h| matches!(h, Header::Subject(_))));
    assert!(req.headers.iter().any(|h| matches!(h, Header::Contact(_))));
    let cseq = req.headers.iter().find_map(|h| match h {
        Header::CSeq(c) => c.typed().ok(),
        _ => None,
    });
    assert_eq!(
        cseq.map(|c| (c.seq, c.method)),
        Some((9, rsip::Method::Invite))
    );
    assert_eq!(req.body.len(), 150);
}

#[test]
fn longreq_keeps_every_via_and_the_long_values() {
    let req = request(&load("longreq"));
    let vias = req
        .headers
        .iter()
        .filter(|h| matches!(h, Header::Via(_)))
        .count();
    assert_eq!(vias, 34);
    assert_eq!(req.body.len(), 150);
}

#[test]
fn dblreq_yields_only_the_register() {
    let req = request(&load("dblreq"));
    assert_eq!(req.method, rsip::Method::Register);
    assert!(req.body.is_empty());
}

#[test]
fn transports_keeps_the_unknown_transport() {
    let req = request(&load("transports"));
    let transports: Vec<String> = req
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Via(v) => parse_via(v.value()).ok(),
            _ => None,
        })
        .flatten()
        .map(|v| v.transport)
        .collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

#[test]
fn mpart01_body_is_byte_exact() {
    let bytes = load("mpart01");
    let req = request(&bytes);
    assert_eq!(req.body.len(), 553);
    assert!(bytes.ends_with(&req.body));
    // Binary content survives encoding.
    assert!(encode(&req).ends_with(&req.body));
}

#[test]
fn compact_and_escaped_forms_are_understood() {
    let req = request(&load("esc01"));
    assert!(req.headers.iter().any(|h| matches!(h, Header::CallId(_))));
    assert!(
        req.headers
            .iter()
            .any(|h| matches!(h, Header::ContentType(_)))
    );
    let req = request(&load("escnull"));
    let contacts = req
        .headers
        .iter()
        .filter(|h| matches!(h, Header::Contact(_)))
        .count();
    assert_eq!(contacts, 2);
}
