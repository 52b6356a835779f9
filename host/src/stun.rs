//! The STUN Binding server (RFC 8489 / 5389, and RFC 3489 clients) on UDP
//! and TCP: a handset asks "which address do you see me from?" before it
//! gathers ICE candidates. The codec is `media::stun`; this is the policy
//! (what is answered, what is dropped, the per-source rate limit) and the
//! tokio glue.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use media::stun::{self, Attribute, Class, Message, Method};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// The `[stun]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StunConfig {
    /// `false`: no STUN listener at all.
    pub enabled: bool,
    /// UDP listeners.
    pub udp: Vec<SocketAddr>,
    /// TCP listeners (RFC 8489 §6.2.2 framing: messages back to back).
    pub tcp: Vec<SocketAddr>,
    /// Answers one source address may get in a burst ...
    pub burst: u32,
    /// ... and how many more it earns each second.
    pub rate_per_sec: u32,
    /// Open TCP connections at most; further ones are closed at once.
    pub max_tcp_connections: usize,
    /// A TCP connection silent this long is closed, seconds.
    pub tcp_idle_secs: u64,
}

impl Default for StunConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            udp: vec![SocketAddr::from(([127, 0, 0, 1], 3478))],
            tcp: vec![SocketAddr::from(([127, 0, 0, 1], 3478))],
            // A handset sends a handful of requests per call set-up, but a
            // carrier-grade NAT puts many handsets behind one address: room
            // for those, while one address cannot turn the server into a
            // reflector of any size.
            burst: 200,
            rate_per_sec: 100,
            max_tcp_connections: 1024,
            // RFC 8489 §6.2.2 asks servers to keep a connection at least
            // 10 s after the last request; a minute lets a client reuse it.
            tcp_idle_secs: 60,
        }
    }
}

/// Sent in SOFTWARE: who answered, for the operator reading a capture.
const SOFTWARE: &str = concat!("softswitch ", env!("CARGO_PKG_VERSION"));

/// Largest message read. A Binding request with the longest USERNAME and
/// SOFTWARE RFC 8489 allows is about 1.3 KB; anything bigger is not one.
const MAX_MESSAGE: usize = 2048;

/// Rate-limit buckets kept at most (see `ratelimit`'s eviction).
const LIMITER_KEYS: usize = 100_000;

/// A peer that does not read its answers must not hold a task forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a message got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not STUN, or STUN that does not parse (bad length, bad FINGERPRINT ...).
    Malformed,
    /// A response, an indication, or a request for a method other than Binding.
    NotBindingRequest,
    /// The source address is over its rate.
    RateLimited,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::NotBindingRequest => "not-binding-request",
            Dropped::RateLimited => "rate-limited",
        }
    }
}

/// The answering policy, without sockets: unit-testable and shared by the
/// UDP and TCP loops.
pub struct StunServer {
    limiter: RateLimiter<IpAddr>,
    metrics: Metrics,
}

impl StunServer {
    pub fn new(config: &StunConfig, metrics: Metrics) -> StunServer {
        StunServer {
            limiter: RateLimiter::new(
                config.burst,
                Duration::from_secs(1) / config.rate_per_sec.max(1),
                LIMITER_KEYS,
            ),
            metrics,
        }
    }

