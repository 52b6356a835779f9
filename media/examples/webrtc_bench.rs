//! Load tool for the WebRTC gateway benchmark (`bench/webrtc.sh`): N
//! bridged calls between a browser's leg and a G.711 phone's, held for a
//! while, against a load generator acting as the browsers and the phones;
//! and, as the baseline of the same run, the same N calls with both legs
//! plain G.711.
//!
//! ```text
//! webrtc_bench webrtc|webrtc-opus|opus|g711 --calls N [--warmup S] [--duration S] [--drain S]
//!                     [--ramp S] [--workers W] [--port-min P] [--port-max P] [--goal N]
//!                     [--loss-bound PCT] [--setup-timeout S] [--clip S] [--opus-fmtp F] [--label L]
//! ```
//!
//! One process per kind: the switch's media side on a tokio runtime of
//! `--workers` threads (named `wrtc-rt`), the generator on plain threads
//! (`gen-send`, `gen-recv`) with batched system calls (Linux only:
//! `sendmmsg`/`recvmmsg`) on one UDP socket on 127.0.0.1, and the main
//! thread, which opens the calls and drives the browsers' handshakes
//! before anything is measured.
//!
//! Call i is endpoint W, facing a browser (or a phone standing in for one),
//! bridged (`Endpoint::bridge`) to endpoint G, a phone's leg (PCMA,
//! payload type 8, telephone-event 101, plain RTP), both from one `Relay`
//! on loopback. The kinds differ in W only:
//!
//! - `webrtc`: what the switch does by default (`[media] browser_codec =
//!   "g711"`): W speaks the browser's PCMU (`Codec::Pcmu`, payload type 0,
//!   telephone-event 101) over `EndpointConfig::webrtc` with the switch's
//!   one `DtlsIdentity` and the browser's SDP (its ufrag, its
//!   certificate's fingerprint, the switch DTLS server): ICE-lite +
//!   DTLS-SRTP, and no Opus. The calls are opened evenly over `--ramp`
//!   seconds (their 20 ms ticks at random phases, as calls arriving). For
//!   each, the fake browser (a `WebRtcTransport` of its own in the client
//!   role, with one browser certificate for all) sends W a nominating ICE
//!   check (sent again every 500 ms until answered, as ICE does), then
//!   runs the DTLS handshake with W over the socket; once its keys are out
//!   it sends W an SRTP-protected packet every 20 ms, and a consent check
//!   (RFC 7675) every 5 s, and it unprotects and follows every packet of
//!   W. What it sends is a few seconds of a voice-like tone (gliding pitch
//!   with harmonics, tremolo, noise) encoded once before the run and
//!   replayed, each packet protected as it is sent: here in µ-law. The
//!   fake phone sends G an A-law packet of the same tone every 20 ms from
//!   the moment G is open, and follows G's packets.
//! - `webrtc-opus`: `browser_codec = "opus"`: the same browser path with
//!   W speaking Opus (`Codec::OPUS`, payload type 111, telephone-event
//!   110), an Opus transcode per call. The browser's Opus is encoded with
//!   `media::opus` as a browser would after our SDP (48 kHz in,
//!   `maxplaybackrate=8000`: narrowband, 16 kbit/s).
//! - `opus`: W an Opus endpoint on plain RTP (no ICE, DTLS or SRTP), the
//!   "browser" an Opus phone sending the same packets in the clear: what
//!   the transcoding costs without the WebRTC transport.
//! - `g711`: the baseline, W a plain PCMA endpoint (no WebRTC, no Opus):
//!   the "browser" is a second A-law phone.
//!
//! Nothing is measured until every call is up (or `--setup-timeout`
//! passed): then `--warmup`, then the window of `--duration` seconds.
//!
//! Measured, per direction: `p2b` (phone → G → bridge → W → browser: what
//! the browser hears, SRTP PCMU or Opus) and `b2p` (browser → W → bridge → G →
//! phone: what the phone hears, A-law):
//!
//! - loss: packets due by RTP timestamp (a stream of W or G that stalls
//!   over 60 ms skips frames and moves its timestamp on: counted lost)
//!   minus packets received in the window; a stream heard nothing of in
//!   the window counts every frame of it lost; `seq_lost` by sequence
//!   number (sent but not received);
//! - late frames: a packet more than 20 ms behind its slot on its stream's
//!   own 20 ms grid (placed by the stream's earliest packet in the
//!   window), by the kernel's arrival stamps (`SO_TIMESTAMPNS`), as in
//!   `ivr_bench`; jitter |gap − 20 ms| p99; packets that carry sound (Opus
//!   over 10 bytes, G.711 with a sample over 64): the bridge carries the
//!   tone both ways;
//! - SRTP at the browser: authentication failures, replays, packets of W
//!   before its keys reached the receiver; at W: `dropped_unauthenticated`
//!   and `dropped_replayed`;
//! - the endpoints' counters over the window (`Endpoint::stats()`): the
//!   bridge's underruns and drops per direction, jitter-buffer late drops,
//!   all other drops;
//! - the handshakes (the WebRTC kinds): per call, from its first ICE check to the
//!   browser holding its SRTP keys (and the ICE and DTLS parts of it),
//!   p50/p90/p99/max, the calls that did not come up, and how long the
//!   setup of all N took;
//! - CPU over the window: the whole process (`getrusage`), the media
//!   runtime's threads and the generator's (each thread's run time from
//!   `/proc/self/task/*/schedstat`), the rest of the machine (busy jiffies
//!   of `/proc/stat` less this process); and per call-second (ms of CPU a
//!   call costs per second held): the runtime's (the switch's cost, the
//!   generator's kept out) and the process's. The generator's own SRTP
//!   and packet work runs on its own threads and is reported apart; what
//!   it cannot keep out is the kernel's work for its sockets done on the
//!   runtime's threads (loopback delivers on the sender's CPU), and on 2
//!   cores its threads compete with the runtime for the same cores;
//! - how late a task on the media runtime woken every 5 ms wakes
//!   (`rt_lag_*`): whether the runtime was short of CPU.
//!
//! It prints one line of `key=value` pairs on stdout and a summary on
//! stderr. Exit status: 0; 1 on an error; 2 on bad usage; 3 when the check
//! fails: a `webrtc` run (the switch's default configuration; the other
//! kinds are not checked) at N ≥ `--goal` (200) with loss ≥
//! `--loss-bound` (0.1 %) in either direction or a call that did not come
//! up.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use std::{env, io, mem, process, thread};

use hdrhistogram::Histogram;
use media::codec::{Encoder as _, FRAME_DURATION, FRAME_SAMPLES};
use media::opus::{OpusConfig, OpusEncoder, OpusParams};
use media::srtp::{SrtpContext, SrtpError};
use media::stun::{Attribute, Class, Message, TransactionId};
use media::webrtc::{
    DtlsIdentity, DtlsRole, WebRtcConfig, WebRtcPeer, WebRtcTransport, parse_fingerprint,
};
use media::{Codec, Endpoint, EndpointConfig, EndpointStats, IceCredentials, Relay, RelayConfig};

#[path = "support/mod.rs"]
mod support;

