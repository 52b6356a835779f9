//! What the load-generating examples (`ivr_bench`, `relay_bench`,
//! `webrtc_bench`, `opus_cost`) share: batched UDP I/O on Linux, CPU
//! accounting, and the test voice. Not an example itself (no `main.rs`);
//! each includes it with `#[path = "support/mod.rs"] mod support;`.

// Each example uses only part of this module.
#![allow(dead_code)]

pub mod cpu;
pub mod net;
pub mod voice;
