//! SDP offer/answer (RFC 3264) for calls the switch answers itself (IVR
//! services): what the caller's offer allows, and the answer pointing at
//! the switch's media endpoint.
//!
//! Only audio is answered, with one codec (Opus, G.711 µ-law or A-law, the
//! first of these the caller lists) and RFC 4733 telephone-events at that
//! codec's clock when offered; every other m-line is refused (port 0), as
//! RFC 3264 §6 wants an answer line for each offered one.
//!
//! Audio is `RTP/AVP`, or `RTP/SAVP` keyed by SDP security descriptions
//! (SDES, RFC 4568): the first `a=crypto` line whose suite and key the
//! endpoint can use is taken, and the answer echoes its tag with a fresh
//! key of ours. A browser's `UDP/TLS/RTP/SAVPF` (or `SAVP`) is answered
//! as a WebRTC leg ([`super::webrtc_sdp`]): ICE-lite and DTLS-SRTP, the
//! keys from the handshake. Plain `RTP/SAVPF` (SDES with feedback) is not
//! spoken.

use std::net::IpAddr;

use media::codec::Codec;
use media::srtp::{CryptoAttribute, MasterKey, SrtpConfig};
use media::webrtc::WebRtcConfig;

use super::webrtc_sdp::{self, BrowserSdp};

/// What the switch will use of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioOffer {
    /// Index of the audio m-line answered.
    pub index: usize,
    /// Where the caller receives RTP (its connection address and port).
    pub addr: Option<IpAddr>,
    pub port: u16,
    /// The codec chosen and its payload type in this offer.
    pub codec: Codec,
    pub payload_type: u8,
    /// The telephone-event payload type, when offered at 8 kHz.
    pub telephone_event: Option<u8>,
    /// For an `RTP/SAVP` offer: the suite chosen, the caller's key (what
    /// it sends with) and a fresh key of ours, which the answer carries.
    pub srtp: Option<SrtpConfig>,
    /// A browser's leg: our ICE credentials and certificate, and its side
    /// (ufrag, fingerprint, our DTLS role).
    pub webrtc: Option<WebRtcConfig>,
    /// The tag of the `a=crypto` line chosen, echoed in the answer.
    crypto_tag: u32,
    /// A browser's `a=mid` per m-line and BUNDLE group, echoed.
    mids: Vec<Option<String>>,
    bundle: bool,
    /// Every usable codec of the audio line, in the offer's order, with
    /// its payload type and telephone-event payload type.
    alternatives: Vec<(Codec, u8, Option<u8>)>,
    /// Every m-line as offered: (media, transport, formats), for the answer.
    lines: Vec<(String, String, String)>,
}

/// Why an offer cannot be answered (the caller gets 488).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("no SDP offer")]
    Missing,
    #[error("no audio stream with RTP/AVP or RTP/SAVP")]
    Audio,
    /// `RTP/SAVP` audio, but no `a=crypto` line the endpoint can use
    /// (suite AES_CM_128_HMAC_SHA1_80 or _32, one inline key, no MKI).
    #[error("no usable SDES crypto attribute")]
    Crypto,
    #[error("no codec in common (Opus, PCMU or PCMA)")]
    Codec,
    /// DTLS-SRTP audio without ICE credentials or a SHA-256 fingerprint
    /// (or no certificate of ours to answer with).
    #[error("WebRTC audio without ICE credentials or a SHA-256 fingerprint")]
    WebRtc,
}

