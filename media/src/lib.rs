//! Media engine of the softswitch.
//!
//! - [`relay`]: the RTP/RTCP relay that anchors calls' media, and
//!   [`stun`], the STUN codec shared by the STUN server and the relay's
//!   check validation.
//! - [`endpoint`]: an RTP endpoint terminating one audio stream (the
//!   switch answering for IVR and voicemail): plays prompts, hears and
//!   sends DTMF, records. Opened with [`Relay::open_endpoint`] on the
//!   relay's port range.
//! - Its sans-io parts, each usable alone: [`rtp`] packets, [`g711`],
//!   [`opus`] (libopus) and [`codec`] over them, [`resample`], [`dtmf`]
//!   (RFC 4733 and in-band), [`tone`], the [`jitter`] buffer, [`silence`]
//!   detection, [`wav`] files, the call [`recording`] mixer, [`srtp`]
//!   (SRTP/SRTCP with SDES keys, or DTLS-SRTP's), [`webrtc`] (ICE-lite and
//!   DTLS for a browser's leg).
#![forbid(unsafe_code)]

pub mod codec;
pub mod dtmf;
pub mod endpoint;
pub mod g711;
pub mod jitter;
mod kernel;
pub mod opus;
pub mod ports;
pub mod recording;
pub mod relay;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod silence;
pub mod srtp;
pub mod stun;
pub mod tone;
pub mod wav;
pub mod webrtc;

pub use codec::Codec;
pub use endpoint::{
    BridgeFrame, Endpoint, EndpointConfig, EndpointError, EndpointHandle, EndpointStats,
    PlayOutcome, RecordEnd, RecordOptions, Recording,
};
pub use relay::{IceCredentials, Relay, RelayConfig, RelayError, RelayStats, Side, Stream, Tapped};
