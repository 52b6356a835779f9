use super::*;
use std::path::PathBuf;

const SHORT_TERM_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// RFC 5769's vectors, from the repository's copy of the published data.
fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/rfc5769")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn txid(hex: &str) -> TransactionId {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    TransactionId(bytes.try_into().unwrap())
}

/// The vectors pad with spaces where RFC 8489 leaves the padding free.
fn encode_like_rfc5769(m: &Message, key: &[u8], fingerprint: bool, padding: u8) -> Vec<u8> {
    m.encode_with(&EncodeOptions {
        integrity_key: Some(key),
        fingerprint,
        padding,
    })
    .unwrap()
}

#[test]
fn rfc5769_sample_request() {
    let raw = vector("sample_request.bin");
    let m = Message::decode(&raw).unwrap();
    assert_eq!((m.class, m.method), (Class::Request, Method::BINDING));
    assert!(!m.is_rfc3489());
    assert_eq!(m.transaction_id, txid("b7e7a701bc34d686fa87dfae"));
    assert_eq!(m.software(), Some("STUN test client"));
    assert_eq!(m.priority(), Some(0x6e0001ff));
    assert_eq!(m.ice_controlled(), Some(0x932ff9b151263b36));
    assert_eq!(m.ice_controlling(), None);
    assert!(!m.use_candidate());
    assert_eq!(m.username(), Some("evtj:h6vY"));
    assert!(m.has_integrity() && m.has_fingerprint());
    assert!(is_stun(&raw));
    verify_integrity(&raw, SHORT_TERM_PASSWORD).unwrap();
    assert_eq!(
        verify_integrity(&raw, b"VOkJxbRl1RmTxUk/WvJxBT"),
        Err(StunError::IntegrityMismatch)
    );

    let built = Message::binding_request(txid("b7e7a701bc34d686fa87dfae"))
        .with(Attribute::Software("STUN test client".into()))
        .with(Attribute::Priority(0x6e0001ff))
        .with(Attribute::IceControlled(0x932ff9b151263b36))
        .with(Attribute::Username("evtj:h6vY".into()));
    assert_eq!(
        encode_like_rfc5769(&built, SHORT_TERM_PASSWORD, true, b' '),
        raw
    );
    // Re-encoding what was decoded recomputes the same trailers.
    assert_eq!(
        encode_like_rfc5769(&m, SHORT_TERM_PASSWORD, true, b' '),
        raw
    );
}

#[test]
fn rfc5769_ipv4_response() {
    let raw = vector("ipv4_response.bin");
    let m = Message::decode(&raw).unwrap();
    assert_eq!((m.class, m.method), (Class::Success, Method::BINDING));
    assert_eq!(m.software(), Some("test vector"));
    assert_eq!(
        m.xor_mapped_address(),
        Some("192.0.2.1:32853".parse().unwrap())
    );
    verify_integrity(&raw, SHORT_TERM_PASSWORD).unwrap();

    let request = Message::binding_request(txid("b7e7a701bc34d686fa87dfae"));
    let built = request
        .answer(Class::Success)
        .with(Attribute::Software("test vector".into()))
        .with(Attribute::XorMappedAddress(
            "192.0.2.1:32853".parse().unwrap(),
        ));
    assert_eq!(
        encode_like_rfc5769(&built, SHORT_TERM_PASSWORD, true, b' '),
        raw
    );
}

#[test]
fn rfc5769_ipv6_response() {
    let raw = vector("ipv6_response.bin");
    let m = Message::decode(&raw).unwrap();
    let mapped: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    assert_eq!(m.xor_mapped_address(), Some(mapped));
    verify_integrity(&raw, SHORT_TERM_PASSWORD).unwrap();

    let built = Message::new(
        Class::Success,
        Method::BINDING,
        txid("b7e7a701bc34d686fa87dfae"),
    )
    .with(Attribute::Software("test vector".into()))
    .with(Attribute::XorMappedAddress(mapped));
    assert_eq!(
        encode_like_rfc5769(&built, SHORT_TERM_PASSWORD, true, b' '),
        raw
    );
}

