//! Load tool for the IVR benchmark (`bench/ivr.sh`) and the transcoding
//! benchmark (`bench/transcode.sh`): concurrent G.711 IVR sessions (an
//! endpoint playing a prompt and recording at once), or Opus ↔ G.711
//! transcoding channels (two endpoints bridged by the engine), against a
//! load generator acting as the phones, and plain relayed streams as the
//! baseline.
//!
//! ```text
//! ivr_bench ivr|transcode|relay --sessions N [--warmup S] [--duration S] [--drain S]
//!                     [--ramp S] [--workers W] [--port-min P] [--port-max P]
//!                     [--codec pcma|pcmu|opus] [--prompt S] [--record-max S] [--label L]
//!                     [--gen-priority fifo|normal] [--clip S] [--cost-frames F]
//!                     [--event-interval T]
//! ```
//!
//! One process: the media side on one multi-thread tokio runtime
//! (`--workers`, 2 by default; its threads are named `ivr-rt`), and the
//! generator on two plain threads (`gen-send`, `gen-recv`) with batched
//! system calls (Linux only: `sendmmsg`/`recvmmsg`), so that the CPU of
//! each can be read apart (`/proc/self/task/*/schedstat`); a `probe`
//! thread beside them.
//!
//! - `ivr`: N endpoints (`Relay::open_endpoint`, A-law, telephone-event 101),
//!   opened evenly over `--ramp` seconds (so their 20 ms ticks fall at
//!   random phases, as calls arriving do). Each plays a prompt (a 400 Hz
//!   sine of `--prompt` seconds, looped) and, at the same time, records
//!   (`record` with `max` = `--record-max`, the measured duration by
//!   default, started again whenever one ends). The generator has one
//!   socket, the SDP address of every endpoint: it sends each endpoint a
//!   20 ms packet every 20 ms (a voice-like signal, `--clip` seconds
//!   encoded once and looped, so the recorder hears something; before the
//!   transcoding kind it was one frame of a 1 kHz tone) and receives every
//!   endpoint's packets.
//! - `relay`: the baseline, N `Relay::open()` streams, one-way A→B: the
//!   generator sends each stream's A port the same 20 ms packets from one
//!   socket and receives them from the B ports on another (which spoke
//!   first, so that each stream latched it). Per stream as many packets in
//!   and out of the media side as an IVR session: N × 50/s each way. (A
//!   transcoding channel is two such streams' worth, so its baseline is
//!   `relay --sessions 2N`: N relayed calls, one stream each way.)
//! - `transcode`: N channels, each what the switch opens for a caller
//!   speaking only Opus (`host/src/sip/call/media_session.rs`): an Opus
//!   endpoint (`Codec::OPUS`, payload type 111, telephone-event 101) facing
//!   the phone and a G.711 endpoint (`--codec`, PCMA by default,
//!   telephone-event 101) facing the carrier, bridged (`Endpoint::bridge`),
//!   both opened at the same moment of the ramp. The generator is both
//!   phones: every 20 ms it sends each Opus endpoint an Opus packet and
//!   each G.711 endpoint a G.711 packet, both cut from `--clip` seconds of
//!   a voice-like signal (gliding pitch with harmonics, tremolo, noise)
//!   encoded once before the run (Opus as a phone does it: libopus at
//!   48 kHz, VoIP, 32 kbit/s, complexity 10) and looped, so the generator
//!   spends no CPU encoding; and it receives both endpoints' packets. 2N
//!   streams in and 2N out, counted per direction: `o2g` (Opus in, G.711
//!   out: what the carrier hears) and `g2o` (G.711 in, Opus out: what the
//!   phone hears). Per channel and 20 ms the engine decodes one Opus
//!   packet (libopus straight to 8 kHz) and encodes one (libopus at 8 kHz,
//!   narrowband, 16 kbit/s, complexity 10: `OpusConfig::new`), and does
//!   the same in G.711.
//!
//! The sender wakes every 250 µs and sends what has come due (flow i at
//! offset i/N of the 20 ms period) with `sendmmsg` (≤ 8 packets per call).
//! How late its packets left (p99, max) is printed: the relay passes the
//! phones' timing on, so a sender starved by the media side it loads
//! charges the relay with its own lateness. `--gen-priority fifo` runs it
//! SCHED_FIFO (root; else niced), so that the phones keep time whatever
//! the switch costs; it is not the default because on 2 cores its
//! preemptions every 250 µs cost the media side more than they save (the
//! runtime's CPU went from ~75 % to ~90 % of a core at 1,000 sessions and
//! the endpoints' p99 jitter from ~2 ms to 6-15 ms; bench/README.md).
//! The receiver blocks in `recvmmsg` (≤ 64 datagrams, 64 MiB receive
//! buffer) and tells the stream by the packet's source port. Arrival times
//! are the kernel's (`SO_TIMESTAMPNS`): on loopback the packet is stamped
//! when the media side's `sendto` hands it to the network stack, so the
//! figure is the media side's sending timing, not the receiver thread's
//! scheduling; the receiver's own clock (read once per batch) is kept
//! beside it as `rx_jitter_*` (what a phone reading in user space would see).
//!
//! Measured over the window (after the warm-up), per stream:
//!
//! - loss: packets the RTP timestamps say were due minus packets received
//!   (a stream that stalls over 60 ms skips frames, moving its timestamp on
//!   without sending: counted lost); `seq_lost` counts by sequence number
//!   (packets sent but not received);
//! - jitter: for consecutive packets of a stream, |arrival gap − 20 ms|, in
//!   one histogram over all streams (p50, p99, p99.9, max), and the streams
//!   whose own p99 is over 5 ms (more than 1 % of their gaps);
//! - late frames: a packet is late when it leaves more than one frame
//!   (20 ms) after its slot on its stream's own 20 ms grid. The slot of
//!   the packet with RTP timestamp `ts` is `t0 + k × 20 ms`, with `k` the
//!   frames from the stream's first timestamp in the window and `t0` the
//!   earliest `arrival − k × 20 ms` of the stream over the window (a
//!   packet can leave late, never early: the endpoint's tick fires at or
//!   after its deadline, the relay forwards after the phone's slot). A
//!   phone with a jitter buffer of one frame plays a packet up to 20 ms
//!   behind its grid in time; a later one is a late frame (concealed or
//!   dropped there). Frames never sent (a stall over 60 ms makes an
//!   endpoint skip them) are loss, not late. The lateness (p50, p99, max)
//!   is printed beside the count. Kernel stamps are CLOCK_REALTIME and the
//!   endpoints tick on CLOCK_MONOTONIC: how far the two moved apart over
//!   the window is printed (`clock_drift_us`; it would read as lateness);
//! - transcoding: the same per direction, the bridge's underruns (the
//!   sending side found no frame from the other: silence sent) and drops
//!   (a frame thrown away to bound the delay), the jitter buffers' late
//!   drops, and the packets that carry sound (Opus: over 10 bytes, which
//!   encoded silence never is; G.711: a sample over 64 in magnitude);
//! - how late a task on the media runtime woken by a 5 ms tokio timer, and a
//!   plain thread sleeping 5 ms, wake (`rt_lag_*`, `os_lag_*`): whether a
//!   stall is the runtime's or the machine's;
//! - relayed packets only: their latency through the relay (the send time
//!   is written into the payload; `latency_*`);
//! - CPU of the runtime, the sender and the receiver threads (their run
//!   time, from `schedstat`), and of the rest of the machine (busy jiffies
//!   of `/proc/stat` less this process; the hypervisor's steal apart), in %
//!   of one core, and the runtime's CPU per packet (in and out) and per
//!   session (channel) and 20 ms frame.
//!
//! Before the media side opens, the same process measures on one thread
//! (its CPU time, `CLOCK_THREAD_CPUTIME_ID`, `--cost-frames` frames a line)
//! what the codecs cost per 20 ms frame: libopus's own encode and decode
//! at 48 kHz (complexity 10 and 5, 32 kbit/s, the phones' clip), and what
//! a transcoding channel's engine does: decode the phones' 48 kHz stream
//! to 8 kHz, encode 8 kHz frames at complexity 10 (the endpoint's), 5 and
//! 0, G.711 both ways. From them the ceiling: the channels the machine's
//! cores could hold doing nothing but that codec work, `cores × 20 ms /
//! cost per channel-frame` (`ceiling_engine`, and `ceiling_opus48` for
//! libopus's own 48 kHz encode + decode), and N over it.
//!
//! Also the media side's input: packets the generator sent (whole run) that
//! the endpoints (or the relay) did not count, and what their drop
//! counters say; and the recordings (seconds, share of non-zero samples).
//! It prints one line of `key=value` pairs on stdout and a summary on
//! stderr.
//!
//! A step holds (`holds`) for `ivr` and `relay` when loss < 0.1 %, jitter
//! p99 < 5 ms and ≥ 99 % of the packets due come out; for `transcode`
//! (and `late_holds`, printed for every kind, so that the relay baseline is
//! judged the same way) when, in each direction, no frame is lost, late
//! frames are < 0.1 % of those due and ≥ 99 % of the packets due come out.

