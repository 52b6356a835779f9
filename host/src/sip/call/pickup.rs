//! Picking a parked call (SPEC §9): the callee's app, woken by an
//! incoming-call push, sends an INVITE with `Replaces: <parked call id>`
//! (RFC 3891) and is connected to the waiting caller.
//!
//! Both sides then hold an offer (the caller's INVITE, the pickup INVITE):
//! each gets the other's offer as its answer, cut down to the formats it
//! offered itself, so that neither is answered with a codec it never named.

/// `Replaces: call-id;to-tag=...;from-tag=...[;early-only]` (RFC 3891 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: Option<String>,
    pub from_tag: Option<String>,
}

/// Parses a Replaces header value; `None` when malformed.
pub fn parse_replaces(value: &str) -> Option<Replaces> {
    let mut parts = value.split(';');
    let call_id = parts.next()?.trim();
    if call_id.is_empty() || call_id.len() > 255 || call_id.contains(char::is_whitespace) {
        return None;
    }
    let (mut to_tag, mut from_tag) = (None, None);
    for p in parts {
        let (name, v) = p.split_once('=').unwrap_or((p, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "to-tag" => to_tag = Some(v.trim().to_string()),
            "from-tag" => from_tag = Some(v.trim().to_string()),
            _ => {}
        }
    }
    Some(Replaces {
        call_id: call_id.to_string(),
        to_tag,
        from_tag,
    })
}

/// One format of an m-line: payload type and its `rtpmap` encoding
/// (`PCMA/8000`), lowercased; static types without rtpmap use their number.
fn formats(section: &[&str]) -> Vec<(String, String)> {
    let Some(m) = section.first() else {
        return Vec::new();
    };
    let pts: Vec<&str> = m.split_whitespace().skip(3).collect();
    pts.iter()
        .map(|pt| {
            let name = section
                .iter()
                .find_map(|l| {
                    let rest = l.strip_prefix("a=rtpmap:")?;
                    let (p, enc) = rest.split_once(' ')?;
                    (p == *pt).then(|| enc.trim().to_ascii_lowercase())
                })
                .unwrap_or_else(|| static_name(pt));
            (pt.to_string(), name)
        })
        .collect()
}

/// The encoding of a static payload type an SDP may leave without rtpmap
/// (RFC 3551 table 4); others are known by number only.
fn static_name(pt: &str) -> String {
    match pt {
        "0" => "pcmu/8000".into(),
        "3" => "gsm/8000".into(),
        "4" => "g723/8000".into(),
        "8" => "pcma/8000".into(),
        "9" => "g722/8000".into(),
        "13" => "cn/8000".into(),
        "18" => "g729/8000".into(),
        _ => format!("pt{pt}"),
    }
}

/// Splits an SDP into its session part and its media sections (each
/// starting with its `m=` line).
fn sections(sdp: &str) -> (Vec<&str>, Vec<Vec<&str>>) {
    let mut session = Vec::new();
    let mut media: Vec<Vec<&str>> = Vec::new();
    for line in sdp.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            media.push(vec![line]);
        } else if let Some(last) = media.last_mut() {
            last.push(line);
        } else {
            session.push(line);
        }
    }
    (session, media)
}

/// Whether an attribute line belongs to payload type `pt`
/// (`a=rtpmap:`, `a=fmtp:`, `a=rtcp-fb:`).
fn format_attribute_of(line: &str) -> Option<&str> {
    for prefix in ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.split_whitespace().next();
        }
    }
    None
}