/// Reads an offer. Offers without SDP (late offer) are refused. For a
/// secure one, our key for the answer is drawn here.
pub fn audio_offer(body: &[u8]) -> Result<AudioOffer, OfferError> {
    let text = std::str::from_utf8(body).map_err(|_| OfferError::Missing)?;
    if !text.starts_with("v=") {
        return Err(OfferError::Missing);
    }
    let mut session_addr = None;
    let mut lines = Vec::new();
    // Per m-line: own address, rtpmaps (pt, encoding name, clock).
    let mut addrs: Vec<Option<IpAddr>> = Vec::new();
    let mut maps: Vec<Vec<(u8, String, u32)>> = Vec::new();
    // Per m-line: a=fmtp parameters by payload type.
    let mut fmtps: Vec<Vec<(u8, String)>> = Vec::new();
    let mut ports: Vec<u16> = Vec::new();
    // Per m-line: the a=crypto lines (RFC 4568 §9.1), in the offer's order.
    let mut cryptos: Vec<Vec<&str>> = Vec::new();
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("m=") {
            let mut parts = rest.split_whitespace();
            let media = parts.next().unwrap_or("").to_owned();
            let port = parts
                .next()
                .and_then(|p| p.split('/').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let proto = parts.next().unwrap_or("").to_owned();
            let formats = parts.collect::<Vec<_>>().join(" ");
            lines.push((media, proto, formats));
            ports.push(port);
            cryptos.push(Vec::new());
            addrs.push(None);
            maps.push(Vec::new());
            fmtps.push(Vec::new());
        } else if let Some(c) = line.strip_prefix("c=") {
            let addr = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse().ok());
            match addrs.last_mut() {
                Some(a) => *a = addr,
                None => session_addr = addr,
            }
        } else if let Some(fmtp) = line.strip_prefix("a=fmtp:")
            && let Some(f) = fmtps.last_mut()
            && let Some((pt, params)) = fmtp.split_once(' ')
            && let Ok(pt) = pt.parse()
        {
            f.push((pt, params.trim().to_owned()));
        } else if let Some(crypto) = line.strip_prefix("a=crypto:")
            && let Some(c) = cryptos.last_mut()
        {
            c.push(crypto.trim());
        } else if let Some(map) = line.strip_prefix("a=rtpmap:")
            && let Some(m) = maps.last_mut()
        {
            let mut parts = map.split_whitespace();
            let pt = parts.next().and_then(|p| p.parse().ok());
            let mut enc = parts.next().unwrap_or("").split('/');
            let name = enc.next().unwrap_or("").to_ascii_lowercase();
            let clock = enc.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            if let Some(pt) = pt {
                m.push((pt, name, clock));
            }
        }
    }
    if lines.is_empty() {
        return Err(OfferError::Missing);
    }
    // The offerer lists its crypto lines by preference (RFC 4568 §5.1.1):
    // the first one the endpoint can use is taken.
    let usable_crypto = |i: usize| {
        cryptos[i]
            .iter()
            .find_map(|c| CryptoAttribute::parse(c).ok())
    };
    let mut secure_refused = false;
    let (index, crypto) = lines
        .iter()
        .zip(&ports)
        .enumerate()
        .filter(|(_, ((media, _, _), port))| media == "audio" && **port != 0)
        .find_map(|(i, ((_, proto, _), _))| match proto.as_str() {
            "RTP/AVP" => Some((i, None)),
            p if webrtc_sdp::is_webrtc_proto(p) => Some((i, None)),
            "RTP/SAVP" => {
                let crypto = usable_crypto(i);
                secure_refused |= crypto.is_none();
                crypto.map(|c| (i, Some(c)))
            }
            _ => None,
        })
        .ok_or(if secure_refused {
            OfferError::Crypto
        } else {
            OfferError::Audio
        })?;
    let formats: Vec<u8> = lines[index]
        .2
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let map = &maps[index];
    let name_of = |pt: u8| -> Option<(String, u32)> {
        map.iter()
            .find(|(p, _, _)| *p == pt)
            .map(|(_, n, c)| (n.clone(), *c))
            .or(match pt {
                // Static payload types (RFC 3551) need no rtpmap.
                0 => Some(("pcmu".into(), 8000)),
                8 => Some(("pcma".into(), 8000)),
                _ => None,
            })
    };
    let codecs: Vec<(Codec, u8)> = formats
        .iter()
        .filter_map(|&pt| {
            let (name, clock) = name_of(pt)?;
            let codec = Codec::from_rtpmap(&name, clock)?;
            let fmtp = fmtps[index]
                .iter()
                .find(|(p, _)| *p == pt)
                .map_or("", |(_, f)| f.as_str());
            Some((codec.with_fmtp(fmtp), pt))
        })
        .collect();
    // Events run on the audio codec's clock (RFC 4733 §2.1).
    let events_for = |codec: Codec| {
        formats.iter().copied().find(|&pt| {
            name_of(pt)
                .is_some_and(|(n, clock)| n == "telephone-event" && clock == codec.clock_rate())
        })
    };
    // The caller's order is its preference (RFC 3264 §6.1), but a menu
    // needs keys: the first codec whose clock has telephone-events wins
    // (phones offering Opus often list events at 8 kHz only), else the
    // first codec, whose keys are then heard in the audio.
    let (codec, payload_type) = codecs
        .iter()
        .find(|(c, _)| events_for(*c).is_some())
        .or(codecs.first())
        .copied()
        .ok_or(OfferError::Codec)?;
    let telephone_event = events_for(codec);
    let (webrtc, mids, bundle) = if webrtc_sdp::is_webrtc_proto(&lines[index].1) {
        let browser = BrowserSdp::parse(text);
        let peer = browser.peer(index).ok_or(OfferError::WebRtc)?;
        let identity = webrtc_sdp::identity().ok_or(OfferError::WebRtc)?;
        let config = WebRtcConfig::new(identity, Some(peer));
        (Some(config), browser.mids, browser.bundle)
    } else {
        (None, Vec::new(), false)
    };
    let crypto_tag = crypto.as_ref().map_or(0, |c| c.tag);
    let srtp = crypto.map(|c| SrtpConfig {
        suite: c.suite,
        outgoing: MasterKey::random(),
        incoming: c.key,
    });
    Ok(AudioOffer {
        index,
        addr: addrs[index].or(session_addr),
        port: ports[index],
        codec,
        payload_type,
        telephone_event,
        srtp,
        webrtc,
        crypto_tag,
        mids,
        bundle,
        alternatives: codecs
            .iter()
            .map(|&(c, pt)| (c, pt, events_for(c)))
            .collect(),
        lines,
    })
}

