//! An RTP endpoint terminating one audio stream of a call leg: the switch
//! answering as a user agent (IVR, voicemail) plays prompts, hears keys
//! and records what the caller says.
//!
//! One tokio task per endpoint owns the sans-io core (`engine.rs`) and feeds it a
//! tick every 20 ms (deadline-based: the interval does not drift, and a
//! short stall is caught up at once; a long one is skipped, with the RTP
//! timestamp moved on, rather than sent as a burst), every datagram from
//! the RTP and RTCP ports, and the control API's commands. The API is
//! async but sequential in spirit: each call returns when its effect is
//! over, which is what a blocking IVR script wants to wait on.
//!
//! Two endpoints can be bridged ([`Endpoint::bridge`]): each sends, in its
//! own codec, what the other hears, and the keys the other hears. That is
//! how the switch transcodes between call legs that share no codec.

mod bridge;
mod engine;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

pub use self::bridge::BridgeFrame;
use self::bridge::BridgeLink;
use self::engine::{Command, Core, Shared};
use crate::codec::{Codec, FRAME_DURATION};
use crate::relay::{Pair, Relay, RelayError, lock};
use crate::srtp::SrtpConfig;
use crate::webrtc::{WebRtcConfig, WebRtcPeer};

/// A stall longer than this is not caught up with a burst of packets.
const CATCH_UP_AT_MOST: Duration = Duration::from_millis(60);
/// Commands waiting for the task; callers wait for room beyond it.
const COMMANDS_QUEUED: usize = 16;
/// The longest key press sent: what one RFC 4733 event can report at
/// 8 kHz (its duration field is 16 bits); a tone is held no longer.
const LONGEST_PRESS: Duration = Duration::from_millis(8000);

/// What the SDP exchange decided for the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    pub codec: Codec,
    /// The codec's payload type in this session.
    pub payload_type: u8,
    /// The telephone-event payload type, if the peer offered it.
    pub telephone_event: Option<u8>,
    /// The peer's RTP address from its SDP: packets go there until the
    /// peer is heard from, then to where it sends from (symmetric RTP).
    pub remote: SocketAddr,
    /// SRTP (`RTP/SAVP` with SDES keys): every packet sent is protected
    /// with our key, every packet heard must authenticate under the
    /// peer's (RTCP too). `None`: plain RTP.
    pub srtp: Option<SrtpConfig>,
    /// A browser's leg (`UDP/TLS/RTP/SAVPF`): ICE-lite and DTLS-SRTP on
    /// the RTP port, RTCP multiplexed; `srtp` is then `None` (the keys come
    /// from the handshake).
    pub webrtc: Option<WebRtcConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Ports(#[from] RelayError),
    #[error("payload type {0} is not a valid dynamic or static RTP payload type")]
    PayloadType(u8),
    #[error("telephone-event and audio cannot share payload type {0}")]
    SamePayloadType(u8),
    #[error("{0:?} is not a DTMF key")]
    NotAKey(char),
    #[error("the endpoint is closed")]
    Closed,
    #[error("an endpoint cannot be bridged to itself")]
    BridgedToItself,
    #[error("an endpoint must be opened inside a tokio runtime")]
    NoRuntime,
}

/// How a [`Endpoint::play`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayOutcome {
    /// Every sample was sent.
    Finished,
    /// A key of the interrupt set was pressed (and is consumed).
    Interrupted(char),
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOptions {
    /// The longest recording.
    pub max: Duration,
    /// End once the caller has been quiet this long (the quiet tail is
    /// trimmed off).
    pub silence_timeout: Option<Duration>,
    /// Keys that end the recording (consumed, not queued).
    pub finish_keys: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordEnd {
    MaxDuration,
    Silence,
    Key(char),
    /// The endpoint closed (the caller hung up): the samples so far.
    Closed,
}

/// Decoded incoming audio, 8 kHz 16-bit mono.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub samples: Vec<i16>,
    pub reason: RecordEnd,
}

