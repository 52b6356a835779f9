//! The WebRTC side of a call leg the switch terminates (a browser's): ICE-lite
//! and DTLS-SRTP on the endpoint's one UDP port, sans-io.
//!
//! - Demultiplexing (RFC 7983): a datagram's first byte tells STUN (0-3),
//!   DTLS (20-63) and RTP/RTCP (128-191) apart. RTP and RTCP share the port
//!   (rtcp-mux, RFC 5761), which every browser requires.
//! - ICE-lite (RFC 8445 §2.5): the switch has one host candidate, so it
//!   gathers nothing and sends no checks. It answers the browser's
//!   connectivity checks that carry our ufrag and authenticate under our
//!   password (MESSAGE-INTEGRITY, then FINGERPRINT), and the browser, always
//!   the controlling agent facing a lite one, nominates. The nominated
//!   source (or, until then, the first one that passed a check) is where
//!   DTLS and media go. Answering its consent checks (RFC 7675) every few
//!   seconds keeps the browser's side of the call up.
//! - DTLS (RFC 5763/5764) with `dimpl`: server or client as `a=setup`
//!   decided. Server by default: a browser answering or offering `actpass`
//!   is told `passive` and sends the ClientHello once ICE connects (which
//!   can beat the SIP answer carrying its fingerprint: the handshake runs,
//!   and its keys wait for the fingerprint). The peer's certificate must
//!   hash (SHA-256) to its SDP `a=fingerprint`, or no key is ever used.
//! - SRTP keys come from the handshake's exporter (RFC 5764 §4.2), in the
//!   profile the DTLS server picked: AES-GCM (RFC 7714) or
//!   AES_CM_128_HMAC_SHA1_80.
//!
//! Until keys exist the endpoint sends nothing and hears nothing: RTP from
//! the browser before that cannot be authenticated.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use dimpl::{Dtls, DtlsCertificate, Output, SrtpProfile};

use crate::relay::IceCredentials;
use crate::srtp::{SrtpConfig, Suite};
use crate::stun::{Class, Message, Method};

/// Checked sources remembered (a browser's candidates that reached us).
const CHECKED_KEPT: usize = 8;
/// Records a handshake flight may need; larger ones are fragmented by dimpl.
const DTLS_MTU: usize = 1200;

#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("DTLS configuration: {0}")]
    Config(String),
}

/// The switch's DTLS certificate (ECDSA P-256, self-signed, as WebRTC
/// uses: the SDP fingerprint is what authenticates it) and its SHA-256
/// fingerprint. One per process is enough.
pub struct DtlsIdentity {
    certificate: DtlsCertificate,
    config: Arc<dimpl::Config>,
    fingerprint: String,
}

impl DtlsIdentity {
    pub fn generate() -> Result<DtlsIdentity, WebRtcError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| WebRtcError::Certificate(e.to_string()))?;
        let params = rcgen::CertificateParams::new(vec!["softswitch".to_owned()])
            .map_err(|e| WebRtcError::Certificate(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| WebRtcError::Certificate(e.to_string()))?;
        let certificate = DtlsCertificate {
            certificate: cert.der().to_vec(),
            private_key: key.serialize_der(),
        };
        let config = dimpl::Config::builder()
            .mtu(DTLS_MTU)
            .build()
            .map_err(|e| WebRtcError::Config(e.to_string()))?;
        let fingerprint = format_fingerprint(&sha256(&certificate.certificate));
        Ok(DtlsIdentity {
            certificate,
            config: Arc::new(config),
            fingerprint,
        })
    }

    /// `AB:CD:…`, for `a=fingerprint:sha-256 <this>`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl std::fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl PartialEq for DtlsIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for DtlsIdentity {}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

fn format_fingerprint(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The digest of an SDP `a=fingerprint` value (`sha-256 AB:CD:…`); other
/// hash functions are refused (every browser offers SHA-256).
pub fn parse_fingerprint(value: &str) -> Option<Vec<u8>> {
    let (hash, hex) = value.trim().split_once(' ')?;
    if !hash.eq_ignore_ascii_case("sha-256") {
        return None;
    }
    let digest = hex
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    (digest.len() == 32).then_some(digest)
}

/// Which end of the DTLS handshake the switch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// `a=setup:active`: the switch sends the ClientHello.
    Client,
    /// `a=setup:passive`: the browser does.
    Server,
}

/// What the browser's SDP says about its side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcPeer {
    pub ice_ufrag: String,
    /// SHA-256 digest its certificate must have.
    pub fingerprint: Vec<u8>,
    /// The switch's role, from the browser's `a=setup`.
    pub role: DtlsRole,
}

