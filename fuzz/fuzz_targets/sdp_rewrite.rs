//! SDP bodies through the B2BUA's line rewriter: `inspect`, then `rewrite`
//! in both modes.
//!
//! Input: byte 0 picks the mode (bit 0: add a relay candidate instead of
//! anchoring) and the relay's address family (bit 1: IPv6); byte 1 says
//! which of the first 8 m-lines get relay ports; the rest is the body.
//!
//! Properties: nothing panics; a body that is not SDP (or with no ports to
//! apply) crosses unchanged; the m-lines stay the same in number; anchored
//! m-lines point at the relay (connection address, and port when the
//! m-line has a media type and single spaces, as RFC 8866 requires) and carry no
//! ICE lines; with a relay candidate added, every m-line given ports
//! offers a relayed candidate.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use softswitch::sip::sdp::{RelayPorts, Rewrite, inspect, rewrite};

fuzz_target!(|data: &[u8]| {
    let &[flags, mask, ref body @ ..] = data else {
        return;
    };
    let how = if flags & 1 == 0 {
        Rewrite::Anchor
    } else {
        Rewrite::AddRelayCandidate
    };
    let relay: IpAddr = if flags & 2 == 0 {
        "203.0.113.7".parse().unwrap()
    } else {
        "2001:db8::7".parse().unwrap()
    };
    let ports: Vec<Option<RelayPorts>> = (0..8u16)
        .map(|i| {
            (mask & (1 << i) != 0).then_some(RelayPorts {
                rtp: 40000 + 2 * i,
                rtcp: 40001 + 2 * i,
            })
        })
        .collect();

    let before = inspect(body);
    let out = rewrite(body, how, relay, &ports);
    let Some(before) = before else {
        assert_eq!(out, body, "a body that is not SDP was changed");
        return;
    };
    if mask == 0 {
        assert_eq!(out, body, "a body with no relay ports was changed");
        return;
    }
    let after = inspect(&out).expect("rewritten SDP is no longer SDP");
    assert_eq!(
        after.media.len(),
        before.media.len(),
        "m-lines added or lost"
    );
    let text = std::str::from_utf8(&out).expect("rewritten SDP is not UTF-8");
    let m_lines: Vec<&str> = std::str::from_utf8(body)
        .unwrap()
        .split('\n')
        .filter(|l| l.starts_with("m="))
        .collect();
    for (i, m) in after.media.iter().enumerate() {
        let Some(p) = ports.get(i).copied().flatten() else {
            continue;
        };
        match how {
            Rewrite::Anchor => {
                assert!(
                    m.addr.is_none() || m.addr == Some(relay),
                    "m-line {i} still points at {:?}",
                    m.addr
                );
                let single_spaced = m_lines.get(i).is_some_and(|l| {
                    l.strip_suffix('\r')
                        .unwrap_or(l)
                        .split(' ')
                        .all(|f| f != "m=" && !f.is_empty() && !f.contains(char::is_whitespace))
                });
                if single_spaced {
                    assert_eq!(m.port, p.rtp, "m-line {i} port not rewritten");
                }
                assert!(m.ice.is_none(), "m-line {i} kept ICE credentials");
            }
            Rewrite::AddRelayCandidate => {
                assert!(m.has_relay_candidate, "m-line {i} got no relay candidate");
            }
        }
    }
    if how == Rewrite::Anchor {
        assert!(
            !text
                .split('\n')
                .any(|l| l.starts_with("a=candidate:") || l.starts_with("a=ice-ufrag:")),
            "ICE lines survived anchoring"
        );
    }
});