/// Counters since the endpoint opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub packets_sent: u64,
    pub send_errors: u64,
    /// Datagrams on the RTP port, dropped ones included.
    pub packets_received: u64,
    /// Not RTP, truncated, oversized, or a bad telephone-event payload.
    pub dropped_malformed: u64,
    pub dropped_wrong_payload_type: u64,
    /// From a source other than the stream's (one that persists is taken).
    pub dropped_wrong_ssrc: u64,
    /// Too late to play, or too far out of sequence.
    pub dropped_late: u64,
    pub dropped_duplicate: u64,
    /// Thrown away by the jitter buffer to bound its delay.
    pub dropped_overflow: u64,
    /// RTCP datagrams (read and discarded), on either port.
    pub rtcp_received: u64,
    /// SRTP/SRTCP packets whose authentication tag did not match (or
    /// whose key was used up): tampered, or not from the peer.
    pub dropped_unauthenticated: u64,
    /// SRTP/SRTCP packets already received, or too old for the replay
    /// window to tell (RFC 3711 §3.3.2).
    pub dropped_replayed: u64,
    pub digits_received: u64,
    /// Bridged ([`Endpoint::bridge`]): frames this endpoint heard and
    /// passed to the other endpoint (one per tick, silence included).
    pub bridge_frames_heard: u64,
    /// Frames the other endpoint heard that this one sent, in its codec.
    pub bridge_frames_sent: u64,
    /// Frames the other endpoint heard that were dropped before this one
    /// could send them: the bridge's bound on delay (160 ms, and a
    /// standing delay trimmed to one frame).
    pub bridge_dropped: u64,
    /// Ticks this endpoint sent silence while bridged, for lack of audio
    /// from the other endpoint (not counted while a play or a key press
    /// has the floor).
    pub bridge_underruns: u64,
    /// RTCP reports sent (a browser's leg: SR and SDES over SRTCP).
    pub rtcp_sent: u64,
    /// Time since the last packet of the stream or RTCP (since opening if
    /// none): how long the peer has been silent.
    pub idle: Duration,
}

struct Inner {
    shared: Arc<Shared>,
    relay: Relay,
    /// Given back to the relay on close.
    pair: Mutex<Option<Pair>>,
    port: u16,
    local: SocketAddr,
    /// As last set (`set_remote`, `set_codec`).
    config: Mutex<EndpointConfig>,
    commands: mpsc::Sender<Command>,
    closed: watch::Sender<bool>,
}

impl Inner {
    fn close(&self) {
        if self.closed.send_replace(true) {
            return;
        }
        if let Some(pair) = lock(&self.pair).take() {
            self.relay.rest(pair);
        }
        self.shared.notify.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn stats(&self) -> EndpointStats {
        let c = &self.shared.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        EndpointStats {
            packets_sent: get(&c.packets_sent),
            send_errors: get(&c.send_errors),
            packets_received: get(&c.packets_received),
            dropped_malformed: get(&c.dropped_malformed),
            dropped_wrong_payload_type: get(&c.dropped_wrong_payload_type),
            dropped_wrong_ssrc: get(&c.dropped_wrong_ssrc),
            dropped_late: get(&c.dropped_late),
            dropped_duplicate: get(&c.dropped_duplicate),
            dropped_overflow: get(&c.dropped_overflow),
            rtcp_received: get(&c.rtcp_received),
            dropped_unauthenticated: get(&c.dropped_unauthenticated),
            dropped_replayed: get(&c.dropped_replayed),
            digits_received: get(&c.digits_received),
            bridge_frames_heard: get(&c.bridge_frames_heard),
            bridge_frames_sent: get(&c.bridge_frames_sent),
            bridge_dropped: get(&c.bridge_dropped),
            bridge_underruns: get(&c.bridge_underruns),
            rtcp_sent: get(&c.rtcp_sent),
            idle: self.shared.idle(std::time::Instant::now()),
        }
    }
}

/// The endpoint, owned by whoever drives the call's media (the IVR
/// script). Dropping it closes it.
pub struct Endpoint {
    inner: Arc<Inner>,
}

/// A cloneable handle for the rest of the call (its SIP dialog): close the
/// endpoint on BYE, watch it for silence.
#[derive(Clone)]
pub struct EndpointHandle {
    inner: Arc<Inner>,
}

impl Endpoint {
    pub(crate) fn open(relay: &Relay, config: EndpointConfig) -> Result<Endpoint, EndpointError> {
        check_payload_types(config.payload_type, config.telephone_event)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| EndpointError::NoRuntime)?;
        let pair = relay.take_pair()?;
        let [rtp, rtcp] = pair.sockets.clone();
        let port = pair.port;
        let local = SocketAddr::new(relay.bind_address(), port);
        let shared = Arc::new(Shared::new(std::time::Instant::now()));
        // RFC 3550 §5.1: SSRC, first sequence number and timestamp random.
        let core = Core::new(
            config.clone(),
            shared.clone(),
            rand::random(),
            rand::random(),
            rand::random(),
        );
        let (commands, commands_rx) = mpsc::channel(COMMANDS_QUEUED);
        let (closed, closed_rx) = watch::channel(false);
        runtime.spawn(run(core, shared.clone(), rtp, rtcp, commands_rx, closed_rx));
        Ok(Endpoint {
            inner: Arc::new(Inner {
                shared,
                relay: relay.clone(),
                pair: Mutex::new(Some(pair)),
                port,
                local,
                config: Mutex::new(config),
                commands,
                closed,
            }),
        })
    }

