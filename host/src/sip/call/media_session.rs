//! A call's media on the relay: the streams opened for its m-lines and the
//! SDP rewriting that points each side at them; or two media endpoints
//! bridged by the media engine, which transcodes (and decrypts either
//! side), when the two sides cannot talk directly:
//!
//! - an OFFNET call whose caller offers no G.711 (a phone speaking only
//!   Opus) or insists on SRTP;
//! - a browser (WebRTC: ICE, DTLS-SRTP) calling a phone or a carrier, or a
//!   phone calling a user whose every device is a browser: the browser's
//!   side is terminated as a WebRTC leg (the WebRTC gateway). Browser to
//!   browser, the media stays end to end (DTLS-SRTP through the relay's
//!   candidate).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::codec::Codec;
use media::{Side, Stream};

use super::MediaSettings;
use super::endpoint_sdp;
use super::recording::{self, BRIDGE_TAP_QUEUE, RecordedCall, Recorder, RecordingPlan, Tap};
use super::webrtc_sdp;
use crate::config::BrowserCodec;
use crate::sip::sdp::{self, RelayPorts, Rewrite};
use crate::store::Store;

/// Shared by the call's task and the tasks that relay its in-dialog
/// requests (their answers carry SDP too).
pub(super) type SharedMedia = Arc<Mutex<CallMedia>>;

/// The two endpoints of a transcoded call and what each side was told.
struct Transcoding {
    caller: Arc<media::Endpoint>,
    carrier: Arc<media::Endpoint>,
    /// The caller's offer, answered with the caller endpoint's port.
    caller_offer: endpoint_sdp::AudioOffer,
    /// Where the caller receives, from its offer.
    caller_remote: SocketAddr,
    /// What the caller gets (the answer) and the carrier gets (the offer).
    to_caller: Vec<u8>,
    to_carrier: Vec<u8>,
    /// Copies of the bridge's frames, when the call is to be recorded.
    tap: Option<tokio::sync::mpsc::Receiver<media::BridgeFrame>>,
    /// Hold: the direction each side's last SDP said (caller, carrier),
    /// mirrored to the other side, and whether that side wants packets
    /// (read by the task that tells its endpoint, so tasks spawned for a
    /// hold and a quick resume leave the latest state whatever their order).
    heard: [endpoint_sdp::Direction; 2],
    wants_packets: [Arc<AtomicBool>; 2],
    /// What each side was last told (direction, o= version).
    told: [(endpoint_sdp::Direction, u64); 2],
}

pub(super) struct CallMedia {
    settings: Option<MediaSettings>,
    transcoding: Option<Transcoding>,
    /// Chosen by the first SDP of the call and kept for its re-offers.
    how: Option<Rewrite>,
    /// By m-line index; `None` where the m-line was rejected or no port
    /// was free.
    streams: Vec<Option<Stream>>,
    closed: bool,
    /// The call is to be recorded once answered.
    recording: Option<RecordingPlan>,
    recorder: Option<Recorder>,
    /// Payload types either side's SDP named, for the recorder.
    codecs: Vec<(u8, Codec)>,
    /// Either side's SDP was SRTP, and the SDES keys of each (A, B).
    secure: bool,
    cryptos: [Vec<media::srtp::CryptoAttribute>; 2],
    /// Whether every device the call rings is a browser (over WebSocket):
    /// `None` while unknown (another node's devices), which leaves a
    /// browser's media end to end.
    callee_browsers: Option<bool>,
    /// A sibling session (the browsers' side of a call that rings other
    /// devices too): its caller endpoint sends nothing until its branch
    /// has won, lest the caller hear its silence beside the winner's audio.
    quiet_until_won: bool,
}

impl CallMedia {
    pub(super) fn shared(settings: Option<MediaSettings>) -> SharedMedia {
        Arc::new(Mutex::new(CallMedia {
            settings,
            transcoding: None,
            how: None,
            streams: Vec::new(),
            closed: false,
            recording: None,
            recorder: None,
            codecs: Vec::new(),
            secure: false,
            cryptos: Default::default(),
            callee_browsers: None,
            quiet_until_won: false,
        }))
    }

