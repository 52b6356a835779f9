//! The typed errors of the parsing front.

use thiserror::Error;

/// Why a SIP message could not be accepted.
///
/// Each variant maps to the status code a UAS answers with
/// ([`ParseError::status_code`]) and to a short reason phrase fit for the
/// status line ([`ParseError::reason_phrase`]). A reply is only possible when
/// [`super::lenient_headers`] can recover the headers a response needs; a
/// broken response is always dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The datagram or frame held no bytes at all (or only CRLFs on a path
    /// that does not treat them as a keep-alive).
    #[error("empty message")]
    Empty,
    /// The message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of what was received.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The request line or status line is not `METHOD SP URI SP SIP/2.0` /
    /// `SIP/2.0 SP code SP reason` (extra spaces, missing parts, non-UTF-8).
    #[error("malformed start line")]
    MalformedStartLine,
    /// The start line names a SIP version other than 2.0 (RFC 3261 §8.2.4
    /// wants 505 for a request).
    #[error("unsupported SIP version {0:?}")]
    UnsupportedVersion(String),
    /// The method is a syntactically valid token that `rsip` does not know;
    /// a UAS answers 501 (RFC 3261 §8.2.1). Methods are case-sensitive, so
    /// `invite` lands here too.
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// The Request-URI holds characters no URI may contain, or one `rsip`
    /// cannot parse.
    #[error("malformed Request-URI")]
    MalformedRequestUri,
    /// The Request-URI scheme is neither `sip`, `sips` nor `tel`.
    #[error("unsupported Request-URI scheme {0:?}")]
    UnsupportedUriScheme(String),
    /// A header line is not `name: value` (bad name, stray CR or LF,
    /// a continuation line before any header, non-UTF-8 bytes).
    #[error("malformed header line")]
    MalformedHeaderLine,
    /// A header the SIP core relies on has a value it cannot use.
    #[error("malformed {0} header")]
    MalformedHeader(&'static str),
    /// A header that may appear once appears several times (RFC 4475
    /// `multi01`, `mcl01`).
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    /// Content-Length is not a non-negative integer that fits in 32 bits.
    #[error("malformed Content-Length")]
    BadContentLength,
    /// Content-Length announces more bytes than the datagram carries
    /// (RFC 4475 `clerr`).
    #[error("Content-Length {declared} larger than the {available}-byte body")]
    ContentLengthTooLarge {
        /// What the header says.
        declared: usize,
        /// What actually arrived.
        available: usize,
    },
    /// Content-Length is absent on a stream transport, where it is mandatory
    /// (RFC 3261 §18.3).
    #[error("missing Content-Length on a stream transport")]
    MissingContentLength,
    /// The message is malformed in a way only `rsip` noticed; the text is
    /// rsip's own description, for logs.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl ParseError {
    /// The status code a UAS answers a request failing this way with.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 513,
            Self::UnsupportedVersion(_) => 505,
            Self::UnknownMethod(_) => 501,
            Self::UnsupportedUriScheme(_) => 416,
            _ => 400,
        }
    }

    /// A short reason phrase for the status line, e.g. `Bad Request -
    /// malformed Via`. It names the problem but never echoes input, so it is
    /// always safe to put on the wire.
    pub fn reason_phrase(&self) -> String {
        match self {
            Self::Empty => "Bad Request - empty message".into(),
            Self::TooLarge { .. } => "Message Too Large".into(),
            Self::MalformedStartLine => "Bad Request - malformed start line".into(),
            Self::UnsupportedVersion(_) => "Version Not Supported".into(),
            Self::UnknownMethod(_) => "Not Implemented".into(),
            Self::MalformedRequestUri => "Bad Request - malformed Request-URI".into(),
            Self::UnsupportedUriScheme(_) => "Unsupported URI Scheme".into(),
            Self::MalformedHeaderLine => "Bad Request - malformed header line".into(),
            Self::MalformedHeader(name) => format!("Bad Request - malformed {name}"),
            Self::DuplicateHeader(name) => format!("Bad Request - multiple {name} headers"),
            Self::BadContentLength => "Bad Request - malformed Content-Length".into(),
            Self::ContentLengthTooLarge { .. } => {
                "Bad Request - Content-Length larger than body".into()
            }
            Self::MissingContentLength => "Bad Request - missing Content-Length".into(),
            Self::Malformed(_) => "Bad Request - malformed message".into(),
        }
    }
}

/// Why a byte stream (TCP, TLS) can no longer be split into SIP messages.
///
/// Every variant is **fatal for the connection**: once framing is lost there
/// is no way to find where the next message starts, so the caller closes the
/// connection (after, at best, a final 400/513 it can build with
/// [`super::lenient_headers`] from the bytes it has).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The header section or the whole message (headers + Content-Length)
    /// exceeds the framer's limit.
    #[error("message exceeds the limit of {max} bytes")]
    TooLarge {
        /// The framer's limit.
        max: usize,
    },
    /// A message has no Content-Length, which streams require
    /// (RFC 3261 §18.3).
    #[error("missing Content-Length on a stream transport")]
    MissingContentLength,
    /// Content-Length is not a single non-negative integer.
    #[error("malformed or repeated Content-Length")]
    BadContentLength,
}
