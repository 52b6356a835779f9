//! From bytes to an `rsip::SipMessage`: the start line is classified first
//! (so 505/501/416 are told apart from a plain 400), the header section is
//! put into the shape rsip reads, rsip parses, and the headers the SIP core
//! relies on are then checked.

use rsip::headers::UntypedHeader;
use rsip::{Header, Headers, SipMessage};

use super::error::ParseError;
use super::head::{self, Field, Mode};
use super::header_name::header_of;
use super::syntax::{name_addr_ok, split_top_level, tighten_params};
use super::via::parse_via;

/// Headers holding name-addrs with parameters, whose optional whitespace
/// rsip's typed forms cannot read.
const ADDRESS_HEADERS: [&str; 6] = ["From", "To", "Contact", "Route", "Record-Route", "Reply-To"];

/// Where the bytes came from, which decides how Content-Length is read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// UDP: the datagram bounds the message; Content-Length may be absent
    /// (the body is the rest of the datagram) or smaller than what follows
    /// (the excess is dropped, RFC 3261 §18.3).
    Datagram,
    /// TCP/TLS: the framer cut the message using Content-Length, which is
    /// mandatory.
    Stream,
}

/// What the start line says, before rsip sees it.
enum StartLine<'a> {
    Request { method: &'a str, uri: &'a str },
    Response,
}

pub(crate) fn parse_message(
    bytes: &[u8],
    max_size: usize,
    framing: Framing,
) -> Result<SipMessage, ParseError> {
    if bytes.len() > max_size {
        return Err(ParseError::TooLarge {
            size: bytes.len(),
            max: max_size,
        });
    }
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let start = bytes
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .ok_or(ParseError::Empty)?;
    let bytes = bytes.get(start..).unwrap_or_default();

    let (line, after_line) = match head::find(bytes, b"\r\n", 0) {
        Some(p) => (
            bytes.get(..p).unwrap_or_default(),
            bytes.get(p + 2..).unwrap_or_default(),
        ),
        None => (bytes, &[][..]),
    };
    let line = std::str::from_utf8(line).map_err(|_| ParseError::MalformedStartLine)?;
    let start_line = classify_start_line(line)?;

    // Split headers from body. A datagram without the blank line is taken
    // as all headers (RFC 4475's `baddn` is stored that way); rsip would
    // otherwise read everything after the first header line as body.
    let (fields_bytes, body) = if after_line.starts_with(b"\r\n") {
        (&[][..], after_line.get(2..).unwrap_or_default())
    } else {
        match head::head_end(after_line, 0) {
            Some(end) => (
                after_line.get(..end - 4).unwrap_or_default(),
                after_line.get(end..).unwrap_or_default(),
            ),
            None => (
                after_line.strip_suffix(b"\r\n").unwrap_or(after_line),
                &[][..],
            ),
        }
    };

    // The fields become rsip headers here, as rsip's parser would make them
    // of the normalised text (long names, no space before the colon, values
    // unfolded and trimmed): rsip only parses the start line.
    let mut headers: Vec<Header> = Vec::with_capacity(16);
    let mut content_length: Option<usize> = None;
    let mut content_length_seen = 0usize;
    head::for_each_field(fields_bytes, Mode::Strict, |Field { name, value }| {
        let value = std::str::from_utf8(&value).map_err(|_| ParseError::MalformedHeaderLine)?;
        // A token (checked by `for_each_field`), so ASCII.
        let name_text = std::str::from_utf8(name).map_err(|_| ParseError::MalformedHeaderLine)?;
        let long = head::expand_compact(name).unwrap_or(name_text);
        if long.eq_ignore_ascii_case("Content-Length") {
            content_length_seen += 1;
            content_length = Some(
                head::parse_content_length(value.as_bytes()).ok_or(ParseError::BadContentLength)?,
            );
        }
        let value = if ADDRESS_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(long)) {
            tighten_params(value).into_owned()
        } else {
            value.to_owned()
        };
        headers.push(header_of(long, value));
        Ok(())
    })?;
    if content_length_seen > 1 {
        return Err(ParseError::DuplicateHeader("Content-Length"));
    }
    let body = match (content_length, framing) {
        (Some(n), _) => body.get(..n).ok_or(ParseError::ContentLengthTooLarge {
            declared: n,
            available: body.len(),
        })?,
        (None, Framing::Datagram) => body,
        (None, Framing::Stream) => return Err(ParseError::MissingContentLength),
    };

    let mut start_only = String::with_capacity(line.len() + 4);
    start_only.push_str(line);
    start_only.push_str("\r\n\r\n");
    let mut message: SipMessage = match start_line {
        StartLine::Response => rsip::Response::try_from(start_only.as_bytes()).map(Into::into),
        _ => rsip::Request::try_from(start_only.as_bytes()).map(Into::into),
    }
    .map_err(|e| classify_rsip_error(&start_line, e))?;
    if *message.version() != rsip::Version::V2 {
        return Err(ParseError::UnsupportedVersion(
            message.version().to_string(),
        ));
    }
    match &mut message {
        SipMessage::Request(r) => {
            r.headers = headers.into();
            r.body = body.to_vec();
        }
        SipMessage::Response(r) => {
            r.headers = headers.into();
            r.body = body.to_vec();
        }
    }
    validate_headers(headers_of(&message))?;
    Ok(message)
}