use support::cpu::{CpuShare, Usage};
use support::net::{
    Datagram, RECV_BATCH, RecvSlot, SEND_CHUNK, generator_socket, localhost, recv_mmsg, send_all,
    set_timestamping, sleep_until,
};
use support::voice::voice;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Largest packet the generator sends (an A-law packet with an SRTP tag is
/// 188 bytes; a consent check about 100).
const SEND_MAX: usize = 256;
/// Largest datagram it reads whole: DTLS flights come in records of up to
/// the transport's 1,200-byte MTU.
const RECV_MAX: usize = 1500;
const OPUS_PT: u8 = 111;
/// The browser's telephone-event (Chrome's usual one beside Opus).
const OPUS_EVENT_PT: u8 = 110;
const PCMA_PT: u8 = 8;
/// The browser's PCMU (RFC 3551's static payload type), as the switch
/// answers it by default.
const PCMU_PT: u8 = 0;
/// telephone-event beside G.711 (the phone's, and the switch's toward a
/// browser speaking PCMU).
const G711_EVENT_PT: u8 = 101;
/// An Opus payload over this many bytes carries sound (libopus's silence
/// is a few bytes).
const OPUS_SILENCE_MAX: usize = 10;
/// A packet more than this behind its slot on its stream's grid is late.
const LATE_BOUND: Duration = FRAME_DURATION;
/// ICE retransmits an unanswered check (RFC 8445 §14.3 leaves the pacing
/// to the agent; browsers start near 250 ms and back off).
const CHECK_AGAIN: Duration = Duration::from_millis(500);
/// RFC 7675: a consent check every 5 s (browsers randomise 4-6 s).
const CONSENT_ROUNDS: u64 = 250;
/// How often the handshakes' timers (DTLS retransmissions) are looked at.
const SETUP_TICK: Duration = Duration::from_millis(5);

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let mut args = env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let Some(kind) = Kind::ALL.into_iter().find(|k| k.name() == mode) else {
        usage("the kind is webrtc, webrtc-opus, opus or g711")
    };
    let opts = match Opts::parse(args) {
        Ok(o) => o,
        Err(e) => usage(&e),
    };
    match run(kind, &opts) {
        Ok(true) => {}
        Ok(false) => process::exit(3),
        Err(e) => {
            eprintln!("webrtc_bench {mode}: {e}");
            process::exit(1);
        }
    }
}

fn usage(why: &str) -> ! {
    eprintln!("webrtc_bench: {why}");
    eprintln!("usage: webrtc_bench webrtc|webrtc-opus|opus|g711 --calls N [options]");
    eprintln!(
        "  --warmup S (5) --duration S (60) --drain S (1) --ramp S (2: the calls open evenly over it)\n  \
         --workers W (2) --port-min P (50000) --port-max P (55999) --goal N (200)\n  \
         --loss-bound PCT (0.1) --setup-timeout S (30) --clip S (3: the looped audio)\n  \
         --opus-fmtp F (none: the browser's a=fmtp as W takes it, e.g. \
         minptime=10;useinbandfec=1) --label L (the kind)"
    );
    process::exit(2);
}

/// What W is: its transport and the codec its far end (the browser, or a
/// phone standing in for one) speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// What the switch does by default (`[media] browser_codec = "g711"`):
    /// W a WebRTC endpoint speaking the browser's PCMU over ICE-lite +
    /// DTLS-SRTP; no transcoding against the A-law phone beyond G.711's.
    WebRtc,
    /// `browser_codec = "opus"`: W a WebRTC endpoint speaking Opus, an
    /// Opus transcode per call.
    WebRtcOpus,
    /// W an Opus endpoint on plain RTP: the transcoding without ICE,
    /// DTLS and SRTP.
    Opus,
    /// The baseline: W a plain PCMA endpoint.
    G711,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::WebRtc, Kind::WebRtcOpus, Kind::Opus, Kind::G711];

    fn name(self) -> &'static str {
        match self {
            Kind::WebRtc => "webrtc",
            Kind::WebRtcOpus => "webrtc-opus",
            Kind::Opus => "opus",
            Kind::G711 => "g711",
        }
    }

    /// W is a WebRTC endpoint (ICE-lite + DTLS-SRTP): its far end is a
    /// fake browser.
    fn webrtc(self) -> bool {
        matches!(self, Kind::WebRtc | Kind::WebRtcOpus)
    }

    /// The codec between W and its far end.
    fn browser(self) -> Leg {
        match self {
            Kind::WebRtc => Leg::Pcmu,
            Kind::WebRtcOpus | Kind::Opus => Leg::Opus,
            Kind::G711 => Leg::Pcma,
        }
    }

    /// The goal is checked on the switch's default configuration only.
    fn checked(self) -> bool {
        self == Kind::WebRtc
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::WebRtc => {
                "browser leg: ICE-lite + DTLS-SRTP, PCMU (the default browser_codec = \"g711\"); \
                 phone leg: A-law"
            }
            Kind::WebRtcOpus => {
                "browser leg: ICE-lite + DTLS-SRTP, Opus (browser_codec = \"opus\"); phone leg: A-law"
            }
            Kind::Opus => "an Opus phone's leg and an A-law one, plain RTP",
            Kind::G711 => "both legs A-law, plain RTP",
        }
    }

    /// Who is at W's far end.
    fn far_end(self) -> &'static str {
        match self {
            Kind::WebRtc | Kind::WebRtcOpus => "browser",
            Kind::Opus => "Opus phone",
            Kind::G711 => "second phone",
        }
    }
}

/// The codec of one fake party's stream: the phone's is always A-law, the
/// browser's (W's far end) depends on the kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Leg {
    Pcma = 0,
    Pcmu = 1,
    Opus = 2,
}

impl Leg {
    const ALL: [Leg; 3] = [Leg::Pcma, Leg::Pcmu, Leg::Opus];

    fn name(self) -> &'static str {
        match self {
            Leg::Pcma => "pcma",
            Leg::Pcmu => "pcmu",
            Leg::Opus => "opus",
        }
    }

    fn payload_type(self) -> u8 {
        match self {
            Leg::Pcma => PCMA_PT,
            Leg::Pcmu => PCMU_PT,
            Leg::Opus => OPUS_PT,
        }
    }

    fn telephone_event(self) -> u8 {
        match self {
            Leg::Pcma | Leg::Pcmu => G711_EVENT_PT,
            Leg::Opus => OPUS_EVENT_PT,
        }
    }

    /// RTP timestamp step per 20 ms packet.
    fn step(self) -> u32 {
        match self {
            Leg::Pcma | Leg::Pcmu => FRAME_SAMPLES as u32,
            Leg::Opus => 960,
        }
    }

    /// The G.711 decoding of a payload byte (None: Opus).
    fn law(self) -> Option<fn(u8) -> i16> {
        match self {
            Leg::Pcma => Some(media::g711::alaw_decode),
            Leg::Pcmu => Some(media::g711::ulaw_decode),
            Leg::Opus => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Leg::Pcma => "A-law",
            Leg::Pcmu => "PCMU",
            Leg::Opus => "Opus",
        }
    }
}

