//! The RTP/RTCP relay: per media stream, a port pair facing each side of a
//! call, and packets that arrive on one side's pair leave from the other's.
//!
//! Nothing is decrypted or parsed beyond what routing needs: SRTP, SRTCP and
//! DTLS pass as opaque bytes. STUN is told apart (RFC 7983) only so that a
//! connectivity check's answer goes back to the very address that asked,
//! which makes the relay's candidate behave like a TURN relay for ICE: the
//! checks, and so the nomination, stay end to end between the two agents.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::endpoint::{Endpoint, EndpointConfig, EndpointError};
use crate::kernel::{Kernel, Op};
use crate::ports::PortPool;

/// Which side of a call a port faces: `A` the caller, `B` the callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// Where the relay binds and which ports it may use.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub bind: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// Hand settled plain RTP streams to the kernel (nftables; see the
    /// `kernel` module). Falls back to the relay's sockets, with a
    /// warning, when the kernel cannot take them.
    pub kernel_forwarding: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("no free relay port pair left in the range")]
    Exhausted,
    #[error("cannot bind relay port {port}: {source}")]
    Bind { port: u16, source: io::Error },
}

/// Counters for /metrics. A leak shows as `ports_in_use` or `streams` that
/// do not return to zero when calls are over.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub streams: AtomicUsize,
    pub ports_in_use: AtomicUsize,
    pub packets_relayed: AtomicU64,
    /// Packets with nowhere to go yet (the other side has not been heard
    /// from and announced no address) or that could not be sent.
    pub packets_dropped: AtomicU64,
    /// Stream directions (one relay port each) the kernel forwards; their
    /// packets are not in `packets_relayed`.
    pub streams_in_kernel: AtomicUsize,
}

/// How long a released pair rests, still bound, before another call gets
/// it: late packets of the old call arrive meanwhile and are thrown away
/// before the pair is handed out again, so they cannot steal the new call's
/// latching.
const REUSE_AFTER: Duration = Duration::from_secs(2);
/// How long a released pair stays bound waiting for a call; then its
/// sockets close and its ports go back to the range.
const CLOSE_AFTER: Duration = Duration::from_secs(30);
/// Packets thrown away from a resting pair before it counts as flooded and
/// is closed instead of reused.
const DRAIN_MAX: usize = 256;

struct RelayInner {
    config: RelayConfig,
    pool: Mutex<PortPool>,
    /// Released pairs, oldest first, kept bound for the next calls: opening
    /// and closing four sockets (socket, bind, epoll registration, close)
    /// was a tenth of the switch's CPU at 1,000 anchored calls per second.
    resting: Mutex<VecDeque<Resting>>,
    reuse_after: Duration,
    stats: Arc<RelayStats>,
    kernel: Option<Arc<Kernel>>,
}

struct Resting {
    since: Instant,
    pair: Pair,
}

