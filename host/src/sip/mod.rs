//! The SIP core: parsing and framing, request pre-checks, digest
//! authentication, transactions, transports, registrar, messaging and presence.
//!
//! Protocol logic is sans-io (plain types and state machines driven by tests
//! without sockets); the tokio glue lives beside it.

pub mod call;
pub mod dialog;
pub mod digest;
pub mod flood;
pub mod forward;
pub mod messaging;
pub mod overload;
pub mod parse;
pub mod presence;
pub mod receive_time;
pub mod registrar;
pub mod sdp;
pub mod server;
pub mod start;
pub mod system_command;
pub mod transaction;
pub mod transport;
pub mod util;
pub mod websocket;