impl AudioOffer {
    /// Takes the offer's G.711 (the first law it lists, with its events)
    /// over what was chosen, if it has one: a browser's leg the gateway
    /// bridges to G.711 then needs no transcoding.
    pub fn prefer_g711(&mut self) {
        if let Some(&(codec, pt, te)) = self
            .alternatives
            .iter()
            .find(|(c, _, _)| matches!(c, Codec::Pcmu | Codec::Pcma))
        {
            self.codec = codec;
            self.payload_type = pt;
            self.telephone_event = te;
        }
    }
}

/// Whether an offer has G.711 audio, the codecs every carrier speaks.
pub fn offers_g711(offer: &AudioOffer) -> bool {
    matches!(offer.codec, Codec::Pcmu | Codec::Pcma)
        || offer
            .lines
            .get(offer.index)
            .is_some_and(|(_, _, formats)| formats.split_whitespace().any(|f| f == "0" || f == "8"))
}

/// The switch's own offer toward a carrier: PCMA (and RFC 4733 events)
/// at `addr:port`. A G.711 carrier speaks both laws; the endpoint follows
/// the answer if it picks another codec.
pub fn g711_offer(addr: IpAddr, port: u16, session_id: u64) -> Vec<u8> {
    let ip = if addr.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=softswitch {session_id} 1 IN {ip} {addr}\r\ns=softswitch\r\nc=IN {ip} {addr}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    .into_bytes()
}

