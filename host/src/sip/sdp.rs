//! What the B2BUA reads from and changes in SDP bodies (RFC 8866), line by
//! line.
//!
//! Only connection addresses, ports and ICE lines are touched; every other
//! line (codecs, crypto, fingerprints, directions) crosses byte for byte.
//! A parse-and-print SDP library would normalise what it does not change,
//! which is why this is a line rewriter and not a model of SDP.

use std::net::IpAddr;

use media::IceCredentials;

/// One m-line, as far as the relay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    /// RTP port; 0 is a stream rejected or removed.
    pub port: u16,
    /// The media-level connection address, else the session-level one.
    pub addr: Option<IpAddr>,
    /// `a=rtcp:` (RFC 3605), else the RTP port + 1.
    pub rtcp_port: u16,
    pub rtcp_mux: bool,
    /// ICE short-term credentials of this m-line (its own, else the
    /// session's), which check the connectivity checks sent toward it.
    pub ice: Option<IceCredentials>,
    /// The m-line already offers a relayed candidate (the phone's own TURN).
    pub has_relay_candidate: bool,
}

/// What an SDP body says about where its media goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub media: Vec<MediaLine>,
    /// ICE is offered (an `a=ice-ufrag` at any level).
    pub ice: bool,
}

/// The relay ports of one m-line, facing the side the body goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPorts {
    pub rtp: u16,
    pub rtcp: u16,
}

/// How a body is changed on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Media through the relay only: addresses and ports point at it, ICE
    /// lines are removed (they would show the other side's addresses).
    Anchor,
    /// The peers try each other directly; the relay is added as one more
    /// ICE candidate, the lowest in priority.
    AddRelayCandidate,
}

/// Lines with the terminator the body uses.
struct Lines<'a> {
    lines: Vec<&'a str>,
    eol: &'static str,
}

fn lines(body: &[u8]) -> Option<Lines<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.starts_with("v=") {
        return None;
    }
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect::<Vec<_>>();
    // The body ends with a terminator: the last split piece is empty.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    Some(Lines { lines, eol })
}

/// `c=IN IP4 192.0.2.1` → the address (multicast TTL suffixes dropped).
fn connection_addr(line: &str) -> Option<IpAddr> {
    let mut parts = line.strip_prefix("c=")?.split_whitespace();
    let (_net, _kind, addr) = (parts.next()?, parts.next()?, parts.next()?);
    addr.split('/').next()?.parse().ok()
}

/// The summary of an SDP body; `None` if it is not SDP.
pub fn inspect(body: &[u8]) -> Option<Summary> {
    let Lines { lines, .. } = lines(body)?;
    let mut session_addr = None;
    let mut ice = false;
    // (ufrag, pwd) at session level, then per m-line.
    let mut session_creds: (Option<&str>, Option<&str>) = (None, None);
    let mut creds: Vec<(Option<&str>, Option<&str>)> = Vec::new();
    let mut media: Vec<MediaLine> = Vec::new();
    // Per m-line: its own c= and a=rtcp, resolved once the section ends.
    let mut own: Vec<(Option<IpAddr>, Option<u16>)> = Vec::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix("m=") {
            let port = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.split('/').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            media.push(MediaLine {
                port,
                addr: None,
                rtcp_port: 0,
                rtcp_mux: false,
                ice: None,
                has_relay_candidate: false,
            });
            own.push((None, None));
            creds.push((None, None));
        } else if line.starts_with("c=") {
            let addr = connection_addr(line);
            match own.last_mut() {
                Some(o) => o.0 = addr,
                None => session_addr = addr,
            }
        } else if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
            ice = true;
            match creds.last_mut() {
                Some(c) => c.0 = Some(ufrag.trim()),
                None => session_creds.0 = Some(ufrag.trim()),
            }
        } else if line.starts_with("a=candidate:") && line.contains(" typ relay") {
            if let Some(m) = media.last_mut() {
                m.has_relay_candidate = true;
            }
        } else if let Some(pwd) = line.strip_prefix("a=ice-pwd:") {
            match creds.last_mut() {
                Some(c) => c.1 = Some(pwd.trim()),
                None => session_creds.1 = Some(pwd.trim()),
            }
        } else if line == "a=rtcp-mux" {
            if let Some(m) = media.last_mut() {
                m.rtcp_mux = true;
            }
        } else if let Some(rest) = line.strip_prefix("a=rtcp:")
            && let Some(o) = own.last_mut()
        {
            o.1 = rest.split_whitespace().next().and_then(|p| p.parse().ok());
        }
    }
    for ((m, (addr, rtcp)), (ufrag, pwd)) in media.iter_mut().zip(own).zip(creds) {
        m.ice = match (ufrag.or(session_creds.0), pwd.or(session_creds.1)) {
            (Some(ufrag), Some(pwd)) => Some(IceCredentials {
                ufrag: ufrag.to_owned(),
                pwd: pwd.to_owned(),
            }),
            _ => None,
        };
        m.addr = addr.or(session_addr);
        m.rtcp_port = match (rtcp, m.rtcp_mux) {
            (Some(p), _) => p,
            (None, true) => m.port,
            (None, false) => m.port.saturating_add(1),
        };
    }
    Some(Summary { media, ice })
}

