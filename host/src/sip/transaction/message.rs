//! The few message operations the transaction layer needs: reading the
//! headers a transaction is keyed and built on, encoding a message to bytes,
//! and building the two messages a transaction writes itself (the ACK of
//! §17.1.1.3 and the 100 Trying of §17.2.1).
//!
//! rsip 0.4 keeps header values as the strings that arrived, which is what
//! a transaction wants (copy, never rewrite). Two gaps of rsip are covered
//! here: it leaves compact header names (`v`, `f`, `t`, `i`, §7.3.3) in
//! `Header::Other`, and its typed Via cannot read an IPv6 sent-by
//! (`[2001:db8::1]:5060`), so the top Via is read by [`top_via`] instead.

use rsip::Header;
use rsip::headers::UntypedHeader;

/// A header the transaction layer reads, with its compact form (§7.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Route,
    Timestamp,
}

impl Name {
    /// The compact form, which rsip leaves in `Header::Other`.
    fn compact(self) -> Option<&'static str> {
        match self {
            Self::Via => Some("v"),
            Self::From => Some("f"),
            Self::To => Some("t"),
            Self::CallId => Some("i"),
            Self::CSeq | Self::Route | Self::Timestamp => None,
        }
    }

    /// The header's value if `header` is this header.
    pub(crate) fn value_of(self, header: &Header) -> Option<&str> {
        match (self, header) {
            (Self::Via, Header::Via(h)) => Some(h.value()),
            (Self::From, Header::From(h)) => Some(h.value()),
            (Self::To, Header::To(h)) => Some(h.value()),
            (Self::CallId, Header::CallId(h)) => Some(h.value()),
            (Self::CSeq, Header::CSeq(h)) => Some(h.value()),
            (Self::Route, Header::Route(h)) => Some(h.value()),
            (Self::Timestamp, Header::Timestamp(h)) => Some(h.value()),
            (_, Header::Other(name, value)) => self
                .compact()
                .filter(|c| name.trim().eq_ignore_ascii_case(c))
                .map(|_| value.as_str()),
            _ => None,
        }
    }

    /// Whether `header` is this header (full or compact form).
    pub(crate) fn is(self, header: &Header) -> bool {
        self.value_of(header).is_some()
    }
}

/// The value of the first `name` header.
pub(crate) fn first(headers: &rsip::Headers, name: Name) -> Option<&str> {
    headers.iter().find_map(|h| name.value_of(h))
}

/// Splits `s` at the first `sep` that is outside a quoted string, an
/// `<…>` URI or an IPv6 `[…]` reference.
fn split_once_outside(s: &str, sep: char) -> (&str, Option<&str>) {
    let mut quoted = false;
    let mut escaped = false;
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        if quoted {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '<' | '[' => depth += 1,
            '>' | ']' => depth = depth.saturating_sub(1),
            _ if c == sep && depth == 0 => return (&s[..i], Some(&s[i + c.len_utf8()..])),
            _ => {}
        }
    }
    (s, None)
}

/// The parts of the topmost Via value (§20.42) a transaction needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopVia<'a> {
    /// The whole first via-parm, trimmed (what an ACK copies, §17.1.1.3).
    pub(crate) raw: &'a str,
    /// The transport token of the sent-protocol (`UDP`, `TCP`, …).
    pub(crate) transport: &'a str,
    /// host[:port], lowercased and without linear white space.
    pub(crate) sent_by: String,
    /// The branch parameter, if any.
    pub(crate) branch: Option<&'a str>,
}

/// Reads the first via-parm of the first Via header: `SIP / 2.0 / UDP
/// host:port ;branch=…`. Returns `None` when there is no Via or the value is
/// not a via-parm.
pub(crate) fn top_via(headers: &rsip::Headers) -> Option<TopVia<'_>> {
    let value = first(headers, Name::Via)?;
    let (raw, _) = split_once_outside(value, ',');
    let raw = raw.trim();
    let (head, mut params) = split_once_outside(raw, ';');

    // sent-protocol = protocol-name SLASH protocol-version SLASH transport,
    // where SLASH may carry white space on either side (§25.1).
    let (name, rest) = head.split_once('/')?;
    let (version, rest) = rest.split_once('/')?;
    if name.trim().is_empty() || version.trim().is_empty() {
        return None;
    }
    let rest = rest.trim_start();
    let end = rest.find(char::is_whitespace)?;
    let (transport, sent_by) = rest.split_at(end);
    // sent-by = host [ COLON port ], where COLON may also carry white space.
    let sent_by: String = sent_by
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if transport.is_empty() || sent_by.is_empty() {
        return None;
    }

    let mut branch = None;
    while let Some(list) = params {
        let (param, rest) = split_once_outside(list, ';');
        params = rest;
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (param.trim(), None),
        };
        if key.eq_ignore_ascii_case("branch") {
            branch = value.filter(|v| !v.is_empty());
            break;
        }
    }
    Some(TopVia {
        raw,
        transport,
        sent_by,
        branch,
    })
}

