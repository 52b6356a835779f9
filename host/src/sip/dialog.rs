//! Dialogs (RFC 3261 §12) as plain data: what a user agent remembers of a
//! dialog and how it builds the requests it sends inside one. Sans-io: the
//! B2BUA owns two of these per call (one per leg) and sends what they build.

use rsip::headers::{self, UntypedHeader};
use rsip::{Header, Method};

use super::transaction::new_branch;
use super::transport::Flow;
use super::util::{header_value, header_values, split_list, tag_of};

/// Identifies a dialog from this node's side: the Call-ID and the tag this
/// node put in it. A request that belongs to the dialog carries that tag in
/// its To header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
}

impl DialogId {
    /// The dialog a request received by this node names, if it names one
    /// (a To tag; initial requests have none).
    pub fn of_request(req: &rsip::Request) -> Option<DialogId> {
        let call_id = header_value(&req.headers, "Call-ID")?.trim();
        let local_tag = tag_of(header_value(&req.headers, "To")?)?;
        (!call_id.is_empty() && !local_tag.is_empty()).then(|| DialogId {
            call_id: call_id.to_owned(),
            local_tag: local_tag.to_owned(),
        })
    }
}

/// One side of a dialog, as this node sees it.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    /// Empty until the peer's tag is known (an early UAC dialog before the
    /// first tagged response).
    pub remote_tag: String,
    /// Our address of record in this dialog, as a name-addr without tag.
    pub local_uri: String,
    /// The peer's, likewise.
    pub remote_uri: String,
    /// Where requests go: the peer's Contact URI.
    pub remote_target: String,
    /// Route header values to put on requests, in order.
    pub route_set: Vec<String>,
    /// CSeq of the last request this node sent in the dialog.
    pub local_cseq: u32,
    /// How the peer is reached: the connection or NAT binding it used.
    pub flow: Flow,
}

/// The name-addr part of a From/To value with its `tag` parameter removed.
pub fn without_tag(value: &str) -> String {
    let (head, params) = match value.rfind('>') {
        Some(end) => value.split_at(end + 1),
        None => match value.find(';') {
            Some(semi) => value.split_at(semi),
            None => (value, ""),
        },
    };
    let kept: Vec<&str> = params
        .split(';')
        .skip(1)
        .filter(|p| {
            !p.split('=')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("tag")
        })
        .collect();
    let mut out = head.trim().to_owned();
    for p in kept {
        out.push(';');
        out.push_str(p.trim());
    }
    out
}

/// The URI of the first Contact of a message, without angle brackets.
pub fn contact_uri(headers: &rsip::Headers) -> Option<String> {
    let value = header_value(headers, "Contact")?;
    let first = split_list(value).into_iter().next()?.trim();
    let uri = match (first.find('<'), first.find('>')) {
        (Some(a), Some(b)) if a < b => &first[a + 1..b],
        _ => first.split(';').next().unwrap_or(first),
    };
    let uri = uri.trim();
    (!uri.is_empty()).then(|| uri.to_owned())
}

