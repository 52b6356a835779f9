//! The endpoint's sans-io core: what one 20 ms tick sends and hears, and
//! what an incoming datagram changes. The tokio task around it (`mod.rs`)
//! only moves datagrams and time in and out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::bridge::BridgeLink;
use super::{EndpointConfig, PlayOutcome, RecordEnd, RecordOptions, Recording};
use crate::codec::{Codec, Decoder, Encoder, FRAME_DURATION, FRAME_SAMPLES};
use crate::dtmf::{DtmfReceiver, DtmfSender, InbandDetector};
use crate::jitter::{JitterBuffer, JitterConfig, Playout, Pushed};
use crate::relay::lock;
use crate::rtcp;
use crate::rtp::{self, Header, Packet};
use crate::silence::{DEFAULT_THRESHOLD, SilenceDetector};
use crate::srtp::{SrtpContext, SrtpError};
use crate::tone;
use crate::webrtc::{Demux, WebRtcPeer, WebRtcTransport};

/// Consecutive packets from a new SSRC before it replaces the old one: a
/// stray packet cannot take the stream over, a peer that restarted its
/// source (a transfer, a re-INVITE elsewhere) loses only 60 ms.
const SSRC_SWITCH_AFTER: u32 = 3;
/// Key presses kept for the script; older ones go first.
const DIGITS_KEPT: usize = 64;
/// Decoded audio waiting to be played out in 20 ms frames (peers
/// packetising at 30 ms or more leave remainders); bounded all the same.
const PCM_KEPT: usize = 16 * FRAME_SAMPLES;
/// How long a key heard on the other side of a bridge is pressed here:
/// its start is known when it is heard, its length is not followed.
pub(crate) const BRIDGED_PRESS: Duration = Duration::from_millis(100);

/// What the core and the control API share: queued key presses and the
/// counters.
pub(crate) struct Shared {
    pub(crate) digits: std::sync::Mutex<VecDeque<char>>,
    /// Woken on each queued key press and on close.
    pub(crate) notify: Notify,
    pub(crate) counters: Counters,
    pub(crate) born: Instant,
}

impl Shared {
    pub(crate) fn new(now: Instant) -> Shared {
        Shared {
            digits: Default::default(),
            notify: Notify::new(),
            counters: Counters::default(),
            born: now,
        }
    }

    fn queue_digit(&self, digit: char) {
        let mut q = lock(&self.digits);
        if q.len() == DIGITS_KEPT {
            q.pop_front();
        }
        q.push_back(digit);
        drop(q);
        self.notify.notify_waiters();
    }

    /// Takes the earliest queued key that is one of `keys`.
    pub(crate) fn take_digit_in(&self, keys: &str) -> Option<char> {
        let mut q = lock(&self.digits);
        let at = q.iter().position(|d| keys.contains(*d))?;
        q.remove(at)
    }

    /// Time since the last packet that showed the peer alive.
    pub(crate) fn idle(&self, now: Instant) -> Duration {
        let last = Duration::from_micros(self.counters.last_heard_us.load(Ordering::Relaxed));
        now.saturating_duration_since(self.born)
            .saturating_sub(last)
    }

