//! RTP packets (RFC 3550 §5.1): the fixed header, CSRC list, header
//! extension and padding, read without copying and written into a
//! caller's buffer, plus the serial-number arithmetic that sequence
//! numbers and timestamps need once they wrap.

/// The fixed header's length; CSRCs and an extension may follow it.
pub const HEADER_LEN: usize = 12;

/// The only RTP version in use; versions 0 and 1 are pre-RFC 1889 and
/// anything with another version is not RTP (RFC 7983 tells STUN, DTLS and
/// ZRTP apart by the same two bits).
pub const VERSION: u8 = 2;

/// What makes a datagram not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet of {0} bytes is shorter than the RTP header")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    #[error("CSRC list runs past the end of the packet")]
    TruncatedCsrc,
    #[error("header extension runs past the end of the packet")]
    TruncatedExtension,
    #[error("padding length {0} does not fit the packet")]
    Padding(u8),
    #[error("payload type {0} does not fit in 7 bits")]
    PayloadType(u8),
    #[error("buffer of {have} bytes cannot hold a {need}-byte packet")]
    BufferTooSmall { need: usize, have: usize },
}

/// The fields of the fixed header that a media endpoint acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A header extension (RFC 3550 §5.3.1): the profile-defined 16 bits and
/// the extension's words, unparsed (RFC 8285 elements live inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// A parsed packet borrowing from the datagram it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    /// The contributing sources, 4 bytes each (kept raw: a terminating
    /// endpoint has no mixer to credit them to).
    csrc: &'a [u8],
    pub extension: Option<Extension<'a>>,
    /// The payload with any padding removed.
    pub payload: &'a [u8],
    /// Padding bytes that followed the payload (0 when the P bit is clear).
    pub padding: u8,
}

impl<'a> Packet<'a> {
    /// Reads an RTP packet. Every length is checked against the datagram,
    /// so no input makes it panic.
    pub fn parse(data: &'a [u8]) -> Result<Packet<'a>, RtpError> {
        if data.len() < HEADER_LEN {
            return Err(RtpError::TooShort(data.len()));
        }
        let version = data[0] >> 6;
        if version != VERSION {
            return Err(RtpError::Version(version));
        }
        let has_padding = data[0] & 0x20 != 0;
        let has_extension = data[0] & 0x10 != 0;
        let csrc_count = usize::from(data[0] & 0x0F);
        let header = Header {
            marker: data[1] & 0x80 != 0,
            payload_type: data[1] & 0x7F,
            sequence: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        };
        let mut at = HEADER_LEN;
        let csrc = data
            .get(at..at + 4 * csrc_count)
            .ok_or(RtpError::TruncatedCsrc)?;
        at += csrc.len();
        let extension = if has_extension {
            let head = data.get(at..at + 4).ok_or(RtpError::TruncatedExtension)?;
            let profile = u16::from_be_bytes([head[0], head[1]]);
            let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
            at += 4;
            let ext = data
                .get(at..at + 4 * words)
                .ok_or(RtpError::TruncatedExtension)?;
            at += ext.len();
            Some(Extension { profile, data: ext })
        } else {
            None
        };
        let mut end = data.len();
        let mut padding = 0;
        if has_padding {
            // The count includes itself, so zero is as wrong as too many.
            padding = data[end - 1];
            let pad = usize::from(padding);
            if pad == 0 || pad > end - at {
                return Err(RtpError::Padding(padding));
            }
            end -= pad;
        }
        Ok(Packet {
            header,
            csrc,
            extension,
            payload: &data[at..end],
            padding,
        })
    }

    /// The contributing sources' SSRCs.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    pub fn csrc_count(&self) -> usize {
        self.csrc.len() / 4
    }
}

impl Header {
    /// Writes the 12-byte fixed header (no CSRC, extension or padding: what
    /// a single-source endpoint sends) at the start of `buf`.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtpError> {
        if self.payload_type > 0x7F {
            return Err(RtpError::PayloadType(self.payload_type));
        }
        let have = buf.len();
        let out = buf.get_mut(..HEADER_LEN).ok_or(RtpError::BufferTooSmall {
            need: HEADER_LEN,
            have,
        })?;
        out[0] = VERSION << 6;
        out[1] = (u8::from(self.marker) << 7) | self.payload_type;
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(HEADER_LEN)
    }

    /// Replaces `out` with a whole packet: this header, then `payload`.
    /// `out` keeps its capacity, so a reused buffer costs no allocation.
    pub fn build(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), RtpError> {
        out.clear();
        out.resize(HEADER_LEN, 0);
        self.write(out)?;
        out.extend_from_slice(payload);
        Ok(())
    }
}

/// Whether a datagram on an RTP port is RTCP multiplexed onto it (RFC
/// 5761 §4: the second byte, as RTCP packet type, is 192..=223, which as
/// marker + payload type are values RTP must not use).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 8 && data[0] >> 6 == VERSION && (192..=223).contains(&data[1])
}

