//! The Via header on its raw text.
//!
//! rsip 0.4's typed Via cannot hold an IPv6 sent-by (`[2001:db8::1]:5061`
//! fails to parse), refuses transports it does not know (`SIP/2.0/UNKNOWN`,
//! valid per RFC 4475 `transports`), accepts empty parameters (`;;`,
//! RFC 4475 `badinv01`) and silently drops every via-parm after a comma. The
//! transaction layer needs exactly the parts it gets wrong (sent-by,
//! transport, branch, rport), so Via is read here, on the header value
//! string, following RFC 3261 §20.42 and RFC 3581.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::error::ParseError;
use super::head::is_token_char;
use super::syntax::split_top_level;

/// One `via-parm`: `SIP/2.0/UDP host:port;param=value...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaParm {
    /// The transport token as written (`UDP`, `TLS`, `WSS`, …).
    pub transport: String,
    /// The sent-by host as written; an IPv6 reference keeps its brackets.
    pub host: String,
    /// The sent-by port, when given.
    pub port: Option<u16>,
    /// The parameters in order; a value keeps its quotes if it had them.
    pub params: Vec<ViaParam>,
}

/// One `;name[=value]` of a Via.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaParam {
    /// The parameter name as written.
    pub name: String,
    /// The value, `None` for a flag such as a bare `rport`.
    pub value: Option<String>,
}

impl ViaParm {
    /// The parameter `name` (case-insensitive): `None` when absent,
    /// `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// The `branch` parameter, the transaction key of RFC 3261 §17.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// The sent-by host as an address, when it is an IP literal.
    pub fn host_ip(&self) -> Option<IpAddr> {
        let bare = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        bare.parse().ok()
    }

    /// Sets `name` to `value`, replacing an existing parameter of that name
    /// or appending a new one.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self
            .params
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.params.push(ViaParam {
                name: name.to_owned(),
                value,
            }),
        }
    }
}

impl fmt::Display for ViaParm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            match &p.value {
                Some(v) => write!(f, ";{}={v}", p.name)?,
                None => write!(f, ";{}", p.name)?,
            }
        }
        Ok(())
    }
}

/// Parses a Via header value into its via-parms (a value may carry several,
/// separated by commas).
pub fn parse_via(value: &str) -> Result<Vec<ViaParm>, ParseError> {
    let bad = || ParseError::MalformedHeader("Via");
    split_top_level(value, b',')
        .ok_or_else(bad)?
        .into_iter()
        .map(|part| parse_via_parm(part).ok_or_else(bad))
        .collect()
}

/// Adds what RFC 3261 §18.2.1 and RFC 3581 §4 ask a server to add to the
/// top Via of a request that arrived from `source`, returning the new value.
///
/// - `received=<source ip>` when the sent-by host is a name or an address
///   other than the source (and always when `rport` was requested);
/// - `rport=<source port>` when the request carried an empty `rport`.
///
/// `top_via` is the value of the topmost Via header; when it carries several
/// via-parms only the first is changed (and normalised: whitespace inside it
/// is not kept), the rest is copied unchanged.
pub fn via_received(top_via: &str, source: SocketAddr) -> Result<String, ParseError> {
    let bad = || ParseError::MalformedHeader("Via");
    let parts = split_top_level(top_via, b',').ok_or_else(bad)?;
    let (first, rest) = parts.split_first().ok_or_else(bad)?;
    let mut via = parse_via_parm(first).ok_or_else(bad)?;
    // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    let source_ip = source.ip().to_canonical();
    let rport_requested = matches!(via.param("rport"), Some(None));
    let same_host = via.host_ip().map(|ip| ip.to_canonical()) == Some(source_ip);
    if rport_requested {
        via.set_param("rport", Some(source.port().to_string()));
    }
    if rport_requested || !same_host {
        via.set_param("received", Some(source_ip.to_string()));
    }
    let mut out = via.to_string();
    for part in rest {
        out.push_str(", ");
        out.push_str(part.trim());
    }
    Ok(out)
}

/// A cursor over one via-parm.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips optional whitespace (`SWS`); the caller has unfolded lines.
    fn sws(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i - start
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        // Only ASCII predicates are used, so the slice is valid UTF-8.
        std::str::from_utf8(self.s.get(start..self.i).unwrap_or_default()).unwrap_or_default()
    }

    fn token(&mut self) -> Option<&'a str> {
        let t = self.take_while(is_token_char);
        (!t.is_empty()).then_some(t)
    }

    fn quoted(&mut self) -> Option<&'a str> {
        let start = self.i;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    break;
                }
                _ => self.i += 1,
            }
        }
        std::str::from_utf8(self.s.get(start..self.i)?).ok()
    }
}