    /// The call will be recorded: its media must cross the relay, so it is
    /// anchored even where ICE would let the phones talk directly. Call
    /// before the first SDP goes across.
    pub(super) fn plan_recording(&mut self, plan: RecordingPlan) {
        if self.settings.is_none() {
            tracing::warn!("call recording asked but the media relay is off: not recorded");
            return;
        }
        self.recording = Some(plan);
    }

    /// A media session of its own for other branches of the same call.
    pub(super) fn sibling(&self) -> SharedMedia {
        let sibling = CallMedia::shared(self.settings.clone());
        {
            let mut media = sibling
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            media.quiet_until_won = true;
            if let Some(plan) = &self.recording {
                media.plan_recording(plan.clone());
            }
        }
        sibling
    }

    /// This session's branch answered: a quiet caller endpoint starts
    /// sending to the caller.
    pub(super) fn won(&mut self) {
        if !std::mem::take(&mut self.quiet_until_won) {
            return;
        }
        if let Some(t) = &self.transcoding {
            let (caller, remote) = (t.caller.clone(), t.caller_remote);
            tokio::spawn(async move { caller.set_remote(remote).await });
        }
    }

    /// What the call rings: browsers only, or not. The first word stands
    /// (the media is decided with the first offer across).
    pub(super) fn callee_browsers(&mut self, browsers: Option<bool>) {
        if self.callee_browsers.is_none() {
            self.callee_browsers = browsers;
        }
    }

    /// The call was answered: recording starts, if planned.
    pub(super) fn start_recording(&mut self, store: Store, call: RecordedCall) {
        let Some(plan) = self.recording.take() else {
            return;
        };
        if let Some(t) = &mut self.transcoding {
            let Some(mut tap) = t.tap.take() else {
                return;
            };
            // What the bridge carried before the answer (early media).
            while tap.try_recv().is_ok() {}
            self.recorder = Some(Recorder::start(
                store,
                Tap::Bridge(tap),
                Vec::new(),
                None,
                plan,
                call,
            ));
            return;
        }
        let keys = if self.secure {
            match recording::sdes_keys(&self.cryptos[0], &self.cryptos[1]) {
                Some(keys) => Some(keys),
                None => {
                    tracing::warn!(
                        "SRTP without SDES keys the switch can read (DTLS-SRTP): not recorded"
                    );
                    return;
                }
            }
        } else {
            None
        };
        let Some(tap) = self.streams.iter().flatten().next().and_then(Stream::tap) else {
            tracing::warn!("no relayed media stream to record");
            return;
        };
        self.recorder = Some(Recorder::start(
            store,
            Tap::Relay(tap),
            self.codecs.clone(),
            keys,
            plan,
            call,
        ));
    }

