//! Presence documents: PIDF bodies that devices PUBLISH (the one presence
//! format the switch parses), and the documents it writes from user data:
//! PIDF, RLMI `multipart/related` NOTIFY bodies (RFC 4662) and
//! message-summary bodies (RFC 3842).
//!
//! The input is a published body; its text (lossy UTF-8) also serves as the
//! note, entity, logins and names written into the generated documents.
//!
//! Properties: nothing panics; a note written with `to_pidf` reads back
//! with `parse_device_status` as the note a device would see (control
//! characters dropped, trimmed, at most 1024 characters), whatever the
//! entity; each RLMI body lists every member once, and every body part it
//! carries is a PIDF document that parses with the member's state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use softswitch::sip::presence::pidf::{Reachability, UserPresence, parse_device_status};
use softswitch::sip::presence::{mwi, rlmi};
use softswitch::store::presence::MailboxCounts;

const BOUNDARY: &str = "fuzz-bnd";

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = parse_device_status(data) {
        assert!(
            status
                .note
                .as_ref()
                .is_none_or(|n| n.chars().count() <= 1024 && !n.is_empty())
        );
    }
    let text = String::from_utf8_lossy(data);

    // PIDF written, then read back.
    let reachability = match data.first().map(|b| b % 3) {
        Some(0) => Reachability::Online,
        Some(1) => Reachability::Push,
        _ => Reachability::Offline,
    };
    let presence = UserPresence {
        reachability,
        push_capable: data.len() % 2 == 0,
        note: Some(text.to_string()),
        avatar_updated_at: data.get(1).map(|&b| i64::from(b) << 40),
    };
    let doc = presence.to_pidf(&text, &text);
    let read = parse_device_status(doc.as_bytes()).expect("our own PIDF does not parse");
    assert_eq!(read.open, reachability == Reachability::Online);
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .collect();
    let expected = Some(cleaned.trim())
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(1024).collect::<String>());
    assert_eq!(read.note, expected, "note changed on its way through PIDF");

    // RLMI list of up to 8 members named by the input's lines.
    let lines: Vec<&str> = text.split('\n').take(8).collect();
    let members: Vec<rlmi::Member<'_>> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| rlmi::Member {
            uri: format!("sip:{line}@example.com"),
            login: line,
            name: (i % 3 != 0).then_some(*line),
            state: (i % 2 == 0).then_some(&presence),
        })
        .collect();
    let with_state = members.iter().filter(|m| m.state.is_some()).count();
    let body = rlmi::build(
        &format!("sip:{}@example.com", lines[0]),
        data.len() as u32,
        true,
        &members,
        "example.com",
        BOUNDARY,
    );
    assert!(body.body.ends_with(&format!("--{BOUNDARY}--\r\n")));
    let delimiter = format!("--{BOUNDARY}\r\n");
    let mut parts = body.body.split(&delimiter);
    assert_eq!(parts.next(), Some(""));
    let parts: Vec<&str> = parts.collect();
    if !text.contains(BOUNDARY) {
        assert_eq!(parts.len(), 1 + with_state, "body parts lost or added");
        for (i, part) in parts.iter().enumerate() {
            let (head, doc) = part
                .split_once("\r\n\r\n")
                .expect("part without a header section");
            assert_eq!(
                head.split("\r\n").count(),
                3,
                "part headers broken: {head:?}"
            );
            if i == 0 {
                assert_eq!(doc.matches("<resource ").count(), members.len());
                assert_eq!(doc.matches("<instance ").count(), with_state);
            } else {
                let read = parse_device_status(doc.as_bytes()).expect("a PIDF part does not parse");
                assert_eq!(read.open, reachability == Reachability::Online);
            }
        }
    }

    // Message summary.
    let counts = MailboxCounts {
        new: data.get(2).map_or(0, |&b| i64::from(b) - 100),
        old: data.len() as i64,
    };
    let summary = mwi::summary(&format!("sip:{}@example.com", lines[0]), counts);
    assert_eq!(
        summary.starts_with("Messages-Waiting: yes\r\n"),
        counts.new > 0
    );
});
