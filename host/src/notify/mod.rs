//! Outbound notifications other than SMS: e-mail ([`email`]).

pub mod email;