    /// `body`, sent by `from`, as the other side gets it. `offnet` calls
    /// (a gateway on either side) are always anchored: a carrier never sees
    /// a handset's address, nor ICE it would not use.
    pub(super) fn rewrite(&mut self, body: &[u8], from: Side, offnet: bool) -> Vec<u8> {
        let Some(settings) = self.settings.clone() else {
            return body.to_vec();
        };
        if self.closed {
            return body.to_vec();
        }
        if self.recording.is_some() {
            let media = recording::audio_media(body);
            for (pt, codec) in media.codecs {
                if !self.codecs.iter().any(|(p, _)| *p == pt) {
                    self.codecs.push((pt, codec));
                }
            }
            self.secure |= media.secure;
            if !media.cryptos.is_empty() {
                self.cryptos[usize::from(from == Side::B)] = media.cryptos;
            }
        }
        if self.transcoding.is_none()
            && self.how.is_none()
            && from == Side::A
            && let Ok(mut offer) = endpoint_sdp::audio_offer(body)
        {
            let browsers = if offnet {
                Some(false)
            } else {
                self.callee_browsers
            };
            // A browser and a device that is not one cannot talk directly.
            let gateway = browsers.is_some_and(|b| b != offer.webrtc.is_some());
            // A carrier speaks neither Opus nor SRTP (SPEC §9): a phone
            // that insists on either is terminated here.
            let carrier_cannot =
                offnet && (offer.srtp.is_some() || !endpoint_sdp::offers_g711(&offer));
            if gateway || carrier_cannot {
                if offer.webrtc.is_some() && settings.browser_codec == BrowserCodec::G711 {
                    offer.prefer_g711();
                }
                self.start_transcoding(&settings, offer, browsers == Some(true));
            }
        }
        if let Some(t) = &mut self.transcoding {
            return t.rewrite(body, from, self.quiet_until_won);
        }
        let Some(summary) = (!self.closed).then(|| sdp::inspect(body)).flatten() else {
            return body.to_vec();
        };
        let anchor = offnet || !summary.ice || self.recording.is_some();
        let how = *self.how.get_or_insert(if anchor {
            Rewrite::Anchor
        } else {
            Rewrite::AddRelayCandidate
        });
        if how == Rewrite::AddRelayCandidate && !summary.ice {
            // The other side answered without ICE: the offerer falls back to
            // plain addresses, which the relay does not sit between.
            return body.to_vec();
        }
        let toward = from.other();
        let mut ports = Vec::with_capacity(summary.media.len());
        for (i, m) in summary.media.iter().enumerate() {
            if self.streams.len() <= i {
                self.streams.resize_with(i + 1, || None);
            }
            // A rejected stream, or one the phone already relays through its
            // own TURN server (SPEC §9: the switch adds its relay candidate
            // only when none is there).
            if m.port == 0 || (how == Rewrite::AddRelayCandidate && m.has_relay_candidate) {
                ports.push(None);
                continue;
            }
            if self.streams[i].is_none() {
                match settings.relay.open() {
                    Ok(s) => self.streams[i] = Some(s),
                    Err(e) => {
                        // The call still connects; this stream goes direct.
                        tracing::warn!(error = %e, "no relay port for a media stream");
                    }
                }
            }
            let Some(stream) = &self.streams[i] else {
                ports.push(None);
                continue;
            };
            if how == Rewrite::AddRelayCandidate
                && let Some(ice) = &m.ice
            {
                stream.set_ice(from, ice.clone());
            }
            if let Some(ip) = m.addr.filter(|ip| !ip.is_unspecified()) {
                stream.announce(
                    from,
                    SocketAddr::new(ip, m.port),
                    SocketAddr::new(ip, m.rtcp_port),
                );
            }
            ports.push(Some(RelayPorts {
                rtp: stream.rtp_port(toward),
                rtcp: stream.rtcp_port(toward),
            }));
        }
        sdp::rewrite(body, how, settings.advertised, &ports)
    }