/// What an endpoint needs to terminate a WebRTC leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcConfig {
    pub identity: Arc<DtlsIdentity>,
    /// Our ICE credentials, given in our SDP.
    pub local: IceCredentials,
    /// The browser's side: from its offer, or (when the switch offers)
    /// from its answer, later ([`crate::Endpoint::set_webrtc_peer`]).
    pub peer: Option<WebRtcPeer>,
}

impl WebRtcConfig {
    /// Fresh ICE credentials (RFC 8839 §5.4: ufrag ≥ 24 bits, pwd ≥ 128
    /// bits of randomness, from the ice-char set).
    pub fn new(identity: Arc<DtlsIdentity>, peer: Option<WebRtcPeer>) -> WebRtcConfig {
        WebRtcConfig {
            identity,
            local: IceCredentials {
                ufrag: random_ice_chars(8),
                pwd: random_ice_chars(24),
            },
            peer,
        }
    }
}

fn random_ice_chars(n: usize) -> String {
    const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..n)
        .map(|_| char::from(ICE_CHARS[usize::from(rand::random::<u8>() & 63)]))
        .collect()
}

/// What a datagram was, for the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demux {
    /// RTP or RTCP: the endpoint's (SRTP) path.
    Media,
    /// STUN or DTLS, handled here; `alive` when it showed the peer there (a
    /// valid check, a DTLS record).
    Control { alive: bool },
    /// Nothing this port speaks.
    Garbage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Connected,
    Failed,
}

/// ICE-lite and DTLS for one endpoint.
pub struct WebRtcTransport {
    identity: Arc<DtlsIdentity>,
    local: IceCredentials,
    peer: Option<WebRtcPeer>,
    dtls: Option<Dtls>,
    state: State,
    /// Where the browser is: nominated, else first checked.
    selected: Option<SocketAddr>,
    nominated: bool,
    /// Sources that passed a check: the only ones DTLS is taken from (a
    /// stranger who knows the port cannot start a handshake in its place).
    checked: VecDeque<SocketAddr>,
    /// Where its DTLS records come from (what ours answer).
    dtls_peer: Option<SocketAddr>,
    out: VecDeque<(Vec<u8>, SocketAddr)>,
    /// SHA-256 of the certificate the browser presented.
    peer_cert: Option<Vec<u8>>,
    material: Option<(Vec<u8>, Suite)>,
    keys: Option<SrtpConfig>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for WebRtcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcTransport")
            .field("state", &self.state)
            .field("selected", &self.selected)
            .finish()
    }
}

impl WebRtcTransport {
    pub fn new(config: &WebRtcConfig) -> WebRtcTransport {
        let mut transport = WebRtcTransport {
            identity: config.identity.clone(),
            local: config.local.clone(),
            peer: None,
            dtls: None,
            state: State::Connecting,
            selected: None,
            nominated: false,
            checked: VecDeque::new(),
            dtls_peer: None,
            out: VecDeque::new(),
            peer_cert: None,
            material: None,
            keys: None,
            buf: vec![0; 2048],
        };
        if let Some(peer) = &config.peer {
            transport.set_peer(peer.clone(), Instant::now());
        }
        transport
    }

    /// The browser's SDP (its answer to our offer, or a re-offer).
    pub fn set_peer(&mut self, peer: WebRtcPeer, now: Instant) {
        if self.dtls.is_none() && peer.role == DtlsRole::Client {
            let mut dtls = Dtls::new_12(
                self.identity.config.clone(),
                self.identity.certificate.clone(),
                now,
            );
            dtls.set_active(true);
            self.dtls = Some(dtls);
        }
        self.peer = Some(peer);
        self.check_keys();
    }

    /// Where packets go, once ICE has found the browser.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// The SRTP keys, once (after the handshake, with the fingerprint
    /// checked).
    pub fn take_keys(&mut self) -> Option<SrtpConfig> {
        self.keys.take()
    }