fn parse_via_parm(text: &str) -> Option<ViaParm> {
    let mut c = Cursor {
        s: text.trim().as_bytes(),
        i: 0,
    };
    // sent-protocol = protocol-name SLASH protocol-version SLASH transport
    let name = c.token()?;
    c.sws();
    c.eat(b'/').then_some(())?;
    c.sws();
    let version = c.token()?;
    c.sws();
    c.eat(b'/').then_some(())?;
    c.sws();
    let transport = c.token()?;
    if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
        return None;
    }
    (c.sws() > 0).then_some(())?;
    // sent-by = host [ COLON port ]
    let host = if c.peek() == Some(b'[') {
        let h = c.take_while(|b| b != b']');
        c.eat(b']').then_some(())?;
        h.get(1..)?.parse::<Ipv6Addr>().ok()?;
        format!("{h}]")
    } else {
        let h = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if h.is_empty() {
            return None;
        }
        h.to_owned()
    };
    c.sws();
    let port = if c.eat(b':') {
        c.sws();
        Some(c.take_while(|b| b.is_ascii_digit()).parse::<u16>().ok()?)
    } else {
        None
    };
    c.sws();
    let mut params = Vec::new();
    while c.eat(b';') {
        c.sws();
        let name = c.token()?.to_owned();
        c.sws();
        let value = if c.eat(b'=') {
            c.sws();
            let v = match c.peek()? {
                b'"' => c.quoted()?,
                // received/maddr may hold a bare IPv6 address.
                _ => c.take_while(|b| is_token_char(b) || matches!(b, b':' | b'[' | b']')),
            };
            if v.is_empty() {
                return None;
            }
            Some(v.to_owned())
        } else {
            None
        };
        c.sws();
        params.push(ViaParam { name, value });
    }
    if c.peek().is_some() {
        return None;
    }
    Some(ViaParm {
        transport: transport.to_owned(),
        host,
        port,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> ViaParm {
        let mut all = parse_via(v).unwrap();
        assert_eq!(all.len(), 1, "{v}");
        all.remove(0)
    }

    #[test]
    fn parses_the_usual_and_the_tortured() {
        let v = one("SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKx");
        assert_eq!(
            (v.transport.as_str(), v.host.as_str(), v.port),
            ("UDP", "10.0.0.1", Some(5060))
        );
        assert_eq!(v.branch(), Some("z9hG4bKx"));
        assert_eq!(v.param("RPORT"), Some(None));

        let v = one("SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKy;received=2001:db8::2");
        assert_eq!(v.host_ip(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(v.param("received"), Some(Some("2001:db8::2")));

        let all = parse_via(
            "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , \
             SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(all[1].host, "192.168.255.111");
        assert_eq!(
            all[1].to_string(),
            "SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239"
        );

        let v = one("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en;x=\"a;b, c\"");
        assert_eq!(v.transport, "UNKNOWN");
        assert_eq!(v.param("x"), Some(Some("\"a;b, c\"")));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
            "SIP/2.0/UDP",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP [::g]:5060",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host;branch=\"open",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP a,",
            "garbage",
            "",
        ] {
            assert!(parse_via(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn received_and_rport() {
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        // Same host, no rport: nothing to add.
        assert_eq!(
            via_received("SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1", src).unwrap(),
            "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1"
        );
        // A name as sent-by always gets received.
        assert_eq!(
            via_received("SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1", src).unwrap(),
            "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1;received=192.0.2.7"
        );
        // Empty rport: fill it, and received even though the host matches.
        assert_eq!(
            via_received("SIP/2.0/UDP 192.0.2.7:5060;rport;branch=z9hG4bK1", src).unwrap(),
            "SIP/2.0/UDP 192.0.2.7:5060;rport=40000;branch=z9hG4bK1;received=192.0.2.7"
        );
        // rport with a value is left alone; a stale received is replaced.
        assert_eq!(
            via_received(
                "SIP/2.0/TCP 10.0.0.1;rport=1;received=1.1.1.1;branch=b",
                src
            )
            .unwrap(),
            "SIP/2.0/TCP 10.0.0.1;rport=1;received=192.0.2.7;branch=b"
        );
        // Only the first via-parm changes.
        assert_eq!(
            via_received("SIP/2.0/UDP h;rport, SIP/2.0/UDP  other ;branch=2", src).unwrap(),
            "SIP/2.0/UDP h;rport=40000;received=192.0.2.7, SIP/2.0/UDP  other ;branch=2"
        );
        // A v4-mapped source matches the IPv4 sent-by.
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:5060".parse().unwrap();
        assert_eq!(
            via_received("SIP/2.0/UDP 192.0.2.7;branch=b", mapped).unwrap(),
            "SIP/2.0/UDP 192.0.2.7;branch=b"
        );
        let v6: SocketAddr = "[2001:db8::9]:5061".parse().unwrap();
        assert_eq!(
            via_received("SIP/2.0/TLS [2001:db8::1]:5061;rport;branch=b", v6).unwrap(),
            "SIP/2.0/TLS [2001:db8::1]:5061;rport=5061;branch=b;received=2001:db8::9"
        );
        assert!(via_received("SIP/2.0/UDP ;;", src).is_err());
        assert!(via_received("", src).is_err());
    }
}
