//! Load tool for the relay benchmark (`bench/media.sh`).
//!
//! Three modes, each its own process so that the relay is measured on its own
//! scheduler, apart from the load that drives it:
//!
//! ```text
//! relay_bench relay --streams N --ports-file F [--port-min P] [--workers W]
//! relay_bench relay-kernel (the same, with kernel forwarding; root)
//! relay_bench direct (no server: the floor, see below)
//! relay_bench echo  --streams N --ports-file F [--workers W]
//! relay_bench load  --streams N --ports-file F [--warmup S] [--duration S]
//!                   [--drain S] [--both] [--senders K] [--server-pid PID] [--label L]
//! ```
//!
//! `relay` runs the real `media::Relay` on a multi-thread tokio runtime (as
//! the switch does) and opens N streams; `echo` is the ceiling: the same shape
//! (a socket pair per stream, a packet in on one leaves from the other to the
//! address last heard on the other, tokio, one task per socket) without the
//! relay's logic. `relay-kernel` is `relay` with kernel forwarding on: the
//! streams are handed to nftables once settled (a second into the warm-up).
//! `direct` opens nothing and writes `0 0` lines: the generator then sends
//! each packet straight to its other socket, which measures what the
//! generator and the loopback path cost without any relay (the floor the
//! relay's added latency is read against).
//! All write one line per stream, `A-port B-port`, to the ports
//! file and run until SIGINT.
//!
//! `load` is the generator, with few sockets and batched system calls (Linux
//! only: it uses `sendmmsg`/`recvmmsg`). It has two unconnected sockets: one
//! sends to every relay A port, the other to every relay B port, so each relay
//! port latches one generator socket, as it would a phone. A stream is
//! one-way, A→B: 172-byte RTP packets (12-byte header, 160 bytes of G.711
//! silence) every 20 ms, start times spread over the 20 ms, each carrying its
//! stream, sequence number and send time (monotonic nanoseconds, the sender
//! and receiver share the process's clock). With `--both` each relay stream
//! also carries B→A, counted as a second stream. The B socket speaks first (to
//! every relay B port), so that the relay latches it.
//!
//! The sender is one thread (`--senders K`: K threads, each taking every K-th
//! flow; with the relay's kernel forwarding the forwarding and the delivery
//! run inside the sender's system call, more than one core's worth at
//! 100,000 packets/s): every 250 µs it wakes and sends the packets whose
//! slot has come, with one `sendmmsg` per at most 8 packets (per-message
//! destinations); the clock is read once per `sendmmsg`, so a packet's stamp
//! is early by at most the time the kernel takes to send the 7 before it
//! (counted as latency). A receiver thread per receiving socket (the B socket;
//! with `--both` the A socket too) blocks in `recvmmsg` (up to 64 datagrams, a
//! 50 ms `SO_RCVTIMEO` to notice the end), with a large receive buffer
//! (`SO_RCVBUFFORCE`, else `SO_RCVBUF`), reads the clock once per batch and
//! the stream from the payload. On loopback most of the generator's CPU is
//! still the kernel's per-packet path (its sends also deliver into the
//! server's sockets), which batching does not remove: see bench/README.md.
//!
//! Packets sent during the measured window (after the warm-up) and received
//! by the end of the window plus the drain count; the rest are lost. It prints
//! one line of `key=value` pairs: streams, packets/s offered and received,
//! loss, one-way latency percentiles (µs), late sends (more than 2 ms after
//! their slot, whole run), CPU of the server, of itself and of everything else
//! on the machine during the window (in % of one core) and the kernel's UDP
//! receive buffer drops (machine-wide).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use std::{env, fs, io, process, thread};

use hdrhistogram::Histogram;
use media::{Relay, RelayConfig, Side, Stream};
use tokio::net::UdpSocket;

#[path = "support/mod.rs"]
mod support;

use support::cpu::{machine_busy, udp_rcvbuf_errors};
use support::net::{
    Datagram, RECV_BATCH, RecvSlot, SEND_CHUNK, generator_socket, localhost, recv_mmsg, send_all,
    sleep_until,
};