    fn heard(&self, now: Instant) {
        let us = now.saturating_duration_since(self.born).as_micros() as u64;
        self.counters.last_heard_us.store(us, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) packets_sent: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) packets_received: AtomicU64,
    pub(crate) dropped_malformed: AtomicU64,
    pub(crate) dropped_wrong_payload_type: AtomicU64,
    pub(crate) dropped_wrong_ssrc: AtomicU64,
    pub(crate) dropped_late: AtomicU64,
    pub(crate) dropped_duplicate: AtomicU64,
    pub(crate) dropped_overflow: AtomicU64,
    pub(crate) rtcp_received: AtomicU64,
    pub(crate) dropped_unauthenticated: AtomicU64,
    pub(crate) dropped_replayed: AtomicU64,
    pub(crate) digits_received: AtomicU64,
    pub(crate) bridge_frames_heard: AtomicU64,
    pub(crate) bridge_frames_sent: AtomicU64,
    pub(crate) bridge_dropped: AtomicU64,
    pub(crate) bridge_underruns: AtomicU64,
    pub(crate) rtcp_sent: AtomicU64,
    last_heard_us: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Follows the SSRC of one kind of packet (audio, or telephone-events,
/// which some gateways send from a source of their own).
#[derive(Debug, Default)]
struct SsrcGate {
    current: Option<u32>,
    candidate: Option<(u32, u32)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Same,
    Switched,
    Refused,
}

impl SsrcGate {
    fn admit(&mut self, ssrc: u32) -> Admit {
        match self.current {
            None => {
                self.current = Some(ssrc);
                Admit::Same
            }
            Some(c) if c == ssrc => {
                self.candidate = None;
                Admit::Same
            }
            Some(_) => {
                let seen = match self.candidate {
                    Some((s, n)) if s == ssrc => n + 1,
                    _ => 1,
                };
                if seen >= SSRC_SWITCH_AFTER {
                    self.current = Some(ssrc);
                    self.candidate = None;
                    Admit::Switched
                } else {
                    self.candidate = Some((ssrc, seen));
                    Admit::Refused
                }
            }
        }
    }
}

/// SRTP of the stream: a context per direction, and room to decrypt an
/// incoming datagram (the socket's buffer is the task's).
struct Srtp {
    outgoing: SrtpContext,
    incoming: SrtpContext,
    plain: Vec<u8>,
}

impl Srtp {
    /// Unprotects `data` (SRTP, or SRTCP when `rtcp`) into `plain`;
    /// a refusal is counted and `false`.
    fn unprotect(&mut self, data: &[u8], rtcp: bool, counters: &Counters) -> bool {
        self.plain.clear();
        self.plain.extend_from_slice(data);
        let result = if rtcp {
            self.incoming.unprotect_rtcp(&mut self.plain)
        } else {
            self.incoming.unprotect_rtp(&mut self.plain)
        };
        match result {
            Ok(n) => {
                self.plain.truncate(n);
                return true;
            }
            Err(SrtpError::Replayed | SrtpError::TooOld) => bump(&counters.dropped_replayed),
            Err(SrtpError::TooShort | SrtpError::Malformed) => bump(&counters.dropped_malformed),
            Err(_) => bump(&counters.dropped_unauthenticated),
        }
        false
    }
}

pub(crate) enum Command {
    Play {
        samples: Arc<[i16]>,
        interrupt: String,
        done: oneshot::Sender<PlayOutcome>,
    },
    Record {
        options: RecordOptions,
        done: oneshot::Sender<Recording>,
    },
    SendDigit {
        digit: char,
        duration: Duration,
        done: oneshot::Sender<()>,
    },
    SetRemote(SocketAddr),
    /// The SDP answer chose another codec (payload types checked).
    SetCodec {
        codec: Codec,
        payload_type: u8,
        telephone_event: Option<u8>,
    },
    /// Joins a bridge, leaving any other.
    Bridge(BridgeLink),
    Unbridge,
    /// Whether packets go to the peer: not while it holds the call (its
    /// SDP says sendonly or inactive).
    SetSending(bool),
    /// A WebRTC leg's browser answered our offer (its ICE ufrag, DTLS
    /// fingerprint and role).
    SetWebRtcPeer(WebRtcPeer),
}

struct PlayJob {
    samples: Arc<[i16]>,
    at: usize,
    interrupt: String,
    done: oneshot::Sender<PlayOutcome>,
}

struct RecordJob {
    samples: Vec<i16>,
    max: usize,
    silence: Option<SilenceDetector>,
    finish_keys: String,
    done: oneshot::Sender<Recording>,
}

struct SendJob {
    digit: char,
    duration: Duration,
    done: oneshot::Sender<()>,
}

enum Sending {
    /// RFC 4733 packets, all stamped with the event's start.
    Event { sender: DtmfSender, timestamp: u32 },
    /// The key's tone, in the audio (no telephone-event negotiated).
    Tone { samples: Vec<i16>, at: usize },
}

pub(crate) struct Core {
    config: EndpointConfig,
    shared: Arc<Shared>,
    encoder: Box<dyn Encoder>,
    decoder: Box<dyn Decoder>,
    // Outgoing.
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    sent_any: bool,
    latched: Option<SocketAddr>,
    plays: VecDeque<PlayJob>,
    sends: VecDeque<SendJob>,
    /// The key press being sent, and who waits for it (no one for a key
    /// from the bridge).
    sending: Option<(Sending, Option<oneshot::Sender<()>>)>,
    frame_out: Vec<i16>,
    payload: Vec<u8>,
    packet: Vec<u8>,
    // Incoming.
    audio_ssrc: SsrcGate,
    event_ssrc: SsrcGate,
    jitter: JitterBuffer,
    events: DtmfReceiver,
    /// Only without telephone-event: with it, gateways that also leave
    /// the tone in the audio would give every key twice, and a prompt
    /// recorded over the line could press keys (talk-off).
    inband: Option<InbandDetector>,
    pcm: VecDeque<i16>,
    decoded: Vec<i16>,
    frame_in: Vec<i16>,
    found: Vec<char>,
    records: VecDeque<RecordJob>,
    /// The jitter buffer's drop counters before a codec change replaced
    /// it: late, duplicate, discarded.
    jitter_carried: [u64; 3],
    // Bridged to another endpoint.
    bridge: Option<BridgeLink>,
    /// False while the peer holds the call: ticks go on (time, the bridge,
    /// recording), no packet is built.
    sends_to_peer: bool,
    bridge_frame: [i16; FRAME_SAMPLES],
    srtp: Option<Srtp>,
    /// A browser's leg: ICE-lite and DTLS on the port; SRTP once the
    /// handshake gave keys (nothing is sent or heard before).
    webrtc: Option<WebRtcTransport>,
    /// RTCP reports, which a browser's leg sends (browsers read round
    /// trip, loss and jitter from them).
    reports: Option<Reports>,
}

/// The RTCP a browser's leg sends: a compound SR + SDES every 5 s or so
/// (RFC 3550 §6.2: randomised between half and one and a half times),
/// over SRTCP on the RTP port.
struct Reports {
    heard: Option<rtcp::Reception>,
    sent: rtcp::Sent,
    /// The middle of the peer's last SR timestamp, and when it came.
    last_sr: Option<(u32, Instant)>,
    /// Ticks to the next report.
    due_in: u32,
    cname: String,
    out: VecDeque<(Vec<u8>, SocketAddr)>,
}

/// Ticks between reports: 5 s on average.
const REPORT_TICKS: u32 = 250;

impl Reports {
    fn new() -> Reports {
        Reports {
            heard: None,
            sent: rtcp::Sent::default(),
            last_sr: None,
            // The first one sooner (§6.2: half the minimum at start).
            due_in: next_report(REPORT_TICKS / 2),
            cname: format!("softswitch-{:08x}", rand::random::<u32>()),
            out: VecDeque::new(),
        }
    }
}

fn next_report(mean: u32) -> u32 {
    mean / 2 + rand::random::<u32>() % mean.max(1)
}

impl Core {
    pub(crate) fn new(
        config: EndpointConfig,
        shared: Arc<Shared>,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
    ) -> Core {
        let codec = config.codec;
        Core {
            encoder: codec.encoder(),
            decoder: codec.decoder(),
            ssrc,
            seq,
            timestamp,
            sent_any: false,
            latched: None,
            plays: VecDeque::new(),
            sends: VecDeque::new(),
            sending: None,
            frame_out: Vec::with_capacity(FRAME_SAMPLES),
            payload: Vec::with_capacity(FRAME_SAMPLES),
            packet: Vec::with_capacity(rtp::HEADER_LEN + FRAME_SAMPLES),
            audio_ssrc: SsrcGate::default(),
            event_ssrc: SsrcGate::default(),
            jitter: JitterBuffer::new(JitterConfig {
                clock_rate: codec.clock_rate(),
                ..JitterConfig::default()
            }),
            events: DtmfReceiver::new(),
            inband: config.telephone_event.is_none().then(InbandDetector::new),
            pcm: VecDeque::with_capacity(PCM_KEPT),
            decoded: Vec::with_capacity(FRAME_SAMPLES * 2),
            frame_in: Vec::with_capacity(FRAME_SAMPLES),
            found: Vec::new(),
            records: VecDeque::new(),
            jitter_carried: [0; 3],
            bridge: None,
            sends_to_peer: true,
            bridge_frame: [0; FRAME_SAMPLES],
            srtp: config.srtp.as_ref().map(|c| Srtp {
                outgoing: SrtpContext::new(c.suite, &c.outgoing),
                incoming: SrtpContext::new(c.suite, &c.incoming),
                plain: Vec::with_capacity(2048),
            }),
            webrtc: config.webrtc.as_ref().map(WebRtcTransport::new),
            reports: config.webrtc.is_some().then(Reports::new),
            config,
            shared,
        }
    }

    /// Where packets go: the peer's latest source, else (a browser) where
    /// ICE found it, else its SDP address.
    pub(crate) fn destination(&self) -> SocketAddr {
        self.latched
            .or_else(|| self.webrtc.as_ref().and_then(WebRtcTransport::selected))
            .unwrap_or(self.config.remote)
    }

    /// A WebRTC leg's timers (DTLS retransmissions, the client's first
    /// flight): every tick.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some(transport) = &mut self.webrtc {
            transport.handle_timeout(now);
            self.install_keys();
        }
    }

    /// A STUN answer, DTLS record or RTCP report to send, and where.
    pub(crate) fn poll_transmit(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        self.webrtc
            .as_mut()?
            .poll_transmit()
            .or_else(|| self.reports.as_mut()?.out.pop_front())
    }

