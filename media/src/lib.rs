//! Media engine of the softswitch: the RTP/RTCP relay that anchors calls'
//! media, and the STUN codec shared by the STUN server and the relay's
//! check validation. Codecs, the player and the recorder are to come (see
//! `README.md`).
#![forbid(unsafe_code)]

mod kernel;
pub mod ports;
pub mod relay;
pub mod stun;

pub use relay::{IceCredentials, Relay, RelayConfig, RelayError, RelayStats, Side, Stream};