#[test]
fn rfc5769_long_term_request() {
    use md5::{Digest, Md5};
    let raw = vector("longterm_request.bin");
    let m = Message::decode(&raw).unwrap();
    let user = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
    assert_eq!(m.username(), Some(user));
    assert_eq!(m.nonce(), Some("f//499k954d6OL34oL9FSTvy64sA"));
    assert_eq!(m.realm(), Some("example.org"));
    assert!(!m.has_fingerprint());
    let key = Md5::digest(format!("{user}:example.org:TheMatrIX").as_bytes());
    verify_integrity(&raw, &key).unwrap();
    assert_eq!(
        verify_integrity(&raw, SHORT_TERM_PASSWORD),
        Err(StunError::IntegrityMismatch)
    );

    let built = Message::binding_request(txid("78ad3433c6ad72c029da412e"))
        .with(Attribute::Username(user.into()))
        .with(Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA".into()))
        .with(Attribute::Realm("example.org".into()));
    assert_eq!(encode_like_rfc5769(&built, &key, false, 0), raw);
}

#[test]
fn a_changed_byte_breaks_the_fingerprint_or_the_integrity() {
    let raw = vector("sample_request.bin");
    // Inside USERNAME: still parses, so only the trailers can tell.
    let mut bad = raw.clone();
    bad[0x44] ^= 1;
    assert_eq!(Message::decode(&bad), Err(StunError::FingerprintMismatch));
    assert_eq!(
        verify_integrity(&bad, SHORT_TERM_PASSWORD),
        Err(StunError::IntegrityMismatch)
    );
    // Inside the FINGERPRINT itself: integrity still holds.
    let mut bad = raw.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert_eq!(Message::decode(&bad), Err(StunError::FingerprintMismatch));
    verify_integrity(&bad, SHORT_TERM_PASSWORD).unwrap();
}

#[test]
fn rfc3489_request_is_answered_with_mapped_address_and_its_own_id() {
    // A classic Binding request: 128-bit transaction ID, no cookie, a
    // CHANGE-REQUEST asking for no change (what old clients always send).
    let mut raw = vec![0x00, 0x01, 0x00, 0x08];
    raw.extend_from_slice(&[0xA5; 16]);
    raw.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0]);
    assert!(!is_stun(&raw), "no cookie: not demultiplexable");
    let request = Message::decode(&raw).unwrap();
    assert!(request.is_rfc3489());
    assert_eq!(request.transaction_id_128(), [0xA5; 16]);
    assert_eq!(
        request.get(attr::CHANGE_REQUEST),
        Some(&Attribute::ChangeRequest {
            change_ip: false,
            change_port: false
        })
    );
    assert!(request.unknown_comprehension_required().is_empty());

    let from: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let answer = Message::binding_success(&request, from)
        .encode(None, false)
        .unwrap();
    assert_eq!(&answer[..4], &[0x01, 0x01, 0x00, 0x0C]);
    assert_eq!(&answer[4..20], &[0xA5; 16]);
    // MAPPED-ADDRESS in the clear.
    assert_eq!(
        &answer[20..],
        &[
            0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x9C, 0x40, 198, 51, 100, 7
        ]
    );
    let decoded = Message::decode(&answer).unwrap();
    assert_eq!(decoded.mapped_address(), Some(from));
    assert_eq!(decoded.xor_mapped_address(), None);
}

#[test]
fn unknown_attributes_are_kept_and_comprehension_required_ones_reported() {
    let request = Message::binding_request(TransactionId([1; 12]))
        .with(Attribute::Other {
            typ: 0x7777,
            value: vec![1, 2, 3],
        })
        .with(Attribute::Other {
            typ: 0xC001,
            value: vec![],
        })
        .with(Attribute::Other {
            typ: 0x0002,
            value: vec![0; 8],
        });
    let raw = request.encode(None, true).unwrap();
    let decoded = Message::decode(&raw).unwrap();
    assert_eq!(
        decoded.unknown_comprehension_required(),
        vec![0x7777, 0x0002]
    );
    assert_eq!(
        decoded.get(0xC001),
        Some(&Attribute::Other {
            typ: 0xC001,
            value: vec![]
        })
    );

    let answer = Message::unknown_attributes_response(&decoded, vec![0x7777, 0x0002])
        .encode(None, true)
        .unwrap();
    let answer = Message::decode(&answer).unwrap();
    assert_eq!(answer.class, Class::Error);
    assert_eq!(answer.error_code(), Some((420, "Unknown Attribute")));
    assert_eq!(
        answer.get(attr::UNKNOWN_ATTRIBUTES),
        Some(&Attribute::UnknownAttributes(vec![0x7777, 0x0002]))
    );
}

#[test]
fn attributes_after_message_integrity_are_ignored() {
    let key = b"pw";
    let mut raw = Message::binding_request(TransactionId([2; 12]))
        .with(Attribute::Username("a:b".into()))
        .encode(Some(key), false)
        .unwrap();
    // Smuggle PRIORITY after MESSAGE-INTEGRITY and fix the length.
    raw.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0, 0, 0, 9]);
    let len = (raw.len() - HEADER_LEN) as u16;
    raw[2..4].copy_from_slice(&len.to_be_bytes());
    let m = Message::decode(&raw).unwrap();
    assert_eq!(m.priority(), None);
    verify_integrity(&raw, key).unwrap();
}

#[test]
fn ice_check_round_trip() {
    let key = b"remote-password";
    let request = Message::binding_request(TransactionId(*b"abcdefghijkl"))
        .with(Attribute::Username("relay:peer".into()))
        .with(Attribute::Priority(0x6e7f_1eff))
        .with(Attribute::IceControlling(0x0102_0304_0506_0708))
        .with(Attribute::UseCandidate);
    let raw = request.encode(Some(key), true).unwrap();
    assert!(is_stun(&raw));
    assert_eq!(message_len(&raw), Ok(Some(raw.len())));
    let m = Message::decode(&raw).unwrap();
    verify_integrity(&raw, key).unwrap();
    assert!(m.use_candidate());
    assert_eq!(m.ice_controlling(), Some(0x0102_0304_0506_0708));
    assert_eq!(m.username(), Some("relay:peer"));

    let from: SocketAddr = "[2001:db8::5]:5004".parse().unwrap();
    let answer = Message::binding_success(&m, from)
        .with(Attribute::Software("softswitch".into()))
        .encode(Some(key), true)
        .unwrap();
    verify_integrity(&answer, key).unwrap();
    let answer = Message::decode(&answer).unwrap();
    assert_eq!(answer.class, Class::Success);
    assert_eq!(answer.transaction_id, m.transaction_id);
    assert_eq!(answer.xor_mapped_address(), Some(from));
}