    /// A datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        self.out.pop_front()
    }

    pub fn receive(&mut self, data: &[u8], source: SocketAddr, now: Instant) -> Demux {
        match data.first() {
            Some(0..=3) => Demux::Control {
                alive: self.receive_stun(data, source),
            },
            Some(20..=63) => Demux::Control {
                alive: self.receive_dtls(data, source, now),
            },
            Some(128..=191) => Demux::Media,
            _ => Demux::Garbage,
        }
    }

    /// Timers: DTLS retransmissions; a client's first flight once ICE has
    /// found the browser. Call it every tick.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(dtls) = &mut self.dtls else {
            return;
        };
        // A client has nowhere to send before a check arrives.
        if dtls.is_active() && self.selected.is_none() {
            return;
        }
        if let Err(e) = dtls.handle_timeout(now) {
            return self.fail(&e.to_string());
        }
        self.drain();
    }

    /// A connectivity check: answered if it is for us and authentic.
    fn receive_stun(&mut self, data: &[u8], source: SocketAddr) -> bool {
        let Ok(message) = Message::decode(data) else {
            return false;
        };
        if message.class != Class::Request || message.method != Method::BINDING {
            // Lite agents send no checks, so no response is ours to read;
            // indications are keepalives.
            return message.class == Class::Indication;
        }
        let ours = message
            .username()
            .and_then(|u| u.split_once(':'))
            .is_some_and(|(to, _)| to == self.local.ufrag);
        if !ours || crate::stun::verify_integrity(data, self.local.pwd.as_bytes()).is_err() {
            tracing::trace!(%source, "ICE check not for this endpoint");
            return false;
        }
        if !self.checked.contains(&source) {
            if self.checked.len() == CHECKED_KEPT {
                self.checked.pop_front();
            }
            self.checked.push_back(source);
        }
        let nominates = message.use_candidate();
        if nominates && (!self.nominated || self.selected != Some(source)) {
            tracing::debug!(%source, "ICE: browser nominated");
            self.selected = Some(source);
            self.nominated = true;
        } else if self.selected.is_none() {
            self.selected = Some(source);
        }
        match Message::binding_success(&message, source)
            .encode(Some(self.local.pwd.as_bytes()), true)
        {
            Ok(answer) => self.out.push_back((answer, source)),
            Err(e) => tracing::debug!(error = %e, "ICE answer not encoded"),
        }
        true
    }

    fn receive_dtls(&mut self, data: &[u8], source: SocketAddr, now: Instant) -> bool {
        if self.state == State::Failed || !self.checked.contains(&source) {
            return false;
        }
        if self.dtls.is_none() {
            // No answer yet telling us to be the client: a ClientHello makes
            // us the server.
            self.dtls = Some(Dtls::new_auto(
                self.identity.config.clone(),
                self.identity.certificate.clone(),
                now,
            ));
        }
        self.dtls_peer = Some(source);
        let Some(dtls) = &mut self.dtls else {
            return false;
        };
        let result = dtls
            .handle_timeout(now)
            .and_then(|()| dtls.handle_packet(data));
        if let Err(e) = result {
            self.fail(&e.to_string());
            return false;
        }
        self.drain();
        true
    }

    /// Everything dimpl has to say after an input.
    fn drain(&mut self) {
        loop {
            let Some(dtls) = &mut self.dtls else {
                return;
            };
            match dtls.poll_output(&mut self.buf) {
                Output::Packet(p) => {
                    if let Some(to) = self.dtls_peer.or(self.selected) {
                        self.out.push_back((p.to_vec(), to));
                    }
                }
                Output::BufferTooSmall { needed } => self.buf.resize(needed, 0),
                Output::Timeout(_) => break,
                Output::Connected => {
                    tracing::debug!("DTLS connected");
                    self.state = State::Connected;
                }
                Output::PeerCert(der) => self.peer_cert = Some(sha256(der)),
                Output::KeyingMaterial(material, profile) => match suite_of(profile) {
                    Some(suite) => self.material = Some((material.to_vec(), suite)),
                    None => return self.fail("DTLS-SRTP profile not supported"),
                },
                Output::ApplicationData(_) => {}
                Output::CloseNotify => {
                    tracing::debug!("DTLS closed by the browser");
                    self.state = State::Failed;
                    self.dtls = None;
                    return;
                }
                _ => {}
            }
        }
        self.check_keys();
    }

    /// Keys are handed over once the handshake gave them and the
    /// browser's certificate matches its SDP.
    fn check_keys(&mut self) {
        let (Some(peer), Some(cert), Some((material, suite))) =
            (&self.peer, &self.peer_cert, &self.material)
        else {
            return;
        };
        if *cert != peer.fingerprint {
            let reason = "the browser's certificate does not match its SDP fingerprint";
            return self.fail(reason);
        }
        let client = self.dtls.as_ref().is_some_and(Dtls::is_active);
        match crate::srtp::dtls_srtp_keys(*suite, material, client) {
            Ok((outgoing, incoming)) => {
                self.keys = Some(SrtpConfig {
                    suite: *suite,
                    outgoing,
                    incoming,
                });
            }
            Err(e) => return self.fail(&e.to_string()),
        }
        self.material = None;
    }

    fn fail(&mut self, reason: &str) {
        if self.state != State::Failed {
            tracing::info!(reason, "WebRTC leg failed");
        }
        self.state = State::Failed;
        self.dtls = None;
        self.material = None;
        self.keys = None;
    }
}