const PACKET: usize = 172;
const PTIME: Duration = Duration::from_millis(20);
/// Marks the packets that only make the relay latch the B side.
const PRIMING: u32 = u32::MAX;
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let mut args = env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let opts = match Opts::parse(args) {
        Ok(o) => o,
        Err(e) => usage(&e),
    };
    let result = match mode.as_str() {
        "relay" => serve(&opts, Server::Relay { kernel: false }),
        "relay-kernel" => serve(&opts, Server::Relay { kernel: true }),
        "echo" => serve(&opts, Server::Echo),
        "direct" => serve(&opts, Server::Direct),
        "load" => load(&opts),
        _ => usage("the mode is relay, relay-kernel, echo, direct or load"),
    };
    if let Err(e) = result {
        eprintln!("relay_bench {mode}: {e}");
        process::exit(1);
    }
}

fn usage(why: &str) -> ! {
    eprintln!("relay_bench: {why}");
    eprintln!(
        "usage: relay_bench relay|relay-kernel|echo|direct|load --streams N --ports-file F [options]"
    );
    eprintln!("  relay: --port-min P (12000) --workers W (cores)");
    eprintln!("  echo:  --workers W (cores)");
    eprintln!(
        "  load:  --warmup S (3) --duration S (20) --drain S (1) --both --senders K (1) --server-pid PID --label L"
    );
    process::exit(2);
}