/// The answer: the chosen audio at `addr:port` (`RTP/SAVP` with our key
/// from [`AudioOffer::srtp`] when the offer was secure), every other
/// m-line refused.
pub fn answer(offer: &AudioOffer, addr: IpAddr, port: u16, session_id: u64) -> Vec<u8> {
    let ip = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut sdp = format!(
        "v=0\r\no=softswitch {session_id} 1 IN {ip} {addr}\r\ns=softswitch\r\nc=IN {ip} {addr}\r\nt=0 0\r\n"
    );
    let mid = |i: usize| offer.mids.get(i).cloned().flatten();
    if offer.webrtc.is_some() {
        if let Some(audio) = mid(offer.index).filter(|_| offer.bundle) {
            sdp.push_str(&format!("a=group:BUNDLE {audio}\r\n"));
        }
        sdp.push_str("a=ice-lite\r\n");
    }
    for (i, (media, proto, formats)) in offer.lines.iter().enumerate() {
        if i != offer.index {
            sdp.push_str(&format!("m={media} 0 {proto} {formats}\r\n"));
            if let Some(mid) = mid(i) {
                sdp.push_str(&format!("a=mid:{mid}\r\n"));
            }
            continue;
        }
        let pt = offer.payload_type;
        let proto = if offer.webrtc.is_some() {
            proto.as_str()
        } else if offer.srtp.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        match offer.telephone_event {
            Some(te) => sdp.push_str(&format!("m=audio {port} {proto} {pt} {te}\r\n")),
            None => sdp.push_str(&format!("m=audio {port} {proto} {pt}\r\n")),
        }
        if let Some(mid) = mid(i) {
            sdp.push_str(&format!("a=mid:{mid}\r\n"));
        }
        sdp.push_str(&format!(
            "a=rtpmap:{pt} {}\r\n",
            offer.codec.rtpmap_encoding()
        ));
        if let Some(fmtp) = offer.codec.fmtp() {
            sdp.push_str(&format!("a=fmtp:{pt} {fmtp}\r\n"));
        }
        if let Some(te) = offer.telephone_event {
            sdp.push_str(&format!(
                "a=rtpmap:{te} telephone-event/{}\r\na=fmtp:{te} 0-15\r\n",
                offer.codec.clock_rate()
            ));
        }
        if let Some(srtp) = &offer.srtp {
            let crypto = CryptoAttribute {
                tag: offer.crypto_tag,
                suite: srtp.suite,
                key: srtp.outgoing.clone(),
            };
            sdp.push_str(&format!("a=crypto:{crypto}\r\n"));
        }
        if let Some(webrtc) = &offer.webrtc {
            let role = webrtc
                .peer
                .as_ref()
                .map_or(media::webrtc::DtlsRole::Server, |p| p.role);
            let setup = webrtc_sdp::setup_of(role);
            webrtc_sdp::media_attributes(&mut sdp, webrtc, addr, port, setup);
        }
        sdp.push_str("a=ptime:20\r\na=sendrecv\r\n");
    }
    sdp.into_bytes()
}

/// Which way media flows, from the side whose SDP says it (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// Whether the side that said this wants packets.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }
}

/// The direction of a body's first audio stream: its own attribute, else
/// the session's, else sendrecv; a connection address of 0.0.0.0 (RFC 2543
/// hold, still sent by some equipment) is sendonly when nothing else says
/// otherwise.
pub fn direction(body: &[u8]) -> Direction {
    let text = String::from_utf8_lossy(body);
    let (mut session, mut audio) = (None, None);
    let mut section = Section::Session;
    let mut null_address = false;
    for line in text.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            section = match (section, media.starts_with("audio ")) {
                (Section::Session, true) => Section::Audio,
                _ => Section::Other,
            };
            continue;
        }
        let found = match line {
            "a=sendrecv" => Some(Direction::SendRecv),
            "a=sendonly" => Some(Direction::SendOnly),
            "a=recvonly" => Some(Direction::RecvOnly),
            "a=inactive" => Some(Direction::Inactive),
            _ => None,
        };
        match section {
            Section::Session => session = found.or(session),
            Section::Audio => audio = found.or(audio),
            Section::Other => {}
        }
        if section != Section::Other
            && line
                .strip_prefix("c=IN IP4 ")
                .is_some_and(|a| a.starts_with("0.0.0.0"))
        {
            null_address = true;
        }
    }
    match audio.or(session) {
        Some(d) => d,
        None if null_address => Direction::SendOnly,
        None => Direction::SendRecv,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Session,
    Audio,
    Other,
}