/// Every Record-Route entry of a message, in the order they appear.
pub fn record_route(headers: &rsip::Headers) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::RecordRoute(rr) => Some(rr.value().to_owned()),
            _ => None,
        })
        .chain(header_values(headers, "Record-Route").map(str::to_owned))
        .flat_map(|v| {
            split_list(&v)
                .into_iter()
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// The CSeq number of a message.
pub fn cseq_number(headers: &rsip::Headers) -> Option<u32> {
    header_value(headers, "CSeq")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Dialog {
    /// The UAS side of the dialog an INVITE asks for (§12.1.1): this node
    /// answers as `local_tag`; the route set is the Record-Route as received.
    pub fn uas(req: &rsip::Request, local_tag: String, flow: Flow) -> Option<Dialog> {
        let from = header_value(&req.headers, "From")?;
        let to = header_value(&req.headers, "To")?;
        Some(Dialog {
            call_id: header_value(&req.headers, "Call-ID")?.trim().to_owned(),
            local_tag,
            remote_tag: tag_of(from)?.to_owned(),
            local_uri: without_tag(to),
            remote_uri: without_tag(from),
            remote_target: contact_uri(&req.headers)?,
            route_set: record_route(&req.headers),
            local_cseq: 0,
            flow,
        })
    }

    /// The UAC side of a dialog this node starts with `invite`; the peer's
    /// tag, target and route set come from its responses.
    pub fn uac(invite: &rsip::Request, flow: Flow) -> Option<Dialog> {
        let from = header_value(&invite.headers, "From")?;
        let to = header_value(&invite.headers, "To")?;
        Some(Dialog {
            call_id: header_value(&invite.headers, "Call-ID")?.trim().to_owned(),
            local_tag: tag_of(from)?.to_owned(),
            remote_tag: String::new(),
            local_uri: without_tag(from),
            remote_uri: without_tag(to),
            remote_target: invite.uri.to_string(),
            route_set: Vec::new(),
            local_cseq: cseq_number(&invite.headers)?,
            flow,
        })
    }

    pub fn id(&self) -> DialogId {
        DialogId {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
        }
    }

    /// A UAC learns the peer's tag, target and route set from a response
    /// that creates or confirms the dialog (§12.1.2): the route set is the
    /// Record-Route reversed. A 2xx overrides what an early response said.
    pub fn learn_from_response(&mut self, resp: &rsip::Response) {
        if let Some(tag) = header_value(&resp.headers, "To").and_then(tag_of) {
            self.remote_tag = tag.to_owned();
        }
        if let Some(target) = contact_uri(&resp.headers) {
            self.remote_target = target;
        }
        let mut routes = record_route(&resp.headers);
        if !routes.is_empty() || (200..300).contains(&resp.status_code.code()) {
            routes.reverse();
            self.route_set = routes;
        }
    }

    /// A target refresh (re-INVITE, UPDATE) from the peer moves its target.
    pub fn refresh_target(&mut self, headers: &rsip::Headers) {
        if let Some(target) = contact_uri(headers) {
            self.remote_target = target;
        }
    }

    /// A new request in the dialog (§12.2.1.1) with the next CSeq; `extra`
    /// headers and `body` as given. ACK and CANCEL are built elsewhere: they
    /// reuse the CSeq of the INVITE they belong to.
    pub fn request(
        &mut self,
        method: Method,
        contact: &str,
        extra: Vec<Header>,
        body: Vec<u8>,
    ) -> rsip::Request {
        self.local_cseq = self.local_cseq.wrapping_add(1).max(1);
        self.build(method, self.local_cseq, contact, extra, body)
    }

    /// The ACK for a 2xx to the INVITE that had CSeq `cseq` (§13.2.2.4): a
    /// new transaction of its own, with the dialog's route set.
    pub fn ack(
        &self,
        cseq: u32,
        contact: &str,
        extra: Vec<Header>,
        body: Vec<u8>,
    ) -> rsip::Request {
        self.build(Method::Ack, cseq, contact, extra, body)
    }

    fn build(
        &self,
        method: Method,
        cseq: u32,
        contact: &str,
        extra: Vec<Header>,
        body: Vec<u8>,
    ) -> rsip::Request {
        let uri = rsip::Uri::try_from(self.remote_target.as_str()).unwrap_or_default();
        let tagged = |uri: &str, tag: &str| {
            if tag.is_empty() {
                uri.to_owned()
            } else {
                format!("{uri};tag={tag}")
            }
        };
        let mut headers: Vec<Header> = Vec::with_capacity(10 + extra.len() + self.route_set.len());
        headers.push(Header::Via(headers::Via::new(via_for(&self.flow))));
        headers.push(Header::MaxForwards(headers::MaxForwards::new("70")));
        for route in &self.route_set {
            headers.push(Header::Route(headers::Route::new(route.clone())));
        }
        headers.push(Header::From(headers::From::new(tagged(
            &self.local_uri,
            &self.local_tag,
        ))));
        headers.push(Header::To(headers::To::new(tagged(
            &self.remote_uri,
            &self.remote_tag,
        ))));
        headers.push(Header::CallId(headers::CallId::new(self.call_id.clone())));
        headers.push(Header::CSeq(headers::CSeq::new(format!("{cseq} {method}"))));
        if method != Method::Ack && method != Method::Bye {
            headers.push(Header::Contact(headers::Contact::new(contact.to_owned())));
        }
        headers.extend(extra);
        headers.push(Header::ContentLength(headers::ContentLength::from(
            body.len() as u32,
        )));
        rsip::Request {
            method,
            uri,
            version: rsip::Version::V2,
            headers: headers.into(),
            body,
        }
    }
}

/// A top Via for a request this node sends along `flow`, with a fresh branch.
pub fn via_for(flow: &Flow) -> String {
    format!(
        "SIP/2.0/{} {};branch={};rport",
        flow.proto.via_name(),
        flow.local,
        new_branch()
    )
}

/// The Contact this node puts in what it sends along `flow`.
pub fn contact_for(flow: &Flow) -> String {
    format!("<sip:{};transport={}>", flow.local, flow.proto.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse::{Inbound, parse_datagram};
    use crate::sip::transport::Proto;

    fn flow() -> Flow {
        Flow {
            proto: Proto::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "192.0.2.7:40000".parse().unwrap(),
        }
    }

    fn request(text: &str) -> rsip::Request {
        match parse_datagram(text.replace('\n', "\r\n").as_bytes()).unwrap() {
            Inbound::Message(rsip::SipMessage::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn response(text: &str) -> rsip::Response {
        match parse_datagram(text.replace('\n', "\r\n").as_bytes()).unwrap() {
            Inbound::Message(rsip::SipMessage::Response(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.7:40000;branch=z9hG4bKa1
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>
Max-Forwards: 70
From: \"Alice\" <sip:alice@example.com>;tag=a1;x=y
To: <sip:bob@example.com>
Call-ID: c1@host
CSeq: 7 INVITE
Contact: <sip:alice@192.0.2.7:40000;ob>;expires=60
Content-Length: 0

";

    #[test]
    fn the_uas_side_keeps_the_route_set_in_order_and_answers_with_its_tag() {
        let invite = request(INVITE);
        let mut d = Dialog::uas(&invite, "b9".into(), flow()).unwrap();
        assert_eq!(d.remote_tag, "a1");
        assert_eq!(d.remote_uri, "\"Alice\" <sip:alice@example.com>;x=y");
        assert_eq!(d.remote_target, "sip:alice@192.0.2.7:40000;ob");
        assert_eq!(
            d.route_set,
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        let bye = d.request(Method::Bye, "<sip:127.0.0.1:5060>", vec![], vec![]);
        let text = String::from_utf8(crate::sip::parse::encode(&bye)).unwrap();
        assert!(text.starts_with("BYE sip:alice@192.0.2.7:40000;ob SIP/2.0\r\n"));
        assert!(text.contains("From: <sip:bob@example.com>;tag=b9\r\n"));
        assert!(text.contains("To: \"Alice\" <sip:alice@example.com>;x=y;tag=a1\r\n"));
        assert!(text.contains("CSeq: 1 BYE\r\n"));
        let route = text.find("Route: <sip:p1").unwrap();
        assert!(route < text.find("Route: <sip:p2").unwrap());
        assert_eq!(
            DialogId::of_request(&request(&text.replace("\r\n", "\n"))),
            Some(DialogId {
                call_id: "c1@host".into(),
                local_tag: "a1".into()
            })
        );
    }

    #[test]
    fn the_uac_side_learns_tag_target_and_reversed_routes_from_the_answer() {
        let invite = request(INVITE);
        let mut d = Dialog::uac(&invite, flow()).unwrap();
        assert_eq!(d.local_tag, "a1");
        assert_eq!(d.local_cseq, 7);
        let ok = response(
            "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.7:40000;branch=z9hG4bKa1
Record-Route: <sip:p1.example.com;lr>
Record-Route: <sip:p2.example.com;lr>
From: \"Alice\" <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>;tag=bb
Call-ID: c1@host
CSeq: 7 INVITE
Contact: <sip:bob@198.51.100.2:5062>
Content-Length: 0

",
        );
        d.learn_from_response(&ok);
        assert_eq!(d.remote_tag, "bb");
        assert_eq!(d.remote_target, "sip:bob@198.51.100.2:5062");
        assert_eq!(
            d.route_set,
            ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
        let ack = d.ack(7, "<sip:x>", vec![], vec![]);
        assert_eq!(cseq_number(&ack.headers), Some(7));
        assert_eq!(d.local_cseq, 7, "an ACK takes no new CSeq");
        let update = d.request(Method::Update, "<sip:x>", vec![], vec![]);
        assert_eq!(cseq_number(&update.headers), Some(8));
    }

    #[test]
    fn tags_are_removed_and_other_parameters_kept() {
        assert_eq!(without_tag("<sip:a@b>;tag=1"), "<sip:a@b>");
        assert_eq!(without_tag("sip:a@b;tag=1;foo"), "sip:a@b;foo");
        assert_eq!(
            without_tag("\"X;tag\" <sip:a@b;tag=9>"),
            "\"X;tag\" <sip:a@b;tag=9>"
        );
    }
}