struct Opts {
    streams: usize,
    ports_file: String,
    port_min: u16,
    workers: Option<usize>,
    warmup: Duration,
    duration: Duration,
    drain: Duration,
    both: bool,
    senders: usize,
    server_pid: Option<u32>,
    label: String,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, String> {
        let mut o = Opts {
            streams: 0,
            ports_file: String::new(),
            port_min: 12000,
            workers: None,
            warmup: Duration::from_secs(3),
            duration: Duration::from_secs(20),
            drain: Duration::from_secs(1),
            both: false,
            senders: 1,
            server_pid: None,
            label: String::from("-"),
        };
        while let Some(flag) = args.next() {
            if flag == "--both" {
                o.both = true;
                continue;
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = || format!("bad value for {flag}: {value}");
            let secs = |v: &str| v.parse::<f64>().map(Duration::from_secs_f64);
            match flag.as_str() {
                "--streams" => o.streams = value.parse().map_err(|_| bad())?,
                "--ports-file" => o.ports_file = value.clone(),
                "--port-min" => o.port_min = value.parse().map_err(|_| bad())?,
                "--workers" => o.workers = Some(value.parse().map_err(|_| bad())?),
                "--warmup" => o.warmup = secs(&value).map_err(|_| bad())?,
                "--duration" => o.duration = secs(&value).map_err(|_| bad())?,
                "--drain" => o.drain = secs(&value).map_err(|_| bad())?,
                "--senders" => o.senders = value.parse().map_err(|_| bad())?,
                "--server-pid" => o.server_pid = Some(value.parse().map_err(|_| bad())?),
                "--label" => o.label = value.clone(),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if o.streams == 0 || o.ports_file.is_empty() || o.senders == 0 {
            return Err("--streams and --ports-file are required".into());
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- servers

#[derive(Clone, Copy)]
enum Server {
    Relay { kernel: bool },
    Echo,
    Direct,
}

fn serve(opts: &Opts, server: Server) -> Result<(), Error> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(w) = opts.workers {
        rt.worker_threads(w);
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(async {
        let mut lines = String::new();
        // Whatever is opened lives until SIGINT.
        let mut keep: Vec<Stream> = Vec::with_capacity(opts.streams);
        let relay = Relay::new(RelayConfig {
            bind: LOCALHOST,
            port_min: opts.port_min,
            // Room for every stream's 4 ports, and some held by others.
            port_max: opts
                .port_min
                .saturating_add((opts.streams * 4 + 2000).min(60000) as u16),
            kernel_forwarding: matches!(server, Server::Relay { kernel: true }),
        });
        if matches!(server, Server::Relay { kernel: true }) && !relay.kernel_forwarding() {
            return Err("kernel forwarding is unavailable (root and nft needed)".into());
        }
        for _ in 0..opts.streams {
            let (a, b) = match server {
                Server::Relay { .. } => {
                    let s = relay.open()?;
                    let ports = (s.rtp_port(Side::A), s.rtp_port(Side::B));
                    keep.push(s);
                    ports
                }
                Server::Echo => echo_pair().await?,
                Server::Direct => (0, 0),
            };
            lines.push_str(&format!("{a} {b}\n"));
        }
        let tmp = format!("{}.tmp", opts.ports_file);
        fs::write(&tmp, lines)?;
        fs::rename(&tmp, &opts.ports_file)?;
        tokio::signal::ctrl_c().await?;
        if let Server::Relay { .. } = server {
            let st = relay.stats();
            eprintln!(
                "relay: {} streams, {} packets relayed, {} dropped, {} directions in the kernel",
                st.streams.load(Ordering::Relaxed),
                st.packets_relayed.load(Ordering::Relaxed),
                st.packets_dropped.load(Ordering::Relaxed),
                st.streams_in_kernel.load(Ordering::Relaxed)
            );
            relay.shutdown();
        }
        Ok::<_, Error>(())
    })
}

/// The ceiling: two sockets, one task each; a packet in on one leaves from
/// the other, to the address last heard on the other (an atomic, no lock).
async fn echo_pair() -> Result<(u16, u16), Error> {
    let a = Arc::new(UdpSocket::bind((LOCALHOST, 0)).await?);
    let b = Arc::new(UdpSocket::bind((LOCALHOST, 0)).await?);
    let ports = (a.local_addr()?.port(), b.local_addr()?.port());
    let heard = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    tokio::spawn(forward(heard.clone(), 0, a.clone(), b.clone()));
    tokio::spawn(forward(heard, 1, b, a));
    Ok(ports)
}

async fn forward(
    heard: Arc<[AtomicU64; 2]>,
    me: usize,
    mine: Arc<UdpSocket>,
    theirs: Arc<UdpSocket>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, src)) = mine.recv_from(&mut buf).await else {
            continue;
        };
        heard[me].store(pack(src), Ordering::Relaxed);
        let Some(dest) = unpack(heard[1 - me].load(Ordering::Relaxed)) else {
            continue;
        };
        let _ = theirs.send_to(&buf[..n], dest).await;
    }
}

/// An IPv4 socket address in a word (0: none). The benchmark is IPv4 only.
fn pack(a: SocketAddr) -> u64 {
    match a {
        SocketAddr::V4(v4) => 1 << 48 | u64::from(v4.ip().to_bits()) << 16 | u64::from(v4.port()),
        SocketAddr::V6(_) => 0,
    }
}

fn unpack(w: u64) -> Option<SocketAddr> {
    (w != 0).then(|| SocketAddr::from((Ipv4Addr::from_bits((w >> 16) as u32), w as u16)))
}

// ---------------------------------------------------------------- generator

/// The sender wakes this often and sends the packets whose slot has come.
const TICK: Duration = Duration::from_micros(250);
/// Receive buffer per datagram: longer than a packet, so that a longer
/// datagram shows (its length is not `PACKET`).
const RECV_BUF: usize = 256;
/// How often a receiver with nothing to read checks whether it is done.
const RECV_TIMEOUT: Duration = Duration::from_millis(50);
/// Receive buffer of the generator's sockets: at 100,000 packets/s about
/// half a second of traffic (the kernel counts ~1 KiB per queued packet), so
/// a receiver that is briefly descheduled does not lose packets.
const RCVBUF: usize = 64 << 20;
/// Generator socket facing the relay's A ports, and the one facing B.
const A: usize = 0;
const B: usize = 1;

/// One direction of one relay stream.
#[derive(Clone, Copy)]
struct Flow {
    /// Generator socket it is sent from (`A` or `B`).
    from: usize,
    /// The relay port it is sent to.
    to: libc::sockaddr_in,
}

fn load(opts: &Opts) -> Result<(), Error> {
    let ports = read_ports(&opts.ports_file, opts.streams)?;
    let socket = || generator_socket("relay_bench load", RCVBUF);
    let sockets = [socket()?, socket()?];
    // Port 0 (the `direct` server): straight to the other generator socket.
    let own = [
        sockets[A].local_addr()?.port(),
        sockets[B].local_addr()?.port(),
    ];
    let target = |port: u16, to: usize| localhost(if port == 0 { own[to] } else { port });
    let mut flows: Vec<Flow> = Vec::new();
    for &(a, b) in &ports {
        flows.push(Flow {
            from: A,
            to: target(a, B),
        });
        if opts.both {
            flows.push(Flow {
                from: B,
                to: target(b, A),
            });
        }
    }
    // The B side speaks first: the relay latches it, A then has somewhere
    // to go. (A priming packet the relay does pass on is ignored.)
    let mut priming = [0u8; PACKET];
    write_packet(&mut priming, PRIMING, 0, 0);
    for _ in 0..2 {
        for &(_, b) in ports.iter().filter(|(_, b)| *b != 0) {
            let _ = sockets[B].send_to(&priming, (LOCALHOST, b));
        }
        thread::sleep(Duration::from_millis(100));
    }

    let base = Instant::now();
    let start = base + Duration::from_millis(50);
    let window = (start + opts.warmup, start + opts.warmup + opts.duration);
    let nanos = |t: Instant| t.duration_since(base).as_nanos() as u64;
    let window_ns = (nanos(window.0), nanos(window.1));

    // B hears A→B; with --both, A hears B→A.
    let rx_end = window.1 + opts.drain;
    let listening = if opts.both { vec![B, A] } else { vec![B] };
    let receivers = listening
        .into_iter()
        .map(|side| {
            let s = sockets[side].try_clone()?;
            Ok(thread::spawn(move || receive(s, base, window_ns, rx_end)))
        })
        .collect::<Result<Vec<_>, io::Error>>()?;
    // Sender threads share the two sockets (so each relay port still sees
    // one source) and take every K-th flow.
    let senders = (0..opts.senders)
        .map(|i| {
            let mine: Vec<Flow> = flows
                .iter()
                .skip(i)
                .step_by(opts.senders)
                .copied()
                .collect();
            let socks = [sockets[A].try_clone()?, sockets[B].try_clone()?];
            Ok(thread::spawn(move || {
                send(socks, mine, base, start, window)
            }))
        })
        .collect::<Result<Vec<_>, io::Error>>()?;

    // Who used the CPU during the window.
    sleep_until(window.0);
    let before = Usage::sample(opts.server_pid);
    sleep_until(window.1);
    let after = Usage::sample(opts.server_pid);

    let mut sent = Sent {
        in_window: 0,
        late: 0,
        errors: 0,
    };
    for s in senders {
        let s = s.join().map_err(|_| "sender panicked")??;
        sent.in_window += s.in_window;
        sent.late += s.late;
        sent.errors += s.errors;
    }
    let mut got = Received::new()?;
    for r in receivers {
        let r = r.join().map_err(|_| "receiver panicked")??;
        got.in_window += r.in_window;
        got.latency.add(&r.latency)?;
    }

    let secs = opts.duration.as_secs_f64();
    let lost = sent.in_window.saturating_sub(got.in_window);
    let loss = if sent.in_window == 0 {
        100.0
    } else {
        100.0 * lost as f64 / sent.in_window as f64
    };
    let us = |q: f64| got.latency.value_at_quantile(q) as f64 / 1000.0;
    let cpu = after.minus(&before);
    let streams = if opts.both {
        ports.len() * 2
    } else {
        ports.len()
    };
    println!(
        "label={} streams={} direction={} offered_pps={:.0} received_pps={:.0} sent={} received={} \
         lost={} loss_pct={:.4} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} \
         late_sends={} send_errors={} server_cpu={:.0} load_cpu={:.0} other_cpu={:.0} \
         rcvbuf_errors={}",
        opts.label,
        streams,
        if opts.both { "both" } else { "a-to-b" },
        sent.in_window as f64 / secs,
        got.in_window as f64 / secs,
        sent.in_window,
        got.in_window,
        lost,
        loss,
        us(0.50),
        us(0.99),
        us(0.999),
        got.latency.max() as f64 / 1000.0,
        sent.late,
        sent.errors,
        cpu.server_pct,
        cpu.self_pct,
        cpu.other_pct,
        cpu.rcvbuf_errors,
    );
    Ok(())
}

fn read_ports(path: &str, streams: usize) -> Result<Vec<(u16, u16)>, Error> {
    let text = fs::read_to_string(path)?;
    let ports: Vec<(u16, u16)> = text
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace().map(str::parse::<u16>);
            match (it.next(), it.next()) {
                (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
                _ => Err(format!("bad line in {path}: {l}")),
            }
        })
        .collect::<Result<_, _>>()?;
    if ports.len() < streams {
        return Err(format!("{path} has {} streams, {streams} asked", ports.len()).into());
    }
    Ok(ports[..streams].to_vec())
}

/// RTP header (PCMU), then the stream, sequence number and send time.
fn write_packet(p: &mut [u8; PACKET], flow: u32, seq: u32, sent_ns: u64) {
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    p[4..8].copy_from_slice(&seq.wrapping_mul(160).to_be_bytes());
    p[8..12].copy_from_slice(&flow.to_be_bytes());
    p[12..16].copy_from_slice(&flow.to_le_bytes());
    p[16..20].copy_from_slice(&seq.to_le_bytes());
    stamp(p, sent_ns);
    p[28..].fill(0xFF);
}

/// Writes the send time into a packet.
fn stamp(p: &mut [u8; PACKET], sent_ns: u64) {
    p[20..28].copy_from_slice(&sent_ns.to_le_bytes());
}

fn read_packet(p: &[u8]) -> Option<(u32, u32, u64)> {
    if p.len() != PACKET {
        return None;
    }
    let flow = u32::from_le_bytes(p[12..16].try_into().ok()?);
    let seq = u32::from_le_bytes(p[16..20].try_into().ok()?);
    let sent = u64::from_le_bytes(p[20..28].try_into().ok()?);
    (flow != PRIMING).then_some((flow, seq, sent))
}

struct Sent {
    in_window: u64,
    /// Packets sent more than 2 ms after their slot: the generator itself
    /// could not keep pace (so the offered rate is off).
    late: u64,
    /// Packets the kernel refused (not counted as sent).
    errors: u64,
}

/// Packets waiting to leave one generator socket.
struct Batch {
    packets: [[u8; PACKET]; SEND_CHUNK],
    to: [libc::sockaddr_in; SEND_CHUNK],
    /// Each packet's slot (nanoseconds since `base`).
    due: [u64; SEND_CHUNK],
    len: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            packets: [[0; PACKET]; SEND_CHUNK],
            to: [localhost(0); SEND_CHUNK],
            due: [0; SEND_CHUNK],
            len: 0,
        }
    }