fn suite_of(profile: SrtpProfile) -> Option<Suite> {
    match profile {
        SrtpProfile::AES128_CM_SHA1_80 => Some(Suite::AesCm128HmacSha1_80),
        SrtpProfile::AEAD_AES_128_GCM => Some(Suite::AeadAes128Gcm),
        SrtpProfile::AEAD_AES_256_GCM => Some(Suite::AeadAes256Gcm),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::SrtpContext;
    use crate::stun::{Attribute, TransactionId};

    fn identity() -> Arc<DtlsIdentity> {
        Arc::new(DtlsIdentity::generate().unwrap())
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn check(to: &IceCredentials, from_ufrag: &str, nominate: bool) -> Vec<u8> {
        let mut m = Message::binding_request(TransactionId(rand::random()))
            .with(Attribute::Username(format!("{}:{from_ufrag}", to.ufrag)))
            .with(Attribute::Priority(1))
            .with(Attribute::IceControlling(7));
        if nominate {
            m = m.with(Attribute::UseCandidate);
        }
        m.encode(Some(to.pwd.as_bytes()), true).unwrap()
    }

    /// Runs datagrams between two transports until neither has more.
    fn pump(a: &mut WebRtcTransport, a_at: SocketAddr, b: &mut WebRtcTransport, b_at: SocketAddr) {
        for _ in 0..100 {
            let now = Instant::now();
            a.handle_timeout(now);
            b.handle_timeout(now);
            let mut moved = false;
            while let Some((p, to)) = a.poll_transmit() {
                assert_eq!(to, b_at);
                b.receive(&p, a_at, now);
                moved = true;
            }
            while let Some((p, to)) = b.poll_transmit() {
                assert_eq!(to, a_at);
                a.receive(&p, b_at, now);
                moved = true;
            }
            if !moved && a.is_connected() && b.is_connected() {
                return;
            }
        }
    }

    #[test]
    fn fingerprints_read_back_what_is_written() {
        let id = identity();
        let digest = parse_fingerprint(&format!("sha-256 {}", id.fingerprint())).unwrap();
        assert_eq!(digest, sha256(&id.certificate.certificate));
        assert_eq!(parse_fingerprint("sha-1 AB:CD"), None);
        assert_eq!(parse_fingerprint("sha-256 AB:CD"), None);
        assert_eq!(parse_fingerprint("sha-256 ZZ"), None);
    }

    #[test]
    fn only_authentic_checks_for_our_ufrag_are_answered_and_nomination_selects() {
        let config = WebRtcConfig::new(identity(), None);
        let mut t = WebRtcTransport::new(&config);
        let now = Instant::now();
        let stranger = IceCredentials {
            ufrag: config.local.ufrag.clone(),
            pwd: "not-the-password-at-all".into(),
        };
        assert_eq!(
            t.receive(&check(&stranger, "b", true), addr(1), now),
            Demux::Control { alive: false }
        );
        let other = IceCredentials {
            ufrag: "other".into(),
            pwd: config.local.pwd.clone(),
        };
        assert_eq!(
            t.receive(&check(&other, "b", true), addr(1), now),
            Demux::Control { alive: false }
        );
        assert!(t.poll_transmit().is_none());
        assert_eq!(t.selected(), None);

        t.receive(&check(&config.local, "b", false), addr(2), now);
        assert_eq!(t.selected(), Some(addr(2)));
        let (answer, to) = t.poll_transmit().unwrap();
        assert_eq!(to, addr(2));
        crate::stun::verify_integrity(&answer, config.local.pwd.as_bytes()).unwrap();
        let answer = Message::decode(&answer).unwrap();
        assert_eq!(answer.class, Class::Success);
        assert_eq!(answer.xor_mapped_address(), Some(addr(2)));

        t.receive(&check(&config.local, "b", true), addr(3), now);
        assert_eq!(t.selected(), Some(addr(3)));
        // A later unnominated check does not move it.
        t.receive(&check(&config.local, "b", false), addr(4), now);
        assert_eq!(t.selected(), Some(addr(3)));
        assert_eq!(t.receive(&[0x80, 0], addr(3), now), Demux::Media);
        assert_eq!(t.receive(&[0xff, 0], addr(3), now), Demux::Garbage);
    }

    /// Two transports, one told to be the client: the handshake completes,
    /// and each side's outgoing key is the other's incoming one.
    fn handshake(switch_role: DtlsRole) -> (SrtpConfig, SrtpConfig) {
        let (id_a, id_b) = (identity(), identity());
        let fp = |id: &DtlsIdentity| parse_fingerprint(&format!("sha-256 {}", id.fingerprint()));
        let other_role = match switch_role {
            DtlsRole::Client => DtlsRole::Server,
            DtlsRole::Server => DtlsRole::Client,
        };
        let config_a = WebRtcConfig::new(id_a.clone(), None);
        let config_b = WebRtcConfig::new(id_b.clone(), None);
        let mut a = WebRtcTransport::new(&config_a);
        let mut b = WebRtcTransport::new(&config_b);
        let now = Instant::now();
        a.set_peer(
            WebRtcPeer {
                ice_ufrag: config_b.local.ufrag.clone(),
                fingerprint: fp(&id_b).unwrap(),
                role: switch_role,
            },
            now,
        );
        b.set_peer(
            WebRtcPeer {
                ice_ufrag: config_a.local.ufrag.clone(),
                fingerprint: fp(&id_a).unwrap(),
                role: other_role,
            },
            now,
        );
        // Each learns where the other is through a check.
        a.receive(&check(&config_a.local, "b", true), addr(2), now);
        b.receive(&check(&config_b.local, "a", true), addr(1), now);
        while a.poll_transmit().is_some() {}
        while b.poll_transmit().is_some() {}
        pump(&mut a, addr(1), &mut b, addr(2));
        assert!(a.is_connected() && b.is_connected());
        (a.take_keys().unwrap(), b.take_keys().unwrap())
    }

    #[test]
    fn dtls_gives_both_sides_matching_srtp_keys_in_either_role() {
        for role in [DtlsRole::Server, DtlsRole::Client] {
            let (a, b) = handshake(role);
            assert_eq!(a.suite, b.suite);
            assert_eq!(a.outgoing, b.incoming);
            assert_eq!(a.incoming, b.outgoing);
            let mut send = SrtpContext::try_new(a.suite, &a.outgoing).unwrap();
            let mut hear = SrtpContext::try_new(b.suite, &b.incoming).unwrap();
            let mut packet = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 9, 9, 9];
            send.protect_rtp(&mut packet).unwrap();
            let n = hear.unprotect_rtp(&mut packet).unwrap();
            assert_eq!(&packet[12..n], &[9, 9, 9]);
        }
    }

    #[test]
    fn a_certificate_that_does_not_match_the_sdp_gives_no_keys() {
        let (id_a, id_b) = (identity(), identity());
        let config_a = WebRtcConfig::new(id_a.clone(), None);
        let config_b = WebRtcConfig::new(id_b, None);
        let mut a = WebRtcTransport::new(&config_a);
        let mut b = WebRtcTransport::new(&config_b);
        let now = Instant::now();
        a.set_peer(
            WebRtcPeer {
                ice_ufrag: config_b.local.ufrag.clone(),
                // Not b's certificate.
                fingerprint: sha256(b"someone else"),
                role: DtlsRole::Server,
            },
            now,
        );
        b.set_peer(
            WebRtcPeer {
                ice_ufrag: config_a.local.ufrag.clone(),
                fingerprint: sha256(&id_a.certificate.certificate),
                role: DtlsRole::Client,
            },
            now,
        );
        a.receive(&check(&config_a.local, "b", true), addr(2), now);
        b.receive(&check(&config_b.local, "a", true), addr(1), now);
        while a.poll_transmit().is_some() {}
        while b.poll_transmit().is_some() {}
        pump(&mut a, addr(1), &mut b, addr(2));
        assert!(a.take_keys().is_none());
        assert!(a.is_failed());
    }

    #[test]
    fn dtls_is_taken_only_from_checked_sources_and_garbage_fails_nothing() {
        let config = WebRtcConfig::new(identity(), None);
        let mut t = WebRtcTransport::new(&config);
        let now = Instant::now();
        let junk = |len: usize| {
            let mut junk = vec![22u8; len];
            if len > 1 {
                junk[1] = 0xfe;
            }
            junk
        };
        assert_eq!(
            t.receive(&junk(40), addr(5), now),
            Demux::Control { alive: false }
        );
        assert!(t.dtls.is_none(), "a stranger started a handshake");
        t.receive(&check(&config.local, "b", true), addr(5), now);
        for len in [1usize, 13, 40, 200] {
            t.receive(&junk(len), addr(5), now);
        }
        assert!(!t.is_failed());
        assert!(t.take_keys().is_none());
    }
}
