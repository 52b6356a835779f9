//! The sans-io front of the SIP core (RFC 3261): bytes in, checked
//! `rsip` messages out, and the bytes of the responses that refuse them.
//!
//! # The path of a datagram
//!
//! ```text
//! bytes ─ parse_datagram ─┬─ Inbound::Stun / KeepAlive ── ignore
//!                         ├─ Inbound::Message(req) ─ precheck ─┬─ Ok ── transaction layer
//!                         │                                    └─ Rejection ── response_for / encode
//!                         └─ ParseError ─ lenient_headers ─┬─ Some(ctx) ── reply_from_context(ctx, e.status_code(), …)
//!                                                          └─ None ── drop
//! ```
//!
//! On TCP/TLS a [`StreamFramer`] cuts the stream first and each
//! [`Frame::Message`] goes through [`parse_frame`] the same way.
//!
//! # What a parsed message guarantees
//!
//! Parsing produces `rsip` 0.4 messages: the header section is split into
//! fields here (continuation lines unfolded, compact names such as
//! `v:`/`i:`/`l:` expanded, see `head.rs`) and each field becomes the
//! `rsip::Header` rsip's parser would have made of it (`header_name.rs`);
//! rsip parses the start line. The headers the SIP core relies on are then
//! checked. A message
//! returned by [`parse_datagram`] or [`parse_frame`] has:
//!
//! - a `SIP/2.0` start line with single spaces, a method rsip knows
//!   (case-sensitive), a Request-URI made of URI characters only;
//! - at most one To, From, Call-ID, CSeq, Max-Forwards and Content-Length;
//! - a body of exactly Content-Length bytes (datagram excess dropped);
//! - To and From with a `sip`, `sips` or `tel` URI, balanced quotes,
//!   token-only unquoted display names and no blanks inside `<>`;
//! - every Via readable by [`parse_via`], a CSeq `<u32> <token>`, a
//!   non-blank Call-ID and Max-Forwards in 0-255.
//!
//! Presence of the mandatory headers is [`precheck`]'s job, so a request
//! missing them can still be answered with its own 400.
//!
//! # What rsip 0.4 gets wrong, and what to use instead
//!
//! - **Request-URIs and name-addr URIs**: the user part ends at the first
//!   `.` — `sip:j.user@example.com` parses as *host* `j.user@example.com`
//!   with no user (it prints back unchanged, but `uri.user()` is `None`).
//!   A `;` in the user part (RFC 4475 `semiuri`), URI headers (`?...`) and
//!   IPv6 hosts (`sip:[2001:db8::1]`) make parsing fail. Compare users on
//!   the raw text when it matters.
//! - **tel URIs**: `tel:+1234` becomes host `tel`, port `1234`, no scheme
//!   (the `+` is lost); `tel:+4912345` fails (the "port" overflows). A tel
//!   Request-URI is therefore answered 416 ([`ParseError::UnsupportedUriScheme`]
//!   or a [`precheck`] rejection), never routed on a changed number.
//! - **Via**: the typed Via fails on IPv6 sent-by and unknown transports
//!   and drops every via-parm after a comma: use [`parse_via`] and
//!   [`via_received`] instead of `Via::typed()`.
//! - **Methods**: a closed enum; any other method is a parse failure
//!   ([`ParseError::UnknownMethod`], answered 501 through
//!   [`lenient_headers`]).
//! - **Encoding**: rsip's `Display` turns a binary body into lossy UTF-8
//!   and prints `400 BadRequest`; use [`encode`]. `StatusCode::from(202)`
//!   is `Other(202, "Other")` (rsip has 201 as "Accepted").
//! - rsip never panicked on anything tried here (the RFC 4475 messages,
//!   random bytes, and mutations of valid messages: 20,000 in every test run,
//!   500,000 in the ignored long run), so it is called directly, without
//!   `catch_unwind`.

#![forbid(unsafe_code)]

mod error;
mod framer;
mod head;
mod header_name;
mod lenient;
mod message;
mod precheck;
mod response;
mod syntax;
mod via;

#[cfg(test)]
mod tests;

pub use error::{FramingError, ParseError};
pub use framer::{Frame, StreamFramer};
pub use lenient::{ReplyContext, bad_request, lenient_headers, reply_from_context};
pub use precheck::{Rejection, precheck};
pub use response::{Encode, database_unavailable, encode, response_for, standard_reason};
pub use via::{ViaParam, ViaParm, parse_via, via_received};

use message::{Framing, parse_message};

/// The largest message accepted by default: 64 KiB covers any UDP datagram
/// (65,507 bytes of payload at most) and is far above real SIP traffic
/// (a few KiB even with large SDP or MESSAGE bodies), so anything bigger is
/// a mistake or an attack.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// What a datagram turned out to be.
// Returned once per datagram and matched at once: moving the message is
// cheaper than the allocation a Box would add to every one of them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A SIP request or response.
    Message(rsip::SipMessage),
    /// A datagram of CRLFs only: a keep-alive (RFC 5626 §4.4.1); ignore it.
    KeepAlive,
    /// A STUN packet sharing the SIP port (first byte 0-3, RFC 7983 §7);
    /// hand it to STUN or ignore it.
    Stun,
}

/// Parses one UDP datagram with the default size limit.
pub fn parse_datagram(bytes: &[u8]) -> Result<Inbound, ParseError> {
    parse_datagram_with_limit(bytes, DEFAULT_MAX_MESSAGE_SIZE)
}

/// Parses one UDP datagram, refusing one over `max_size` bytes.
///
/// Content-Length may be absent (the body is the rest of the datagram) and
/// may be smaller than what follows (the excess is dropped, RFC 3261
/// §18.3); larger is [`ParseError::ContentLengthTooLarge`]. Never panics.
pub fn parse_datagram_with_limit(bytes: &[u8], max_size: usize) -> Result<Inbound, ParseError> {
    match bytes.first() {
        None => Err(ParseError::Empty),
        Some(0..=3) => Ok(Inbound::Stun),
        Some(_) if bytes.iter().all(|&c| c == b'\r' || c == b'\n') => Ok(Inbound::KeepAlive),
        Some(_) => parse_message(bytes, max_size, Framing::Datagram).map(Inbound::Message),
    }
}

/// Parses one message cut by a [`StreamFramer`] (Content-Length is
/// mandatory), refusing one over `max_size` bytes. Never panics.
pub fn parse_frame(bytes: &[u8], max_size: usize) -> Result<rsip::SipMessage, ParseError> {
    parse_message(bytes, max_size, Framing::Stream)
}