/// The port range and what is open on it. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<RelayInner>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Relay {
    pub fn new(config: RelayConfig) -> Relay {
        Relay::with_reuse_after(config, REUSE_AFTER)
    }

    fn with_reuse_after(config: RelayConfig, reuse_after: Duration) -> Relay {
        let pool = PortPool::new(config.port_min, config.port_max);
        let stats = Arc::new(RelayStats::default());
        let kernel = config.kernel_forwarding.then(|| {
            Kernel::start(config.bind, config.port_min, config.port_max, stats.clone())
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "kernel forwarding unavailable: the relay carries every packet");
                })
                .ok()
                .map(Arc::new)
        });
        Relay {
            inner: Arc::new(RelayInner {
                config,
                pool: Mutex::new(pool),
                resting: Mutex::new(VecDeque::new()),
                reuse_after,
                stats,
                kernel: kernel.flatten(),
            }),
        }
    }

    /// Whether settled streams are being handed to the kernel.
    pub fn kernel_forwarding(&self) -> bool {
        self.inner.kernel.is_some()
    }

    /// Takes back from the kernel every stream it carries and removes the
    /// relay's nftables table (at exit: the table would outlive the
    /// process).
    pub fn shutdown(&self) {
        if let Some(kernel) = &self.inner.kernel {
            kernel.shutdown();
        }
    }

    pub fn stats(&self) -> Arc<RelayStats> {
        self.inner.stats.clone()
    }

    pub fn bind_address(&self) -> IpAddr {
        self.inner.config.bind
    }

    /// Opens a stream: an RTP/RTCP port pair for each side, relaying at once.
    /// Must be called inside a tokio runtime.
    pub fn open(&self) -> Result<Stream, RelayError> {
        let a = self.take_pair()?;
        let b = match self.take_pair() {
            Ok(b) => b,
            Err(e) => {
                self.rest(a);
                return Err(e);
            }
        };
        let shared = Arc::new(Shared::new(
            self.inner.stats.clone(),
            self.inner.kernel.clone(),
            [a.port, b.port],
        ));
        let mut tasks = Vec::with_capacity(4);
        for component in 0..2 {
            for (side, mine, theirs) in [(Side::A, &a, &b), (Side::B, &b, &a)] {
                let task = tokio::spawn(pump(
                    shared.clone(),
                    side,
                    component,
                    mine.sockets[component].clone(),
                    theirs.sockets[component].clone(),
                ));
                tasks.push(task.abort_handle());
            }
        }
        self.inner.stats.streams.fetch_add(1, Ordering::Relaxed);
        Ok(Stream {
            relay: self.clone(),
            pairs: vec![a, b],
            shared,
            tasks,
        })
    }

    /// Opens an RTP endpoint that terminates one audio stream here (the
    /// switch answering as a user agent), on a pair of the relay's range
    /// taken and given back like a relayed stream's. Must be called inside
    /// a tokio runtime (else [`EndpointError::NoRuntime`]).
    pub fn open_endpoint(&self, config: EndpointConfig) -> Result<Endpoint, EndpointError> {
        Endpoint::open(self, config)
    }

    /// A pair for a new stream: one that has rested long enough, else a
    /// newly bound one, else (the range is used up) the pair that has
    /// rested longest.
    pub(crate) fn take_pair(&self) -> Result<Pair, RelayError> {
        let pair = match self.reuse(self.inner.reuse_after) {
            Some(pair) => pair,
            None => match self.bind_pair() {
                Ok(pair) => pair,
                Err(e) => self.reuse(Duration::ZERO).ok_or(e)?,
            },
        };
        self.inner
            .stats
            .ports_in_use
            .fetch_add(2, Ordering::Relaxed);
        Ok(pair)
    }

    /// The oldest resting pair if it has rested `rested`, emptied of what
    /// arrived meanwhile. Pairs rested past [`CLOSE_AFTER`] are closed on
    /// the way.
    fn reuse(&self, rested: Duration) -> Option<Pair> {
        let mut resting = lock(&self.inner.resting);
        loop {
            let oldest = resting.front()?;
            let age = oldest.since.elapsed();
            // The kernel must have let go of the last call's packets first.
            let clearing =
                self.inner.kernel.as_ref().is_some_and(|k| {
                    k.clearing(oldest.pair.port) || k.clearing(oldest.pair.port + 1)
                });
            if age < rested || clearing {
                return None;
            }
            let pair = resting.pop_front()?.pair;
            if age < CLOSE_AFTER && pair.drained() {
                return Some(pair);
            }
            self.close(pair);
        }
    }

    /// Closes a pair's sockets and returns its ports to the range.
    fn close(&self, pair: Pair) {
        let port = pair.port;
        drop(pair);
        lock(&self.inner.pool).give(port);
    }

    /// Takes back a pair a stream used: it rests, still bound.
    pub(crate) fn rest(&self, pair: Pair) {
        self.inner
            .stats
            .ports_in_use
            .fetch_sub(2, Ordering::Relaxed);
        let mut resting = lock(&self.inner.resting);
        resting.push_back(Resting {
            since: Instant::now(),
            pair,
        });
        // A quiet switch closes what no call came for.
        while resting
            .front()
            .is_some_and(|r| r.since.elapsed() >= CLOSE_AFTER)
        {
            if let Some(old) = resting.pop_front() {
                self.close(old.pair);
            }
        }
    }

    /// Binds the next free pair; a pair some other program holds is skipped.
    fn bind_pair(&self) -> Result<Pair, RelayError> {
        let ip = self.inner.config.bind;
        let mut last_err = None;
        for _ in 0..64 {
            let Some(port) = lock(&self.inner.pool).take() else {
                break;
            };
            match (bind(ip, port), bind(ip, port + 1)) {
                (Ok(rtp), Ok(rtcp)) => {
                    return Ok(Pair {
                        port,
                        sockets: [Arc::new(rtp), Arc::new(rtcp)],
                    });
                }
                (Err(e), _) | (_, Err(e)) => {
                    // Another program holds it: tried again much later.
                    tracing::debug!(port, error = %e, "relay port pair busy: skipped");
                    lock(&self.inner.pool).give(port);
                    last_err = Some(RelayError::Bind { port, source: e });
                }
            }
        }
        Err(last_err.unwrap_or(RelayError::Exhausted))
    }
}