    /// Stamps the packets with the time now and sends them.
    fn flush(
        &mut self,
        socket: &StdUdpSocket,
        base: Instant,
        window_ns: (u64, u64),
        sent: &mut Sent,
    ) {
        let now = Instant::now().duration_since(base).as_nanos() as u64;
        let n = self.len;
        self.len = 0;
        for p in &mut self.packets[..n] {
            stamp(p, now);
        }
        for &due in &self.due[..n] {
            if now > due + 2_000_000 {
                sent.late += 1;
            }
        }
        let lens = [PACKET; SEND_CHUNK];
        let (k, errors) = send_all(socket, &self.packets[..n], &lens[..n], &self.to[..n]);
        if now >= window_ns.0 && now < window_ns.1 {
            sent.in_window += k as u64;
        }
        sent.errors += errors as u64;
    }
}

/// Paces every flow at one packet per 20 ms, flow i at offset i/N of the
/// period, from one thread, until the window closes: every `TICK` it sends
/// what has come due, in `sendmmsg` calls of up to `SEND_CHUNK` packets per
/// socket.
fn send(
    sockets: [StdUdpSocket; 2],
    flows: Vec<Flow>,
    base: Instant,
    start: Instant,
    window: (Instant, Instant),
) -> Result<Sent, Error> {
    let nanos = |t: Instant| t.duration_since(base).as_nanos() as u64;
    let (start_ns, window_ns) = (nanos(start), (nanos(window.0), nanos(window.1)));
    let n = flows.len() as u64;
    let period = PTIME.as_nanos() as u64;
    // Slot of the k-th packet overall: round k / n, flow k % n.
    let due = |k: u64| start_ns + period * (k / n) + period * (k % n) / n;
    let mut sent = Sent {
        in_window: 0,
        late: 0,
        errors: 0,
    };
    let mut batches = [Batch::new(), Batch::new()];
    let mut k = 0u64;
    // Whole rounds, the last one starting before the window closes.
    let total = n * window_ns.1.saturating_sub(start_ns).div_ceil(period);
    while k < total {
        let now = nanos(Instant::now());
        while k < total && due(k) <= now {
            let flow = flows[(k % n) as usize];
            let b = &mut batches[flow.from];
            write_packet(&mut b.packets[b.len], (k % n) as u32, (k / n) as u32, 0);
            b.to[b.len] = flow.to;
            b.due[b.len] = due(k);
            b.len += 1;
            if b.len == SEND_CHUNK {
                b.flush(&sockets[flow.from], base, window_ns, &mut sent);
            }
            k += 1;
        }
        for (b, s) in batches.iter_mut().zip(&sockets) {
            if b.len > 0 {
                b.flush(s, base, window_ns, &mut sent);
            }
        }
        if k < total {
            let next = Duration::from_nanos(due(k).max(now + TICK.as_nanos() as u64));
            sleep_until(base + next);
        }
    }
    Ok(sent)
}

