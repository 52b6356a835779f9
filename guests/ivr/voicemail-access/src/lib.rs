//! Voicemail access: 950 (the caller's box) and 950msg<ID> (one message) (SPEC §6, §9).
//!
//! The flow is `softswitch_ivr_flows::voicemail_access` (tested natively there, on a
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
    softswitch_ivr_flows::voicemail_access(call, facts)
}