    /// Opens the two endpoints of a transcoded call and bridges them; the
    /// callee's side speaks WebRTC when it is `browsers`, else G.711.
    fn start_transcoding(
        &mut self,
        settings: &MediaSettings,
        offer: endpoint_sdp::AudioOffer,
        browsers: bool,
    ) {
        let caller_remote = SocketAddr::new(
            offer.addr.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            offer.port,
        );
        // Until the callee answers: nothing is sent to 0.0.0.0 (and a
        // browser gets nothing before its handshake).
        let nowhere = SocketAddr::new(std::net::IpAddr::from([0, 0, 0, 0]), 9);
        let caller = settings.relay.open_endpoint(media::EndpointConfig {
            codec: offer.codec,
            payload_type: offer.payload_type,
            telephone_event: offer.telephone_event,
            remote: if self.quiet_until_won {
                nowhere
            } else {
                caller_remote
            },
            srtp: offer.srtp.clone(),
            webrtc: offer.webrtc.clone(),
        });
        let browser = match browsers.then(webrtc_sdp::identity) {
            Some(Some(identity)) => Some(media::webrtc::WebRtcConfig::new(identity, None)),
            Some(None) => return,
            None => None,
        };
        // The answer may pick another of the codecs offered: the endpoint
        // follows it.
        let (codec, payload_type, telephone_event) = match settings.browser_codec {
            BrowserCodec::G711 => (Codec::Pcmu, 0, Some(101)),
            BrowserCodec::Opus => (Codec::OPUS, 111, Some(110)),
        };
        let carrier = settings.relay.open_endpoint(match &browser {
            Some(webrtc) => media::EndpointConfig {
                codec,
                payload_type,
                telephone_event,
                remote: nowhere,
                srtp: None,
                webrtc: Some(webrtc.clone()),
            },
            None => media::EndpointConfig {
                codec: Codec::Pcma,
                payload_type: 8,
                telephone_event: Some(101),
                remote: nowhere,
                srtp: None,
                webrtc: None,
            },
        });
        let (caller, carrier) = match (caller, carrier) {
            (Ok(a), Ok(b)) => (Arc::new(a), Arc::new(b)),
            (Err(e), _) | (_, Err(e)) => {
                // The call goes on untranscoded; the carrier will refuse it.
                tracing::warn!(error = %e, "no media endpoints to transcode a call");
                return;
            }
        };
        let session: u64 = rand::random::<u32>().into();
        let to_carrier = match &browser {
            Some(webrtc) => webrtc_sdp::offer(
                settings.advertised,
                carrier.local_port(),
                session,
                webrtc,
                settings.browser_codec,
            ),
            None => endpoint_sdp::g711_offer(settings.advertised, carrier.local_port(), session),
        };
        let to_caller =
            endpoint_sdp::answer(&offer, settings.advertised, caller.local_port(), session);
        let (a, b) = (caller.clone(), carrier.clone());
        // A recorded call's bridge copies its frames (caller A, carrier B).
        let (tap_tx, tap) = if self.recording.is_some() {
            let (tx, rx) = tokio::sync::mpsc::channel(BRIDGE_TAP_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        tokio::spawn(async move {
            let bridged = match tap_tx {
                Some(tx) => a.bridge_tapped(&b, tx).await,
                None => a.bridge(&b).await,
            };
            if let Err(e) = bridged {
                tracing::warn!(error = %e, "transcoding bridge not set up");
            }
        });
        tracing::info!(
            codec = %offer.codec,
            srtp = offer.srtp.is_some(),
            caller_browser = offer.webrtc.is_some(),
            callee_browser = browsers,
            "the two sides share no codec or transport: the call is bridged"
        );
        self.transcoding = Some(Transcoding {
            caller,
            carrier,
            caller_offer: offer,
            caller_remote,
            to_caller,
            to_carrier,
            tap,
            heard: [endpoint_sdp::Direction::SendRecv; 2],
            wants_packets: [
                Arc::new(AtomicBool::new(true)),
                Arc::new(AtomicBool::new(true)),
            ],
            told: [(endpoint_sdp::Direction::SendRecv, 1); 2],
        });
    }

    /// Closes every stream (the call is over): ports go back at once.
    pub(super) fn close(&mut self) {
        self.closed = true;
        if let Some(mut r) = self.recorder.take() {
            r.stop();
        }
        self.streams.clear();
        if let Some(t) = self.transcoding.take() {
            t.caller.close();
            t.carrier.close();
        }
    }

    /// Whether streams are open and all have been silent for the configured
    /// time.
    pub(super) fn silent(&self) -> bool {
        let Some(settings) = &self.settings else {
            return false;
        };
        if let Some(t) = &self.transcoding {
            return !settings.silence.is_zero()
                && t.caller.stats().idle >= settings.silence
                && t.carrier.stats().idle >= settings.silence;
        }
        let mut open = self.streams.iter().flatten().peekable();
        !settings.silence.is_zero()
            && open.peek().is_some()
            && open.all(|s| s.idle() >= settings.silence)
    }

    /// How often silence is looked for.
    pub(super) fn silence_check(&self) -> Option<Duration> {
        let s = self.settings.as_ref()?.silence;
        (!s.is_zero() && (self.transcoding.is_some() || self.streams.iter().any(Option::is_some)))
            .then(|| (s / 4).max(Duration::from_millis(250)))
    }
}

impl Transcoding {
    /// A body on its way across: each side only ever sees the switch's own
    /// SDP (its endpoint's port, its codec). The carrier's answer tells the
    /// carrier endpoint where to send and which law it chose. A side that
    /// holds the call (sendonly, inactive) gets no packets from its
    /// endpoint, and the other side is told the same direction (so its
    /// answer is the complement the holder expects).
    /// A `quiet` caller endpoint only notes where the caller receives.
    fn rewrite(&mut self, body: &[u8], from: Side, quiet: bool) -> Vec<u8> {
        let (this, other) = match from {
            Side::A => (0, 1),
            Side::B => (1, 0),
        };
        let direction = endpoint_sdp::direction(body);
        if direction != self.heard[this] {
            self.heard[this] = direction;
            self.wants_packets[this].store(direction.receives(), Ordering::Relaxed);
            let endpoint = if this == 0 {
                self.caller.clone()
            } else {
                self.carrier.clone()
            };
            let wants = self.wants_packets[this].clone();
            tokio::spawn(async move {
                let _ = endpoint.set_sending(wants.load(Ordering::Relaxed)).await;
            });
        }
        let told = &mut self.told[other];
        if told.0 != direction {
            *told = (direction, told.1 + 1);
        }
        let (direction, version) = *told;
        self.follow(body, from, quiet);
        let ours = match from {
            Side::A => &self.to_carrier,
            Side::B => &self.to_caller,
        };
        endpoint_sdp::with_direction(ours, direction, version)
    }

    /// Tells the endpoints what `from`'s body says: the caller's address
    /// (a `quiet` caller endpoint is told once its branch wins), the
    /// carrier's address and chosen law.
    fn follow(&mut self, body: &[u8], from: Side, quiet: bool) {
        match from {
            Side::A => {
                if let Ok(offer) = endpoint_sdp::audio_offer(body)
                    && offer.codec == self.caller_offer.codec
                    && let Some(ip) = offer.addr.filter(|ip| !ip.is_unspecified())
                {
                    self.caller_remote = SocketAddr::new(ip, offer.port);
                    if !quiet {
                        let (caller, remote) = (self.caller.clone(), self.caller_remote);
                        tokio::spawn(async move { caller.set_remote(remote).await });
                    }
                }
            }
            Side::B => {
                let browser = self.carrier.config().webrtc.is_some();
                // What we offered: G.711 to a phone or carrier; Opus or
                // G.711 over DTLS-SRTP to a browser.
                if let Ok(answer) = endpoint_sdp::audio_offer(body)
                    && (browser || matches!(answer.codec, Codec::Pcmu | Codec::Pcma))
                    && browser == answer.webrtc.is_some()
                {
                    let carrier = self.carrier.clone();
                    let remote = answer
                        .addr
                        .filter(|ip| !ip.is_unspecified())
                        .map(|ip| SocketAddr::new(ip, answer.port));
                    let peer = answer.webrtc.and_then(|w| w.peer);
                    tokio::spawn(async move {
                        let _ = carrier
                            .set_codec(answer.codec, answer.payload_type, answer.telephone_event)
                            .await;
                        if let Some(peer) = peer {
                            let _ = carrier.set_webrtc_peer(peer).await;
                        }
                        if let Some(remote) = remote {
                            let _ = carrier.set_remote(remote).await;
                        }
                    });
                }
            }
        }
    }
}