#[test]
fn header_refusals() {
    assert_eq!(Message::decode(&[]), Err(StunError::TooShort { len: 0 }));
    let raw = vector("sample_request.bin");
    assert_eq!(
        Message::decode(&raw[..raw.len() - 4]),
        Err(StunError::LengthMismatch {
            declared: 88,
            actual: 84
        })
    );
    let mut rtp = raw.clone();
    rtp[0] = 0x80;
    assert_eq!(Message::decode(&rtp), Err(StunError::NotStun));
    assert!(!is_stun(&rtp));
    assert_eq!(message_len(b"GET / HTTP/1.1\r\n"), Err(StunError::NotStun));
    assert_eq!(message_len(&raw[..3]), Ok(None));
    let mut overrun = Message::binding_request(TransactionId([0; 12]))
        .encode(None, false)
        .unwrap();
    overrun.extend_from_slice(&[0x80, 0x22, 0x00, 0x08, b'a', b'b', b'c', b'd']);
    overrun[3] = 8;
    assert_eq!(
        Message::decode(&overrun),
        Err(StunError::AttributeOverrun {
            typ: 0x8022,
            offset: 20
        })
    );
    assert_eq!(
        verify_integrity(
            &Message::binding_request(TransactionId([0; 12]))
                .encode(None, true)
                .unwrap(),
            b"k"
        ),
        Err(StunError::NoIntegrity)
    );
}

#[test]
fn encoding_refuses_what_the_length_field_cannot_hold() {
    let m = Message::binding_request(TransactionId([0; 12]))
        .with(Attribute::Software("x".repeat(70_000)));
    assert!(matches!(
        m.encode(None, false),
        Err(StunError::TooLong { .. })
    ));
    let m = Message::binding_request(TransactionId([0; 12]))
        .with(Attribute::Software("x".repeat(40_000)))
        .with(Attribute::Software("y".repeat(40_000)));
    let mut out = vec![9];
    assert!(m.encode_into(&mut out, &EncodeOptions::default()).is_err());
    assert_eq!(out, vec![9]);
}

/// A small deterministic generator, so a failure replays.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Everything the codec offers on untrusted bytes; whatever decodes must
/// survive re-encoding unchanged.
fn exercise(buf: &[u8]) {
    let _ = is_stun(buf);
    let _ = message_len(buf);
    let _ = verify_integrity(buf, SHORT_TERM_PASSWORD);
    if let Ok(m) = Message::decode(buf) {
        let _ = m.unknown_comprehension_required();
        let mut plain = m.clone();
        plain.attributes.retain(|a| {
            !matches!(
                a,
                Attribute::MessageIntegrity(_) | Attribute::Fingerprint(_)
            )
        });
        let again = plain.encode(None, false).unwrap();
        assert_eq!(Message::decode(&again).unwrap(), plain, "{buf:02x?}");
    }
}

#[test]
fn no_input_panics() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let vectors: Vec<Vec<u8>> = [
        "sample_request.bin",
        "ipv4_response.bin",
        "ipv6_response.bin",
        "longterm_request.bin",
    ]
    .iter()
    .map(|n| vector(n))
    .collect();
    for v in &vectors {
        for cut in 0..=v.len() {
            exercise(&v[..cut]);
        }
        for i in 0..v.len() {
            for _ in 0..8 {
                let mut m = v.clone();
                m[i] = rng.next() as u8;
                exercise(&m);
            }
        }
    }
    // Random bytes, and random bodies behind a valid header so the
    // attribute walk is reached rather than the header refusing at once.
    for round in 0..200_000 {
        let len = rng.below(160);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if round % 2 == 0 && len >= HEADER_LEN {
            let body = (len - HEADER_LEN) & !3;
            buf.truncate(HEADER_LEN + body);
            buf[0] &= 0x3F;
            buf[2..4].copy_from_slice(&(body as u16).to_be_bytes());
            buf[4..8].copy_from_slice(&COOKIE);
            // Plausible attribute headers: small types and lengths.
            let mut at = HEADER_LEN;
            while at + 4 <= buf.len() {
                let typ = [
                    0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x0020, 0x0024, 0x0025, 0x8022, 0x8028,
                    0x8029, 0x802A, 0x0003, 0x7FFF, 0xFFFF,
                ][rng.below(15)];
                buf[at..at + 2].copy_from_slice(&(typ as u16).to_be_bytes());
                let alen = rng.below(24);
                buf[at + 2..at + 4].copy_from_slice(&(alen as u16).to_be_bytes());
                at += 4 + pad4(alen);
            }
        }
        exercise(&buf);
    }
}