fn headers_of(message: &SipMessage) -> &Headers {
    match message {
        SipMessage::Request(r) => &r.headers,
        SipMessage::Response(r) => &r.headers,
    }
}

fn is_sip_version(s: &str) -> bool {
    s.eq_ignore_ascii_case("SIP/2.0")
}

/// `SIP/<digits>.<digits>`: a version, if not ours.
fn looks_like_version(s: &str) -> bool {
    let Some((prefix, rest)) = s.split_at_checked(4) else {
        return false;
    };
    prefix.eq_ignore_ascii_case("SIP/")
        && rest
            .split_once('.')
            .is_some_and(|(a, b)| is_digits(a) && is_digits(b))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

fn classify_start_line(line: &str) -> Result<StartLine<'_>, ParseError> {
    if line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (version, rest) = line.split_once(' ').ok_or(ParseError::MalformedStartLine)?;
        if !is_sip_version(version) {
            return Err(if looks_like_version(version) {
                ParseError::UnsupportedVersion(version.to_owned())
            } else {
                ParseError::MalformedStartLine
            });
        }
        let code = rest.split_once(' ').map_or(rest, |(code, _)| code);
        let valid = code.len() == 3
            && is_digits(code)
            && code.parse::<u16>().is_ok_and(|c| (100..=699).contains(&c));
        return if valid {
            Ok(StartLine::Response)
        } else {
            Err(ParseError::MalformedStartLine)
        };
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP
    // each (RFC 4475 `lwsstart`, `trws`, `lwsruri`).
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::MalformedStartLine);
    };
    if !head::is_token(method.as_bytes()) || uri.is_empty() {
        return Err(ParseError::MalformedStartLine);
    }
    if !is_sip_version(version) {
        return Err(if looks_like_version(version) {
            ParseError::UnsupportedVersion(version.to_owned())
        } else {
            ParseError::MalformedStartLine
        });
    }
    if !is_known_method(method) {
        return Err(ParseError::UnknownMethod(method.to_owned()));
    }
    if !request_uri_chars_ok(uri) {
        return Err(ParseError::MalformedRequestUri);
    }
    Ok(StartLine::Request { method, uri })
}