/// Encodes a message for the wire with the parser's encoder (binary bodies
/// kept byte for byte, RFC reason phrases, Content-Length matching the body),
/// so every byte the switch sends is framed by one piece of code.
pub fn encode(msg: &impl crate::sip::parse::Encode) -> Vec<u8> {
    crate::sip::parse::encode(msg)
}

/// What the INVITE client transaction keeps from its request to build the
/// ACK for a non-2xx final response (§17.1.1.3).
#[derive(Debug, Clone)]
pub(crate) struct AckTemplate {
    uri: rsip::Uri,
    version: rsip::Version,
    /// The request's top via-parm only: same branch, so the server
    /// transaction matches the ACK to its INVITE (§17.2.3).
    via: String,
    /// Every Route header of the INVITE, in order (§17.1.1.3: "MUST appear
    /// in the ACK").
    routes: Vec<Header>,
    from: Header,
    call_id: Header,
    /// The request's To, used only if a response arrives without one.
    to: Header,
    cseq: u32,
}

impl AckTemplate {
    /// Captures what the ACK needs, or names the header that is missing.
    pub(crate) fn new(request: &rsip::Request) -> Result<Self, &'static str> {
        let headers = &request.headers;
        let via = top_via(headers).ok_or("Via")?.raw.to_owned();
        let find = |name: Name, what: &'static str| {
            headers.iter().find(|h| name.is(h)).cloned().ok_or(what)
        };
        let cseq = first(headers, Name::CSeq)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or("CSeq")?;
        Ok(Self {
            uri: request.uri.clone(),
            version: request.version.clone(),
            via,
            routes: headers
                .iter()
                .filter(|h| Name::Route.is(h))
                .cloned()
                .collect(),
            from: find(Name::From, "From")?,
            call_id: find(Name::CallId, "Call-ID")?,
            to: find(Name::To, "To")?,
            cseq,
        })
    }

    /// The ACK for `response` (§17.1.1.3): same Request-URI, the INVITE's top
    /// Via only, its Route set, From, Call-ID and CSeq number, the To of the
    /// response (which carries the UAS's tag), and no body.
    pub(crate) fn ack_for(&self, response: &rsip::Response) -> rsip::Request {
        let to = response
            .headers
            .iter()
            .find(|h| Name::To.is(h))
            .cloned()
            .unwrap_or_else(|| self.to.clone());
        let mut headers: Vec<Header> = Vec::with_capacity(8 + self.routes.len());
        headers.push(Header::Via(rsip::headers::Via::new(self.via.clone())));
        headers.extend(self.routes.iter().cloned());
        // §8.1.1.6: every request carries Max-Forwards; 70 is the RFC's value.
        headers.push(Header::MaxForwards(rsip::headers::MaxForwards::new("70")));
        headers.push(self.from.clone());
        headers.push(to);
        headers.push(self.call_id.clone());
        headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
            "{} ACK",
            self.cseq
        ))));
        headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
            "0",
        )));
        rsip::Request {
            method: rsip::Method::Ack,
            uri: self.uri.clone(),
            version: self.version.clone(),
            headers: headers.into(),
            body: Vec::new(),
        }
    }
}

/// The headers a 100 Trying copies from the request (§8.2.6).
const TRYING_COPIES: [Name; 5] = [Name::Via, Name::From, Name::To, Name::CallId, Name::CSeq];

/// The part of an INVITE that [`trying`] reads (the headers it copies and
/// the Timestamp, no body), for a transaction to keep until it knows
/// whether the 100 is needed.
pub(crate) fn trying_source(request: &rsip::Request) -> rsip::Request {
    rsip::Request {
        method: request.method,
        uri: rsip::Uri::default(),
        version: request.version.clone(),
        headers: request
            .headers
            .iter()
            .filter(|h| TRYING_COPIES.iter().any(|n| n.is(h)) || Name::Timestamp.is(h))
            .cloned()
            .collect::<Vec<_>>()
            .into(),
        body: Vec::new(),
    }
}

