//! Media engine of the softswitch.
//!
//! Today it holds the STUN codec ([`stun`]) shared by the STUN server and
//! the relay's ICE-lite checks. The RTP/RTCP relay, SRTP pass-through,
//! codecs (Opus, G.711), the jitter buffer, RFC 4733 DTMF and the
//! player/recorder the IVR guests drive arrive with the media-path work; see
//! `README.md` beside this crate.
#![forbid(unsafe_code)]

pub mod stun;
