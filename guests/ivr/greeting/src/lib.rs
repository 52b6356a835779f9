//! Greeting recording on 750: record, play back, 1 keeps, 2 records again (SPEC §6).
//!
//! The flow is `softswitch_ivr_flows::greeting` (tested natively there, on a
//! scripted call); this crate only makes it a component of the
//! `softswitch:ivr/scenario` world.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use softswitch_guest_rt as _;

#[path = "../../glue/glue.rs"]
mod glue;

fn flow(
    call: &mut glue::WitCall,
    facts: &softswitch_ivr_flows::Facts,
) -> softswitch_ivr_flows::Result<()> {
    softswitch_ivr_flows::greeting(call, facts)
}