fn bind(ip: IpAddr, port: u16) -> io::Result<UdpSocket> {
    let socket = StdUdpSocket::bind(SocketAddr::new(ip, port))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An RTP/RTCP port pair, bound: the RTP socket, then the RTCP one.
pub(crate) struct Pair {
    pub(crate) port: u16,
    pub(crate) sockets: [Arc<UdpSocket>; 2],
}

impl Pair {
    /// Throws away what is queued on the sockets. False when a pump task of
    /// the last stream still holds a socket or packets keep coming: the
    /// pair is then closed rather than handed out.
    fn drained(&self) -> bool {
        let mut buf = [0u8; 2048];
        self.sockets.iter().all(|socket| {
            Arc::strong_count(socket) == 1
                && (0..DRAIN_MAX).any(|_| {
                    matches!(socket.try_recv_from(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                })
        })
    }
}

/// STUN transactions remembered per side, to send each answer back to the
/// address that asked. ICE sends a few checks per pair; a short memory is
/// enough and bounds what a flood can cost.
const PENDING_CHECKS: usize = 32;

#[derive(Default)]
struct Peer {
    /// Where packets for this side go: the source of the latest packet
    /// received from it (symmetric latching, which also crosses NATs).
    latched: Option<SocketAddr>,
    /// What its SDP announced, used until it has sent anything.
    announced: Option<SocketAddr>,
    /// STUN requests received from this side: transaction id → source.
    pending: VecDeque<([u8; 12], SocketAddr)>,
    /// This side's ICE credentials (from its SDP): checks sent *toward* it
    /// must carry them.
    ice: Option<Arc<IceCredentials>>,
    /// Sources of this side that passed a connectivity check: with ICE on
    /// both sides, only these may send media through the relay.
    verified: VecDeque<SocketAddr>,
    /// Packets from `latched` since it was latched.
    settled: u32,
}

/// One component's kernel forwarding, both directions under one lock so
/// that a side moving and the other side being handed over cannot cross.
#[derive(Default)]
struct Handover {
    /// Each side's latest source as seen here.
    latest: [Option<SocketAddr>; 2],
    /// What the kernel forwards for packets from each side: from, to.
    in_kernel: [Option<(SocketAddr, SocketAddr)>; 2],
    /// The stream is gone: nothing more is handed over.
    closed: bool,
}

/// ICE short-term credentials as an SDP gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// Addresses of one side remembered as verified (its candidates' bases
/// and NAT mappings).
const VERIFIED_SOURCES: usize = 8;

/// Packets from one latched source before its direction is handed to the
/// kernel (a second of 20 ms audio): short calls and streams still moving
/// (ICE, re-INVITEs) stay in user space.
const SETTLED_AFTER: u32 = 50;

pub(crate) struct Shared {
    /// By side, then component (0 RTP, 1 RTCP).
    peers: [[Mutex<Peer>; 2]; 2],
    /// The RTP port facing each side.
    ports: [u16; 2],
    kernel: Option<Arc<Kernel>>,
    /// By component.
    handover: [Mutex<Handover>; 2],
    born: Instant,
    /// Milliseconds after `born` of the latest packet, for silence detection.
    last_packet_ms: AtomicU64,
    /// Some side announced ICE credentials.
    ice: AtomicBool,
    /// Where copies of the RTP packets go while the call is recorded.
    tap: OnceLock<mpsc::Sender<Tapped>>,
    stats: Arc<RelayStats>,
}

/// A copy of an RTP packet the relay carried, for a call recorder.
#[derive(Debug)]
pub struct Tapped {
    /// The side that sent it.
    pub from: Side,
    pub at: Instant,
    pub packet: Vec<u8>,
}

/// Packets a recorder may fall behind by before copies are dropped (two
/// seconds of both directions at 20 ms).
const TAP_QUEUE: usize = 200;

impl Shared {
    fn new(stats: Arc<RelayStats>, kernel: Option<Arc<Kernel>>, ports: [u16; 2]) -> Shared {
        Shared {
            peers: Default::default(),
            ports,
            kernel,
            handover: Default::default(),
            born: Instant::now(),
            last_packet_ms: AtomicU64::new(0),
            ice: AtomicBool::new(false),
            tap: OnceLock::new(),
            stats,
        }
    }

    fn peer(&self, side: Side, component: usize) -> MutexGuard<'_, Peer> {
        lock(&self.peers[side.index()][component])
    }

    /// Learns from a packet that arrived from `side` and says where it goes;
    /// `None` drops it.
    ///
    /// Without ICE the latest source of a side is where its packets go back
    /// (symmetric latching). With ICE on both sides, a side's checks must be
    /// keyed with the other side's credentials from the SDP (they are meant
    /// for that agent), and only sources that passed a check may send media
    /// or re-latch: a stranger who guesses a relay port can neither inject
    /// nor divert a call's media.
    fn route(
        self: &Arc<Self>,
        side: Side,
        component: usize,
        src: SocketAddr,
        packet: &[u8],
    ) -> Option<SocketAddr> {
        let stun = stun_kind(packet);
        // Plain RTP streams (no ICE) take no look at the other side here.
        // Read before `me` is locked: the other side's task locks in the
        // opposite order.
        let their_ice = if self.ice.load(Ordering::Relaxed) {
            self.peer(side.other(), component).ice.clone()
        } else {
            None
        };
        let settled = {
            let mut me = self.peer(side, component);
            let before = me.latched;
            let checked = me.ice.is_some() && their_ice.is_some();
            match (&stun, &their_ice) {
                (Some(StunKind::Request(id)), Some(theirs)) if checked => {
                    let use_candidate = valid_check(packet, theirs)?;
                    if !me.verified.contains(&src) {
                        push_bounded(&mut me.verified, src, VERIFIED_SOURCES);
                    }
                    // The controlling agent's nomination picks the path.
                    if use_candidate || me.latched.is_none() {
                        me.latched = Some(src);
                    }
                    push_bounded(&mut me.pending, (*id, src), PENDING_CHECKS);
                }
                (Some(StunKind::Request(id)), _) => {
                    me.latched = Some(src);
                    push_bounded(&mut me.pending, (*id, src), PENDING_CHECKS);
                }
                // Answers are routed by transaction below; one nobody asked
                // for goes nowhere.
                (Some(StunKind::Response(_)), _) => {}
                _ if checked => {
                    if !me.verified.contains(&src) {
                        return None;
                    }
                    me.latched = Some(src);
                }
                _ => me.latched = Some(src),
            }
            if me.latched != before {
                me.settled = 0;
            }
            me.settled = me.settled.saturating_add(1);
            me.settled
        };
        self.touch();
        let dest = {
            let mut other = self.peer(side.other(), component);
            if let Some(StunKind::Response(id)) = stun {
                let pos = other.pending.iter().position(|(t, _)| *t == id)?;
                return other.pending.remove(pos).map(|(_, asked)| asked);
            }
            other.latched.or(other.announced)
        };
        if let Some(kernel) = &self.kernel
            && stun.is_none()
            && !self.ice.load(Ordering::Relaxed)
            // A recorded stream's packets must all pass here.
            && self.tap.get().is_none()
        {
            return self.hand_over(kernel, side, component, src, dest, settled);
        }
        dest
    }

    /// Keeps the kernel's entries for a plain stream in step with a packet
    /// the relay got from `src` (so the kernel did not take it): the other
    /// direction follows `src`, and this direction is handed over once its
    /// source has settled. Returns where the packet goes.
    fn hand_over(
        self: &Arc<Self>,
        kernel: &Kernel,
        side: Side,
        component: usize,
        src: SocketAddr,
        dest: Option<SocketAddr>,
        settled: u32,
    ) -> Option<SocketAddr> {
        let mut h = lock(&self.handover[component]);
        let (me, them) = (side.index(), side.other().index());
        h.latest[me] = Some(src);
        let dest = h.latest[them].or(dest);
        if h.closed {
            return dest;
        }
        let port = |i: usize| self.port(i, component);
        let set = |h: &mut Handover, i: usize, from: SocketAddr, to: SocketAddr| {
            h.in_kernel[i] = None;
            if kernel.carries(from, to) {
                h.in_kernel[i] = Some((from, to));
                kernel.send(Op::Set {
                    port: port(i),
                    from,
                    to,
                    out_port: port(1 - i),
                    stream: Arc::downgrade(self),
                });
            } else {
                kernel.send(Op::Clear { port: port(i) });
            }
        };
        // The other side's packets, if the kernel carries them, follow
        // this side to where it now sends from.
        if let Some((from, to)) = h.in_kernel[them]
            && to != src
        {
            set(&mut h, them, from, src);
        }
        if let Some(to) = dest
            && settled >= SETTLED_AFTER
            && h.in_kernel[me] != Some((src, to))
        {
            set(&mut h, me, src, to);
        }
        dest
    }

    /// The relay port facing side `i` (0 A, 1 B) for `component`.
    fn port(&self, i: usize, component: usize) -> u16 {
        self.ports[i] + component as u16
    }

    /// A packet of this stream went by (through the relay, or lately
    /// through the kernel).
    pub(crate) fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_packet_ms.store(ms, Ordering::Relaxed);
    }

    /// Takes the stream's directions back from the kernel: for good when
    /// `closed`, else until they settle again (ICE appeared: the relay must
    /// check every source again).
    fn take_back(&self, closed: bool) {
        let Some(kernel) = &self.kernel else { return };
        for (component, handover) in self.handover.iter().enumerate() {
            let mut h = lock(handover);
            h.closed |= closed;
            for (i, entry) in h.in_kernel.iter_mut().enumerate() {
                if entry.take().is_some() {
                    kernel.send(Op::Clear {
                        port: self.port(i, component),
                    });
                }
            }
        }
    }
}

/// Appends, forgetting the oldest entry once `max` are held.
fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() == max {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// A connectivity check toward the agent with credentials `to`: USERNAME
/// `to.ufrag:…` and MESSAGE-INTEGRITY keyed with `to.pwd` (RFC 8445
/// §7.2.2). Returns whether it nominates (USE-CANDIDATE); `None` if invalid.
fn valid_check(packet: &[u8], to: &IceCredentials) -> Option<bool> {
    let message = crate::stun::Message::decode(packet).ok()?;
    let username = message.username()?;
    let (target, _) = username.split_once(':')?;
    if target != to.ufrag {
        return None;
    }
    crate::stun::verify_integrity(packet, to.pwd.as_bytes()).ok()?;
    Some(message.use_candidate())
}

enum StunKind {
    Request([u8; 12]),
    Response([u8; 12]),
    /// Binding indications (ICE keepalives) travel like media.
    Indication,
}

/// RFC 7983 demultiplexing plus the RFC 5389 magic cookie: RTP and RTCP
/// start with version 2 (first byte 128..191), STUN with 0..3.
fn stun_kind(p: &[u8]) -> Option<StunKind> {
    if p.len() < 20 || p[0] > 3 || p[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let mut id = [0u8; 12];
    id.copy_from_slice(&p[8..20]);
    // The class is bits C1 (0x0100) and C0 (0x0010) of the message type.
    Some(match (p[0] & 0x01, p[1] & 0x10) {
        (0, 0) => StunKind::Request(id),
        (0, _) => StunKind::Indication,
        _ => StunKind::Response(id),
    })
}

async fn pump(
    shared: Arc<Shared>,
    side: Side,
    component: usize,
    mine: Arc<UdpSocket>,
    theirs: Arc<UdpSocket>,
) {
    // Larger than any UDP payload an Ethernet path carries; jumbo
    // datagrams are truncated, which no RTP stack sends.
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, src) = match mine.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some
                // systems; they say nothing about this socket.
                tracing::trace!(error = %e, "relay receive error");
                continue;
            }
        };
        let Some(dest) = shared.route(side, component, src, &buf[..n]) else {
            shared.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if component == 0
            && n > 0
            && buf[0] >> 6 == 2
            && let Some(tap) = shared.tap.get()
        {
            // A recorder that cannot keep up loses copies, never the call's
            // packets.
            let _ = tap.try_send(Tapped {
                from: side,
                at: Instant::now(),
                packet: buf[..n].to_vec(),
            });
        }
        match theirs.send_to(&buf[..n], dest).await {
            Ok(_) => shared.stats.packets_relayed.fetch_add(1, Ordering::Relaxed),
            Err(_) => shared.stats.packets_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// One media stream (an SDP m-line) of a call. Dropping it stops relaying
/// and returns its ports.
pub struct Stream {
    relay: Relay,
    /// Side A's pair, then side B's; emptied only when the stream is dropped.
    pairs: Vec<Pair>,
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Stream {
    /// The RTP port facing `side`: what that side's SDP must point at.
    pub fn rtp_port(&self, side: Side) -> u16 {
        self.pairs[side.index()].port
    }

    /// The RTCP port facing `side` (RTP port + 1).
    pub fn rtcp_port(&self, side: Side) -> u16 {
        self.rtp_port(side) + 1
    }

    /// What `side`'s SDP announced: where its packets go until it is heard from.
    pub fn announce(&self, side: Side, rtp: SocketAddr, rtcp: SocketAddr) {
        self.shared.peer(side, 0).announced = Some(rtp);
        self.shared.peer(side, 1).announced = Some(rtcp);
    }

    /// `side`'s ICE credentials from its SDP (a new pair is an ICE restart:
    /// its sources must pass a check again).
    pub fn set_ice(&self, side: Side, credentials: IceCredentials) {
        let credentials = Arc::new(credentials);
        self.shared.ice.store(true, Ordering::Relaxed);
        self.shared.take_back(false);
        for component in 0..2 {
            let mut peer = self.shared.peer(side, component);
            if peer.ice.as_deref() != Some(&*credentials) {
                peer.ice = Some(credentials.clone());
                peer.verified.clear();
            }
        }
    }

    /// Copies of every RTP packet relayed from now on, either way (a call
    /// being recorded): the stream stays out of the kernel's hands from
    /// now on. `None` if the stream is tapped already.
    pub fn tap(&self) -> Option<mpsc::Receiver<Tapped>> {
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        self.shared.tap.set(tx).ok()?;
        self.shared.take_back(false);
        Some(rx)
    }

    /// The address `side` sends RTP from, once it has sent any.
    pub fn latched(&self, side: Side) -> Option<SocketAddr> {
        self.shared.peer(side, 0).latched
    }

    /// Time since the last packet either way (since opening if none).
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.shared.last_packet_ms.load(Ordering::Relaxed));
        self.shared.born.elapsed().saturating_sub(last)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.take_back(true);
        for t in &self.tasks {
            t.abort();
        }
        for pair in self.pairs.drain(..) {
            self.relay.rest(pair);
        }
        self.relay
            .inner
            .stats
            .streams
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field(
                "ports",
                &self.pairs.iter().map(|p| p.port).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(min: u16, max: u16) -> Relay {
        Relay::new(RelayConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            port_min: min,
            port_max: max,
            kernel_forwarding: false,
        })
    }

    async fn socket() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    async fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 2048];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf))
            .await
            .expect("packet relayed in time")
            .unwrap();
        (buf[..n].to_vec(), from)
    }

    fn rtp(seq: u8) -> Vec<u8> {
        let mut p = vec![0x80, 0x00, 0x00, seq];
        p.extend_from_slice(&[0u8; 8]);
        p.extend_from_slice(&[seq; 160]);
        p
    }

    #[tokio::test]
    async fn packets_cross_byte_identical_from_the_relay_ports() {
        let relay = relay(41000, 41099);
        let stream = relay.open().unwrap();
        let (a, b) = (socket().await, socket().await);
        let relay_a = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::A));
        let relay_b = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::B));
        let b_addr = b.local_addr().unwrap();
        stream.announce(
            Side::B,
            b_addr,
            SocketAddr::new(b_addr.ip(), b_addr.port() + 1),
        );
        // A speaks first: B is reached at its announced address.
        a.send_to(&rtp(1), relay_a).await.unwrap();
        let (got, from) = recv(&b).await;
        assert_eq!((got, from), (rtp(1), relay_b));
        // B answers; A was latched from its first packet.
        b.send_to(&rtp(2), relay_b).await.unwrap();
        let (got, from) = recv(&a).await;
        assert_eq!((got, from), (rtp(2), relay_a));
        assert_eq!(stream.latched(Side::A), Some(a.local_addr().unwrap()));
        assert_eq!(relay.stats().packets_relayed.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_tapped_stream_copies_each_rtp_packet_with_its_side() {
        let relay = relay(42400, 42419);
        let stream = relay.open().unwrap();
        let (a, b) = (socket().await, socket().await);
        let relay_a = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::A));
        let relay_b = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::B));
        a.send_to(&rtp(1), relay_a).await.unwrap();
        let mut tap = stream.tap().expect("first tap");
        assert!(stream.tap().is_none(), "one recorder per stream");
        b.send_to(&rtp(2), relay_b).await.unwrap();
        recv(&a).await;
        a.send_to(&rtp(3), relay_a).await.unwrap();
        recv(&b).await;
        // STUN on the RTP port is relayed but not copied.
        let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        stun.extend_from_slice(&[7u8; 12]);
        a.send_to(&stun, relay_a).await.unwrap();
        recv(&b).await;
        let first = tap.recv().await.unwrap();
        let second = tap.recv().await.unwrap();
        assert_eq!((first.from, first.packet), (Side::B, rtp(2)));
        assert_eq!((second.from, second.packet), (Side::A, rtp(3)));
        assert!(second.at >= first.at);
        assert!(
            tap.try_recv().is_err(),
            "nothing from before the tap, no STUN"
        );
    }

    #[tokio::test]
    async fn latching_follows_a_side_that_moves() {
        let relay = relay(41100, 41199);
        let stream = relay.open().unwrap();
        let (a1, a2, b) = (socket().await, socket().await, socket().await);
        let relay_a = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::A));
        let relay_b = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::B));
        b.send_to(&rtp(1), relay_b).await.unwrap();
        a1.send_to(&rtp(2), relay_a).await.unwrap();
        recv(&b).await;
        // A's NAT binding changed: its new address takes over.
        a2.send_to(&rtp(3), relay_a).await.unwrap();
        recv(&b).await;
        b.send_to(&rtp(4), relay_b).await.unwrap();
        assert_eq!(recv(&a2).await.0, rtp(4));
    }

    #[tokio::test]
    async fn a_stun_answer_goes_back_to_the_address_that_asked() {
        let relay = relay(41200, 41299);
        let stream = relay.open().unwrap();
        let (a_host, a_other, b) = (socket().await, socket().await, socket().await);
        let relay_a = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::A));
        let relay_b = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::B));
        b.send_to(&rtp(1), relay_b).await.unwrap();
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        request.extend_from_slice(&[7u8; 12]);
        a_host.send_to(&request, relay_a).await.unwrap();
        assert_eq!(recv(&b).await.0, request);
        // Another of A's candidates sends later: plain latching would send
        // the answer there.
        a_other.send_to(&rtp(9), relay_a).await.unwrap();
        recv(&b).await;
        let mut response = vec![0x01, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        response.extend_from_slice(&[7u8; 12]);
        b.send_to(&response, relay_b).await.unwrap();
        assert_eq!(recv(&a_host).await.0, response);
    }

    fn check(to: &IceCredentials, from_ufrag: &str, id: u8, nominate: bool) -> Vec<u8> {
        use crate::stun::{Attribute, Message, TransactionId};
        let mut m = Message::binding_request(TransactionId([id; 12]))
            .with(Attribute::Username(format!("{}:{from_ufrag}", to.ufrag)));
        if nominate {
            m = m.with(Attribute::UseCandidate);
        }
        m.encode(Some(to.pwd.as_bytes()), true).unwrap()
    }

    #[tokio::test]
    async fn with_ice_only_checked_sources_reach_the_other_side() {
        let relay = relay(41500, 41599);
        let stream = relay.open().unwrap();
        let a_creds = IceCredentials {
            ufrag: "aaaa".into(),
            pwd: "a-password-of-22-chars".into(),
        };
        let b_creds = IceCredentials {
            ufrag: "bbbb".into(),
            pwd: "b-password-of-22-chars".into(),
        };
        stream.set_ice(Side::A, a_creds.clone());
        stream.set_ice(Side::B, b_creds.clone());
        let (a, b, stranger) = (socket().await, socket().await, socket().await);
        let relay_a = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::A));
        let relay_b = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::B));
        let b_addr = b.local_addr().unwrap();
        stream.announce(Side::B, b_addr, b_addr);
        // Media before any check, a check keyed with the wrong password, a
        // check for someone else: all dropped.
        a.send_to(&rtp(1), relay_a).await.unwrap();
        a.send_to(&check(&a_creds, "bbbb", 1, false), relay_a)
            .await
            .unwrap();
        let wrong = IceCredentials {
            ufrag: "bbbb".into(),
            pwd: "not-the-password-at-al".into(),
        };
        a.send_to(&check(&wrong, "aaaa", 2, false), relay_a)
            .await
            .unwrap();
        // A's real check toward B is forwarded.
        let good = check(&b_creds, "aaaa", 3, true);
        a.send_to(&good, relay_a).await.unwrap();
        assert_eq!(recv(&b).await.0, good);
        // Now A's media passes; a stranger's does not, nor does it divert B's.
        stranger.send_to(&rtp(2), relay_a).await.unwrap();
        a.send_to(&rtp(3), relay_a).await.unwrap();
        assert_eq!(recv(&b).await.0, rtp(3));
        // B's media passes once B, too, has checked its path.
        b.send_to(&rtp(4), relay_b).await.unwrap();
        let b_check = check(&a_creds, "bbbb", 5, false);
        b.send_to(&b_check, relay_b).await.unwrap();
        assert_eq!(recv(&a).await.0, b_check);
        b.send_to(&rtp(6), relay_b).await.unwrap();
        assert_eq!(recv(&a).await.0, rtp(6));
        // rtp 1, two bad checks, the stranger's and B's early packet.
        assert_eq!(relay.stats().packets_dropped.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn closing_a_stream_returns_its_ports() {
        let relay = relay(41300, 41307);
        let stats = relay.stats();
        let first = relay.open().unwrap();
        let second = relay.open().unwrap();
        assert!(matches!(relay.open(), Err(RelayError::Exhausted)));
        assert_eq!(stats.ports_in_use.load(Ordering::Relaxed), 8);
        drop(first);
        drop(second);
        assert_eq!(stats.ports_in_use.load(Ordering::Relaxed), 0);
        assert_eq!(stats.streams.load(Ordering::Relaxed), 0);
        // The sockets close with their tasks; the ports can be bound again.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let again = relay.open().unwrap();
        assert_eq!(stats.streams.load(Ordering::Relaxed), 1);
        drop(again);
    }

    #[tokio::test]
    async fn a_released_pair_is_reused_only_after_resting_and_without_old_packets() {
        let config = RelayConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            port_min: 41500,
            port_max: 41599,
            kernel_forwarding: false,
        };
        let relay = Relay::with_reuse_after(config, Duration::from_millis(200));
        let first = relay.open().unwrap();
        let old_port = first.rtp_port(Side::A);
        drop(first);
        // Still resting: the next call gets other ports.
        let second = relay.open().unwrap();
        assert_ne!(second.rtp_port(Side::A), old_port);
        // A late packet of the old call reaches the resting pair.
        let (late, a, b) = (socket().await, socket().await, socket().await);
        let old_relay_a = SocketAddr::new(relay.bind_address(), old_port);
        late.send_to(&rtp(9), old_relay_a).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let third = relay.open().unwrap();
        assert_eq!(
            third.rtp_port(Side::A),
            old_port,
            "the rested pair is reused"
        );
        assert_eq!(relay.stats().ports_in_use.load(Ordering::Relaxed), 8);
        let b_addr = b.local_addr().unwrap();
        third.announce(Side::B, b_addr, b_addr);
        a.send_to(&rtp(1), old_relay_a).await.unwrap();
        // Only the new call's packet crosses, and A latched, not the stranger.
        assert_eq!(recv(&b).await.0, rtp(1));
        assert_eq!(third.latched(Side::A), Some(a.local_addr().unwrap()));
        drop((second, third));
        assert_eq!(relay.stats().ports_in_use.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn idle_time_counts_from_the_last_packet() {
        let relay = relay(41400, 41499);
        let stream = relay.open().unwrap();
        let a = socket().await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(stream.idle() >= Duration::from_millis(100));
        a.send_to(
            &rtp(1),
            SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::A)),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(stream.idle() < Duration::from_millis(100));
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..100 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what} did not happen within 5 s");
    }

    /// A relay with kernel forwarding; needs root and nft (CI has both),
    /// and says so rather than passing without them.
    fn kernel_relay(bind: IpAddr, port_min: u16, port_max: u16, reuse_after: Duration) -> Relay {
        let relay = Relay::with_reuse_after(
            RelayConfig {
                bind,
                port_min,
                port_max,
                kernel_forwarding: true,
            },
            reuse_after,
        );
        assert!(
            relay.kernel_forwarding(),
            "kernel forwarding needs root and nft (scripts/setup.sh)"
        );
        relay
    }

    /// B speaks once (so that A's packets have somewhere to go), then A
    /// sends packets 1..=`count`, each arriving at B byte for byte from the
    /// relay's B port. Returns the relay's A and B addresses.
    async fn speak(
        relay: &Relay,
        stream: &Stream,
        a: &UdpSocket,
        b: &UdpSocket,
        count: u8,
    ) -> (SocketAddr, SocketAddr) {
        let relay_a = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::A));
        let relay_b = SocketAddr::new(relay.bind_address(), stream.rtp_port(Side::B));
        b.send_to(&rtp(0), relay_b).await.unwrap();
        let _ = recv_nothing_within(a, 100).await;
        for seq in 1..=count {
            a.send_to(&rtp(seq), relay_a).await.unwrap();
            assert_eq!(recv(b).await, (rtp(seq), relay_b));
        }
        (relay_a, relay_b)
    }

    /// Waits until the kernel carries `n` stream directions of `relay`.
    async fn in_kernel(relay: &Relay, what: &str, n: usize) {
        let stats = relay.stats();
        until(what, || {
            stats.streams_in_kernel.load(Ordering::Relaxed) == n
        })
        .await;
    }

    /// The kernel forwarding of a settled stream, from hand-over to
    /// hand-back.
    #[tokio::test]
    async fn a_settled_plain_stream_is_forwarded_by_the_kernel_until_it_closes() {
        let relay = kernel_relay([127, 0, 0, 1].into(), 41600, 41699, REUSE_AFTER);
        let table = "softswitch_relay_127_0_0_1_41600";
        let stream = relay.open().unwrap();
        let (a, b, stranger) = (socket().await, socket().await, socket().await);
        let stats = relay.stats();
        let (relay_a, relay_b) = speak(&relay, &stream, &a, &b, SETTLED_AFTER as u8).await;
        in_kernel(&relay, "the hand-over", 1).await;
        let in_user_space = stats.packets_relayed.load(Ordering::Relaxed);
        // Byte for byte, from the relay's B port, without the relay's sockets.
        for seq in 100..120 {
            a.send_to(&rtp(seq), relay_a).await.unwrap();
            assert_eq!(recv(&b).await, (rtp(seq), relay_b));
        }
        assert_eq!(stats.packets_relayed.load(Ordering::Relaxed), in_user_space);
        // The kernel's packets keep the stream alive for the silence timeout.
        for seq in 120..200 {
            a.send_to(&rtp(seq), relay_a).await.unwrap();
            assert_eq!(recv(&b).await.0, rtp(seq));
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        // (Without the kernel's word it would be idle for the whole 4.8 s.)
        assert!(
            stream.idle() < Duration::from_millis(3500),
            "idle {:?}",
            stream.idle()
        );
        // Another source is not the kernel's: the relay re-latches A to it,
        // and B's packets follow A at once, wherever they are carried.
        stranger.send_to(&rtp(210), relay_a).await.unwrap();
        assert_eq!(recv(&b).await, (rtp(210), relay_b));
        b.send_to(&rtp(211), relay_b).await.unwrap();
        assert_eq!(recv(&stranger).await, (rtp(211), relay_a));
        // Closed: the kernel forgets the stream; A's packets go nowhere.
        drop(stream);
        in_kernel(&relay, "the hand-back", 0).await;
        a.send_to(&rtp(250), relay_a).await.unwrap();
        assert!(recv_nothing_within(&b, 300).await);
        relay.shutdown();
        let listed = std::process::Command::new("nft")
            .args(["list", "table", "ip", table])
            .output()
            .unwrap();
        assert!(!listed.status.success(), "the table outlived the relay");
    }

    /// When the kernel refuses a change (here: an operator deleted the
    /// table), the relay takes everything back and carries every packet
    /// itself from then on; nothing is lost and ports are reused as usual.
    #[tokio::test]
    async fn a_kernel_that_refuses_changes_leaves_the_relay_carrying_everything() {
        let relay = kernel_relay(
            [127, 0, 0, 1].into(),
            41900,
            41907,
            Duration::from_millis(200),
        );
        let stats = relay.stats();
        let settle = |stream: Stream| {
            let relay = &relay;
            async move {
                let (a, b) = (socket().await, socket().await);
                speak(relay, &stream, &a, &b, SETTLED_AFTER as u8 + 10).await;
                stream
            }
        };
        let first = settle(relay.open().unwrap()).await;
        in_kernel(&relay, "the hand-over", 1).await;
        let deleted = std::process::Command::new("nft")
            .args(["delete", "table", "ip", "softswitch_relay_127_0_0_1_41900"])
            .status()
            .unwrap();
        assert!(deleted.success());
        drop(first);
        in_kernel(&relay, "the take-back", 0).await;
        // The range holds one stream (two pairs): the next streams reuse the
        // first one's ports, and every packet crosses the relay's sockets.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..2 {
            let before = stats.packets_relayed.load(Ordering::Relaxed);
            let _stream = settle(relay.open().unwrap()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(stats.streams_in_kernel.load(Ordering::Relaxed), 0);
            assert_eq!(
                stats.packets_relayed.load(Ordering::Relaxed),
                before + u64::from(SETTLED_AFTER) + 10
            );
        }
    }

    /// The same over IPv6 (an `ip6` table).
    #[tokio::test]
    async fn ipv6_streams_are_forwarded_by_the_kernel_too() {
        let relay = kernel_relay(
            std::net::Ipv6Addr::LOCALHOST.into(),
            41800,
            41899,
            REUSE_AFTER,
        );
        let stream = relay.open().unwrap();
        let v6 = || UdpSocket::bind("[::1]:0");
        let (a, b) = (v6().await.unwrap(), v6().await.unwrap());
        let stats = relay.stats();
        let (relay_a, relay_b) = speak(&relay, &stream, &a, &b, SETTLED_AFTER as u8).await;
        in_kernel(&relay, "the hand-over", 1).await;
        let relayed = stats.packets_relayed.load(Ordering::Relaxed);
        for seq in 100..110 {
            a.send_to(&rtp(seq), relay_a).await.unwrap();
            assert_eq!(recv(&b).await, (rtp(seq), relay_b));
        }
        assert_eq!(stats.packets_relayed.load(Ordering::Relaxed), relayed);
        drop(stream);
        in_kernel(&relay, "the hand-back", 0).await;
        relay.shutdown();
    }

    /// ICE showing up (a re-INVITE) takes a stream back from the kernel:
    /// every source must pass checks again, which only the relay can do.
    #[tokio::test]
    async fn ice_takes_a_stream_back_from_the_kernel() {
        let relay = kernel_relay([127, 0, 0, 1].into(), 41700, 41799, REUSE_AFTER);
        let stream = relay.open().unwrap();
        let (a, b) = (socket().await, socket().await);
        let stats = relay.stats();
        let (relay_a, relay_b) = speak(&relay, &stream, &a, &b, SETTLED_AFTER as u8).await;
        in_kernel(&relay, "the hand-over", 1).await;
        stream.set_ice(
            Side::A,
            IceCredentials {
                ufrag: "aaaa".into(),
                pwd: "aaaaaaaaaaaaaaaaaaaaaa".into(),
            },
        );
        in_kernel(&relay, "the take-back", 0).await;
        let relayed = stats.packets_relayed.load(Ordering::Relaxed);
        a.send_to(&rtp(99), relay_a).await.unwrap();
        assert_eq!(recv(&b).await, (rtp(99), relay_b));
        assert_eq!(stats.packets_relayed.load(Ordering::Relaxed), relayed + 1);
    }

    /// True when nothing arrives within `ms`.
    async fn recv_nothing_within(s: &UdpSocket, ms: u64) -> bool {
        let mut buf = [0u8; 2048];
        tokio::time::timeout(Duration::from_millis(ms), s.recv_from(&mut buf))
            .await
            .is_err()
    }
}