struct Received {
    in_window: u64,
    /// One-way latency, nanoseconds.
    latency: Histogram<u64>,
}

impl Received {
    fn new() -> Result<Received, Error> {
        Ok(Received {
            in_window: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        })
    }
}

/// Reads one socket in a blocking `recvmmsg` loop until `end`; the clock is
/// read once per batch.
fn receive(
    socket: StdUdpSocket,
    base: Instant,
    window_ns: (u64, u64),
    end: Instant,
) -> Result<Received, Error> {
    socket.set_read_timeout(Some(RECV_TIMEOUT))?;
    let mut got = Received::new()?;
    let mut slots = vec![RecvSlot::<RECV_BUF>::new(); RECV_BATCH];
    let mut out = [Datagram::default(); RECV_BATCH];
    loop {
        let n = match recv_mmsg(&socket, &mut slots, &mut out) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e.into()),
        };
        let now = Instant::now();
        if now >= end {
            break;
        }
        let now = now.duration_since(base).as_nanos() as u64;
        for (slot, d) in slots.iter().zip(&out[..n]) {
            let Some((_flow, _seq, sent)) = read_packet(&slot.buf[..d.len.min(RECV_BUF)]) else {
                continue;
            };
            if sent >= window_ns.0 && sent < window_ns.1 {
                got.in_window += 1;
                got.latency
                    .saturating_record(now.saturating_sub(sent).max(1));
            }
        }
    }
    Ok(got)
}

