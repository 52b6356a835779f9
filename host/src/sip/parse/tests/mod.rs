//! Conformance (RFC 4475) and robustness tests of the parsing front.

mod rfc4475;
mod robustness;

use rsip::Method;

/// What a switch built on this module supports, for the pre-checks.
pub(super) const EXTENSIONS: &[&str] = &["100rel", "timer", "path", "outbound", "gruu"];

pub(super) fn methods() -> Vec<Method> {
    Method::all()
}

/// A request accepted by `parse_datagram`, or a panic naming why not.
pub(super) fn request(bytes: &[u8]) -> rsip::Request {
    match super::parse_datagram(bytes) {
        Ok(super::Inbound::Message(rsip::SipMessage::Request(r))) => r,
        other => panic!("not a request: {other:?}"),
    }
}
