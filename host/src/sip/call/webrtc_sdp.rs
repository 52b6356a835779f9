//! SDP of a browser's leg the switch terminates (its WebRTC gateway): what
//! the browser says of its ICE and DTLS, and what the switch says back.
//!
//! The switch is an ICE-lite agent with one host candidate (RFC 8445 §2.5,
//! RFC 8839), DTLS-SRTP (RFC 5763/5764) with its process certificate's
//! SHA-256 fingerprint, RTCP multiplexed (RFC 5761, which browsers
//! require), and echoes the browser's `a=mid` and BUNDLE group (RFC 8843)
//! so that the one audio section is what the browser's transport carries.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use media::webrtc::{DtlsIdentity, DtlsRole, WebRtcConfig, WebRtcPeer, parse_fingerprint};

use crate::config::BrowserCodec;

/// Whether an m-line's protocol is DTLS-SRTP's (what browsers offer).
pub fn is_webrtc_proto(proto: &str) -> bool {
    matches!(proto, "UDP/TLS/RTP/SAVPF" | "UDP/TLS/RTP/SAVP")
}

/// The switch's DTLS certificate, made once per process: browsers pin it
/// per call through the SDP fingerprint, so nothing needs it to last.
pub fn identity() -> Option<Arc<DtlsIdentity>> {
    static IDENTITY: OnceLock<Option<Arc<DtlsIdentity>>> = OnceLock::new();
    IDENTITY
        .get_or_init(|| match DtlsIdentity::generate() {
            Ok(identity) => Some(Arc::new(identity)),
            Err(e) => {
                tracing::error!(error = %e, "no DTLS certificate: browsers' calls cannot be bridged");
                None
            }
        })
        .clone()
}

/// ICE and DTLS attributes of the session or of one m-line.
#[derive(Debug, Default, Clone)]
struct Attributes {
    ufrag: Option<String>,
    fingerprint: Option<String>,
    setup: Option<String>,
    mid: Option<String>,
}

/// What a browser's SDP says, per m-line.
#[derive(Debug, Clone, Default)]
pub struct BrowserSdp {
    /// Per m-line, its `a=mid`.
    pub mids: Vec<Option<String>>,
    /// A BUNDLE group was offered (echoed in the answer).
    pub bundle: bool,
    session: Attributes,
    media: Vec<Attributes>,
}

impl BrowserSdp {
    pub fn parse(text: &str) -> BrowserSdp {
        let mut sdp = BrowserSdp::default();
        for line in text.lines().map(|l| l.trim_end_matches('\r')) {
            if line.starts_with("m=") {
                sdp.media.push(Attributes::default());
                continue;
            }
            if line.starts_with("a=group:BUNDLE") {
                sdp.bundle = true;
            }
            let attrs = sdp.media.last_mut().unwrap_or(&mut sdp.session);
            let value = |prefix: &str| line.strip_prefix(prefix).map(|v| v.trim().to_owned());
            if let Some(v) = value("a=ice-ufrag:") {
                attrs.ufrag = Some(v);
            } else if let Some(v) = value("a=fingerprint:") {
                attrs.fingerprint = Some(v);
            } else if let Some(v) = value("a=setup:") {
                attrs.setup = Some(v);
            } else if let Some(v) = value("a=mid:") {
                attrs.mid = Some(v);
            }
        }
        sdp.mids = sdp.media.iter().map(|m| m.mid.clone()).collect();
        sdp
    }

    /// The browser's side of m-line `index`: its ufrag, fingerprint (SHA-256
    /// only), and our DTLS role. `setup:passive` makes the switch the
    /// client; `actpass`, `active` or nothing (RFC 5763 §5: the offerer
    /// is told `actpass`, so the answerer picks; we pick passive) make it
    /// the server.
    pub fn peer(&self, index: usize) -> Option<WebRtcPeer> {
        let media = self.media.get(index)?;
        let ufrag = media.ufrag.clone().or(self.session.ufrag.clone())?;
        let fingerprint = media
            .fingerprint
            .as_deref()
            .or(self.session.fingerprint.as_deref())
            .and_then(parse_fingerprint)?;
        let setup = media.setup.as_deref().or(self.session.setup.as_deref());
        let role = match setup {
            Some("passive") => DtlsRole::Client,
            _ => DtlsRole::Server,
        };
        Some(WebRtcPeer {
            ice_ufrag: ufrag,
            fingerprint,
            role,
        })
    }
}