/// Whether rsip has a `Method` for `method`, compared case-sensitively as
/// RFC 3261 §7.1 requires (rsip itself would take `invite`).
/// The methods rsip has a variant for, as RFC 3261 spells them (method
/// names are case-sensitive; rsip's own parser takes any case).
const KNOWN_METHODS: [&str; 14] = [
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

pub(crate) fn is_known_method(method: &str) -> bool {
    KNOWN_METHODS.contains(&method)
}

/// RFC 3261 §25.1: a Request-URI is made of unreserved, reserved and
/// escaped characters only (plus brackets for IPv6 references). rsip would
/// take `<sip:user@example.com>` (RFC 4475 `ltgtruri`) as user `<sip`.
fn request_uri_chars_ok(uri: &str) -> bool {
    let b = uri.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let ok = match c {
            b'%' => {
                let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                i += 2;
                true
            }
            c => c.is_ascii_alphanumeric() || b"-_.!~*'();/?:@&=+$,[]".contains(&c),
        };
        if !ok {
            return false;
        }
        i += 1;
    }
    uri_scheme(uri).is_some()
}

/// The scheme of a URI, if it starts with a syntactically valid one.
pub(crate) fn uri_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some(scheme)
}

/// sip and sips. tel (RFC 3966) would be welcome but rsip 0.4 cannot hold
/// it: `tel:+4912345` fails to parse (read as host `tel`, port `+4912345`),
/// and a short one such as `tel:+1234` parses with the `+` lost. A 416
/// says "not supported" honestly where a 400 or a silently changed number
/// would not.
pub(crate) fn scheme_supported(scheme: &str) -> bool {
    ["sip", "sips"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
}

/// rsip failed; say why as precisely as the start line allows.
fn classify_rsip_error(start_line: &StartLine<'_>, e: rsip::Error) -> ParseError {
    match start_line {
        StartLine::Request { method, uri } if !request_line_parses(method, uri) => {
            match uri_scheme(uri) {
                Some(scheme) if !scheme_supported(scheme) => {
                    ParseError::UnsupportedUriScheme(scheme.to_owned())
                }
                _ => ParseError::MalformedRequestUri,
            }
        }
        StartLine::Request { method, .. } if !is_known_method(method) => {
            ParseError::UnknownMethod((*method).to_owned())
        }
        // rsip's error text quotes the rest of the message; keep logs short.
        _ => ParseError::Malformed(e.to_string().chars().take(120).collect()),
    }
}

/// Whether rsip reads the request line alone. `Uri::try_from` cannot tell:
/// it succeeds on a prefix (`sip:user;par=u%40example.net` of RFC 4475
/// `semiuri`) and leaves the rest unread.
fn request_line_parses(method: &str, uri: &str) -> bool {
    let line = format!("{method} {uri} SIP/2.0\r\n\r\n");
    rsip::Request::try_from(line.as_bytes()).is_ok()
}

/// The checks rsip 0.4 does not make but the SIP core relies on, so that
/// whatever leaves this module has: at most one To/From/Call-ID/CSeq/
/// Max-Forwards; a usable CSeq, Call-ID and Max-Forwards; Vias that
/// [`parse_via`] reads; From/To with a SIP, SIPS or tel URI, quoted and
/// bracketed properly; Contacts quoted and bracketed properly.
fn validate_headers(headers: &Headers) -> Result<(), ParseError> {
    let mut counts = [0usize; 5];
    for h in headers.iter() {
        match h {
            Header::To(to) => {
                counts[0] += 1;
                if !identity_ok(to.value()) {
                    return Err(ParseError::MalformedHeader("To"));
                }
            }
            Header::From(from) => {
                counts[1] += 1;
                if !identity_ok(from.value()) {
                    return Err(ParseError::MalformedHeader("From"));
                }
            }
            Header::CallId(call_id) => {
                counts[2] += 1;
                let v = call_id.value();
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
                    return Err(ParseError::MalformedHeader("Call-ID"));
                }
            }
            Header::CSeq(cseq) => {
                counts[3] += 1;
                if cseq_parts(cseq.value()).is_none() {
                    return Err(ParseError::MalformedHeader("CSeq"));
                }
            }
            Header::MaxForwards(mf) => {
                counts[4] += 1;
                // RFC 3261 §20.22: 0-255. RFC 4475 `scalar02` sends 300.
                let v = mf.value();
                let significant = v.trim_start_matches('0');
                let ok = is_digits(v)
                    && significant.len() <= 3
                    && significant
                        .parse::<u16>()
                        .map_or(significant.is_empty(), |n| n <= 255);
                if !ok {
                    return Err(ParseError::MalformedHeader("Max-Forwards"));
                }
            }
            Header::Via(via) => {
                parse_via(via.value())?;
            }
            Header::Contact(contact) => {
                let v = contact.value();
                if v.trim() != "*" {
                    let ok = split_top_level(v, b',')
                        .is_some_and(|parts| parts.iter().all(|p| name_addr_ok(p)));
                    if !ok {
                        return Err(ParseError::MalformedHeader("Contact"));
                    }
                }
            }
            _ => {}
        }
    }
    for (count, name) in counts
        .iter()
        .zip(["To", "From", "Call-ID", "CSeq", "Max-Forwards"])
    {
        if *count > 1 {
            return Err(ParseError::DuplicateHeader(name));
        }
    }
    Ok(())
}