/// `offer` (what one side offered) turned into an answer to `other` (the
/// other side's offer): as many m-lines as `other`, each keeping only the
/// formats of `offer`'s m-line of the same kind that `other`'s also names
/// (by encoding, or by number for static types); an m-line with nothing in
/// common, or none to match, is refused (port 0). `None` when nothing at
/// all is in common or either is not SDP.
pub fn answer_from(offer: &[u8], other: &[u8]) -> Option<Vec<u8>> {
    let offer = std::str::from_utf8(offer).ok()?;
    let other = std::str::from_utf8(other).ok()?;
    let (session, media) = sections(offer);
    let (_, wanted) = sections(other);
    if wanted.is_empty() {
        return None;
    }
    let mut out: Vec<String> = session.iter().map(|l| l.to_string()).collect();
    let mut used = vec![false; media.len()];
    let mut any = false;
    for want in &wanted {
        let kind = want[0].split_whitespace().next().unwrap_or("m=");
        let theirs = formats(want);
        let mine = media
            .iter()
            .enumerate()
            .find(|(i, s)| !used[*i] && s[0].split_whitespace().next() == Some(kind));
        let kept: Vec<String> = mine
            .map(|(_, s)| {
                formats(s)
                    .into_iter()
                    .filter(|(pt, name)| {
                        theirs.iter().any(|(tpt, tname)| {
                            tname == name
                                || (tpt == pt
                                    && (name.starts_with("pt") || tname.starts_with("pt")))
                        })
                    })
                    .map(|(pt, _)| pt)
                    .collect()
            })
            .unwrap_or_default();
        let Some((i, section)) = mine.filter(|_| !kept.is_empty()) else {
            // Refused: the kind and the other side's formats, port 0.
            let mut fields: Vec<&str> = want[0].split_whitespace().collect();
            if fields.len() >= 4 {
                fields[1] = "0";
                out.push(fields.join(" "));
            }
            continue;
        };
        used[i] = true;
        any = true;
        let fields: Vec<&str> = section[0].split_whitespace().collect();
        out.push(format!(
            "{} {} {} {}",
            fields[0],
            fields[1],
            fields[2],
            kept.join(" ")
        ));
        for line in &section[1..] {
            if let Some(pt) = format_attribute_of(line)
                && !kept.iter().any(|k| k == pt)
            {
                continue;
            }
            out.push(line.to_string());
        }
    }
    any.then(|| {
        let mut s = out.join("\r\n");
        s.push_str("\r\n");
        s.into_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: &str = "v=0\r\no=alice 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\na=sendrecv\r\n";
    const PICKUP: &str = "v=0\r\no=bob 7 7 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
        m=audio 5000 RTP/AVP 96 0 8 100\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\na=rtpmap:100 telephone-event/8000\r\na=fmtp:96 useinbandfec=1\r\n\
        m=video 5002 RTP/AVP 97\r\na=rtpmap:97 VP8/90000\r\n";

    #[test]
    fn each_side_is_answered_with_the_others_offer_cut_to_its_own_formats() {
        let to_caller =
            String::from_utf8(answer_from(PICKUP.as_bytes(), CALLER.as_bytes()).unwrap()).unwrap();
        assert!(to_caller.contains("c=IN IP4 10.0.0.2"), "{to_caller}");
        assert!(
            to_caller.contains("m=audio 5000 RTP/AVP 0 8 100\r\n"),
            "{to_caller}"
        );
        assert!(
            !to_caller.contains("opus") && !to_caller.contains("m=video"),
            "{to_caller}"
        );
        let to_pickup =
            String::from_utf8(answer_from(CALLER.as_bytes(), PICKUP.as_bytes()).unwrap()).unwrap();
        assert!(
            to_pickup.contains("m=audio 4000 RTP/AVP 8 0 101\r\n"),
            "{to_pickup}"
        );
        assert!(to_pickup.contains("a=fmtp:101 0-15"), "{to_pickup}");
        // The caller offered no video: refused in the answer.
        assert!(to_pickup.contains("m=video 0 RTP/AVP 97"), "{to_pickup}");
    }

    #[test]
    fn nothing_in_common_is_no_answer() {
        let g729 =
            "v=0\r\nc=IN IP4 10.0.0.3\r\nm=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        assert_eq!(answer_from(g729.as_bytes(), CALLER.as_bytes()), None);
        assert_eq!(answer_from(b"", CALLER.as_bytes()), None);
    }

    #[test]
    fn replaces_values() {
        assert_eq!(
            parse_replaces("425928@bobster.example.org;to-tag=7743;from-tag=6472"),
            Some(Replaces {
                call_id: "425928@bobster.example.org".into(),
                to_tag: Some("7743".into()),
                from_tag: Some("6472".into()),
            })
        );
        assert_eq!(parse_replaces("abc").unwrap().to_tag, None);
        assert_eq!(parse_replaces(""), None);
        assert_eq!(parse_replaces("a b;to-tag=1"), None);
    }
}