/// The 100 Trying an INVITE server transaction sends on the TU's behalf
/// (§17.2.1), built as §8.2.6 says: the request's Via headers (all, in
/// order), From, To (a tag is optional on a 100 and none is added), Call-ID
/// and CSeq, and the Timestamp with the time the request was held (§8.2.6.1).
pub(crate) fn trying(request: &rsip::Request, held: std::time::Duration) -> rsip::Response {
    let mut headers: Vec<Header> = request
        .headers
        .iter()
        .filter(|h| TRYING_COPIES.iter().any(|n| n.is(h)))
        .cloned()
        .collect();
    if let Some(ts) = first(&request.headers, Name::Timestamp) {
        // The request's value is the first token; a delay the client may
        // have put there is not ours to echo (§20.38).
        if let Some(stamp) = ts.split_whitespace().next() {
            headers.push(Header::Timestamp(rsip::headers::Timestamp::new(format!(
                "{stamp} {}.{:03}",
                held.as_secs(),
                held.subsec_millis()
            ))));
        }
    }
    headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
        "0",
    )));
    rsip::Response {
        status_code: rsip::StatusCode::Trying,
        version: request.version.clone(),
        headers: headers.into(),
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use rsip::prelude::*;

    fn headers_of(via_lines: &[&str]) -> rsip::Headers {
        let mut raw = String::from("OPTIONS sip:x@example.com SIP/2.0\r\n");
        for v in via_lines {
            raw.push_str(v);
            raw.push_str("\r\n");
        }
        raw.push_str("Content-Length: 0\r\n\r\n");
        rsip::Request::try_from(raw.as_str()).unwrap().headers
    }

    #[test]
    fn top_via_reads_the_first_value() {
        let h = headers_of(&[
            "Via: SIP/2.0/UDP a.Example.com:5070;rport;branch=z9hG4bKabc, SIP/2.0/UDP b;branch=z9hG4bKother",
            "Via: SIP/2.0/TCP c;branch=z9hG4bKthird",
        ]);
        let v = top_via(&h).unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.sent_by, "a.example.com:5070");
        assert_eq!(v.branch, Some("z9hG4bKabc"));
        assert_eq!(
            v.raw,
            "SIP/2.0/UDP a.Example.com:5070;rport;branch=z9hG4bKabc"
        );
    }

    #[test]
    fn top_via_handles_ipv6_compact_form_and_white_space() {
        let h = headers_of(&[
            "v: SIP / 2.0 / TLS [2001:DB8::1] : 5061 ; branch = z9hG4bKx ;received=1.2.3.4",
        ]);
        let v = top_via(&h).unwrap();
        assert_eq!(v.transport, "TLS");
        assert_eq!(v.sent_by, "[2001:db8::1]:5061");
        assert_eq!(v.branch, Some("z9hG4bKx"));
    }

    #[test]
    fn top_via_rejects_garbage() {
        assert_eq!(top_via(&headers_of(&[])), None);
        assert_eq!(top_via(&headers_of(&["Via: garbage"])), None);
        assert_eq!(top_via(&headers_of(&["Via: SIP/2.0/UDP"])), None);
        assert_eq!(top_via(&headers_of(&["Via: SIP/2.0/UDP    "])), None);
        assert_eq!(top_via(&headers_of(&["Via: //UDP host"])), None);
        let h = headers_of(&["Via: SIP/2.0/UDP host;branch="]);
        let v = top_via(&h).unwrap();
        assert_eq!(v.branch, None);
    }

    #[test]
    fn encode_uses_rfc_reason_phrases_and_keeps_binary_bodies() {
        let mut resp = response(&invite(), 486, None);
        resp.body = vec![0xff, 0x00, 0xfe];
        let bytes = encode(&resp);
        assert!(bytes.starts_with(b"SIP/2.0 486 Busy Here\r\n"));
        assert!(bytes.ends_with(b"\r\n\r\n\xff\x00\xfe"));

        let other = rsip::Response {
            status_code: rsip::StatusCode::Other(499, "Custom Thing".into()),
            ..Default::default()
        };
        assert!(encode(&other).starts_with(b"SIP/2.0 499 Custom Thing\r\n"));
    }

    #[test]
    fn encoded_request_parses_back_identically() {
        let req = invite();
        let back = rsip::Request::try_from(encode(&req)).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn trying_copies_the_headers_of_section_8_2_6() {
        let mut req = invite();
        req.headers
            .push(Header::Timestamp(rsip::headers::Timestamp::new("54")));
        let t = trying(&req, std::time::Duration::from_millis(200));
        assert_eq!(t.status_code, rsip::StatusCode::Trying);
        let vias: Vec<_> = t.headers.iter().filter(|h| Name::Via.is(h)).collect();
        assert_eq!(vias.len(), 2, "all Via headers, in order");
        assert_eq!(t.from_header().unwrap(), req.from_header().unwrap());
        assert_eq!(t.to_header().unwrap(), req.to_header().unwrap());
        assert_eq!(t.call_id_header().unwrap(), req.call_id_header().unwrap());
        assert_eq!(t.cseq_header().unwrap(), req.cseq_header().unwrap());
        assert_eq!(first(&t.headers, Name::Timestamp), Some("54 0.200"));
        assert!(t.body.is_empty());
    }

    #[test]
    fn ack_template_names_the_missing_header() {
        let mut req = invite();
        req.headers.retain(|h| !Name::CallId.is(h));
        assert_eq!(AckTemplate::new(&req).unwrap_err(), "Call-ID");
        let mut req = invite();
        req.headers.retain(|h| !Name::Via.is(h));
        assert_eq!(AckTemplate::new(&req).unwrap_err(), "Via");
        let mut req = invite();
        req.headers.retain(|h| !Name::CSeq.is(h));
        assert_eq!(AckTemplate::new(&req).unwrap_err(), "CSeq");
    }
}