    /// The RTP port, for the SDP answer (RTCP is the next one).
    pub fn local_port(&self) -> u16 {
        self.inner.port
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The stream's parameters as last set (opened with, then
    /// [`set_remote`](Self::set_remote), [`set_codec`](Self::set_codec)).
    pub fn config(&self) -> EndpointConfig {
        lock(&self.inner.config).clone()
    }

    pub fn handle(&self) -> EndpointHandle {
        EndpointHandle {
            inner: self.inner.clone(),
        }
    }

    /// Plays `samples` (8 kHz PCM) to the peer, after any play already
    /// under way. A key in `interrupt` stops it and is consumed; one
    /// typed ahead (queued before this play started) stops it at once;
    /// other keys stay queued. Dropping the future stops the playback.
    pub async fn play(&self, samples: Arc<[i16]>, interrupt: &str) -> PlayOutcome {
        let (done, outcome) = oneshot::channel();
        let command = Command::Play {
            samples,
            interrupt: interrupt.to_owned(),
            done,
        };
        if self.send(command).await.is_err() {
            return PlayOutcome::Closed;
        }
        outcome.await.unwrap_or(PlayOutcome::Closed)
    }

    /// The next key the peer pressed (queued ones first); `None` on
    /// timeout or once the endpoint is closed and the queue empty.
    pub async fn next_digit(&self, timeout: Duration) -> Option<char> {
        // A timeout too long to add is as good as none.
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        let shared = &self.inner.shared;
        loop {
            // Registered before looking, so a key queued in between wakes it.
            let woken = shared.notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(digit) = lock(&shared.digits).pop_front() {
                return Some(digit);
            }
            if self.inner.is_closed() {
                return None;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return lock(&shared.digits).pop_front();
            }
        }
    }

    /// Forgets the keys pressed so far.
    pub fn flush_digits(&self) {
        lock(&self.inner.shared.digits).clear();
    }

    /// Sends a key press lasting `duration`: RFC 4733 events if the peer
    /// negotiated telephone-event, else the tone in the audio. What plays
    /// pauses meanwhile. Returns once the last packet is sent. Presses
    /// are held 8 s at most.
    pub async fn send_digit(&self, digit: char, duration: Duration) -> Result<(), EndpointError> {
        if crate::dtmf::digit_to_event(digit).is_none() {
            return Err(EndpointError::NotAKey(digit));
        }
        let duration = duration.min(LONGEST_PRESS);
        let (done, sent) = oneshot::channel();
        self.send(Command::SendDigit {
            digit,
            duration,
            done,
        })
        .await?;
        sent.await.map_err(|_| EndpointError::Closed)
    }

    /// Records the peer's audio until `options` says stop. Runs alongside
    /// a play (record after a beep: play it first); a second recording
    /// waits for the first.
    pub async fn record(&self, options: RecordOptions) -> Recording {
        let closed = || Recording {
            samples: Vec::new(),
            reason: RecordEnd::Closed,
        };
        let (done, recording) = oneshot::channel();
        if self.send(Command::Record { options, done }).await.is_err() {
            return closed();
        }
        recording.await.unwrap_or_else(|_| closed())
    }

    /// The peer's address changed (a re-INVITE).
    pub async fn set_remote(&self, remote: SocketAddr) -> Result<(), EndpointError> {
        self.send(Command::SetRemote(remote)).await?;
        lock(&self.inner.config).remote = remote;
        Ok(())
    }

    /// The browser of a WebRTC leg the switch offered answered: its ICE
    /// ufrag, certificate fingerprint and our DTLS role.
    pub async fn set_webrtc_peer(&self, peer: WebRtcPeer) -> Result<(), EndpointError> {
        self.send(Command::SetWebRtcPeer(peer.clone())).await?;
        if let Some(webrtc) = &mut lock(&self.inner.config).webrtc {
            webrtc.peer = Some(peer);
        }
        Ok(())
    }

    /// Whether packets go to the peer: off while it holds the call (its
    /// SDP says sendonly or inactive), on again when it resumes.
    pub async fn set_sending(&self, on: bool) -> Result<(), EndpointError> {
        self.send(Command::SetSending(on)).await
    }

    /// The peer's SDP answer chose another codec than the one the
    /// endpoint was opened with (we offered PCMA and PCMU, it answered
    /// PCMU): packets are sent and heard in it from the next tick. The
    /// encoder, decoder, jitter buffer and DTMF state start afresh (a key
    /// press going out as RFC 4733 events stops, if the clock or the
    /// telephone-event payload type changed); the SSRC, sequence numbers
    /// and timestamp run on (on the new codec's clock). Payload types are
    /// checked as when opening.
    pub async fn set_codec(
        &self,
        codec: Codec,
        payload_type: u8,
        telephone_event: Option<u8>,
    ) -> Result<(), EndpointError> {
        check_payload_types(payload_type, telephone_event)?;
        self.send(Command::SetCodec {
            codec,
            payload_type,
            telephone_event,
        })
        .await?;
        let mut config = lock(&self.inner.config);
        config.codec = codec;
        config.payload_type = payload_type;
        config.telephone_event = telephone_event;
        Ok(())
    }

    /// Bridges this endpoint and `other` both ways, until either is closed
    /// or [`unbridge`](Self::unbridge)d, or bridged elsewhere (an endpoint
    /// is in one bridge at most: a new one ends the old one, whose other
    /// side falls silent).
    ///
    /// - Audio: every 20 ms frame one endpoint hears (8 kHz PCM out of its
    ///   jitter buffer and decoder, concealment included, silence when it
    ///   hears nothing) is the next frame the other sends, encoded with
    ///   the other's codec. Between them is a pipe of 160 ms at most per
    ///   direction: when it is full its oldest frame is dropped, and a
    ///   standing delay beyond one frame is trimmed within a second, so
    ///   the delay a stalled task adds cannot grow; when it is empty the
    ///   sender sends its codec's silence. The two endpoints' tasks tick
    ///   independently.
    /// - What the other endpoint sends goes, in order of precedence: a key
    ///   press being sent ([`send_digit`](Self::send_digit) or one from the
    ///   bridge), a [`play`](Self::play) (a warning tone into the call:
    ///   the bridge's audio is thrown away meanwhile, not delayed), the
    ///   bridge's audio, silence.
    /// - Keys: every key one endpoint hears (RFC 4733, or in-band when it
    ///   negotiated no telephone-event) is pressed by the other for 100 ms:
    ///   RFC 4733 events on its own clock if it negotiated telephone-event,
    ///   else the key's tone in its audio. An in-band key's tone also
    ///   crosses in the audio, up to its detection (and after the event,
    ///   if it is held longer). Keys still reach this endpoint's own
    ///   script as before (`next_digit`, play interrupts, finish keys).
    /// - Recording goes on: a recording is what its endpoint hears.
    ///
    /// Returns once both endpoints have been told (in order with other
    /// commands: a `play` called after it plays over the bridge).
    pub async fn bridge(&self, other: &Endpoint) -> Result<(), EndpointError> {
        if Arc::ptr_eq(&self.inner, &other.inner) {
            return Err(EndpointError::BridgedToItself);
        }
        let (here, there) = BridgeLink::pair();
        // A link that never arrives (the endpoint closed meanwhile) is
        // dropped, which ends the bridge for the side that has it.
        self.send(Command::Bridge(here)).await?;
        other.send(Command::Bridge(there)).await
    }

    /// [`bridge`](Self::bridge), with a copy of every frame either side
    /// hears (this endpoint's as [`Side::A`](crate::Side::A)) sent to `tap`
    /// for a call recorder; copies that do not fit in it are dropped.
    pub async fn bridge_tapped(
        &self,
        other: &Endpoint,
        tap: tokio::sync::mpsc::Sender<BridgeFrame>,
    ) -> Result<(), EndpointError> {
        if Arc::ptr_eq(&self.inner, &other.inner) {
            return Err(EndpointError::BridgedToItself);
        }
        let (here, there) = BridgeLink::pair_with(Some(tap));
        self.send(Command::Bridge(here)).await?;
        other.send(Command::Bridge(there)).await
    }

    /// Ends this endpoint's bridge, if any: both sides send silence (or
    /// what they play) from their next tick.
    pub async fn unbridge(&self) -> Result<(), EndpointError> {
        self.send(Command::Unbridge).await
    }

    pub fn close(&self) {
        self.inner.close();
    }

    pub fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    pub fn stats(&self) -> EndpointStats {
        self.inner.stats()
    }

    async fn send(&self, command: Command) -> Result<(), EndpointError> {
        if self.inner.is_closed() {
            return Err(EndpointError::Closed);
        }
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| EndpointError::Closed)
    }
}

