//! Hostile input: truncation, garbage, oversize, NUL and non-UTF-8 bytes,
//! absurd Content-Lengths, and a seeded mutation loop over valid messages.
//! Nothing here may panic; every outcome must be a value.

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rsip::headers::UntypedHeader;
use rsip::{Header, SipMessage};

use super::{EXTENSIONS, methods, request};
use crate::sip::parse::{
    DEFAULT_MAX_MESSAGE_SIZE, Frame, Inbound, ParseError, StreamFramer, bad_request, encode,
    lenient_headers, parse_datagram, parse_datagram_with_limit, parse_frame, precheck,
    response_for, via_received,
};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
    Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n\
    Max-Forwards: 70\r\n\
    To: Bob <sip:bob@biloxi.example.com>\r\n\
    From: \"Alice \\\"A\\\"\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
    Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
    CSeq: 314159 INVITE\r\n\
    Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
    Content-Type: application/sdp\r\n\
    Content-Length: 31\r\n\r\n\
    v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";

const REGISTER: &[u8] = b"REGISTER sips:ss2.biloxi.example.com SIP/2.0\r\n\
    v: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7\r\n\
    Max-Forwards: 70\r\n\
    f: Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl\r\n\
    t: Bob <sips:bob@biloxi.example.com>\r\n\
    i: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n\
    CSeq: 1 REGISTER\r\n\
    m: <sips:bob@client.biloxi.example.com>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";expires=3600\r\n\
    l: 0\r\n\r\n";

const RESPONSE: &[u8] = b"SIP/2.0 180 Ringing\r\n\
    Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n\
    To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
    From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
    Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
    CSeq: 314159 INVITE\r\n\
    Content-Length: 0\r\n\r\n";

/// A deterministic xorshift64* generator: no dependency, same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Runs everything a transport would run on `bytes` and checks the outputs
/// that must always hold.
fn exercise(bytes: &[u8]) {
    let source: SocketAddr = "192.0.2.99:5070".parse().unwrap();
    if let Ok(Inbound::Message(msg)) = parse_datagram(bytes) {
        // Whatever we accept, we can write back and accept again.
        let again = parse_datagram(&encode(&msg));
        assert!(
            matches!(again, Ok(Inbound::Message(_))),
            "re-encoded message does not parse: {again:?}\n{}",
            String::from_utf8_lossy(&encode(&msg))
        );
        if let SipMessage::Request(req) = &msg {
            if let Err(rejection) = precheck(req, &methods(), EXTENSIONS) {
                let _ = encode(&rejection.response(req, Some("x")));
            }
            let reply = encode(&response_for(req, 200, "OK", Some("x"), &[]));
            assert!(matches!(parse_datagram(&reply), Ok(Inbound::Message(_))));
            for h in req.headers.iter() {
                if let Header::Via(v) = h {
                    via_received(v.value(), source).expect("a parsed Via is readable");
                }
            }
        }
    }
    if let Some(ctx) = lenient_headers(bytes) {
        let reply = bad_request(&ctx, "Bad Request", "x");
        assert!(
            matches!(
                SipMessage::try_from(reply.as_slice()),
                Ok(SipMessage::Response(_))
            ),
            "400 from context does not parse:\n{}",
            String::from_utf8_lossy(&reply)
        );
    }
    let _ = parse_frame(bytes, DEFAULT_MAX_MESSAGE_SIZE);
    let mut framer = StreamFramer::new(4096);
    let (a, b) = bytes.split_at(bytes.len() / 2);
    framer.push(a);
    let mut frames: Vec<_> = framer.by_ref().collect();
    framer.push(b);
    frames.extend(framer.by_ref());
    for frame in frames {
        if let Ok(Frame::Message(m)) = frame {
            let _ = parse_frame(&m, 4096);
        }
    }
}

/// `exercise` with the offending input printed if anything panics.
fn exercise_reporting(bytes: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| exercise(bytes))) {
        eprintln!(
            "panicking input ({} bytes): {:?}",
            bytes.len(),
            String::from_utf8_lossy(bytes)
        );
        std::panic::resume_unwind(panic);
    }
}

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\r",
    b"\n",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"\"",
    b"\\",
    b"<",
    b">",
    b"%",
    b"%0",
    b"\0",
    b"\xff",
    b"\xc3",
    b"=",
    b"@",
    b"[",
    b"]",
    b"[::1]",
    b"?",
    b"/",
    b"SIP/2.0",
    b"SIP/",
    b"sip:",
    b"tel:+",
    b"Content-Length: ",
    b"l: 99999999999",
    b"-1",
    b"v: ",
    b"\r\n ",
    b";tag=",
    b";rport",
    b";branch=",
    b"4294967296",
    b"Via: SIP/2.0/UDP ",
    b"CSeq: 1 ",
    b"ACK",
    b"INVITE",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut m = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(m.len() + 1);
        match rng.below(7) {
            0 => {
                if let Some(b) = m.get_mut(at) {
                    *b = rng.next() as u8;
                }
            }
            1 => m.insert(at.min(m.len()), rng.next() as u8),
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let at = at.min(m.len());
                m.splice(at..at, token.iter().copied());
            }
            3 => {
                let end = (at + rng.below(32)).min(m.len());
                m.drain(at.min(end)..end);
            }
            4 => {
                let end = (at + rng.below(64)).min(m.len());
                let chunk = m[at.min(end)..end].to_vec();
                m.splice(end..end, chunk);
            }
            5 => m.truncate(at),
            _ => {
                if let Some(b) = m.get_mut(at) {
                    *b = b.to_ascii_lowercase() ^ 0x20;
                }
            }
        }
    }
    m
}