    /// The answer to one message (a datagram, or a frame cut from a
    /// stream) from `from`, or why there is none; counted in the metrics.
    pub fn handle(
        &self,
        packet: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<Vec<u8>, Dropped> {
        let verdict = self.answer(packet, from, now);
        match &verdict {
            Ok(_) => {}
            Err(reason) => self.dropped(*reason),
        }
        verdict
    }

    fn dropped(&self, reason: Dropped) {
        self.metrics
            .stun_dropped
            .with_label_values(&[reason.label()])
            .inc();
    }

    fn answer(&self, packet: &[u8], from: SocketAddr, now: Instant) -> Result<Vec<u8>, Dropped> {
        let request = Message::decode(packet).map_err(|_| Dropped::Malformed)?;
        if request.class != Class::Request || request.method != Method::BINDING {
            return Err(Dropped::NotBindingRequest);
        }
        // A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d; they
        // must learn (and be limited by) their IPv4 address.
        let seen = SocketAddr::new(from.ip().to_canonical(), from.port());
        if !self.limiter.check(&seen.ip(), now) {
            return Err(Dropped::RateLimited);
        }
        let mut unknown = request.unknown_comprehension_required();
        // This server has no alternate address, so it cannot answer from
        // another IP or port; RFC 5780 §7.2 says to refuse with 420, which is
        // how a NAT-behaviour client learns it. A request asking for no
        // change (RFC 3489 clients always send one) is simply answered.
        if let Some(Attribute::ChangeRequest {
            change_ip,
            change_port,
        }) = request.get(stun::attr::CHANGE_REQUEST)
            && (*change_ip || *change_port)
        {
            unknown.push(stun::attr::CHANGE_REQUEST);
        }
        let answer = if unknown.is_empty() {
            self.metrics.stun_answered.inc();
            Message::binding_success(&request, seen)
        } else {
            self.metrics.stun_rejected.inc();
            Message::unknown_attributes_response(&request, unknown)
        };
        // FINGERPRINT came with RFC 5389; an RFC 3489 client knows nothing of it.
        answer
            .with(Attribute::Software(SOFTWARE.into()))
            .encode(None, !request.is_rfc3489())
            .map_err(|_| Dropped::Malformed)
    }
}

/// The bound listeners and their tasks (dropping this leaves them running).
pub struct StunListeners {
    /// `("udp" | "tcp", address)`; port 0 in the config becomes a real port.
    pub bound: Vec<(&'static str, SocketAddr)>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Binds the configured listeners and serves until the process ends.
/// `None` when STUN is disabled.
pub async fn start(config: &StunConfig, metrics: Metrics) -> anyhow::Result<Option<StunListeners>> {
    if !config.enabled {
        tracing::info!("STUN disabled (stun.enabled = false)");
        return Ok(None);
    }
    let server = Arc::new(StunServer::new(config, metrics.clone()));
    let mut bound = Vec::new();
    let mut tasks = Vec::new();
    // The answer is computed in the receive loop, so one loop per core reads
    // each socket, as the SIP UDP listeners do.
    let readers = std::thread::available_parallelism().map_or(2, |n| n.get());
    for addr in &config.udp {
        let socket = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot bind STUN UDP listener {addr} (stun.udp)"))?;
        let socket = Arc::new(socket);
        bound.push(("udp", socket.local_addr()?));
        for _ in 0..readers {
            tasks.push(tokio::spawn(serve_udp(socket.clone(), server.clone())));
        }
    }
    let connections = Arc::new(Semaphore::new(config.max_tcp_connections.max(1)));
    let idle = Duration::from_secs(config.tcp_idle_secs.max(1));
    for addr in &config.tcp {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind STUN TCP listener {addr} (stun.tcp)"))?;
        bound.push(("tcp", listener.local_addr()?));
        tasks.push(tokio::spawn(serve_tcp(
            listener,
            server.clone(),
            connections.clone(),
            idle,
            metrics.clone(),
        )));
    }
    for (transport, address) in &bound {
        tracing::info!(transport, %address, "STUN listening");
    }
    Ok(Some(StunListeners { bound, tasks }))
}

async fn serve_udp(socket: Arc<UdpSocket>, server: Arc<StunServer>) {
    // One byte more than the limit, so an oversized datagram is seen as
    // such instead of being truncated into something that parses.
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP errors from earlier sends surface here; they concern one peer.
            Err(e) => {
                tracing::debug!(error = %e, "STUN udp receive error");
                continue;
            }
        };
        if n > MAX_MESSAGE {
            server.dropped(Dropped::Malformed);
            continue;
        }
        if let Ok(answer) = server.handle(&buf[..n], from, Instant::now())
            && let Err(e) = socket.send_to(&answer, from).await
        {
            tracing::debug!(%from, error = %e, "STUN udp send failed");
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    server: Arc<StunServer>,
    connections: Arc<Semaphore>,
    idle: Duration,
    metrics: Metrics,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "STUN accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "STUN tcp connection refused: stun.max_tcp_connections reached");
            continue;
        };
        let server = server.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            metrics.stun_tcp_connections.inc();
            serve_stream(stream, remote, &server, idle).await;
            metrics.stun_tcp_connections.dec();
            drop(permit);
        });
    }
}