/// CPU jiffies (USER_HZ, 100/s on Linux) of the server, this process and the
/// whole machine, and the kernel's UDP receive-buffer drop counter.
struct Usage {
    at: Instant,
    server: u64,
    me: u64,
    busy: u64,
    rcvbuf_errors: u64,
}

struct CpuShare {
    server_pct: f64,
    self_pct: f64,
    other_pct: f64,
    rcvbuf_errors: u64,
}

impl Usage {
    fn sample(server: Option<u32>) -> Usage {
        let at = Instant::now();
        let proc_cpu = |path: String| -> u64 {
            let Ok(s) = fs::read_to_string(path) else {
                return 0;
            };
            // Fields after the command (which may hold spaces): state is
            // the 3rd field, utime and stime the 14th and 15th.
            let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
        };
        let (busy, _steal) = machine_busy();
        Usage {
            at,
            server: server.map_or(0, |p| proc_cpu(format!("/proc/{p}/stat"))),
            me: proc_cpu("/proc/self/stat".into()),
            busy,
            rcvbuf_errors: udp_rcvbuf_errors(),
        }
    }

    fn minus(&self, before: &Usage) -> CpuShare {
        let secs = self.at.duration_since(before.at).as_secs_f64();
        let pct = |j: u64| j as f64 / 100.0 / secs * 100.0;
        let server = self.server.saturating_sub(before.server);
        let me = self.me.saturating_sub(before.me);
        let busy = self.busy.saturating_sub(before.busy);
        CpuShare {
            server_pct: pct(server),
            self_pct: pct(me),
            other_pct: pct(busy.saturating_sub(server + me)),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(before.rcvbuf_errors),
        }
    }
}