fn mutation_run(seed: u64, rounds: usize) {
    let torture = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/rfc4475/msgs"
    ))
    .expect("the RFC 4475 messages are needed as mutation seeds")
    .filter_map(|e| std::fs::read(e.ok()?.path()).ok());
    let mut seeds: Vec<Vec<u8>> = vec![INVITE.to_vec(), REGISTER.to_vec(), RESPONSE.to_vec()];
    seeds.extend(torture);
    let mut rng = Rng(seed);
    for _ in 0..rounds {
        let input = &seeds[rng.below(seeds.len())];
        exercise_reporting(&mutate(&mut rng, input));
    }
}

#[test]
fn twenty_thousand_mutations_do_not_panic() {
    mutation_run(0x5eed_4475, 20_000);
}

/// A longer run for when the parser changes:
/// `cargo test -p softswitch --lib sip::parse -- --ignored`.
#[test]
#[ignore = "long: 500,000 mutations"]
fn half_a_million_mutations_do_not_panic() {
    mutation_run(0xdead_beef_cafe_f00d, 500_000);
}

#[test]
fn seed_messages_are_valid() {
    for m in [INVITE, REGISTER] {
        let req = request(m);
        assert_eq!(precheck(&req, &methods(), EXTENSIONS), Ok(()));
    }
    assert!(matches!(
        parse_datagram(RESPONSE),
        Ok(Inbound::Message(SipMessage::Response(_)))
    ));
}

#[test]
fn every_truncation_is_handled() {
    for m in [INVITE, REGISTER, RESPONSE] {
        for end in 0..m.len() {
            exercise_reporting(&m[..end]);
        }
    }
    // Cut inside the body: Content-Length now exceeds what arrived.
    let cut = &INVITE[..INVITE.len() - 5];
    assert_eq!(
        parse_datagram(cut),
        Err(ParseError::ContentLengthTooLarge {
            declared: 31,
            available: 26
        })
    );
    // Cut inside the headers: no Content-Length yet, a datagram takes what
    // it has; a stream may not.
    let head_only = &INVITE[..INVITE.len() - 60];
    let _ = parse_datagram(head_only);
    assert!(parse_frame(head_only, DEFAULT_MAX_MESSAGE_SIZE).is_err());
}

#[test]
fn random_garbage_is_refused_without_panic() {
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        let len = rng.below(600);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise_reporting(&bytes);
        // Printable garbage reaches deeper than binary noise.
        let text: Vec<u8> = (0..len).map(|_| 0x20 + (rng.next() % 95) as u8).collect();
        exercise_reporting(&text);
    }
}

#[test]
fn oversize_messages_are_refused() {
    let big = with_line(format!("Subject: {}\r\n", "a".repeat(70_000)).as_bytes());
    assert!(matches!(
        parse_datagram(&big),
        Err(ParseError::TooLarge {
            max: DEFAULT_MAX_MESSAGE_SIZE,
            ..
        })
    ));
    // Within a raised limit the same message is fine.
    assert!(matches!(
        parse_datagram_with_limit(&big, 1 << 20),
        Ok(Inbound::Message(_))
    ));
    // Thousands of small headers.
    let extra: String = (0..5_000).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let many = with_line(extra.as_bytes());
    assert!(matches!(
        parse_datagram_with_limit(&many, 1 << 20),
        Ok(Inbound::Message(_))
    ));
    // The limit is inclusive.
    assert!(parse_datagram_with_limit(INVITE, INVITE.len()).is_ok());
    assert!(parse_datagram_with_limit(INVITE, INVITE.len() - 1).is_err());
}

/// Where the headers of `INVITE` start.
fn after_request_line() -> usize {
    INVITE.windows(2).position(|w| w == b"\r\n").unwrap() + 2
}

/// `INVITE` with `line` inserted before its first header.
fn with_line(line: &[u8]) -> Vec<u8> {
    let mut m = INVITE.to_vec();
    let at = after_request_line();
    m.splice(at..at, line.iter().copied());
    m
}

