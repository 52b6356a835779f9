//! Media engine of the softswitch: the RTP/RTCP relay that anchors calls'
//! media, with the codecs, player and recorder to come (see `README.md`).
#![forbid(unsafe_code)]

pub mod ports;
pub mod relay;

pub use relay::{Relay, RelayConfig, RelayError, RelayStats, Side, Stream};