/// One of the switch's own SDPs ([`g711_offer`], [`answer`]) saying
/// `direction`, as version `version` of its session (RFC 3264 §8: a
/// changed description has a higher version).
pub fn with_direction(sdp: &[u8], direction: Direction, version: u64) -> Vec<u8> {
    let text = String::from_utf8_lossy(sdp);
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.split_inclusive("\r\n") {
        if let Some(origin) = line.strip_prefix("o=softswitch ") {
            let mut fields: Vec<&str> = origin.split(' ').collect();
            let version = version.to_string();
            if fields.len() > 1 {
                fields[1] = &version;
            }
            out.push_str("o=softswitch ");
            out.push_str(&fields.join(" "));
        } else if line == "a=sendrecv\r\n" {
            out.push_str("a=");
            out.push_str(direction.attribute());
            out.push_str("\r\n");
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::srtp::Suite;

    #[test]
    fn directions_are_read_per_stream_and_ours_rewritten() {
        let sdp = |session: &str, audio: &str, c: &str| {
            format!(
                "v=0\r\no=- 1 2 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 {c}\r\nt=0 0\r\n{session}\
                 m=audio 4000 RTP/AVP 0\r\n{audio}m=video 4002 RTP/AVP 97\r\na=inactive\r\n"
            )
        };
        for (session, audio, c, want) in [
            ("", "", "192.0.2.7", Direction::SendRecv),
            ("", "a=sendonly\r\n", "192.0.2.7", Direction::SendOnly),
            ("a=inactive\r\n", "", "192.0.2.7", Direction::Inactive),
            (
                "a=inactive\r\n",
                "a=recvonly\r\n",
                "192.0.2.7",
                Direction::RecvOnly,
            ),
            ("", "", "0.0.0.0", Direction::SendOnly),
            ("", "a=sendrecv\r\n", "0.0.0.0", Direction::SendRecv),
        ] {
            assert_eq!(
                direction(sdp(session, audio, c).as_bytes()),
                want,
                "{session}{audio}{c}"
            );
        }
        let ours = g711_offer("192.0.2.1".parse().unwrap(), 4000, 77);
        let held = String::from_utf8(with_direction(&ours, Direction::SendOnly, 2)).unwrap();
        assert!(
            held.contains("o=softswitch 77 2 IN IP4 192.0.2.1\r\n"),
            "{held}"
        );
        assert!(
            held.ends_with("a=sendonly\r\n") && !held.contains("sendrecv"),
            "{held}"
        );
        assert_eq!(direction(held.as_bytes()), Direction::SendOnly);
        assert_eq!(with_direction(&ours, Direction::SendRecv, 1), ours);
    }

    const BARESIP: &str = "v=0\r\no=- 1 2 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 96 8 0 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
        m=video 4002 RTP/AVP 97\r\na=rtpmap:97 VP8/90000\r\n";

    #[test]
    fn opus_first_is_answered_with_opus_and_events_at_48_khz() {
        let sdp = "v=0\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 111 0 101 100\r\n\
            a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1;maxplaybackrate=16000\r\n\
            a=rtpmap:101 telephone-event/48000\r\na=rtpmap:100 telephone-event/8000\r\n";
        let o = audio_offer(sdp.as_bytes()).unwrap();
        assert!(matches!(o.codec, Codec::Opus(_)), "{o:?}");
        assert_eq!((o.payload_type, o.telephone_event), (111, Some(101)));
        let a = String::from_utf8(answer(&o, "127.0.0.1".parse().unwrap(), 20000, 3)).unwrap();
        assert!(a.contains("m=audio 20000 RTP/AVP 111 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:111 opus/48000/2\r\n"), "{a}");
        assert!(a.contains("a=fmtp:111 "), "{a}");
        assert!(a.contains("a=rtpmap:101 telephone-event/48000\r\n"), "{a}");
        // Without events at all, the first codec: Opus.
        let no_events = sdp.replace(" 101 100\r\n", "\r\n");
        let o = audio_offer(no_events.as_bytes()).unwrap();
        assert!(matches!(o.codec, Codec::Opus(_)) && o.telephone_event.is_none());
    }

    #[test]
    fn the_first_codec_with_telephone_events_is_chosen() {
        // baresip lists Opus first, but its telephone-event is at 8 kHz:
        // G.711 is taken so that its keys arrive as events.
        let o = audio_offer(BARESIP.as_bytes()).unwrap();
        assert_eq!((o.codec, o.payload_type), (Codec::Pcma, 8));
        assert_eq!(o.telephone_event, Some(101));
        assert_eq!((o.addr, o.port), (Some("192.0.2.7".parse().unwrap()), 4000));
        let a = String::from_utf8(answer(&o, "127.0.0.1".parse().unwrap(), 20000, 7)).unwrap();
        assert!(a.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:8 PCMA/8000\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:101 telephone-event/8000\r\n"), "{a}");
        assert!(
            a.contains("m=video 0 RTP/AVP 97\r\n"),
            "the video line is refused: {a}"
        );
        assert!(a.contains("c=IN IP4 127.0.0.1\r\n"), "{a}");
    }

    #[test]
    fn static_payload_types_need_no_rtpmap_and_media_level_addresses_win() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            m=audio 5004 RTP/AVP 0\r\nc=IN IP4 10.0.0.9\r\n";
        let o = audio_offer(sdp.as_bytes()).unwrap();
        assert_eq!(
            (o.codec, o.payload_type, o.telephone_event),
            (Codec::Pcmu, 0, None)
        );
        assert_eq!(o.addr, Some("10.0.0.9".parse().unwrap()));
        let a = String::from_utf8(answer(&o, "::1".parse().unwrap(), 20002, 1)).unwrap();
        assert!(a.contains("m=audio 20002 RTP/AVP 0\r\n"), "{a}");
        assert!(a.contains("c=IN IP6 ::1\r\n"), "{a}");
        assert!(!a.contains("telephone-event"), "{a}");
    }

    #[test]
    fn offers_the_endpoint_cannot_serve_are_refused() {
        let g722_only =
            "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n";
        assert_eq!(audio_offer(g722_only.as_bytes()), Err(OfferError::Codec));
        let srtp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/SAVP 0\r\n";
        assert_eq!(audio_offer(srtp.as_bytes()), Err(OfferError::Crypto));
        let video = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5004 RTP/AVP 97\r\n";
        assert_eq!(audio_offer(video.as_bytes()), Err(OfferError::Audio));
        let rejected = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(audio_offer(rejected.as_bytes()), Err(OfferError::Audio));
        assert_eq!(audio_offer(b""), Err(OfferError::Missing));
        assert_eq!(audio_offer(b"\xff\xfe"), Err(OfferError::Missing));
        assert_eq!(audio_offer(b"v=0\r\n"), Err(OfferError::Missing));
        // A telephone-event at another clock rate is not ours.
        let te16 = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/16000\r\n";
        assert_eq!(audio_offer(te16.as_bytes()).unwrap().telephone_event, None);
    }

    const KEY: &str = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

    #[test]
    fn srtp_offers_with_sdes_keys_are_answered_with_srtp_and_a_fresh_key() {
        let sdp = format!(
            "v=0\r\no=- 1 2 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n\
             m=audio 4000 RTP/SAVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{k256}\r\n\
             a=crypto:2 AES_CM_128_HMAC_SHA1_80 {KEY}|1:4\r\n\
             a=crypto:3 AES_CM_128_HMAC_SHA1_32 {KEY}|2^31\r\n\
             a=crypto:4 AES_CM_128_HMAC_SHA1_80 {KEY}\r\n",
            k256 = "A".repeat(60),
        );
        let o = audio_offer(sdp.as_bytes()).unwrap();
        // The first line the endpoint can use: tag 1's suite is unknown,
        // tag 2 has an MKI.
        let srtp = o.srtp.clone().unwrap();
        assert_eq!(srtp.suite, Suite::AesCm128HmacSha1_32);
        assert_eq!(srtp.incoming.key_params(), KEY);
        assert_eq!(srtp.incoming.lifetime(), Some(1 << 31));
        assert_ne!(srtp.outgoing, srtp.incoming);
        let a = String::from_utf8(answer(&o, "127.0.0.1".parse().unwrap(), 20000, 7)).unwrap();
        assert!(a.contains("m=audio 20000 RTP/SAVP 8 101\r\n"), "{a}");
        let crypto = format!(
            "a=crypto:3 AES_CM_128_HMAC_SHA1_32 {}\r\n",
            srtp.outgoing.key_params()
        );
        assert!(a.contains(&crypto), "{a}");
        assert_eq!(a.matches("a=crypto:").count(), 1, "{a}");
        // Each offer read draws its own key.
        let again = audio_offer(sdp.as_bytes()).unwrap().srtp.unwrap();
        assert_ne!(again.outgoing, srtp.outgoing);
        // A plain offer stays plain.
        let plain = audio_offer(BARESIP.as_bytes()).unwrap();
        assert_eq!(plain.srtp, None);
        let a = String::from_utf8(answer(&plain, "127.0.0.1".parse().unwrap(), 20000, 7)).unwrap();
        assert!(a.contains("RTP/AVP 8 101") && !a.contains("crypto"), "{a}");
    }

    #[test]
    fn secure_offers_the_endpoint_cannot_key_are_refused() {
        let head = "v=0\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n";
        for (media, error) in [
            // Only an MKI'd key, an unknown suite, a non-inline key.
            (
                format!("m=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY}|2^20|1:4\r\n"),
                OfferError::Crypto,
            ),
            (
                format!("m=audio 5004 RTP/SAVP 0\r\na=crypto:1 F8_128_HMAC_SHA1_80 {KEY}\r\n"),
                OfferError::Crypto,
            ),
            (
                format!("m=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY} UNENCRYPTED_SRTP\r\n"),
                OfferError::Crypto,
            ),
            // The SDES feedback profile is not spoken, with or without a
            // crypto line; DTLS-SRTP needs ICE and a SHA-256 fingerprint.
            (
                format!("m=audio 5004 RTP/SAVPF 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY}\r\n"),
                OfferError::Audio,
            ),
            (
                "m=audio 5004 UDP/TLS/RTP/SAVP 0\r\na=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\n".into(),
                OfferError::WebRtc,
            ),
            (
                format!("m=audio 0 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY}\r\n"),
                OfferError::Audio,
            ),
        ] {
            let sdp = format!("{head}{media}");
            assert_eq!(audio_offer(sdp.as_bytes()), Err(error), "{media}");
        }
        // A crypto line is read for its own m-line only: a plain audio
        // line after a refused secure one is answered, in plain RTP.
        let sdp = format!(
            "{head}m=audio 5004 RTP/SAVP 0\r\na=crypto:1 F8_128_HMAC_SHA1_80 {KEY}\r\n\
             m=audio 5006 RTP/AVP 0\r\n"
        );
        let o = audio_offer(sdp.as_bytes()).unwrap();
        assert_eq!((o.index, o.port, &o.srtp), (1, 5006, &None));
        let a = String::from_utf8(answer(&o, "127.0.0.1".parse().unwrap(), 20000, 7)).unwrap();
        assert!(
            a.contains("m=audio 0 RTP/SAVP 0\r\nm=audio 20000 RTP/AVP 0\r\n"),
            "{a}"
        );
    }
}