/// Answers the messages of one connection, in order, and closes it on
/// garbage: once framing is lost nothing after can be trusted.
async fn serve_stream(
    mut stream: TcpStream,
    remote: SocketAddr,
    server: &StunServer,
    idle: Duration,
) {
    let _ = stream.set_nodelay(true);
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_MESSAGE);
    let mut chunk = [0u8; MAX_MESSAGE];
    loop {
        loop {
            let len = match stun::message_len(&pending) {
                Ok(Some(len)) if len <= MAX_MESSAGE => len,
                Ok(None) => break,
                Ok(Some(_)) | Err(_) => {
                    server.dropped(Dropped::Malformed);
                    tracing::debug!(%remote, "closing STUN tcp connection: not STUN");
                    return;
                }
            };
            if pending.len() < len {
                break;
            }
            let verdict = server.handle(&pending[..len], remote, Instant::now());
            pending.drain(..len);
            match verdict {
                Ok(answer) => {
                    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&answer)).await {
                        Ok(Ok(())) => {}
                        _ => return,
                    }
                }
                Err(Dropped::Malformed) => {
                    tracing::debug!(%remote, "closing STUN tcp connection: malformed message");
                    return;
                }
                Err(_) => {}
            }
        }
        match tokio::time::timeout(idle, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::stun::TransactionId;

    fn server(burst: u32) -> StunServer {
        StunServer::new(
            &StunConfig {
                burst,
                rate_per_sec: 1,
                ..StunConfig::default()
            },
            Metrics::new(),
        )
    }

    fn request() -> Message {
        Message::binding_request(TransactionId([3; 12]))
    }

    const FROM: &str = "192.0.2.10:40000";

    #[test]
    fn binding_request_gets_xor_mapped_address_software_and_fingerprint() {
        let s = server(10);
        let raw = request().encode(None, false).unwrap();
        let answer = s
            .handle(&raw, FROM.parse().unwrap(), Instant::now())
            .unwrap();
        let m = Message::decode(&answer).unwrap();
        assert_eq!(m.class, Class::Success);
        assert_eq!(m.transaction_id, TransactionId([3; 12]));
        assert_eq!(m.xor_mapped_address(), Some(FROM.parse().unwrap()));
        assert_eq!(m.mapped_address(), None);
        assert_eq!(m.software(), Some(SOFTWARE));
        assert!(m.has_fingerprint());
        assert_eq!(s.metrics.stun_answered.get(), 1);
    }

    #[test]
    fn dual_stack_sockets_answer_ipv4_clients_with_ipv4() {
        let s = server(10);
        let raw = request().encode(None, true).unwrap();
        let from: SocketAddr = "[::ffff:192.0.2.10]:40000".parse().unwrap();
        let answer = s.handle(&raw, from, Instant::now()).unwrap();
        assert_eq!(
            Message::decode(&answer).unwrap().xor_mapped_address(),
            Some(FROM.parse().unwrap())
        );
    }

    #[test]
    fn unknown_comprehension_required_attributes_get_420() {
        let s = server(10);
        let raw = request()
            .with(Attribute::Other {
                typ: 0x0002,
                value: vec![0; 8],
            })
            .with(Attribute::ChangeRequest {
                change_ip: true,
                change_port: false,
            })
            .encode(None, true)
            .unwrap();
        let answer = s
            .handle(&raw, FROM.parse().unwrap(), Instant::now())
            .unwrap();
        let m = Message::decode(&answer).unwrap();
        assert_eq!(m.class, Class::Error);
        assert_eq!(m.error_code().map(|(c, _)| c), Some(420));
        assert_eq!(
            m.get(stun::attr::UNKNOWN_ATTRIBUTES),
            Some(&Attribute::UnknownAttributes(vec![0x0002, 0x0003]))
        );
        assert_eq!(s.metrics.stun_rejected.get(), 1);
    }

    #[test]
    fn garbage_responses_and_indications_are_dropped() {
        let s = server(10);
        let from = FROM.parse().unwrap();
        let now = Instant::now();
        assert_eq!(s.handle(b"hello", from, now), Err(Dropped::Malformed));
        let response = Message::binding_success(&request(), from)
            .encode(None, true)
            .unwrap();
        assert_eq!(
            s.handle(&response, from, now),
            Err(Dropped::NotBindingRequest)
        );
        let indication = Message::new(Class::Indication, Method::BINDING, TransactionId([0; 12]))
            .encode(None, true)
            .unwrap();
        assert_eq!(
            s.handle(&indication, from, now),
            Err(Dropped::NotBindingRequest)
        );
        let dropped = |r| s.metrics.stun_dropped.with_label_values(&[r]).get();
        assert_eq!(
            (dropped("malformed"), dropped("not-binding-request")),
            (1, 2)
        );
    }

    #[test]
    fn rate_limit_is_per_source_address() {
        let s = server(3);
        let raw = request().encode(None, true).unwrap();
        let now = Instant::now();
        let noisy: SocketAddr = FROM.parse().unwrap();
        for port in 1..=3 {
            assert!(
                s.handle(&raw, SocketAddr::new(noisy.ip(), port), now)
                    .is_ok()
            );
        }
        assert_eq!(s.handle(&raw, noisy, now), Err(Dropped::RateLimited));
        assert!(s.handle(&raw, "192.0.2.11:1".parse().unwrap(), now).is_ok());
        assert!(s.handle(&raw, noisy, now + Duration::from_secs(1)).is_ok());
    }
}
