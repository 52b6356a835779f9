//! The line structure of a SIP header section: splitting head from body,
//! unfolding continuation lines and expanding compact header names.
//!
//! `rsip` 0.4 parses one header per CRLF-terminated line, with no space
//! between the name and the colon and with long names only. RFC 3261 §7.3.1
//! also allows folded lines (`CRLF` followed by whitespace is equivalent to a
//! single space), whitespace before the colon (`HCOLON`) and compact forms
//! (§7.3.3). This module rewrites a header section into the shape rsip
//! accepts without touching any value's grammar, so rsip still does all of
//! the parsing proper.

use std::borrow::Cow;

use super::error::ParseError;

/// The blank line that ends the header section.
const HEAD_END: &[u8] = b"\r\n\r\n";

/// How strictly header lines are read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Lines end in CRLF exactly; a stray CR or LF, a bad name or non-UTF-8
    /// is an error. Used before handing the message to rsip.
    Strict,
    /// Lines end in LF with an optional CR; broken lines are skipped and the
    /// scan stops at the first empty line. Used to salvage what a 400 needs
    /// and to find Content-Length while framing.
    Lenient,
}

/// Finds `needle` in `haystack`, starting at `from`.
pub(crate) fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Index just past the blank line that ends the header section, if the
/// buffer holds one.
pub(crate) fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    find(bytes, HEAD_END, from).map(|p| p + HEAD_END.len())
}

/// Whether `c` may appear in an RFC 3261 `token`.
pub(crate) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// Whether `s` is a non-empty RFC 3261 `token`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is_token_char(c))
}

fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