/// `INVITE` up to (not including) its Content-Length header.
fn without_content_length() -> &'static [u8] {
    let at = INVITE
        .windows(15)
        .position(|w| w == b"Content-Length:")
        .unwrap();
    &INVITE[..at]
}

#[test]
fn nul_and_non_utf8_bytes() {
    assert_eq!(
        parse_datagram(b"INV\0ITE sip:a@b SIP/2.0\r\n\r\n"),
        Err(ParseError::MalformedStartLine)
    );
    assert_eq!(
        parse_datagram(b"INVITE sip:a@b\xff SIP/2.0\r\n\r\n"),
        Err(ParseError::MalformedStartLine)
    );
    assert_eq!(
        parse_datagram(&with_line(b"X-N\0: a\r\n")),
        Err(ParseError::MalformedHeaderLine)
    );
    assert_eq!(
        parse_datagram(&with_line(b"Subject: caf\xe9\r\n")),
        Err(ParseError::MalformedHeaderLine)
    );
    // A NUL inside a value is not ours to judge (RFC 4475 `intmeth` carries
    // one in a quoted display name); it is kept as is.
    assert!(parse_datagram(&with_line(b"Subject: a\0b\r\n")).is_ok());
    // A stray CR or LF inside a line would let a header be smuggled into
    // what we echo back.
    assert_eq!(
        parse_datagram(&with_line(b"Subject: a\rInjected: b\r\n")),
        Err(ParseError::MalformedHeaderLine)
    );
    assert_eq!(
        parse_datagram(&with_line(b"Subject: a\nInjected: b\r\n")),
        Err(ParseError::MalformedHeaderLine)
    );
    // A binary body is fine and kept byte for byte.
    let mut bin = without_content_length().to_vec();
    bin.extend_from_slice(b"Content-Length: 27\r\n\r\n");
    bin.extend_from_slice(&[
        0, 0xff, 0xfe, b'\r', b'\n', 0x80, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        16, 17, 18, 19, 20,
    ]);
    let req = request(&bin);
    assert_eq!(&req.body[..3], &[0, 0xff, 0xfe]);
}

#[test]
fn absurd_content_lengths() {
    let base = without_content_length();
    let with_cl = |cl: &str| {
        let mut m = base.to_vec();
        m.extend_from_slice(format!("Content-Length: {cl}\r\n\r\n0123456789").as_bytes());
        m
    };
    for bad in [
        "-5",
        "-0",
        "+5",
        "5a",
        "abc",
        "",
        "4294967296",
        "99999999999999999999999",
    ] {
        assert_eq!(
            parse_datagram(&with_cl(bad)),
            Err(ParseError::BadContentLength),
            "{bad:?}"
        );
    }
    assert!(matches!(
        parse_datagram(&with_cl("4294967295")),
        Err(ParseError::ContentLengthTooLarge { .. })
    ));
    assert_eq!(request(&with_cl("  4 ")).body, b"0123");
    assert_eq!(request(&with_cl("0010")).body, b"0123456789");
    // Absent on a datagram: the rest of it.
    let mut no_cl = base.to_vec();
    no_cl.extend_from_slice(b"\r\nrest of it");
    assert_eq!(request(&no_cl).body, b"rest of it");
    // Absent on a stream: refused.
    assert_eq!(
        parse_frame(&no_cl, 4096),
        Err(ParseError::MissingContentLength)
    );
}

#[test]
fn keepalives_stun_and_empty() {
    assert_eq!(parse_datagram(b""), Err(ParseError::Empty));
    assert_eq!(parse_datagram(b"\r\n"), Ok(Inbound::KeepAlive));
    assert_eq!(parse_datagram(b"\r\n\r\n"), Ok(Inbound::KeepAlive));
    let stun_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/rfc5769");
    for name in [
        "sample_request.bin",
        "ipv4_response.bin",
        "ipv6_response.bin",
        "longterm_request.bin",
    ] {
        let path = format!("{stun_dir}/{name}");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path} missing: {e}"));
        assert_eq!(parse_datagram(&bytes), Ok(Inbound::Stun), "{name}");
    }
    // CRLFs before a message are skipped (RFC 3261 §7.5).
    let mut padded = b"\r\n\r\n".to_vec();
    padded.extend_from_slice(INVITE);
    assert!(matches!(parse_datagram(&padded), Ok(Inbound::Message(_))));
}