fn is_ice_line(line: &str) -> bool {
    [
        "a=candidate:",
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=ice-options:",
        "a=ice-pacing:",
        "a=remote-candidates:",
    ]
    .iter()
    .any(|p| line.starts_with(p))
        || matches!(
            line,
            "a=ice-lite" | "a=ice-mismatch" | "a=end-of-candidates"
        )
}

fn ip_kind(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IP4" } else { "IP6" }
}

/// The relay candidates of one component, as RFC 8839 writes them. Type
/// preference 0 (relayed) puts them below any direct path.
fn candidate(ip: IpAddr, port: u16, component: u32) -> String {
    let priority = (65535u32 << 8) | (256 - component);
    format!(
        "a=candidate:swrelay {component} UDP {priority} {ip} {port} typ relay raddr {ip} rport {port}"
    )
}

/// `body` rewritten for the side it goes to. `ports[i]` are the relay ports
/// of the i-th m-line facing that side; `None` leaves the m-line alone.
pub fn rewrite(body: &[u8], how: Rewrite, relay: IpAddr, ports: &[Option<RelayPorts>]) -> Vec<u8> {
    let Some(Lines { lines, eol }) = lines(body).filter(|_| ports.iter().any(Option::is_some))
    else {
        return body.to_vec();
    };
    let mut out = String::with_capacity(body.len() + 160);
    let push = |out: &mut String, line: &str| {
        out.push_str(line);
        out.push_str(eol);
    };
    // The m-line index of the section being copied; None at session level.
    let mut section: Option<usize> = None;
    let mut section_mux = false;
    let relay_here = |section: Option<usize>| section.and_then(|i| ports.get(i).copied().flatten());
    // Candidates go after the section's last candidate line, or at its end.
    let flush_candidates = |out: &mut String, section: Option<usize>, mux: bool| {
        if how == Rewrite::AddRelayCandidate
            && let Some(p) = relay_here(section)
        {
            out.push_str(&candidate(relay, p.rtp, 1));
            out.push_str(eol);
            if !mux {
                out.push_str(&candidate(relay, p.rtcp, 2));
                out.push_str(eol);
            }
        }
    };
    // Whether a section's a=rtcp-mux is known needs a look ahead.
    let mux_of = |from: usize| {
        lines[from + 1..]
            .iter()
            .take_while(|l| !l.starts_with("m="))
            .any(|l| *l == "a=rtcp-mux")
    };
    let mut pending_candidates = false;
    for (n, line) in lines.iter().enumerate() {
        let line = *line;
        if line.starts_with("m=") {
            if pending_candidates {
                flush_candidates(&mut out, section, section_mux);
            }
            section = Some(section.map_or(0, |i| i + 1));
            section_mux = mux_of(n);
            pending_candidates = true;
            match (how, relay_here(section)) {
                (Rewrite::Anchor, Some(p)) => {
                    let mut parts = line.splitn(3, ' ');
                    let (media, _port, rest) = (parts.next(), parts.next(), parts.next());
                    push(
                        &mut out,
                        &format!(
                            "{} {}{}",
                            media.unwrap_or("m=audio"),
                            p.rtp,
                            rest.map_or(String::new(), |r| format!(" {r}"))
                        ),
                    );
                }
                _ => push(&mut out, line),
            }
            continue;
        }
        if how == Rewrite::Anchor {
            if is_ice_line(line) {
                continue;
            }
            let anchored = section.is_none() || relay_here(section).is_some();
            if anchored && line.starts_with("c=") {
                push(&mut out, &format!("c=IN {} {relay}", ip_kind(relay)));
                continue;
            }
            if section.is_none()
                && let Some(rest) = line.strip_prefix("o=")
            {
                // The origin's address would show the other side's host.
                let mut f: Vec<&str> = rest.split(' ').collect();
                if f.len() == 6 {
                    let ip = relay.to_string();
                    f[4] = ip_kind(relay);
                    f[5] = &ip;
                    push(&mut out, &format!("o={}", f.join(" ")));
                    continue;
                }
            }
            if let Some(p) = relay_here(section)
                && let Some(rest) = line.strip_prefix("a=rtcp:")
            {
                let with_addr = rest.split_whitespace().count() > 1;
                if with_addr {
                    push(
                        &mut out,
                        &format!("a=rtcp:{} IN {} {relay}", p.rtcp, ip_kind(relay)),
                    );
                } else {
                    push(&mut out, &format!("a=rtcp:{}", p.rtcp));
                }
                continue;
            }
        } else if section.is_some() && pending_candidates {
            let is_last_candidate = line.starts_with("a=candidate:")
                && !lines[n + 1..]
                    .iter()
                    .take_while(|l| !l.starts_with("m="))
                    .any(|l| l.starts_with("a=candidate:"));
            if line == "a=end-of-candidates" {
                flush_candidates(&mut out, section, section_mux);
                pending_candidates = false;
            } else if is_last_candidate {
                push(&mut out, line);
                let ends_next = lines
                    .get(n + 1)
                    .is_some_and(|l| *l == "a=end-of-candidates");
                if !ends_next {
                    flush_candidates(&mut out, section, section_mux);
                    pending_candidates = false;
                }
                continue;
            }
        }
        push(&mut out, line);
    }
    if pending_candidates {
        flush_candidates(&mut out, section, section_mux);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "v=0\r\n\
        o=- 123 1 IN IP4 192.0.2.10\r\n\
        s=-\r\n\
        c=IN IP4 192.0.2.10\r\n\
        t=0 0\r\n\
        m=audio 4000 RTP/AVP 0 8 101\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=sendrecv\r\n";

    const ICE: &str = "v=0\r\n\
        o=- 7 2 IN IP4 10.0.0.2\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=ice-ufrag:F7gI\r\n\
        a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n\
        m=audio 5000 RTP/SAVP 111\r\n\
        c=IN IP4 10.0.0.2\r\n\
        a=rtcp:5001\r\n\
        a=candidate:1 1 UDP 2130706431 10.0.0.2 5000 typ host\r\n\
        a=candidate:1 2 UDP 2130706430 10.0.0.2 5001 typ host\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n\
        m=video 5002 RTP/SAVP 96\r\n\
        c=IN IP4 10.0.0.2\r\n\
        a=rtcp-mux\r\n\
        a=candidate:1 1 UDP 2130706431 10.0.0.2 5002 typ host\r\n\
        a=end-of-candidates\r\n";

    fn relay() -> IpAddr {
        "203.0.113.5".parse().unwrap()
    }

    #[test]
    fn inspect_reads_ports_addresses_and_ice() {
        let s = inspect(PLAIN.as_bytes()).unwrap();
        assert!(!s.ice);
        assert_eq!(
            s.media,
            vec![MediaLine {
                port: 4000,
                addr: Some("192.0.2.10".parse().unwrap()),
                rtcp_port: 4001,
                rtcp_mux: false,
                ice: None,
                has_relay_candidate: false,
            }]
        );
        let s = inspect(ICE.as_bytes()).unwrap();
        assert!(s.ice);
        let session_creds = Some(IceCredentials {
            ufrag: "F7gI".into(),
            pwd: "x9cml/YzichV2+XlhiMu8g".into(),
        });
        assert_eq!(s.media[0].ice, session_creds);
        assert_eq!(s.media[1].ice, session_creds);
        assert!(!s.media[0].has_relay_candidate);
        let turn = ICE.replace(
            "a=end-of-candidates",
            "a=candidate:9 1 UDP 16777215 198.51.100.7 3478 typ relay raddr 10.0.0.2 rport 5002\r\na=end-of-candidates",
        );
        let s = inspect(turn.as_bytes()).unwrap();
        assert!(!s.media[0].has_relay_candidate && s.media[1].has_relay_candidate);
        let own = ICE.replace(
            "a=rtcp-mux\r\n",
            "a=rtcp-mux\r\na=ice-ufrag:Vid0\r\na=ice-pwd:videopassword0123456789\r\n",
        );
        let s = inspect(own.as_bytes()).unwrap();
        assert_eq!(s.media[1].ice.as_ref().unwrap().ufrag, "Vid0");
        assert_eq!(s.media[0].ice, session_creds);
        assert_eq!(s.media[0].rtcp_port, 5001);
        assert_eq!(
            (s.media[1].port, s.media[1].rtcp_port, s.media[1].rtcp_mux),
            (5002, 5002, true)
        );
        assert!(inspect(b"not sdp").is_none());
    }

    #[test]
    fn anchoring_points_everything_at_the_relay_and_keeps_the_rest() {
        let ports = [Some(RelayPorts {
            rtp: 30000,
            rtcp: 30001,
        })];
        let out =
            String::from_utf8(rewrite(PLAIN.as_bytes(), Rewrite::Anchor, relay(), &ports)).unwrap();
        assert_eq!(
            out,
            "v=0\r\no=- 123 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             m=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        );
    }

    #[test]
    fn anchoring_removes_ice_and_moves_rtcp() {
        let ports = [
            Some(RelayPorts {
                rtp: 30000,
                rtcp: 30001,
            }),
            Some(RelayPorts {
                rtp: 30002,
                rtcp: 30003,
            }),
        ];
        let out =
            String::from_utf8(rewrite(ICE.as_bytes(), Rewrite::Anchor, relay(), &ports)).unwrap();
        assert!(!out.contains("10.0.0.2"), "{out}");
        assert!(!out.contains("ice-") && !out.contains("candidate"), "{out}");
        assert!(out.contains("m=audio 30000 RTP/SAVP 111\r\nc=IN IP4 203.0.113.5\r\na=rtcp:30001\r\na=crypto:1 AES_CM"));
        assert!(
            out.contains("m=video 30002 RTP/SAVP 96\r\nc=IN IP4 203.0.113.5\r\na=rtcp-mux\r\n")
        );
    }

    #[test]
    fn relay_candidates_join_each_section() {
        let ports = [
            Some(RelayPorts {
                rtp: 30000,
                rtcp: 30001,
            }),
            Some(RelayPorts {
                rtp: 30002,
                rtcp: 30003,
            }),
        ];
        let out = String::from_utf8(rewrite(
            ICE.as_bytes(),
            Rewrite::AddRelayCandidate,
            relay(),
            &ports,
        ))
        .unwrap();
        let expected = ICE
            .replace(
                "a=candidate:1 2 UDP 2130706430 10.0.0.2 5001 typ host\r\n",
                "a=candidate:1 2 UDP 2130706430 10.0.0.2 5001 typ host\r\n\
                 a=candidate:swrelay 1 UDP 16777215 203.0.113.5 30000 typ relay raddr 203.0.113.5 rport 30000\r\n\
                 a=candidate:swrelay 2 UDP 16777214 203.0.113.5 30001 typ relay raddr 203.0.113.5 rport 30001\r\n",
            )
            .replace(
                "a=candidate:1 1 UDP 2130706431 10.0.0.2 5002 typ host\r\na=end-of-candidates\r\n",
                "a=candidate:1 1 UDP 2130706431 10.0.0.2 5002 typ host\r\n\
                 a=candidate:swrelay 1 UDP 16777215 203.0.113.5 30002 typ relay raddr 203.0.113.5 rport 30002\r\n\
                 a=end-of-candidates\r\n",
            );
        assert_eq!(out, expected);
    }

    #[test]
    fn untouched_sections_and_non_sdp_pass_as_they_are() {
        assert_eq!(
            rewrite(PLAIN.as_bytes(), Rewrite::Anchor, relay(), &[None]),
            PLAIN.as_bytes()
        );
        assert_eq!(rewrite(b"hello", Rewrite::Anchor, relay(), &[]), b"hello");
    }

    #[test]
    fn lf_only_bodies_keep_their_line_ends() {
        let lf = PLAIN.replace("\r\n", "\n");
        let ports = [Some(RelayPorts {
            rtp: 30000,
            rtcp: 30001,
        })];
        let out =
            String::from_utf8(rewrite(lf.as_bytes(), Rewrite::Anchor, relay(), &ports)).unwrap();
        assert!(!out.contains('\r'));
        assert!(out.ends_with("a=sendrecv\n"));
    }
}