use std::net::{IpAddr, Ipv4Addr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use std::{env, io, process, thread};

use hdrhistogram::Histogram;
use media::codec::{FRAME_DURATION, FRAME_SAMPLES};
use media::{
    Codec, Endpoint, EndpointConfig, EndpointHandle, PlayOutcome, RecordEnd, RecordOptions, Relay,
    RelayConfig, Side, Stream, tone,
};

#[path = "support/mod.rs"]
mod support;

use support::cpu::{CpuShare, Usage, thread_cpu_ns};
use support::net::{
    Datagram, RECV_BATCH, RecvSlot, SEND_CHUNK, generator_socket, localhost, recv_mmsg, send_all,
    set_timestamping, sleep_until,
};
use support::voice::voice;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Largest packet the generator sends or reads whole (a G.711 packet is 172).
const PACKET_MAX: usize = 256;
/// RFC 4733 payload type offered to the endpoints.
const TELEPHONE_EVENT: u8 = 101;
/// The jitter bound a step must hold (p99) and the loss it may have.
const JITTER_BOUND: Duration = Duration::from_millis(5);
const LOSS_BOUND_PCT: f64 = 0.1;
/// Opus's payload type offered to the endpoints (dynamic; the usual one).
const OPUS_PT: u8 = 111;
/// A packet more than this behind its slot on its stream's grid is late.
const LATE_BOUND: Duration = FRAME_DURATION;
/// Late frames a transcoding step may have, in % of the frames due.
const LATE_BOUND_PCT: f64 = 0.1;
/// An Opus payload over this many bytes carries sound (libopus's silence
/// at 16 kbit/s is a few bytes).
const OPUS_SILENCE_MAX: usize = 10;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let mut args = env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let kind = match mode.as_str() {
        "ivr" => Kind::Ivr,
        "transcode" => Kind::Transcode,
        "relay" => Kind::Relay,
        _ => usage("the mode is ivr, transcode or relay"),
    };
    let opts = match Opts::parse(args) {
        Ok(o) => o,
        Err(e) => usage(&e),
    };
    if let Err(e) = run(kind, &opts) {
        eprintln!("ivr_bench {mode}: {e}");
        process::exit(1);
    }
}

fn usage(why: &str) -> ! {
    eprintln!("ivr_bench: {why}");
    eprintln!("usage: ivr_bench ivr|transcode|relay --sessions N [options]");
    eprintln!(
        "  --warmup S (3) --duration S (20) --drain S (1) --ramp S (1) --workers W (2)\n  \
         --port-min P (30000) --port-max P (39999) --codec pcma|pcmu|opus (pcma; \
         transcode: the G.711 side)\n  \
         --prompt S (10) --record-max S (= duration) --label L (the mode)\n  \
         --gen-priority fifo|normal (normal) --clip S (3: the phones' looped audio)\n  \
         --cost-frames F (1000: frames per line of the codec cost; 0: not measured)\n  \
         --event-interval T (tokio's: tasks polled between looks at timers and sockets)"
    );
    process::exit(2);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ivr,
    Transcode,
    Relay,
}

struct Opts {
    sessions: usize,
    warmup: Duration,
    duration: Duration,
    drain: Duration,
    ramp: Duration,
    workers: usize,
    port_min: u16,
    port_max: u16,
    codec: String,
    prompt: Duration,
    record_max: Option<Duration>,
    label: Option<String>,
    /// `fifo`: the generator's sender runs SCHED_FIFO (else niced -10,
    /// else as is), so that the phones keep time whatever the media side
    /// costs, as phones on other machines would; `normal` (default): as is.
    gen_priority: String,
    /// Length of the phones' audio, encoded once and looped.
    clip: Duration,
    /// Frames per line of the codec cost measured before the run (0: none).
    cost_frames: usize,
    /// The runtime's `event_interval` (tokio's default, 61, when unset):
    /// tasks a worker polls between looks at the timers and sockets.
    event_interval: Option<u32>,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, String> {
        let mut o = Opts {
            sessions: 0,
            warmup: Duration::from_secs(3),
            duration: Duration::from_secs(20),
            drain: Duration::from_secs(1),
            ramp: Duration::from_secs(1),
            workers: 2,
            port_min: 30000,
            port_max: 39999,
            codec: "pcma".into(),
            prompt: Duration::from_secs(10),
            record_max: None,
            label: None,
            gen_priority: "normal".into(),
            clip: Duration::from_secs(3),
            cost_frames: 1000,
            event_interval: None,
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
                "--sessions" => o.sessions = value.parse().map_err(|_| bad())?,
                "--warmup" => o.warmup = secs(&value).ok_or_else(bad)?,
                "--duration" => o.duration = secs(&value).ok_or_else(bad)?,
                "--drain" => o.drain = secs(&value).ok_or_else(bad)?,
                "--ramp" => o.ramp = secs(&value).ok_or_else(bad)?,
                "--workers" => o.workers = value.parse().map_err(|_| bad())?,
                "--port-min" => o.port_min = value.parse().map_err(|_| bad())?,
                "--port-max" => o.port_max = value.parse().map_err(|_| bad())?,
                "--codec" => o.codec = value.clone(),
                "--prompt" => o.prompt = secs(&value).ok_or_else(bad)?,
                "--record-max" => o.record_max = Some(secs(&value).ok_or_else(bad)?),
                "--label" => o.label = Some(value.clone()),
                "--gen-priority" if value == "fifo" || value == "normal" => {
                    o.gen_priority = value.clone()
                }
                "--clip" => o.clip = secs(&value).ok_or_else(bad)?,
                "--cost-frames" => o.cost_frames = value.parse().map_err(|_| bad())?,
                "--event-interval" => o.event_interval = Some(value.parse().map_err(|_| bad())?),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if o.sessions == 0 || o.workers == 0 || o.duration.is_zero() {
            return Err("--sessions, --workers and --duration must be above 0".into());
        }
        if o.prompt < FRAME_DURATION || o.clip < FRAME_DURATION {
            return Err("--prompt and --clip must be at least one frame (0.02 s)".into());
        }
        Ok(o)
    }
}

/// The codec and payload type the endpoints are offered (for `transcode`,
/// the G.711 side's; the other side is Opus). The generator and the
/// counting follow the codec: the phones' payloads come from [`clip`], RTP
/// timestamps step by `Codec::timestamp_step` (960 at Opus's 48 kHz clock)
/// and loss is counted in those steps.
fn bench_codec(name: &str) -> Result<(Codec, u8), Error> {
    match name {
        "pcma" => Ok((Codec::Pcma, 8)),
        "pcmu" => Ok((Codec::Pcmu, 0)),
        "opus" => Ok((Codec::OPUS, OPUS_PT)),
        _ => Err(format!("unknown codec {name} (pcma, pcmu, opus)").into()),
    }
}

/// A phone's Opus encoder: libopus at 48 kHz, VoIP, 32 kbit/s.
fn phone_encoder(complexity: i32) -> Result<opus::Encoder, Error> {
    let mut e = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip)?;
    e.set_bitrate(opus::Bitrate::Bits(32_000))?;
    e.set_complexity(complexity)?;
    Ok(e)
}

