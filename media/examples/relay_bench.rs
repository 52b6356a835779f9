//! Load tool for the relay benchmark (`bench/media.sh`).
//!
//! Three modes, each its own process so that the relay is measured on its own
//! scheduler, apart from the load that drives it:
//!
//! ```text
//! relay_bench relay --streams N --ports-file F [--port-min P] [--workers W]
//! relay_bench echo  --streams N --ports-file F [--workers W]
//! relay_bench load  --streams N --ports-file F [--warmup S] [--duration S]
//!                   [--drain S] [--both] [--server-pid PID] [--label L]
//! ```
//!
//! `relay` runs the real `media::Relay` on a multi-thread tokio runtime (as
//! the switch does) and opens N streams; `echo` is the ceiling: the same shape
//! (a socket pair per stream, a packet in on one leaves from the other to the
//! address last heard on the other, tokio, one task per socket) without the
//! relay's logic. Both write one line per stream, `A-port B-port`, to the ports
//! file and run until SIGINT.
//!
//! `load` is the generator. Per stream one socket faces the A-side port and
//! one the B-side port (each `connect`ed to it, so it hears only from it). A
//! stream is one-way, A→B: 172-byte RTP packets (12-byte header, 160 bytes of
//! G.711 silence) every 20 ms, start times spread over the 20 ms, each
//! carrying its stream, sequence number and send time (monotonic nanoseconds,
//! the sender and receiver share the process's clock). With `--both` each
//! relay stream also carries B→A, counted as a second stream. The B socket
//! speaks first, so that the relay latches it. Packets sent during the
//! measured window (after the warm-up) and received by the end of the window
//! plus the drain count; the rest are lost. It prints one line of `key=value`
//! pairs: streams, packets/s offered and received, loss, one-way latency
//! percentiles (µs), CPU of the server, of itself and of everything else on the
//! machine during the window (in % of one core) and the kernel's UDP receive
//! buffer drops (machine-wide).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use std::{env, fs, process, thread};

use hdrhistogram::Histogram;
use media::{Relay, RelayConfig, Side, Stream};
use tokio::net::UdpSocket;

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
        "relay" => serve(&opts, Server::Relay),
        "echo" => serve(&opts, Server::Echo),
        "load" => load(&opts),
        _ => usage("the mode is relay, echo or load"),
    };
    if let Err(e) = result {
        eprintln!("relay_bench {mode}: {e}");
        process::exit(1);
    }
}