#[test]
fn start_line_variants() {
    let cases: &[(&[u8], ParseError)] = &[
        (
            b"invite sip:a@b SIP/2.0\r\n\r\n",
            ParseError::UnknownMethod("invite".into()),
        ),
        (
            b"INVITE sip:a@b SIP/1.0\r\n\r\n",
            ParseError::UnsupportedVersion("SIP/1.0".into()),
        ),
        (
            b"INVITE sip:a@b SIP/2.5\r\n\r\n",
            ParseError::UnsupportedVersion("SIP/2.5".into()),
        ),
        (
            b"INVITE sip:a@b HTTP/1.1\r\n\r\n",
            ParseError::MalformedStartLine,
        ),
        (b"INVITE sip:a@b\r\n\r\n", ParseError::MalformedStartLine),
        (
            b"INVITE sip:a%zz@b SIP/2.0\r\n\r\n",
            ParseError::MalformedRequestUri,
        ),
        (
            b"INVITE a@b SIP/2.0\r\n\r\n",
            ParseError::MalformedRequestUri,
        ),
        (
            b"INVITE sip:[2001:db8::1] SIP/2.0\r\n\r\n",
            ParseError::MalformedRequestUri,
        ),
        (
            b"INVITE mailto:a SIP/2.0\r\n\r\n",
            ParseError::UnsupportedUriScheme("mailto".into()),
        ),
        (b"SIP/2.0 99 Low\r\n\r\n", ParseError::MalformedStartLine),
        (b"SIP/2.0 700 High\r\n\r\n", ParseError::MalformedStartLine),
        (
            b"SIP/3.0 200 OK\r\n\r\n",
            ParseError::UnsupportedVersion("SIP/3.0".into()),
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", ParseError::MalformedStartLine),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_datagram(input).as_ref().err(),
            Some(want),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    // rsip reads `mailto:a@b` as user `mailto`, password `a`, host `b`
    // and no scheme; the pre-checks refuse it all the same.
    let req = request(b"INVITE mailto:a@b SIP/2.0\r\n\r\n");
    assert_eq!(
        precheck(&req, &methods(), EXTENSIONS).map_err(|r| r.code),
        Err(416)
    );
    // A request line alone is a message (missing headers are the
    // pre-checks' to report).
    assert!(matches!(
        parse_datagram(b"OPTIONS sip:a@b SIP/2.0"),
        Ok(Inbound::Message(SipMessage::Request(_)))
    ));
    // A reason phrase may be empty or non-ASCII.
    assert!(parse_datagram(b"SIP/2.0 200 \r\nContent-Length: 0\r\n\r\n").is_ok());
    assert!(parse_datagram("SIP/2.0 200 Très bien\r\n\r\n".as_bytes()).is_ok());
}

#[test]
fn header_checks() {
    let cases: &[(&[u8], ParseError)] = &[
        (b"CSeq: 1 INVITE\r\n", ParseError::DuplicateHeader("CSeq")),
        (b"i: other\r\n", ParseError::DuplicateHeader("Call-ID")),
        (
            b"Max-Forwards: 256\r\n",
            ParseError::MalformedHeader("Max-Forwards"),
        ),
        (
            b"Via: SIP/2.0/UDP [::1\r\n",
            ParseError::MalformedHeader("Via"),
        ),
        (
            b"Contact: <sip:a@b\r\n",
            ParseError::MalformedHeader("Contact"),
        ),
        (
            b" folded: before anything\r\n",
            ParseError::MalformedHeaderLine,
        ),
    ];
    for (line, want) in cases {
        // Inserted before Via, so a folded line has no header to continue;
        // the seed has one of each header, so the copies are duplicates.
        let got = parse_datagram(&with_line(line));
        assert_eq!(
            got.as_ref().err(),
            Some(want),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    // Max-Forwards: 255 and leading zeros are fine.
    assert!(parse_datagram(&with_line(b"X-A: 1\r\n")).is_ok());
    let mut m = INVITE.to_vec();
    let at = m
        .windows(16)
        .position(|w| w == b"Max-Forwards: 70")
        .unwrap();
    m.splice(at + 14..at + 16, b"000255".iter().copied());
    assert!(parse_datagram(&m).is_ok());
}

#[test]
fn stream_of_torture_messages_with_content_length() {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for m in [INVITE, REGISTER, RESPONSE, INVITE] {
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(m);
        expected.push(Frame::KeepAlive);
        expected.push(Frame::Message(m.to_vec()));
    }
    let mut rng = Rng(7);
    let mut framer = StreamFramer::new(DEFAULT_MAX_MESSAGE_SIZE);
    let mut got = Vec::new();
    let mut rest = stream.as_slice();
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at((1 + rng.below(40)).min(rest.len()));
        framer.push(chunk);
        got.extend(framer.by_ref().map(Result::unwrap));
        rest = tail;
    }
    assert_eq!(got, expected);
    for frame in got {
        if let Frame::Message(m) = frame {
            assert!(parse_frame(&m, DEFAULT_MAX_MESSAGE_SIZE).is_ok());
        }
    }
}