pub(crate) fn trim_wsp(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_wsp(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_wsp(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The long name of a compact header name (RFC 3261 §7.3.3 and the IANA
/// registry), matched case-insensitively.
pub(crate) fn expand_compact(name: &[u8]) -> Option<&'static str> {
    let [c] = name else { return None };
    Some(match c.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

/// Whether header `name` (as written, compact or long) is `long`.
pub(crate) fn name_is(name: &[u8], long: &str) -> bool {
    match expand_compact(name) {
        Some(expanded) => expanded.eq_ignore_ascii_case(long),
        None => name.eq_ignore_ascii_case(long.as_bytes()),
    }
}

/// One logical header field: the name as written (trimmed) and the value
/// with continuation lines joined and surrounding whitespace removed.
pub(crate) struct Field<'a> {
    pub name: &'a [u8],
    pub value: Cow<'a, [u8]>,
}

/// Calls `f` for every header field in `head` (the bytes after the start
/// line, without the final blank line).
///
/// Stops early, returning the error, if `f` fails or (in strict mode) a line
/// is malformed.
pub(crate) fn for_each_field<'a>(
    head: &'a [u8],
    mode: Mode,
    mut f: impl FnMut(Field<'a>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let mut pending: Option<Field<'a>> = None;
    let mut rest = head;
    while !rest.is_empty() {
        let (line, terminated) = match rest.iter().position(|&c| c == b'\n') {
            Some(p) => {
                let line = rest.get(..p).unwrap_or_default();
                rest = rest.get(p + 1..).unwrap_or_default();
                (line, true)
            }
            None => (std::mem::take(&mut rest), false),
        };
        let line = match (mode, terminated, line) {
            (_, true, [body @ .., b'\r']) => body,
            (Mode::Strict, true, _) => return Err(ParseError::MalformedHeaderLine),
            (Mode::Lenient, false, [body @ .., b'\r']) => body,
            // The caller cut the CRLF off the last line of a strict head.
            (_, _, line) => line,
        };
        if mode == Mode::Strict && line.contains(&b'\r') {
            return Err(ParseError::MalformedHeaderLine);
        }
        if line.is_empty() {
            match mode {
                // The caller splits at the first blank line, so none is left.
                Mode::Strict => return Err(ParseError::MalformedHeaderLine),
                Mode::Lenient => break,
            }
        }
        if line.first().copied().is_some_and(is_wsp) {
            match pending.as_mut() {
                Some(field) => {
                    let more = trim_wsp(line);
                    if !more.is_empty() {
                        let value = field.value.to_mut();
                        if !value.is_empty() {
                            value.push(b' ');
                        }
                        value.extend_from_slice(more);
                    }
                }
                None if mode == Mode::Strict => return Err(ParseError::MalformedHeaderLine),
                None => {}
            }
            continue;
        }
        if let Some(done) = pending.take() {
            f(done)?;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            if mode == Mode::Strict {
                return Err(ParseError::MalformedHeaderLine);
            }
            continue;
        };
        let name = trim_wsp(line.get(..colon).unwrap_or_default());
        let value = trim_wsp(line.get(colon + 1..).unwrap_or_default());
        if !is_token(name) {
            if mode == Mode::Strict {
                return Err(ParseError::MalformedHeaderLine);
            }
            continue;
        }
        pending = Some(Field {
            name,
            value: Cow::Borrowed(value),
        });
    }
    if let Some(done) = pending {
        f(done)?;
    }
    Ok(())
}

/// Content-Length as RFC 3261 writes it: `1*DIGIT`. rsip would take `+5`
/// (Rust's integer parser does), which no SIP grammar allows.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u32 = std::str::from_utf8(value).ok()?.parse().ok()?;
    usize::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(head: &[u8], mode: Mode) -> Result<Vec<(String, String)>, ParseError> {
        let mut out = Vec::new();
        for_each_field(head, mode, |f| {
            out.push((
                String::from_utf8_lossy(f.name).into_owned(),
                String::from_utf8_lossy(&f.value).into_owned(),
            ));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn unfolds_and_trims() {
        let head =
            b"TO :\r\n sip:a@b ;   tag    = 1\r\nVia  : SIP  /   2.0\r\n /UDP\r\n    h;branch=x  ";
        let fields = collect(head, Mode::Strict).unwrap();
        assert_eq!(
            fields,
            vec![
                ("TO".into(), "sip:a@b ;   tag    = 1".into()),
                ("Via".into(), "SIP  /   2.0 /UDP h;branch=x".into()),
            ]
        );
    }

    #[test]
    fn strict_rejects_bare_lf_and_cr_and_bad_names() {
        assert!(collect(b"To: a\nFrom: b", Mode::Strict).is_err());
        assert!(collect(b"To: a\rb", Mode::Strict).is_err());
        assert!(collect(b"T o: a", Mode::Strict).is_err());
        assert!(collect(b" leading: a", Mode::Strict).is_err());
        assert!(collect(b"nocolon", Mode::Strict).is_err());
    }

    #[test]
    fn lenient_skips_and_stops_at_blank_line() {
        let head = b"junk\nTo: a\n cont\r\n: empty\nFrom: b\r\n\r\nVia: body";
        let fields = collect(head, Mode::Lenient).unwrap();
        assert_eq!(
            fields,
            vec![("To".into(), "a cont".into()), ("From".into(), "b".into())]
        );
    }

    #[test]
    fn compact_forms() {
        assert_eq!(expand_compact(b"v"), Some("Via"));
        assert_eq!(expand_compact(b"I"), Some("Call-ID"));
        assert_eq!(expand_compact(b"q"), None);
        assert_eq!(expand_compact(b"via"), None);
        assert!(name_is(b"L", "Content-Length"));
        assert!(name_is(b"content-LENGTH", "Content-Length"));
        assert!(!name_is(b"Content-Type", "Content-Length"));
    }

    #[test]
    fn content_length_grammar() {
        assert_eq!(parse_content_length(b"0068"), Some(68));
        assert_eq!(parse_content_length(b"-999"), None);
        assert_eq!(parse_content_length(b"+5"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"99999999999"), None);
    }
}