/// What a phone speaking `codec` says: `length` of [`voice`], one payload
/// per 20 ms frame, made once before the run. Opus as a phone encodes it
/// (libopus at 48 kHz, complexity 10); G.711 by the codec's own encoder.
fn clip(codec: Codec, length: Duration) -> Result<Vec<Vec<u8>>, Error> {
    let frames = (length.as_secs_f64() / FRAME_DURATION.as_secs_f64()).round() as usize;
    let mut payloads = Vec::with_capacity(frames);
    match codec {
        Codec::Opus(_) => {
            let mut encoder = phone_encoder(10)?;
            let mut buf = [0u8; 1500];
            for frame in voice(48000, frames * 960).chunks_exact(960) {
                let n = encoder.encode(frame, &mut buf)?;
                payloads.push(buf[..n].to_vec());
            }
        }
        _ => {
            let mut encoder = codec.encoder();
            for frame in voice(8000, frames * FRAME_SAMPLES).chunks_exact(FRAME_SAMPLES) {
                let mut p = Vec::with_capacity(FRAME_SAMPLES);
                encoder.encode(frame, &mut p)?;
                payloads.push(p);
            }
        }
    }
    if let Some(long) = payloads.iter().find(|p| p.len() + 12 > PACKET_MAX) {
        return Err(format!("a {codec} payload of {} bytes does not fit", long.len()).into());
    }
    Ok(payloads)
}

// ---------------------------------------------------------------- the run

/// What the media side has open, kept until the end of the run.
enum Open {
    /// The endpoints' handles and their session tasks (play + record).
    Ivr(Vec<(EndpointHandle, tokio::task::JoinHandle<Recorded>)>),
    /// Each channel's Opus endpoint and G.711 endpoint, bridged.
    Transcode(Vec<(Endpoint, Endpoint)>),
    Relay(Vec<Stream>),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ivr => "ivr",
            Kind::Transcode => "transcode",
            Kind::Relay => "relay",
        }
    }
}

