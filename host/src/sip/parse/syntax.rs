//! Small structural checks on header values that `rsip` 0.4 accepts although
//! RFC 3261 does not (RFC 4475 `quotbal`, `baddn`, `regbadct`). They look at
//! quoting and bracketing only; the grammar proper stays rsip's.

use super::head::is_token_char;

/// Splits `s` at every `sep` that is outside a quoted string and outside
/// `<...>`. `None` when a quoted string or an angle bracket is left open, so
/// callers never act on a half-understood value.
pub(crate) fn split_top_level(s: &str, sep: u8) -> Option<Vec<&str>> {
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut in_angle = false;
    for (i, &c) in bytes.iter().enumerate() {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_quotes = true,
            b'<' if !in_angle => in_angle = true,
            b'>' if in_angle => in_angle = false,
            c if c == sep && !in_angle => {
                parts.push(s.get(start..i)?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes || in_angle {
        return None;
    }
    parts.push(s.get(start..)?);
    Some(parts)
}

/// Removes the optional whitespace RFC 3261 allows around `;` and `=` in
/// header parameters (`SEMI` and `EQUAL` are `SWS x SWS`) and before them
/// after a `>`, outside quoted strings and `<...>`. The result means the same
/// and is what rsip's typed From/To/Contact can read (RFC 4475 `wsinv`).
pub(crate) fn tighten_params(value: &str) -> std::borrow::Cow<'_, str> {
    let b = value.as_bytes();
    let needs = b
        .windows(2)
        .any(|w| matches!(w, [b' ' | b'\t', b';' | b'='] | [b';' | b'=', b' ' | b'\t']));
    if !needs {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut in_quotes = false;
    let mut escaped = false;
    let mut in_angle = false;
    let mut skip_ws = false;
    for c in value.chars() {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quotes = false,
                _ => {}
            }
            out.push(c);
            continue;
        }
        if skip_ws && (c == ' ' || c == '\t') {
            continue;
        }
        skip_ws = false;
        match c {
            '"' => in_quotes = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            ';' | '=' if !in_angle => {
                out.truncate(out.trim_end_matches([' ', '\t']).len());
                skip_ws = true;
            }
            _ => {}
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t')
}

/// Whether one `name-addr` / `addr-spec` element (of From, To, Contact, …)
/// is shaped as RFC 3261 §20.10 requires:
///
/// - quoted strings are closed (`quotbal`);
/// - an unquoted display name is a run of tokens (`baddn`);
/// - `<...>` holds no whitespace (`badaspec`) and is closed;
/// - a bare `addr-spec` (no `<>`) carries no `,` or `?` (`regbadct`), which
///   would be ambiguous with header-level separators.
pub(crate) fn name_addr_ok(element: &str) -> bool {
    let s = element.trim_matches(|c| c == ' ' || c == '\t');
    let bytes = s.as_bytes();
    // Display name: quoted string or tokens, then '<'.
    let mut i = 0;
    let mut saw_display = false;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'"' => {
                i += 1;
                let mut closed = false;
                while let Some(&q) = bytes.get(i) {
                    i += 1;
                    match q {
                        b'\\' => i += 1,
                        b'"' => {
                            closed = true;
                            break;
                        }
                        _ => {}
                    }
                }
                if !closed {
                    return false;
                }
                saw_display = true;
            }
            b'<' => return angle_addr_ok(bytes.get(i..).unwrap_or_default()),
            c if is_lws(c) || is_token_char(c) => {
                i += 1;
                saw_display = true;
            }
            _ => break,
        }
    }
    if saw_display && bytes.contains(&b'<') {
        // Something between the display name and '<' that is no token.
        return false;
    }
    // addr-spec form: everything up to the first ';' is the URI.
    let uri_end = bytes.iter().position(|&c| c == b';').unwrap_or(bytes.len());
    let uri = bytes.get(..uri_end).unwrap_or_default();
    has_scheme(uri)
        && !uri
            .iter()
            .any(|&c| matches!(c, b',' | b'?' | b'"' | b'<' | b'>') || is_lws(c))
        && params_ok(bytes.get(uri_end..).unwrap_or_default())
}

/// `scheme ":" ...` with an RFC 3986 scheme name.
fn has_scheme(uri: &[u8]) -> bool {
    let Some(colon) = uri.iter().position(|&c| c == b':') else {
        return false;
    };
    match uri.get(..colon) {
        Some([first, rest @ ..]) => {
            first.is_ascii_alphabetic()
                && rest
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        }
        _ => false,
    }
}

/// `<uri>` followed by `;params`.
fn angle_addr_ok(bytes: &[u8]) -> bool {
    let Some(close) = bytes.iter().position(|&c| c == b'>') else {
        return false;
    };
    let inner = bytes.get(1..close).unwrap_or_default();
    has_scheme(inner)
        && !inner.iter().any(|&c| is_lws(c) || c == b'<' || c == b'"')
        && params_ok(bytes.get(close + 1..).unwrap_or_default())
}

/// Whatever follows the address: nothing, or `;`-separated parameters
/// with closed quoted strings and no brackets outside them (a quoted value
/// may hold some: `+sip.instance="<urn:uuid:...>"`).
fn params_ok(rest: &[u8]) -> bool {
    let rest = super::head::trim_wsp(rest);
    if rest.is_empty() {
        return true;
    }
    if rest.first() != Some(&b';') {
        return false;
    }
    let mut in_quotes = false;
    let mut escaped = false;
    for &c in rest {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quotes = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_quotes = true,
                b'<' | b'>' => return false,
                _ => {}
            }
        }
    }
    !in_quotes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_brackets() {
        assert_eq!(
            split_top_level(r#""a, \"b" <sip:x,y@h>;p=1, sip:z"#, b','),
            Some(vec![r#""a, \"b" <sip:x,y@h>;p=1"#, " sip:z"])
        );
        assert_eq!(split_top_level(r#""open"#, b','), None);
        assert_eq!(split_top_level("<sip:open", b','), None);
    }

    #[test]
    fn tightens_parameter_whitespace() {
        assert_eq!(
            tighten_params("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n"),
            "sip:vivekg@chair-dnrc.example.com;tag=1918181833n"
        );
        assert_eq!(
            tighten_params("\"a ; b = c\" <sip:x ;y = z> ; q = 0.33 ;\tflag"),
            "\"a ; b = c\" <sip:x ;y = z>;q=0.33;flag"
        );
        assert!(matches!(
            tighten_params("<sip:a@b>;tag=1"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn name_addr_shapes() {
        for ok in [
            "sip:caller@example.net;tag=93334",
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ; tag = 98asjd8",
            "caller<sip:caller@example.com>;tag=323",
            "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"x\";tag=_t",
            "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
            "isbn:2983792873",
            "<name:John_Smith>",
            "sip:+19725552222@gw1.example.net;unknownparam",
            "<sips:bob@client.example.com>;+sip.instance=\"<urn:uuid:0-1>\";expires=3600",
        ] {
            assert!(name_addr_ok(ok), "{ok}");
        }
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:open",
            "",
            "a@b <sip:x>",
            "Bell",
            "<sip:a@b>;p=\"open",
            "<sip:a@b>;p=<x>",
        ] {
            assert!(!name_addr_ok(bad), "{bad}");
        }
    }
}