    /// Counts what was sent for the reports, and builds one when due (a
    /// keyed leg only: SRTCP).
    fn report(&mut self) {
        let (Some(reports), Some(srtp)) = (&mut self.reports, &mut self.srtp) else {
            return;
        };
        if !self.packet.is_empty() {
            reports.sent.packets = reports.sent.packets.wrapping_add(1);
            reports.sent.octets = reports.sent.octets.wrapping_add(self.payload.len() as u32);
            reports.sent.timestamp = self.timestamp;
        }
        reports.due_in = reports.due_in.saturating_sub(1);
        if reports.due_in > 0 {
            return;
        }
        reports.due_in = next_report(REPORT_TICKS);
        // Keyed, ICE has found the browser: where the audio goes.
        let destination = self
            .latched
            .or_else(|| self.webrtc.as_ref().and_then(WebRtcTransport::selected));
        let Some(destination) = destination else {
            return;
        };
        let mut packet = Vec::with_capacity(96);
        rtcp::compound(
            self.ssrc,
            reports.sent,
            reports.heard.as_mut(),
            reports.last_sr,
            &reports.cname,
            Instant::now(),
            &mut packet,
        );
        if srtp.outgoing.protect_rtcp(&mut packet).is_ok() {
            reports.out.push_back((packet, destination));
            bump(&self.shared.counters.rtcp_sent);
        }
    }