fn run(kind: Kind, opts: &Opts) -> Result<(), Error> {
    let (codec, payload_type) = bench_codec(&opts.codec)?;
    if kind == Kind::Transcode && matches!(codec, Codec::Opus(_)) {
        return Err("transcode: --codec is the G.711 side's (pcma or pcmu)".into());
    }
    let label = opts.label.clone().unwrap_or_else(|| kind.name().into());
    let n = opts.sessions;
    let ports_each = match kind {
        Kind::Ivr => 2,
        Kind::Transcode | Kind::Relay => 4,
    };
    let range = usize::from(opts.port_max.saturating_sub(opts.port_min)) + 1;
    if n * ports_each > range {
        return Err(format!(
            "{n} {label} sessions need {} ports, the range {}-{} has {range}",
            n * ports_each,
            opts.port_min,
            opts.port_max
        )
        .into());
    }

    // What the phones say, encoded once; and, before anything runs, what
    // the codecs cost on this machine.
    let opus = Codec::OPUS;
    let clips = vec![clip(codec, opts.clip)?, clip(opus, opts.clip)?];
    let cost = codec_cost(opts.cost_frames, &clips[1])?;

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(opts.workers)
        .thread_name("ivr-rt")
        .enable_all();
    if let Some(t) = opts.event_interval {
        builder.event_interval(t);
    }
    let rt = builder.build()?;
    let relay = rt.block_on(async {
        Relay::new(RelayConfig {
            bind: LOCALHOST,
            port_min: opts.port_min,
            port_max: opts.port_max,
            kernel_forwarding: false,
        })
    });

    // The generator's sockets: the phones' side. The receiving one stamps
    // arrivals in the kernel.
    let rx = generator_socket("ivr_bench", RCVBUF)?;
    set_timestamping(&rx)?;
    let tx = match kind {
        Kind::Ivr | Kind::Transcode => rx.try_clone()?,
        Kind::Relay => generator_socket("ivr_bench", RCVBUF)?,
    };
    let phones = rx.local_addr()?;

    // The streams the generator sends and receives: one per endpoint (or
    // relayed stream); a transcoding channel's Opus endpoint is stream 2i
    // (its packets out are direction g2o, group 0), its G.711 endpoint
    // 2i + 1 (o2g, group 1). Everything else is one group.
    let streams = match kind {
        Kind::Transcode => 2 * n,
        Kind::Ivr | Kind::Relay => n,
    };
    let stream_codec = |j: usize| {
        if kind == Kind::Transcode && j.is_multiple_of(2) {
            (opus, OPUS_PT, 1)
        } else {
            (codec, payload_type, 0)
        }
    };
    let tracks: Vec<Track> = (0..streams)
        .map(|j| {
            let (c, _, _) = stream_codec(j);
            Track {
                group: if kind == Kind::Transcode { j % 2 } else { 0 },
                step: c.timestamp_step(),
                law: match c {
                    Codec::Pcma => Some(media::g711::alaw_decode),
                    Codec::Pcmu => Some(media::g711::ulaw_decode),
                    Codec::Opus(_) => None,
                },
                ..Track::default()
            }
        })
        .collect();

    // Which stream a packet is from, by its source port (stream + 1; 0:
    // none), filled in as the media side opens.
    let by_port: Arc<Vec<AtomicU32>> =
        Arc::new((0..=u16::MAX).map(|_| AtomicU32::new(0)).collect());

    // The receiver runs from the start: endpoints send from the moment they
    // open, and what comes before the window is read and only followed.
    let base = Instant::now();
    let (window_tx, window_rx) = std::sync::mpsc::channel::<(u64, u64)>();
    let receiver = {
        let by_port = by_port.clone();
        let socket = rx.try_clone()?;
        let groups = if kind == Kind::Transcode { 2 } else { 1 };
        thread::Builder::new()
            .name("gen-recv".into())
            .spawn(move || {
                receive(
                    socket,
                    tracks,
                    groups,
                    by_port,
                    base,
                    window_rx,
                    kind == Kind::Relay,
                )
            })?
    };

    // The media side, opened evenly over the ramp.
    let prompt: Arc<[i16]> = tone::sine(400.0, 8000, opts.prompt).into();
    let record_max = opts.record_max.unwrap_or(opts.duration);
    let opened_at = Instant::now();
    let (open, destinations) = rt.block_on(async {
        let mut destinations = Vec::with_capacity(streams);
        let ramp_start = tokio::time::Instant::now();
        let mut open = match kind {
            Kind::Ivr => Open::Ivr(Vec::with_capacity(n)),
            Kind::Transcode => Open::Transcode(Vec::with_capacity(n)),
            Kind::Relay => Open::Relay(Vec::with_capacity(n)),
        };
        let endpoint = |c: Codec, pt: u8| {
            relay.open_endpoint(EndpointConfig {
                codec: c,
                payload_type: pt,
                telephone_event: Some(TELEPHONE_EVENT),
                remote: phones,
                srtp: None,
                webrtc: None,
            })
        };
        for i in 0..n {
            let when = ramp_start + opts.ramp.mul_f64(i as f64 / n as f64);
            tokio::time::sleep_until(when).await;
            match &mut open {
                Open::Ivr(endpoints) => {
                    let ep = endpoint(codec, payload_type)?;
                    by_port[usize::from(ep.local_port())].store(i as u32 + 1, Ordering::Relaxed);
                    destinations.push(localhost(ep.local_port()));
                    let handle = ep.handle();
                    let task = tokio::spawn(session(ep, prompt.clone(), record_max));
                    endpoints.push((handle, task));
                }
                Open::Transcode(channels) => {
                    // As the switch does for a caller speaking only Opus.
                    let phone = endpoint(opus, OPUS_PT)?;
                    let carrier = endpoint(codec, payload_type)?;
                    phone.bridge(&carrier).await?;
                    for (j, ep) in [(2 * i, &phone), (2 * i + 1, &carrier)] {
                        by_port[usize::from(ep.local_port())]
                            .store(j as u32 + 1, Ordering::Relaxed);
                        destinations.push(localhost(ep.local_port()));
                    }
                    channels.push((phone, carrier));
                }
                Open::Relay(streams) => {
                    let s = relay.open()?;
                    by_port[usize::from(s.rtp_port(Side::B))]
                        .store(i as u32 + 1, Ordering::Relaxed);
                    destinations.push(localhost(s.rtp_port(Side::A)));
                    streams.push(s);
                }
            }
        }
        Ok::<_, Error>((open, destinations))
    })?;
    let ramp_took = opened_at.elapsed();
    // The relay's B side speaks first, so that each stream latches the
    // receiving socket (these packets have nowhere to go and are dropped).
    let mut primed = 0u64;
    if let Open::Relay(streams) = &open {
        let mut priming = [0u8; 12];
        write_header(&mut priming, payload_type, 0, 0, 0);
        for _ in 0..2 {
            for s in streams {
                if rx
                    .send_to(&priming, (LOCALHOST, s.rtp_port(Side::B)))
                    .is_ok()
                {
                    primed += 1;
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    let start = Instant::now() + Duration::from_millis(50);
    let window = (start + opts.warmup, start + opts.warmup + opts.duration);
    let nanos = |t: Instant| t.duration_since(base).as_nanos() as u64;
    let window_ns = (nanos(window.0), nanos(window.1));
    window_tx.send(window_ns)?;
    // How late the runtime and the OS wake what sleeps, over the window.
    let rt_probe = rt.spawn(runtime_probe(window));
    let os_probe = thread::Builder::new()
        .name("probe".into())
        .spawn(move || thread_probe(window))?;

    let sender = {
        let flows = destinations
            .into_iter()
            .enumerate()
            .map(|(j, to)| {
                let (c, pt, clip) = stream_codec(j);
                Flow {
                    to,
                    payload_type: pt,
                    step: c.timestamp_step(),
                    clip,
                }
            })
            .collect();
        let realtime = opts.gen_priority == "fifo";
        let talk = Talk {
            flows,
            clips,
            stamp: kind == Kind::Relay,
        };
        thread::Builder::new()
            .name("gen-send".into())
            .spawn(move || send(tx, talk, base, start, window, realtime))?
    };

    sleep_until(window.0);
    let before = Usage::sample("ivr-rt");
    let input_before = input_counters(&open, &relay);
    sleep_until(window.1);
    let after = Usage::sample("ivr-rt");
    let input_after = input_counters(&open, &relay);

    let sent = sender.join().map_err(|_| "sender panicked")??;
    let got = receiver.join().map_err(|_| "receiver panicked")??;
    let rt_lag = rt.block_on(rt_probe)??;
    let os_lag = os_probe.join().map_err(|_| "probe panicked")??;
    // What is still on its way reaches the media side.
    thread::sleep(opts.drain);
    let input_end = input_counters(&open, &relay);

    let recorded = rt.block_on(async {
        let mut total = Recorded::default();
        match open {
            Open::Ivr(endpoints) => {
                for (handle, _) in &endpoints {
                    handle.close();
                }
                for (_, task) in endpoints {
                    if let Ok(r) = task.await {
                        total.add(&r);
                    }
                }
            }
            Open::Transcode(channels) => drop(channels),
            Open::Relay(streams) => drop(streams),
        }
        total
    });
    drop(rt);

    let report = Report {
        label,
        kind,
        codec,
        n,
        opts,
        sent,
        got,
        cpu: after.minus(&before),
        input: (input_before, input_after, input_end),
        recorded,
        ramp_took,
        primed,
        rt_lag,
        os_lag,
        cost,
    };
    report.print();
    Ok(())
}

/// One IVR session: the prompt over and over, and a recording (started
/// again each time one reaches its maximum) at the same time, until the
/// endpoint closes.
async fn session(ep: Endpoint, prompt: Arc<[i16]>, record_max: Duration) -> Recorded {
    let plays = async { while ep.play(prompt.clone(), "").await == PlayOutcome::Finished {} };
    let records = async {
        let mut r = Recorded::default();
        loop {
            let rec = ep
                .record(RecordOptions {
                    max: record_max,
                    silence_timeout: None,
                    finish_keys: String::new(),
                })
                .await;
            r.recordings += 1;
            r.samples += rec.samples.len() as u64;
            r.heard += rec.samples.iter().filter(|&&s| s != 0).count() as u64;
            if rec.reason != RecordEnd::MaxDuration {
                break;
            }
        }
        r
    };
    let ((), r) = tokio::join!(plays, records);
    r
}

#[derive(Default, Clone, Copy)]
struct Recorded {
    recordings: u64,
    samples: u64,
    /// Samples that are not zero (the generator's tone, not silence).
    heard: u64,
}

impl Recorded {
    fn add(&mut self, other: &Recorded) {
        self.recordings += other.recordings;
        self.samples += other.samples;
        self.heard += other.heard;
    }
}

/// The media side's input counters, summed: packets it counted in, and
/// packets it dropped; for transcoding, per direction (by the group of the
/// stream out: 0 g2o, 1 o2g), the bridge's underruns and drops on the
/// sending endpoint and the late drops of the receiving endpoint's jitter
/// buffer.
#[derive(Default, Clone, Copy)]
struct Input {
    received: u64,
    dropped: u64,
    underruns: [u64; 2],
    bridge_dropped: [u64; 2],
    jb_late: [u64; 2],
}

impl Input {
    fn add(&mut self, s: &media::EndpointStats) {
        self.received += s.packets_received;
        self.dropped += s.dropped_malformed
            + s.dropped_wrong_payload_type
            + s.dropped_wrong_ssrc
            + s.dropped_late
            + s.dropped_duplicate
            + s.dropped_overflow;
    }
}

fn input_counters(open: &Open, relay: &Relay) -> Input {
    match open {
        Open::Ivr(endpoints) => {
            let mut sum = Input::default();
            for (handle, _) in endpoints {
                sum.add(&handle.stats());
            }
            sum
        }
        Open::Transcode(channels) => {
            let mut sum = Input::default();
            for (phone, carrier) in channels {
                let (p, c) = (phone.stats(), carrier.stats());
                sum.add(&p);
                sum.add(&c);
                // g2o: out of the Opus endpoint, heard by the G.711 one.
                sum.underruns[0] += p.bridge_underruns;
                sum.bridge_dropped[0] += p.bridge_dropped;
                sum.jb_late[0] += c.dropped_late;
                sum.underruns[1] += c.bridge_underruns;
                sum.bridge_dropped[1] += c.bridge_dropped;
                sum.jb_late[1] += p.dropped_late;
            }
            sum
        }
        Open::Relay(_) => {
            let st = relay.stats();
            Input {
                received: st.packets_relayed.load(Ordering::Relaxed),
                dropped: st.packets_dropped.load(Ordering::Relaxed),
                ..Input::default()
            }
        }
    }
}

struct Report<'a> {
    label: String,
    kind: Kind,
    codec: Codec,
    n: usize,
    opts: &'a Opts,
    sent: Sent,
    got: Received,
    cpu: CpuShare,
    /// At the window's start, its end, and after the drain.
    input: (Input, Input, Input),
    recorded: Recorded,
    ramp_took: Duration,
    /// Packets sent to the relay's B ports to latch them (dropped there:
    /// not counted as the relay's drops).
    primed: u64,
    /// Wake-up lateness, ns: of a task on the media runtime (its timer and
    /// queues, and the OS), and of a plain thread (the OS alone).
    rt_lag: Histogram<u64>,
    os_lag: Histogram<u64>,
    cost: CodecCost,
}

/// Loss, late frames and timing over some of the streams (a direction, or
/// all of them).
struct Tally {
    due: u64,
    received: u64,
    seq_due: u64,
    late: u64,
    audible: u64,
    worst_loss: f64,
    silent: usize,
    /// Streams whose own jitter p99 is over the bound.
    bad: usize,
    jitter: Histogram<u64>,
    rx_jitter: Histogram<u64>,
    lateness: Histogram<u64>,
    over_bound: u64,
}

impl Tally {
    /// The streams of `group` (all of them: `None`), over a window of
    /// `frames` frames per stream.
    fn of(got: &Received, group: Option<usize>, frames: f64) -> Tally {
        let mut t = Tally {
            due: 0,
            received: 0,
            seq_due: 0,
            late: 0,
            audible: 0,
            worst_loss: 0.0,
            silent: 0,
            bad: 0,
            jitter: got.groups[0].jitter.clone(),
            rx_jitter: got.groups[0].rx_jitter.clone(),
            lateness: got.groups[0].lateness.clone(),
            over_bound: 0,
        };
        for h in [&mut t.jitter, &mut t.rx_jitter, &mut t.lateness] {
            h.reset();
        }
        for (i, g) in got.groups.iter().enumerate() {
            if group.is_none_or(|want| want == i) {
                // Same bounds: adding cannot fail.
                let _ = t.jitter.add(&g.jitter);
                let _ = t.rx_jitter.add(&g.rx_jitter);
                let _ = t.lateness.add(&g.lateness);
                t.over_bound += g.over_bound;
            }
        }
        for s in got
            .tracks
            .iter()
            .filter(|s| group.is_none_or(|g| g == s.group))
        {
            // A stream heard nothing in the window: all of it lost.
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
            if s.gaps == 0 || s.over_bound * 100 > s.gaps {
                t.bad += 1;
            }
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

    /// No frame lost, < 0.1 % late, at least 99 % of `expected` out.
    fn late_holds(&self, expected: f64) -> bool {
        self.lost() == 0
            && self.late_pct() < LATE_BOUND_PCT
            && self.received as f64 >= 0.99 * expected
    }
}

impl Report<'_> {
    fn print(&self) {
        let secs = self.opts.duration.as_secs_f64();
        let frames = secs / FRAME_DURATION.as_secs_f64();
        let g = &self.got;
        let all = Tally::of(g, None, frames);
        let streams = g.tracks.len();
        let (received, lost, loss_pct) = (all.received, all.lost(), all.loss_pct());
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e6;
        let (jitter, rx_jitter) = (&all.jitter, &all.rx_jitter);
        let over_pct = 100.0 * all.over_bound as f64 / jitter.len().max(1) as f64;
        let (i0, i1, i2) = self.input;
        // Whole run: what was sent and what the media side did not count.
        let in_lost = self.sent.total.saturating_sub(i2.received);
        let in_window = i1.received.saturating_sub(i0.received);
        let rt_secs = self.cpu.rt_pct / 100.0 * secs;
        let packets = in_window + received;
        let us_per_packet = rt_secs * 1e6 / packets.max(1) as f64;
        // Runtime CPU per session (channel) and 20 ms frame.
        let us_per_session_frame = rt_secs * 1e6 / (self.n as f64 * frames).max(1.0);
        let expected_pps = streams as f64 / FRAME_DURATION.as_secs_f64();
        let received_pps = received as f64 / secs;
        let directions: Vec<(&str, Tally)> = if self.kind == Kind::Transcode {
            vec![
                ("g2o", Tally::of(g, Some(0), frames)),
                ("o2g", Tally::of(g, Some(1), frames)),
            ]
        } else {
            Vec::new()
        };
        let late_holds = if directions.is_empty() {
            all.late_holds(expected_pps * secs)
        } else {
            let each = self.n as f64 * frames;
            directions.iter().all(|(_, t)| t.late_holds(each))
        };
        let holds = match self.kind {
            Kind::Transcode => late_holds,
            Kind::Ivr | Kind::Relay => {
                loss_pct < LOSS_BOUND_PCT
                    && ms(jitter, 0.99) < JITTER_BOUND.as_secs_f64() * 1e3
                    && received_pps >= 0.99 * expected_pps
            }
        };
        let rec_secs = self.recorded.samples as f64 / 8000.0;
        let heard_pct = 100.0 * self.recorded.heard as f64 / self.recorded.samples.max(1) as f64;
        let c = &self.cost;
        let (ceiling, ceiling48) = (c.ceiling(c.channel_ns()), c.ceiling(c.opus48_ns()));
        let ratio = |ceiling: f64| {
            if ceiling > 0.0 {
                self.n as f64 / ceiling
            } else {
                0.0
            }
        };
        let mut per_direction = String::new();
        for (d, t) in &directions {
            let (i1, i0) = (i1, i0);
            let k = usize::from(*d == "o2g");
            per_direction.push_str(&format!(
                " {d}_pps={:.0} {d}_received={} {d}_due={} {d}_lost={} {d}_loss_pct={:.4} \
                 {d}_late={} {d}_late_pct={:.4} {d}_lateness_p99_us={:.0} {d}_lateness_max_us={:.0} \
                 {d}_jitter_p50_us={:.0} {d}_jitter_p99_us={:.0} {d}_jitter_max_us={:.0} \
                 {d}_streams_p99_over5ms={} {d}_audible_pct={:.1} {d}_bridge_underruns={} \
                 {d}_bridge_dropped={} {d}_jb_late={} {d}_holds={}",
                t.received as f64 / secs,
                t.received,
                t.due,
                t.lost(),
                t.loss_pct(),
                t.late,
                t.late_pct(),
                ms(&t.lateness, 0.99) * 1e3,
                t.lateness.max() as f64 / 1e3,
                ms(&t.jitter, 0.5) * 1e3,
                ms(&t.jitter, 0.99) * 1e3,
                t.jitter.max() as f64 / 1e3,
                t.bad,
                t.audible_pct(),
                i1.underruns[k].saturating_sub(i0.underruns[k]),
                i1.bridge_dropped[k].saturating_sub(i0.bridge_dropped[k]),
                i1.jb_late[k].saturating_sub(i0.jb_late[k]),
                if t.late_holds(self.n as f64 * frames) {
                    "yes"
                } else {
                    "no"
                },
            ));
        }
        println!(
            "label={} kind={} sessions={} codec={} workers={} duration_s={} expected_pps={:.0} \
             received_pps={:.0} received={} due={} lost={} loss_pct={:.4} seq_lost={} \
             worst_stream_loss_pct={:.2} silent_streams={} jitter_p50_us={:.0} jitter_p99_us={:.0} \
             jitter_p999_us={:.0} jitter_max_us={:.0} over5ms_pct={:.3} streams_p99_over5ms={} \
             rx_jitter_p50_us={:.0} rx_jitter_p99_us={:.0} unstamped={} stray={} \
             late={} late_pct={:.4} lateness_p50_us={:.0} lateness_p99_us={:.0} lateness_max_us={:.0} \
             clock_drift_us={:.0} audible_pct={:.1} \
             gen_sent={} gen_late_sends={} gen_lag_p99_us={:.0} gen_lag_max_us={:.0} gen_priority={} \
             gen_send_errors={} in_lost={} server_dropped={} \
             rt_cpu={:.0} send_cpu={:.0} recv_cpu={:.0} main_cpu={:.0} other_cpu={:.0} steal_cpu={:.0} \
             rt_us_per_packet={:.2} rt_us_per_session_frame={:.1} \
             latency_p50_us={:.0} latency_p99_us={:.0} latency_p999_us={:.0} \
             latency_max_us={:.0} rt_lag_p99_us={:.0} rt_lag_max_us={:.0} os_lag_p99_us={:.0} \
             os_lag_max_us={:.0} rcvbuf_errors={} recordings={} recorded_s={:.0} heard_pct={:.1} \
             ramp_s={:.2} cores={} cost_frames={} opus48_c10_enc_ns={:.0} opus48_c5_enc_ns={:.0} \
             opus48_dec_ns={:.0} chan_dec_ns={:.0} chan_enc_c10_ns={:.0} chan_enc_c5_ns={:.0} \
             chan_enc_c0_ns={:.0} g711_ns={:.0} chan_ns={:.0} ceiling_engine={:.0} \
             ceiling_engine_c5={:.0} ceiling_opus48={:.0} n_over_ceiling={:.2} \
             n_over_ceiling_opus48={:.2}{} late_holds={} holds={}",
            self.label,
            self.kind.name(),
            self.n,
            self.codec,
            self.opts.workers,
            secs,
            expected_pps,
            received_pps,
            received,
            all.due,
            lost,
            loss_pct,
            all.seq_due.saturating_sub(received),
            all.worst_loss,
            all.silent,
            ms(jitter, 0.5) * 1e3,
            ms(jitter, 0.99) * 1e3,
            ms(jitter, 0.999) * 1e3,
            jitter.max() as f64 / 1e3,
            over_pct,
            all.bad,
            ms(rx_jitter, 0.5) * 1e3,
            ms(rx_jitter, 0.99) * 1e3,
            g.unstamped,
            g.stray,
            all.late,
            all.late_pct(),
            ms(&all.lateness, 0.5) * 1e3,
            ms(&all.lateness, 0.99) * 1e3,
            all.lateness.max() as f64 / 1e3,
            g.clock_drift_ns as f64 / 1e3,
            all.audible_pct(),
            self.sent.total,
            self.sent.late,
            self.sent.lag.value_at_quantile(0.99) as f64 / 1e3,
            self.sent.lag.max() as f64 / 1e3,
            self.sent.priority,
            self.sent.errors,
            in_lost,
            i2.dropped.saturating_sub(self.primed),
            self.cpu.rt_pct,
            self.cpu.send_pct,
            self.cpu.recv_pct,
            self.cpu.main_pct,
            self.cpu.other_pct,
            self.cpu.steal_pct,
            us_per_packet,
            us_per_session_frame,
            g.latency.value_at_quantile(0.5) as f64 / 1e3,
            g.latency.value_at_quantile(0.99) as f64 / 1e3,
            g.latency.value_at_quantile(0.999) as f64 / 1e3,
            g.latency.max() as f64 / 1e3,
            self.rt_lag.value_at_quantile(0.99) as f64 / 1e3,
            self.rt_lag.max() as f64 / 1e3,
            self.os_lag.value_at_quantile(0.99) as f64 / 1e3,
            self.os_lag.max() as f64 / 1e3,
            self.cpu.rcvbuf_errors,
            self.recorded.recordings,
            rec_secs,
            heard_pct,
            self.ramp_took.as_secs_f64(),
            c.cores,
            c.frames,
            c.opus48_enc_c10,
            c.opus48_enc_c5,
            c.opus48_dec,
            c.chan_dec,
            c.chan_enc_c10,
            c.chan_enc_c5,
            c.chan_enc_c0,
            c.g711,
            c.channel_ns(),
            ceiling,
            c.ceiling(c.chan_dec + c.chan_enc_c5 + c.g711),
            ceiling48,
            ratio(ceiling),
            ratio(ceiling48),
            per_direction,
            if late_holds { "yes" } else { "no" },
            if holds { "yes" } else { "no" },
        );
        eprintln!(
            "{} x {} ({}, {} workers, {:.0} s measured): {:.0} of {:.0} packets/s out, loss {:.3} % \
             ({} by sequence, worst stream {:.2} %, {} silent); late frames {:.3} % (lateness p99 \
             {:.2} ms, max {:.1} ms); jitter |gap - 20 ms| p50 {:.2} ms, \
             p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms ({} streams with p99 > 5 ms; as read by the \
             receiver p99 {:.2} ms); CPU runtime {:.0} %, sender {:.0} %, receiver {:.0} %, rest of \
             the machine {:.0} % (stolen {:.0} %) ({:.1} us of runtime per packet in or out, {:.1} us \
             per session and frame); the phones sent p99 {:.2} ms, max {:.1} ms after their slot ({} \
             sender); wake-ups late p99/max: runtime task {:.1}/{:.1} ms, thread {:.1}/{:.1} ms; \
             input not counted {} of {}, dropped {}{}{}: {}",
            self.n,
            self.label,
            self.codec,
            self.opts.workers,
            secs,
            received_pps,
            expected_pps,
            loss_pct,
            all.seq_due.saturating_sub(received),
            all.worst_loss,
            all.silent,
            all.late_pct(),
            ms(&all.lateness, 0.99),
            all.lateness.max() as f64 / 1e6,
            ms(jitter, 0.5),
            ms(jitter, 0.99),
            ms(jitter, 0.999),
            jitter.max() as f64 / 1e6,
            all.bad,
            ms(rx_jitter, 0.99),
            self.cpu.rt_pct,
            self.cpu.send_pct,
            self.cpu.recv_pct,
            self.cpu.other_pct,
            self.cpu.steal_pct,
            us_per_packet,
            us_per_session_frame,
            self.sent.lag.value_at_quantile(0.99) as f64 / 1e6,
            self.sent.lag.max() as f64 / 1e6,
            self.sent.priority,
            self.rt_lag.value_at_quantile(0.99) as f64 / 1e6,
            self.rt_lag.max() as f64 / 1e6,
            self.os_lag.value_at_quantile(0.99) as f64 / 1e6,
            self.os_lag.max() as f64 / 1e6,
            in_lost,
            self.sent.total,
            i2.dropped.saturating_sub(self.primed),
            if self.kind == Kind::Ivr {
                format!(
                    "; recorded {:.0} s in {} recordings, {:.0} % non-zero",
                    rec_secs, self.recorded.recordings, heard_pct
                )
            } else {
                String::new()
            },
            directions
                .iter()
                .map(|(d, t)| {
                    let k = usize::from(*d == "o2g");
                    format!(
                        "; {d}: {:.0} packets/s, lost {}, late {:.3} %, jitter p99 {:.2} ms, \
                         {:.0} % with sound, bridge underruns {} and drops {}, jitter-buffer late {}",
                        t.received as f64 / secs,
                        t.lost(),
                        t.late_pct(),
                        ms(&t.jitter, 0.99),
                        t.audible_pct(),
                        i1.underruns[k].saturating_sub(i0.underruns[k]),
                        i1.bridge_dropped[k].saturating_sub(i0.bridge_dropped[k]),
                        i1.jb_late[k].saturating_sub(i0.jb_late[k]),
                    )
                })
                .collect::<String>(),
            if holds { "holds" } else { "does not hold" },
        );
        if c.frames > 0 {
            eprintln!(
                "codec cost per 20 ms frame ({} frames a line, one thread's CPU time): libopus 48 kHz \
                 encode {:.1} us at complexity 10, {:.1} us at 5, decode {:.1} us; a channel's engine: \
                 decode of the phones' stream to 8 kHz {:.1} us, 8 kHz encode {:.1} us at complexity \
                 10 (the endpoint's), {:.1} at 5, {:.1} at 0, G.711 both ways {:.1} us: {:.1} us a \
                 channel; ceiling on {} cores {:.0} channels (libopus 48 kHz: {:.0}); N = {} is {:.2} \
                 of it",
                c.frames,
                c.opus48_enc_c10 / 1e3,
                c.opus48_enc_c5 / 1e3,
                c.opus48_dec / 1e3,
                c.chan_dec / 1e3,
                c.chan_enc_c10 / 1e3,
                c.chan_enc_c5 / 1e3,
                c.chan_enc_c0 / 1e3,
                c.g711 / 1e3,
                c.channel_ns() / 1e3,
                c.cores,
                ceiling,
                ceiling48,
                self.n,
                ratio(ceiling),
            );
        }
    }
}

/// What the codecs cost on this machine, ns of one thread's CPU per 20 ms
/// frame (0: not measured).
#[derive(Default)]
struct CodecCost {
    frames: usize,
    cores: usize,
    /// libopus's own, at 48 kHz (32 kbit/s, the phones' encoder).
    opus48_enc_c10: f64,
    opus48_enc_c5: f64,
    opus48_dec: f64,
    /// A transcoding channel's engine: the endpoint's decoder on the
    /// phones' stream, its encoder (8 kHz) at complexity 10, 5 and 0, and
    /// G.711 encode + decode.
    chan_dec: f64,
    chan_enc_c10: f64,
    chan_enc_c5: f64,
    chan_enc_c0: f64,
    g711: f64,
}

impl CodecCost {
    /// A channel's codec work per 20 ms as the engine does it today.
    fn channel_ns(&self) -> f64 {
        self.chan_dec + self.chan_enc_c10 + self.g711
    }

    /// libopus's own 48 kHz encode (complexity 10) + decode.
    fn opus48_ns(&self) -> f64 {
        self.opus48_enc_c10 + self.opus48_dec
    }

    /// Channels the cores could hold spending `ns` per channel-frame and
    /// nothing else.
    fn ceiling(&self, ns: f64) -> f64 {
        if ns > 0.0 {
            self.cores as f64 * FRAME_DURATION.as_nanos() as f64 / ns
        } else {
            0.0
        }
    }
}

/// Mean CPU time of `f(i)` for i in 0..frames, after 50 calls of warm-up.
fn per_frame(frames: usize, mut f: impl FnMut(usize) -> Result<(), Error>) -> Result<f64, Error> {
    for i in 0..50.min(frames) {
        f(i)?;
    }
    let start = thread_cpu_ns();
    for i in 0..frames {
        f(i)?;
    }
    Ok((thread_cpu_ns() - start) as f64 / frames as f64)
}

/// Measures [`CodecCost`] over `frames` frames a line (0: nothing), the
/// phones' Opus stream being `stream` (looped).
fn codec_cost(frames: usize, stream: &[Vec<u8>]) -> Result<CodecCost, Error> {
    let mut c = CodecCost {
        frames,
        cores: thread::available_parallelism().map_or(1, |n| n.get()),
        ..CodecCost::default()
    };
    if frames == 0 || stream.is_empty() {
        return Ok(c);
    }
    let pcm48 = voice(48000, frames * 960);
    let pcm8 = voice(8000, frames * FRAME_SAMPLES);
    let mut buf = [0u8; 1500];
    let mut packets = Vec::with_capacity(frames);
    for (complexity, cost) in [(10, &mut c.opus48_enc_c10), (5, &mut c.opus48_enc_c5)] {
        let mut encoder = phone_encoder(complexity)?;
        *cost = per_frame(frames, |i| {
            let n = encoder.encode(
                std::hint::black_box(&pcm48[i * 960..(i + 1) * 960]),
                &mut buf,
            )?;
            // What the decoder is timed on: complexity 10's packets.
            if complexity == 10 && packets.len() < frames {
                packets.push(buf[..n].to_vec());
            }
            Ok(())
        })?;
    }
    let mut decoder = opus::Decoder::new(48000, opus::Channels::Mono)?;
    let mut out48 = [0i16; 960];
    c.opus48_dec = per_frame(frames, |i| {
        decoder.decode(std::hint::black_box(&packets[i]), &mut out48, false)?;
        Ok(())
    })?;
    let mut decoder = Codec::OPUS.decoder();
    let mut out = Vec::with_capacity(4 * FRAME_SAMPLES);
    c.chan_dec = per_frame(frames, |i| {
        out.clear();
        decoder.decode(std::hint::black_box(&stream[i % stream.len()]), &mut out);
        Ok(())
    })?;
    let mut payload = Vec::with_capacity(1500);
    for (complexity, cost) in [
        (10, &mut c.chan_enc_c10),
        (5, &mut c.chan_enc_c5),
        (0, &mut c.chan_enc_c0),
    ] {
        // The endpoint's encoder (`Codec::encoder`) but for the complexity.
        let mut encoder = media::opus::OpusEncoder::new(media::opus::OpusConfig {
            complexity,
            ..media::opus::OpusConfig::default()
        })?;
        *cost = per_frame(frames, |i| {
            payload.clear();
            let frame = &pcm8[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES];
            media::codec::Encoder::encode(&mut encoder, std::hint::black_box(frame), &mut payload)?;
            Ok(())
        })?;
    }
    let (mut encoder, mut decoder) = (Codec::Pcma.encoder(), Codec::Pcma.decoder());
    c.g711 = per_frame(frames, |i| {
        payload.clear();
        out.clear();
        let frame = &pcm8[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES];
        encoder.encode(std::hint::black_box(frame), &mut payload)?;
        decoder.decode(&payload, &mut out);
        Ok(())
    })?;
    Ok(c)
}

/// How often the probes wake.
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

/// A plain thread (normal priority) sleeping 5 ms at a time: how much
/// longer each sleep is, over the window.
fn thread_probe(window: (Instant, Instant)) -> Result<Histogram<u64>, Error> {
    let mut lag = Histogram::new_with_bounds(1, 60_000_000_000, 3)?;
    sleep_until(window.0);
    loop {
        let asked = Instant::now() + PROBE_EVERY;
        sleep_until(asked);
        let now = Instant::now();
        if now >= window.1 {
            return Ok(lag);
        }
        lag.saturating_record(now.saturating_duration_since(asked).as_nanos().max(1) as u64);
    }
}

// ---------------------------------------------------------------- generator

/// The sender wakes this often and sends the packets whose slot has come.
const TICK: Duration = Duration::from_micros(250);
/// How often a receiver with nothing to read checks whether it is done.
const RECV_TIMEOUT: Duration = Duration::from_millis(50);
/// The generator runs on this long past the window, so that its threads are
/// alive when their CPU time is read at the window's end.
const OVERRUN: Duration = Duration::from_millis(200);
/// Receive buffer of the generator's sockets (about half a second at
/// 100,000 packets/s; the kernel counts ~1 KiB per queued packet).
const RCVBUF: usize = 64 << 20;

/// One phone's stream: where it goes and what it sends.
struct Flow {
    to: libc::sockaddr_in,
    payload_type: u8,
    /// RTP timestamp step per packet.
    step: u32,
    /// Index of its clip in [`Talk::clips`].
    clip: usize,
}

/// What the phones send.
struct Talk {
    flows: Vec<Flow>,
    /// Payloads, one per 20 ms frame, looped: flow j's packet of round r
    /// is frame `(r + j) % len` of its clip.
    clips: Vec<Vec<Vec<u8>>>,
    /// Write the send time into the payload (relayed packets come back
    /// whole: their latency through the relay is measured too).
    stamp: bool,
}

struct Sent {
    /// Packets sent, whole run.
    total: u64,
    /// Packets sent more than 2 ms after their slot.
    late: u64,
    errors: u64,
    /// How late after its slot each packet left, ns (whole run).
    lag: Histogram<u64>,
    /// The sender thread's scheduling: `fifo`, `nice` or `normal`.
    priority: &'static str,
}

/// RTP header: version 2, no marker.
fn write_header(p: &mut [u8], pt: u8, seq: u16, ts: u32, ssrc: u32) {
    p[0] = 0x80;
    p[1] = pt & 0x7F;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Paces every flow at one packet per 20 ms, flow i at offset i/N of the
/// period, until the window closes: every `TICK` it sends what has come
/// due, in `sendmmsg` calls of up to `SEND_CHUNK` packets.
fn send(
    socket: StdUdpSocket,
    talk: Talk,
    base: Instant,
    start: Instant,
    window: (Instant, Instant),
    realtime: bool,
) -> Result<Sent, Error> {
    let nanos = |t: Instant| t.duration_since(base).as_nanos() as u64;
    // On a little past the window: the CPU of every thread is read at its end.
    let (start_ns, end_ns) = (nanos(start), nanos(window.1 + OVERRUN));
    let n = talk.flows.len() as u64;
    let period = FRAME_DURATION.as_nanos() as u64;
    let due = |k: u64| start_ns + period * (k / n) + period * (k % n) / n;
    let mut packets = [[0u8; PACKET_MAX]; SEND_CHUNK];
    let mut lens = [0usize; SEND_CHUNK];
    let mut dest = [localhost(0); SEND_CHUNK];
    let mut slots = [0u64; SEND_CHUNK];
    let mut queued = 0;
    let mut sent = Sent {
        total: 0,
        late: 0,
        errors: 0,
        lag: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        priority: if realtime { raise_priority() } else { "normal" },
    };
    let stamp = talk.stamp;
    let mut flush = |packets: &mut [[u8; PACKET_MAX]],
                     lens: &[usize],
                     dest: &[libc::sockaddr_in],
                     slots: &[u64]| {
        let now = nanos(Instant::now());
        if stamp {
            for p in packets.iter_mut() {
                p[12..20].copy_from_slice(&now.to_le_bytes());
            }
        }
        for &slot in slots {
            sent.lag.saturating_record(now.saturating_sub(slot).max(1));
        }
        sent.late += slots.iter().filter(|&&s| now > s + 2_000_000).count() as u64;
        let (total, errors) = send_all(&socket, packets, lens, dest);
        sent.total += total as u64;
        sent.errors += errors as u64;
    };
    let mut k = 0u64;
    let total = n * end_ns.saturating_sub(start_ns).div_ceil(period);
    while k < total {
        let now = nanos(Instant::now());
        while k < total && due(k) <= now {
            let flow = (k % n) as usize;
            let round = k / n;
            let f = &talk.flows[flow];
            let clip = &talk.clips[f.clip];
            let payload = &clip[(round as usize + flow) % clip.len()];
            let p = &mut packets[queued];
            write_header(
                p,
                f.payload_type,
                round as u16,
                (round as u32).wrapping_mul(f.step),
                flow as u32 + 1,
            );
            p[12..12 + payload.len()].copy_from_slice(payload);
            lens[queued] = 12 + payload.len();
            dest[queued] = f.to;
            slots[queued] = due(k);
            queued += 1;
            if queued == SEND_CHUNK {
                flush(&mut packets, &lens, &dest, &slots);
                queued = 0;
            }
            k += 1;
        }
        if queued > 0 {
            flush(
                &mut packets[..queued],
                &lens[..queued],
                &dest[..queued],
                &slots[..queued],
            );
            queued = 0;
        }
        if k < total {
            let next = Duration::from_nanos(due(k).max(now + TICK.as_nanos() as u64));
            sleep_until(base + next);
        }
    }
    Ok(sent)
}

/// One stream as the receiver follows it.
#[derive(Default, Clone)]
struct Track {
    /// Its group (transcoding: 0 g2o, 1 o2g; else 0), RTP timestamp step
    /// and, for G.711, the law's decoding (None: Opus).
    group: usize,
    step: u32,
    law: Option<fn(u8) -> i16>,
    heard: bool,
    last_seq: u16,
    last_ts: u32,
    /// Kernel stamp (realtime ns; 0: none) and receiver clock of the last
    /// packet.
    last_kernel: u64,
    last_user: u64,
    /// In the window: packets, and how far the timestamp and sequence number
    /// moved on from the first.
    in_window: u64,
    ts_span: u64,
    seq_span: u64,
    gaps: u64,
    over_bound: u64,
    /// The first timestamp in the window, and each stamped packet's
    /// `arrival − k × 20 ms` (k: frames since that timestamp), ns.
    first_ts: u32,
    offsets: Vec<i64>,
    /// Packets in the window that carry sound; late ones (see the module
    /// doc), counted after the window.
    audible: u64,
    late: u64,
}

/// Timing of the packets of a group of streams.
struct Group {
    /// |gap − 20 ms| of consecutive packets, ns: by kernel stamps, and by
    /// the receiver's clock.
    jitter: Histogram<u64>,
    rx_jitter: Histogram<u64>,
    /// How far behind its slot on its stream's grid each packet left, ns.
    lateness: Histogram<u64>,
    over_bound: u64,
}

struct Received {
    tracks: Vec<Track>,
    groups: Vec<Group>,
    /// Packets without a kernel stamp (the receiver's clock was used).
    unstamped: u64,
    /// Datagrams from no stream's port, or not RTP.
    stray: u64,
    /// Relayed packets: from the generator's send to the relay's, ns.
    latency: Histogram<u64>,
    /// How much further CLOCK_REALTIME moved than CLOCK_MONOTONIC over
    /// the run, ns.
    clock_drift_ns: i64,
}

/// Reads the phones' socket in a blocking `recvmmsg` loop until the window
/// closes (or `stop`), following every stream and measuring those inside
/// the window.
fn receive(
    socket: StdUdpSocket,
    tracks: Vec<Track>,
    groups: usize,
    by_port: Arc<Vec<AtomicU32>>,
    base: Instant,
    window: std::sync::mpsc::Receiver<(u64, u64)>,
    stamped: bool,
) -> Result<Received, Error> {
    socket.set_read_timeout(Some(RECV_TIMEOUT))?;
    // Kernel stamps are CLOCK_REALTIME: where `base` falls on that clock.
    let wall = || -> Result<u64, Error> {
        Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64)
    };
    let realtime_base = wall()? - Instant::now().duration_since(base).as_nanos() as u64;
    let histogram = || Histogram::new_with_bounds(1, 60_000_000_000, 3);
    let mut got = Received {
        tracks,
        groups: (0..groups)
            .map(|_| {
                Ok(Group {
                    jitter: histogram()?,
                    rx_jitter: histogram()?,
                    lateness: histogram()?,
                    over_bound: 0,
                })
            })
            .collect::<Result<_, Error>>()?,
        unstamped: 0,
        stray: 0,
        latency: histogram()?,
        clock_drift_ns: 0,
    };
    let period = FRAME_DURATION.as_nanos() as i64;
    let bound = JITTER_BOUND.as_nanos() as u64;
    let mut slots = vec![RecvSlot::<PACKET_MAX>::new(); RECV_BATCH];
    let mut out = [Datagram::default(); RECV_BATCH];
    // Unknown until the media side is open.
    let mut window_ns = (u64::MAX, u64::MAX);
    loop {
        if let Ok(w) = window.try_recv() {
            window_ns = w;
        }
        let n = match recv_mmsg(&socket, &mut slots, &mut out) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e.into()),
        };
        let now = Instant::now().duration_since(base).as_nanos() as u64;
        if now >= window_ns.1.saturating_add(OVERRUN.as_nanos() as u64) {
            break;
        }
        let in_window = now >= window_ns.0 && now < window_ns.1;
        for (slot, d) in slots.iter().zip(&out[..n]) {
            let p = &slot.buf[..d.len.min(PACKET_MAX)];
            let stream = by_port[usize::from(d.port)].load(Ordering::Relaxed) as usize;
            if stream == 0 || p.len() < 12 || p[0] >> 6 != 2 {
                got.stray += 1;
                continue;
            }
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let t = &mut got.tracks[stream - 1];
            let group = &mut got.groups[t.group];
            if d.kernel_ns == 0 {
                got.unstamped += 1;
            }
            if in_window {
                if t.in_window == 0 {
                    t.ts_span = 0;
                    t.seq_span = 0;
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
                let payload = &p[12..];
                let sound = match t.law {
                    None => payload.len() > OPUS_SILENCE_MAX,
                    Some(decode) => payload.iter().any(|&b| decode(b).unsigned_abs() > 64),
                };
                t.audible += u64::from(sound);
                if stamped && d.kernel_ns != 0 && p.len() >= 20 {
                    let sent = u64::from_le_bytes(p[12..20].try_into()?);
                    let out = d.kernel_ns.saturating_sub(realtime_base);
                    got.latency
                        .saturating_record(out.saturating_sub(sent).max(1));
                }
                if t.heard && seq == t.last_seq.wrapping_add(1) {
                    let (kernel_gap, user_gap) = (
                        (d.kernel_ns != 0 && t.last_kernel != 0)
                            .then(|| d.kernel_ns as i64 - t.last_kernel as i64),
                        now as i64 - t.last_user as i64,
                    );
                    let off = |gap: i64| (gap - period).unsigned_abs().max(1);
                    let j = off(kernel_gap.unwrap_or(user_gap));
                    group.jitter.saturating_record(j);
                    group.rx_jitter.saturating_record(off(user_gap));
                    t.gaps += 1;
                    if j > bound {
                        t.over_bound += 1;
                        group.over_bound += 1;
                    }
                }
            }
            if !in_window || t.in_window == 1 || seq.wrapping_sub(t.last_seq) as i16 > 0 {
                t.last_seq = seq;
                t.last_ts = ts;
                t.last_kernel = d.kernel_ns;
                t.last_user = now;
            }
            t.heard = true;
        }
    }
    // The two clocks over the run (a drift would read as lateness).
    let elapsed = Instant::now().duration_since(base).as_nanos() as i64;
    got.clock_drift_ns = (wall()? - realtime_base) as i64 - elapsed;
    // Late frames: against each stream's grid, placed by its earliest packet.
    let late_bound = LATE_BOUND.as_nanos() as u64;
    for t in &mut got.tracks {
        let offsets = std::mem::take(&mut t.offsets);
        let Some(&grid) = offsets.iter().min() else {
            continue;
        };
        let group = &mut got.groups[t.group];
        for o in offsets {
            let behind = (o - grid) as u64;
            group.lateness.saturating_record(behind.max(1));
            t.late += u64::from(behind > late_bound);
        }
    }
    Ok(got)
}

// ---------------------------------------------------------------- Linux

/// Puts the calling thread in SCHED_FIFO (priority 10), else nices it to
/// -10; says which (`normal`: neither was allowed).
// Unsafe: the sched_setscheduler(2) and setpriority(2) FFI calls.
#[allow(unsafe_code)]
fn raise_priority() -> &'static str {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pid 0 is the calling thread; param is a live sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        return "fifo";
    }
    // SAFETY: plain call; on Linux PRIO_PROCESS with 0 is the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, -10) } == 0 {
        "nice"
    } else {
        "normal"
    }
}
