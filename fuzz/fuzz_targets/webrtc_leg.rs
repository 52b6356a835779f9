//! Datagrams on a browser's leg (`media::webrtc`): what the endpoint's port
//! hands the WebRTC transport before any RTP, i.e. STUN checks and DTLS
//! records from anyone who knows the port.
//!
//! The transport first sees one valid, nominating check from the source,
//! so DTLS input reaches `dimpl` (a source that never passed a check is
//! ignored, which is asserted too).
//!
//! Properties: nothing panics; garbage never yields SRTP keys (keys need a
//! handshake with a certificate matching the SDP fingerprint); the
//! demultiplexing follows RFC 7983 (RTP/RTCP range back to the endpoint,
//! STUN and DTLS ranges kept).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use media::stun::{Attribute, Message, TransactionId};
use media::webrtc::{Demux, DtlsIdentity, DtlsRole, WebRtcConfig, WebRtcPeer, WebRtcTransport};

fn identity() -> Arc<DtlsIdentity> {
    static ID: OnceLock<Arc<DtlsIdentity>> = OnceLock::new();
    ID.get_or_init(|| Arc::new(DtlsIdentity::generate().expect("a certificate")))
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let role = if data.len() % 2 == 0 {
        DtlsRole::Server
    } else {
        DtlsRole::Client
    };
    let config = WebRtcConfig::new(
        identity(),
        Some(WebRtcPeer {
            ice_ufrag: "peer".into(),
            fingerprint: vec![0x11; 32],
            role,
        }),
    );
    let mut leg = WebRtcTransport::new(&config);
    let now = Instant::now();
    let stranger = SocketAddr::from(([192, 0, 2, 9], 9));
    let browser = SocketAddr::from(([192, 0, 2, 1], 5000));
    // From a source that passed no check, DTLS is not even read.
    if (20..=63).contains(&data.first().copied().unwrap_or(0)) {
        assert_eq!(
            leg.receive(data, stranger, now),
            Demux::Control { alive: false }
        );
    }
    let check = Message::binding_request(TransactionId([7; 12]))
        .with(Attribute::Username(format!("{}:peer", config.local.ufrag)))
        .with(Attribute::UseCandidate)
        .encode(Some(config.local.pwd.as_bytes()), true)
        .expect("a check encodes");
    leg.receive(&check, browser, now);
    assert_eq!(leg.selected(), Some(browser));
    let demux = leg.receive(data, browser, now);
    match data.first() {
        Some(128..=191) => assert_eq!(demux, Demux::Media),
        Some(0..=3 | 20..=63) => assert!(matches!(demux, Demux::Control { .. })),
        _ => assert_eq!(demux, Demux::Garbage),
    }
    leg.handle_timeout(now);
    while leg.poll_transmit().is_some() {}
    assert!(leg.take_keys().is_none(), "keys from garbage");
});