    /// The keys a WebRTC handshake gave, once.
    fn install_keys(&mut self) {
        let Some(keys) = self.webrtc.as_mut().and_then(WebRtcTransport::take_keys) else {
            return;
        };
        match (
            SrtpContext::try_new(keys.suite, &keys.outgoing),
            SrtpContext::try_new(keys.suite, &keys.incoming),
        ) {
            (Ok(outgoing), Ok(incoming)) => {
                tracing::debug!(suite = %keys.suite, "WebRTC leg keyed");
                self.srtp = Some(Srtp {
                    outgoing,
                    incoming,
                    plain: Vec::with_capacity(2048),
                });
            }
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "DTLS-SRTP keys unusable"),
        }
    }

    pub(crate) fn command(&mut self, command: Command) {
        match command {
            Command::Play {
                samples,
                interrupt,
                done,
            } => {
                self.plays.push_back(PlayJob {
                    samples,
                    at: 0,
                    interrupt,
                    done,
                });
                if self.plays.len() == 1 {
                    self.start_play();
                }
            }
            Command::Record { options, done } => {
                self.records.push_back(RecordJob {
                    samples: Vec::new(),
                    max: tone::samples_for(options.max),
                    silence: options
                        .silence_timeout
                        .map(|t| SilenceDetector::new(DEFAULT_THRESHOLD, t)),
                    finish_keys: options.finish_keys,
                    done,
                });
            }
            Command::SendDigit {
                digit,
                duration,
                done,
            } => self.sends.push_back(SendJob {
                digit,
                duration,
                done,
            }),
            Command::SetRemote(remote) => {
                // A new SDP address: what was latched belonged to the old one.
                self.config.remote = remote;
                self.latched = None;
            }
            Command::SetCodec {
                codec,
                payload_type,
                telephone_event,
            } => self.set_codec(codec, payload_type, telephone_event),
            // A bridge left behind ends for its other side too (the link's drop).
            Command::Bridge(link) => self.bridge = Some(link),
            Command::Unbridge => self.bridge = None,
            Command::SetSending(on) => self.sends_to_peer = on,
            Command::SetWebRtcPeer(peer) => {
                if let Some(transport) = &mut self.webrtc {
                    transport.set_peer(peer, Instant::now());
                    self.install_keys();
                }
            }
        }
    }

    /// Another codec for the stream, from now on: a new encoder and
    /// decoder, a new jitter buffer on the codec's clock and fresh DTMF
    /// state; the SSRC, sequence numbers and timestamps run on.
    fn set_codec(&mut self, codec: Codec, payload_type: u8, telephone_event: Option<u8>) {
        let s = self.jitter.stats();
        let carried = &mut self.jitter_carried;
        carried[0] = carried[0].saturating_add(s.late.saturating_add(s.jumps));
        carried[1] = carried[1].saturating_add(s.duplicate);
        carried[2] = carried[2].saturating_add(s.discarded);
        // A key press going out as events was counted in the old clock
        // (or payload type): it stops where it is.
        let changed = codec.clock_rate() != self.config.codec.clock_rate()
            || telephone_event != self.config.telephone_event;
        if changed
            && matches!(self.sending, Some((Sending::Event { .. }, _)))
            // Taken whether or not someone waits for it.
            && let Some((_, Some(done))) = self.sending.take()
        {
            let _ = done.send(());
        }
        self.config.codec = codec;
        self.config.payload_type = payload_type;
        self.config.telephone_event = telephone_event;
        self.encoder = codec.encoder();
        self.decoder = codec.decoder();
        self.jitter = JitterBuffer::new(JitterConfig {
            clock_rate: codec.clock_rate(),
            ..JitterConfig::default()
        });
        self.events = DtmfReceiver::new();
        self.inband = telephone_event.is_none().then(InbandDetector::new);
        self.pcm.clear();
        self.sync_jitter_counters();
    }

    /// A play became current: a key typed ahead that may interrupt it
    /// does so at once (callers who know the menu need not listen to it).
    fn start_play(&mut self) {
        while let Some(play) = self.plays.front() {
            match self.shared.take_digit_in(&play.interrupt) {
                Some(digit) => self.finish_play(PlayOutcome::Interrupted(digit)),
                None => return,
            }
        }
    }

    fn finish_play(&mut self, outcome: PlayOutcome) {
        if let Some(play) = self.plays.pop_front() {
            let _ = play.done.send(outcome);
        }
        self.start_play();
    }

    fn finish_record(&mut self, reason: RecordEnd) {
        if let Some(mut job) = self.records.pop_front() {
            if reason == RecordEnd::Silence
                && let Some(silence) = &job.silence
            {
                let keep = job.samples.len().saturating_sub(silence.quiet_samples());
                job.samples.truncate(keep);
            }
            let _ = job.done.send(Recording {
                samples: job.samples,
                reason,
            });
        }
    }

    /// The tick's timestamp moved past frames the task could not send in
    /// time (it was starved): the peer sees a gap, not a burst.
    pub(crate) fn skip(&mut self, frames: u32) {
        let step = self.config.codec.timestamp_step();
        self.timestamp = self.timestamp.wrapping_add(step.wrapping_mul(frames));
    }

    /// One 20 ms tick: hears a frame, then returns the packet to send
    /// (protected, with SRTP; empty if it could not be).
    pub(crate) fn tick(&mut self) -> &[u8] {
        if self.bridge.as_ref().is_some_and(BridgeLink::ended) {
            self.bridge = None;
        }
        self.forget_abandoned();
        self.hear_frame();
        if self.sends_to_peer {
            self.build_packet();
            if self.webrtc.is_some() && self.srtp.is_none() {
                // A browser's leg sends nothing in the clear.
                self.packet.clear();
            }
            self.report();
        } else {
            // On hold: the bridge's frame goes by unsent, and the clock
            // runs on, so the stream resumes with a timestamp gap and the
            // next sequence number, as after silence suppression.
            self.take_bridged();
            self.skip(1);
            self.packet.clear();
        }
        &self.packet
    }

    /// Jobs whose caller stopped waiting (its future was dropped) stop.
    fn forget_abandoned(&mut self) {
        if self.plays.front().is_some_and(|p| p.done.is_closed()) {
            self.plays.pop_front();
            self.start_play();
        }
        self.plays.retain(|p| !p.done.is_closed());
        self.records.retain(|r| !r.done.is_closed());
        self.sends.retain(|s| !s.done.is_closed());
        // An abandoned tone stops; an event runs to its end packets, or
        // the peer would hold the key down until its own timeout.
        if let Some((Sending::Tone { .. }, Some(done))) = &self.sending
            && done.is_closed()
        {
            self.sending = None;
        }
    }

    fn hear_frame(&mut self) {
        while self.pcm.len() < FRAME_SAMPLES {
            self.decoded.clear();
            match self.jitter.pop() {
                Playout::Frame(payload) => {
                    self.decoder.decode(payload, &mut self.decoded);
                    if let Some(detector) = &mut self.inband {
                        let found = &mut self.found;
                        detector.push(&self.decoded, |d| found.push(d));
                    }
                }
                // Concealment is not fed to the detector: a lost packet
                // inside a tone must not split one press into two.
                Playout::Missing => self.decoder.conceal(&mut self.decoded),
                Playout::Empty => break,
            }
            let room = PCM_KEPT.saturating_sub(self.pcm.len());
            let take = self.decoded.len().min(room);
            self.pcm.extend(&self.decoded[..take]);
        }
        self.sync_jitter_counters();
        self.frame_in.clear();
        let take = self.pcm.len().min(FRAME_SAMPLES);
        self.frame_in.extend(self.pcm.drain(..take));
        // Nothing heard is silence: time goes on for the recorder.
        self.frame_in.resize(FRAME_SAMPLES, 0);
        if let Some(link) = &self.bridge {
            link.hear(&self.frame_in);
            bump(&self.shared.counters.bridge_frames_heard);
        }
        for i in 0..self.found.len() {
            let digit = self.found[i];
            self.on_digit(digit);
        }
        self.found.clear();
        self.record_frame();
    }

    fn record_frame(&mut self) {
        let Some(job) = self.records.front_mut() else {
            return;
        };
        let room = job.max.saturating_sub(job.samples.len());
        let take = room.min(self.frame_in.len());
        job.samples.extend_from_slice(&self.frame_in[..take]);
        let silent = job
            .silence
            .as_mut()
            .is_some_and(|s| s.push(&self.frame_in[..take]));
        if job.samples.len() >= job.max {
            self.finish_record(RecordEnd::MaxDuration);
        } else if silent {
            self.finish_record(RecordEnd::Silence);
        }
    }

    fn build_packet(&mut self) {
        // A frame of the bridge is taken every tick, sent or not (a play
        // or a key press has the floor): what waits stays fresh.
        let bridged = self.take_bridged();
        if self.sending.is_none() {
            if let Some(job) = self.sends.pop_front() {
                let sending = self.start_sending(job.digit, job.duration);
                self.sending = Some((sending, Some(job.done)));
            } else if let Some(digit) = self.bridge.as_ref().and_then(BridgeLink::take_key) {
                let sending = self.start_sending(digit, BRIDGED_PRESS);
                self.sending = Some((sending, None));
            }
        }
        let mut header = Header {
            marker: !self.sent_any,
            payload_type: self.config.payload_type,
            sequence: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        self.payload.clear();
        let mut audio = true;
        if let Some((sending, _)) = &mut self.sending {
            match sending {
                Sending::Event { sender, timestamp } => {
                    if let Some(packet) = sender.next_packet() {
                        // The payload type was checked when opening.
                        header.payload_type = self.config.telephone_event.unwrap_or_default();
                        header.marker = packet.marker;
                        header.timestamp = *timestamp;
                        if let Ok(bytes) = packet.payload.write() {
                            self.payload.extend_from_slice(&bytes);
                        }
                        audio = false;
                    }
                }
                Sending::Tone { samples, at } => {
                    if *at < samples.len() {
                        let end = (*at + FRAME_SAMPLES).min(samples.len());
                        self.frame_out.clear();
                        self.frame_out.extend_from_slice(&samples[*at..end]);
                        self.frame_out.resize(FRAME_SAMPLES, 0);
                        *at = end;
                        let _ = self.encoder.encode(&self.frame_out, &mut self.payload);
                        audio = false;
                    }
                }
            }
            if audio {
                // Every packet of the key press is out.
                if let Some((_, Some(done))) = self.sending.take() {
                    let _ = done.send(());
                }
            }
        }
        if audio {
            self.audio_frame(bridged);
        }
        // Payload types were checked when opening: writing cannot fail.
        if header.build(&self.payload, &mut self.packet).is_err() {
            self.packet.clear();
        }
        // Every packet built is protected, sent or not (on hold): the
        // SRTP context sees the sequence numbers go by one at a time.
        if let Some(srtp) = &mut self.srtp
            && !self.packet.is_empty()
            && let Err(e) = srtp.outgoing.protect_rtp(&mut self.packet)
        {
            // Only a used-up key (2^48 packets): nothing more is sent.
            tracing::debug!(error = %e, "SRTP packet not protected");
            self.packet.clear();
        }
        self.sent_any = true;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self
            .timestamp
            .wrapping_add(self.config.codec.timestamp_step());
    }

    /// Takes the bridge's next frame into `bridge_frame`: `None` when not
    /// bridged, else whether there was one.
    fn take_bridged(&mut self) -> Option<bool> {
        let link = self.bridge.as_mut()?;
        let taken = link.take(&mut self.bridge_frame);
        if taken.dropped > 0 {
            let c = &self.shared.counters.bridge_dropped;
            c.fetch_add(taken.dropped, Ordering::Relaxed);
        }
        Some(taken.frame)
    }

    fn start_sending(&self, digit: char, duration: Duration) -> Sending {
        let clock = self.config.codec.clock_rate();
        match (
            self.config.telephone_event,
            DtmfSender::new(digit, duration, clock, FRAME_DURATION),
        ) {
            (Some(_), Ok(sender)) => Sending::Event {
                sender,
                timestamp: self.timestamp,
            },
            _ => Sending::Tone {
                samples: tone::dtmf(digit, duration).unwrap_or_default(),
                at: 0,
            },
        }
    }

    /// The audio of the tick: what plays, else the bridge's frame, else
    /// silence (a stateful codec's encoder runs on it, so nothing jumps
    /// when a prompt starts).
    fn audio_frame(&mut self, bridged: Option<bool>) {
        if !self.plays.is_empty() {
            return self.play_frame();
        }
        let counters = &self.shared.counters;
        match bridged {
            Some(true) => {
                let _ = self.encoder.encode(&self.bridge_frame, &mut self.payload);
                bump(&counters.bridge_frames_sent);
            }
            Some(false) => {
                bump(&counters.bridge_underruns);
                self.encoder.encode_silence(&mut self.payload);
            }
            None => self.encoder.encode_silence(&mut self.payload),
        }
    }

    /// The next frame of what plays.
    fn play_frame(&mut self) {
        let Some(play) = self.plays.front_mut() else {
            self.encoder.encode_silence(&mut self.payload);
            return;
        };
        let end = (play.at + FRAME_SAMPLES).min(play.samples.len());
        self.frame_out.clear();
        self.frame_out
            .extend_from_slice(&play.samples[play.at..end]);
        self.frame_out.resize(FRAME_SAMPLES, 0);
        play.at = end;
        let finished = play.at >= play.samples.len();
        let _ = self.encoder.encode(&self.frame_out, &mut self.payload);
        if finished {
            self.finish_play(PlayOutcome::Finished);
        }
    }

    /// An incoming datagram on the RTP port (SRTP or SRTCP when the
    /// stream is secure: it is checked and decrypted first).
    pub(crate) fn receive(&mut self, data: &[u8], source: SocketAddr, now: Instant) {
        bump(&self.shared.counters.packets_received);
        if let Some(transport) = &mut self.webrtc {
            match transport.receive(data, source, now) {
                Demux::Media if self.srtp.is_none() => {
                    // Before the handshake: nothing to authenticate it with.
                    return bump(&self.shared.counters.dropped_unauthenticated);
                }
                Demux::Media => {}
                Demux::Control { alive } => {
                    if alive {
                        self.shared.heard(now);
                    }
                    return self.install_keys();
                }
                Demux::Garbage => return bump(&self.shared.counters.dropped_malformed),
            }
        }
        if rtp::is_rtcp(data) {
            // RTCP multiplexed onto the RTP port: a live peer, no media.
            return self.receive_rtcp(data, now);
        }
        let Some(mut srtp) = self.srtp.take() else {
            return self.receive_plain(data, source, now);
        };
        if srtp.unprotect(data, false, &self.shared.counters) {
            self.receive_plain(&srtp.plain, source, now);
        }
        self.srtp = Some(srtp);
    }

    /// An RTP packet in the clear.
    fn receive_plain(&mut self, data: &[u8], source: SocketAddr, now: Instant) {
        let counters = &self.shared.counters;
        let packet = match Packet::parse(data) {
            Ok(p) => p,
            Err(_) => return bump(&counters.dropped_malformed),
        };
        let h = packet.header;
        let audio = h.payload_type == self.config.payload_type;
        if !audio && Some(h.payload_type) != self.config.telephone_event {
            return bump(&counters.dropped_wrong_payload_type);
        }
        let gate = if audio {
            &mut self.audio_ssrc
        } else {
            &mut self.event_ssrc
        };
        match gate.admit(h.ssrc) {
            Admit::Same => {}
            Admit::Switched if audio => {
                if let Some(detector) = &mut self.inband {
                    detector.reset();
                }
                // A new source is a new stream for a stateful decoder too.
                self.decoder.reset();
            }
            Admit::Switched => self.events.reset(),
            Admit::Refused => return bump(&counters.dropped_wrong_ssrc),
        }
        // Only packets of the call's stream move the latch: garbage or a
        // stranger's packets cannot divert where audio goes.
        self.latched = Some(source);
        self.shared.heard(now);
        if audio && let Some(reports) = &mut self.reports {
            let clock = self.config.codec.clock_rate();
            let heard = match &mut reports.heard {
                Some(heard) if heard.ssrc() == h.ssrc => heard,
                other => other.insert(rtcp::Reception::new(h.ssrc, h.sequence, clock, now)),
            };
            heard.record(h.sequence, h.timestamp, now);
        }
        if audio {
            let pushed = self
                .jitter
                .push(h.ssrc, h.sequence, h.timestamp, packet.payload, now);
            if pushed == Pushed::TooLarge {
                bump(&counters.dropped_malformed);
            }
            self.sync_jitter_counters();
            return;
        }
        match self.events.receive(h.marker, h.timestamp, packet.payload) {
            Ok(Some(digit)) => self.on_digit(digit),
            Ok(None) => {}
            Err(_) => bump(&counters.dropped_malformed),
        }
    }

    /// An RTCP datagram (on the RTCP port, or multiplexed): read and
    /// thrown away (this endpoint reports nothing), but it shows the peer
    /// alive, as on hold. With SRTP only an authentic SRTCP packet does:
    /// a stranger cannot keep a silent call open.
    pub(crate) fn receive_rtcp(&mut self, data: &[u8], now: Instant) {
        let counters = &self.shared.counters;
        bump(&counters.rtcp_received);
        if let Some(srtp) = &mut self.srtp {
            if !srtp.unprotect(data, true, counters) {
                return;
            }
            if let Some(reports) = &mut self.reports
                && let Some(lsr) = rtcp::sender_report_lsr(&srtp.plain)
            {
                reports.last_sr = Some((lsr, now));
            }
        }
        self.shared.heard(now);
    }

    fn sync_jitter_counters(&self) {
        let s = self.jitter.stats();
        let c = &self.shared.counters;
        let [late, duplicate, discarded] = self.jitter_carried;
        let late = late.saturating_add(s.late).saturating_add(s.jumps);
        c.dropped_late.store(late, Ordering::Relaxed);
        let duplicate = duplicate.saturating_add(s.duplicate);
        c.dropped_duplicate.store(duplicate, Ordering::Relaxed);
        let discarded = discarded.saturating_add(s.discarded);
        c.dropped_overflow.store(discarded, Ordering::Relaxed);
    }

    /// A key press from the peer: it ends a recording or a play that
    /// listens for it, else waits in the queue for the script.
    fn on_digit(&mut self, digit: char) {
        bump(&self.shared.counters.digits_received);
        // Sent on by the other side of a bridge, and handled here too (a
        // script may watch for keys while the call is bridged).
        if let Some(link) = &self.bridge {
            link.key(digit);
        }
        if self
            .records
            .front()
            .is_some_and(|r| r.finish_keys.contains(digit))
        {
            return self.finish_record(RecordEnd::Key(digit));
        }
        if self
            .plays
            .front()
            .is_some_and(|p| p.interrupt.contains(digit))
        {
            return self.finish_play(PlayOutcome::Interrupted(digit));
        }
        self.shared.queue_digit(digit);
    }

    /// The endpoint closes: every waiting caller gets its answer, and a
    /// recording keeps what it has (a caller hanging up ends a voicemail).
    pub(crate) fn close(&mut self) {
        for play in self.plays.drain(..) {
            let _ = play.done.send(PlayOutcome::Closed);
        }
        while !self.records.is_empty() {
            self.finish_record(RecordEnd::Closed);
        }
        // Senders of digits learn it by their channel closing.
        self.sends.clear();
        self.sending = None;
        // The other side of a bridge sends silence from now on.
        self.bridge = None;
        self.shared.notify.notify_waiters();
    }

    #[cfg(test)]
    pub(crate) fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::TelephoneEvent;
    use crate::endpoint::bridge::PIPE_FRAMES;

    const PEER: u32 = 0x5EED;

    fn core(telephone_event: Option<u8>) -> Core {
        let config = EndpointConfig {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event,
            remote: "192.0.2.1:4000".parse().unwrap(),
            srtp: None,
            webrtc: None,
        };
        Core::new(
            config,
            Arc::new(Shared::new(Instant::now())),
            1,
            65534,
            1000,
        )
    }

    fn packet(pt: u8, ssrc: u32, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Header {
            marker,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc,
        }
        .build(payload, &mut out)
        .unwrap();
        out
    }

    fn event(digit: char, end: bool) -> [u8; 4] {
        TelephoneEvent {
            event: crate::dtmf::digit_to_event(digit).unwrap(),
            end,
            volume: 10,
            duration: 160,
        }
        .write()
        .unwrap()
    }

    fn counter(c: &Core, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        f(&c.shared.counters).load(Ordering::Relaxed)
    }

    #[test]
    fn outgoing_packets_count_up_and_wrap() {
        let mut c = core(None);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let p = Packet::parse(c.tick()).unwrap();
            assert_eq!(p.payload, Codec::Pcmu.silence());
            seen.push((p.header.marker, p.header.sequence, p.header.timestamp));
        }
        assert_eq!(
            seen,
            [
                (true, 65534, 1000),
                (false, 65535, 1160),
                (false, 0, 1320),
                (false, 1, 1480)
            ]
        );
        c.skip(2);
        assert_eq!(Packet::parse(c.tick()).unwrap().header.timestamp, 1960);
    }

    #[test]
    fn opus_runs_on_a_48_khz_clock_and_sends_encoded_silence() {
        let config = EndpointConfig {
            codec: Codec::OPUS,
            payload_type: 111,
            telephone_event: Some(101),
            remote: "192.0.2.1:4000".parse().unwrap(),
            srtp: None,
            webrtc: None,
        };
        let mut c = Core::new(config, Arc::new(Shared::new(Instant::now())), 1, 7, 1000);
        let mut decoder = ::opus::Decoder::new(48000, ::opus::Channels::Mono).unwrap();
        let mut pcm = [0i16; 960];
        let mut stamps = Vec::new();
        for _ in 0..3 {
            let p = Packet::parse(c.tick()).unwrap();
            assert_eq!(p.header.payload_type, 111);
            stamps.push(p.header.timestamp);
            // Silence through the encoder: valid Opus, silent, small.
            assert!(p.payload.len() < 20, "{}", p.payload.len());
            assert_eq!(decoder.decode(p.payload, &mut pcm, false).unwrap(), 960);
            assert!(pcm.iter().all(|s| s.abs() < 10));
        }
        assert_eq!(stamps, [1000, 1960, 2920]);
        c.skip(2);
        assert_eq!(Packet::parse(c.tick()).unwrap().header.timestamp, 5800);
        // A key press as RFC 4733 on the same 48 kHz clock.
        let (done, _sent) = oneshot::channel();
        c.command(Command::SendDigit {
            digit: '5',
            duration: Duration::from_millis(100),
            done,
        });
        let p = Packet::parse(c.tick()).unwrap();
        assert_eq!(p.header.payload_type, 101);
        assert_eq!(p.header.timestamp, 6760);
        let p = Packet::parse(c.tick()).unwrap();
        let event = TelephoneEvent::parse(p.payload).unwrap();
        assert_eq!(event.duration, 1920);
    }

    #[test]
    fn a_held_peer_gets_nothing_and_the_stream_resumes_after_a_gap() {
        let mut c = core(Some(101));
        let before = Packet::parse(c.tick()).unwrap().header;
        c.command(Command::SetSending(false));
        for _ in 0..3 {
            assert!(c.tick().is_empty(), "a packet while on hold");
        }
        c.command(Command::SetSending(true));
        let after = Packet::parse(c.tick()).unwrap().header;
        assert_eq!(after.sequence, before.sequence.wrapping_add(1));
        let step = c.config.codec.timestamp_step();
        assert_eq!(after.timestamp, before.timestamp.wrapping_add(4 * step));
    }

    #[test]
    fn the_latch_follows_only_the_streams_packets() {
        let mut c = core(Some(101));
        let now = Instant::now();
        let (phone, stranger): (SocketAddr, SocketAddr) = (
            "198.51.100.7:5000".parse().unwrap(),
            "203.0.113.9:6666".parse().unwrap(),
        );
        assert_eq!(c.destination(), c.config.remote);
        c.receive(&[0x80, 0, 1], stranger, now);
        c.receive(&packet(18, PEER, 1, 0, false, &[0; 20]), stranger, now);
        assert_eq!(c.latched(), None);
        c.receive(&packet(0, PEER, 1, 0, false, &[0; 160]), phone, now);
        assert_eq!(c.destination(), phone);
        // Another SSRC from elsewhere: refused, the latch stays.
        c.receive(&packet(0, 0xBAD, 1, 0, false, &[0; 160]), stranger, now);
        assert_eq!(c.destination(), phone);
        assert_eq!(counter(&c, |k| &k.dropped_malformed), 1);
        assert_eq!(counter(&c, |k| &k.dropped_wrong_payload_type), 1);
        assert_eq!(counter(&c, |k| &k.dropped_wrong_ssrc), 1);
        assert_eq!(counter(&c, |k| &k.packets_received), 4);
        c.command(Command::SetRemote("192.0.2.2:4002".parse().unwrap()));
        assert_eq!(c.destination(), "192.0.2.2:4002".parse().unwrap());
    }

    #[test]
    fn a_new_ssrc_is_taken_only_when_it_persists() {
        let mut c = core(None);
        let now = Instant::now();
        let src = "198.51.100.7:5000".parse().unwrap();
        c.receive(&packet(0, PEER, 1, 0, false, &[0; 160]), src, now);
        // Interleaved with the old source: never taken.
        for i in 0..5 {
            c.receive(&packet(0, 0xAAAA, 100 + i, 0, false, &[0; 160]), src, now);
            c.receive(&packet(0, PEER, 2 + i, 0, false, &[0; 160]), src, now);
        }
        assert_eq!(counter(&c, |k| &k.dropped_wrong_ssrc), 5);
        // Three in a row: the peer's new source.
        for i in 0..3 {
            c.receive(&packet(0, 0xAAAA, 200 + i, 0, false, &[0; 160]), src, now);
        }
        assert_eq!(counter(&c, |k| &k.dropped_wrong_ssrc), 7);
        assert_eq!(c.audio_ssrc.current, Some(0xAAAA));
    }

    #[test]
    fn keys_typed_ahead_interrupt_a_play_at_once_and_others_stay() {
        let mut c = core(Some(101));
        let now = Instant::now();
        let src = "198.51.100.7:5000".parse().unwrap();
        for (i, d) in "5#".chars().enumerate() {
            let p = packet(101, PEER, i as u16, i as u32 * 800, true, &event(d, false));
            c.receive(&p, src, now);
        }
        let (done, mut outcome) = oneshot::channel();
        c.command(Command::Play {
            samples: vec![1000; 8000].into(),
            interrupt: "#".into(),
            done,
        });
        assert_eq!(outcome.try_recv(), Ok(PlayOutcome::Interrupted('#')));
        assert_eq!(c.shared.take_digit_in("0123456789"), Some('5'));
        assert_eq!(counter(&c, |k| &k.digits_received), 2);
    }

    #[test]
    fn a_recording_keeps_what_it_has_when_closed() {
        let mut c = core(None);
        let (done, mut rx) = oneshot::channel();
        c.command(Command::Record {
            options: RecordOptions {
                max: Duration::from_secs(10),
                silence_timeout: None,
                finish_keys: String::new(),
            },
            done,
        });
        for _ in 0..3 {
            c.tick();
        }
        c.close();
        let rec = rx.try_recv().unwrap();
        assert_eq!(rec.reason, RecordEnd::Closed);
        assert_eq!(rec.samples.len(), 3 * FRAME_SAMPLES);
    }

    /// A PCMU payload whose every byte says which frame it is.
    fn frame_code(i: u32) -> u8 {
        0x80 + (i % 120) as u8
    }

    /// Ticks `c` and reads back which frame it sent (`None` for anything
    /// else: silence).
    fn sent_frame(c: &mut Core) -> Option<u32> {
        let p = Packet::parse(c.tick()).unwrap();
        let first = *p.payload.first()?;
        let ours = (0x80..0x80 + 120).contains(&first) && p.payload.iter().all(|&b| b == first);
        ours.then(|| u32::from(first - 0x80))
    }

    fn bridged() -> (Core, Core) {
        let (mut a, mut b) = (core(None), core(None));
        let (here, there) = BridgeLink::pair();
        a.command(Command::Bridge(here));
        b.command(Command::Bridge(there));
        (a, b)
    }

    /// The phone of `a` sends its `n`th frame on time and `a` ticks.
    fn hear_next(a: &mut Core, n: &mut u32, t0: Instant) {
        let src = "198.51.100.7:5000".parse().unwrap();
        let p = packet(0, PEER, *n as u16, *n * 160, false, &[frame_code(*n); 160]);
        a.receive(&p, src, t0 + FRAME_DURATION * *n);
        a.tick();
        *n += 1;
    }

    /// How many frames behind the newest one heard `b` sends.
    fn lag(b: &mut Core, n: u32) -> Option<u32> {
        sent_frame(b).map(|code| (n - 1 - code) % 120)
    }

    #[test]
    fn audio_crosses_a_bridge_with_a_frame_of_delay() {
        let (mut a, mut b) = bridged();
        let t0 = Instant::now();
        let mut n = 0;
        let mut lags = Vec::new();
        for _ in 0..100 {
            hear_next(&mut a, &mut n, t0);
            lags.extend(lag(&mut b, n));
        }
        // Every frame in order (the jitter buffer starts at once on such
        // a regular stream).
        assert_eq!(lags.len(), 100);
        assert!(lags.iter().all(|&l| l <= 1), "{lags:?}");
        let s = |f: fn(&Counters) -> &AtomicU64| (counter(&a, f), counter(&b, f));
        // B hears silence, which A sends (but on its first tick: B had
        // not ticked yet).
        assert_eq!(s(|k| &k.bridge_frames_heard), (100, 100));
        assert_eq!(s(|k| &k.bridge_frames_sent), (99, 100));
        assert_eq!(s(|k| &k.bridge_underruns), (1, 0));
        assert_eq!(s(|k| &k.bridge_dropped), (0, 0));
    }

    #[test]
    fn a_slow_or_stalled_sender_does_not_let_the_bridge_delay_grow() {
        let bound = PIPE_FRAMES as u32 + 2;
        let (mut a, mut b) = bridged();
        let t0 = Instant::now();
        let mut n = 0;
        // B ticks at half A's rate for 6 s: the pipe stays bounded.
        let mut lags = Vec::new();
        for i in 0..300 {
            hear_next(&mut a, &mut n, t0);
            if i % 2 == 1 {
                lags.extend(lag(&mut b, n));
            }
        }
        assert!(lags.len() >= 140);
        assert!(lags.iter().all(|&l| l <= bound), "{lags:?}");
        let dropped = counter(&b, |k| &k.bridge_dropped);
        assert!(dropped >= 140, "{dropped} dropped");
        // B stalls a whole second, then keeps up: what it sends first is
        // at most the pipe's length old, and within two seconds the
        // delay is back to one frame.
        for _ in 0..50 {
            hear_next(&mut a, &mut n, t0);
        }
        let mut lags = Vec::new();
        for _ in 0..100 {
            hear_next(&mut a, &mut n, t0);
            lags.extend(lag(&mut b, n));
        }
        assert_eq!(lags.len(), 100);
        assert!(lags[0] <= bound, "{lags:?}");
        assert!(lags[50..].iter().all(|&l| l <= 1), "{lags:?}");
        assert_eq!(counter(&b, |k| &k.bridge_underruns), 0);
    }

    #[test]
    fn when_one_side_closes_the_other_sends_silence() {
        let (mut a, mut b) = bridged();
        let t0 = Instant::now();
        let mut n = 0;
        for _ in 0..10 {
            hear_next(&mut a, &mut n, t0);
            sent_frame(&mut b);
        }
        a.close();
        for _ in 0..5 {
            assert_eq!(sent_frame(&mut b), None);
        }
        assert!(b.bridge.is_none());
        let before = counter(&b, |k| &k.bridge_underruns);
        b.tick();
        assert_eq!(counter(&b, |k| &k.bridge_underruns), before);
    }

    #[test]
    fn a_play_has_the_floor_over_the_bridge() {
        let (mut a, mut b) = bridged();
        let t0 = Instant::now();
        let mut n = 0;
        for _ in 0..5 {
            hear_next(&mut a, &mut n, t0);
            sent_frame(&mut b);
        }
        let (done, mut outcome) = oneshot::channel();
        b.command(Command::Play {
            samples: vec![0; 3 * FRAME_SAMPLES].into(),
            interrupt: String::new(),
            done,
        });
        // Three frames of the play's silence, bridge audio thrown away
        // meanwhile (not delayed), then the bridge again.
        let mut sent = Vec::new();
        for _ in 0..6 {
            hear_next(&mut a, &mut n, t0);
            sent.push(lag(&mut b, n));
        }
        assert_eq!(&sent[..3], [None; 3]);
        assert!(
            sent[3..].iter().all(|l| l.is_some_and(|l| l <= 1)),
            "{sent:?}"
        );
        assert_eq!(outcome.try_recv(), Ok(PlayOutcome::Finished));
    }

    #[test]
    fn keys_cross_a_bridge_as_events_or_tones() {
        // A hears RFC 4733; B has telephone-event, C none.
        let mut a = core(Some(101));
        let mut b = core(Some(101));
        let (here, there) = BridgeLink::pair();
        a.command(Command::Bridge(here));
        b.command(Command::Bridge(there));
        let src = "198.51.100.7:5000".parse().unwrap();
        let now = Instant::now();
        a.receive(
            &packet(101, PEER, 1, 800, true, &event('7', false)),
            src,
            now,
        );
        a.tick();
        let p = Packet::parse(b.tick()).unwrap();
        assert_eq!(p.header.payload_type, 101);
        assert_eq!(TelephoneEvent::parse(p.payload).unwrap().digit(), Some('7'));
        // The key reached A's script too.
        assert_eq!(a.shared.take_digit_in("7"), Some('7'));
        let mut c = core(None);
        let (here, there) = BridgeLink::pair();
        // A leaves B's bridge for C's: B's link ends.
        a.command(Command::Bridge(here));
        c.command(Command::Bridge(there));
        a.receive(
            &packet(101, PEER, 2, 8000, true, &event('#', false)),
            src,
            now,
        );
        a.tick();
        let mut detector = InbandDetector::new();
        let mut keys = String::new();
        let mut pcm = Vec::new();
        for _ in 0..8 {
            let p = Packet::parse(c.tick()).unwrap();
            assert_eq!(p.header.payload_type, 0);
            pcm.clear();
            pcm.extend(p.payload.iter().map(|&b| crate::g711::ulaw_decode(b)));
            detector.push(&pcm, |k| keys.push(k));
        }
        assert_eq!(keys, "#");
        b.tick();
        assert!(b.bridge.is_none());
    }

    #[test]
    fn a_new_codec_keeps_the_stream_going() {
        let mut c = core(Some(101));
        let first = Packet::parse(c.tick()).unwrap().header;
        c.command(Command::SetCodec {
            codec: Codec::Pcma,
            payload_type: 8,
            telephone_event: Some(96),
        });
        let p = Packet::parse(c.tick()).unwrap();
        assert_eq!(p.header.payload_type, 8);
        assert_eq!(p.payload, Codec::Pcma.silence());
        assert_eq!(p.header.ssrc, first.ssrc);
        assert_eq!(p.header.sequence, first.sequence.wrapping_add(1));
        assert_eq!(p.header.timestamp, first.timestamp.wrapping_add(160));
        // PCMU is no longer heard; PCMA and events on 96 are.
        let src = "198.51.100.7:5000".parse().unwrap();
        let now = Instant::now();
        c.receive(&packet(0, PEER, 1, 0, false, &[0; 160]), src, now);
        c.receive(&packet(101, PEER, 2, 0, true, &event('1', false)), src, now);
        c.receive(&packet(8, PEER, 3, 0, false, &[0xD5; 160]), src, now);
        c.receive(&packet(96, PEER, 4, 0, true, &event('2', false)), src, now);
        assert_eq!(counter(&c, |k| &k.dropped_wrong_payload_type), 2);
        assert_eq!(c.shared.take_digit_in("12"), Some('2'));
        // To Opus: the timestamp runs on at 48 kHz.
        let before = Packet::parse(c.tick()).unwrap().header;
        c.command(Command::SetCodec {
            codec: Codec::OPUS,
            payload_type: 111,
            telephone_event: Some(101),
        });
        let after = Packet::parse(c.tick()).unwrap().header;
        assert_eq!(after.payload_type, 111);
        assert_eq!(after.timestamp, before.timestamp.wrapping_add(160));
        let next = Packet::parse(c.tick()).unwrap().header;
        assert_eq!(next.timestamp, after.timestamp.wrapping_add(960));
    }

    #[test]
    fn an_abandoned_play_stops() {
        let mut c = core(None);
        let (done, rx) = oneshot::channel();
        c.command(Command::Play {
            samples: vec![5000; 8000].into(),
            interrupt: String::new(),
            done,
        });
        assert_ne!(
            Packet::parse(c.tick()).unwrap().payload,
            Codec::Pcmu.silence()
        );
        drop(rx);
        assert_eq!(
            Packet::parse(c.tick()).unwrap().payload,
            Codec::Pcmu.silence()
        );
    }

    #[test]
    fn with_srtp_every_packet_is_protected_and_only_authentic_ones_are_heard() {
        use crate::srtp::{MasterKey, SrtpConfig, SrtpContext, Suite};
        let suite = Suite::AesCm128HmacSha1_32;
        let (ours, theirs) = (MasterKey::random(), MasterKey::random());
        let mut c = core(Some(101));
        c = Core::new(
            EndpointConfig {
                srtp: Some(SrtpConfig {
                    suite,
                    outgoing: ours.clone(),
                    incoming: theirs.clone(),
                }),
                ..c.config.clone()
            },
            c.shared.clone(),
            1,
            65534,
            1000,
        );
        let mut phone_hears = SrtpContext::new(suite, &ours);
        let mut phone_says = SrtpContext::new(suite, &theirs);
        // Sent: SRTP with the 32-bit tag, across the sequence wrap (the
        // first packets go out at 65534, 65535, then ROC 1).
        for _ in 0..4 {
            let mut p = c.tick().to_vec();
            assert_eq!(p.len(), rtp::HEADER_LEN + 160 + 4);
            assert_ne!(&p[rtp::HEADER_LEN..][..160], Codec::Pcmu.silence());
            let n = phone_hears.unprotect_rtp(&mut p).unwrap();
            assert_eq!(
                Packet::parse(&p[..n]).unwrap().payload,
                Codec::Pcmu.silence()
            );
        }
        let src: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let now = Instant::now();
        let plain = packet(101, PEER, 1, 0, true, &event('5', false));
        let mut p = plain.clone();
        phone_says.protect_rtp(&mut p).unwrap();
        // Tampered, in the clear, or under another key: dropped, and
        // neither heard nor latched.
        let mut tampered = p.clone();
        tampered[13] ^= 0x10;
        c.receive(&tampered, src, now);
        c.receive(&plain, src, now);
        let mut stranger = plain.clone();
        SrtpContext::new(suite, &MasterKey::random())
            .protect_rtp(&mut stranger)
            .unwrap();
        c.receive(&stranger, src, now);
        assert_eq!(counter(&c, |k| &k.dropped_unauthenticated), 3);
        assert_eq!((c.latched(), c.shared.take_digit_in("5")), (None, None));
        c.receive(&p, src, now);
        assert_eq!(c.latched(), Some(src));
        assert_eq!(c.shared.take_digit_in("5"), Some('5'));
        c.receive(&p, src, now);
        assert_eq!(counter(&c, |k| &k.dropped_replayed), 1);
        assert_eq!(counter(&c, |k| &k.digits_received), 1);
        // RTCP, multiplexed or on its port, must be authentic SRTCP.
        let rtcp = [0x80, 0xC8, 0, 1, 0, 0, 0x5E, 0xED];
        c.receive(&rtcp, src, now);
        c.receive_rtcp(&rtcp, now);
        assert_eq!(
            counter(&c, |k| &k.dropped_malformed),
            2,
            "too short for SRTCP"
        );
        let mut srtcp = rtcp.to_vec();
        phone_says.protect_rtcp(&mut srtcp).unwrap();
        c.receive_rtcp(&srtcp, now);
        c.receive_rtcp(&srtcp, now);
        assert_eq!(counter(&c, |k| &k.dropped_replayed), 2);
        assert_eq!(counter(&c, |k| &k.rtcp_received), 4);
    }
}