/// A From or To value: a well-formed name-addr whose URI is a SIP, SIPS or
/// tel URI (RFC 4475 `unksm2` registers an `isbn:` address). Checked on the
/// text: no code reads these headers through rsip's typed forms, whose
/// parse costs more than the rest of the message's checks together.
fn identity_ok(value: &str) -> bool {
    if !name_addr_ok(value) {
        return false;
    }
    // A quoted display name may hold a '<'; the URI's opens after it.
    let value = value.trim_start();
    let after_name = match value.strip_prefix('"') {
        Some(quoted) => {
            let mut escaped = false;
            let end = quoted.find(|c| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            });
            end.and_then(|e| quoted.get(e + 1..)).unwrap_or_default()
        }
        None => value,
    };
    let uri = match after_name.split_once('<') {
        Some((_, rest)) => rest,
        None => after_name,
    };
    uri_scheme(uri).is_some_and(|scheme| {
        ["sip", "sips", "tel"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
    })
}

/// `CSeq = 1*DIGIT LWS Method`, the number fitting 32 bits (RFC 3261
/// §8.1.1.5). Kept on the raw text so an unknown method in CSeq is reported
/// by the pre-checks as a mismatch rather than as a malformed header.
pub(crate) fn cseq_parts(value: &str) -> Option<(u32, &str)> {
    let (seq, method) = value.trim().split_once([' ', '\t'])?;
    let method = method.trim();
    if !is_digits(seq) || !head::is_token(method.as_bytes()) {
        return None;
    }
    Some((seq.parse().ok()?, method))
}

#[cfg(test)]
mod tests {
    use super::{KNOWN_METHODS, identity_ok};

    #[test]
    fn known_methods_are_rsip_s() {
        let theirs: Vec<String> = rsip::Method::all().iter().map(|m| m.to_string()).collect();
        assert_eq!(theirs, KNOWN_METHODS);
    }

    #[test]
    fn identities_are_sip_sips_or_tel_name_addrs() {
        for ok in [
            "<sip:alice@example.com>;tag=1",
            "sip:alice@example.com;tag=1",
            "Alice <sips:alice@example.com>",
            "\"A <b> \\\" c\" <sip:alice@example.com>",
            "<tel:+4912345>",
        ] {
            assert!(identity_ok(ok), "{ok}");
        }
        for bad in [
            "isbn:2983792873",
            "<http://www.example.com>;tag=1",
            "\"sip:x<\" <mailto:a@b>",
            "\"unclosed <sip:a@b>",
            "<sip:a@b",
        ] {
            assert!(!identity_ok(bad), "{bad}");
        }
    }
}
