//! The `softswitch` host: configuration, storage, the Wasm plugin runtime and
//! the admin endpoint. The binary (`src/main.rs`) is a thin CLI over this library.

pub mod admin;
pub mod api;
pub mod app;
pub mod billing;
pub mod cluster;
pub mod config;
pub mod directory;
pub mod ivr;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod plugins;
pub mod portal;
pub mod push;
pub mod queue_wait;
pub mod ratelimit;
pub mod secrets;
pub mod sip;
pub mod sms;
pub mod store;
pub mod stun;
pub mod tls;
pub mod utc;