/// `a - b` for sequence numbers, as the shortest signed distance around
/// the 16-bit circle (RFC 1982 serial arithmetic): 1 - 65535 is 2.
pub fn seq_delta(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// Whether sequence number `a` comes after `b`, across the wrap.
pub fn seq_after(a: u16, b: u16) -> bool {
    seq_delta(a, b) > 0
}

/// `a - b` for RTP timestamps, across the 32-bit wrap.
pub fn ts_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Extends a 16-bit sequence number to 64 bits next to `reference`, an
/// extended number near it: the candidate closest to the reference wins,
/// so numbers keep growing across the wrap and late ones stay behind.
pub fn extend_seq(reference: u64, seq: u16) -> u64 {
    let delta = seq_delta(seq, reference as u16);
    reference.wrapping_add_signed(i64::from(delta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            marker: true,
            payload_type: 8,
            sequence: 0xFFFE,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x1234_5678,
        }
    }

    #[test]
    fn a_built_packet_reads_back() {
        let mut out = Vec::new();
        header().build(&[1, 2, 3], &mut out).unwrap();
        assert_eq!(
            out,
            [
                0x80, 0x88, 0xFF, 0xFE, 0xDE, 0xAD, 0xBE, 0xEF, 0x12, 0x34, 0x56, 0x78, 1, 2, 3
            ]
        );
        let p = Packet::parse(&out).unwrap();
        assert_eq!(p.header, header());
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!((p.csrc_count(), p.extension, p.padding), (0, None, 0));
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped_to_the_payload() {
        let mut p = vec![0xB2, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 9]); // two CSRCs
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]); // one-word extension
        p.extend_from_slice(&[5, 6]); // payload
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let parsed = Packet::parse(&p).unwrap();
        assert_eq!(parsed.csrcs().collect::<Vec<_>>(), vec![7, 9]);
        assert_eq!(
            parsed.extension,
            Some(Extension {
                profile: 0xBEDE,
                data: &[0x10, 0xAA, 0, 0]
            })
        );
        assert_eq!(parsed.payload, &[5, 6]);
        assert_eq!(parsed.padding, 3);
    }

    #[test]
    fn malformed_packets_get_typed_errors() {
        let ok = [0x80u8, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        assert_eq!(Packet::parse(&ok[..11]), Err(RtpError::TooShort(11)));
        let mut v1 = ok;
        v1[0] = 0x40;
        assert_eq!(Packet::parse(&v1), Err(RtpError::Version(1)));
        let mut csrc = ok;
        csrc[0] = 0x81;
        assert_eq!(Packet::parse(&csrc), Err(RtpError::TruncatedCsrc));
        let mut ext = ok.to_vec();
        ext[0] = 0x90;
        ext.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0, 0, 0, 0]);
        assert_eq!(Packet::parse(&ext), Err(RtpError::TruncatedExtension));
        let mut pad = ok.to_vec();
        pad[0] = 0xA0;
        pad.push(0);
        assert_eq!(Packet::parse(&pad), Err(RtpError::Padding(0)));
        *pad.last_mut().unwrap() = 2;
        assert_eq!(Packet::parse(&pad), Err(RtpError::Padding(2)));
        *pad.last_mut().unwrap() = 1;
        assert_eq!(Packet::parse(&pad).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn writing_checks_the_payload_type_and_the_buffer() {
        let mut h = header();
        let mut small = [0u8; 11];
        assert_eq!(
            h.write(&mut small),
            Err(RtpError::BufferTooSmall { need: 12, have: 11 })
        );
        h.payload_type = 128;
        assert_eq!(h.write(&mut [0u8; 12]), Err(RtpError::PayloadType(128)));
    }

    #[test]
    fn no_input_makes_the_parser_panic() {
        // Deterministic xorshift: every header bit pattern and length mix.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let len = (next() % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = buf.first_mut() {
                *b = (*b & 0x3F) | 0x80;
            }
            if let Ok(p) = Packet::parse(&buf) {
                assert!(p.payload.len() + HEADER_LEN <= buf.len());
                let _ = p.csrcs().count();
            }
        }
    }

    #[test]
    fn rtcp_is_told_from_rtp() {
        let sender_report = [0x80, 200, 0, 6, 0, 0, 0, 1];
        assert!(is_rtcp(&sender_report));
        assert!(!is_rtcp(&[0x80, 0x00, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0x80 | 8, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]));
    }

    #[test]
    fn sequence_arithmetic_crosses_the_wrap() {
        assert_eq!(seq_delta(1, 65535), 2);
        assert_eq!(seq_delta(65535, 1), -2);
        assert!(seq_after(0, 65535));
        assert!(!seq_after(65535, 0));
        assert!(!seq_after(5, 5));
        assert_eq!(ts_delta(10, u32::MAX - 9), 20);
        let base = 1u64 << 32;
        let mut ext = base + 65534;
        for (seq, want) in [(65535u16, 65535u64), (0, 65536), (2, 65538), (1, 65537)] {
            let got = extend_seq(ext, seq);
            assert_eq!(got - base, want, "seq {seq}");
            ext = ext.max(got);
        }
    }
}