struct Opts {
    calls: usize,
    warmup: Duration,
    duration: Duration,
    drain: Duration,
    ramp: Duration,
    workers: usize,
    port_min: u16,
    port_max: u16,
    goal: usize,
    loss_bound: f64,
    setup_timeout: Duration,
    clip: Duration,
    opus_fmtp: String,
    label: Option<String>,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, String> {
        let mut o = Opts {
            calls: 0,
            warmup: Duration::from_secs(5),
            duration: Duration::from_secs(60),
            drain: Duration::from_secs(1),
            ramp: Duration::from_secs(2),
            workers: 2,
            port_min: 50000,
            port_max: 55999,
            goal: 200,
            loss_bound: 0.1,
            setup_timeout: Duration::from_secs(30),
            clip: Duration::from_secs(3),
            opus_fmtp: String::new(),
            label: None,
        };
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = || format!("bad value for {flag}: {value}");
            let secs = |v: &str| {
                v.parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
            };
            match flag.as_str() {
                "--calls" => o.calls = value.parse().map_err(|_| bad())?,
                "--warmup" => o.warmup = secs(&value).ok_or_else(bad)?,
                "--duration" => o.duration = secs(&value).ok_or_else(bad)?,
                "--drain" => o.drain = secs(&value).ok_or_else(bad)?,
                "--ramp" => o.ramp = secs(&value).ok_or_else(bad)?,
                "--workers" => o.workers = value.parse().map_err(|_| bad())?,
                "--port-min" => o.port_min = value.parse().map_err(|_| bad())?,
                "--port-max" => o.port_max = value.parse().map_err(|_| bad())?,
                "--goal" => o.goal = value.parse().map_err(|_| bad())?,
                "--loss-bound" => o.loss_bound = value.parse().map_err(|_| bad())?,
                "--setup-timeout" => o.setup_timeout = secs(&value).ok_or_else(bad)?,
                "--clip" => o.clip = secs(&value).ok_or_else(bad)?,
                "--opus-fmtp" => o.opus_fmtp = value.clone(),
                "--label" => o.label = Some(value.clone()),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if o.calls == 0 || o.workers == 0 || o.duration.is_zero() {
            return Err("--calls, --workers and --duration must be above 0".into());
        }
        if o.clip < FRAME_DURATION {
            return Err("--clip must be at least one frame (0.02 s)".into());
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- audio

/// `length` of [`voice`], one payload per 20 ms frame, encoded once.
/// Opus as a browser sends it after our SDP: 48 kHz in, the peer's
/// `maxplaybackrate=8000` capping it to narrowband (16 kbit/s); A-law and
/// µ-law by the codec's own encoder.
fn clip(leg: Leg, length: Duration) -> Result<Vec<Vec<u8>>, Error> {
    let frames = (length.as_secs_f64() / FRAME_DURATION.as_secs_f64()).round() as usize;
    let mut payloads = Vec::with_capacity(frames);
    if leg == Leg::Opus {
        let ours = OpusParams::from_fmtp(&media::opus::local_fmtp(8000));
        let mut encoder = OpusEncoder::new(OpusConfig::new(48000, ours))?;
        for frame in voice(48000, frames * 960).chunks_exact(960) {
            let mut p = Vec::new();
            encoder.encode(frame, &mut p)?;
            payloads.push(p);
        }
    } else {
        let codec = if leg == Leg::Pcmu {
            Codec::Pcmu
        } else {
            Codec::Pcma
        };
        let mut encoder = codec.encoder();
        for frame in voice(8000, frames * FRAME_SAMPLES).chunks_exact(FRAME_SAMPLES) {
            let mut p = Vec::with_capacity(FRAME_SAMPLES);
            encoder.encode(frame, &mut p)?;
            payloads.push(p);
        }
    }
    // Room for the header and the longest SRTP tag (16 bytes).
    if let Some(long) = payloads.iter().find(|p| p.len() + 12 + 16 > SEND_MAX) {
        return Err(format!("a payload of {} bytes does not fit", long.len()).into());
    }
    Ok(payloads)
}

// ---------------------------------------------------------------- the run

/// A call: W (the browser's leg, or a phone's standing in for one) bridged
/// to G (the phone's). Stream 2i of the generator is W's (what the
/// browser hears: direction p2b), 2i + 1 is G's (b2p).
struct Call {
    w: Endpoint,
    g: Endpoint,
    browser: Option<Browser>,
}

/// The fake browser of a WebRTC call, during its setup.
struct Browser {
    transport: WebRtcTransport,
    local: IceCredentials,
    /// W's ICE credentials (from its SDP).
    switch: IceCredentials,
    w: SocketAddr,
    check: Vec<u8>,
    started: Instant,
    last_check: Instant,
    ice_at: Option<Instant>,
    keyed: bool,
}

/// Directions: 0 `p2b` (out of W, heard by the browser), 1 `b2p` (out of
/// G, heard by the phone).
const DIRECTIONS: [&str; 2] = ["p2b", "b2p"];

fn run(kind: Kind, opts: &Opts) -> Result<bool, Error> {
    let label = opts.label.clone().unwrap_or_else(|| kind.name().into());
    let n = opts.calls;
    let range = usize::from(opts.port_max.saturating_sub(opts.port_min)) + 1;
    if 4 * n > range {
        return Err(format!(
            "{n} calls need {} ports, the range {}-{} has {range}",
            4 * n,
            opts.port_min,
            opts.port_max
        )
        .into());
    }
    let webrtc = kind.webrtc();
    // What W and its far end speak; the phone and G speak A-law.
    let leg = kind.browser();
    // Indexed by `Leg`.
    let clips = Leg::ALL
        .into_iter()
        .map(|l| clip(l, opts.clip))
        .collect::<Result<Vec<_>, _>>()?;
    let (switch_id, browser_id) = (
        Arc::new(DtlsIdentity::generate()?),
        Arc::new(DtlsIdentity::generate()?),
    );
    let fingerprint = |id: &DtlsIdentity| {
        parse_fingerprint(&format!("sha-256 {}", id.fingerprint()))
            .ok_or("our own fingerprint does not parse")
    };
    let (switch_fp, browser_fp) = (fingerprint(&switch_id)?, fingerprint(&browser_id)?);
    let w_codec = match leg {
        Leg::Pcma => Codec::Pcma,
        Leg::Pcmu => Codec::Pcmu,
        Leg::Opus if opts.opus_fmtp.is_empty() => Codec::OPUS,
        Leg::Opus => Codec::OPUS.with_fmtp(&opts.opus_fmtp),
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.workers)
        .thread_name("wrtc-rt")
        .enable_all()
        .build()?;
    let _entered = rt.enter();
    let relay = Relay::new(RelayConfig {
        bind: LOCALHOST,
        port_min: opts.port_min,
        port_max: opts.port_max,
        kernel_forwarding: false,
    });

    // The generator's one socket: every browser and every phone. The
    // receiver tells them apart by the endpoint a packet comes from.
    let socket = generator_socket("webrtc_bench", RCVBUF)?;
    set_timestamping(&socket)?;
    let here = socket.local_addr()?;

    // Source port → stream + 1 (0: none), filled in as calls open.
    let by_port: Arc<Vec<AtomicU32>> =
        Arc::new((0..=u16::MAX).map(|_| AtomicU32::new(0)).collect());
    let base = Instant::now();
    let (window_tx, window_rx) = mpsc::channel::<(u64, u64)>();
    // STUN and DTLS from W, for the handshakes (main thread).
    let (control_tx, control_rx) = mpsc::channel::<(usize, Vec<u8>)>();
    // The browsers' keys: incoming to the receiver, outgoing to the sender.
    let (keys_tx, keys_rx) = mpsc::channel::<(usize, SrtpContext)>();
    let (activate_tx, activate_rx) = mpsc::channel::<Activate>();
    // When the sender stops (ns from `base`; u64::MAX: not known yet).
    let stop = Arc::new(AtomicU64::new(u64::MAX));

    let receiver = {
        let tracks = (0..2 * n)
            .map(|j| {
                let w_stream = j.is_multiple_of(2);
                let l = if w_stream { leg } else { Leg::Pcma };
                Track {
                    dir: j % 2,
                    step: l.step(),
                    law: l.law(),
                    webrtc: webrtc && w_stream,
                    ..Track::default()
                }
            })
            .collect();
        let socket = socket.try_clone()?;
        let by_port = by_port.clone();
        let drain = opts.drain;
        thread::Builder::new()
            .name("gen-recv".into())
            .spawn(move || {
                receive(
                    socket, tracks, by_port, base, window_rx, keys_rx, control_tx, drain,
                )
            })?
    };
    let sender = {
        let socket = socket.try_clone()?;
        let stop = stop.clone();
        thread::Builder::new()
            .name("gen-send".into())
            .spawn(move || send(socket, 2 * n, clips, base, activate_rx, stop))?
    };

    // Opening the calls and, for WebRTC, their handshakes.
    let mut calls: Vec<Call> = Vec::with_capacity(n);
    let mut handshake = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut ice = handshake.clone();
    let mut dtls = handshake.clone();
    let mut keyed = 0usize;
    // The profile the handshakes chose (the first one's).
    let mut suite = None;
    let mut failed = 0usize;
    let setup_start = Instant::now();
    let give_up = setup_start + opts.ramp + opts.setup_timeout;
    let mut last_timers = setup_start;
    let mut setup_end = None;
    while setup_end.is_none() {
        let now = Instant::now();
        // The calls whose time on the ramp has come.
        while calls.len() < n
            && setup_start + opts.ramp.mul_f64(calls.len() as f64 / n as f64) <= now
        {
            let i = calls.len();
            let call = open_call(
                i,
                kind,
                &relay,
                &rt,
                here,
                w_codec,
                &switch_id,
                &browser_id,
                &switch_fp,
                &browser_fp,
            )?;
            by_port[usize::from(call.w.local_port())].store(2 * i as u32 + 1, Ordering::Relaxed);
            by_port[usize::from(call.g.local_port())].store(2 * i as u32 + 2, Ordering::Relaxed);
            activate_tx.send(Activate {
                flow: 2 * i + 1,
                port: call.g.local_port(),
                leg: Leg::Pcma,
                srtp: None,
                consent: None,
            })?;
            match &call.browser {
                Some(b) => {
                    socket.send_to(&b.check, b.w)?;
                }
                None => activate_tx.send(Activate {
                    flow: 2 * i,
                    port: call.w.local_port(),
                    leg,
                    srtp: None,
                    consent: None,
                })?,
            }
            calls.push(call);
        }
        // What W said.
        let next_open = (calls.len() < n)
            .then(|| setup_start + opts.ramp.mul_f64(calls.len() as f64 / n as f64));
        let wait = next_open
            .map_or(SETUP_TICK, |t| t.saturating_duration_since(now))
            .min(SETUP_TICK);
        let mut heard = control_rx.recv_timeout(wait).ok();
        while let Some((i, datagram)) = heard {
            let now = Instant::now();
            if let Some(b) = calls.get_mut(i).and_then(|c| c.browser.as_mut()) {
                b.hear(&datagram, now, &socket)?;
            }
            heard = control_rx.try_recv().ok();
        }
        // Timers, and keys.
        let now = Instant::now();
        let timers = now.duration_since(last_timers) >= SETUP_TICK;
        if timers {
            last_timers = now;
        }
        for (i, call) in calls.iter_mut().enumerate() {
            let Some(b) = call.browser.as_mut().filter(|b| !b.keyed) else {
                continue;
            };
            if b.transport.is_failed() {
                continue;
            }
            if timers {
                b.timers(now, &socket)?;
            }
            if let Some(keys) = b.transport.take_keys() {
                b.keyed = true;
                keyed += 1;
                suite.get_or_insert(keys.suite);
                let took = |t: Duration| t.as_micros().max(1) as u64;
                handshake.saturating_record(took(now.duration_since(b.started)));
                if let Some(at) = b.ice_at {
                    ice.saturating_record(took(at.duration_since(b.started)));
                    dtls.saturating_record(took(now.duration_since(at)));
                }
                keys_tx.send((2 * i, SrtpContext::try_new(keys.suite, &keys.incoming)?))?;
                activate_tx.send(Activate {
                    flow: 2 * i,
                    port: call.w.local_port(),
                    leg,
                    srtp: Some(SrtpContext::try_new(keys.suite, &keys.outgoing)?),
                    consent: Some(b.consent_check()?),
                })?;
            }
        }
        let now = Instant::now();
        let done = calls.len() == n
            && calls.iter().all(|c| {
                c.browser
                    .as_ref()
                    .is_none_or(|b| b.keyed || b.transport.is_failed())
            });
        if done || now >= give_up {
            setup_end = Some(now);
        }
    }
    let setup_took = setup_end.unwrap_or(setup_start).duration_since(setup_start);
    if webrtc {
        failed = calls
            .iter()
            .filter(|c| c.browser.as_ref().is_some_and(|b| !b.keyed))
            .count();
    }
    let setup_failed_dtls = calls
        .iter()
        .filter(|c| c.browser.as_ref().is_some_and(|b| b.transport.is_failed()))
        .count();
    // No more handshakes: later STUN (consent answers) is counted, not read.
    drop(control_rx);
    for c in &mut calls {
        c.browser = None;
    }

    let start = Instant::now() + opts.warmup;
    let window = (start, start + opts.duration);
    let nanos = |t: Instant| t.duration_since(base).as_nanos() as u64;
    window_tx.send((nanos(window.0), nanos(window.1)))?;
    stop.store(nanos(window.1 + OVERRUN), Ordering::Relaxed);
    let probe = rt.spawn(runtime_probe(window));

    sleep_until(window.0);
    let before = Usage::sample("wrtc-rt");
    let stats_before = endpoint_counters(&calls);
    sleep_until(window.1);
    let after = Usage::sample("wrtc-rt");
    let stats_after = endpoint_counters(&calls);

    let sent = sender.join().map_err(|_| "sender panicked")??;
    let got = receiver.join().map_err(|_| "receiver panicked")??;
    let rt_lag = rt.block_on(probe)??;
    drop(calls);
    drop(relay);
    drop(_entered);
    drop(rt);

    let report = Report {
        label,
        kind,
        n,
        opts,
        sent,
        got,
        cpu: after.minus(&before),
        stats: stats_after.minus(&stats_before),
        handshake,
        ice,
        dtls,
        keyed,
        suite,
        failed,
        failed_dtls: setup_failed_dtls,
        setup_took,
        rt_lag,
    };
    Ok(report.print())
}

/// Opens call `i`: W (speaking `w_codec`, a WebRTC endpoint in the
/// WebRTC kinds) and G on the relay, bridged; for WebRTC, the fake browser
/// with its first check ready.
#[allow(clippy::too_many_arguments)]
fn open_call(
    i: usize,
    kind: Kind,
    relay: &Relay,
    rt: &tokio::runtime::Runtime,
    here: SocketAddr,
    w_codec: Codec,
    switch_id: &Arc<DtlsIdentity>,
    browser_id: &Arc<DtlsIdentity>,
    switch_fp: &[u8],
    browser_fp: &[u8],
) -> Result<Call, Error> {
    let phone = EndpointConfig {
        codec: Codec::Pcma,
        payload_type: PCMA_PT,
        telephone_event: Some(G711_EVENT_PT),
        remote: here,
        srtp: None,
        webrtc: None,
    };
    let g = relay.open_endpoint(phone.clone())?;
    let leg = kind.browser();
    let w_config = EndpointConfig {
        codec: w_codec,
        payload_type: leg.payload_type(),
        telephone_event: Some(leg.telephone_event()),
        ..phone
    };
    if !kind.webrtc() {
        let w = relay.open_endpoint(w_config)?;
        rt.block_on(w.bridge(&g))?;
        return Ok(Call {
            w,
            g,
            browser: None,
        });
    }
    // The browser's offer gave its ufrag and fingerprint; the switch
    // answers a=setup:passive (DTLS server).
    let browser_config = WebRtcConfig::new(browser_id.clone(), None);
    let switch_config = WebRtcConfig::new(
        switch_id.clone(),
        Some(WebRtcPeer {
            ice_ufrag: browser_config.local.ufrag.clone(),
            fingerprint: browser_fp.to_vec(),
            role: DtlsRole::Server,
        }),
    );
    let w = relay.open_endpoint(EndpointConfig {
        webrtc: Some(switch_config.clone()),
        ..w_config
    })?;
    let mut transport = WebRtcTransport::new(&browser_config);
    transport.set_peer(
        WebRtcPeer {
            ice_ufrag: switch_config.local.ufrag.clone(),
            fingerprint: switch_fp.to_vec(),
            role: DtlsRole::Client,
        },
        Instant::now(),
    );
    let switch = switch_config.local.clone();
    let local = browser_config.local.clone();
    let check = ice_check(&switch, &local, true, i as u64)?;
    let now = Instant::now();
    let browser = Browser {
        transport,
        local,
        switch,
        w: w.local_addr(),
        check,
        started: now,
        last_check: now,
        ice_at: None,
        keyed: false,
    };
    rt.block_on(w.bridge(&g))?;
    Ok(Call {
        w,
        g,
        browser: Some(browser),
    })
}

/// A browser's connectivity check to W: USERNAME `W's ufrag:ours`, under
/// W's password; nominating (USE-CANDIDATE) or a consent check.
fn ice_check(
    to: &IceCredentials,
    from: &IceCredentials,
    nominate: bool,
    tiebreaker: u64,
) -> Result<Vec<u8>, Error> {
    let mut m = Message::binding_request(TransactionId(rand::random()))
        .with(Attribute::Username(format!("{}:{}", to.ufrag, from.ufrag)))
        .with(Attribute::Priority(0x6E00_01FF))
        .with(Attribute::IceControlling(tiebreaker));
    if nominate {
        m = m.with(Attribute::UseCandidate);
    }
    Ok(m.encode(Some(to.pwd.as_bytes()), true)?)
}

impl Browser {
    /// A datagram from W: its answer to our check (ICE is up: DTLS
    /// starts), or a DTLS record.
    fn hear(&mut self, datagram: &[u8], now: Instant, socket: &StdUdpSocket) -> Result<(), Error> {
        if datagram.first().is_some_and(|&b| b < 4) {
            let answered = Message::decode(datagram).is_ok_and(|m| m.class == Class::Success);
            if answered && self.ice_at.is_none() {
                self.ice_at = Some(now);
                // The pair ICE chose, as the browser's transport learns it
                // (it takes DTLS only from a checked source): W's check of
                // us, which a lite agent never sends, stands in for it.
                let reverse = Message::binding_request(TransactionId(rand::random()))
                    .with(Attribute::Username(format!("{}:x", self.local.ufrag)))
                    .encode(Some(self.local.pwd.as_bytes()), true)?;
                self.transport.receive(&reverse, self.w, now);
                while self.transport.poll_transmit().is_some() {}
                // The ClientHello.
                self.transport.handle_timeout(now);
            }
        } else {
            self.transport.receive(datagram, self.w, now);
        }
        self.flush(socket)
    }

    fn timers(&mut self, now: Instant, socket: &StdUdpSocket) -> Result<(), Error> {
        if self.ice_at.is_none() {
            if now.duration_since(self.last_check) >= CHECK_AGAIN {
                self.last_check = now;
                socket.send_to(&self.check, self.w)?;
            }
            return Ok(());
        }
        self.transport.handle_timeout(now);
        self.flush(socket)
    }

    fn flush(&mut self, socket: &StdUdpSocket) -> Result<(), Error> {
        while let Some((datagram, to)) = self.transport.poll_transmit() {
            socket.send_to(&datagram, to)?;
        }
        Ok(())
    }

    fn consent_check(&self) -> Result<Vec<u8>, Error> {
        ice_check(&self.switch, &self.local, false, 1)
    }
}

/// The endpoints' counters that matter here, summed, per direction where
/// they belong to one.
#[derive(Default, Clone, Copy)]
struct Counters {
    /// Per direction (0 p2b: W sends, G hears; 1 b2p: G sends, W hears):
    /// the sending endpoint's bridge underruns and drops, the hearing
    /// endpoint's jitter-buffer late drops and all its other drops.
    underruns: [u64; 2],
    bridge_dropped: [u64; 2],
    jb_late: [u64; 2],
    jb_overflow: [u64; 2],
    dropped_other: [u64; 2],
    /// At W: SRTP from the browser that did not authenticate, or replayed.
    unauthenticated: u64,
    replayed: u64,
    /// Per direction: datagrams the hearing endpoint took in on its port
    /// (consent checks included), packets the sending one sent.
    received: [u64; 2],
    sent: [u64; 2],
}

fn endpoint_counters(calls: &[Call]) -> Counters {
    let mut c = Counters::default();
    let other = |s: &EndpointStats| {
        s.dropped_malformed
            + s.dropped_wrong_payload_type
            + s.dropped_wrong_ssrc
            + s.dropped_duplicate
    };
    for call in calls {
        let (w, g) = (call.w.stats(), call.g.stats());
        // p2b: G hears the phone, W sends to the browser.
        c.underruns[0] += w.bridge_underruns;
        c.bridge_dropped[0] += w.bridge_dropped;
        c.jb_late[0] += g.dropped_late;
        c.jb_overflow[0] += g.dropped_overflow;
        c.dropped_other[0] += other(&g);
        c.received[0] += g.packets_received;
        c.sent[0] += w.packets_sent;
        // b2p: W hears the browser, G sends to the phone.
        c.underruns[1] += g.bridge_underruns;
        c.bridge_dropped[1] += g.bridge_dropped;
        c.jb_late[1] += w.dropped_late;
        c.jb_overflow[1] += w.dropped_overflow;
        c.dropped_other[1] += other(&w);
        c.received[1] += w.packets_received;
        c.sent[1] += g.packets_sent;
        c.unauthenticated += w.dropped_unauthenticated;
        c.replayed += w.dropped_replayed;
    }
    c
}

impl Counters {
    fn minus(&self, before: &Counters) -> Counters {
        let d2 = |a: [u64; 2], b: [u64; 2]| [a[0].saturating_sub(b[0]), a[1].saturating_sub(b[1])];
        Counters {
            underruns: d2(self.underruns, before.underruns),
            bridge_dropped: d2(self.bridge_dropped, before.bridge_dropped),
            jb_late: d2(self.jb_late, before.jb_late),
            jb_overflow: d2(self.jb_overflow, before.jb_overflow),
            dropped_other: d2(self.dropped_other, before.dropped_other),
            unauthenticated: self.unauthenticated.saturating_sub(before.unauthenticated),
            replayed: self.replayed.saturating_sub(before.replayed),
            received: d2(self.received, before.received),
            sent: d2(self.sent, before.sent),
        }
    }
}

// ---------------------------------------------------------------- report

struct Report<'a> {
    label: String,
    kind: Kind,
    n: usize,
    opts: &'a Opts,
    sent: Sent,
    got: Received,
    cpu: CpuShare,
    /// The endpoints' counters over the window.
    stats: Counters,
    /// µs per call: first check to keys; its ICE and DTLS parts.
    handshake: Histogram<u64>,
    ice: Histogram<u64>,
    dtls: Histogram<u64>,
    keyed: usize,
    suite: Option<media::srtp::Suite>,
    failed: usize,
    failed_dtls: usize,
    setup_took: Duration,
    rt_lag: Histogram<u64>,
}

/// One direction's streams over the window.
struct Tally {
    due: u64,
    received: u64,
    seq_due: u64,
    late: u64,
    audible: u64,
    silent: usize,
    worst_loss: f64,
}

impl Tally {
    fn of(got: &Received, dir: usize, frames: f64) -> Tally {
        let mut t = Tally {
            due: 0,
            received: 0,
            seq_due: 0,
            late: 0,
            audible: 0,
            silent: 0,
            worst_loss: 0.0,
        };
        for s in got.tracks.iter().filter(|s| s.dir == dir) {
            let d = if s.in_window == 0 {
                t.silent += 1;
                frames.round() as u64
            } else {
                s.ts_span / u64::from(s.step) + 1
            };
            t.due += d.max(s.in_window);
            t.seq_due += if s.in_window == 0 {
                d
            } else {
                (s.seq_span + 1).max(s.in_window)
            };
            t.received += s.in_window;
            t.late += s.late;
            t.audible += s.audible;
            let loss = 100.0 * d.saturating_sub(s.in_window) as f64 / d.max(1) as f64;
            t.worst_loss = t.worst_loss.max(loss);
        }
        t
    }

    fn lost(&self) -> u64 {
        self.due.saturating_sub(self.received)
    }

    fn loss_pct(&self) -> f64 {
        100.0 * self.lost() as f64 / self.due.max(1) as f64
    }

    fn late_pct(&self) -> f64 {
        100.0 * self.late as f64 / self.due.max(1) as f64
    }

    fn audible_pct(&self) -> f64 {
        100.0 * self.audible as f64 / self.received.max(1) as f64
    }
}

impl Report<'_> {
    /// Prints the line and the summary; whether the check passes.
    fn print(&self) -> bool {
        let secs = self.opts.duration.as_secs_f64();
        let frames = secs / FRAME_DURATION.as_secs_f64();
        let g = &self.got;
        let dirs: Vec<Tally> = (0..2).map(|d| Tally::of(g, d, frames)).collect();
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
        let call_secs = self.n as f64 * secs;
        // ms of CPU per call and second held.
        let per_call = |pct: f64| pct / 100.0 * secs * 1e3 / call_secs.max(1e-9);
        let rt_per_call = per_call(self.cpu.rt_pct);
        let proc_per_call = per_call(self.cpu.process_pct);
        let gen_pct = self.cpu.send_pct + self.cpu.recv_pct;
        let webrtc = self.kind.webrtc();
        let worst_loss = dirs.iter().map(Tally::loss_pct).fold(0.0, f64::max);
        let loss_ok = worst_loss < self.opts.loss_bound;
        let holds = loss_ok && self.failed == 0;
        let checked = self.kind.checked() && self.n >= self.opts.goal;
        let s = &self.stats;
        let mut line = format!(
            "label={} kind={} transport={} browser_codec={} calls={} workers={} duration_s={} warmup_s={} ramp_s={} \
             keyed={} setup_failed={} setup_failed_dtls={} setup_s={:.2} \
             handshake_p50_ms={:.1} handshake_p90_ms={:.1} handshake_p99_ms={:.1} \
             handshake_max_ms={:.1} ice_p50_ms={:.1} ice_p99_ms={:.1} dtls_p50_ms={:.1} \
             dtls_p99_ms={:.1}",
            self.label,
            self.kind.name(),
            if webrtc { "webrtc" } else { "rtp" },
            self.kind.browser().name(),
            self.n,
            self.opts.workers,
            secs,
            self.opts.warmup.as_secs_f64(),
            self.opts.ramp.as_secs_f64(),
            self.keyed,
            self.failed,
            self.failed_dtls,
            self.setup_took.as_secs_f64(),
            ms(&self.handshake, 0.5),
            ms(&self.handshake, 0.9),
            ms(&self.handshake, 0.99),
            self.handshake.max() as f64 / 1e3,
            ms(&self.ice, 0.5),
            ms(&self.ice, 0.99),
            ms(&self.dtls, 0.5),
            ms(&self.dtls, 0.99),
        );
        for (d, t) in dirs.iter().enumerate() {
            let name = DIRECTIONS[d];
            let h = &g.dirs[d];
            line.push_str(&format!(
                " {name}_received={} {name}_due={} {name}_lost={} {name}_loss_pct={:.4} \
                 {name}_seq_lost={} {name}_worst_stream_loss_pct={:.2} {name}_silent_streams={} \
                 {name}_late={} {name}_late_pct={:.4} {name}_lateness_p99_ms={:.2} \
                 {name}_jitter_p99_ms={:.2} {name}_jitter_max_ms={:.1} {name}_audible_pct={:.1} \
                 {name}_bridge_underruns={} {name}_bridge_dropped={} {name}_jb_late={} \
                 {name}_jb_overflow={} {name}_dropped_other={} {name}_endpoint_sent={} {name}_endpoint_heard={}",
                t.received,
                t.due,
                t.lost(),
                t.loss_pct(),
                t.seq_due.saturating_sub(t.received),
                t.worst_loss,
                t.silent,
                t.late,
                t.late_pct(),
                h.lateness.value_at_quantile(0.99) as f64 / 1e6,
                h.jitter.value_at_quantile(0.99) as f64 / 1e6,
                h.jitter.max() as f64 / 1e6,
                t.audible_pct(),
                s.underruns[d],
                s.bridge_dropped[d],
                s.jb_late[d],
                s.jb_overflow[d],
                s.dropped_other[d],
                s.sent[d],
                s.received[d],
            ));
        }
        line.push_str(&format!(
            " srtp_suite={} srtp_auth_failed={} srtp_replayed={} srtp_other={} before_keys={} \
             w_unauthenticated={} w_replayed={} consent_sent={} control_after_setup={} \
             stray={} unstamped={} gen_sent={} gen_late_sends={} gen_lag_p99_ms={:.2} \
             gen_lag_max_ms={:.1} gen_errors={} \
             process_cpu={:.1} rt_cpu={:.1} send_cpu={:.1} recv_cpu={:.1} gen_cpu={:.1} \
             main_cpu={:.1} other_cpu={:.1} steal_cpu={:.1} rt_ms_per_call_s={:.3} \
             process_ms_per_call_s={:.3} gen_ms_per_call_s={:.3} rt_lag_p99_ms={:.1} \
             rt_lag_max_ms={:.1} rcvbuf_errors={} worst_loss_pct={:.4} goal={} loss_bound_pct={} \
             checked={} holds={}",
            self.suite.map_or("none", |s| s.name()),
            g.auth_failed,
            g.replayed,
            g.srtp_other,
            g.before_keys,
            s.unauthenticated,
            s.replayed,
            self.sent.consent,
            g.control_after_setup,
            g.stray,
            g.unstamped,
            self.sent.total,
            self.sent.late,
            self.sent.lag.value_at_quantile(0.99) as f64 / 1e6,
            self.sent.lag.max() as f64 / 1e6,
            self.sent.errors,
            self.cpu.process_pct,
            self.cpu.rt_pct,
            self.cpu.send_pct,
            self.cpu.recv_pct,
            gen_pct,
            self.cpu.main_pct,
            self.cpu.other_pct,
            self.cpu.steal_pct,
            rt_per_call,
            proc_per_call,
            per_call(gen_pct),
            self.rt_lag.value_at_quantile(0.99) as f64 / 1e6,
            self.rt_lag.max() as f64 / 1e6,
            self.cpu.rcvbuf_errors,
            worst_loss,
            self.opts.goal,
            self.opts.loss_bound,
            if checked { "yes" } else { "no" },
            if holds { "yes" } else { "no" },
        ));
        println!("{line}");

        let mut summary = format!(
            "{} x {} calls ({}, {} workers, {:.0} s held after {:.0} s warm-up):",
            self.n,
            self.label,
            self.kind.describe(),
            self.opts.workers,
            secs,
            self.opts.warmup.as_secs_f64()
        );
        if webrtc {
            summary.push_str(&format!(
                "\n  setup: {} of {} calls keyed in {:.2} s (opened over {:.1} s; {} did not come \
                 up, {} of them DTLS failures); handshake (first ICE check to the browser's SRTP \
                 keys) p50 {:.1} ms, p90 {:.1}, p99 {:.1}, max {:.1}; ICE p50 {:.1} ms, DTLS p50 \
                 {:.1} ms (p99 {:.1})",
                self.keyed,
                self.n,
                self.setup_took.as_secs_f64(),
                self.opts.ramp.as_secs_f64(),
                self.failed,
                self.failed_dtls,
                ms(&self.handshake, 0.5),
                ms(&self.handshake, 0.9),
                ms(&self.handshake, 0.99),
                self.handshake.max() as f64 / 1e3,
                ms(&self.ice, 0.5),
                ms(&self.dtls, 0.5),
                ms(&self.dtls, 0.99),
            ));
        }
        for (d, t) in dirs.iter().enumerate() {
            let h = &g.dirs[d];
            let far = self.kind.far_end();
            let what = if d == 0 {
                format!(
                    "{far} hears (phone -> G -> W, {}{})",
                    if webrtc { "SRTP " } else { "" },
                    self.kind.browser().describe()
                )
            } else {
                format!("phone hears ({far} -> W -> G, A-law)")
            };
            summary.push_str(&format!(
                "\n  {what}: {} of {} due, loss {:.3} % ({} by sequence, worst stream {:.2} %, \
                 {} silent), late {:.3} % (lateness p99 {:.1} ms), jitter p99 {:.2} ms, \
                 {:.0} % with sound; bridge underruns {} and drops {}, jitter-buffer late {} and \
                 overflow {}, other drops {}",
                t.received,
                t.due,
                t.loss_pct(),
                t.seq_due.saturating_sub(t.received),
                t.worst_loss,
                t.silent,
                t.late_pct(),
                h.lateness.value_at_quantile(0.99) as f64 / 1e6,
                h.jitter.value_at_quantile(0.99) as f64 / 1e6,
                t.audible_pct(),
                s.underruns[d],
                s.bridge_dropped[d],
                s.jb_late[d],
                s.jb_overflow[d],
                s.dropped_other[d],
            ));
        }
        if webrtc {
            summary.push_str(&format!(
                "\n  SRTP ({}): the browsers' authentication failures {}, replays {}, other {} ({} of W's \
                 packets before their keys, during setup); W refused {} unauthenticated and {} \
                 replayed; {} consent checks sent, {} STUN/DTLS datagrams after setup",
                self.suite.map_or("none", |s| s.name()),
                g.auth_failed,
                g.replayed,
                g.srtp_other,
                g.before_keys,
                s.unauthenticated,
                s.replayed,
                self.sent.consent,
                g.control_after_setup,
            ));
        }
        summary.push_str(&format!(
            "\n  CPU (% of one core): process {:.0} (media runtime {:.0}, generator {:.0}: send \
             {:.0}, receive {:.0}; other threads {:.0}), rest of the machine {:.0} (stolen {:.0}); \
             per call and second held: runtime {:.2} ms, process {:.2} ms, generator {:.2} ms; \
             runtime task wake-ups late p99 {:.1} ms, max {:.1}; generator sends late (> 2 ms) {} \
             of {}, p99 {:.2} ms; UDP receive-buffer drops {}",
            self.cpu.process_pct,
            self.cpu.rt_pct,
            gen_pct,
            self.cpu.send_pct,
            self.cpu.recv_pct,
            self.cpu.main_pct,
            self.cpu.other_pct,
            self.cpu.steal_pct,
            rt_per_call,
            proc_per_call,
            per_call(gen_pct),
            self.rt_lag.value_at_quantile(0.99) as f64 / 1e6,
            self.rt_lag.max() as f64 / 1e6,
            self.sent.late,
            self.sent.total,
            self.sent.lag.value_at_quantile(0.99) as f64 / 1e6,
            self.cpu.rcvbuf_errors,
        ));
        summary.push_str(&format!(
            "\n  {}: worst direction loss {:.3} % (bound {} %){}",
            if holds { "holds" } else { "does not hold" },
            worst_loss,
            self.opts.loss_bound,
            if checked {
                format!(
                    "; the check (N >= {}) {}",
                    self.opts.goal,
                    if holds { "passes" } else { "FAILS" }
                )
            } else {
                String::new()
            }
        ));
        eprintln!("{summary}");
        !checked || holds
    }
}

/// How often the probe wakes.
const PROBE_EVERY: Duration = Duration::from_millis(5);

/// A task on the media runtime, woken every 5 ms by a tokio timer: how late
/// each wake-up is, over the window (tokio's timer has a 1 ms grain).
async fn runtime_probe(window: (Instant, Instant)) -> Result<Histogram<u64>, Error> {
    let mut lag = Histogram::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut ticks = tokio::time::interval_at(window.0.into(), PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = ticks.tick().await.into_std();
        let now = Instant::now();
        if now >= window.1 {
            return Ok(lag);
        }
        lag.saturating_record(now.saturating_duration_since(deadline).as_nanos().max(1) as u64);
    }
}

// ---------------------------------------------------------------- generator

/// The sender wakes at the next packet's slot, or this long after the last
/// wake-up if that is later.
const TICK: Duration = Duration::from_micros(250);
/// How often a receiver with nothing to read checks whether it is done.
const RECV_TIMEOUT: Duration = Duration::from_millis(50);
/// The generator runs on this long past the window, so that its threads are
/// alive when their CPU time is read at the window's end.
const OVERRUN: Duration = Duration::from_millis(200);
/// Receive buffer of the generator's socket (the kernel counts ~1 KiB per
/// queued packet: some 3 s of 400 streams).
const RCVBUF: usize = 64 << 20;

/// A flow starts: where to, and (a browser's) its SRTP context and consent
/// check.
struct Activate {
    flow: usize,
    port: u16,
    /// What it sends.
    leg: Leg,
    srtp: Option<SrtpContext>,
    consent: Option<Vec<u8>>,
}

/// One fake browser's or phone's stream to its endpoint.
struct Flow {
    to: libc::sockaddr_in,
    /// The 20 ms round it started at.
    round0: u64,
    ssrc: u32,
    seq0: u16,
    ts0: u32,
    leg: Leg,
    srtp: Option<SrtpContext>,
    consent: Option<Vec<u8>>,
}

struct Sent {
    /// Datagrams sent (media and consent checks), in the run.
    total: u64,
    consent: u64,
    /// Packets sent more than 2 ms after their slot.
    late: u64,
    errors: u64,
    /// How late after its slot each packet left, ns.
    lag: Histogram<u64>,
}

/// RTP header: version 2, no marker.
fn write_header(p: &mut [u8], pt: u8, seq: u16, ts: u32, ssrc: u32) {
    p[0] = 0x80;
    p[1] = pt & 0x7F;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Paces every active flow at one packet per 20 ms, flow j at offset j/F
/// of the period (F flows), by deadlines from one start (no drift: a late
/// wake-up sends what came due meanwhile): packets in `sendmmsg` calls of
/// up to `SEND_CHUNK`. Flow 2i is call i's browser (the kind's codec,
/// SRTP-protected in the WebRTC kinds), 2i + 1 its phone (A-law); each
/// replays `clips[leg]`. Flows start when told (`activate`) and run until
/// `stop`.
fn send(
    socket: StdUdpSocket,
    flows_n: usize,
    clips: Vec<Vec<Vec<u8>>>,
    base: Instant,
    activate: mpsc::Receiver<Activate>,
    stop: Arc<AtomicU64>,
) -> Result<Sent, Error> {
    let nanos = |t: Instant| t.duration_since(base).as_nanos() as u64;
    let start_ns = nanos(Instant::now());
    let n = flows_n as u64;
    let period = FRAME_DURATION.as_nanos() as u64;
    let due = |k: u64| start_ns + period * (k / n) + period * (k % n) / n;
    let mut flows: Vec<Option<Flow>> = (0..flows_n).map(|_| None).collect();
    let mut packets = [[0u8; SEND_MAX]; SEND_CHUNK];
    let mut lens = [0usize; SEND_CHUNK];
    let mut dest = [localhost(0); SEND_CHUNK];
    let mut slots = [0u64; SEND_CHUNK];
    let mut queued = 0;
    let mut scratch = Vec::with_capacity(SEND_MAX);
    let mut sent = Sent {
        total: 0,
        consent: 0,
        late: 0,
        errors: 0,
        lag: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
    };
    let flush = |packets: &mut [[u8; SEND_MAX]],
                 lens: &[usize],
                 dest: &[libc::sockaddr_in],
                 slots: &[u64],
                 sent: &mut Sent| {
        let now = nanos(Instant::now());
        for &slot in slots {
            sent.lag.saturating_record(now.saturating_sub(slot).max(1));
        }
        sent.late += slots.iter().filter(|&&s| now > s + 2_000_000).count() as u64;
        let (total, errors) = send_all(&socket, packets, lens, dest);
        sent.total += total as u64;
        sent.errors += errors as u64;
    };
    let mut k = 0u64;
    loop {
        for a in activate.try_iter() {
            let round = k / n + 1;
            flows[a.flow] = Some(Flow {
                to: localhost(a.port),
                round0: round,
                ssrc: rand::random(),
                seq0: rand::random(),
                ts0: rand::random(),
                leg: a.leg,
                srtp: a.srtp,
                consent: a.consent,
            });
        }
        let now = nanos(Instant::now());
        let end = stop.load(Ordering::Relaxed);
        if due(k) > end {
            break;
        }
        while due(k) <= now && due(k) <= end {
            let j = (k % n) as usize;
            let round = k / n;
            let slot = due(k);
            k += 1;
            let Some(f) = flows[j].as_mut().filter(|f| round >= f.round0) else {
                continue;
            };
            let r = round - f.round0;
            let (clip, pt, step) = (&clips[f.leg as usize], f.leg.payload_type(), f.leg.step());
            let payload = &clip[(r as usize + j) % clip.len()];
            scratch.clear();
            scratch.resize(12, 0);
            write_header(
                &mut scratch,
                pt,
                f.seq0.wrapping_add(r as u16),
                f.ts0.wrapping_add((r as u32).wrapping_mul(step)),
                f.ssrc,
            );
            scratch.extend_from_slice(payload);
            if let Some(srtp) = &mut f.srtp
                && srtp.protect_rtp(&mut scratch).is_err()
            {
                sent.errors += 1;
                continue;
            }
            let len = scratch.len().min(SEND_MAX);
            packets[queued][..len].copy_from_slice(&scratch[..len]);
            lens[queued] = len;
            dest[queued] = f.to;
            slots[queued] = slot;
            queued += 1;
            if let Some(check) = &f.consent
                && (r + j as u64).is_multiple_of(CONSENT_ROUNDS)
            {
                if queued == SEND_CHUNK {
                    flush(&mut packets, &lens, &dest, &slots, &mut sent);
                    queued = 0;
                }
                packets[queued][..check.len()].copy_from_slice(check);
                lens[queued] = check.len();
                dest[queued] = f.to;
                slots[queued] = slot;
                queued += 1;
                sent.consent += 1;
            }
            if queued == SEND_CHUNK {
                flush(&mut packets, &lens, &dest, &slots, &mut sent);
                queued = 0;
            }
        }
        if queued > 0 {
            flush(
                &mut packets[..queued],
                &lens[..queued],
                &dest[..queued],
                &slots[..queued],
                &mut sent,
            );
            queued = 0;
        }
        let next = due(k).max(now + TICK.as_nanos() as u64);
        sleep_until(base + Duration::from_nanos(next));
    }
    Ok(sent)
}

/// One stream as the receiver follows it.
#[derive(Default)]
struct Track {
    /// 0 p2b (W's), 1 b2p (G's).
    dir: usize,
    /// RTP timestamp step per packet; the A-law decoding (None: Opus).
    step: u32,
    law: Option<fn(u8) -> i16>,
    /// W's packets are SRTP; the context once the browser has its keys.
    webrtc: bool,
    srtp: Option<SrtpContext>,
    heard: bool,
    last_seq: u16,
    last_ts: u32,
    /// Kernel stamp of the last packet (realtime ns; 0: none).
    last_kernel: u64,
    /// In the window: packets, how far the timestamp and the sequence
    /// number moved on from the first.
    in_window: u64,
    ts_span: u64,
    seq_span: u64,
    /// The first timestamp in the window, and each stamped packet's
    /// `arrival − k × 20 ms` (k: frames since it), ns.
    first_ts: u32,
    offsets: Vec<i64>,
    audible: u64,
    late: u64,
}

/// Timing of one direction's packets.
struct DirTiming {
    /// |gap − 20 ms| between consecutive packets of a stream, ns (kernel
    /// stamps).
    jitter: Histogram<u64>,
    /// How far behind its slot on its stream's grid each packet arrived, ns.
    lateness: Histogram<u64>,
}

struct Received {
    tracks: Vec<Track>,
    dirs: Vec<DirTiming>,
    /// SRTP from W that did not authenticate, was replayed (or too old), or
    /// failed otherwise; W's packets before the receiver had the keys.
    auth_failed: u64,
    replayed: u64,
    srtp_other: u64,
    before_keys: u64,
    /// STUN or DTLS from W once setup was over (consent answers).
    control_after_setup: u64,
    /// From no endpoint, not RTP, or RTCP.
    stray: u64,
    unstamped: u64,
}

/// Reads the generator's socket in a blocking `recvmmsg` loop until the
/// window and `drain` are over: W's STUN and DTLS go to the handshakes
/// (`control`), W's SRTP is unprotected with the keys `keys` brings, and
/// every stream is followed and measured inside the window.
#[allow(clippy::too_many_arguments)]
fn receive(
    socket: StdUdpSocket,
    tracks: Vec<Track>,
    by_port: Arc<Vec<AtomicU32>>,
    base: Instant,
    window: mpsc::Receiver<(u64, u64)>,
    keys: mpsc::Receiver<(usize, SrtpContext)>,
    control: mpsc::Sender<(usize, Vec<u8>)>,
    drain: Duration,
) -> Result<Received, Error> {
    socket.set_read_timeout(Some(RECV_TIMEOUT))?;
    let histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3);
    let mut got = Received {
        tracks,
        dirs: (0..2)
            .map(|_| {
                Ok(DirTiming {
                    jitter: histogram()?,
                    lateness: histogram()?,
                })
            })
            .collect::<Result<_, Error>>()?,
        auth_failed: 0,
        replayed: 0,
        srtp_other: 0,
        before_keys: 0,
        control_after_setup: 0,
        stray: 0,
        unstamped: 0,
    };
    let period = FRAME_DURATION.as_nanos() as i64;
    let mut slots = vec![RecvSlot::<RECV_MAX>::new(); RECV_BATCH];
    let mut out = [Datagram::default(); RECV_BATCH];
    let mut window_ns = (u64::MAX, u64::MAX);
    let drain_ns = drain.as_nanos() as u64;
    loop {
        if let Ok(w) = window.try_recv() {
            window_ns = w;
        }
        for (stream, context) in keys.try_iter() {
            if let Some(t) = got.tracks.get_mut(stream) {
                t.srtp = Some(context);
            }
        }
        let n = match recv_mmsg(&socket, &mut slots, &mut out) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e.into()),
        };
        // Keys handed over while this thread waited come before W's first
        // packets under them.
        for (stream, context) in keys.try_iter() {
            if let Some(t) = got.tracks.get_mut(stream) {
                t.srtp = Some(context);
            }
        }
        let now = Instant::now().duration_since(base).as_nanos() as u64;
        if now >= window_ns.1.saturating_add(drain_ns) {
            break;
        }
        let in_window = now >= window_ns.0 && now < window_ns.1;
        for (slot, d) in slots.iter_mut().zip(&out[..n]) {
            let len = d.len.min(RECV_MAX);
            let id = by_port[usize::from(d.port)].load(Ordering::Relaxed) as usize;
            if id == 0 || len == 0 {
                got.stray += 1;
                continue;
            }
            let stream = id - 1;
            let p = &mut slot.buf[..len];
            match p[0] {
                0..=3 | 20..=63 => {
                    if control.send((stream / 2, p.to_vec())).is_err() {
                        got.control_after_setup += 1;
                    }
                    continue;
                }
                128..=191 => {}
                _ => {
                    got.stray += 1;
                    continue;
                }
            }
            // RTCP (200-204 with the marker bit): no endpoint sends any.
            if len < 12 || (200..=204).contains(&p[1]) {
                got.stray += 1;
                continue;
            }
            let t = &mut got.tracks[stream];
            let len = if t.webrtc {
                let Some(srtp) = &mut t.srtp else {
                    got.before_keys += 1;
                    continue;
                };
                match srtp.unprotect_rtp(p) {
                    Ok(n) => n,
                    Err(SrtpError::Authentication) => {
                        got.auth_failed += 1;
                        continue;
                    }
                    Err(SrtpError::Replayed | SrtpError::TooOld) => {
                        got.replayed += 1;
                        continue;
                    }
                    Err(_) => {
                        got.srtp_other += 1;
                        continue;
                    }
                }
            } else {
                len
            };
            let p = &slot.buf[..len];
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let timing = &mut got.dirs[t.dir];
            if d.kernel_ns == 0 {
                got.unstamped += 1;
            }
            if in_window {
                if t.in_window == 0 {
                    t.first_ts = ts;
                } else {
                    // Forward moves only (a reordered packet adds nothing).
                    let dts = ts.wrapping_sub(t.last_ts) as i32;
                    let dseq = seq.wrapping_sub(t.last_seq) as i16;
                    t.ts_span += dts.max(0) as u64;
                    t.seq_span += dseq.max(0) as u64;
                }
                t.in_window += 1;
                if d.kernel_ns != 0 {
                    let frames = f64::from(ts.wrapping_sub(t.first_ts) as i32) / f64::from(t.step);
                    t.offsets
                        .push(d.kernel_ns as i64 - frames.round() as i64 * period);
                }
                let payload = &p[12.min(p.len())..];
                t.audible += u64::from(match t.law {
                    None => payload.len() > OPUS_SILENCE_MAX,
                    Some(decode) => payload.iter().any(|&b| decode(b).unsigned_abs() > 64),
                });
                if t.heard
                    && seq == t.last_seq.wrapping_add(1)
                    && d.kernel_ns != 0
                    && t.last_kernel != 0
                {
                    let gap = d.kernel_ns as i64 - t.last_kernel as i64;
                    timing
                        .jitter
                        .saturating_record((gap - period).unsigned_abs().max(1));
                }
            }
            if !in_window || t.in_window == 1 || seq.wrapping_sub(t.last_seq) as i16 > 0 {
                t.last_seq = seq;
                t.last_ts = ts;
                t.last_kernel = d.kernel_ns;
            }
            t.heard = true;
        }
    }
    // Late frames: against each stream's grid, placed by its earliest packet.
    let late_bound = LATE_BOUND.as_nanos() as u64;
    for t in &mut got.tracks {
        let offsets = mem::take(&mut t.offsets);
        let Some(&grid) = offsets.iter().min() else {
            continue;
        };
        let timing = &mut got.dirs[t.dir];
        for o in offsets {
            let behind = (o - grid) as u64;
            timing.lateness.saturating_record(behind.max(1));
            t.late += u64::from(behind > late_bound);
        }
    }
    Ok(got)
}