/// RTP payload types an endpoint can use: 0-127 but 72-76, which collide
/// with RTCP packet types when multiplexed (RFC 5761 §4); audio and
/// telephone-event apart.
fn check_payload_types(audio: u8, telephone_event: Option<u8>) -> Result<(), EndpointError> {
    for pt in std::iter::once(audio).chain(telephone_event) {
        if pt > 127 || (72..=76).contains(&pt) {
            return Err(EndpointError::PayloadType(pt));
        }
    }
    if telephone_event == Some(audio) {
        return Err(EndpointError::SamePayloadType(audio));
    }
    Ok(())
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.inner.close();
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.inner.local)
            .field("config", &*lock(&self.inner.config))
            .field("closed", &self.inner.is_closed())
            .finish()
    }
}

impl EndpointHandle {
    /// Stops the endpoint and gives its ports back; whatever waits on it
    /// returns (`Closed`, a recording with what it has).
    pub fn close(&self) {
        self.inner.close();
    }

    pub fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    pub fn stats(&self) -> EndpointStats {
        self.inner.stats()
    }

    pub fn local_port(&self) -> u16 {
        self.inner.port
    }
}

impl std::fmt::Debug for EndpointHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointHandle")
            .field("local", &self.inner.local)
            .finish()
    }
}