fn usage(why: &str) -> ! {
    eprintln!("relay_bench: {why}");
    eprintln!("usage: relay_bench relay|echo|load --streams N --ports-file F [options]");
    eprintln!("  relay: --port-min P (12000) --workers W (cores)");
    eprintln!("  echo:  --workers W (cores)");
    eprintln!(
        "  load:  --warmup S (3) --duration S (20) --drain S (1) --both --server-pid PID --label L"
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
                "--server-pid" => o.server_pid = Some(value.parse().map_err(|_| bad())?),
                "--label" => o.label = value.clone(),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if o.streams == 0 || o.ports_file.is_empty() {
            return Err("--streams and --ports-file are required".into());
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- servers

#[derive(Clone, Copy)]
enum Server {
    Relay,
    Echo,
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
        });
        for _ in 0..opts.streams {
            let (a, b) = match server {
                Server::Relay => {
                    let s = relay.open()?;
                    let ports = (s.rtp_port(Side::A), s.rtp_port(Side::B));
                    keep.push(s);
                    ports
                }
                Server::Echo => echo_pair().await?,
            };
            lines.push_str(&format!("{a} {b}\n"));
        }
        let tmp = format!("{}.tmp", opts.ports_file);
        fs::write(&tmp, lines)?;
        fs::rename(&tmp, &opts.ports_file)?;
        tokio::signal::ctrl_c().await?;
        if let Server::Relay = server {
            let st = relay.stats();
            eprintln!(
                "relay: {} streams, {} packets relayed, {} dropped",
                st.streams.load(Ordering::Relaxed),
                st.packets_relayed.load(Ordering::Relaxed),
                st.packets_dropped.load(Ordering::Relaxed)
            );
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

/// One direction of one relay stream.
struct Flow {
    /// Socket (index into the generator's sockets) it is sent from.
    tx: usize,
}

fn load(opts: &Opts) -> Result<(), Error> {
    let ports = read_ports(&opts.ports_file, opts.streams)?;
    // Per relay stream: the socket facing its A port, then the one facing B.
    let mut sockets = Vec::with_capacity(ports.len() * 2);
    for &(a, b) in &ports {
        for port in [a, b] {
            let s = StdUdpSocket::bind((LOCALHOST, 0))?;
            s.connect((LOCALHOST, port))?;
            sockets.push(s);
        }
    }
    let mut flows: Vec<Flow> = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..ports.len() {
        flows.push(Flow { tx: 2 * i });
        receivers.push(2 * i + 1);
        if opts.both {
            flows.push(Flow { tx: 2 * i + 1 });
            receivers.push(2 * i);
        }
    }
    // The B side speaks first: the relay latches it, A then has somewhere
    // to go. (A priming packet the relay does pass on is ignored.)
    let mut priming = [0u8; PACKET];
    write_packet(&mut priming, PRIMING, 0, 0);
    for _ in 0..2 {
        for i in 0..ports.len() {
            let _ = sockets[2 * i + 1].send(&priming);
        }
        thread::sleep(Duration::from_millis(100));
    }

    let base = Instant::now();
    let start = base + Duration::from_millis(50);
    let window = (start + opts.warmup, start + opts.warmup + opts.duration);
    let nanos = |t: Instant| t.duration_since(base).as_nanos() as u64;
    let window_ns = (nanos(window.0), nanos(window.1));

    let rx_sockets: Vec<StdUdpSocket> = receivers
        .iter()
        .map(|&i| sockets[i].try_clone())
        .collect::<Result<_, _>>()?;
    let rx_end = window.1 + opts.drain;
    let receiver = thread::spawn(move || receive(rx_sockets, base, window_ns, rx_end));
    let sender = thread::spawn(move || send(sockets, flows, base, start, window));

    // Who used the CPU during the window.
    sleep_until(window.0);
    let before = Usage::sample(opts.server_pid);
    sleep_until(window.1);
    let after = Usage::sample(opts.server_pid);

    let sent = sender.join().map_err(|_| "sender panicked")??;
    let got = receiver.join().map_err(|_| "receiver panicked")??;

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
         late_sends={} server_cpu={:.0} load_cpu={:.0} other_cpu={:.0} rcvbuf_errors={}",
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
    p[20..28].copy_from_slice(&sent_ns.to_le_bytes());
    p[28..].fill(0xFF);
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

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

struct Sent {
    in_window: u64,
    /// Packets sent more than 2 ms after their slot: the generator itself
    /// could not keep pace (so the offered rate is off).
    late: u64,
}

/// Paces every flow at one packet per 20 ms, flow i at offset i/N of the
/// period, from one thread, until the window closes.
fn send(
    sockets: Vec<StdUdpSocket>,
    flows: Vec<Flow>,
    base: Instant,
    start: Instant,
    window: (Instant, Instant),
) -> Result<Sent, Error> {
    let n = flows.len() as u32;
    let mut packet = [0u8; PACKET];
    let mut sent = Sent {
        in_window: 0,
        late: 0,
    };
    let slack = Duration::from_micros(50);
    for round in 0u32.. {
        let round_start = start + PTIME * round;
        if round_start >= window.1 {
            break;
        }
        for (i, flow) in flows.iter().enumerate() {
            let due = round_start + PTIME * i as u32 / n;
            let mut now = Instant::now();
            if due > now + slack {
                thread::sleep(due - now);
                now = Instant::now();
            } else if now > due + Duration::from_millis(2) {
                sent.late += 1;
            }
            let ns = now.duration_since(base).as_nanos() as u64;
            write_packet(&mut packet, i as u32, round, ns);
            if sockets[flow.tx].send(&packet).is_ok() && now >= window.0 && now < window.1 {
                sent.in_window += 1;
            }
        }
    }
    Ok(sent)
}

struct Received {
    in_window: u64,
    /// One-way latency, nanoseconds.
    latency: Histogram<u64>,
}

/// One task per receiving socket on a single-threaded runtime (the
/// generator leaves the other core to the server as far as it can).
fn receive(
    sockets: Vec<StdUdpSocket>,
    base: Instant,
    window_ns: (u64, u64),
    end: Instant,
) -> Result<Received, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let state = Rc::new(RefCell::new(Received {
        in_window: 0,
        latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
    }));
    local.block_on(&rt, async {
        for s in sockets {
            s.set_nonblocking(true)?;
            let s = UdpSocket::from_std(s)?;
            let state = state.clone();
            tokio::task::spawn_local(async move {
                let mut buf = [0u8; 2048];
                loop {
                    let Ok(n) = s.recv(&mut buf).await else {
                        continue;
                    };
                    let now = Instant::now().duration_since(base).as_nanos() as u64;
                    let Some((_flow, _seq, sent)) = read_packet(&buf[..n]) else {
                        continue;
                    };
                    if sent >= window_ns.0 && sent < window_ns.1 {
                        let mut st = state.borrow_mut();
                        st.in_window += 1;
                        st.latency
                            .saturating_record(now.saturating_sub(sent).max(1));
                    }
                }
            });
        }
        tokio::time::sleep_until(end.into()).await;
        Ok::<_, Error>(())
    })?;
    drop(local);
    let st = state.borrow();
    Ok(Received {
        in_window: st.in_window,
        latency: st.latency.clone(),
    })
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
        let busy = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?.to_owned();
                let f: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .map(|x| x.parse().unwrap_or(0))
                    .collect();
                // user nice system idle iowait irq softirq steal
                Some(f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?)
            })
            .unwrap_or(0);
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

fn udp_rcvbuf_errors() -> u64 {
    let Ok(s) = fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let udp: Vec<&str> = s.lines().filter(|l| l.starts_with("Udp:")).collect();
    let [names, values] = udp[..] else {
        return 0;
    };
    let m: HashMap<&str, &str> = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .collect();
    m.get("RcvbufErrors")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