/// Our `a=` lines of the audio section: ICE-lite credentials and the one
/// host candidate, the fingerprint, `a=setup` (`actpass` in an offer, our
/// role in an answer), rtcp-mux, and a stream id for the browser's track.
pub fn media_attributes(
    sdp: &mut String,
    config: &WebRtcConfig,
    addr: IpAddr,
    port: u16,
    setup: &str,
) {
    sdp.push_str(&format!(
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n\
         a=rtcp-mux\r\na=msid:softswitch audio\r\n\
         a=candidate:1 1 UDP 2130706431 {addr} {port} typ host\r\na=end-of-candidates\r\n",
        config.local.ufrag,
        config.local.pwd,
        config.identity.fingerprint(),
    ));
}

/// `a=setup` of our answer for the role we took.
pub fn setup_of(role: DtlsRole) -> &'static str {
    match role {
        DtlsRole::Client => "active",
        DtlsRole::Server => "passive",
    }
}

/// The switch's offer to a browser over DTLS-SRTP with ICE-lite: G.711
/// (and its events) only, or Opus first then G.711 (events on either
/// clock), as `codec` says.
pub fn offer(
    addr: IpAddr,
    port: u16,
    session_id: u64,
    config: &WebRtcConfig,
    codec: BrowserCodec,
) -> Vec<u8> {
    let ip = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let (formats, opus) = match codec {
        BrowserCodec::G711 => ("0 8 101", ""),
        BrowserCodec::Opus => (
            "111 0 8 110 101",
            "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
             a=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-15\r\n",
        ),
    };
    let mut sdp = format!(
        "v=0\r\no=softswitch {session_id} 1 IN {ip} {addr}\r\ns=softswitch\r\nc=IN {ip} {addr}\r\nt=0 0\r\n\
         a=group:BUNDLE 0\r\na=ice-lite\r\n\
         m=audio {port} UDP/TLS/RTP/SAVPF {formats}\r\na=mid:0\r\n{opus}\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    );
    media_attributes(&mut sdp, config, addr, port, "actpass");
    sdp.push_str("a=ptime:20\r\na=sendrecv\r\n");
    sdp.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n\
        a=ice-ufrag:Wq3n\r\na=ice-pwd:9eYnXKBuSvbAxRbDUbH9JY1q\r\na=ice-options:trickle\r\n\
        a=fingerprint:sha-256 0F:74:31:25:CB:A2:13:EC:28:6F:6D:2C:61:FF:5D:C2:BC:B9:DB:3D:98:14:8D:1A:BB:EA:33:0C:A4:60:A8:8E\r\n\
        a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n\
        a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n\
        a=rtpmap:110 telephone-event/48000\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=setup:passive\r\n\
        a=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn a_chrome_offer_gives_its_ufrag_fingerprint_mids_and_our_role() {
        let sdp = BrowserSdp::parse(CHROME_OFFER);
        assert!(sdp.bundle);
        assert_eq!(sdp.mids, vec![Some("0".into()), Some("1".into())]);
        let peer = sdp.peer(0).unwrap();
        assert_eq!(peer.ice_ufrag, "Wq3n");
        assert_eq!(peer.fingerprint.len(), 32);
        assert_eq!(peer.fingerprint[0], 0x0f);
        assert_eq!(peer.role, DtlsRole::Server);
        // The video section names no credentials of its own.
        assert!(sdp.peer(1).is_none());
        assert!(sdp.peer(2).is_none());
        // Session-level ones serve every section; a section's a=setup wins.
        let session_level = CHROME_OFFER.replacen("a=ice-ufrag:Wq3n\r\n", "", 1).replacen(
            "a=msid-semantic: WMS\r\n",
            "a=msid-semantic: WMS\r\na=ice-ufrag:Sess\r\na=fingerprint:sha-256 0F:74:31:25:CB:A2:13:EC:28:6F:6D:2C:61:FF:5D:C2:BC:B9:DB:3D:98:14:8D:1A:BB:EA:33:0C:A4:60:A8:8E\r\n",
            1,
        );
        let video = BrowserSdp::parse(&session_level).peer(1).unwrap();
        assert_eq!(video.ice_ufrag, "Sess");
        assert_eq!(video.role, DtlsRole::Client);
        let no_fingerprint = CHROME_OFFER.replace("a=fingerprint:sha-256", "a=fingerprint:sha-1");
        assert!(BrowserSdp::parse(&no_fingerprint).peer(0).is_none());
    }

    #[test]
    fn a_chrome_offer_is_answered_as_a_webrtc_leg_of_opus() {
        use super::super::endpoint_sdp::{answer, audio_offer};
        let offer = audio_offer(CHROME_OFFER.as_bytes()).unwrap();
        assert_eq!(offer.codec.rtpmap_encoding(), "opus/48000/2");
        assert_eq!(
            (offer.payload_type, offer.telephone_event),
            (111, Some(110))
        );
        assert!(offer.srtp.is_none());
        let webrtc = offer.webrtc.clone().unwrap();
        assert_eq!(webrtc.peer.as_ref().unwrap().role, DtlsRole::Server);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        let sdp = String::from_utf8(answer(&offer, addr, 41000, 9)).unwrap();
        for line in [
            "a=group:BUNDLE 0\r\n",
            "a=ice-lite\r\n",
            "m=audio 41000 UDP/TLS/RTP/SAVPF 111 110\r\na=mid:0\r\n",
            "a=setup:passive\r\n",
            "a=rtcp-mux\r\n",
            &format!("a=ice-pwd:{}\r\n", webrtc.local.pwd),
            "a=candidate:1 1 UDP 2130706431 192.0.2.1 41000 typ host\r\n",
            // The video section refused, its mid kept.
            "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n",
        ] {
            assert!(sdp.contains(line), "{line:?} not in {sdp}");
        }
        assert!(!sdp.contains("a=crypto"));
        // With G.711 preferred, the browser's PCMU and its 8 kHz events.
        let mut g711 = offer.clone();
        g711.prefer_g711();
        assert_eq!(
            (g711.codec, g711.payload_type, g711.telephone_event),
            (media::Codec::Pcmu, 0, Some(126))
        );
        // No fingerprint: refused (488), not answered without DTLS.
        let bare = CHROME_OFFER.replace("a=fingerprint:sha-256", "a=x-fingerprint:sha-256");
        assert!(audio_offer(bare.as_bytes()).is_err());
    }

    #[test]
    fn our_offer_is_ice_lite_dtls_with_one_host_candidate() {
        let config = WebRtcConfig::new(identity().unwrap(), None);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        let g711 = String::from_utf8(offer(addr, 40000, 7, &config, BrowserCodec::G711)).unwrap();
        assert!(g711.contains("m=audio 40000 UDP/TLS/RTP/SAVPF 0 8 101\r\n"));
        assert!(!g711.contains("opus"));
        let sdp = String::from_utf8(offer(addr, 40000, 7, &config, BrowserCodec::Opus)).unwrap();
        assert!(sdp.contains("m=audio 40000 UDP/TLS/RTP/SAVPF 111 0 8 110 101\r\n"));
        assert!(sdp.contains("a=rtpmap:111 opus/48000/2\r\n"));
        assert!(sdp.contains("a=ice-lite\r\n"));
        assert!(sdp.contains(&format!("a=ice-ufrag:{}\r\n", config.local.ufrag)));
        assert!(sdp.contains("a=setup:actpass\r\n"));
        assert!(sdp.contains("a=rtcp-mux\r\n"));
        assert!(sdp.contains("a=candidate:1 1 UDP 2130706431 192.0.2.1 40000 typ host\r\n"));
        let ours = BrowserSdp::parse(&sdp).peer(0).unwrap();
        assert_eq!(
            ours.fingerprint,
            parse_fingerprint(&format!("sha-256 {}", config.identity.fingerprint())).unwrap()
        );
    }
}
