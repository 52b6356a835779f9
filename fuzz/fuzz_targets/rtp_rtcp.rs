//! RTP and RTCP datagrams as the media path reads them: the RTP parser
//! (`media::rtp`), the RFC 5761/7983 demultiplexing tests, the serial
//! arithmetic on sequence numbers, and SRTP/SRTCP (`media::srtp`), which
//! reads the RTP header (CSRCs, extension) to find what to decrypt.
//!
//! The relay itself (`media::relay`) tells STUN from media by the first
//! byte and the magic cookie in a private function and otherwise forwards
//! bytes unread; that rule is asserted here against `is_stun`/`is_rtcp`.
//!
//! Properties: nothing panics; a parsed packet's parts add up to the
//! datagram; a header written back and parsed again is the same header;
//! STUN, RTP and multiplexed RTCP are never confused; SRTP protect then
//! unprotect gives the packet back, and unprotecting garbage fails cleanly,
//! under every suite (AES-CM with HMAC-SHA1, AES-GCM).
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::rtp::{self, HEADER_LEN, Packet};
use media::srtp::{MasterKey, SrtpContext, Suite};
use media::stun::is_stun;

fn contexts(suite: Suite) -> (SrtpContext, SrtpContext) {
    let key = &[0x2b; 32][..suite.master_key_len()];
    let master = MasterKey::from_parts(key, &[0x5a; 14][..suite.master_salt_len()])
        .expect("the suite's own lengths");
    (
        SrtpContext::new(suite, &master),
        SrtpContext::new(suite, &master),
    )
}

fuzz_target!(|data: &[u8]| {
    let parsed = Packet::parse(data);
    if let Ok(p) = &parsed {
        let ext = p.extension.map_or(0, |e| 4 + e.data.len());
        assert_eq!(
            HEADER_LEN + 4 * p.csrc_count() + ext + p.payload.len() + usize::from(p.padding),
            data.len(),
            "parts do not add up"
        );
        assert_eq!(p.csrcs().count(), p.csrc_count());
        assert!(p.header.payload_type <= 0x7F);
        let mut out = Vec::new();
        p.header
            .build(p.payload, &mut out)
            .expect("a parsed header does not write");
        let back = Packet::parse(&out).expect("a written packet does not parse");
        assert_eq!(back.header, p.header);
        assert_eq!(back.payload, p.payload);
    }
    // RFC 7983: the first byte tells STUN (0-3) from RTP/RTCP (128-191).
    if is_stun(data) {
        assert!(
            parsed.is_err() && !rtp::is_rtcp(data),
            "STUN taken for media"
        );
    }
    if rtp::is_rtcp(data) {
        assert!(data.len() >= 8 && data[0] >> 6 == 2 && (192..=223).contains(&data[1]));
    }

    // Sequence numbers: extending keeps the low 16 bits.
    if let [a0, a1, b0, b1, ..] = *data {
        let (a, b) = (u16::from_be_bytes([a0, a1]), u16::from_be_bytes([b0, b1]));
        let reference = u64::from(b) << (data.len() % 40);
        assert_eq!(rtp::extend_seq(reference, a) as u16, a);
        if a != b && a.wrapping_sub(b) != 0x8000 {
            assert_ne!(rtp::seq_after(a, b), rtp::seq_after(b, a));
        }
    }

    // SDES's AES-CM suites and DTLS-SRTP's AES-GCM ones (RFC 7714).
    let suite = Suite::ALL[data.len() % Suite::ALL.len()];
    // Garbage to unprotect: refused, never a panic.
    let (_, mut rx) = contexts(suite);
    let _ = rx.unprotect_rtp(&mut data.to_vec());
    let _ = rx.unprotect_rtcp(&mut data.to_vec());
    // Protect, then unprotect with the peer's context: the same packet.
    let (mut tx, mut rx) = contexts(suite);
    let mut packet = data.to_vec();
    if rtp::is_rtcp(data) {
        if tx.protect_rtcp(&mut packet).is_ok() {
            let n = rx
                .unprotect_rtcp(&mut packet)
                .expect("our SRTCP packet refused");
            assert_eq!(&packet[..n], data);
        }
    } else if tx.protect_rtp(&mut packet).is_ok() {
        let n = rx
            .unprotect_rtp(&mut packet)
            .expect("our SRTP packet refused");
        assert_eq!(&packet[..n], data);
    }
});
