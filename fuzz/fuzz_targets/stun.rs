//! STUN messages (RFC 8489, RFC 5389, RFC 3489) through the codec the STUN
//! server and the relay's ICE checks share: `is_stun`, `message_len`,
//! `Message::decode`, `verify_integrity`.
//!
//! Properties: nothing panics; a decoded message re-encoded (with
//! MESSAGE-INTEGRITY and FINGERPRINT recomputed if it had them) decodes to
//! the same attributes, and its integrity verifies with the key used;
//! `is_stun` implies `message_len` gives the datagram's length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::stun::{Attribute, Message, is_stun, message_len, verify_integrity};

/// The short-term password of RFC 5769's vectors, so the seeds' integrity
/// checks pass and the fuzzer explores past them.
const KEY: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

fn without_trailers(m: &Message) -> Vec<Attribute> {
    m.attributes
        .iter()
        .filter(|a| {
            !matches!(
                a,
                Attribute::MessageIntegrity(_) | Attribute::Fingerprint(_)
            )
        })
        .cloned()
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if is_stun(data) {
        assert_eq!(message_len(data), Ok(Some(data.len())));
    }
    let _ = message_len(data);
    let _ = verify_integrity(data, KEY);
    let Ok(msg) = Message::decode(data) else {
        return;
    };
    let _ = msg.unknown_comprehension_required();
    let _ = (msg.username(), msg.xor_mapped_address(), msg.error_code());
    let integrity = msg.has_integrity().then_some(KEY);
    let Ok(wire) = msg.encode(integrity, msg.has_fingerprint()) else {
        return;
    };
    let again =
        Message::decode(&wire).unwrap_or_else(|e| panic!("re-encoded message refused: {e:?}"));
    assert_eq!(again.class, msg.class);
    assert_eq!(again.method, msg.method);
    assert_eq!(again.transaction_id, msg.transaction_id);
    assert_eq!(without_trailers(&again), without_trailers(&msg));
    assert_eq!(again.has_integrity(), msg.has_integrity());
    assert_eq!(again.has_fingerprint(), msg.has_fingerprint());
    if integrity.is_some() {
        verify_integrity(&wire, KEY).expect("integrity we computed does not verify");
    }
});