async fn run(
    mut core: Core,
    shared: Arc<Shared>,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    mut commands: mpsc::Receiver<Command>,
    mut closed: watch::Receiver<bool>,
) {
    let counters = &shared.counters;
    let mut ticks = tokio::time::interval_at(Instant::now() + FRAME_DURATION, FRAME_DURATION);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    // Larger than any UDP payload an Ethernet path carries.
    let mut buf = vec![0u8; 2048];
    let mut rtcp_buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            // Ticks first: a flood of datagrams must not delay the sender.
            biased;
            _ = closed.wait_for(|c| *c) => break,
            deadline = ticks.tick() => {
                core.handle_timeout(std::time::Instant::now());
                send_control(&mut core, &rtp);
                let late = Instant::now().saturating_duration_since(deadline);
                if late > CATCH_UP_AT_MOST {
                    let missed = late.as_micros() / FRAME_DURATION.as_micros();
                    core.skip(u32::try_from(missed).unwrap_or(u32::MAX));
                    ticks.reset();
                }
                let destination = core.destination();
                let packet = core.tick();
                // An SDP on hold says 0.0.0.0, which Linux would take for
                // this very host: nothing is sent until the peer is heard.
                // Nothing either when the packet could not be built (an
                // SRTP key used up).
                if destination.ip().is_unspecified() || destination.port() == 0 || packet.is_empty() {
                    continue;
                }
                match rtp.try_send_to(packet, destination) {
                    Ok(_) => counters.packets_sent.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counters.send_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            received = rtp.recv_from(&mut buf) => match received {
                Ok((n, source)) => {
                    core.receive(&buf[..n], source, std::time::Instant::now());
                    send_control(&mut core, &rtp);
                }
                // ICMP errors of earlier sends surface here on some systems.
                Err(e) => tracing::trace!(error = %e, "endpoint receive error"),
            },
            received = rtcp.recv_from(&mut rtcp_buf) => if let Ok((n, _)) = received {
                core.receive_rtcp(&rtcp_buf[..n], std::time::Instant::now());
            },
            command = commands.recv() => match command {
                Some(command) => core.command(command),
                None => break,
            },
        }
    }
    core.close();
}

/// A WebRTC leg's STUN answers and DTLS records, sent from the RTP port.
fn send_control(core: &mut Core, rtp: &UdpSocket) {
    while let Some((datagram, to)) = core.poll_transmit() {
        if let Err(e) = rtp.try_send_to(&datagram, to) {
            tracing::trace!(error = %e, %to, "WebRTC control datagram not sent");
        }
    }
}

#[cfg(test)]
mod tests;
