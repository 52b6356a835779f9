//! Media engine of the softswitch.
//!
//! This crate will hold the RTP/RTCP relay, SRTP pass-through, codecs (Opus, G.711),
//! the jitter buffer, RFC 4733 DTMF, and the player/recorder the IVR guests drive.
//! It is empty until the media-path work lands; see `README.md` beside this crate.
#![forbid(unsafe_code)]
